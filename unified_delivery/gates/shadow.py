"""Shadow: before a model version reaches production, it is scored in shadow on a sample of the
live requests that the serving app receives there (the app's answers stay the champion's:
`SHADOW_MODEL_URI` and `SHADOW_SAMPLE` in its environment, both predictions in its prediction
log, docs/shadow-models.md). The gate compares the two on the same requests: how often they
agree (the same side of `threshold`) and how far the challenger's score distribution moved from
the champion's (PSI, kinds/model/drift.py).

    - type: shadow
      stage: staging               # the version in staging, before production
      settings:
        min_samples: 200           # shadow-scored records before it is judged
        min_agreement: 0.9
        max_psi: 0.2
        threshold: 0.5             # a score at or above it is the positive class

Nothing in production yet: it passes with UD-GATE-SHADOW-NO-CHAMPION. Too few shadow samples
of this very pair of versions: refused with UD-GATE-SHADOW-TOO-FEW (wait for traffic, or point
the serving app's SHADOW_MODEL_URI at the challenger).
"""

from __future__ import annotations

import time

from pydantic import Field

from ..kinds.model.drift import psi, shadowed
from ..soak import seconds
from .base import Gate, GateContext, GateResult, GateSettings


class ShadowSettings(GateSettings):
    min_samples: int = Field(
        default=100, ge=1, le=10_000_000, description="shadow-scored records before judging"
    )
    min_agreement: float = Field(
        default=0.9, ge=0, le=1, description="share of records both score on the same side"
    )
    max_psi: float = Field(
        default=0.2, gt=0, le=100, description="highest PSI of the challenger's scores"
    )
    threshold: float = Field(default=0.5, description="the score that splits the two classes")
    bins: int = Field(default=10, ge=2, le=100, description="quantile bins of the PSI")
    window: float | str | None = Field(
        default=None, description="only the last so long of requests (24h); default: all"
    )


def _p(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 3)


class ShadowGate(Gate[ShadowSettings]):
    type = "shadow"
    family = "model-metric"
    kinds = ("model",)
    Settings = ShadowSettings

    def evaluate(self, ctx: GateContext) -> GateResult:
        unit, env, challenger = ctx.unit, ctx.guards, ctx.version
        model = getattr(unit, "model_name", unit.name)
        champion = ctx.target_in(env).status(unit, env)
        if champion is None:
            return GateResult(
                True,
                "UD-GATE-SHADOW-NO-CHAMPION",
                f"nothing serves in {env} yet: no champion to shadow {model} {challenger} against",
                "",
                {"champion": None, "challenger": challenger},
            )
        s = self.settings
        since = time.time() - seconds(s.window) if s.window is not None else 0.0
        got = shadowed(ctx.home.root, env, model, champion.version, challenger, since)
        n = len(got.served)
        meta = {
            "champion": champion.version,
            "challenger": challenger,
            "env": env,
            "samples": n,
            "min_samples": s.min_samples,
            "errors": got.errors,
            "logs": got.logs,
            "shadow_ms_p50": _p(got.shadow_ms, 0.5),
            "shadow_ms_p95": _p(got.shadow_ms, 0.95),
        }
        if n < s.min_samples:
            others = ", ".join(f"{pair} ({k})" for pair, k in sorted(got.others.items()))
            return GateResult(
                False,
                "UD-GATE-SHADOW-TOO-FEW",
                f"{n} of {s.min_samples} records of {env}'s requests scored by {model} "
                f"{challenger} in shadow of {champion.version}"
                + (
                    f"; the logs shadow other versions (champion/challenger): {others}"
                    if others
                    else ""
                ),
                f"set SHADOW_MODEL_URI (models:/{model}@{ctx.stage}) and SHADOW_SAMPLE in the "
                f"serving app's environment in {env} and wait for traffic, then promote again",
                {**meta, "others": got.others},
            )
        agree = sum(
            (a >= s.threshold) == (b >= s.threshold) for a, b in zip(got.served, got.shadow)
        )
        agreement = round(agree / n, 4)
        shift = psi(got.served, got.shadow, s.bins)
        mean_diff = round(sum(abs(a - b) for a, b in zip(got.served, got.shadow)) / n, 4)
        meta.update(agreement=agreement, psi=shift, mean_abs_diff=mean_diff)
        text = (
            f"{model} {challenger} in shadow of {champion.version} on {n} records of {env}'s "
            f"requests: agreement {agreement:.1%}, score PSI {shift:.3f}"
        )
        over = []
        if agreement < s.min_agreement:
            over.append(f"agreement {agreement:.1%} < {s.min_agreement:.1%}")
        if shift > s.max_psi:
            over.append(f"PSI {shift:.3f} > {s.max_psi:g}")
        if got.errors:
            over.append(f"the challenger failed to score {got.errors} request(s)")
        if over:
            return GateResult(
                False,
                "UD-GATE-SHADOW",
                f"{text}; {'; '.join(over)}",
                f"{model} {challenger} would answer {env}'s requests unlike {champion.version}: "
                "check the change is intended; if it is, loosen the gate's settings in a reviewed "
                "change of the unit",
                {**meta, "exceeded": over},
            )
        return GateResult(True, "UD-GATE-SHADOW-OK", text, "", meta)
