"""Delivery units: the one shape every kind shares (Unit, its gates, budget, policy and
resources). Each kind's own unit model lives in its folder, `kinds/<kind>/unit.py`.

Declarations are pydantic models with `extra="forbid"`, so a typo in YAML or a decorator
argument is refused at load time with the unit and field named. A field's description is
its `Field(description=...)`, which the component schemas and `dg` show.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from .cost import Currency
from .errors import ConfigError
from .soak import MonitorSpec

DEFAULT_ENVIRONMENTS = ("staging", "production")
CANDIDATE = "candidate"
NAME_RE = re.compile(r"^[a-z][a-z0-9_]*$")
# Kubernetes object names (63 characters) and warehouse schemas (Postgres: 63 bytes) are built
# from a unit's name with its environment or version beside it.
MAX_NAME = 40
# Bounds that refuse a typo (a budget of 1e400, a million replicas) where it is parsed, instead
# of a run that fails late without a cause.
MAX_MONEY = 1e12
MAX_REPLICAS = 1000
Money = Annotated[float, Field(ge=0, le=MAX_MONEY, allow_inf_nan=False)]
Port = Annotated[int, Field(ge=1, le=65535)]
QUANTITY_RE = re.compile(r"^[0-9]+(\.[0-9]+)?(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?$")


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class GateSpec(Strict):
    """One gate as declared: its type (a registered gate family) and its settings."""

    type: str = Field(description="a registered gate type (tests, model-metric, cost, ...)")
    name: str | None = Field(
        default=None, description="defaults to the type; must be unique within the unit"
    )
    stage: str = Field(
        default=CANDIDATE,
        description="the stage whose asset the check guards (it gates the next stage)",
    )
    settings: dict[str, Any] = Field(
        default_factory=dict, description="the gate type's own settings"
    )

    @property
    def check_name(self) -> str:
        return self.name or self.type.replace("-", "_")


class Serving(Strict):
    size: str = Field(description="a size of the price table's replica_hour")
    replicas: int = Field(default=1, ge=0, le=MAX_REPLICAS)


class Budget(Strict):
    """What a unit may cost, and the volume it serves, for the cost gate."""

    per_run: Money | None = None
    per_month: Money | None = None
    currency: Currency = "USD"
    runs_per_month: int = Field(
        default=30, ge=0, le=1_000_000, description="builds a month, to project run costs"
    )
    serving: Serving | None = Field(default=None, description="what stays up between builds")
    volume_per_month: float | None = Field(
        default=None,
        gt=0,
        le=1e15,
        allow_inf_nan=False,
        description="predictions, requests or GB a month",
    )
    volume_unit: Literal["predictions", "requests", "gb"] = "predictions"
    max_unit_cost: float | None = Field(
        default=None,
        ge=0,
        le=MAX_MONEY,
        allow_inf_nan=False,
        description="per 1,000 predictions/requests, or per GB",
    )


class Policy(Strict):
    """Promotion policy per environment: `automatic` promotes when gates pass, `manual` waits."""

    staging: Literal["automatic", "manual"] = "automatic"
    production: Literal["automatic", "manual"] = "manual"
    soak_seconds: int = Field(default=0, ge=0, le=30 * 86400, description="at most 30 days")
    self_heal: bool = Field(
        default=False,
        description="put the recorded version back when an environment runs another one "
        "(changed outside the platform); the reconcile sensor does it through ud_rollback",
    )
    approvals: dict[str, Annotated[int, Field(ge=0, le=10)]] = Field(
        default_factory=dict, description="environment -> approvals required (four-eyes)"
    )


class Previews(Strict):
    """Preview environments per branch (docs/previews.md): a push to a branch other than the
    unit's own deploys it to `preview-<branch>`, with the gates of its first environment."""

    enabled: bool = Field(default=True, description="whether pushed branches get previews")
    ttl_hours: float | None = Field(
        default=None,
        gt=0,
        le=24 * 365,
        allow_inf_nan=False,
        description="hours a preview lives after its last push (default: the platform's, 72)",
    )


class Compute(Strict):
    """Kubernetes quantities: cpu "500m" or "2", memory "512Mi"."""

    cpu: str | None = None
    memory: str | None = None

    @field_validator("cpu", "memory")
    @classmethod
    def _quantity(cls, v: str | None) -> str | None:
        if v is not None and not QUANTITY_RE.match(v):
            raise ValueError(f"{v!r} is not a Kubernetes quantity (like 500m, 2, 512Mi, 4Gi)")
        return v


class Resources(Strict):
    """What a container asks for (requests) and may not exceed (limits); GPUs are whole devices."""

    requests: Compute = Field(default_factory=Compute)
    limits: Compute = Field(default_factory=Compute)
    gpu: int = Field(default=0, ge=0, le=64)
    gpu_resource: str = "nvidia.com/gpu"


@dataclass(frozen=True)
class GitSource:
    """Where a unit built at a commit comes from: what the Git sensor watches, `ud hook` hooks
    and `ud info` lists."""

    repository: str  # a local path or a URL git can clone; may use {home}
    branch: str


class Unit(Strict):
    kind: ClassVar[str] = ""
    name: str = Field(
        description="lower case letters, digits and _ (a YAML unit: its folder's name by default)"
    )
    team: str = Field(description="the owner team")
    depends_on: list[str] = Field(default_factory=list, description="units this one is built from")
    gates: list[GateSpec] = Field(
        default_factory=list, description="what must pass before each promotion"
    )
    budget: Budget = Field(default_factory=Budget)
    policy: Policy = Field(default_factory=Policy)
    environments: tuple[str, ...] = Field(
        default=DEFAULT_ENVIRONMENTS, description="in promotion order"
    )
    description: str = ""
    resources: Resources | None = Field(
        default=None,
        description="for the unit's Dagster steps (build, training) when runs go to Kubernetes",
    )
    previews: Previews = Field(
        default_factory=Previews, description="preview environments for pushed branches"
    )
    targets: dict[str, str] = Field(
        default_factory=dict,
        description="The deploy target of an environment, over the platform's for this kind: "
        "environment -> the resource key of one of the platform's targets (a named target, or "
        "<kind>_target_<env>).",
    )
    monitor: MonitorSpec | None = Field(
        default=None,
        description="after each deploy to production (or `env`), for `soak`: a model's feature "
        "and prediction drift, a data product's row count and freshness; a breach rolls back "
        "(docs/monitors.md)",
    )

    @field_validator("name")
    @classmethod
    def _valid_name(cls, v: str) -> str:
        if not NAME_RE.match(v):
            raise ValueError(
                f"{v[:60]!r} is not a valid unit name (lower case letters, digits and _, starting "
                "with a letter)"
            )
        if len(v) > MAX_NAME:
            raise ValueError(
                f"the unit name {v[:20]}... has {len(v)} characters, at most {MAX_NAME}: "
                "Kubernetes objects and warehouse schemas are named after it"
            )
        return v

    @property
    def stages(self) -> tuple[str, ...]:
        return (CANDIDATE, *self.environments)

    def previous_stage(self, env: str) -> str:
        """The stage `env` is promoted from: the candidate for the first environment."""
        i = self.stages.index(env)
        if i == 0:
            raise ValueError(f"unit {self.name}: nothing precedes the {env} stage")
        return self.stages[i - 1]

    def gates_on(self, stage: str) -> list[GateSpec]:
        return [g for g in self.gates if g.stage == stage]

    # What a unit offers the rest of the platform, asked instead of its kind's name: a kind that
    # has one overrides it.

    def git_source(self) -> GitSource | None:
        """The repository and branch it is built from at a commit (None: not built from Git)."""
        return None

    def registered_model_name(self) -> str | None:
        """Its name in the MLflow registry, whose new versions the registry sensor watches."""
        return None

    def retrains_on(self) -> str | None:
        """The unit whose new production version makes this one due for a new candidate (the
        cascade sensor)."""
        return None


def field_error(
    exc: ValidationError, name: str, source: str, model: type | None = None
) -> ConfigError:
    """One clear line for the first problem; a misspelt field is named as written, with a guess."""
    errors = sorted(exc.errors(), key=lambda e: e["type"] != "extra_forbidden")
    err = errors[0]
    where = (
        ".".join(str(p) if str(p).isprintable() and str(p).strip() else repr(p) for p in err["loc"])
        or "?"
    )
    where = where[:80]
    msg = err["msg"]
    if err["type"] == "extra_forbidden":
        known = list(getattr(model, "model_fields", {})) if len(err["loc"]) == 1 else []
        guess = difflib.get_close_matches(str(err["loc"][-1]), known, n=1)
        msg = "is not a known field" + (f" (did you mean {guess[0]!r}?)" if guess else "")
    shown = (
        name[:80]
        if isinstance(name, str) and name.isprintable() and name.split() == [name]
        else repr(name)[:60]
    )
    msg = " ".join(str(msg).split())  # one line, whatever the value held
    return ConfigError(
        "UD-CONFIG-UNIT",
        f"unit {shown} ({source}): field {where}: {msg}",
        f"fix `{where}` in {source}",
    )
