"""Delivery units: the one shape shared by apps, models and data products.

Declarations are pydantic models with `extra="forbid"`, so a typo in YAML or a decorator
argument is refused at load time with the unit and field named.
"""

from __future__ import annotations

import difflib
import re
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .cost import Currency
from .errors import ConfigError

DEFAULT_ENVIRONMENTS = ("staging", "production")
CANDIDATE = "candidate"
NAME_RE = re.compile(r"^[a-z][a-z0-9_]*$")
ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
TEST_ENV_MAX = 32
QUANTITY_RE = re.compile(r"^[0-9]+(\.[0-9]+)?(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?$")


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


class Serving(Strict):
    size: str  # a size of the price table's replica_hour
    replicas: int = Field(default=1, ge=0)


class Budget(Strict):
    """What a unit may cost, and the volume it serves, for the cost gate."""

    per_run: float | None = Field(default=None, ge=0)
    per_month: float | None = Field(default=None, ge=0)
    currency: Currency = "USD"
    runs_per_month: int = Field(default=30, ge=0)  # builds a month, to project run costs
    serving: Serving | None = None  # what stays up between builds
    volume_per_month: float | None = Field(default=None, gt=0)  # predictions, requests or GB a month
    volume_unit: Literal["predictions", "requests", "gb"] = "predictions"
    max_unit_cost: float | None = Field(default=None, ge=0)  # per 1,000 predictions/requests, or per GB


class Policy(Strict):
    """Promotion policy per environment: `automatic` promotes when gates pass, `manual` waits."""

    staging: Literal["automatic", "manual"] = "automatic"
    production: Literal["automatic", "manual"] = "manual"
    soak_seconds: int = 0
    approvals: dict[str, int] = Field(default_factory=dict)  # environment -> approvals required (four-eyes)


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
    gpu: int = Field(default=0, ge=0)
    gpu_resource: str = "nvidia.com/gpu"


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
    resources: Resources | None = None  # for the unit's Dagster steps (build, training) when runs go to Kubernetes
    targets: dict[str, str] = Field(
        default_factory=dict,
        description="The deploy target of an environment, over the platform's for this kind: "
        "environment -> the resource key of one of the platform's targets (a named target, or "
        "<kind>_target_<env>).")

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
    startup_timeout_s: float = 90.0  # importing MLflow and loading a model on a loaded 2-core machine
    ports: dict[str, int] = Field(default_factory=dict)  # preferred port per environment; free port otherwise


class Autoscaling(Strict):
    min_replicas: int = Field(default=2, ge=1)
    max_replicas: int = Field(default=5, ge=1)
    cpu_target: int = Field(default=70, ge=1, le=100)  # average CPU use, in % of the cpu request

    @model_validator(mode="after")
    def _ordered(self) -> Autoscaling:
        if self.min_replicas > self.max_replicas:
            raise ValueError(f"min_replicas {self.min_replicas} is above max_replicas {self.max_replicas}")
        return self


class KubernetesSpec(Strict):
    """How the Kubernetes target runs an app: a Deployment, a Service and an optional autoscaler.
    `image` and `namespace` may use {version} and {env}."""

    image: str
    namespace: str = "{env}"
    replicas: int = Field(default=2, ge=0)
    port: int = Field(default=8000, ge=1, le=65535)
    health_path: str | None = None  # readiness and liveness probes; default: service.health_path
    resources: Resources = Field(default_factory=Resources)
    hpa: Autoscaling | None = None
    run_as_user: int = Field(default=10001, ge=0)  # 0 is root: the manifest-policy gate refuses it
    privileged: bool = False  # the manifest-policy gate refuses privileged pods
    env: dict[str, str] = Field(default_factory=dict)  # over service.env
    secrets: list[str] = Field(default_factory=list)  # Secrets whose keys become environment variables

    @model_validator(mode="after")
    def _hpa_needs_a_cpu_request(self) -> KubernetesSpec:
        if self.hpa and not self.resources.requests.cpu:
            raise ValueError("hpa scales on CPU use relative to the request: set resources.requests.cpu")
        return self


class AppUnit(Unit):
    kind: ClassVar[str] = "app"
    repository: str  # a local path or any URL git can clone; may use {home}
    path: str = "."
    branch: str = "main"
    serves: str | None = None  # the model unit whose per-environment version this app serves
    service: ServiceSpec = Field(default_factory=ServiceSpec)
    kubernetes: KubernetesSpec | None = None
    test_command: list[str] = Field(default_factory=lambda: ["{python}", "-m", "pytest", "-q", "-p", "no:cacheprovider"])
    test_env: dict[str, str] = Field(
        default_factory=dict, max_length=TEST_ENV_MAX,
        description="Variables the tests gate sets for this app's suite, as literal values: nothing of the "
                    "operator's environment reaches the suite. Not PATH, HOME, TMPDIR, LD_*, UD_* or PYTHON*.")

    @field_validator("test_env")
    @classmethod
    def _test_env(cls, v: dict[str, str]) -> dict[str, str]:
        for name, value in v.items():
            if not ENV_NAME_RE.match(name):
                raise ValueError(f"{name!r} is not an environment variable name (letters, digits and _)")
            if name in ("PATH", "HOME", "TMPDIR") or name.startswith(("LD_", "UD_", "PYTHON")):
                raise ValueError(f"{name!r} is set by the tests gate itself or changes how programs load")
            if len(value) > 4096 or "\0" in value:
                raise ValueError(f"the value of {name} is longer than 4096 characters or holds a NUL")
        return v


class ModelUnit(Unit):
    kind: ClassVar[str] = "model"
    trains_on: str | None = None  # the data unit whose production version is the training data
    dataset: str | None = None  # or a CSV/Parquet file (a sample a data scientist has); versioned by its content
    table: str | None = None  # relation in the data unit's published schema (default: the data unit's name)
    features: list[str]
    label: str
    holdout_fraction: float = Field(default=0.25, gt=0, lt=1)
    seed: int = 0
    registered_model: str | None = None  # MLflow name (default: the unit name)
    extra_columns: list[str] = Field(default_factory=list)  # kept in the held-out set too (e.g. for fairness)

    @model_validator(mode="after")
    def _one_source(self) -> ModelUnit:
        if (self.trains_on is None) == (self.dataset is None):
            raise ValueError("give exactly one of trains_on (a data unit) and dataset (a CSV or Parquet file)")
        return self

    @property
    def model_name(self) -> str:
        return self.registered_model or self.name


VAR_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
# A string var that declares no pattern: a word, never quotes, spaces or SQL punctuation.
DEFAULT_STRING_PATTERN = r"[A-Za-z0-9_.-]{1,64}"


class VarSpec(Strict):
    """One dbt var a data unit accepts from `ud promote --ref`, and what a value must be.

    Values are checked before dbt runs and reach dbt typed: a date as ISO text that is a real
    date, an integer as an integer, a string only when it matches its pattern in full."""

    type: Literal["date", "string", "integer", "number", "boolean", "enum"] = Field(
        description="date (YYYY-MM-DD), string (matching `pattern`), integer, number, boolean, or enum (one of `values`)")
    pattern: str | None = Field(
        default=None, description="string: a regular expression the whole value must match "
        f"(default {DEFAULT_STRING_PATTERN!r}: letters, digits, `_`, `.`, `-`)")
    min: float | None = Field(default=None, description="integer, number: the smallest value accepted")
    max: float | None = Field(default=None, description="integer, number: the largest value accepted")
    values: list[str | int] | None = Field(default=None, description="enum: the values accepted")
    description: str = Field(default="", description="what the var means, for people")

    @model_validator(mode="after")
    def _consistent(self) -> VarSpec:
        if self.pattern is not None:
            if self.type != "string":
                raise ValueError(f"pattern applies to string vars, not {self.type}")
            try:
                re.compile(self.pattern)
            except re.error as exc:
                raise ValueError(f"pattern {self.pattern!r} is not a regular expression: {exc}") from None
        if (self.min is not None or self.max is not None) and self.type not in ("integer", "number"):
            raise ValueError(f"min and max apply to integer and number vars, not {self.type}")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min {self.min} is above max {self.max}")
        if (self.type == "enum") != bool(self.values):
            raise ValueError("an enum var lists its `values`; only an enum var has them")
        return self


class DataUnit(Unit):
    kind: ClassVar[str] = "data"
    project: str  # the dbt project directory
    select: str  # a dbt selection
    publish: list[str] = Field(default_factory=list)  # models published; default: models in the selection
    vars: dict[str, VarSpec] = Field(
        default_factory=dict, description="the dbt vars `ud promote --ref` may set, by name, with their type; "
        "a unit that declares none accepts none")

    @field_validator("vars")
    @classmethod
    def _var_names(cls, v: dict[str, VarSpec]) -> dict[str, VarSpec]:
        bad = [name for name in v if not VAR_NAME_RE.match(name)]
        if bad:
            raise ValueError(f"{bad[0]!r} is not a dbt var name (letters, digits and _, starting with a letter or _)")
        return v


class AssetUnit(Unit):
    """A plain Dagster asset joined as a unit (`ud.wrap_asset`): the value it returns is the artifact."""

    kind: ClassVar[str] = "asset"
    asset_key: str  # the wrapped asset's key, as Dagster writes it ("a/b")
    checks: list[str] = Field(default_factory=list)  # names of the asset's own checks that were wrapped with it


UNIT_KINDS: dict[str, type[Unit]] = {"app": AppUnit, "model": ModelUnit, "data": DataUnit, "asset": AssetUnit}


def field_error(exc: ValidationError, name: str, source: str, model: type | None = None) -> ConfigError:
    """One clear line for the first problem; a misspelt field is named as written, with a guess."""
    errors = sorted(exc.errors(), key=lambda e: e["type"] != "extra_forbidden")
    err = errors[0]
    where = ".".join(str(p) if str(p).isprintable() and str(p).strip() else repr(p) for p in err["loc"]) or "?"
    where = where[:80]
    msg = err["msg"]
    if err["type"] == "extra_forbidden":
        known = list(getattr(model, "model_fields", {})) if len(err["loc"]) == 1 else []
        guess = difflib.get_close_matches(str(err["loc"][-1]), known, n=1)
        msg = "is not a known field" + (f" (did you mean {guess[0]!r}?)" if guess else "")
    shown = name[:80] if isinstance(name, str) and name.isprintable() and name.split() == [name] else repr(name)[:60]
    msg = " ".join(str(msg).split())  # one line, whatever the value held
    return ConfigError("UD-CONFIG-UNIT", f"unit {shown} ({source}): field {where}: {msg}",
                       f"fix `{where}` in {source}")
