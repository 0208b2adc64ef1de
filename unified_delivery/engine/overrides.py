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
            and not Override.read(e).scoped  # a scoped one covers a finding, not a version
            and e.payload.get("gate") == gate.name
            and e.payload.get("stage") == stage
            and e.payload.get("expires_at", "") > now
            and e.payload.get("family") != "policy"
            and applies(e)
        ),
    )
    return {**entry.payload, "by": entry.principal, "at": entry.ts} if entry else None


def clock() -> datetime:
    """Now, for the expiry of scoped overrides (one place, so a test can move it)."""
    return datetime.now(timezone.utc)


@dataclass(frozen=True)
class ScopedOverride:
    """An unexpired override of one finding (file and rule) of a gate, in every version."""

    seq: int
    file: str
    rule: str
    by: str
    at: str
    justification: str
    expires_at: str
    for_: tuple[str, ...]

    def covers(self, file: str, rule: str) -> bool:
        """The same file (relative, with or without ./) and the same rule, in any case."""
        return (
            file.removeprefix("./") == self.file.removeprefix("./")
            and rule.casefold() == self.rule.casefold()
        )

    def for_principal(
        self, principal: str | None, governance: Governance | None, guards: str
    ) -> bool:
        """Everyone (`*`: a finding is the code's, not a person's), or whom `for_` names."""
        return principal is None or any(
            b in ("*", principal)
            or (
                b.startswith("role:")
                and governance is not None
                and governance.allowed(principal, b[5:], guards)
            )
            for b in self.for_
        )


def scoped_overrides(
    ledger: Ledger, gate: OverriddenGate, *, now: datetime | None = None
) -> list[ScopedOverride]:
    """The scoped overrides of `gate` in force at `now`, newest first. The policy gate, or any
    gate that is not overridable, has none."""
    if not gate.overridable:
        return []
    at = (now or clock()).isoformat()
    found = []
    for e in reversed(ledger.entries(unit=gate.unit, action=Override.ACTION)):
        event = Override.read(e)
        if (
            event.scoped
            and event.gate == gate.name
            and event.stage == gate.stage
            and event.family != "policy"
            and event.expires_at > at
        ):
            found.append(
                ScopedOverride(
                    seq=e.seq,
                    file=event.file,
                    rule=event.rule,
                    by=e.principal,
                    at=e.ts,
                    justification=event.justification,
                    expires_at=event.expires_at,
                    for_=tuple(event.for_ or ["*"]),
                )
            )
    return found
