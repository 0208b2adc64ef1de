"""What a target deploys (Artifact), what an environment runs (Deployment) and its health, as
plain data: readers that must not import Dagster (targets/probes.py) share them with the targets."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


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
