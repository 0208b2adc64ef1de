"""What the model gates read of a candidate: its held-out rows (a registered model's: its
evaluation dataset) and a registered version as a scorer, whatever its MLflow flavor.

A version with the scikit-learn flavor is loaded as the estimator it was logged as (its own
`predict_proba`); any other flavor through MLflow's pyfunc, whose `predict` output says what
the model gives: one column of labels, one column of probabilities (floats in [0, 1] that are
not all 0 and 1), or one column per class (the last one the positive class's probability).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ...errors import UDError
from ...targets.base import Artifact
from ...targets.roles import ModelRegistry
from .unit import ModelUnit

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from ...gates.base import GateContext


def load_holdout(artifact: Artifact | None, unit: ModelUnit):
    """The held-out rows (every column kept) and their labels."""
    import pandas as pd

    if artifact is None or "holdout_path" not in artifact.details:
        raise UDError(
            "UD-MODEL-NO-HOLDOUT",
            f"unit {unit.name}: the candidate has no held-out set",
            "rebuild the candidate",
        )
    frame = pd.read_parquet(artifact.details["holdout_path"])
    return frame, frame[unit.label]


@dataclass
class Scorer:
    """A model version as the gates score it: `inputs` picks its columns from the held-out
    rows, `labels` and `positive_scores` predict."""

    version: str
    model: Any  # a scikit-learn estimator, or an mlflow.pyfunc.PyFuncModel
    flavor: str  # "sklearn" or "pyfunc"
    signature_inputs: list[str] | None = None  # the columns its signature requires
    unit: ModelUnit | None = None
    _last: tuple[Any, Any] | None = field(default=None, repr=False)  # (rows, their prediction)

    @classmethod
    def of_estimator(cls, estimator: Any, version: str = "") -> Scorer:
        """A fitted estimator in this process (the platform's own training run)."""
        return cls(version=version, model=estimator, flavor="sklearn")

    @property
    def name(self) -> str:
        return self.unit.model_name if self.unit else "the model"

    def inputs(self, frame: pd.DataFrame, features: list[str]) -> pd.DataFrame:
        """The columns this version takes: its signature's, else the unit's features. A
        column the rows lack is a schema mismatch, named."""
        columns = self.signature_inputs or features
        missing = [c for c in columns if c not in frame.columns]
        if missing or not columns:
            raise UDError(
                "UD-MODEL-SCHEMA-MISMATCH",
                f"{self.name} version {self.version} takes "
                + (f"inputs {missing} that the evaluation rows lack" if missing else "no inputs")
                + f" (its inputs: {columns}; the rows have {list(frame.columns)})",
                "register a version whose signature matches the evaluation data, or fix the "
                "evaluation dataset's columns",
            )
        return frame.loc[:, columns]

    def labels(self, X: pd.DataFrame, classes: list) -> np.ndarray:
        """Predicted labels, in the classes of the actual labels."""
        import numpy as np

        if self.flavor == "sklearn":
            return np.asarray(self.model.predict(X))
        kind, values = self._predict(X)
        if kind == "labels":
            return values
        if kind == "proba":
            return np.where(values >= 0.5, _positive(classes), _negative(classes))
        return np.asarray(classes)[np.argmax(values, axis=1)]

    def positive_scores(self, X: pd.DataFrame) -> np.ndarray:
        """The positive class's probability; UD-MODEL-NO-PROBABILITIES when it gives none."""
        import numpy as np

        if self.flavor == "sklearn":
            if not hasattr(self.model, "predict_proba"):
                raise self._no_probabilities(type(self.model).__name__)
            return np.asarray(self.model.predict_proba(X))[:, -1]
        kind, values = self._predict(X)
        if kind == "labels":
            raise self._no_probabilities("its pyfunc predict")
        return values if kind == "proba" else values[:, -1]

    def has_probabilities(self, X: pd.DataFrame) -> bool:
        if self.flavor == "sklearn":
            return hasattr(self.model, "predict_proba")
        return self._predict(X)[0] != "labels"

    def _no_probabilities(self, what: str) -> UDError:
        return UDError(
            "UD-MODEL-NO-PROBABILITIES",
            f"{self.name} version {self.version}: {what} returns labels, not probabilities; "
            "this metric needs the positive class's probability",
            "gate on a label metric (accuracy, f1, precision, recall), or register the model "
            "so that predict returns probabilities (a pyfunc PythonModel wrapping predict_proba)",
        )

    def _predict(self, X: pd.DataFrame) -> tuple[str, np.ndarray]:
        """One pyfunc predict per row set: ('labels' | 'proba' | 'classes', values)."""
        import numpy as np
        import pandas as pd
        from mlflow.exceptions import MlflowException

        if self._last is not None and self._last[0] is X:  # the same rows: predicted once
            return self._last[1]
        try:
            raw = self.model.predict(X)
        except MlflowException as exc:  # pyfunc's schema enforcement: the inputs do not fit
            raise UDError(
                "UD-MODEL-SCHEMA-MISMATCH",
                f"{self.name} version {self.version} refuses the evaluation rows: "
                f"{' '.join(str(exc.message).split())[:400]}",
                "register a version whose signature matches the evaluation data, or fix the "
                "evaluation dataset's columns and types",
            ) from None
        values = np.asarray(raw.to_numpy() if isinstance(raw, (pd.DataFrame, pd.Series)) else raw)
        if values.ndim == 2 and values.shape[1] == 1:
            values = values[:, 0]
        if len(values) != len(X):
            raise UDError(
                "UD-MODEL-PREDICT",
                f"{self.name} version {self.version} returned {len(values)} predictions for "
                f"{len(X)} rows",
                "its predict must return one prediction per input row",
            )
        if values.ndim == 2:
            found = ("classes", values.astype(float))
        elif (
            values.dtype.kind == "f"
            and np.all((values >= 0) & (values <= 1))
            and not np.all(np.isin(values, (0.0, 1.0)))
        ):
            found = ("proba", values.astype(float))
        else:
            found = ("labels", values)
        self._last = (X, found)
        return found


def _positive(classes: list) -> Any:
    return sorted(classes)[-1] if classes else 1


def _negative(classes: list) -> Any:
    return sorted(classes)[0] if len(classes) > 1 else 0


def load_model(ctx: GateContext, version: str) -> Scorer:
    """The version registered as `version` of the unit's model, as a scorer: the estimator for
    the scikit-learn flavor, MLflow's pyfunc for every other flavor."""
    import mlflow.pyfunc
    from mlflow.models import get_model_info

    unit = ctx.unit
    assert isinstance(unit, ModelUnit)  # the model gates apply to model units only
    ctx.role(ModelRegistry).activate()
    uri = f"models:/{unit.model_name}/{version}"
    info = get_model_info(uri)
    signature = info.signature
    inputs = (
        [s.name for s in signature.inputs.inputs if s.required and s.name]
        if signature is not None
        and signature.inputs is not None
        and not signature.inputs.is_tensor_spec()
        else None
    )
    if "sklearn" in (info.flavors or {}):
        from mlflow.sklearn import load_model as load_sklearn_model

        return Scorer(version, load_sklearn_model(uri), "sklearn", inputs or None, unit)
    if "python_function" not in (info.flavors or {}):
        raise UDError(
            "UD-MODEL-NOT-PYFUNC",
            f"{unit.model_name} version {version} has no flavor MLflow loads as pyfunc "
            f"(flavors: {', '.join(sorted(info.flavors or {})) or 'none'})",
            "log the model with a flavor that has a pyfunc (mlflow.<flavor>.log_model does), or "
            "wrap it in an mlflow.pyfunc.PythonModel",
        )
    return Scorer(version, mlflow.pyfunc.load_model(uri), "pyfunc", inputs or None, unit)


def features_of(artifact: Artifact | None, unit: ModelUnit) -> list[str]:
    """The columns a candidate is scored on when its signature names none: the unit's
    features, else (a registered model) every column of its rows but the label and
    extra_columns."""
    if unit.features:
        return list(unit.features)
    return list((artifact.details if artifact else {}).get("features") or [])
