"""Every gate type the platform knows, by type name: the built-in ones below, those a
platform repository registers (`register(MyGate)` in one of its own modules, or as a
decorator), and those of installed distributions (entry point group
`unified_delivery.gates`, each naming a Gate subclass). A new gate is one class and one
registration; nothing else in the framework names gate types or families."""

from __future__ import annotations

from importlib.metadata import entry_points

from ..errors import ConfigError
from ..units import GateSpec, Unit
from .access import PolicyGate
from .approval import ApprovalGate
from .asset_check import AssetCheckGate
from .base import Gate
from .container_policy import ContainerPolicyGate
from .cost import CostGate
from .data_diff import DataDiffGate
from .data_quality import DataQualityGate
from .dbt_tests import DbtTestsGate
from .fairness import FairnessGate
from .freeze import FreezeGate
from .health import HealthGate
from .manifest_policy import ManifestPolicyGate
from .model_metric import ModelMetricGate
from .schema import SchemaGate
from .security import SecurityGate
from .shadow import ShadowGate
from .tests import TestsGate

ENTRY_POINTS = "unified_delivery.gates"
BUILT_IN: tuple[type[Gate], ...] = (
    TestsGate,
    SecurityGate,
    ManifestPolicyGate,
    ContainerPolicyGate,
    ModelMetricGate,
    FairnessGate,
    ShadowGate,
    SchemaGate,
    DataQualityGate,
    DataDiffGate,
    DbtTestsGate,
    AssetCheckGate,
    CostGate,
    HealthGate,
    PolicyGate,
    FreezeGate,
    ApprovalGate,
)
_REGISTERED: dict[str, type[Gate]] = {}
_INSTALLED: dict[str, type[Gate]] | None = None


def _checked(cls: object, where: str) -> type[Gate]:
    if (
        not (isinstance(cls, type) and issubclass(cls, Gate))
        or not getattr(cls, "type", "")
        or not getattr(cls, "family", "")
    ):
        raise ConfigError(
            "UD-CONFIG-GATE",
            f"{where}: {cls!r} is not a Gate subclass with a `type` and a `family`",
            "subclass unified_delivery.gates.Gate and set both class attributes",
        )
    return cls


def register(cls: type[Gate]) -> type[Gate]:
    """Make a gate type known to every platform in this process (usable as a decorator)."""
    _REGISTERED[_checked(cls, "register").type] = cls
    return cls


def _installed() -> dict[str, type[Gate]]:
    global _INSTALLED
    if _INSTALLED is None:
        _INSTALLED = {}
        for ep in entry_points(group=ENTRY_POINTS):
            cls = _checked(ep.load(), f"entry point {ep.name} ({ep.value})")
            _INSTALLED[cls.type] = cls
    return _INSTALLED


def gate_types() -> dict[str, type[Gate]]:
    return {**{g.type: g for g in BUILT_IN}, **_installed(), **_REGISTERED}


def build_gate(spec: GateSpec, unit: Unit, costs_missing: bool = False) -> Gate:
    types = gate_types()
    cls = types.get(spec.type)
    if cls is None:
        raise ConfigError(
            "UD-CONFIG-GATE",
            f"unit {unit.name}: gates[].type {spec.type!r} is not a known gate",
            f"use one of: {', '.join(sorted(types))}",
        )
    if cls.kinds is not None and unit.kind not in cls.kinds:
        raise ConfigError(
            "UD-CONFIG-GATE",
            f"unit {unit.name}: gate {spec.type!r} does not apply to {unit.kind} units",
            f"it applies to: {', '.join(cls.kinds)}",
        )
    if cls.needs_prices and costs_missing:
        raise ConfigError(
            "UD-CONFIG-COST",
            f"unit {unit.name}: gate {spec.check_name!r} needs a price table",
            "give the platform a CostModel (resources/prices.yaml)",
        )
    if spec.stage not in unit.stages[:-1]:
        raise ConfigError(
            "UD-CONFIG-GATE",
            f"unit {unit.name}: gate {spec.check_name!r} field stage {spec.stage!r} is not a stage "
            "that precedes another",
            f"use one of: {', '.join(unit.stages[:-1])}",
        )
    return cls(spec, unit)
