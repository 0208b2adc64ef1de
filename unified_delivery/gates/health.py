"""Health of what an environment runs, after deploy: guards the next environment."""

from __future__ import annotations

import time

from .base import Gate, GateContext, GateResult, GateSettings


class HealthSettings(GateSettings):
    attempts: int = 3
    interval_s: float = 1.0


class HealthGate(Gate):
    type = "health"
    family = "health"
    Settings = HealthSettings

    def evaluate(self, ctx: GateContext) -> GateResult:
        health = None
        for i in range(self.settings.attempts):
            health = ctx.target.health(ctx.unit, ctx.stage)
            if health.healthy:
                return GateResult(
                    True,
                    "UD-GATE-HEALTH-OK",
                    f"{ctx.stage} is healthy: {health.message}",
                    "",
                    health.details,
                )
            if i + 1 < self.settings.attempts:
                time.sleep(self.settings.interval_s)
        return GateResult(
            False,
            "UD-GATE-HEALTH-FAILED",
            f"{ctx.stage} is not healthy: {health.message}",
            f"inspect {ctx.stage}, fix it or roll it back before promoting to {ctx.guards}",
            health.details,
        )
