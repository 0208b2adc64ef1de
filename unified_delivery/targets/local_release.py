"""The embedded app target: release directories on this machine, switched atomically.

Per unit and environment, under `<home>/releases/<unit>/<env>/`:

    releases/<version>/   a copy of the built source, one per version
    current               symlink to releases/<version>, replaced atomically
    state.json            current and previous version, port, pid, history
    service.log           the service's stdout and stderr, appended

The new release is started and health-checked *before* `current` moves, so a release
that does not come up never becomes current: its process is killed, the previous one is
started again on its old port, and the deploy raises TargetError.

POSIX only: services run in their own session so the whole process group can be stopped.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from pydantic import Field

from unified_delivery.errors import TargetError
from unified_delivery.home import Home
from unified_delivery.targets.base import Artifact, Deployment, DeployTarget, Health, Log, _quiet
from unified_delivery.targets.state_files import TMP_MARK, locked, read_json, write_json

KEEP_RELEASES = 5
HISTORY_LIMIT = 100
STOP_GRACE_S = 5.0
HEALTH_TIMEOUT_S = 2.0
LOG_TAIL_LINES = 20
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,127}$")

# Popen objects of the services this process started, so that a service that dies is
# reaped (not left a zombie that still looks alive) and no ResourceWarning is raised.
_CHILDREN: dict[int, subprocess.Popen] = {}


@dataclass(frozen=True)
class _Paths:
    root: Path  # <home>/releases/<unit>/<env>
    home: Path

    @property
    def releases(self) -> Path:
        return self.root / "releases"

    @property
    def current(self) -> Path:
        return self.root / "current"

    @property
    def state(self) -> Path:
        return self.root / "state.json"

    @property
    def log(self) -> Path:
        return self.root / "service.log"

    @property
    def pending(self) -> Path:
        """The process of a deploy still proving itself; left behind only if that deploy was killed."""
        return self.root / "pending.json"

    def release(self, version: str) -> Path:
        return self.releases / version


class _Failure(Exception):
    """A release that did not come up; becomes a TargetError once the old one is back."""

    def __init__(self, code: str, reason: str):
        super().__init__(reason)
        self.code = code
        self.reason = reason


class LocalReleaseTarget(DeployTarget):
    """Deploys `app` units as local release directories with a service on a local port."""

    home: str = Field(
        default="",
        description="Home directory holding `releases/`; empty means the current home ($UD_HOME or .ud), read at call time.",
    )

    # ---- the DeployTarget interface -------------------------------------------------

    def deploy(self, unit: Any, env: str, artifact: Artifact, log: Log = _quiet) -> Deployment:
        _check_name("environment", env)
        _check_name("version", artifact.version)
        if getattr(unit, "kind", None) != "app" or artifact.unit != unit.name:
            raise TargetError(
                "UD-TARGET-ARTIFACT",
                f"LocalReleaseTarget deploys app units; got a {getattr(unit, 'kind', type(unit).__name__)!r} unit "
                f"{getattr(unit, 'name', '?')!r} with an artifact of unit {artifact.unit!r}.",
                "Route only app units to this target and deploy the artifact built for that unit.",
            )
        paths = self._paths(unit.name, env)
        paths.releases.mkdir(parents=True, exist_ok=True)
        with locked(paths.root):
            _reap_pending(paths, log)
            _materialise(paths, artifact, log)
            return self._start_release(unit, env, paths, artifact.version, "deploy", log)

    def rollback(self, unit: Any, env: str, to_version: str | None = None, log: Log = _quiet) -> Deployment:
        _check_name("environment", env)
        paths = self._paths(unit.name, env)
        if not paths.root.is_dir():
            raise _no_release(unit.name, env, to_version, [])
        with locked(paths.root):
            _reap_pending(paths, log)
            state = read_json(paths.state)
            target = to_version or (state or {}).get("previous_version")
            available = self.versions(unit, env)
            if not target or target not in available:
                raise _no_release(unit.name, env, target, available)
            return self._start_release(unit, env, paths, target, "rollback", log)

    def status(self, unit: Any, env: str) -> Deployment | None:
        paths = self._paths(_name(unit), env)
        state = read_json(paths.state)
        if state is None:
            return None
        return Deployment(
            unit=state["unit"],
            env=state["env"],
            version=state["version"],
            deployed_at=state["deployed_at"],
            previous_version=state.get("previous_version"),
            details={
                "port": state.get("port"),
                "pid": state.get("pid"),
                "url": _url(state.get("port")),
                "running": _running(state.get("pid"), state.get("pid_token")),
                "release_dir": str(paths.release(state["version"])),
                "log": str(paths.log),
            },
        )

    def health(self, unit: Any, env: str) -> Health:
        name = _name(unit)
        deployment = self.status(name, env)
        if deployment is None:
            return Health(False, f"nothing was ever deployed to {name}/{env}")
        details: dict[str, Any] = {"version": deployment.version, **deployment.details}
        if not deployment.details["running"]:
            return Health(False, f"{name}/{env} version {deployment.version} is not running (see {details['log']})", details)
        url = deployment.details["url"] + _health_path(unit)
        status, body = _probe(url, HEALTH_TIMEOUT_S)
        details.update(health_url=url, status_code=status, body=_parse_body(body))
        if status == 200:
            return Health(True, f"{name}/{env} version {deployment.version} answers 200 on {url}", details)
        return Health(False, f"{name}/{env} version {deployment.version}: {url} answered {status or body}", details)

    def versions(self, unit: Any, env: str) -> list[str]:
        releases = self._paths(_name(unit), env).releases
        if not releases.is_dir():
            return []
        dirs = [p for p in releases.iterdir() if p.is_dir() and TMP_MARK not in p.name]
        dirs.sort(key=lambda p: (p.stat().st_mtime_ns, p.name), reverse=True)
        return [p.name for p in dirs]

    # ---- stopping (ud down, tests) ----------------------------------------------------

    def stop(self, unit: Any, env: str) -> bool:
        """Stop the service of `unit` in `env`; True when one was running. `current` is kept."""
        paths = self._paths(_name(unit), env)
        if not paths.state.exists() and not paths.pending.exists():
            return False
        with locked(paths.root):
            _reap_pending(paths, _quiet)
            state = read_json(paths.state)
            if state is None:
                return False
            was_running = _stop_process(state.get("pid"), state.get("pid_token"))
            if state.get("pid") is not None:
                state.update(pid=None, pid_token=None)
                write_json(paths.state, state)
            return was_running

    def stop_all(self) -> list[str]:
        """Stop every service under this home; returns the `unit/env` pairs that were running."""
        root = self._home() / "releases"
        stopped = []
        for env_dir in sorted({f.parent for pattern in ("*/*/state.json", "*/*/pending.json") for f in root.glob(pattern)}):
            unit, env = env_dir.parent.name, env_dir.name
            if self.stop(unit, env):
                stopped.append(f"{unit}/{env}")
        return stopped

    # ---- internals --------------------------------------------------------------------

    def _home(self) -> Path:
        return Path(self.home).expanduser().resolve() if self.home else Home.current().root

    def _paths(self, unit_name: str, env: str) -> _Paths:
        home = self._home()
        return _Paths(root=home / "releases" / unit_name / env, home=home)

    def _start_release(self, unit: Any, env: str, paths: _Paths, version: str, action: str, log: Log) -> Deployment:
        """Stop what runs, start `version`, and switch to it only once it is healthy."""
        state = read_json(paths.state)
        was_running = bool(state) and _running(state.get("pid"), state.get("pid_token"))
        if was_running:
            log(f"stopping {unit.name}/{env} version {state['version']} (pid {state['pid']})")
            _stop_process(state["pid"], state.get("pid_token"))
        port = _pick_port(unit.service.ports.get(env))
        proc: subprocess.Popen | None = None
        offset = paths.log.stat().st_size if paths.log.exists() else 0
        try:
            log(f"starting {unit.name}/{env} version {version} on port {port}")
            proc, offset = _spawn(unit, env, paths, version, port)
            write_json(paths.pending, {"pid": proc.pid, "pid_token": _start_token(proc.pid), "version": version})
            _await_healthy(unit, proc, port)
            previous = (state or {}).get("version")
            if previous == version:  # a redeploy of the same version keeps the rollback point
                previous = state.get("previous_version")
            now = _now()
            history = [*(state or {}).get("history", []), {"version": version, "deployed_at": now, "action": action}]
            new_state = {
                "unit": unit.name,
                "env": env,
                "version": version,
                "previous_version": previous,
                "deployed_at": now,
                "port": port,
                "pid": proc.pid,
                "pid_token": _start_token(proc.pid),
                "history": history[-HISTORY_LIMIT:],
            }
            _switch_current(paths, version)
            try:
                write_json(paths.state, new_state)
            except BaseException:
                if state:
                    _switch_current(paths, state["version"])
                else:
                    paths.current.unlink(missing_ok=True)
                raise
        except _Failure as failure:
            _stop_process(proc.pid if proc else None, None)
            paths.pending.unlink(missing_ok=True)
            tail = _log_tail(paths.log, offset)  # before the restarted old version writes to the log
            note = self._restore(unit, env, paths, state, was_running, log)
            raise TargetError(
                failure.code,
                f"{unit.name}/{env}: version {version} did not come up: {failure.reason}. {note}\n"
                f"Last lines of {paths.log}:\n{tail}",
                f"Read {paths.log}, fix the service so that it answers 200 on {unit.service.health_path} within "
                f"{unit.service.startup_timeout_s:g}s, then deploy a new version. Nothing was switched.",
            ) from None
        except BaseException:
            _stop_process(proc.pid if proc else None, None)
            paths.pending.unlink(missing_ok=True)
            self._restore(unit, env, paths, state, was_running, log)
            raise
        paths.pending.unlink(missing_ok=True)
        _prune(paths, keep={version, previous})
        log(f"{unit.name}/{env} now runs version {version} on {_url(port)}")
        return Deployment(
            unit=unit.name,
            env=env,
            version=version,
            deployed_at=new_state["deployed_at"],
            previous_version=previous,
            details={"port": port, "pid": proc.pid, "url": _url(port), "release_dir": str(paths.release(version)), "log": str(paths.log)},
        )

    def _restore(self, unit: Any, env: str, paths: _Paths, state: dict | None, was_running: bool, log: Log) -> str:
        """Start the version that ran before a failed switch again; only pid and port in state.json change."""
        if not state:
            return f"{env} had no previous version, so nothing runs there."
        old = state["version"]
        if not was_running:
            return f"{env} stays on version {old} (it was not running before and was not started)."
        port = state.get("port")
        if not _wait_port_free(port, 2.0):
            port = _pick_port(None)
        log(f"restarting {unit.name}/{env} version {old} on port {port}")
        proc = None
        try:
            proc, _ = _spawn(unit, env, paths, old, port)
            _await_healthy(unit, proc, port)
        except (_Failure, OSError) as failure:
            _stop_process(proc.pid if proc else None, None)
            state.update(pid=None, pid_token=None)
            write_json(paths.state, state)
            return f"{env} stays on version {old}, but it did not come back either ({failure}); it is stopped."
        state.update(pid=proc.pid, pid_token=_start_token(proc.pid), port=port)
        write_json(paths.state, state)
        return f"{env} stays on version {old}, running again on {_url(port)}."


# ---- release directories --------------------------------------------------------------


def _reap_pending(paths: _Paths, log: Log) -> None:
    """A deploy killed before it finished left its new process running, unrecorded: stop it.
    `current` and state.json still name the version from before that deploy."""
    if not paths.pending.exists():
        return
    try:
        pending = json.loads(paths.pending.read_text())
    except ValueError:
        pending = {}
    if _stop_process(pending.get("pid"), pending.get("pid_token")):
        log(f"stopped the process of an interrupted deploy of version {pending.get('version')}")
    paths.pending.unlink(missing_ok=True)


def _materialise(paths: _Paths, artifact: Artifact, log: Log) -> Path:
    dest = paths.release(artifact.version)
    if not dest.is_dir():
        src = Path(artifact.location) if artifact.location else None
        if src is None or not src.is_dir():
            raise TargetError(
                "UD-TARGET-ARTIFACT",
                f"{artifact.unit} version {artifact.version}: artifact location {artifact.location!r} is not a directory.",
                "Build the candidate again; its location must be a directory with the app source.",
            )
        tmp = paths.releases / f"{artifact.version}{TMP_MARK}{secrets.token_hex(4)}"
        log(f"copying {src} to {dest}")
        try:
            shutil.copytree(src, tmp, symlinks=True, ignore=shutil.ignore_patterns(".git"))
            os.rename(tmp, dest)
        except OSError as exc:
            shutil.rmtree(tmp, ignore_errors=True)
            raise TargetError(
                "UD-TARGET-ARTIFACT",
                f"{artifact.unit} version {artifact.version}: could not copy {src} to {dest}: {exc}",
                "Check free disk space and permissions under the home's releases/ directory.",
            ) from exc
    else:
        log(f"reusing release {dest}")
    os.utime(dest)  # copytree keeps the source's mtime; age means "last deployed" here
    return dest


def _switch_current(paths: _Paths, version: str) -> None:
    tmp = paths.root / f"current{TMP_MARK}{secrets.token_hex(4)}"
    os.symlink(Path("releases") / version, tmp)
    os.replace(tmp, paths.current)


def _prune(paths: _Paths, keep: set[str | None]) -> None:
    entries = [p for p in paths.releases.iterdir() if p.is_dir()]
    for stale in [p for p in entries if TMP_MARK in p.name]:  # left by a crash; we hold the lock
        shutil.rmtree(stale, ignore_errors=True)
    releases = sorted((p for p in entries if TMP_MARK not in p.name), key=lambda p: (p.stat().st_mtime_ns, p.name), reverse=True)
    for old in releases[KEEP_RELEASES:]:
        if old.name not in keep:
            shutil.rmtree(old, ignore_errors=True)


# ---- processes ------------------------------------------------------------------------


def _spawn(unit: Any, env: str, paths: _Paths, version: str, port: int) -> tuple[subprocess.Popen, int]:
    """Start `version` from its release dir; returns the process and where its log output begins."""
    values = {
        "{python}": sys.executable,
        "{port}": str(port),
        "{env}": env,
        "{home}": str(paths.home),
        "{version}": version,
        "{mlflow_tracking_uri}": Home(paths.home).mlflow_tracking_uri,
    }
    command = [_fill(arg, values) for arg in unit.service.command]
    proc_env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc_env.update(PORT=str(port), UD_ENV=env, UD_VERSION=version, UD_UNIT=unit.name, UD_HOME=str(paths.home))
    proc_env.update({key: _fill(value, values) for key, value in unit.service.env.items()})
    for pid in [pid for pid, child in _CHILDREN.items() if child.poll() is not None]:
        del _CHILDREN[pid]
    with open(paths.log, "ab") as out:
        out.write(f"==== {_now()} {unit.name}/{env} version {version} port {port}: {' '.join(command)}\n".encode())
        out.flush()
        offset = out.tell()
        try:
            proc = subprocess.Popen(
                command,
                cwd=paths.release(version),
                env=proc_env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        except OSError as exc:
            raise _Failure("UD-TARGET-START", f"could not run {command[0]!r}: {exc}") from exc
    _CHILDREN[proc.pid] = proc
    return proc, offset


def _await_healthy(unit: Any, proc: subprocess.Popen, port: int) -> None:
    url = _url(port) + unit.service.health_path
    timeout = unit.service.startup_timeout_s
    deadline = time.monotonic() + timeout
    last = "no answer"
    while True:
        code = proc.poll()
        if code is not None:
            raise _Failure("UD-TARGET-START", f"the process exited with code {code} before {url} answered")
        status, body = _probe(url, min(1.0, max(0.1, deadline - time.monotonic())))
        if status == 200:
            return
        last = f"HTTP {status}: {body[:200]}" if status else body
        if time.monotonic() >= deadline:
            raise _Failure("UD-TARGET-HEALTH", f"{url} did not answer 200 within {timeout:g}s (last: {last})")
        time.sleep(0.1)


def _stop_process(pid: int | None, token: str | None) -> bool:
    """SIGTERM the process group, SIGKILL after STOP_GRACE_S; False when it was not running."""
    if pid is None or not _running(pid, token):
        _CHILDREN.pop(pid, None)
        return False
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE_S
    while _running(pid, None) and time.monotonic() < deadline:
        time.sleep(0.05)
    # Anything left in the group (the leader after the grace period, or children it left behind).
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)
    child = _CHILDREN.pop(pid, None)
    if child is not None:
        child.wait()
    return True


def _running(pid: int | None, token: str | None) -> bool:
    """Whether `pid` is alive, not a zombie, and (when `token` is known) the process we started."""
    if pid is None:
        return False
    child = _CHILDREN.get(pid)
    if child is not None:
        return child.poll() is None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return False  # another user's process: the pid was reused, ours is gone
    stat = _proc_stat(pid)
    if stat is None:
        return True  # no /proc: trust the pid
    if stat[0] == "Z":
        return False
    return token is None or stat[19] == token


def _start_token(pid: int) -> str | None:
    """The process's start time (from /proc), so a reused pid is never taken for ours."""
    stat = _proc_stat(pid)
    return stat[19] if stat else None


def _proc_stat(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return raw[raw.rindex(")") + 2 :].split()  # fields from the state on; the name may hold spaces


# ---- ports and HTTP -------------------------------------------------------------------


def _pick_port(preferred: int | None) -> int:
    if preferred and _port_free(preferred):
        return preferred
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # TIME_WAIT from the old service is fine
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _wait_port_free(port: int | None, seconds: float) -> bool:
    if not port:
        return False
    deadline = time.monotonic() + seconds
    while not _port_free(port):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
    return True


_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never send 127.0.0.1 through a proxy


def _probe(url: str, timeout: float) -> tuple[int | None, str]:
    """GET `url`: (status, body), or (None, why) when nothing answered."""
    try:
        with _OPENER.open(url, timeout=timeout) as response:
            return response.status, response.read(65536).decode("utf-8", "replace")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(65536).decode("utf-8", "replace")
    except (urllib.error.URLError, http.client.HTTPException, OSError) as exc:
        return None, str(getattr(exc, "reason", exc))


def _parse_body(body: str) -> Any:
    try:
        return json.loads(body)
    except ValueError:
        return body


def _url(port: int | None) -> str | None:
    return f"http://127.0.0.1:{port}" if port else None


# ---- small helpers --------------------------------------------------------------------


def _fill(value: str, values: dict[str, str]) -> str:
    for placeholder, replacement in values.items():
        value = value.replace(placeholder, replacement)
    return value


def _log_tail(log: Path, offset: int) -> str:
    try:
        with open(log, "rb") as handle:
            handle.seek(offset)
            text = handle.read().decode("utf-8", "replace")
    except OSError:
        return "(no log)"
    lines = text.rstrip("\n").splitlines()[-LOG_TAIL_LINES:]
    return "\n".join(lines) if lines else "(the service wrote nothing)"


def _check_name(what: str, value: str) -> None:
    if not _SAFE_NAME.match(value or "") or TMP_MARK in value:
        raise TargetError(
            "UD-TARGET-ARTIFACT",
            f"{what} {value!r} cannot name a release directory.",
            f"Use letters, digits, '.', '_', '+' and '-' for the {what} (a commit SHA or a tag).",
        )


def _no_release(unit: str, env: str, version: str | None, available: list[str]) -> TargetError:
    wanted = f"version {version}" if version else "a previous version"
    return TargetError(
        "UD-TARGET-NO-RELEASE",
        f"{unit}/{env}: there is no release for {wanted}; available: {', '.join(available) or 'none'}.",
        "Roll back to one of the available versions, or deploy the version you want again.",
    )


def _name(unit: Any) -> str:
    return unit if isinstance(unit, str) else unit.name


def _health_path(unit: Any) -> str:
    return "/health" if isinstance(unit, str) else unit.service.health_path


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
