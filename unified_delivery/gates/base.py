"""The gate interface: one shape for every kind of unit.

A gate gets the unit, the version under review (with its artifact when the stage is the
candidate) and the environment it guards, and returns a GateResult. Each gate type is one
class (registered in registry.py); it validates its own settings when the definitions load.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Generic, TypeVar, cast

from pydantic import BaseModel, ConfigDict, ValidationError

from ..errors import ConfigError, GateRefused, UDError
from ..home import Home
from ..targets.base import Artifact
from ..targets.roles import DeployTarget, role_name
from ..units import GateSpec, Unit

if TYPE_CHECKING:
    from ..platform import Platform

R = TypeVar("R")
S = TypeVar("S", bound="GateSettings")


@dataclass(frozen=True)
class GateResult:
    passed: bool
    code: str
    message: str
    remediation: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "code": self.code,
            "message": self.message,
            "remediation": self.remediation,
            "metadata": self.metadata,
        }


@dataclass
class GateContext:
    unit: Unit
    stage: str  # the stage whose asset the gate checks
    guards: str  # the environment the gate guards (the stage after `stage`)
    version: str
    artifact: Artifact | None  # the built candidate, when stage is the candidate
    target: DeployTarget  # the unit's target in `stage` (the candidate: in the env it guards)
    home: Home
    log: Callable[[str], None] = print
    principal: str = ""  # who the run acts for (governance gates decide on it)
    governance: Any = None  # the platform's Governance
    ledger: Any = None  # the platform's Ledger (approvals, quotas)
    platform: Platform | None = None  # the whole platform: targets per env, other units (cost)

    def whole_platform(self) -> Platform:
        """The platform, for a gate that reads more than the unit's target (trainers, prices)."""
        if self.platform is None:
            raise UDError(
                "UD-GATE-ERROR",
                f"unit {self.unit.name}: the gate reads the platform, and it was given none",
                "evaluate the gate through the platform (ud promote)",
            )
        return self.platform

    def target_in(self, env: str) -> DeployTarget:
        """The unit's target in `env` (without a platform, as in a unit test: `target`)."""
        return self.platform.target(self.unit, env) if self.platform is not None else self.target

    def role(self, role: type[R]) -> R:
        """The unit's target in `role` (targets/roles.py: its model registry, its warehouse),
        wherever the version is deployed; the platform checked at load that there is one."""
        if self.platform is not None:
            return self.platform.role(self.unit, role)
        if isinstance(self.target, role):
            return self.target
        raise ConfigError(
            "UD-CONFIG-TARGET-ROLE",
            f"unit {self.unit.name}: {type(self.target).__name__} is not a {role_name(role)}",
            f"give the gate a {role_name(role)}",
        )


class GateSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Gate(ABC, Generic[S]):
    """One gate type, generic in its settings (`Gate[MySettings]`, with `Settings = MySettings`).
    `family` is a label for people and reports (tests, security, cost, ...); what the engine
    does with a gate is said by the attributes below, never by its family."""

    type: ClassVar[str]
    family: ClassVar[str]
    # The kinds it applies to; None is every kind: a gate on what the platform records (who
    # acts, freezes, approvals, spend, a target's health) applies to any unit, one that reads a
    # unit's content names its kinds.
    kinds: ClassVar[tuple[str, ...] | None] = None
    # Roles (targets/roles.py) one of the unit's targets must play for it to run, checked at load.
    needs: ClassVar[tuple[type, ...]] = ()
    Settings: ClassVar[type[GateSettings]] = GateSettings
    settings: S
    # Decided at deploy time for the run's own principal, never from a result another run
    # recorded (who acts, a freeze window, approvals).
    live: ClassVar[bool] = False
    # Also binds a rollback to a version the environment ran before (policy, freezes).
    binds_rollbacks: ClassVar[bool] = False
    # `ud gates` evaluates it anew rather than showing the last recorded result.
    reported_live: ClassVar[bool] = False
    # A break-glass override may let a version past it.
    overridable: ClassVar[bool] = True
    # Reports findings (a file, a rule) that a scoped override may cover one at a time, in
    # every version, for a period (`ud override --file F --rule R`); the gate applies them.
    scoped_findings: ClassVar[bool] = False
    # Needs the platform's price table (refused at load without one).
    needs_prices: ClassVar[bool] = False
    # What a refusal raises, and the code it is reported under (None: the gate's own code).
    refusal: ClassVar[type[UDError]] = GateRefused
    refusal_code: ClassVar[str | None] = None

    def __init__(self, spec: GateSpec, unit: Unit):
        self.spec = spec
        self.unit = unit
        try:
            # The class a subclass names as Settings is the S it subclasses Gate with.
            self.settings = cast(S, self.Settings(**spec.settings))
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise ConfigError(
                "UD-CONFIG-GATE",
                f"unit {unit.name}: gate {spec.check_name!r} field settings.{where}: "
                f"{first['msg']}",
                f"fix the settings of gate {spec.check_name!r}; allowed: "
                f"{', '.join(self.Settings.model_fields) or 'none'}",
            ) from None
        self.validate_for(unit)

    @property
    def name(self) -> str:
        return self.spec.check_name

    def refused(self, result: GateResult) -> UDError:
        """The error a refusal by this gate raises at deploy time."""
        return self.refusal(self.refusal_code or result.code, result.message, result.remediation)

    def validate_for(self, unit: Unit) -> None:
        """Refuse at load time what can be known wrong then (override to add checks)."""

    @abstractmethod
    def evaluate(self, ctx: GateContext) -> GateResult: ...
