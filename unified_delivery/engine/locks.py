"""One promotion of a unit to an environment at a time: file locks under the home, or advisory
locks in the ledger's Postgres when the ledger is shared between machines."""

from __future__ import annotations

import fcntl
import hashlib
import time
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

from ..errors import EXIT_TARGET, UDError
from ..home import Home

if TYPE_CHECKING:
    from ..units import Unit


@contextmanager
def _file_lock(path: Path, what: str, timeout_s: float) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as fh:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise UDError(
                        "UD-LOCKED",
                        f"another {what} is still running",
                        "wait for it to finish and try again",
                        exit_code=EXIT_TARGET,
                    ) from None
                time.sleep(0.2)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


@contextmanager
def unless_busy(home: Home, unit: Unit, env: str) -> Iterator[bool]:
    """The deploy lock of `unit` in `env` if it is free now (True), without waiting (False)."""
    path = home.locks / f"{unit.name}.{env}.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def deploy_under_way(home: Home, unit_name: str, env: str) -> bool:
    """Whether a deploy of the unit in `env` holds its lock now (a look: the lock is let go)."""
    path = home.locks / f"{unit_name}.{env}.lock"
    if not path.exists():
        return False
    with open(path, "a") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(fh, fcntl.LOCK_UN)
        return False


def env_lock(home: Home, unit: Unit, env: str, timeout_s: float = 600):
    """Two deploys of one unit and environment never interleave: the second waits, then is
    refused."""
    return _file_lock(
        home.locks / f"{unit.name}.{env}.lock", f"promotion of {unit.name} to {env}", timeout_s
    )


# The run locks this process holds: (unit, env) -> who took it (a run id, or "caller" for a run
# `ud` or the Python API executes in this process, which takes it before the run exists).
_HELD: dict[tuple[str, str], tuple[str, Any]] = {}
CALLER = "caller"


def _advisory_key(unit: str, env: str) -> int:
    digest = hashlib.sha256(f"ud-run:{unit}:{env}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


@contextmanager
def _advisory_lock(engine: Any, unit: str, env: str, what: str, timeout_s: float) -> Iterator[None]:
    """A Postgres session advisory lock on its own connection: every machine that shares the
    database sees it, and it goes with the connection when the process holding it dies."""
    import sqlalchemy as sa

    key = _advisory_key(unit, env)
    conn = engine.connect()
    try:
        deadline = time.monotonic() + timeout_s
        while not conn.execute(sa.text("SELECT pg_try_advisory_lock(:k)"), {"k": key}).scalar():
            conn.rollback()
            if time.monotonic() > deadline:
                raise UDError(
                    "UD-LOCKED",
                    f"another {what} is still running",
                    "wait for it to finish (ud runs) and try again",
                    exit_code=EXIT_TARGET,
                )
            time.sleep(0.2)
        conn.commit()
        try:
            yield
        finally:
            conn.execute(sa.text("SELECT pg_advisory_unlock(:k)"), {"k": key})
            conn.commit()
    finally:
        conn.close()


def _lock(home: Home, unit: str, env: str, engine: Any, timeout_s: float):
    what = f"run of {unit} to {env}"
    if engine is not None and engine.dialect.name == "postgresql":
        return _advisory_lock(engine, unit, env, what, timeout_s)
    return _file_lock(home.locks / f"{unit}.{env}.run.lock", what, timeout_s)


@contextmanager
def run_lock(
    home: Home, unit: str, env: str, timeout_s: float = 1800, *, engine: Any = None
) -> Iterator[None]:
    """A whole run of one unit and environment (build, gates, deploy) at a time, taken by the
    caller of a run it executes in its own process; a separate lock from env_lock, which the
    deploy step takes inside it. With a ledger on Postgres (`engine`), an advisory lock in that
    database, so runs on other machines wait too; else a file under the home."""
    if (unit, env) in _HELD:  # this process holds it already
        yield
        return
    with _lock(home, unit, env, engine, timeout_s):
        _HELD[(unit, env)] = (CALLER, None)
        try:
            yield
        finally:
            _HELD.pop((unit, env), None)


def hold_for_run(
    home: Home, unit: str, env: str, run_id: str, *, engine: Any, log: Any, timeout_s: float = 1800
) -> None:
    """Inside a run, at its first step: the run lock of its unit and environment, held until
    release_for_run (its last step) or the end of the process (a run worker, a Kubernetes Job),
    whichever comes first. Nothing when this process holds it already (the caller, or an
    earlier step of the run)."""
    if (unit, env) in _HELD:
        return
    held = ExitStack()
    try:
        held.enter_context(_lock(home, unit, env, engine, 0))
    except UDError:
        log(f"waiting for the run of {unit} to {env} under way to end (ud runs {unit})")
        held.enter_context(_lock(home, unit, env, engine, timeout_s))
    _HELD[(unit, env)] = (run_id, held)


def release_for_run(unit: str, env: str, run_id: str) -> None:
    """The run lock hold_for_run took for this run, let go (not a caller's)."""
    owner, held = _HELD.get((unit, env), ("", None))
    if owner == run_id and held is not None:
        _HELD.pop((unit, env), None)
        held.close()
