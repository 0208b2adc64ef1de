"""The latest result of each gate of a unit, for the newest candidate or what an environment
runs."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..errors import UDError
from ..events import Candidate, GateEvaluated
from ..units import CANDIDATE

if TYPE_CHECKING:
    from ..platform import Platform


def gate_report(platform: Platform, unit_name: str, env: str = "") -> dict[str, Any]:
    """Each gate's newest recorded result for the version (with any override in force);
    approvals still pending are evaluated live, since an approval may have come since."""
    from ..engine import active_override, evaluate_gate

    unit = platform.unit(unit_name)
    if env and env not in unit.environments:
        raise UDError(
            "UD-UNKNOWN-ENV",
            f"{unit.name} has no environment {env!r}",
            f"use one of: {', '.join(unit.environments)}",
        )
    ledger = platform.ledger.ledger()
    if env:
        dep = platform.target(unit, env).status(unit, env)
        version = dep.version if dep else None
    else:
        entry = ledger.latest(unit=unit.name, action=Candidate.ACTION)
        version = entry.version if entry else None
    gates = []
    for gate in platform.gates[unit.name]:
        entry = ledger.latest(
            unit=unit.name,
            action=GateEvaluated.ACTION,
            predicate=lambda e, g=gate: (
                e.payload.get("gate") == g.name
                and e.version == version
                and e.payload.get("stage") == g.spec.stage
            ),
        )
        p = entry.payload if entry else {}
        override = active_override(ledger, unit, version, gate) if version else None
        row = {
            "name": gate.name,
            "family": gate.family,
            "stage": gate.spec.stage,
            "passed": p.get("passed"),
            "code": p.get("code"),
            "message": p.get("message", "not run for this version"),
            "remediation": p.get("remediation", ""),
            "overridden": bool(p.get("overridden") or override),
            "at": entry.ts if entry else None,
            "evidence": p.get("metadata", {}),  # what the gate measured and compared
        }
        if override:
            row["override"] = {
                "by": override["by"],
                "justification": override["justification"],
                "expires_at": override["expires_at"],
                "for": override.get("for") or [override["by"]],
            }
        if gate.reported_live and version and not p.get("passed"):
            live = evaluate_gate(platform, unit, gate, version, None, "", ledger)
            row.update(
                passed=live.passed,
                code=live.code,
                message=live.message,
                remediation=live.remediation,
            )
        gates.append(row)
    return {"unit": unit.name, "version": version, "env": env or CANDIDATE, "gates": gates}
