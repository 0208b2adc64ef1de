"""Who may promote where: the run's principal needs the deploy role in the guarded
environment, and agents stay within their daily quota. Added to every unit."""

from __future__ import annotations

from ..errors import NotPermitted
from .base import Gate, GateContext, GateResult

FORBIDDEN = "UD-AUTH-FORBIDDEN"


class PolicyGate(Gate):
    type = "policy"
    family = "policy"
    live = True  # who acts is decided for each run's own principal
    binds_rollbacks = True
    overridable = (
        False  # an override lets a version past a check, never a principal past its rights
    )
    refusal = NotPermitted
    refusal_code = FORBIDDEN

    def refused(self, result: GateResult) -> NotPermitted:
        # The cause: a missing role (UD-AUTH-FORBIDDEN) or a quota used up (UD-AUTH-QUOTA).
        return NotPermitted(
            result.metadata.get("cause") or FORBIDDEN, result.message, result.remediation
        )

    def evaluate(self, ctx: GateContext) -> GateResult:
        meta = {"principal": ctx.principal, "env": ctx.guards}
        try:
            ctx.governance.authorize(ctx.principal, "deploy", ctx.guards)
            ctx.governance.check_quota(ctx.principal, ctx.guards, ctx.ledger)
        except NotPermitted as exc:
            return GateResult(
                False,
                "UD-GATE-POLICY-DENIED",
                exc.message,
                exc.remediation,
                {**meta, "cause": exc.code},
            )
        return GateResult(
            True, "UD-GATE-POLICY-OK", f"{ctx.principal} may deploy to {ctx.guards}", "", meta
        )
