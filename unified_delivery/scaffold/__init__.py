"""`ud init` and `ud new`: a platform repository, and units in it, that work at once.

The files are templates (`@@key@@` placeholders, so dbt's and Make's own braces and dollars
stay as they are): the platform repository's under `files/platform`, a unit's in its kind's
folder (`kinds/<kind>/template`, with the values its kind fills in: kinds/scaffolding.py).
A unit is written only when every file it needs is new, so a refused `ud new` leaves the
repository as it was.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path

from ..errors import ConfigError, UDError
from ..home import is_platform_root
from ..kinds.registry import kinds
from ..kinds.scaffolding import NewUnit, Scaffold
from ..units import MAX_NAME, NAME_RE

PLACEHOLDER = re.compile(r"@@(\w+)@@")
PLATFORM = resources.files(__name__) / "files" / "platform"  # a platform repository's template
# What `ud init` starts a platform with: a data -> model -> app chain (kind, unit, team).
STARTERS = [("data", "features", "analytics"), ("model", "scorer", "ml"), ("app", "api", "web")]


@dataclass
class Written:
    root: Path
    files: list[str] = field(default_factory=list)
    next_steps: list[str] = field(default_factory=list)


def scaffolds() -> dict[str, Scaffold]:
    """The kinds `ud new` can write, by name, with their templates."""
    return {name: kind.scaffold for name, kind in kinds().items() if kind.scaffold is not None}


def render(text: str, values: dict[str, str], source: str) -> str:
    def one(m: re.Match) -> str:
        if m.group(1) not in values:
            raise RuntimeError(
                f"template {source}: no value for @@{m.group(1)}@@"
            )  # a bug in ud, not user input
        return values[m.group(1)]

    return PLACEHOLDER.sub(one, text)


def _plan(template: Traversable, values: dict[str, str]) -> dict[str, str]:
    """Relative path -> content of every file a template makes."""
    out: dict[str, str] = {}

    def walk(node, rel: str) -> None:
        for child in node.iterdir():
            path = f"{rel}/{child.name}" if rel else child.name
            if child.is_dir():
                walk(child, path)
            elif child.name != "__pycache__" and not child.name.endswith(".pyc"):
                target = render(path, values, path)
                target = ".gitignore" if target == "gitignore" else target
                out[target] = render(child.read_text(), values, path)

    walk(template, "")
    return out


def _write(root: Path, planned: dict[str, str]) -> list[str]:
    for rel, text in planned.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return sorted(planned)


def framework_requirement() -> tuple[str, str]:
    """How another machine installs this very framework (the URL it came from when any machine
    can reach it, else the release from the package index), and how this one does (a folder
    of this machine, for local.mk only; empty when the shared form serves)."""
    from importlib.metadata import PackageNotFoundError, distribution

    try:
        dist = distribution("unified-delivery")
    except PackageNotFoundError:
        return "unified-delivery[test]", ""
    direct = dist.read_text("direct_url.json")
    url = json.loads(direct).get("url") if direct else None
    if url and not url.startswith("file:"):
        return f"unified-delivery[test] @ {url}", ""
    released = f"unified-delivery[test]=={dist.version}"
    return released, (f"unified-delivery[test] @ {url}" if url else "")


def _git(root: Path, *args: str) -> None:
    # Commits by `ud init` need an identity even on a machine without one configured.
    ident = ["-c", "user.name=ud init", "-c", "user.email=ud-init@localhost"]
    have = subprocess.run(
        ["git", "config", "user.email"], cwd=root, capture_output=True, text=True
    ).stdout.strip()
    proc = subprocess.run(
        ["git", *([] if have else ident), *args], cwd=root, capture_output=True, text=True
    )
    if proc.returncode != 0:
        raise UDError(
            "UD-GIT",
            f"git {' '.join(args)} failed in {root}: {proc.stderr.strip()}",
            "check that git works here",
            exit_code=5,
        )


def init_platform(directory: Path, *, starters: bool = True) -> Written:
    """A new platform repository: the standard layout, a Git repository with one commit, and
    (unless `starters` is false) a data -> model -> app chain to take to production at once."""
    root = Path(directory).resolve()
    if root.exists() and any(root.iterdir()):
        raise ConfigError(
            "UD-INIT-EXISTS", f"{root} exists and is not empty", "give a new or empty folder"
        )
    name = root.name.replace("-", "_").lower()
    if not NAME_RE.match(name):
        raise ConfigError(
            "UD-INIT-NAME",
            f"{root.name!r} cannot name a platform (it names its dbt project and code location)",
            "use lower case letters, digits, - and _, starting with a letter",
        )
    root.mkdir(parents=True, exist_ok=True)
    try:
        shared, local = framework_requirement()
        files = _write(root, _plan(PLATFORM, {"name": name, "requirement": shared}))
        # This machine's own paths, never committed (the repository is shared): gitignored.
        (root / "local.mk").write_text(
            "# Written by `ud init` for this machine only (git ignores it).\n"
            f"INIT_PYTHON := {sys.executable}\n"
            + (f"LOCAL_REQUIREMENT := {local}\n" if local else "")
        )
        written = Written(root=root, files=files)
        if starters:
            for kind, unit, team in STARTERS:
                extra = {
                    "model": {"trains_on": "features", "label": "label"},
                    "app": {"serves": "scorer"},
                }.get(kind, {})
                written.files += new_unit(root, kind, unit, team=team, **extra).files
        _git(root, "init", "--quiet", "--initial-branch=main")
        _git(root, "add", "-A")
        _git(root, "commit", "--quiet", "-m", "A new platform, made by ud init")
    except BaseException:
        shutil.rmtree(root, ignore_errors=True)  # nothing half-made is left behind
        raise
    written.next_steps = [f"cd {directory}", "make test", "make demo"]
    return written


def _platform_root(start: Path) -> Path:
    root = next((d for d in (start, *start.parents) if is_platform_root(d)), None)
    if root is None:
        raise ConfigError(
            "UD-NO-PLATFORM",
            f"{start} is not inside a platform repository (no workspace.yaml, [tool.dagster] or "
            "assets/definitions.py)",
            "run `ud new` in a repository made by `ud init`",
        )
    return root


def existing_units(root: Path) -> set[str]:
    """Unit names taken in this repository, by the files units are declared in."""
    names = {p.parent.name for p in (root / "assets" / "units").glob("*/defs.yaml")}
    names |= {p.stem for p in (root / "assets" / "units").glob("*.y*ml")}
    names |= {
        p.stem for p in (root / "assets").glob("*.py") if p.stem not in ("__init__", "definitions")
    }
    names |= {p.stem for p in (root / "dbt_project" / "models").glob("*.sql")}
    return names


def new_unit(
    root: Path,
    kind: str,
    name: str,
    *,
    team: str | None = None,
    trains_on: str | None = None,
    label: str | None = None,
    serves: str | None = None,
) -> Written:
    root = _platform_root(Path(root).resolve())
    known = scaffolds()
    if kind not in known:
        raise ConfigError(
            "UD-NEW-KIND",
            f"{kind!r} is not a kind of unit `ud new` writes",
            f"use one of: {', '.join(known)}",
        )
    scaffold = known[kind]
    if not NAME_RE.match(name) or not name.isidentifier() or len(name) > MAX_NAME:
        raise ConfigError(
            "UD-NEW-NAME",
            f"{name[:60]!r} is not a valid unit name (at most {MAX_NAME} characters)",
            "use lower case letters, digits and _, starting with a letter (it becomes a Python and "
            "dbt name)",
        )
    if name in existing_units(root) or name in ("definitions",):
        raise ConfigError(
            "UD-NEW-EXISTS", f"a unit named {name!r} exists in {root}", "choose another name"
        )
    team = team or scaffold.team
    if not NAME_RE.match(team):
        raise ConfigError(
            "UD-NEW-NAME",
            f"{team!r} is not a valid team name",
            "use lower case letters, digits and _",
        )
    filled = scaffold.fill(
        NewUnit(root=root, name=name, team=team, trains_on=trains_on, label=label, serves=serves)
    )
    values = {**filled.values, "name": name, "team": team}
    planned = {**_plan(scaffold.template, values), **filled.files}
    clash = [p for p in planned if (root / p).exists()]
    if clash:
        raise ConfigError(
            "UD-NEW-EXISTS", f"{', '.join(clash)} already exist in {root}", "choose another name"
        )
    return Written(root=root, files=_write(root, planned), next_steps=filled.next_steps)
