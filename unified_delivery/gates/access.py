"""Who may promote where: the run's principal needs the deploy role in the guarded
environment, and agents stay within their daily quota, under the governance in force (the
ledger's, governance/in_force.py: a run whose code loaded another policy is refused). Added to
every unit; its result records the digest of the policy it decided with."""

from __future__ import annotations

from ..errors import NotPermitted
from ..governance import in_force
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
        # The cause: a missing role (UD-AUTH-FORBIDDEN), a quota used up (UD-AUTH-QUOTA), or a
        # policy that is not the one in force (UD-POLICY-NOT-IN-FORCE).
        return NotPermitted(
            result.metadata.get("cause") or FORBIDDEN, result.message, result.remediation
        )

    def evaluate(self, ctx: GateContext) -> GateResult:
        meta = {"principal": ctx.principal, "env": ctx.guards}
        try:
            if ctx.platform is not None:  # a gate evaluated alone (a unit test) has no ledger
                meta["policy_digest"] = in_force.ensure(ctx.platform, ctx.principal, ctx.home)
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
