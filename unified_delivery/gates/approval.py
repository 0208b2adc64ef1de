"""Four-eyes approvals: the unit's policy asks for N approvals of a version before it may
go to an environment; the author of the change does not count."""

from __future__ import annotations

from ..events import Approval
from ..governance.authors import eligible_approvers
from .base import Gate, GateContext, GateResult


def approvers(ledger, unit: str, env: str, version: str) -> list[str]:
    seen: list[str] = []
    for e in ledger.entries(unit=unit, env=env, action=Approval.ACTION):
        if e.version == version and e.principal not in seen:
            seen.append(e.principal)
    return seen


class ApprovalGate(Gate):
    type = "approval"
    family = "approval"
    live = True  # approvals arrive between runs
    reported_live = True

    def evaluate(self, ctx: GateContext) -> GateResult:
        needed = ctx.unit.policy.approvals.get(ctx.guards, 0)
        have = approvers(ctx.ledger, ctx.unit.name, ctx.guards, ctx.version)
        meta = {
            "required": needed,
            "approvals": len(have),
            "approved_by": have,
            "version": ctx.version,
        }
        if len(have) >= needed:
            return GateResult(
                True,
                "UD-GATE-APPROVAL-OK",
                f"{len(have)} of {needed} approvals for {ctx.guards}",
                "",
                meta,
            )
        eligible = (
            eligible_approvers(ctx.governance, ctx.ledger, ctx.unit.name, ctx.version, ctx.guards)
            if ctx.governance is not None
            else []
        )
        may = [p for p in eligible if p not in have]
        return GateResult(
            False,
            "UD-GATE-APPROVAL-PENDING",
            f"waiting for approvals: {len(have)} of {needed} for {ctx.version[:12]} to "
            f"{ctx.guards}; who may approve: {', '.join(may) or 'nobody the policy names'}",
            f"ud approve {ctx.unit.name} --env {ctx.guards} --version {ctx.version} (not by its "
            "author)",
            {**meta, "may_approve": may},
        )
