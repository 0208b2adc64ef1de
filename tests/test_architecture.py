"""The framework's shape, checked from its source: front doors are thin and nothing imports
them, and no module imports another that (through any chain) imports it back. Every
runtime import counts, at module level or inside a function; `if TYPE_CHECKING:` imports
do not (they exist for the type checker only)."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "unified_delivery"
FRONT_DOORS = ("unified_delivery.cli", "unified_delivery.commands", "unified_delivery.mcp_server")


def _module(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _sources() -> dict[str, Path]:
    # scaffold/files and kinds/<kind>/template hold templates of a platform repository and of its
    # units (with placeholders), not the framework
    def template(path: Path) -> bool:
        parts = path.relative_to(PACKAGE).parts
        in_kind = parts[:1] == ("kinds",) and parts[2:3] == ("template",)
        return parts[:2] == ("scaffold", "files") or in_kind

    return {_module(p): p for p in PACKAGE.rglob("*.py") if not template(p)}


def imports() -> dict[str, set[str]]:
    modules = _sources()
    edges: dict[str, set[str]] = {m: set() for m in modules}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(), str(path))
        package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        typing_only = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If)
                       and "TYPE_CHECKING" in ast.unparse(node.test) for n in ast.walk(node)}
        for node in ast.walk(tree):
            if id(node) in typing_only:
                continue
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = package.split(".")
                    base = ".".join(parts[:len(parts) - node.level + 1] + ([node.module] if node.module else []))
                targets = ([base] if node.module else []) + [f"{base}.{a.name}" for a in node.names]
            else:
                continue
            edges[name] |= {t for t in targets if t in modules and t != name}
    return edges


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(edges[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def test_nothing_outside_the_front_doors_imports_them():
    edges = imports()
    outside = [(m, t) for m, targets in edges.items() for t in targets
               if t.startswith(FRONT_DOORS) and not m.startswith(FRONT_DOORS)]
    assert not outside, f"these import a front door (call the service layer instead): {outside}"


def test_the_package_has_no_import_cycles():
    assert not cycles(imports())


def test_the_checker_sees_a_cycle_and_a_front_door_import(tmp_path):
    # The two checks above are only as good as the graph: it must see lazy imports too.
    edges = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(edges) == [["a", "b", "c"]]
    graph = imports()
    assert "unified_delivery.service.launch" in graph["unified_delivery.cli"] or \
        "unified_delivery.service" in graph["unified_delivery.cli"]
    assert "unified_delivery.runner" in graph["unified_delivery.service.launch"]  # imported inside a function
