"""One promotion of a unit to an environment at a time: file locks under the home."""

from __future__ import annotations

import fcntl
import time
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

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


def run_lock(home: Home, unit: str, env: str, timeout_s: float = 1800):
    """A whole run of one unit and environment (build, gates, deploy) at a time, for runs `ud`
    executes; a separate file from env_lock, which the deploy step takes inside it."""
    return _file_lock(home.locks / f"{unit}.{env}.run.lock", f"run of {unit} to {env}", timeout_s)
