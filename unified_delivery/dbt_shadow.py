"""A dbt project as it is: the platform writes nothing into it.

dbt writes into the project it runs: `target/`, `logs/`, `dbt_packages/` and, since 1.7,
`package-lock.yml`. So the platform never runs dbt in the user's folder. It copies the
project's source files once per digest of their contents into a shadow folder of the dbt
cache ($UD_DBT_CACHE, by default ~/.cache/unified-delivery/dbt), where the copy's
`dbt_project.yml` points `packages-install-path` at a folder of the cache keyed by the digest
of the package files (`dbt deps` then runs once per packages.yml / package-lock.yml digest),
and local packages (`local: ../shared`) are named by a copy of theirs in the cache, one per
digest of their files (a checkout's path changes with its commit; their contents need not).
The manifest is parsed once per shadow, in its own `target/`; every build passes its own
`--target-path` and `--log-path` besides.

A shadow is immutable once ready (its files are the digest), so homes and test runs share
them; a project edited in place gets a new digest, hence a new shadow.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml

from .errors import ConfigError
from .redaction import redact_text

# Folders dbt or tools write into a project, never part of its source.
IGNORED = {
    ".git",
    "target",
    "logs",
    "dbt_packages",
    "dbt_modules",
    ".venv",
    "venv",
    "__pycache__",
    ".ud",
    ".pytest_cache",
    ".mypy_cache",
}
IGNORED_FILES = {".user.yml", ".DS_Store"}
PACKAGE_FILES = ("packages.yml", "dependencies.yml", "package-lock.yml")
READY = ".ud-ready"


def cache_root() -> Path:
    configured = os.environ.get("UD_DBT_CACHE")
    if configured:
        return Path(configured).expanduser().resolve()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base).resolve() / "unified-delivery" / "dbt"


def _settings(project: Path) -> dict[str, Any]:
    path = project / "dbt_project.yml"
    if not path.exists():
        raise ConfigError(
            "UD-CONFIG-DBT",
            f"{project} is not a dbt project (no dbt_project.yml)",
            "fix `project`",
        )
    return yaml.safe_load(path.read_text()) or {}


def _source_files(root: Path, skip: set[str]) -> list[Path]:
    files = []
    for folder, dirs, names in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d not in IGNORED and d not in skip)
        for name in sorted(names):
            if name not in IGNORED_FILES:
                files.append(Path(folder) / name)
    return files


def _generated_dirs(settings: dict[str, Any]) -> set[str]:
    """The project's own names for the folders dbt writes (`target-path:` and the like)."""
    names = set()
    for key in ("target-path", "log-path", "packages-install-path", "modules-path"):
        value = settings.get(key)
        if isinstance(value, str) and "/" not in value.strip("/") and "{" not in value:
            names.add(value.strip("/"))
    return names


def _package_specs(project: Path) -> dict[str, Any]:
    out = {}
    for name in PACKAGE_FILES:
        path = project / name
        if path.exists():
            out[name] = yaml.safe_load(path.read_text()) or {}
    return out


def _packages(spec: dict[str, Any]) -> list[dict]:
    listed = spec.get("packages") if isinstance(spec, dict) else None
    return [p for p in listed or [] if isinstance(p, dict)]


def _local_packages(project: Path, specs: dict[str, Any]) -> list[Path]:
    found = []
    for spec in specs.values():
        for package in _packages(spec):
            local = package.get("local")
            if isinstance(local, str):
                found.append((project / local).resolve())
    return found


def _tree_digest(root: Path) -> str:
    h = hashlib.sha256()
    for path in _source_files(root, set()) if root.is_dir() else ():
        h.update(str(path.relative_to(root)).encode() + b"\0")
        h.update(hashlib.sha256(path.read_bytes()).digest())
    return h.hexdigest()[:16]


def _cached_local(local: Path) -> Path:
    """A local package copied into the cache once per digest of its files: the shadow names it
    there, so the packages digest (and `dbt deps`) does not depend on where a checkout is."""
    out = cache_root() / "locals" / f"{local.name}-{_tree_digest(local)}"
    if not (out / READY).exists():
        out.parent.mkdir(parents=True, exist_ok=True)
        with open(out.with_name(out.name + ".lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not (out / READY).exists():
                shutil.rmtree(out, ignore_errors=True)
                shutil.copytree(local, out, ignore=shutil.ignore_patterns(*IGNORED))
                (out / READY).write_text(str(local))
    return out


def _cached_locals(project: Path, spec: Any) -> Any:
    """The package file with each `local:` package named by its copy in the cache."""
    if not isinstance(spec, dict):
        return spec
    spec = dict(spec)
    spec["packages"] = [
        {**p, "local": str(_cached_local((project / p["local"]).resolve()))}
        if isinstance(p, dict) and isinstance(p.get("local"), str)
        else p
        for p in spec.get("packages") or []
    ]
    return spec


def digests(project: Path) -> tuple[str, str | None]:
    """(the project's digest, the digest of its packages or None when it has none): the
    contents of its source files and of the local packages it names."""
    project = Path(project).resolve()
    settings = _settings(project)
    skip = _generated_dirs(settings)
    h = hashlib.sha256()
    for path in _source_files(project, skip):
        h.update(str(path.relative_to(project)).encode() + b"\0")
        h.update(hashlib.sha256(path.read_bytes()).digest())
    specs = _package_specs(project)
    packages = [p for s in specs.values() for p in _packages(s)]
    if not packages:
        return h.hexdigest()[:16], None
    p = hashlib.sha256()
    for name, spec in sorted(specs.items()):
        p.update(name.encode() + b"\0")
        p.update(yaml.safe_dump(spec, sort_keys=True).encode())
    for local in _local_packages(project, specs):
        p.update(_tree_digest(local).encode())
    h.update(p.digest())
    return h.hexdigest()[:16], p.hexdigest()[:16]


def parse_profiles(profile: str) -> str:
    return yaml.safe_dump(
        {
            profile: {
                "target": "ud",
                "outputs": {
                    "ud": {"type": "duckdb", "path": ":memory:", "schema": "main", "threads": 1}
                },
            }
        }
    )


def dbt_executable() -> str:
    """dbt beside this interpreter (the platform's venv), else the one on PATH."""
    exe = Path(sys.executable).with_name("dbt")
    return str(exe) if exe.exists() else "dbt"


def dbt_call(shadow: Path, args: list[str], profile: str, timeout: int = 600):
    """`dbt ARGS` on a shadow with an in-memory profile and its log in a temporary folder."""
    with tempfile.TemporaryDirectory(prefix="ud-dbt-") as tmp:
        (Path(tmp) / "profiles.yml").write_text(parse_profiles(profile))
        return subprocess.run(
            [
                dbt_executable(),
                *args,
                "--project-dir",
                str(shadow),
                "--profiles-dir",
                tmp,
                "--log-path",
                tmp + "/logs",
                "--quiet",
            ],
            capture_output=True,
            text=True,
            cwd=shadow,
            timeout=timeout,
            check=False,
        )


def _fail(project: Path, step: str, proc: subprocess.CompletedProcess) -> ConfigError:
    from .dbt_errors import explain

    output = redact_text(proc.stdout + proc.stderr).strip()
    where = explain(output)
    return ConfigError(
        "UD-CONFIG-DBT",
        f"dbt {step} failed for {project}: {output[-800:]}",
        f"fix {where}" if where else f"fix the dbt project so `dbt {step}` succeeds",
    )


def _install(project: Path, shadow: Path, packages: Path, profile: str) -> None:
    """`dbt deps` once per packages digest, into the cache's folder for it."""
    packages.parent.mkdir(parents=True, exist_ok=True)
    with open(packages.with_name(packages.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (packages / READY).exists():
            return
        proc = dbt_call(shadow, ["deps"], profile)
        if proc.returncode != 0:
            shutil.rmtree(packages, ignore_errors=True)
            raise _fail(project, "deps", proc)
        packages.mkdir(parents=True, exist_ok=True)
        (packages / READY).write_text("")


def shadow(project: str | Path) -> Path:
    """The shadow of `project` in the dbt cache, made (copied, deps installed, parsed) when it
    is not there yet; its manifest is `<shadow>/target/manifest.json`."""
    project = Path(project).resolve()
    digest, packages_digest = digests(project)
    settings = _settings(project)
    name = str(settings.get("name") or project.name)
    root = cache_root()
    out = root / "projects" / f"{name}-{digest}"
    if (out / READY).exists():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out.with_name(out.name + ".lock"), "w") as lock:
        # Two processes (`ud`, the webserver, a test worker) making one shadow take turns.
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (out / READY).exists():
            return out
        shutil.rmtree(out, ignore_errors=True)
        skip = _generated_dirs(settings)
        for path in _source_files(project, skip):
            dest = out / path.relative_to(project)
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, dest)
        profile = str(settings.get("profile") or "default")
        if packages_digest:
            packages = root / "packages" / packages_digest
            for file, spec in _package_specs(project).items():
                (out / file).write_text(yaml.safe_dump(_cached_locals(project, spec)))
            settings = {**settings, "packages-install-path": str(packages)}
            (out / "dbt_project.yml").write_text(yaml.safe_dump(settings, sort_keys=False))
            _install(project, out, packages, profile)
        proc = dbt_call(out, ["parse", "--target-path", str(out / "target")], profile)
        if proc.returncode != 0 or not (out / "target" / "manifest.json").exists():
            err = _fail(project, "parse", proc)
            shutil.rmtree(out, ignore_errors=True)
            raise err
        (out / READY).write_text(str(project))
    return out
