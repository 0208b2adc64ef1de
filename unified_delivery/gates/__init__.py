"""Gates: one interface (base.Gate), one file per gate type."""

from .base import FAMILIES, Gate, GateContext, GateResult, GateSettings, build_gate, gate_types, register

__all__ = ["FAMILIES", "Gate", "GateContext", "GateResult", "GateSettings", "build_gate", "gate_types", "register"]
