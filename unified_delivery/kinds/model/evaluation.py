"""What the model gates read of a candidate: its held-out rows and the registered model."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ...errors import UDError
from ...targets.base import Artifact
from ...targets.roles import ModelRegistry
from .unit import ModelUnit

if TYPE_CHECKING:
    from ...gates.base import GateContext


def load_holdout(artifact: Artifact | None, unit: ModelUnit):
    import pandas as pd

    if artifact is None or "holdout_path" not in artifact.details:
        raise UDError(
            "UD-MODEL-NO-HOLDOUT",
            f"unit {unit.name}: the candidate has no held-out set",
            "rebuild the candidate",
        )
    frame = pd.read_parquet(artifact.details["holdout_path"])
    return frame[unit.features], frame[unit.label]


def load_model(ctx: GateContext, version: str) -> Any:
    """The scikit-learn estimator registered as `version` (whatever class it was trained as)."""
    from mlflow.sklearn import load_model as load_sklearn_model

    unit = ctx.unit
    assert isinstance(unit, ModelUnit)  # the model gates apply to model units only
    ctx.role(ModelRegistry).activate()
    return load_sklearn_model(f"models:/{unit.model_name}/{version}")
