"""Fairness: the largest gap of a rate between the groups of a sensitive column, on the
candidate's held-out set, must stay within a bound.

    ud.gate("fairness", sensitive_column="plan", rate="positive_rate", max_gap=0.2)

The sensitive column must be kept in the held-out set: list it in the model unit's
`extra_columns` (or use a feature). `positive_rate` is the share of rows predicted
positive (demographic parity); `recall` the share of actual positives predicted positive
(equal opportunity). A group with fewer than `min_group_size` rows (actual positives for
recall) is reported but left out of the gap: a rate on a handful of rows is noise.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from ..errors import ConfigError, UDError
from ..kinds.model.unit import ModelUnit
from ..targets.roles import ModelRegistry
from ..units import Unit
from .base import Gate, GateContext, GateResult, GateSettings


class FairnessSettings(GateSettings):
    sensitive_column: str
    rate: Literal["positive_rate", "recall"] = "positive_rate"
    max_gap: float = Field(gt=0, le=1)
    threshold: float = Field(default=0.5, gt=0, lt=1)  # on the positive class's probability
    min_group_size: int = Field(default=30, ge=1)


class FairnessGate(Gate[FairnessSettings]):
    type = "fairness"
    family = "fairness"
    kinds = ("model",)
    needs = (ModelRegistry,)  # load_model: the version is read from the unit's registry
    Settings = FairnessSettings

    def validate_for(self, unit: Unit) -> None:
        assert isinstance(unit, ModelUnit)  # the registry builds it for model units only
        column = self.settings.sensitive_column
        # A registered model's held-out rows are its whole evaluation dataset: every column.
        if not unit.registered_only and column not in [*unit.extra_columns, *unit.features]:
            raise ConfigError(
                "UD-CONFIG-GATE",
                f"unit {unit.name}: gate {self.name!r} field settings.sensitive_column: "
                f"{column!r} is not kept in the held-out set",
                f"add {column!r} to the unit's extra_columns",
            )

    def evaluate(self, ctx: GateContext) -> GateResult:
        import pandas as pd

        from ..kinds.model.evaluation import features_of, load_model

        s, unit = self.settings, ctx.unit
        assert isinstance(unit, ModelUnit)  # the registry builds it for model units only
        if ctx.artifact is None or "holdout_path" not in ctx.artifact.details:
            raise UDError(
                "UD-MODEL-NO-HOLDOUT",
                f"unit {unit.name}: the candidate has no held-out set",
                "rebuild the candidate",
            )
        frame = pd.read_parquet(ctx.artifact.details["holdout_path"])
        if s.sensitive_column not in frame.columns:
            raise UDError(
                "UD-MODEL-NO-HOLDOUT",
                f"unit {unit.name}: the held-out set of version {ctx.version} has no "
                f"column {s.sensitive_column!r}",
                "rebuild the candidate so extra_columns are kept",
            )
        model = load_model(ctx, ctx.version)
        classes = sorted(set(frame[unit.label].tolist()))
        positive = list(getattr(model.model, "classes_", classes or [1]))[-1]
        X = model.inputs(frame, features_of(ctx.artifact, unit))
        # The positive class's probability against the threshold; a model that gives labels
        # only (a pyfunc of another flavor) is judged on its predicted labels.
        predicted = (
            model.positive_scores(X) >= s.threshold
            if model.has_probabilities(X)
            else model.labels(X, classes) == positive
        )
        frame = frame.assign(_pred=predicted, _actual=frame[unit.label] == positive)
        rates: dict[str, dict[str, Any]] = {}
        for group, rows in frame.groupby(s.sensitive_column, dropna=False):
            base = rows if s.rate == "positive_rate" else rows[rows["_actual"]]
            rates[str(group)] = {
                "rows": int(len(rows)),
                "base": int(len(base)),
                "rate": round(float(base["_pred"].mean()), 6) if len(base) else None,
                "counted": len(base) >= s.min_group_size,
            }
        # A counted group has rows (min_group_size >= 1), so a rate.
        counted: dict[str, float] = {g: r["rate"] for g, r in rates.items() if r["counted"]}
        meta: dict[str, Any] = {
            "sensitive_column": s.sensitive_column,
            "rate": s.rate,
            "threshold": s.threshold,
            "max_gap": s.max_gap,
            "min_group_size": s.min_group_size,
            "groups": rates,
            "holdout_rows": int(len(frame)),
            "version": ctx.version,
        }
        if len(counted) < 2:
            return GateResult(
                False,
                "UD-GATE-FAIRNESS-GROUPS",
                f"{s.rate} can be compared for {len(counted)} group(s) of {s.sensitive_column} "
                f"only (each needs {s.min_group_size} rows)",
                "hold out more rows (holdout_fraction) or lower settings.min_group_size",
                meta,
            )
        high, low = max(counted, key=counted.__getitem__), min(counted, key=counted.__getitem__)
        gap = counted[high] - counted[low]
        meta.update(gap=round(gap, 6), highest=high, lowest=low)
        extremes = f"{high} {counted[high]:.3f}, {low} {counted[low]:.3f}"
        detail = f"{s.rate} gap across {s.sensitive_column} is {gap:.3f} ({extremes})"
        if gap > s.max_gap:
            return GateResult(
                False,
                "UD-GATE-FAIRNESS-GAP",
                f"{detail}, above the bound {s.max_gap}",
                "rebalance the training data or the model; the bound is settings.max_gap",
                meta,
            )
        return GateResult(True, "UD-GATE-FAIRNESS-OK", f"{detail}, within {s.max_gap}", "", meta)
