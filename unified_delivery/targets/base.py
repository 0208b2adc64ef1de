"""What every target shares: what it deploys (Artifact), what an environment runs (Deployment),
its health, and BaseTarget, the base class that keeps the contract of `roles.DeployTarget` once
so that each target writes only its own steps.

The contract, kept here for every target:
- names: the environment and the version name a directory, an alias, a schema or an annotation
  somewhere, so both are checked before anything is touched;
- kinds: a target says which kinds of unit it deploys (`kinds`) and refuses any other;
- one deploy or rollback per unit and environment at a time, across processes (`_lock`);
- on any failure the environment keeps the version it had: the step's exception, of any type,
  becomes a TargetError with its cause, and a step that failed after it had already moved the
  environment has it put back (`_restore`) before the error is raised.

A target is a Dagster ConfigurableResource, so the environment picks the instance in one place
(`resources/`). Heavy clients (MLflow, dbt, Kubernetes) are imported inside the methods that use
them, never at module import.
"""

from __future__ import annotations

import contextlib
import re
from abc import ABC, abstractmethod
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any, ClassVar

import dagster as dg

from ..errors import TargetError, UDError
from ..home import Home
from ..redaction import redact_text
from .records import Artifact, Deployment, Health
from .state_files import TMP_MARK, lock_file

if TYPE_CHECKING:
    from ..units import Unit

SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,127}$")


Log = Callable[[str], None]


def _quiet(_: str) -> None:
    return None


def check_name(what: str, value: str) -> None:
    """Refuse an environment or version that could not name a directory, alias or schema."""
    if not SAFE_NAME.match(value or "") or TMP_MARK in value:
        raise TargetError(
            "UD-TARGET-ARTIFACT",
            f"{what} {value!r} cannot name a release, an alias or a schema",
            f"use letters, digits, '.', '_', '+' and '-' for the {what} (a commit SHA or a tag)",
        )


class BaseTarget(dg.ConfigurableResource, ABC):
    """Deploys, rolls back and reports units of some kinds in one kind of place. Subclasses
    implement the steps (`_deploy`, `_rollback`, `status`, `health`, `versions`); `deploy` and
    `rollback` are here, around them, and keep the contract for every target."""

    kinds: ClassVar[tuple[str, ...] | None] = None  # the kinds of unit it deploys; None: any
    # The reader of targets/probes.py that answers `status` as this class does, from the fields
    # `_probe_fields` names; "" (and any subclass, which may read otherwise): none.
    probe_kind: ClassVar[str] = ""

    def probe_spec(self, unit: Unit) -> dict[str, Any] | None:
        """What `status` reads for `unit`, as plain data for the catalog (catalog.py), or None
        when only this target can answer."""
        if not self.probe_kind or "probe_kind" not in type(self).__dict__:
            return None
        fields = self._probe_fields(unit)
        if not all(isinstance(v, (str, int)) for v in fields.values()):
            return None  # e.g. a value still to be resolved from the environment at run time
        return {"probe": self.probe_kind, "unit": unit.name, **fields}

    def _probe_fields(self, unit: Unit) -> dict[str, Any]:
        return {}

    # ---- the contract ------------------------------------------------------------------

    def deploy(self, unit: Unit, env: str, artifact: Artifact, log: Log = _quiet) -> Deployment:
        """Make `artifact` what `env` runs; on any failure keep what it ran, raise TargetError."""
        check_name("environment", env)
        check_name("version", artifact.version)
        self._check_unit(unit, artifact)
        doing = f"{unit.name}/{env}: deploying version {artifact.version}"
        return self._guarded(
            unit, env, doing, log, lambda current: self._deploy(unit, env, artifact, current, log)
        )

    def rollback(
        self, unit: Unit, env: str, to_version: str | None = None, log: Log = _quiet
    ) -> Deployment:
        """Return `env` to `to_version`, or to the version it ran before the current one."""
        check_name("environment", env)
        self._check_unit(unit, None)
        doing = f"{unit.name}/{env}: rolling back to {to_version or 'the previous version'}"
        return self._guarded(
            unit,
            env,
            doing,
            log,
            lambda current: self._rollback(unit, env, to_version, current, log),
        )

    def versions(self, unit: Unit, env: str) -> list[str]:
        """Versions that `env` can be rolled back to, newest first (default: unknown)."""
        return []

    # ---- what each target implements -------------------------------------------------

    @abstractmethod
    def _deploy(
        self, unit: Unit, env: str, artifact: Artifact, current: Deployment | None, log: Log
    ) -> Deployment:
        """Make `artifact` what `env` runs (the lock is held; `current` is what it runs now)."""

    @abstractmethod
    def _rollback(
        self, unit: Unit, env: str, to_version: str | None, current: Deployment | None, log: Log
    ) -> Deployment:
        """Return `env` to `to_version` or to its previous version (the lock is held)."""

    @abstractmethod
    def status(self, unit: Unit, env: str) -> Deployment | None:
        """What `env` runs now, or None when nothing was ever deployed there."""

    @abstractmethod
    def health(self, unit: Unit, env: str) -> Health:
        """Whether what `env` runs is healthy now."""

    def _lock(self, unit: Unit, env: str) -> AbstractContextManager[None]:
        """One deploy or rollback of `unit` in `env` at a time, across processes. Not the engine's
        promotion lock (engine/locks.py), which a deploy step holds around this one."""
        return lock_file(Home.current().locks / f"{unit.name}.{env}.target.lock")

    def _recover(self, unit: Unit, env: str, log: Log) -> None:
        """Finish or undo what a call that was killed left behind (the lock is held)."""

    def _restore(self, unit: Unit, env: str, before: Deployment | None, log: Log) -> None:
        """Put `env` back on `before` after a step failed past its switch (default: roll back)."""
        if before is None:
            raise TargetError(
                "UD-TARGET-FAILED",
                f"{unit.name}/{env} ran nothing before, and "
                f"{type(self).__name__} cannot take a version away",
                f"roll {unit.name} back in {env} or deploy it again",
            )
        self._rollback(unit, env, before.version, self.status(unit, env), log)

    # ---- internals -------------------------------------------------------------------

    def _check_unit(self, unit: Unit, artifact: Artifact | None) -> None:
        kind = getattr(unit, "kind", type(unit).__name__)
        if self.kinds is not None and kind not in self.kinds:
            raise TargetError(
                "UD-TARGET-ARTIFACT",
                f"{type(self).__name__} deploys {' and '.join(self.kinds)} units; "
                f"got a {kind!r} unit {getattr(unit, 'name', '?')!r}",
                f"route only {' and '.join(self.kinds)} units to this target",
            )
        if artifact is not None and artifact.unit != unit.name:
            raise TargetError(
                "UD-TARGET-ARTIFACT",
                f"{unit.name}: the artifact was built for unit {artifact.unit!r}",
                "deploy the artifact built for this unit",
            )

    def _guarded(
        self,
        unit: Unit,
        env: str,
        doing: str,
        log: Log,
        step: Callable[[Deployment | None], Deployment],
    ) -> Deployment:
        try:
            with self._lock(unit, env):
                self._recover(unit, env, log)
                before = self.status(unit, env)
                try:
                    return step(before)
                except Exception as exc:
                    error = self._kept(unit, env, before, exc, doing, log)
                    if error is exc:
                        raise
                    raise error from exc
        except TargetError:
            raise
        except Exception as exc:
            # Taking the lock, recovering or reading the status failed: nothing moved.
            raise as_target_error(exc, doing, f"{env} was not changed") from exc

    def _kept(
        self, unit: Unit, env: str, before: Deployment | None, exc: Exception, doing: str, log: Log
    ) -> TargetError:
        """The error to raise for a failed step, once `env` runs `before` again."""
        kept = f"{env} still runs {before.version}" if before else f"{env} runs nothing, as before"
        error = as_target_error(exc, doing, kept)
        try:
            after = self.status(unit, env)
        except Exception as unreadable:  # noqa: BLE001 - the step's error is the one to report
            return TargetError(
                error.code,
                f"{error.message} (what {env} runs now could not be read: "
                f"{type(unreadable).__name__}: {redact_text(str(unreadable))})",
                error.remediation,
            )
        if _version(after) == _version(before):
            return error
        try:
            self._restore(unit, env, before, _never_raises(log))
            if _version(restored := self.status(unit, env)) != _version(before):
                raise TargetError(
                    "UD-TARGET-FAILED", f"{env} runs {_version(restored)} after the restore", ""
                )
        except Exception as again:  # noqa: BLE001 - reported with the step's error
            return TargetError(
                "UD-TARGET-FAILED",
                f"{error.message}; it had already switched {env} to "
                f"{_version(after)}, and putting back {_version(before) or 'nothing'} failed too: "
                f"{type(again).__name__}: {redact_text(str(again))}",
                f"roll {unit.name} back in {env} (ud rollback {unit.name} --env {env}) once the "
                "cause is fixed",
            )
        _never_raises(log)(
            f"{unit.name}/{env}: the failed step had switched to {_version(after)}; put back "
            f"on {_version(before) or 'nothing'}"
        )
        return error


def as_target_error(exc: Exception, doing: str, kept: str) -> TargetError:
    """A step's failure as a TargetError: its own, a UDError's code, or any exception named."""
    if isinstance(exc, TargetError):
        return exc
    if isinstance(exc, UDError):
        return TargetError(exc.code, exc.message, exc.remediation)
    return TargetError(
        "UD-TARGET-FAILED",
        f"{doing} failed: {type(exc).__name__}: {redact_text(str(exc))}. "
        f"Anything it had started was undone; {kept}.",
        "Fix the cause named here (disk, permissions, processes, the place's client), then "
        "deploy again.",
    )


def _version(dep: Deployment | None) -> str | None:
    return dep.version if dep else None


def _never_raises(log: Log) -> Log:
    """The caller's log for a restore: a log that fails must not stop the putting back."""

    def say(message: str) -> None:
        with contextlib.suppress(Exception):
            log(message)

    return say
