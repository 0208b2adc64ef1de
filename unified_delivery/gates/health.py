"""Health of what an environment runs, after deploy: guards the next environment."""

from __future__ import annotations

import time

from pydantic import Field

from .base import Gate, GateContext, GateResult, GateSettings


class HealthSettings(GateSettings):
    attempts: int = Field(default=3, ge=1)  # 0 would ask nothing and judge nothing
    interval_s: float = 1.0


class HealthGate(Gate[HealthSettings]):
    type = "health"
    family = "health"
    Settings = HealthSettings

    def evaluate(self, ctx: GateContext) -> GateResult:
        health = ctx.target.health(ctx.unit, ctx.stage)
        for _ in range(self.settings.attempts - 1):
            if health.healthy:
                break
            time.sleep(self.settings.interval_s)
            health = ctx.target.health(ctx.unit, ctx.stage)
        if health.healthy:
            return GateResult(
                True,
                "UD-GATE-HEALTH-OK",
                f"{ctx.stage} is healthy: {health.message}",
                "",
                health.details,
            )
        return GateResult(
            False,
            "UD-GATE-HEALTH-FAILED",
            f"{ctx.stage} is not healthy: {health.message}",
            f"inspect {ctx.stage}, fix it or roll it back before promoting to {ctx.guards}",
            health.details,
        )
