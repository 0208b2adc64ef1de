"""The gate interface: one shape for every kind of unit.

A gate gets the unit, the version under review (with its artifact when the stage is the
candidate) and the environment it guards, and returns a GateResult. Gates are registered
by type name; each registered class validates its own settings when the definitions load.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar

from pydantic import BaseModel, ConfigDict, ValidationError

from ..errors import ConfigError
from ..home import Home
from ..targets.base import Artifact, DeployTarget
from ..units import UNIT_KINDS, GateSpec, Unit

FAMILIES = (
    "tests", "security", "model-metric", "fairness", "schema", "data-quality", "dbt-tests",
    "cost", "policy", "approval", "freeze", "health",
)


@dataclass(frozen=True)
class GateResult:
    passed: bool
    code: str
    message: str
    remediation: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"passed": self.passed, "code": self.code, "message": self.message,
                "remediation": self.remediation, "metadata": self.metadata}


@dataclass
class GateContext:
    unit: Unit
    stage: str  # the stage whose asset the gate checks
    guards: str  # the environment the gate guards (the stage after `stage`)
    version: str
    artifact: Artifact | None  # the built candidate, when stage is the candidate
    target: DeployTarget  # the unit kind's deploy target
    home: Home
    log: Callable[[str], None] = print
    principal: str = ""  # who the run acts for (governance gates decide on it)
    governance: Any = None  # the platform's Governance
    ledger: Any = None  # the platform's Ledger (approvals, quotas)
    platform: Any = None  # the whole platform, for gates that look across units (cost)


class GateSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Gate(ABC):
    type: ClassVar[str]
    family: ClassVar[str]
    # Every kind by default: a gate on what the platform records (who acts, freezes, approvals,
    # spend, a target's health) applies to any unit; one that reads a unit's content names its kinds.
    kinds: ClassVar[tuple[str, ...]] = tuple(UNIT_KINDS)
    Settings: ClassVar[type[GateSettings]] = GateSettings

    def __init__(self, spec: GateSpec, unit: Unit):
        self.spec = spec
        self.unit = unit
        try:
            self.settings = self.Settings(**spec.settings)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise ConfigError(
                "UD-CONFIG-GATE",
                f"unit {unit.name}: gate {spec.check_name!r} field settings.{where}: {first['msg']}",
                f"fix the settings of gate {spec.check_name!r}; allowed: {', '.join(self.Settings.model_fields) or 'none'}",
            ) from None
        self.validate_for(unit)

    @property
    def name(self) -> str:
        return self.spec.check_name

    def validate_for(self, unit: Unit) -> None:
        """Refuse at load time what can be known wrong then (override to add checks)."""

    @abstractmethod
    def evaluate(self, ctx: GateContext) -> GateResult: ...


_REGISTRY: dict[str, type[Gate]] = {}


def register(cls: type[Gate]) -> type[Gate]:
    assert cls.family in FAMILIES, cls.family
    _REGISTRY[cls.type] = cls
    return cls


def gate_types() -> dict[str, type[Gate]]:
    from . import _builtin  # noqa: F401  (registers the built-in gates)

    return dict(_REGISTRY)


def build_gate(spec: GateSpec, unit: Unit, costs_missing: bool = False) -> Gate:
    types = gate_types()
    cls = types.get(spec.type)
    if cls is None:
        raise ConfigError(
            "UD-CONFIG-GATE",
            f"unit {unit.name}: gates[].type {spec.type!r} is not a known gate",
            f"use one of: {', '.join(sorted(types))}",
        )
    if unit.kind not in cls.kinds:
        raise ConfigError(
            "UD-CONFIG-GATE",
            f"unit {unit.name}: gate {spec.type!r} does not apply to {unit.kind} units",
            f"it applies to: {', '.join(cls.kinds)}",
        )
    if cls.family == "cost" and costs_missing:
        raise ConfigError("UD-CONFIG-COST", f"unit {unit.name}: gate {spec.check_name!r} needs a price table",
                          "give the platform a CostModel (resources/prices.yaml)")
    if spec.stage not in unit.stages[:-1]:
        raise ConfigError(
            "UD-CONFIG-GATE",
            f"unit {unit.name}: gate {spec.check_name!r} field stage {spec.stage!r} is not a stage that precedes another",
            f"use one of: {', '.join(unit.stages[:-1])}",
        )
    return cls(spec, unit)
