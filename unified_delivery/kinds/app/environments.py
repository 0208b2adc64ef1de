"""An app's own dependencies: one environment per digest of its lock or requirements files.

A unit that declares `dependencies` gets its packages installed into a folder of the home,
`{home}/venvs/<ecosystem>-<digest>`, where the digest covers the files that say what to
install (and, for Python, the interpreter's version): every commit whose files have the same
digest reuses the same environment, and a commit that changes them gets a new one. Python
environments are virtual environments made with uv when it is installed (the platform
depends on it), else with the interpreter's venv and pip; Node environments are an
`npm ci` of the app's package.json and package-lock.json. Downloads are cached in
`{home}/cache`.

An environment is made once, under a lock, in place (a virtual environment cannot be moved),
and marked ready only at the end: one left half-made by a killed install is removed and made
again. Environments are never pruned here: a rollback to an old commit finds its own.

The install runs the app's dependency tooling as the platform's user with an allow-listed
environment (like the service the local target starts), not in the tests gate's sandbox:
packages' build scripts are trusted as far as the app's service is.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from ...errors import UDError
from ...home import Home
from ...targets.state_files import lock_file
from .unit import AppUnit

READY = ".ud-ready.json"  # written last: an environment without it is half-made
INSTALL_TIMEOUT_S = 1800.0
OUTPUT_TAIL = 40
PASSED_THROUGH = ("PATH", "LANG", "LANGUAGE", "TZ", "HOME", "USER", "LOGNAME", "TMPDIR")
# pip and uv read their settings (indexes, certificates, constraints) from these.
INSTALLER_PREFIXES = ("PIP_", "UV_", "SSL_CERT_", "REQUESTS_CA_BUNDLE", "NPM_CONFIG_", "LC_")
NPM_LIFECYCLE = ("preinstall", "install", "postinstall", "prepublish", "preprepare", "prepare")
# The operator's pip settings given as variables, for uv too (uv reads no pip.conf).
PIP_TO_UV = {
    "PIP_INDEX_URL": "UV_DEFAULT_INDEX",
    "PIP_EXTRA_INDEX_URL": "UV_INDEX",
    "PIP_FIND_LINKS": "UV_FIND_LINKS",
    "PIP_CONSTRAINT": "UV_CONSTRAINT",
}
_INCLUDE = re.compile(r"^\s*(?:-r|--requirement|-c|--constraint)(?:\s+|=)(\S+)")


@dataclass(frozen=True)
class Plan:
    """What to install for an app folder: the ecosystem, the files (relative to the folder) and
    their digest."""

    ecosystem: str  # "python" or "node"
    files: tuple[str, ...]  # what the installer is given
    digest: str
    digested: tuple[str, ...] = ()  # `files` and the requirements files they include


@dataclass(frozen=True)
class AppEnvironment:
    """A ready environment: where it is and how a process runs with it."""

    ecosystem: str
    digest: str
    path: Path
    installer: str
    reused: bool
    seconds: float
    details: dict = field(default_factory=dict)
    files: tuple[str, ...] = ()  # what says what it holds (requirements files, the lock)

    @property
    def python(self) -> str | None:
        return str(self.path / "bin" / "python") if self.ecosystem == "python" else None

    @property
    def bin_dir(self) -> Path:
        if self.ecosystem == "node":
            return self.path / "node_modules" / ".bin"
        return self.path / "bin"

    def environ(self, base: dict[str, str]) -> dict[str, str]:
        """`base` with this environment first on PATH (and VIRTUAL_ENV for Python)."""
        env = dict(base)
        env["PATH"] = os.pathsep.join([str(self.bin_dir), base.get("PATH") or os.defpath])
        if self.ecosystem == "python":
            env["VIRTUAL_ENV"] = str(self.path)
        return env

    def attach(self, folder: Path) -> None:
        """Make `folder` (a copy of the app: a release, the tests gate's work copy) use this
        environment: for Node, its node_modules is a link to the environment's."""
        if self.ecosystem != "node":
            return
        link = folder / "node_modules"
        if link.is_symlink() or link.exists():
            if link.is_symlink() and Path(os.readlink(link)) == self.path / "node_modules":
                return
            if link.is_dir() and not link.is_symlink():
                shutil.rmtree(link)
            else:
                link.unlink()
        link.symlink_to(self.path / "node_modules")

    def summary(self) -> dict:
        return {
            "environment": str(self.path),
            "environment_digest": self.digest,
            "installer": self.installer,
            "environment_reused": self.reused,
            "install_s": round(self.seconds, 2),
        }


def plan(unit: AppUnit, source: Path) -> Plan | None:
    """What `unit` installs for the app folder `source`; None when it declares no dependencies.
    UDError when the declared files are not there."""
    if unit.dependencies is None:
        return None
    if unit.dependencies == "auto":
        files = _auto_files(source)
        if not files:
            raise _error(
                unit,
                f"`dependencies: auto` found none of package-lock.json, uv.lock, "
                f"requirements*.txt or pyproject.toml in {unit.path!r}",
                "commit the app's lock or requirements file, or name it in `dependencies`",
            )
    else:
        files = list(unit.dependencies)
        missing = [f for f in files if not (source / f).is_file()]
        if missing:
            raise _error(
                unit,
                f"dependencies names {', '.join(missing)}, not in {unit.path!r} at this commit",
                "commit the file or fix `dependencies` in the unit's YAML",
            )
    node = [f for f in files if Path(f).name in ("package.json", "package-lock.json")]
    if node and len(node) != len(files):
        raise _error(
            unit,
            f"dependencies mixes Node files ({', '.join(node)}) with Python ones",
            "one app, one ecosystem: declare the files of the one its service runs on",
        )
    ecosystem = "node" if node else "python"
    if ecosystem == "node":
        lock = next((f for f in files if Path(f).name == "package-lock.json"), None)
        if lock is None:
            raise _error(
                unit,
                "a Node app's dependencies need its package-lock.json (npm ci installs from it)",
                "run `npm install` once, commit package-lock.json and name it",
            )
        folder = str(Path(lock).parent)
        files = [str(Path(folder) / "package.json"), lock]
        if not (source / files[0]).is_file():
            raise _error(unit, f"{files[0]} is missing beside {lock}", "commit package.json")
    included = _with_included(source, files)
    digest = hashlib.sha256()
    digest.update(f"{ecosystem}\0".encode())
    if ecosystem == "python":
        digest.update(
            f"{sys.implementation.name}{sys.version_info[:2]}{os.uname().machine}".encode()
        )
    for name in included:
        digest.update(f"{name}\0".encode())
        digest.update((source / name).read_bytes())
        digest.update(b"\0")
    return Plan(ecosystem, tuple(files), digest.hexdigest()[:16], tuple(included))


def ensure(
    unit: AppUnit,
    source: Path,
    home: Home,
    log=print,
    *,
    installer: str | None = None,
) -> AppEnvironment | None:
    """The ready environment for the app folder `source` (a built commit), made if missing.
    None when the unit declares no dependencies. UDError UD-APP-DEPS when the install fails,
    with the installer's output."""
    the_plan = plan(unit, source)
    if the_plan is None:
        return None
    path = home.root / "venvs" / f"{the_plan.ecosystem}-{the_plan.digest}"
    with lock_file(home.root / "venvs" / f".{path.name}.lock"):
        ready = _ready(path)
        if ready is not None:
            return AppEnvironment(
                the_plan.ecosystem,
                the_plan.digest,
                path,
                ready["installer"],
                True,
                0.0,
                ready,
                the_plan.files,
            )
        if path.exists():  # half-made by an install that was killed: start again
            log(f"removing the half-made environment {path}")
            shutil.rmtree(path)
        chosen = installer or _default_installer(the_plan.ecosystem)
        log(
            f"installing {unit.name}'s dependencies ({', '.join(the_plan.files)}) with {chosen} "
            f"into {path}"
        )
        started = time.monotonic()
        try:
            if the_plan.ecosystem == "node":
                _install_node(unit, source, the_plan, path, home)
            else:
                _install_python(unit, source, the_plan, path, home, chosen)
        except BaseException:
            shutil.rmtree(path, ignore_errors=True)
            raise
        seconds = time.monotonic() - started
        record = {
            "installer": chosen,
            "files": list(the_plan.files),
            "unit": unit.name,
            "install_s": round(seconds, 2),
        }
        (path / READY).write_text(json.dumps(record))
        log(f"installed {unit.name}'s dependencies in {seconds:.1f}s")
        return AppEnvironment(
            the_plan.ecosystem,
            the_plan.digest,
            path,
            chosen,
            False,
            seconds,
            record,
            the_plan.files,
        )


def uv_binary() -> str | None:
    """The uv this platform depends on (beside its interpreter), else one on PATH."""
    beside = Path(sys.executable).with_name("uv")
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    with contextlib.suppress(ImportError, FileNotFoundError):
        from uv import find_uv_bin

        return find_uv_bin()
    return shutil.which("uv")


# ---- which files --------------------------------------------------------------------------


def _auto_files(source: Path) -> list[str]:
    if (source / "package-lock.json").is_file():
        return ["package.json", "package-lock.json"]
    if (source / "uv.lock").is_file() and (source / "pyproject.toml").is_file():
        return ["pyproject.toml", "uv.lock"]
    requirements = sorted(p.name for p in source.glob("requirements*.txt") if p.is_file())
    if requirements:
        return requirements
    if (source / "pyproject.toml").is_file():
        return ["pyproject.toml"]
    return []


def _with_included(source: Path, files: list[str]) -> list[str]:
    """`files` and the requirements files they include (-r, -c), inside `source`, in order."""
    seen: list[str] = []
    todo = list(files)
    root = source.resolve()
    while todo:
        name = os.path.normpath(todo.pop(0))
        if name in seen:
            continue
        seen.append(name)
        if not name.endswith(".txt"):
            continue
        for line in (source / name).read_text(errors="replace").splitlines():
            match = _INCLUDE.match(line)
            if not match:
                continue
            included = os.path.normpath(os.path.join(os.path.dirname(name), match.group(1)))
            target = (source / included).resolve()
            if target.is_relative_to(root) and target.is_file():
                todo.append(included)
    return seen


# ---- installing -----------------------------------------------------------------------------


def _default_installer(ecosystem: str) -> str:
    if ecosystem == "node":
        return "npm"
    return "uv" if uv_binary() else "pip"


def _installer_env(home: Home) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k in PASSED_THROUGH or k.startswith(INSTALLER_PREFIXES)
    }
    env.setdefault("PATH", os.defpath)
    cache = home.root / "cache"
    env.update(
        UV_CACHE_DIR=str(cache / "uv"),
        PIP_CACHE_DIR=str(cache / "pip"),
        UV_PYTHON_DOWNLOADS="never",  # the platform's interpreter, never one from the network
        PYTHONNOUSERSITE="1",
    )
    env.pop("VIRTUAL_ENV", None)
    for pip_name, uv_name in PIP_TO_UV.items():
        if env.get(pip_name) and uv_name not in env:
            values = env[pip_name].split()  # pip: space-separated; uv's find-links: commas
            env[uv_name] = (",".join if uv_name == "UV_FIND_LINKS" else " ".join)(values)
    return env


def _run(unit: AppUnit, cmd: list[str], cwd: Path, env: dict[str, str], what: str) -> None:
    try:
        proc = subprocess.run(
            cmd,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=INSTALL_TIMEOUT_S,
            check=False,
            preexec_fn=_readable_by_all,  # the tests gate's sandbox user reads the environment
        )
    except FileNotFoundError as exc:
        raise _error(unit, f"{what}: {cmd[0]} is not installed ({exc})", "install it") from None
    except subprocess.TimeoutExpired:
        raise _error(
            unit, f"{what} ran longer than {INSTALL_TIMEOUT_S:.0f}s", "check the index"
        ) from None
    if proc.returncode != 0:
        output = (proc.stdout + proc.stderr).strip().splitlines()[-OUTPUT_TAIL:]
        raise _error(
            unit,
            f"{what} failed (exit {proc.returncode}): {' '.join(cmd)}\n" + "\n".join(output),
            "fix the dependency files so that they install (the output above names the package), "
            "then push a new commit",
        )


def _readable_by_all() -> None:
    os.umask(0o022)


def _install_python(
    unit: AppUnit, source: Path, the_plan: Plan, path: Path, home: Home, installer: str
) -> None:
    env = _installer_env(home)
    base = _base_python()
    names = [Path(f).name for f in the_plan.files]
    if "uv.lock" in names:
        if installer != "uv":
            raise _error(
                unit, "uv.lock installs only with uv, which is not installed", "install uv"
            )
        uv = uv_binary() or "uv"
        lock = next(f for f in the_plan.files if Path(f).name == "uv.lock")
        project = source / Path(lock).parent
        env.update(UV_PROJECT_ENVIRONMENT=str(path))
        cmd = [uv, "sync", "--frozen", "--no-install-project", "--python", base]
        _run(unit, cmd, project, env, "uv sync")
        return
    with tempfile.TemporaryDirectory(prefix="ud-requirements-") as tmp:
        requirement_args: list[str] = []
        for i, name in enumerate(the_plan.files):
            if Path(name).name == "pyproject.toml":
                listed = _pyproject_requirements(source / name)
                if listed:
                    spec = Path(tmp) / f"pyproject-{i}.txt"
                    spec.write_text("\n".join(listed) + "\n")
                    requirement_args += ["-r", str(spec)]
            else:
                requirement_args += ["-r", str(source / name)]
        _install_requirements(unit, source, path, env, base, installer, requirement_args)


def _install_requirements(
    unit: AppUnit,
    source: Path,
    path: Path,
    env: dict[str, str],
    base: str,
    installer: str,
    requirement_args: list[str],
) -> None:
    if installer == "uv":
        uv = uv_binary() or "uv"
        _run(unit, [uv, "venv", "--quiet", "--python", base, str(path)], source, env, "uv venv")
        if requirement_args:
            cmd = [
                uv,
                "pip",
                "install",
                "--python",
                str(path / "bin" / "python"),
                *requirement_args,
            ]
            _run(unit, cmd, source, env, "uv pip install")
    else:
        _run(unit, [base, "-m", "venv", str(path)], source, env, "python -m venv")
        if requirement_args:
            cmd = [str(path / "bin" / "python"), "-m", "pip", "install", "-q", *requirement_args]
            _run(unit, cmd, source, env, "pip install")


def _pyproject_requirements(pyproject: Path) -> list[str]:
    """The requirements a pyproject.toml declares: [project] dependencies, every optional extra
    and every [dependency-groups] list (the project itself is not installed: its code is the
    commit's)."""
    data = tomllib.loads(pyproject.read_text())
    project = data.get("project", {})
    listed = list(project.get("dependencies", []))
    for extra in project.get("optional-dependencies", {}).values():
        listed += extra
    for group in data.get("dependency-groups", {}).values():
        listed += [item for item in group if isinstance(item, str)]
    own = _normalized(str(project.get("name", "")))
    return [r for r in dict.fromkeys(listed) if not own or _normalized(r) != own]


def _normalized(requirement: str) -> str:
    """A requirement's project name as PEP 503 compares them (`My_App[x]>=1` -> `my-app`)."""
    match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement)
    return re.sub(r"[-_.]+", "-", match.group(1)).lower() if match else ""


def _base_python() -> str:
    """The interpreter the platform's own (possibly virtual) environment was made from."""
    base = getattr(sys, "_base_executable", None) or sys.executable
    return base if os.path.exists(base) else sys.executable


def _install_node(unit: AppUnit, source: Path, the_plan: Plan, path: Path, home: Home) -> None:
    npm = shutil.which("npm")
    if npm is None:
        raise _error(unit, "npm is not installed on this machine", "install Node.js and npm")
    manifest, lock = (source / f for f in the_plan.files[:2])
    path.mkdir(parents=True)
    path.chmod(0o755)  # the tests gate's sandbox user enters it (ud's own umask is 077)
    package = json.loads(manifest.read_text())
    scripts = package.get("scripts") or {}
    # The app's own install scripts expect its source beside them; here there is only the lock.
    package["scripts"] = {k: v for k, v in scripts.items() if k not in NPM_LIFECYCLE}
    (path / "package.json").write_text(json.dumps(package, indent=2))
    shutil.copy2(lock, path / "package-lock.json")
    env = _installer_env(home)
    env["npm_config_cache"] = str(home.root / "cache" / "npm")
    cmd = [npm, "ci", "--no-audit", "--no-fund", "--prefer-offline", "--loglevel=error"]
    _run(unit, cmd, path, env, "npm ci")


def _ready(path: Path) -> dict | None:
    try:
        return json.loads((path / READY).read_text())
    except (OSError, ValueError):
        return None


def _error(unit: AppUnit, problem: str, remedy: str) -> UDError:
    return UDError("UD-APP-DEPS", f"unit {unit.name}: {problem}", remedy)
