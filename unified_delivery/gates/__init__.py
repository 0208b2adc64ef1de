"""Gates: one interface (base.Gate), one file per gate type, one registry (registry.py)."""

from .base import Gate, GateContext, GateResult, GateSettings
from .registry import build_gate, gate_types, register

__all__ = [
    "Gate",
    "GateContext",
    "GateResult",
    "GateSettings",
    "build_gate",
    "gate_types",
    "register",
]
