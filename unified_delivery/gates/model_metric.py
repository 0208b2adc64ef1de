"""Model metric threshold: absolute, and no worse than the production version by more
than a margin. Both models are scored here, on the candidate's held-out set, so the
comparison is like for like and does not trust numbers logged elsewhere."""

from __future__ import annotations

from typing import Any, Literal

from ..errors import UDError
from ..kinds.model.unit import ModelUnit
from ..targets.roles import ModelRegistry
from .base import Gate, GateContext, GateResult, GateSettings

HIGHER_IS_BETTER = {
    "roc_auc": True,
    "accuracy": True,
    "f1": True,
    "precision": True,
    "recall": True,
    "log_loss": False,
}


# What keeps a version from being scored at all: refused with its own code.
SCORING_CODES = (
    "UD-MODEL-SCHEMA-MISMATCH",
    "UD-MODEL-NO-PROBABILITIES",
    "UD-MODEL-NOT-PYFUNC",
    "UD-MODEL-PREDICT",
)


class MetricSettings(GateSettings):
    metric: Literal["roc_auc", "accuracy", "f1", "precision", "recall", "log_loss"] = "roc_auc"
    min: float | None = None  # absolute bound (a maximum for log_loss)
    max_regression: float | None = None  # allowed drop against the production version
    champion_env: str = "production"


def score(metric: str, model: Any, X, y) -> float:
    """`metric` of a model (a Scorer, or a fitted estimator) on rows `X` with labels `y`."""
    from sklearn import metrics as m

    from ..kinds.model.evaluation import Scorer

    scorer = model if isinstance(model, Scorer) else Scorer.of_estimator(model)
    if metric in ("roc_auc", "log_loss"):
        proba = scorer.positive_scores(X)
        return float(m.roc_auc_score(y, proba) if metric == "roc_auc" else m.log_loss(y, proba))
    pred = scorer.labels(X, sorted(set(y.tolist())))
    fn = {
        "accuracy": m.accuracy_score,
        "f1": m.f1_score,
        "precision": m.precision_score,
        "recall": m.recall_score,
    }[metric]
    return float(fn(y, pred))


class ModelMetricGate(Gate[MetricSettings]):
    type = "model-metric"
    family = "model-metric"
    kinds = ("model",)
    needs = (ModelRegistry,)
    Settings = MetricSettings

    def evaluate(self, ctx: GateContext) -> GateResult:
        from ..kinds.model.evaluation import features_of, load_holdout, load_model

        s, unit = self.settings, ctx.unit
        assert isinstance(unit, ModelUnit)  # the registry builds it for model units only
        frame, y = load_holdout(ctx.artifact, unit)
        features = features_of(ctx.artifact, unit)
        meta: dict = {"metric": s.metric, "holdout_rows": int(len(y)), "version": ctx.version}
        try:
            candidate = load_model(ctx, ctx.version)
            X = candidate.inputs(frame, features)
            value = score(s.metric, candidate, X, y)
        except UDError as exc:  # the version cannot be scored: its own cause, not a crash
            if exc.code not in SCORING_CODES:
                raise
            return GateResult(False, exc.code, exc.message, exc.remediation, meta)
        better = HIGHER_IS_BETTER[s.metric]
        meta.update(value=round(value, 6), flavor=candidate.flavor)
        if s.min is not None:
            meta["threshold"] = s.min
            if (value < s.min) if better else (value > s.min):
                return GateResult(
                    False,
                    "UD-GATE-METRIC-THRESHOLD",
                    f"{s.metric} {value:.4f} is {'below' if better else 'above'} the bound {s.min}",
                    "improve the model or its training data; the bound is in the unit's gate "
                    "settings",
                    meta,
                )
        champion = ctx.target_in(s.champion_env).status(ctx.unit, s.champion_env)
        if (
            s.max_regression is not None
            and champion is not None
            and champion.version != ctx.version
        ):
            held = load_model(ctx, champion.version)
            champ = score(s.metric, held, held.inputs(frame, features), y)
            delta = (value - champ) if better else (champ - value)
            meta.update(
                champion_version=champion.version,
                champion_value=round(champ, 6),
                delta=round(delta, 6),
                max_regression=s.max_regression,
            )
            if delta < -s.max_regression:
                return GateResult(
                    False,
                    "UD-GATE-METRIC-REGRESSION",
                    f"{s.metric} {value:.4f} is worse than {s.champion_env} version "
                    f"{champion.version} ({champ:.4f}) by {-delta:.4f}, more than the allowed "
                    f"{s.max_regression}",
                    "the challenger must not regress; retrain or raise max_regression with review",
                    meta,
                )
        return GateResult(
            True, "UD-GATE-METRIC-OK", f"{s.metric} {value:.4f} meets its thresholds", "", meta
        )
