"""Change freezes: a window of the policy file covering the guarded environment refuses
the promotion; only a break-glass override lets one version through."""

from __future__ import annotations

from .base import Gate, GateContext, GateResult


class FreezeGate(Gate):
    type = "freeze"
    family = "freeze"
    live = True  # a window opens and closes between runs
    binds_rollbacks = True
    reported_live = True

    def evaluate(self, ctx: GateContext) -> GateResult:
        active = ctx.governance.active_freeze(ctx.guards)
        if active is None:
            return GateResult(
                True,
                "UD-GATE-FREEZE-OK",
                f"no change freeze on {ctx.guards} now",
                "",
                {"env": ctx.guards},
            )
        freeze, (start, end) = active
        return GateResult(
            False,
            "UD-GATE-FREEZE-ACTIVE",
            f"{ctx.guards} is frozen until {end.isoformat()}"
            + (f" ({freeze.reason})" if freeze.reason else ""),
            "wait for the window to end, or use a break-glass override with a justification",
            {
                "env": ctx.guards,
                "start": start.isoformat(),
                "end": end.isoformat(),
                "reason": freeze.reason,
            },
        )
