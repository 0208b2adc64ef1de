"""What the model gates read of a candidate: its held-out rows and the registered model."""

from __future__ import annotations

from ...errors import UDError
from ...targets.base import Artifact
from ...targets.roles import ModelRegistry
from .unit import ModelUnit


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


def load_model(ctx, version: str):
    import mlflow.sklearn

    ctx.role(ModelRegistry).activate()
    return mlflow.sklearn.load_model(f"models:/{ctx.unit.model_name}/{version}")
