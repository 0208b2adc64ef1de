"""What the platform reads from a dbt project without importing dbt: the manifest.

The manifest is made by `dbt parse` in a child process, once per digest of the project's
files, in the project's shadow (dbt_shadow.py: nothing is written into the project), so
loading the definitions never imports dbt. Selections of the common forms (names, `tag:`,
`path:`, `+` graph operators, unions separated by spaces) are resolved here from the
manifest's graph; anything else is handed to `dbt ls`.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import tempfile
from contextlib import contextmanager
from contextvars import ContextVar
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterator

import yaml

from .dbt_shadow import dbt_executable
from .errors import ConfigError

SOURCE_DIRS = ("models", "seeds", "macros", "snapshots", "tests", "analyses")
BUILDABLE = ("model", "seed", "snapshot")


def project_file(project_dir: Path) -> dict[str, Any]:
    path = Path(project_dir) / "dbt_project.yml"
    if not path.exists():
        raise ConfigError(
            "UD-CONFIG-DBT",
            f"{project_dir} is not a dbt project (no dbt_project.yml)",
            "fix `project`",
        )
    return yaml.safe_load(path.read_text()) or {}


def parse_profiles(profile: str, path: str = ":memory:", schema: str = "main") -> str:
    return yaml.safe_dump(
        {
            profile: {
                "target": "ud",
                "outputs": {"ud": {"type": "duckdb", "path": path, "schema": schema, "threads": 1}},
            }
        }
    )


# Projects whose shadow was already found during this load: project -> shadow.
_CHECKED: ContextVar[dict[Path, Path] | None] = ContextVar("ud_dbt_checked", default=None)


@contextmanager
def one_check_per_load() -> Iterator[None]:
    """While the definitions load, digest each project's files once.

    Each data unit asks for the manifest twice, so without this a load reads the project's
    files data units x 2 times."""
    if _CHECKED.get() is not None:
        yield
        return
    token = _CHECKED.set({})
    try:
        yield
    finally:
        _CHECKED.reset(token)


def shadow_of(project_dir: str | Path) -> Path:
    """Where dbt runs for `project_dir`: its shadow in the dbt cache (dbt_shadow.py)."""
    from .dbt_shadow import shadow

    project_dir = Path(project_dir).resolve()
    checked = _CHECKED.get()
    if checked is not None and project_dir in checked:
        return checked[project_dir]
    out = shadow(project_dir)
    if checked is not None:
        checked[project_dir] = out
    return out


def ensure_manifest(project_dir: str | Path) -> dict[str, Any]:
    """The project's manifest, parsed once per digest of its files in its shadow: nothing is
    written into the project."""
    manifest = shadow_of(project_dir) / "target" / "manifest.json"
    return _load_manifest(str(manifest), manifest.stat().st_mtime)


def load_manifest(path: Path) -> dict[str, Any]:
    return _load_manifest(str(path), path.stat().st_mtime)


@lru_cache(maxsize=16)
def _load_manifest(path: str, _mtime: float) -> dict[str, Any]:
    return json.loads(Path(path).read_text())


# id(manifest) -> (manifest, buildable nodes, their ids by name); the manifest is kept so its id
# stays its own.
_INDEX: dict[int, tuple[dict, dict[str, dict], dict[str, set[str]]]] = {}


def _index(manifest: dict) -> tuple[dict[str, dict], dict[str, set[str]]]:
    """Built once per manifest: every data unit selects from the same one, twice per load."""
    hit = _INDEX.get(id(manifest))
    if hit is None or hit[0] is not manifest:
        nodes = {uid: n for uid, n in manifest["nodes"].items() if n["resource_type"] in BUILDABLE}
        by_name: dict[str, set[str]] = {}
        for uid, n in nodes.items():
            by_name.setdefault(n["name"], set()).add(uid)
        if len(_INDEX) >= 16:
            _INDEX.pop(next(iter(_INDEX)), None)
        hit = _INDEX[id(manifest)] = (manifest, nodes, by_name)
    return hit[1], hit[2]


def _nodes(manifest: dict) -> dict[str, dict]:
    return _index(manifest)[0]


def _walk(start: set[str], edges: dict[str, list[str]]) -> set[str]:
    seen, todo = set(), list(start)
    while todo:
        for nxt in edges.get(todo.pop(), []):
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return seen


def select(manifest: dict, selection: str, project_dir: Path | None = None) -> list[str]:
    """Unique ids of the models, seeds and snapshots a selection names (tests excluded)."""
    nodes = _nodes(manifest)
    chosen: set[str] = set()
    for term in selection.split():
        up, down = term.startswith("+"), term.endswith("+")
        core = term.strip("+")
        method, _, value = core.rpartition(":")
        if method == "tag":
            base = {u for u, n in nodes.items() if value in n.get("tags", [])}
        elif method == "path":
            base = {
                u for u, n in nodes.items() if n["original_file_path"].startswith(value.rstrip("/"))
            }
        elif method == "":
            base = set(_index(manifest)[1].get(core, ()))
        else:
            return _dbt_ls(project_dir, selection, nodes) if project_dir else []
        if up:
            base |= _walk(set(base), manifest["parent_map"])
        if down:
            base |= _walk(set(base), manifest["child_map"])
        chosen |= base
    return sorted(u for u in chosen if u in nodes)


def _dbt_ls(project_dir: Path, selection: str, nodes: dict[str, dict]) -> list[str]:
    profile = project_file(project_dir).get("profile", "default")
    project_dir = shadow_of(project_dir)
    with tempfile.TemporaryDirectory(prefix="ud-dbt-ls-") as tmp:
        (Path(tmp) / "profiles.yml").write_text(parse_profiles(profile))
        proc = subprocess.run(
            [
                dbt_executable(),
                "ls",
                "--select",
                selection,
                "--output",
                "json",
                "--output-keys",
                "unique_id",
                "--quiet",
                "--project-dir",
                str(project_dir),
                "--profiles-dir",
                tmp,
                "--target-path",
                tmp + "/target",
                "--log-path",
                tmp + "/logs",
            ],
            capture_output=True,
            text=True,
            cwd=tmp,
            timeout=600,
            check=False,
        )
    ids = {
        json.loads(line)["unique_id"] for line in proc.stdout.splitlines() if line.startswith("{")
    }
    return sorted(u for u in ids if u in nodes)


def node_meta(node: dict) -> dict[str, Any]:
    meta = {**(node.get("meta") or {}), **((node.get("config") or {}).get("meta") or {})}
    return meta.get("ud") or {}


def selection_digest(manifest: dict, ids: list[str]) -> str:
    """A version for a selection: the checksums of its nodes (SQL, seed files) and their config."""
    h = hashlib.sha256()
    for uid in ids:
        node = manifest["nodes"][uid]
        h.update(uid.encode())
        h.update(node["checksum"]["checksum"].encode())
        h.update(json.dumps(node.get("config", {}), sort_keys=True, default=str).encode())
    return h.hexdigest()[:12]
