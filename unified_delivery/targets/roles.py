"""What a target is and what it can be asked for, as protocols.

`DeployTarget` is the contract the engine, the sensors and the front doors call: deploy, roll
back, status, health, versions. A target gets it, with the shared promises (names, the lock,
the previous version kept on any failure), by subclassing `base.BaseTarget`.

A role is what a kind or a gate needs from a unit's targets beyond that contract: a model
unit's build registers in a `ModelRegistry`, a data unit's build writes into a `Warehouse`,
`ud down` stops what each `ReleaseStore` started. Protocols, not base classes: a target plays
a role by having its methods, and the platform checks at load that a unit's targets play the
roles its kind and gates ask for (`routing.Targets.require`).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    import pandas as pd
    from mlflow import MlflowClient
    from mlflow.entities.model_registry import ModelVersion

    from ..kinds.data.unit import DataUnit
    from ..kinds.model.unit import ModelUnit
    from ..units import Unit
    from .base import Artifact, Deployment, Health, Log


@runtime_checkable
class DeployTarget(Protocol):
    """Deploys, rolls back and reports a unit in one environment of one place."""

    def deploy(self, unit: Unit, env: str, artifact: Artifact, log: Log = ...) -> Deployment:
        """Make `artifact` what `env` runs; on any failure keep what it ran, raise TargetError."""
        ...

    def rollback(
        self, unit: Unit, env: str, to_version: str | None = None, log: Log = ...
    ) -> Deployment:
        """Return `env` to `to_version`, or to the version it ran before the current one."""
        ...

    def status(self, unit: Unit, env: str) -> Deployment | None:
        """What `env` runs now, or None when nothing was ever deployed there."""
        ...

    def health(self, unit: Unit, env: str) -> Health:
        """Whether what `env` runs is healthy now."""
        ...

    def versions(self, unit: Unit, env: str) -> list[str]:
        """Versions `env` can be rolled back to, newest first."""
        ...


@runtime_checkable
class ModelRegistry(Protocol):
    """Where a model unit's versions are registered and looked up (MLflow's registry)."""

    def register(
        self,
        unit: ModelUnit,
        fitted: Any,
        *,
        train: pd.DataFrame,
        holdout_path: Path,
        data_version: str,
        train_seconds: float,
        log: Log = ...,
        principal: str = "",
        run_id: str = "",
    ) -> Artifact:
        """Log a fitted estimator, register it as a new version, and return it as the candidate
        (the training run tagged with the Dagster run `run_id` that trained it)."""
        ...

    def model_version(self, unit: ModelUnit, version: str) -> ModelVersion:
        """A registered version; UDError UD-MODEL-VERSION-NOT-FOUND when there is none."""
        ...

    def client(self) -> MlflowClient:
        """A client on the registry (the registry sensor and the gates read through it)."""
        ...

    def resolved_uri(self) -> str:
        """The tracking and registry URI, defaults resolved."""
        ...

    def activate(self) -> None:
        """Point MLflow's process-wide URIs at this registry (`models:/` URIs then resolve here)."""
        ...


@runtime_checkable
class Warehouse(Protocol):
    """Where a data unit is written, audited and published (dbt, write-audit-publish)."""

    def write(
        self,
        unit: DataUnit,
        version: str,
        *,
        models: list[str],
        log: Log = ...,
        dbt_vars: dict | None = None,
        project: Path | None = None,
    ) -> Artifact:
        """Build the selection into the version's audit schema; nothing readers see changes."""
        ...

    def run_tests(self, unit: DataUnit, artifact: Artifact, log: Log = ...) -> list[dict[str, Any]]:
        """The dbt tests of the selection, run against the candidate's audit schema."""
        ...

    def read(self, unit: DataUnit, env: str, table: str) -> pd.DataFrame:
        """A published table of `env`, as readers see it."""
        ...

    def location(self) -> str:
        """Where the warehouse is, for people: never a secret."""
        ...


@runtime_checkable
class ReleaseStore(Protocol):
    """A target that starts processes of its own (local services): `ud down` stops them."""

    def stop_all(self) -> list[str]:
        """Stop everything it started; returns the `unit/env` pairs that were running."""
        ...


@runtime_checkable
class Removable(Protocol):
    """A target that can remove one environment of a unit altogether: a branch's preview
    (previews.py) when the branch is deleted, merged or expires."""

    def remove(self, unit: Unit, env: str, log: Log = ...) -> list[str]:
        """Stop and delete what `env` holds for `unit`; returns what went (empty: nothing was
        there)."""
        ...


def role_name(role: type) -> str:
    """`ModelRegistry` -> "model registry", for messages."""
    name = role.__name__
    return "".join(f" {c.lower()}" if c.isupper() and i else c.lower() for i, c in enumerate(name))
