"""What the platform reads from a dbt project without importing dbt: the manifest.

The manifest is made by `dbt parse` in a child process when it is missing or older than
the project's files (as dagster-dbt's `prepare_if_dev` does), so loading the definitions
never imports dbt. Selections of the common forms (names, `tag:`, `path:`, `+` graph
operators, unions separated by spaces) are resolved here from the manifest's graph;
anything else is handed to `dbt ls`.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import subprocess
import sys
import tempfile
from contextlib import contextmanager
from contextvars import ContextVar
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterator

import yaml

from .errors import ConfigError
from .redaction import redact_text

SOURCE_DIRS = ("models", "seeds", "macros", "snapshots", "tests", "analyses")
BUILDABLE = ("model", "seed", "snapshot")


def dbt_executable() -> str:
    exe = Path(sys.executable).with_name("dbt")
    return str(exe) if exe.exists() else "dbt"


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


def _newest_source(project_dir: Path) -> float:
    newest = (project_dir / "dbt_project.yml").stat().st_mtime
    for d in SOURCE_DIRS:
        for f in (project_dir / d).rglob("*") if (project_dir / d).exists() else ():
            if f.is_file():
                newest = max(newest, f.stat().st_mtime)
    return newest


# Projects whose manifest was already checked against their files during this load.
_CHECKED: ContextVar[set[Path] | None] = ContextVar("ud_dbt_checked", default=None)


@contextmanager
def one_check_per_load() -> Iterator[None]:
    """While the definitions load, check each project's manifest against its files once.

    The check stats every file of the project and each data unit asks for the manifest
    twice, so without this a load costs data units x project files (quadratic)."""
    if _CHECKED.get() is not None:
        yield
        return
    token = _CHECKED.set(set())
    try:
        yield
    finally:
        _CHECKED.reset(token)


def ensure_manifest(project_dir: str | Path) -> dict[str, Any]:
    project_dir = Path(project_dir).resolve()
    manifest = project_dir / "target" / "manifest.json"
    checked = _CHECKED.get()
    if checked is not None and project_dir in checked and manifest.exists():
        return _load_manifest(str(manifest), manifest.stat().st_mtime)
    if not manifest.exists() or manifest.stat().st_mtime < _newest_source(project_dir):
        (project_dir / "target").mkdir(exist_ok=True)
        with open(project_dir / "target" / ".ud-parse.lock", "w") as lock:
            # Two processes (`ud`, the webserver, a test worker) parsing at once would each read
            # the other's half-written manifest: one parses, the next finds it fresh.
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not manifest.exists() or manifest.stat().st_mtime < _newest_source(project_dir):
                _parse(project_dir, manifest)
    if checked is not None:
        checked.add(project_dir)
    return _load_manifest(str(manifest), manifest.stat().st_mtime)


def _parse(project_dir: Path, manifest: Path) -> None:
    profile = project_file(project_dir).get("profile", "default")
    with tempfile.TemporaryDirectory(prefix="ud-dbt-parse-") as tmp:
        (Path(tmp) / "profiles.yml").write_text(parse_profiles(profile))
        # The manifest goes where ensure_manifest looks for it; dbt's log goes nowhere near the
        # project.
        proc = subprocess.run(
            [
                dbt_executable(),
                "parse",
                "--project-dir",
                str(project_dir),
                "--profiles-dir",
                tmp,
                "--target-path",
                str(project_dir / "target"),
                "--log-path",
                tmp + "/logs",
                "--quiet",
            ],
            capture_output=True,
            text=True,
            cwd=project_dir,
            timeout=600,
            check=False,
        )
    if proc.returncode != 0 or not manifest.exists():
        output = redact_text(proc.stdout + proc.stderr).strip()
        raise ConfigError(
            "UD-CONFIG-DBT",
            f"dbt parse failed for {project_dir}: {output[-800:]}",
            "fix the dbt project so `dbt parse` succeeds",
        )


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
