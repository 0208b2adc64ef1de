"""The deploy target interface: one signature, one implementation per kind and place.

A target is a Dagster ConfigurableResource, so the environment picks the instance in one
place (`resources/`). Heavy clients (MLflow, dbt, Kubernetes) are imported inside the
methods, never at module import.

Contract every implementation keeps: `deploy` either leaves the environment on the new
version or, on any failure, on the version it had before, and then raises TargetError.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Callable

import dagster as dg


@dataclass(frozen=True)
class Artifact:
    """A built candidate: what a target deploys."""

    unit: str
    kind: str
    version: str
    digest: str = ""  # content digest of the artifact (commit tree, model URI hash, dbt checksum)
    location: str = ""  # where the built artifact lives (a directory, a models:/ URI, a schema)
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Deployment:
    """What an environment runs now."""

    unit: str
    env: str
    version: str
    deployed_at: str  # ISO-8601 UTC
    previous_version: str | None = None
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Health:
    healthy: bool
    message: str
    details: dict[str, Any] = field(default_factory=dict)


Log = Callable[[str], None]


def _quiet(_: str) -> None:
    return None


class DeployTarget(dg.ConfigurableResource, ABC):
    """Deploys, rolls back and reports one kind of unit in one kind of place."""

    @abstractmethod
    def deploy(self, unit: Any, env: str, artifact: Artifact, log: Log = _quiet) -> Deployment:
        """Make `artifact` what `env` runs; on failure keep the previous version and raise TargetError."""

    @abstractmethod
    def rollback(self, unit: Any, env: str, to_version: str | None = None, log: Log = _quiet) -> Deployment:
        """Return `env` to `to_version`, or to the version it ran before the current one."""

    @abstractmethod
    def status(self, unit: Any, env: str) -> Deployment | None:
        """What `env` runs now, or None when nothing was ever deployed there."""

    @abstractmethod
    def health(self, unit: Any, env: str) -> Health:
        """Whether what `env` runs is healthy now."""

    def versions(self, unit: Any, env: str) -> list[str]:
        """Versions that `env` can be rolled back to, newest first (default: unknown)."""
        return []
