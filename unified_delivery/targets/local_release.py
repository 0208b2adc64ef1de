"""The embedded app target: release directories on this machine, deployed blue-green.

Per unit and environment, under `<home>/releases/<unit>/<env>/`:

    releases/<version>/   a copy of the built source, one per version
    current               symlink to releases/<version>, replaced atomically
    state.json            what runs: version, previous version, port, pid, history
    pending.json          the deploy in progress; left behind only by a deploy that was killed
    service.log           the services' stdout and stderr, appended (setup commands' too)

and, outside the release folders, `<home>/state/<unit>/<env>/`: the app's persistent folder
(`{state_dir}`, also $UD_STATE_DIR), which releases, rollbacks and pruning leave alone.

Before a new release starts, the app's own environment is made ready when its unit declares
`dependencies` (kinds/app/environments.py; {python} is then its interpreter) and its
`service.setup` commands run in the release folder, once per version and environment (a
rollback to a version whose setup ran there does not run it again). A failing setup command
refuses the release (UD-TARGET-SETUP) with its output; the old release serves throughout.

A deploy (and a rollback) never stops what serves before its successor serves. The new
release is started on another free port while the old one keeps serving, and is
health-checked there. Only then are state.json (the commit: status, and so the URL, move to
the new port) and `current` switched. The old release keeps answering for `drain_s` more,
for clients that read its URL just before the switch; then the new release is checked
again and the old one is stopped. A failure before that (the new release exits or is not
healthy in time, the port is invalid, the copy fails, anything unexpected) stops the new
process, puts state.json and `current` back if they had moved, and raises TargetError with
the cause and the new release's last log lines. The old release is never stopped or
restarted by a deploy that fails: it serves throughout, on its own port.

pending.json names the deploy in progress: an id (also in the new process's environment,
as UD_DEPLOY_ID, so a process whose pid was never recorded is still found), the new pid
and port, the old pid, and the state to go back to. When the deploying process is killed,
whatever runs next and finds the lock free (a deploy, rollback, stop, status or health)
reaps it: a deploy whose new release was not yet verified is undone (new process stopped,
state.json and `current` back), one that was is finished (old process stopped).

A preferred port (`service.ports`) is used when it is free. While the old release holds it,
the new one gets a free port, and the preferred port comes back at the next deploy.

POSIX only: services run in their own session so the whole process group can be stopped.
"""

from __future__ import annotations

import contextlib
import errno
import http.client
import json
import os
import secrets
import shlex
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import Field

from unified_delivery.containers import Containers
from unified_delivery.errors import TargetError, UDError
from unified_delivery.home import Home
from unified_delivery.kinds.app.environments import AppEnvironment
from unified_delivery.kinds.app.environments import ensure as ensure_environment
from unified_delivery.kinds.model.drift import LOG_NAME as PREDICTION_LOG
from unified_delivery.targets import container_run, rollout
from unified_delivery.targets.base import Artifact, BaseTarget, Deployment, Health, Log, _quiet
from unified_delivery.targets.container_run import ContainerRun
from unified_delivery.targets.front_door import FrontDoor, Route, nginx_binary
from unified_delivery.targets.ports import bind_problem, free_port
from unified_delivery.targets.probes import CHILDREN as _CHILDREN
from unified_delivery.targets.probes import ReleasePaths as _Paths
from unified_delivery.targets.probes import front_url, release_paths, release_status
from unified_delivery.targets.probes import proc_stat as _proc_stat
from unified_delivery.targets.probes import running as _running
from unified_delivery.targets.probes import service_url as _url
from unified_delivery.targets.state_files import (
    TMP_MARK,
    locked,
    locked_if_free,
    read_json,
    write_json,
)

if TYPE_CHECKING:
    from unified_delivery.kinds.app.unit import AppUnit

KEEP_RELEASES = 5
SERVICE_PASSED_THROUGH = frozenset(
    {"PATH", "LANG", "LANGUAGE", "TZ", "HOME", "USER", "LOGNAME", "TMPDIR"}
)
HISTORY_LIMIT = 100
STOP_GRACE_S = 5.0
HEALTH_TIMEOUT_S = 2.0
VERIFY_TIMEOUT_S = 5.0  # after the switch: how long the new release has to answer 200 again
LOG_TAIL_LINES = 20
DEPLOY_ID_VAR = "UD_DEPLOY_ID"


class _Failure(Exception):
    """A new release that did not come up or did not stay up; becomes a TargetError."""

    def __init__(self, code: str, reason: str, remedy: str = ""):
        super().__init__(reason)
        self.code = code
        self.reason = reason
        self.remedy = remedy


class LocalReleaseTarget(BaseTarget):
    """Deploys `app` units as local release directories with a service on a local port; the
    release store (roles.ReleaseStore) `ud down` stops."""

    kinds = ("app",)
    home: str = Field(
        default="",
        description=(
            "Home directory holding `releases/`; empty means the current home ($UD_HOME or .ud), "
            "read at call time."
        ),
    )
    drain_s: float = Field(
        default=0.5,
        ge=0,
        description="Seconds the old release keeps serving after the switch, for clients that read "
        "its URL just before; then the new release is checked again and the old one stopped.",
    )
    run_images: bool = Field(
        default=True,
        description="Run a release whose candidate has an image (an app with a Containerfile) "
        "as a podman container of that image (targets/container_run.py); False, or without "
        "podman: as a process from its release directory. The deployment's `runtime` says which.",
    )
    probe_kind = "local_release"

    def _probe_fields(self, unit: AppUnit) -> dict[str, Any]:
        return {"home": self.home}

    # ---- the steps of the DeployTarget contract (base.BaseTarget) ----------------------

    def _lock(self, unit: AppUnit, env: str) -> AbstractContextManager[None]:
        return locked(self._paths(unit.name, env).root)  # the lock `stop` and the reaping take too

    def _recover(self, unit: AppUnit, env: str, log: Log) -> None:
        _reap_pending(self._paths(unit.name, env), log)

    def _deploy(
        self, unit: AppUnit, env: str, artifact: Artifact, current: Deployment | None, log: Log
    ) -> Deployment:
        paths = self._paths(unit.name, env)
        paths.releases.mkdir(parents=True, exist_ok=True)
        _materialise(paths, artifact, log)
        _record_image(paths, artifact)
        return self._start_release(unit, env, paths, artifact.version, "deploy", log)

    def _rollback(
        self, unit: AppUnit, env: str, to_version: str | None, current: Deployment | None, log: Log
    ) -> Deployment:
        paths = self._paths(unit.name, env)
        state = read_json(paths.state)
        target = to_version or (state or {}).get("previous_version")
        available = self.versions(unit, env)
        if not target or target not in available:
            raise _no_release(unit.name, env, target, available)
        return self._start_release(unit, env, paths, target, "rollback", log)

    def status(self, unit: AppUnit | str, env: str) -> Deployment | None:
        paths = self._paths(_name(unit), env)
        _reap_if_idle(paths)
        return release_status(paths)

    def health(self, unit: AppUnit | str, env: str) -> Health:
        name = _name(unit)
        deployment = self.status(name, env)
        if deployment is None:
            return Health(False, f"nothing was ever deployed to {name}/{env}")
        details: dict[str, Any] = {"version": deployment.version, **deployment.details}
        if not deployment.details["running"]:
            return Health(
                False,
                f"{name}/{env} version {deployment.version} is not running (see {details['log']})",
                details,
            )
        url = deployment.details["url"] + _health_path(unit)
        status, body = _probe(url, HEALTH_TIMEOUT_S)
        details.update(health_url=url, status_code=status, body=_parse_body(body))
        if status == 200:
            breach = _monitor_breach(unit, self._paths(name, env), deployment, details)
            if breach:
                return Health(
                    False, f"{name}/{env} version {deployment.version}: {breach}", details
                )
            return Health(
                True, f"{name}/{env} version {deployment.version} answers 200 on {url}", details
            )
        return Health(
            False,
            f"{name}/{env} version {deployment.version}: {url} answered {status or body}",
            details,
        )

    def versions(self, unit: AppUnit | str, env: str) -> list[str]:
        releases = self._paths(_name(unit), env).releases
        if not releases.is_dir():
            return []
        dirs = [p for p in releases.iterdir() if p.is_dir() and TMP_MARK not in p.name]
        dirs.sort(key=lambda p: (p.stat().st_mtime_ns, p.name), reverse=True)
        return [p.name for p in dirs]

    # ---- stopping (ud down, tests) ----------------------------------------------------

    def stop(self, unit: AppUnit | str, env: str) -> bool:
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

    def remove(self, unit: AppUnit | str, env: str, log: Log = _quiet) -> list[str]:
        """Stop `env`'s service and delete its release folder and its persistent state: for an
        environment that goes away (a preview, roles.Removable)."""
        name = _name(unit)
        paths = self._paths(name, env)
        removed = []
        if self.stop(name, env):
            removed.append(f"service of {name}/{env}")
        if paths.root.exists():
            shutil.rmtree(paths.root)
            removed.append(str(paths.root))
        state = state_dir(paths.home, name, env)
        if state.exists():
            shutil.rmtree(state)
            removed.append(str(state))
        log(f"{name}/{env} removed: {', '.join(removed) or 'nothing was there'}")
        return removed

    def stop_all(self) -> list[str]:
        """Stop every service under this home; returns the `unit/env` pairs that were running."""
        root = self._home() / "releases"
        stopped = []
        for env_dir in sorted(
            {
                f.parent
                for pattern in ("*/*/state.json", "*/*/pending.json")
                for f in root.glob(pattern)
            }
        ):
            unit, env = env_dir.parent.name, env_dir.name
            if self.stop(unit, env):
                stopped.append(f"{unit}/{env}")
        if FrontDoor(self._home()).stop():
            stopped.append("front door (nginx)")
        return stopped

    # ---- internals --------------------------------------------------------------------

    def _home(self) -> Path:
        return Path(self.home).expanduser().resolve() if self.home else Home.current().root

    def _paths(self, unit_name: str, env: str) -> _Paths:
        return release_paths(self.home, unit_name, env)

    def _start_release(
        self, unit: AppUnit, env: str, paths: _Paths, version: str, action: str, log: Log
    ) -> Deployment:
        """Start `version` next to what runs, switch to it once healthy, then stop the old one."""
        state = read_json(paths.state)
        old = state or {}
        old_running = _running(old.get("pid"), old.get("pid_token"))
        if unit.rollout is not None:
            nginx_binary()  # refused before anything starts
        port = _pick_port(unit, env, version, log)
        deploy_id = secrets.token_hex(8)
        pending: dict[str, Any] = {
            "deploy_id": deploy_id,
            "action": action,
            "version": version,
            "port": port,
            "pid": None,
            "pid_token": None,
            "verified": False,
            "old_pid": old.get("pid") if old_running else None,
            "old_pid_token": old.get("pid_token") if old_running else None,
            "old_state": state,
        }
        write_json(
            paths.pending, pending
        )  # before the process exists, so a kill at any moment is reaped
        proc: subprocess.Popen | None = None
        offset = paths.log.stat().st_size if paths.log.exists() else 0
        try:
            beside = (
                f"; version {old['version']} keeps serving on {_url(old.get('port'))}"
                if old_running
                else ""
            )
            service = _service(unit, env, paths, version, port, log, self.run_images)
            done = [v for v in old.get("setup_done", []) if v != version]
            if unit.service.setup and version in old.get("setup_done", []):
                log(f"setup of version {version} already ran in {env}: not run again")
                done.append(version)
            elif unit.service.setup:
                _run_setup(unit, env, paths, version, service, log)
                done.append(version)
            log(f"starting {unit.name}/{env} version {version} on port {port}{beside}")
            proc, offset = _spawn(unit, env, paths, version, port, deploy_id, service)
            pending.update(pid=proc.pid, pid_token=_start_token(proc.pid))
            write_json(paths.pending, pending)
            _await_healthy(unit, proc, port, unit.service.startup_timeout_s)
            rolled = self._through_front_door(
                unit, env, paths, old, old_running, port, version, action, log
            )
            previous = old.get("version")
            if previous == version:  # a redeploy of the same version keeps the rollback point
                previous = old.get("previous_version")
            now = _now()
            history = [
                *old.get("history", []),
                {"version": version, "deployed_at": now, "action": action},
            ]
            new_state = {
                "unit": unit.name,
                "env": env,
                "version": version,
                "previous_version": previous,
                "deployed_at": now,
                "port": port,
                "pid": proc.pid,
                "pid_token": pending["pid_token"],
                "deploy_id": deploy_id,
                "history": history[-HISTORY_LIMIT:],
                "setup_done": done[-HISTORY_LIMIT:],
                "state_dir": service.values["{state_dir}"],
                "environment": str(service.environment.path) if service.environment else None,
                "runtime": service.runtime,
                "image": service.container.image if service.container else None,
            }
            write_json(
                paths.state, new_state
            )  # the switch: status and its URL name the new release
            _point_current(paths, version)
            log(f"switched {unit.name}/{env} to version {version} on {_url(port)}")
            if old_running:
                time.sleep(
                    self.drain_s
                )  # the old release still answers whoever read its URL just before
            try:
                _await_healthy(unit, proc, port, VERIFY_TIMEOUT_S)
            except _Failure as failure:
                why = (
                    "it answered 200 before the switch but not after it, so it was switched back "
                    f"({failure.reason})"
                )
                raise _Failure(failure.code, why) from None
            pending["verified"] = True
            write_json(paths.pending, pending)  # from here a killed deploy is finished, not undone
        except BaseException as exc:
            tail = _log_tail(paths.log, offset)
            try:
                _undo(paths, pending, log)
            except Exception as undo_exc:
                raise TargetError(
                    "UD-TARGET-FAILED",
                    f"{unit.name}/{env}: version {version} failed ({type(exc).__name__}: {exc}) "
                    f"and undoing it failed too ({type(undo_exc).__name__}: {undo_exc}). "
                    f"{paths.pending} stays, so the next deploy, status or stop undoes it again.",
                    "Fix the cause of the second error, then run `ud status` for this unit and "
                    "environment.",
                ) from undo_exc
            if not isinstance(exc, _Failure):
                raise  # an unexpected exception: deploy() and rollback() turn it into a TargetError
            if exc.code == "UD-ROLLOUT-ABORTED":
                raise TargetError(
                    exc.code,
                    f"{unit.name}/{env}: version {version} was not released: {exc.reason}. "
                    f"{_kept(env, state, old_running)} The steps and their analysis are in "
                    f"{rollout.record_path(paths)} (ud rollout status {unit.name} --env {env}).",
                    "Read the new release's log and the front door's access log "
                    f"({paths.root / 'access.log'}) for the failing requests, fix them and "
                    "deploy a new version; or widen the unit's rollout.analysis bounds if they "
                    "are too tight.",
                ) from None
            if exc.remedy:  # refused before the service started: the cause is all of it
                raise TargetError(
                    exc.code,
                    f"{unit.name}/{env}: version {version} was refused: {exc.reason}\n"
                    f"{_kept(env, state, old_running)}",
                    exc.remedy,
                ) from None
            raise TargetError(
                exc.code,
                f"{unit.name}/{env}: version {version} did not come up: {exc.reason}. "
                f"{_kept(env, state, old_running)}\nLast lines of {paths.log}:\n{tail}",
                f"Read {paths.log}, fix the service so that it answers 200 on "
                f"{unit.service.health_path} within {unit.service.startup_timeout_s:g}s, then "
                "deploy a new version. The previous version kept serving.",
            ) from None
        self._finish(paths, pending, log)
        _prune(paths, keep={version, previous})
        front = front_url(paths)
        log(
            f"{unit.name}/{env} now runs version {version} on {_url(port)}"
            + (f", behind {front}" if front else "")
        )
        return Deployment(
            unit=unit.name,
            env=env,
            version=version,
            deployed_at=new_state["deployed_at"],
            previous_version=previous,
            details={
                "port": port,
                "pid": proc.pid,
                "url": front or _url(port),
                "release_url": _url(port),
                "release_dir": str(paths.release(version)),
                "log": str(paths.log),
                **({"rollout": _rollout_summary(rolled)} if rolled else {}),
                "state_dir": service.values["{state_dir}"],
                **({"environment": str(service.environment.path)} if service.environment else {}),
                "runtime": service.runtime,
                **({"image": service.container.image} if service.container else {}),
            },
        )

    def _through_front_door(
        self,
        unit: AppUnit,
        env: str,
        paths: _Paths,
        old: dict,
        old_running: bool,
        port: int,
        version: str,
        action: str,
        log: Log,
    ) -> dict | None:
        """For a unit with a rollout: its canary, when a deploy replaces a running release (a
        rollback and a first deploy switch at once), then every request to the new release.
        The rollout's record, or None."""
        door = FrontDoor(paths.home)
        if unit.rollout is None:
            if door.retire(paths, unit.name, env):  # the rollout was removed from the unit
                log(f"{unit.name}/{env}: no rollout any more; its front door is gone")
            return None
        front = door.port(paths, unit.service.ports.get(env))
        record = None
        if action == "deploy" and old_running and old.get("port"):
            try:
                record = rollout.run(
                    unit,
                    env,
                    paths,
                    door,
                    stable_port=int(old["port"]),
                    new_port=port,
                    version=version,
                    stable_version=old.get("version"),
                    log=log,
                )
            except rollout.Aborted as aborted:
                raise _Failure("UD-ROLLOUT-ABORTED", f"its canary was aborted: {aborted}") from None
        door.route(paths, unit.name, env, Route.only(port))
        log(f"{unit.name}/{env}: the front door on port {front} sends every request to {version}")
        return record

    @staticmethod
    def _finish(paths: _Paths, pending: dict, log: Log) -> None:
        """The new release serves and was verified: stop the old one. A failure here does not fail
        the deploy (the new version runs); pending.json stays, and whatever runs next finishes
        it."""
        try:
            _complete(paths, pending, log)
        except Exception as exc:  # noqa: BLE001 - logged; the deploy itself succeeded
            log(
                f"stopping the previous release failed ({type(exc).__name__}: {exc}); the next "
                "deploy or status retries"
            )


# ---- interrupted deploys ----------------------------------------------------------------


def _reap_if_idle(paths: _Paths) -> None:
    """Reap a killed deploy, unless a deploy holds the lock (then pending.json is its own)."""
    if not paths.pending.exists():
        return
    with locked_if_free(paths.root) as free:
        if free:
            _reap_pending(paths, _quiet)


def _reap_pending(paths: _Paths, log: Log) -> None:
    """A deploy was killed before it finished (the caller holds the lock): undo it if its new
    release was not verified yet, finish it (stop the old release) if it was."""
    if not paths.pending.exists():
        return
    try:
        pending = json.loads(paths.pending.read_text())
    except ValueError:
        pending = {}
    if pending.get("verified"):
        _complete(paths, pending, log)
    else:
        _undo(paths, pending, log)
        log(
            f"undid an interrupted {pending.get('action', 'deploy')} of version "
            f"{pending.get('version')}"
        )


def _undo(paths: _Paths, pending: dict, log: Log) -> None:
    """Put state.json and `current` back as they were before the deploy in `pending` and stop its
    process."""
    deploy_id = pending.get("deploy_id")
    state = read_json(paths.state)
    if deploy_id and state and state.get("deploy_id") == deploy_id:  # it had switched: switch back
        old = pending.get("old_state")
        if old:
            write_json(paths.state, old)
        else:
            paths.state.unlink(missing_ok=True)
        state = old
    _point_current(paths, state["version"] if state else None)
    # the front door back on what state.json names before the new release stops, so that no
    # request reaches a stopped release (a reap retries it: pending.json is still there)
    _sync_front_door(paths, log)
    pid, token = pending.get("pid"), pending.get("pid_token")
    serving = state and (state.get("pid"), state.get("pid_token")) == (pid, token)
    if pid is not None and not serving and _stop_process(pid, token):
        log(f"stopped the process of version {pending.get('version')} (pid {pid})")
    if deploy_id and _stop_marked(
        deploy_id
    ):  # its pid was never recorded, or it left children behind
        log(f"stopped the processes started for version {pending.get('version')}")
    rollout.interrupted(paths, pending.get("version"))
    paths.pending.unlink(missing_ok=True)


def _complete(paths: _Paths, pending: dict, log: Log) -> None:
    """Finish a switched and verified deploy: stop the release it replaced."""
    state = read_json(paths.state)
    if state:
        _point_current(paths, state["version"])
    old_pid, old_token = pending.get("old_pid"), pending.get("old_pid_token")
    _sync_front_door(paths, log)  # every request to the new release before the old one stops
    if old_pid is not None:
        log(f"stopping the previous release (pid {old_pid})")
        _stop_process(old_pid, old_token)
    paths.pending.unlink(missing_ok=True)


def _sync_front_door(paths: _Paths, log: Log) -> None:
    """An environment behind a front door: its requests to the release state.json names."""
    if not (paths.root / "front.json").exists():
        return
    FrontDoor(paths.home).sync(paths, paths.root.parent.name, paths.root.name)
    log(f"the front door of {paths.root.parent.name}/{paths.root.name} follows state.json")


def _monitor_breach(
    unit: AppUnit | str, paths: _Paths, deployment: Deployment, details: dict
) -> str | None:
    """An app behind a front door is held to its rollout's bounds after the deploy too: what
    its release answered in the front door's last `monitor_s` seconds (details["monitor"])."""
    spec = getattr(unit, "rollout", None)
    port = deployment.details.get("port")
    if spec is None or not spec.monitor_s or not port or not front_url(paths):
        return None
    sample = rollout.recent(paths, int(port), spec.monitor_s, _health_path(unit))
    details["monitor"] = {"window_s": spec.monitor_s, **sample.summary()}
    verdict, why = rollout.judge(spec, sample, final=True)
    if verdict != "failed":
        return None
    return f"over the front door's last {spec.monitor_s:g} s, {why}"


def _rollout_summary(record: dict) -> dict:
    return {
        "status": record["status"],
        "steps": [
            f"{a['weight']}%: {a.get('verdict')} ({a.get('new', {}).get('requests', 0)} requests)"
            for a in record["analysis"]
        ],
    }


def _kept(env: str, state: dict | None, was_running: bool) -> str:
    if not state:
        return f"{env} had no previous version, so nothing runs there."
    if not was_running:
        return (
            f"{env} stays on version {state['version']} (it was not running before and was not "
            "started)."
        )
    return f"{env} still runs version {state['version']} on {_url(state.get('port'))}, untouched."


# ---- release directories --------------------------------------------------------------


def _materialise(paths: _Paths, artifact: Artifact, log: Log) -> Path:
    dest = paths.release(artifact.version)
    if not dest.is_dir():
        src = Path(artifact.location) if artifact.location else None
        if src is None or not src.is_dir():
            raise TargetError(
                "UD-TARGET-ARTIFACT",
                f"{artifact.unit} version {artifact.version}: artifact location "
                f"{artifact.location!r} is not a directory.",
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
                f"{artifact.unit} version {artifact.version}: could not copy {src} to {dest}: "
                f"{exc}",
                "Check free disk space and permissions under the home's releases/ directory.",
            ) from exc
    else:
        log(f"reusing release {dest}")
    os.utime(dest)  # copytree keeps the source's mtime; age means "last deployed" here
    return dest


def _point_current(paths: _Paths, version: str | None) -> None:
    """Make `current` name `version` (None: remove it), atomically; nothing is done if it already
    does."""
    if version is None:
        paths.current.unlink(missing_ok=True)
        return
    link = Path("releases") / version
    with contextlib.suppress(OSError):
        if Path(os.readlink(paths.current)) == link:
            return
    tmp = paths.root / f"current{TMP_MARK}{secrets.token_hex(4)}"
    os.symlink(link, tmp)
    os.replace(tmp, paths.current)


def _prune(paths: _Paths, keep: set[str | None]) -> None:
    entries = [p for p in paths.releases.iterdir() if p.is_dir()]
    for stale in [p for p in entries if TMP_MARK in p.name]:  # left by a crash; we hold the lock
        shutil.rmtree(stale, ignore_errors=True)
    releases = sorted(
        (p for p in entries if TMP_MARK not in p.name),
        key=lambda p: (p.stat().st_mtime_ns, p.name),
        reverse=True,
    )
    for old in releases[KEEP_RELEASES:]:
        if old.name not in keep:
            shutil.rmtree(old, ignore_errors=True)


# ---- processes ------------------------------------------------------------------------


@dataclass(frozen=True)
class _Service:
    """How a release's processes (its setup commands, its service) run: the placeholders'
    values, their environment variables and the app's own environment, if it declares one."""

    values: dict[str, str]
    env: dict[str, str]
    environment: AppEnvironment | None
    container: ContainerRun | None = None  # the release's image, run by podman

    @property
    def runtime(self) -> str:
        return "container" if self.container else "process"

    def argv(self, command: list[str] | None, suffix: str = "") -> list[str]:
        """What runs `command` for this release: itself, or `podman run` of the image (None:
        the image's own command)."""
        if self.container:
            return self.container.argv(sorted(self.env), command, suffix)
        assert command is not None
        return command


def state_dir(home: Path, unit_name: str, env: str) -> Path:
    """The app's persistent folder in `env`: outside the release folders, so a release, a
    rollback and the pruning of old releases leave it alone."""
    return home / "state" / unit_name / env


def _service(
    unit: AppUnit,
    env: str,
    paths: _Paths,
    version: str,
    port: int,
    log: Log,
    run_images: bool = True,
) -> _Service:
    release = paths.release(version)
    state = state_dir(paths.home, unit.name, env)
    state.mkdir(parents=True, exist_ok=True)
    container = _container(unit, env, paths, version, state, log) if run_images else None
    environment = None
    try:  # made when the candidate was built; made again here if it was removed since
        if container is None:  # an image has its own
            environment = ensure_environment(unit, release, Home(paths.home), log)
    except UDError as exc:
        raise _Failure(exc.code, exc.message, exc.remediation) from None
    if environment:
        environment.attach(release)
    python = environment.python if environment and environment.python else sys.executable
    values = {
        "{python}": "python3" if container else python,
        "{port}": str(port),
        "{env}": env,
        "{home}": str(paths.home),
        "{version}": version,
        "{mlflow_tracking_uri}": Home(paths.home).mlflow_tracking_uri,
        "{state_dir}": str(state),
    }
    # An allow-list, not the operator's environment: a deployed commit is the app team's code
    # and gets what its unit declares (`service.env`), never the platform's secrets.
    proc_env = {
        k: v for k, v in os.environ.items() if k in SERVICE_PASSED_THROUGH or k.startswith("LC_")
    }
    proc_env.setdefault("PATH", os.defpath)
    if environment:
        proc_env = environment.environ(proc_env)
    proc_env.update(
        PYTHONUNBUFFERED="1",
        PORT=str(port),
        UD_ENV=env,
        UD_VERSION=version,
        UD_UNIT=unit.name,
        UD_STATE_DIR=str(state),
        # where a serving app logs what it served, for the model's monitor (kinds/model/drift.py)
        UD_PREDICTION_LOG=str(state / PREDICTION_LOG),
    )
    proc_env.update({key: _fill(value, values) for key, value in unit.service.env.items()})
    return _Service(values, proc_env, environment, container)


def _record_image(paths: _Paths, artifact: Artifact) -> None:
    """Which image a version's release runs (images.json), kept for its rollbacks."""
    image = artifact.details.get("image")
    images = read_json(paths.images) or {}
    if image and images.get(artifact.version) != image:
        write_json(paths.images, {**images, artifact.version: image})


def _container(
    unit: AppUnit, env: str, paths: _Paths, version: str, state: Path, log: Log
) -> ContainerRun | None:
    """How `version` runs as a container, when its candidate had an image and podman is here."""
    image = (read_json(paths.images) or {}).get(version)
    if not image:
        return None
    if not container_run.available():
        log(f"podman is not installed: {unit.name}/{env} version {version} runs as a process")
        return None
    containers = Containers.of(Home(paths.home))
    try:
        container_run.pull(containers, image, Home(paths.home))
        container_run.own_state_dir(state, container_run.user_of(containers, image))
    except UDError as exc:
        raise _Failure(exc.code, exc.message, exc.remediation) from None
    log(f"{unit.name}/{env} version {version} runs as a container of {image}")
    name = f"{container_run.NAME_PREFIX}{unit.name}-{env}-{version[:12]}-{secrets.token_hex(3)}"
    run = ContainerRun(image, name, f"{unit.name}/{env}", str(state), containers)
    run.prune()
    return run


def _run_setup(
    unit: AppUnit, env: str, paths: _Paths, version: str, service: _Service, log: Log
) -> None:
    """Run the release's `service.setup` commands in order; _Failure with the failing command's
    output when one exits non-zero or runs out of time."""
    for step in unit.service.setup:
        if isinstance(step, str):  # a shell line: the values it gets are quoted for the shell
            quoted = {k: shlex.quote(v) for k, v in service.values.items()}
            shown = _fill(step, quoted)
            command = ["/bin/sh", "-c", shown]
        else:
            command = [_fill(arg, service.values) for arg in step]
            shown = shlex.join(command)
        command = service.argv(command, suffix="-setup")  # in the image, for a container
        log(f"setup of {unit.name}/{env} version {version}: {shown}")
        with open(paths.log, "ab") as out:
            out.write(
                f"==== {_now()} {unit.name}/{env} version {version} setup: {shown}\n".encode()
            )
            out.flush()
            offset = out.tell()
            try:
                proc = subprocess.Popen(
                    command,
                    cwd=paths.release(version),
                    env=service.container.env(service.env) if service.container else service.env,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            except OSError as exc:
                raise _Failure(
                    "UD-TARGET-SETUP",
                    f"setup command {shown!r} could not start: {exc}",
                    "fix service.setup in the unit's YAML (the program must exist in the release "
                    "or on PATH)",
                ) from exc
            try:
                code = proc.wait(timeout=unit.service.setup_timeout_s)
            except subprocess.TimeoutExpired:
                code = None
            finally:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(proc.pid, signal.SIGKILL)  # what it left behind, or all of it
                proc.wait()
                if service.container:
                    service.container.remove("-setup")
        if code == 0:
            continue
        how = (
            f"ran longer than {unit.service.setup_timeout_s:g}s"
            if code is None
            else f"exited with code {code}"
        )
        raise _Failure(
            "UD-TARGET-SETUP",
            f"setup command {shown!r} {how}; the service was not started. Its output:\n"
            f"{_log_tail(paths.log, offset)}",
            "Fix the setup step (or what it needs: its dependencies, the state in the state "
            "folder) and deploy a new version; the previous version kept serving.",
        )


def _spawn(
    unit: AppUnit,
    env: str,
    paths: _Paths,
    version: str,
    port: int,
    deploy_id: str,
    service: _Service,
) -> tuple[subprocess.Popen, int]:
    """Start `version` from its release dir; returns the process and where its log output begins."""
    # A container runs its image's own command (the Containerfile says how the app starts).
    command = service.argv(
        None if service.container else [_fill(arg, service.values) for arg in unit.service.command]
    )
    proc_env = service.container.env(service.env) if service.container else dict(service.env)
    proc_env[DEPLOY_ID_VAR] = deploy_id
    for pid in [pid for pid, child in list(_CHILDREN.items()) if child.poll() is not None]:
        del _CHILDREN[pid]
    with open(paths.log, "ab") as out:
        out.write(
            (
                f"==== {_now()} {unit.name}/{env} version {version} port {port}: "
                f"{' '.join(command)}\n"
            ).encode()
        )
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


def _await_healthy(unit: AppUnit, proc: subprocess.Popen, port: int, timeout: float) -> None:
    url = f"http://127.0.0.1:{port}{unit.service.health_path}"
    deadline = time.monotonic() + timeout
    last = "no answer"
    while True:
        code = proc.poll()
        if code is not None:
            raise _Failure(
                "UD-TARGET-START", f"the process exited with code {code} before {url} answered"
            )
        status, body = _probe(url, min(1.0, max(0.1, deadline - time.monotonic())))
        if status == 200:
            return
        last = f"HTTP {status}: {body[:200]}" if status else body
        if time.monotonic() >= deadline:
            raise _Failure(
                "UD-TARGET-HEALTH", f"{url} did not answer 200 within {timeout:g}s (last: {last})"
            )
        time.sleep(0.1)


def _stop_process(pid: int | None, token: str | None) -> bool:
    """SIGTERM the process group, SIGKILL after STOP_GRACE_S; False when it was not running."""
    if pid is None:
        return False
    if not _running(pid, token):
        _CHILDREN.pop(pid, None)
        return False
    container = container_run.container_of(pid)  # read while its process still runs
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
    if container:  # stopped through `podman run`, or not (it was killed): gone either way
        container_run.remove(*container)
    return True


def _stop_marked(deploy_id: str) -> bool:
    """Stop every process started by the deploy `deploy_id` (found by UD_DEPLOY_ID in /proc)."""
    marked = _marked(deploy_id)
    for pid in marked:
        with contextlib.suppress(OSError):
            if os.getpgid(pid) == pid:  # a group leader: the service as the target started it
                _stop_process(pid, _start_token(pid))
    for pid in _marked(deploy_id):  # left outside a stopped group (its own session, a dead leader)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
    return bool(marked)


def _marked(deploy_id: str) -> list[int]:
    needle = f"\0{DEPLOY_ID_VAR}={deploy_id}\0".encode()
    found = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            environ = (proc / "environ").read_bytes()
        except OSError:
            continue
        if needle in b"\0" + environ and _running(int(proc.name), None):
            found.append(int(proc.name))
    return found


def _start_token(pid: int) -> str | None:
    """The process's start time (from /proc), so a reused pid is never taken for ours."""
    stat = _proc_stat(pid)
    return stat[19] if stat else None


# ---- ports and HTTP -------------------------------------------------------------------


def _pick_port(unit: AppUnit, env: str, version: str, log: Log) -> int:
    """The preferred port when it is free; any free port when it is in use (by the release
    that serves now, or anything else); TargetError when it cannot be a port at all."""
    preferred = unit.service.ports.get(env)
    if not preferred or unit.rollout is not None:  # with a front door, the preferred port is its
        return free_port()
    if isinstance(preferred, bool) or not isinstance(preferred, int) or not 0 < preferred < 65536:
        raise TargetError(
            "UD-TARGET-PORT",
            f"{unit.name}/{env}: service.ports.{env} is {preferred!r}, not a TCP port (1 to "
            "65535). Nothing was started or stopped.",
            f"Set service.ports.{env} to a port from 1 to 65535, or remove it to get any free "
            "port.",
        )
    problem = bind_problem(preferred)
    if problem is None:
        return preferred
    if problem.errno == errno.EADDRINUSE:
        port = free_port()
        log(f"port {preferred} is in use; version {version} starts on port {port}")
        return port
    raise TargetError(
        "UD-TARGET-PORT",
        f"{unit.name}/{env}: cannot listen on service.ports.{env} = {preferred}: {problem}. "
        "Nothing was started or stopped.",
        "Choose a port this user may listen on (1024 or above for a non-root user) for "
        f"service.ports.{env}.",
    )


_OPENER = urllib.request.build_opener(
    urllib.request.ProxyHandler({})
)  # never send 127.0.0.1 through a proxy


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


def _no_release(unit: str, env: str, version: str | None, available: list[str]) -> TargetError:
    wanted = f"version {version}" if version else "a previous version"
    return TargetError(
        "UD-TARGET-NO-RELEASE",
        f"{unit}/{env}: there is no release for {wanted}; available: "
        f"{', '.join(available) or 'none'}.",
        "Roll back to one of the available versions, or deploy the version you want again.",
    )


def _name(unit: AppUnit | str) -> str:
    return unit if isinstance(unit, str) else unit.name


def _health_path(unit: AppUnit | str) -> str:
    return "/health" if isinstance(unit, str) else unit.service.health_path


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
