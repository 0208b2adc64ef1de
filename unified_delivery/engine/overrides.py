"""Overrides in force: the break-glass records of the ledger that let a failed gate pass, read
without the platform loaded (`ud gates` answers from the catalog with it, engine/gating.py
wraps it for the loaded platform's gates)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from ..events import Override

if TYPE_CHECKING:
    from ..governance import Governance
    from ..ledger import Ledger


@dataclass(frozen=True)
class OverriddenGate:
    """The gate an override names: its unit, name, stage and whether it can be overridden."""

    unit: str
    name: str
    stage: str
    overridable: bool


def override_in_force(
    ledger: Ledger,
    gate: OverriddenGate,
    version: str,
    *,
    guards: str,
    principal: str | None = None,
    governance: Governance | None = None,
) -> dict | None:
    """An unexpired override of `gate` for one version, if any; with `principal`, only one made
    for that principal (by name, or by a role it holds in `guards`, the environment the gate
    guards). A gate that is not overridable never has one."""
    if not gate.overridable:
        return None
    now = datetime.now(timezone.utc).isoformat()
    stage = gate.stage

    def applies(e: Any) -> bool:
        if principal is None:
            return True
        beneficiaries = Override.read(e).for_ or [e.principal]  # older overrides: their author only
        return any(
            b == principal
            or (
                b.startswith("role:")
                and governance is not None
                and governance.allowed(principal, b[5:], guards)
            )
            for b in beneficiaries
        )

    entry = ledger.latest(
        unit=gate.unit,
        action=Override.ACTION,
        predicate=lambda e: (
            e.version == version
            and e.payload.get("gate") == gate.name
            and e.payload.get("stage") == stage
            and e.payload.get("expires_at", "") > now
            and e.payload.get("family") != "policy"
            and applies(e)
        ),
    )
    return {**entry.payload, "by": entry.principal, "at": entry.ts} if entry else None
