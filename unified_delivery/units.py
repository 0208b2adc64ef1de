"""Delivery units: the one shape shared by apps, models and data products.

Declarations are pydantic models with `extra="forbid"`, so a typo in YAML or a decorator
argument is refused at load time with the unit and field named.
"""

from __future__ import annotations

import re
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

DEFAULT_ENVIRONMENTS = ("staging", "production")
CANDIDATE = "candidate"
NAME_RE = re.compile(r"^[a-z][a-z0-9_]*$")


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class GateSpec(Strict):
    """One gate as declared: its type (a registered gate family) and its settings."""

    type: str
    name: str | None = None  # defaults to the type; must be unique within the unit
    stage: str = CANDIDATE  # the stage whose asset the check guards (it gates the next stage)
    settings: dict[str, Any] = Field(default_factory=dict)

    @property
    def check_name(self) -> str:
        return self.name or self.type.replace("-", "_")


class Budget(Strict):
    per_run: float | None = None
    per_month: float | None = None
    currency: str = "USD"


class Policy(Strict):
    """Promotion policy per environment: `automatic` promotes when gates pass, `manual` waits."""

    staging: Literal["automatic", "manual"] = "automatic"
    production: Literal["automatic", "manual"] = "manual"
    soak_seconds: int = 0


class Unit(Strict):
    kind: ClassVar[str] = ""
    name: str
    team: str
    depends_on: list[str] = Field(default_factory=list)
    gates: list[GateSpec] = Field(default_factory=list)
    budget: Budget = Field(default_factory=Budget)
    policy: Policy = Field(default_factory=Policy)
    environments: tuple[str, ...] = DEFAULT_ENVIRONMENTS
    description: str = ""

    @field_validator("name")
    @classmethod
    def _valid_name(cls, v: str) -> str:
        if not NAME_RE.match(v):
            raise ValueError(f"{v!r} is not a valid unit name (lower case letters, digits and _, starting with a letter)")
        return v

    @property
    def stages(self) -> tuple[str, ...]:
        return (CANDIDATE, *self.environments)

    def previous_stage(self, stage: str) -> str | None:
        i = self.stages.index(stage)
        return self.stages[i - 1] if i > 0 else None

    def gates_on(self, stage: str) -> list[GateSpec]:
        return [g for g in self.gates if g.stage == stage]


class ServiceSpec(Strict):
    """How a local target starts an app release. Placeholders: {python} {port} {env} {home}
    {version} {mlflow_tracking_uri}."""

    command: list[str] = Field(default_factory=lambda: ["{python}", "app.py", "--port", "{port}"])
    env: dict[str, str] = Field(default_factory=dict)
    health_path: str = "/health"
    startup_timeout_s: float = 30.0
    ports: dict[str, int] = Field(default_factory=dict)  # preferred port per environment; free port otherwise


class AppUnit(Unit):
    kind: ClassVar[str] = "app"
    repository: str  # a local path or any URL git can clone; may use {home}
    path: str = "."
    branch: str = "main"
    serves: str | None = None  # the model unit whose per-environment version this app serves
    service: ServiceSpec = Field(default_factory=ServiceSpec)
    test_command: list[str] = Field(default_factory=lambda: ["{python}", "-m", "pytest", "-q", "-p", "no:cacheprovider"])


class ModelUnit(Unit):
    kind: ClassVar[str] = "model"
    trains_on: str  # the data unit whose production version is the training data
    table: str | None = None  # relation in the data unit's published schema (default: the data unit's name)
    features: list[str]
    label: str
    holdout_fraction: float = Field(default=0.25, gt=0, lt=1)
    seed: int = 0
    registered_model: str | None = None  # MLflow name (default: the unit name)

    @property
    def model_name(self) -> str:
        return self.registered_model or self.name


class DataUnit(Unit):
    kind: ClassVar[str] = "data"
    project: str  # the dbt project directory
    select: str  # a dbt selection
    publish: list[str] = Field(default_factory=list)  # models published; default: models in the selection


UNIT_KINDS: dict[str, type[Unit]] = {"app": AppUnit, "model": ModelUnit, "data": DataUnit}
