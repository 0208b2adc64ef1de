"""The model kind's translator: a candidate is the unit's training function (decorator.py)
fitted on the production version of the data unit it trains on, or on its own file.

The function receives the training rows (a pandas DataFrame) and returns a fitted
scikit-learn estimator. The framework holds out a share of the rows, logs the model to
MLflow, registers a version and records the metrics and the training data version on it.
"""

from __future__ import annotations

import time
import traceback
from datetime import UTC
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from ...errors import UDError
from ...targets.base import Artifact
from ...targets.roles import ModelRegistry, Warehouse
from ...units import Unit
from ..base import BuildContext, KindTranslator
from ..data.unit import DataUnit
from .unit import ModelUnit

if TYPE_CHECKING:
    import pandas as pd


def read_dataset(unit: ModelUnit | str):
    """The model's own training file (or the file at a path) and its content digest (its data
    version)."""
    import hashlib

    import pandas as pd

    path = Path(unit if isinstance(unit, str) else unit.dataset or "")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:12]
    frame = pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)
    return frame, f"file-{digest}"


class ModelTranslator(KindTranslator):
    unit_class = ModelUnit
    needs = (ModelRegistry,)

    def upstream_fields(self, unit: Unit) -> dict[str, str]:
        assert isinstance(unit, ModelUnit)
        trains_on = {unit.trains_on: "trains_on"} if unit.trains_on else {}
        return {**super().upstream_fields(unit), **trains_on}

    def prepare_attributes(self, attributes: dict[str, Any], base_dir: Path) -> dict[str, Any]:
        """A model in YAML is a registered model (a trained one is Python: `@ud.model`); its
        evaluation dataset is relative to the unit's file."""
        if not attributes.get("evaluation_dataset"):
            raise UDError(
                "UD-CONFIG-UNIT",
                "a model unit in YAML names its registered_model and an evaluation_dataset",
                "give evaluation_dataset (a CSV/Parquet file); a model the platform trains is "
                "declared in Python with @ud.model",
            )
        path = Path(str(attributes["evaluation_dataset"]))
        return {
            **attributes,
            "evaluation_dataset": str(path if path.is_absolute() else (base_dir / path).resolve()),
        }

    def validate(self, unit: Unit, units: dict[str, Unit]) -> None:
        assert isinstance(unit, ModelUnit)
        if unit.evaluation_dataset:
            self._check_file(unit, "evaluation_dataset", unit.evaluation_dataset)
        elif unit.dataset:
            self._check_file(unit, "dataset", unit.dataset)
        elif unit.trains_on not in units or units[unit.trains_on].kind != "data":
            self.refuse(
                unit, "trains_on", f"{unit.trains_on!r} is not a data unit of this platform"
            )
        if not 0 < unit.holdout_fraction < 1:
            self.refuse(unit, "holdout_fraction", "must be between 0 and 1")
        if unit.label in unit.features:
            self.refuse(unit, "features", f"the label {unit.label!r} is also a feature")

    def _check_file(self, unit: ModelUnit, field: str, path: str) -> None:
        if Path(path).suffix not in (".csv", ".parquet"):
            self.refuse(unit, field, f"{path} is not a .csv or .parquet file")
        if not Path(path).is_file():
            self.refuse(
                unit,
                field,
                f"{path} does not exist",
                "give the path of the file, relative to the file that declares the model",
            )

    def build_candidate(self, unit: Unit, ctx: BuildContext) -> Artifact:
        assert isinstance(unit, ModelUnit)
        if unit.registered_only:
            return self._registered(unit, ctx)
        from sklearn.model_selection import train_test_split

        if unit.dataset:
            frame, data_version = read_dataset(unit)
        else:
            frame, data_version = self._data_unit_rows(unit, ctx)
        kept = list(dict.fromkeys([*unit.features, unit.label, *unit.extra_columns]))
        missing = [c for c in kept if c not in frame.columns]
        if missing:
            raise UDError(
                "UD-MODEL-COLUMNS",
                f"unit {unit.name}: columns {missing} are not in {unit.trains_on or unit.dataset}",
                f"available: {', '.join(frame.columns)}",
            )
        # Split frames are frames (sklearn's own return type is inferred as lists or arrays).
        train, holdout = cast(
            "list[pd.DataFrame]",
            train_test_split(
                frame,
                test_size=unit.holdout_fraction,
                random_state=unit.seed,
                stratify=frame[unit.label] if frame[unit.label].nunique() < 20 else None,
            ),
        )
        work = ctx.home.builds / unit.name / f"data-{data_version}"
        work.mkdir(parents=True, exist_ok=True)
        holdout_path = work / "holdout.parquet"
        holdout[kept].to_parquet(holdout_path)
        requested = ctx.config.get("ref") or ""
        if requested:
            return self._existing(unit, ctx, requested, data_version, holdout_path)
        trainer = ctx.trainer
        if not callable(trainer):  # None, or (never for a model unit) a wrapped asset
            raise UDError(
                "UD-MODEL-NO-TRAINER",
                f"unit {unit.name} has no training function",
                "declare it with @model",
            )
        started = time.time()
        try:
            fitted = trainer(train.reset_index(drop=True))
        except (
            Exception
        ) as exc:  # the data scientist's code: report its own failure, deploy nothing
            tb = traceback.format_exc(limit=-3)
            raise UDError(
                "UD-MODEL-TRAIN-FAILED",
                f"unit {unit.name}: the training function raised {type(exc).__name__}: {exc}",
                f"fix the training function; last frames:\n{tb}",
                exit_code=5,
            ) from exc
        if not hasattr(fitted, "predict"):
            raise UDError(
                "UD-MODEL-NOT-FITTED",
                f"unit {unit.name}: the training function returned {type(fitted).__name__}, not a "
                "fitted model",
                "return the fitted estimator",
                exit_code=5,
            )
        registry = ctx.targets.role(unit, ModelRegistry)
        return registry.register(
            unit,
            fitted,
            train=train,
            holdout_path=holdout_path,
            data_version=data_version,
            train_seconds=time.time() - started,
            log=ctx.log,
            principal=ctx.principal,
            run_id=ctx.run_id,
        )

    def _data_unit_rows(self, unit: ModelUnit, ctx: BuildContext):
        assert unit.trains_on is not None  # without a dataset (ModelUnit's validator)
        source = ctx.units[unit.trains_on]
        assert isinstance(source, DataUnit)  # validate() refused any other kind
        env = source.environments[-1]
        deployed = ctx.targets.target(source, env).status(source, env)
        if deployed is None:
            raise UDError(
                "UD-MODEL-NO-DATA",
                f"unit {unit.name}: {unit.trains_on} has no {env} version to train on",
                f"promote {unit.trains_on} to {env} first",
            )
        warehouse = ctx.targets.role(source, Warehouse)
        return warehouse.read(source, env, unit.table or source.name), deployed.version

    def _registered(self, unit: ModelUnit, ctx: BuildContext) -> Artifact:
        """A version registered outside the platform (the one asked for, else the newest),
        held out against the unit's whole evaluation dataset."""
        assert unit.evaluation_dataset is not None  # registered_only
        frame, data_version = read_dataset(unit.evaluation_dataset)
        if unit.label not in frame.columns:
            raise UDError(
                "UD-MODEL-COLUMNS",
                f"unit {unit.name}: the label {unit.label!r} is not a column of "
                f"{unit.evaluation_dataset}",
                f"available: {', '.join(frame.columns)}",
            )
        missing = [c for c in [*unit.features, *unit.extra_columns] if c not in frame.columns]
        if missing:
            raise UDError(
                "UD-MODEL-COLUMNS",
                f"unit {unit.name}: columns {missing} are not in {unit.evaluation_dataset}",
                f"available: {', '.join(frame.columns)}",
            )
        version = ctx.config.get("ref") or self._newest(unit, ctx)
        work = ctx.home.builds / unit.name / f"data-{data_version}"
        work.mkdir(parents=True, exist_ok=True)
        holdout_path = work / "evaluation.parquet"
        frame.to_parquet(holdout_path)
        artifact = self._existing(unit, ctx, version, data_version, holdout_path)
        rest = [c for c in frame.columns if c != unit.label and c not in unit.extra_columns]
        artifact.details.update(
            features=list(unit.features) or rest, evaluation_dataset=unit.evaluation_dataset
        )
        ctx.log(
            f"{unit.model_name} version {version} (registered by "
            f"{artifact.details['mlflow_user'] or 'someone outside the platform'}), evaluated on "
            f"{len(frame)} rows of {unit.evaluation_dataset}"
        )
        return artifact

    def _newest(self, unit: ModelUnit, ctx: BuildContext) -> str:
        from mlflow.exceptions import MlflowException

        client = ctx.targets.role(unit, ModelRegistry).client()
        try:
            found = client.search_model_versions(f"name = '{unit.model_name}'")
        except MlflowException:
            found = []
        if not found:
            raise UDError(
                "UD-MODEL-NO-VERSION",
                f"unit {unit.name}: registered model {unit.model_name!r} has no version",
                f"register one (mlflow.<flavor>.log_model(..., registered_model_name="
                f"{unit.model_name!r})); the registry sensor then builds it",
            )
        return str(max(int(v.version) for v in found))

    def _existing(
        self,
        unit: ModelUnit,
        ctx: BuildContext,
        version: str,
        data_version: str,
        holdout_path: Path,
    ) -> Artifact:
        mv = ctx.targets.role(unit, ModelRegistry).model_version(unit, version)
        return Artifact(
            unit=unit.name,
            kind="model",
            version=version,
            digest=f"mlflow-run:{mv.run_id}",
            location=f"models:/{unit.model_name}/{version}",
            details={
                "holdout_path": str(holdout_path),
                "data_version": data_version,
                "run_id": mv.run_id,
                "registered_by": (mv.tags or {}).get("ud.registered_by", ""),
                "mlflow_user": mv.user_id or "",
                "change_created_at": _iso(mv.creation_timestamp),
            },
        )


def _iso(ms: int | None) -> str:
    from datetime import datetime

    return datetime.fromtimestamp((ms or 0) / 1000, tz=UTC).isoformat()
