"""Model target: an MLflow registry alias per environment (`@staging`, `@production`).

Aliases have no history in MLflow, so the target keeps the previous version and the
deploy time of each environment as registered-model tags (`ud.<env>.previous`,
`ud.<env>.deployed_at`); rollback moves the alias back. Embedded default: a SQLite
tracking store and a local artifact folder under the embedded home.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import soak
from ..errors import TargetError, UDError
from ..home import Home
from .base import Artifact, BaseTarget, Deployment, Health, Log, _quiet

if TYPE_CHECKING:
    import pandas as pd
    from mlflow import MlflowClient
    from mlflow.entities.model_registry import ModelVersion

    from ..kinds.model.unit import ModelUnit


def _now() -> str:
    return datetime.now(UTC).isoformat()


def _own_types(fitted: Any) -> list[str]:
    """MLflow saves scikit-learn models with skops, which refuses types it does not know as safe
    (every tree model: random forests, gradient boosting) unless they are named trusted. The
    platform trained this model itself, in its own step, so its types are trusted; MLflow
    records them in the model, so the serving app loads it without another list."""
    import skops.io

    return skops.io.get_untrusted_types(data=skops.io.dumps(fitted))


def _requirements() -> list[str]:
    from importlib.metadata import version

    return [f"{name}=={version(name)}" for name in ("mlflow", "scikit-learn", "pandas", "numpy")]


class MlflowAliasTarget(BaseTarget):
    """Deploys model units by moving the MLflow alias named after the environment; the model
    registry (roles.ModelRegistry) of the units it serves."""

    kinds = ("model",)
    tracking_uri: str = ""  # empty: SQLite under the embedded home
    artifact_root: str = ""
    probe_kind = "mlflow_alias"

    def _probe_fields(self, unit: ModelUnit) -> dict[str, Any]:
        return {"tracking_uri": self.tracking_uri, "model_name": unit.model_name}

    def _home(self) -> Home:
        return Home.current()

    def resolved_uri(self) -> str:
        return self.tracking_uri or self._home().mlflow_tracking_uri

    def activate(self) -> None:
        import mlflow

        uri = self.resolved_uri()
        if uri.startswith("sqlite:///"):
            Path(uri[len("sqlite:///") :]).parent.mkdir(parents=True, exist_ok=True)
        mlflow.set_tracking_uri(uri)
        mlflow.set_registry_uri(uri)

    def client(self) -> MlflowClient:
        from mlflow import MlflowClient

        self.activate()
        return MlflowClient()

    def _experiment(self, unit: ModelUnit) -> str:
        import mlflow

        name = f"ud/{unit.name}"
        exp = mlflow.get_experiment_by_name(name)
        if exp is not None:
            return exp.experiment_id
        root = Path(self.artifact_root) if self.artifact_root else self._home().mlflow_artifacts
        root.mkdir(parents=True, exist_ok=True)
        return mlflow.create_experiment(
            name, artifact_location=root.resolve().as_uri() + f"/{unit.name}"
        )

    def register(
        self,
        unit: ModelUnit,
        fitted: Any,
        *,
        train: pd.DataFrame,
        holdout_path: Path,
        data_version: str,
        train_seconds: float,
        log: Log = _quiet,
        principal: str = "",
        run_id: str = "",
    ) -> Artifact:
        """Log a fitted model, register a new version, and tag it with its provenance."""
        import mlflow
        import pandas as pd
        from mlflow.models import infer_signature
        from mlflow.sklearn import log_model as log_sklearn_model

        from ..gates.model_metric import HIGHER_IS_BETTER, score

        self.activate()
        holdout = pd.read_parquet(holdout_path)
        X, y = holdout[unit.features], holdout[unit.label]
        metrics = {}
        for metric in HIGHER_IS_BETTER:
            try:
                metrics[f"holdout_{metric}"] = score(metric, fitted, X, y)
            except (AttributeError, ValueError, UDError):  # e.g. no probabilities: not defined
                continue
        sample = pd.DataFrame(train[unit.features]).head(5)
        signature = infer_signature(sample, fitted.predict(sample))
        # The training run names the Dagster run that trained it (dagster-mlflow's tag), so
        # the MLflow UI and the Dagster UI lead to each other.
        tags = {"dagster_run_id": run_id, "ud.unit": unit.name} if run_id else {}
        with mlflow.start_run(
            experiment_id=self._experiment(unit), run_name=f"{unit.name}-train", tags=tags
        ) as run:
            mlflow.log_params(
                {
                    "data_unit": unit.trains_on or f"file:{unit.dataset}",
                    "data_version": data_version,
                    "rows_train": len(train),
                    "rows_holdout": len(holdout),
                    "features": ",".join(unit.features),
                    "label": unit.label,
                }
            )
            mlflow.log_metrics({**metrics, "train_seconds": train_seconds})
            mlflow.log_artifact(str(holdout_path), artifact_path="holdout")
            # Naming the requirements spares MLflow a child process that infers them (15-20 s a
            # model).
            info = log_sklearn_model(
                fitted,
                name="model",
                signature=signature,
                input_example=sample,
                registered_model_name=unit.model_name,
                pip_requirements=_requirements(),
                skops_trusted_types=_own_types(fitted),
            )
        version = str(info.registered_model_version)
        client = self.client()
        client.set_model_version_tag(unit.model_name, version, "ud.data_version", data_version)
        client.set_model_version_tag(unit.model_name, version, "ud.unit", unit.name)
        if run_id:
            client.set_model_version_tag(unit.model_name, version, "dagster_run_id", run_id)
        if (
            principal
        ):  # MLflow's own user_id is whatever the client said; this one the platform verified
            client.set_model_version_tag(unit.model_name, version, "ud.registered_by", principal)
        log(
            f"registered {unit.model_name} version {version} (data {data_version}, "
            + ", ".join(f"{k}={v:.4f}" for k, v in metrics.items())
            + ")"
        )
        mv = client.get_model_version(unit.model_name, version)
        from ..kinds.model.translator import _iso

        return Artifact(
            unit=unit.name,
            kind="model",
            version=version,
            digest=f"mlflow-run:{run.info.run_id}",
            location=f"models:/{unit.model_name}/{version}",
            details={
                "holdout_path": str(holdout_path),
                "data_version": data_version,
                "run_id": run.info.run_id,
                "metrics": metrics,
                "registered_by": principal,
                "mlflow_user": mv.user_id or "",
                "change_created_at": _iso(mv.creation_timestamp),
            },
        )

    def model_version(self, unit: ModelUnit, version: str) -> ModelVersion:
        from mlflow.exceptions import MlflowException

        try:
            return self.client().get_model_version(unit.model_name, str(version))
        except MlflowException:
            raise UDError(
                "UD-MODEL-VERSION-NOT-FOUND",
                f"{unit.model_name} has no version {version}",
                "register the version first, or give an existing one",
            ) from None

    def _tags(self, unit: ModelUnit) -> dict[str, str]:
        from mlflow.exceptions import MlflowException

        try:
            return dict(self.client().get_registered_model(unit.model_name).tags)
        except MlflowException:
            return {}

    def _set_alias(
        self,
        unit: ModelUnit,
        env: str,
        version: str,
        previous: str | None,
        action: str,
        at: str | None = None,
    ) -> Deployment:
        client = self.client()
        self.model_version(
            unit, version
        )  # refuses a version that does not exist before anything moves
        at = at or _now()
        history = json.loads(self._tags(unit).get(f"ud.{env}.history", "[]"))[-19:]
        client.set_registered_model_alias(unit.model_name, env, version)
        client.set_registered_model_tag(unit.model_name, f"ud.{env}.deployed_at", at)
        client.set_registered_model_tag(unit.model_name, f"ud.{env}.previous", previous or "")
        client.set_registered_model_tag(
            unit.model_name,
            f"ud.{env}.history",
            json.dumps([*history, {"version": version, "at": at, "action": action}]),
        )
        return Deployment(
            unit=unit.name,
            env=env,
            version=version,
            deployed_at=at,
            previous_version=previous,
            details={"model_uri": f"models:/{unit.model_name}@{env}"},
        )

    def _deploy(
        self, unit: ModelUnit, env: str, artifact: Artifact, current: Deployment | None, log: Log
    ) -> Deployment:
        # Redeploying what runs keeps the rollback point instead of pointing it at itself.
        previous = (
            (current.previous_version if current.version == artifact.version else current.version)
            if current
            else None
        )
        try:
            dep = self._set_alias(unit, env, artifact.version, previous, "deploy")
        except UDError as exc:
            raise TargetError(
                "UD-TARGET-MLFLOW",
                f"could not move alias {env} of {unit.model_name}: {exc.message}",
                f"{env} still serves {current.version if current else 'nothing'}",
            ) from exc
        log(f"alias {unit.model_name}@{env} -> version {artifact.version}")
        return dep

    def remove(self, unit: ModelUnit, env: str, log: Log = _quiet) -> list[str]:
        """Delete alias `env` and its tags (roles.Removable: a preview's alias); the version
        stays registered."""
        from mlflow.exceptions import MlflowException

        client = self.client()
        removed = []
        try:
            client.get_model_version_by_alias(unit.model_name, env)
        except MlflowException:
            return removed
        client.delete_registered_model_alias(unit.model_name, env)
        removed.append(f"alias {unit.model_name}@{env}")
        for tag in ("deployed_at", "previous", "history"):
            try:
                client.delete_registered_model_tag(unit.model_name, f"ud.{env}.{tag}")
            except MlflowException:
                pass  # never set
        log(f"{', '.join(removed)} removed")
        return removed

    def _rollback(
        self,
        unit: ModelUnit,
        env: str,
        to_version: str | None,
        current: Deployment | None,
        log: Log,
    ) -> Deployment:
        target = to_version or self._tags(unit).get(f"ud.{env}.previous") or None
        if not target:
            raise TargetError(
                "UD-TARGET-NO-PREVIOUS",
                f"{unit.model_name}@{env} has no previous version to roll back to",
                "give --to VERSION",
            )
        if current and current.version == str(target):
            raise TargetError(
                "UD-TARGET-SAME-VERSION",
                f"{unit.model_name}@{env} already serves version {target}",
                "give another --to VERSION",
            )
        try:
            dep = self._set_alias(
                unit, env, str(target), current.version if current else None, "rollback"
            )
        except UDError as exc:
            raise TargetError(
                "UD-TARGET-NO-RELEASE",
                exc.message,
                f"known versions: {', '.join(self.versions(unit, env))}",
            ) from exc
        log(f"alias {unit.model_name}@{env} rolled back to version {target}")
        return dep

    def _restore(self, unit: ModelUnit, env: str, before: Deployment | None, log: Log) -> None:
        if before is None:  # no version had the alias: take it away again
            client = self.client()
            client.delete_registered_model_alias(unit.model_name, env)
            for tag in ("deployed_at", "previous"):
                client.delete_registered_model_tag(unit.model_name, f"ud.{env}.{tag}")
            return
        self._set_alias(
            unit, env, before.version, before.previous_version, "restore", at=before.deployed_at
        )

    def status(self, unit: ModelUnit, env: str) -> Deployment | None:
        from mlflow.exceptions import MlflowException

        try:
            mv = self.client().get_model_version_by_alias(unit.model_name, env)
        except MlflowException:
            return None
        tags = self._tags(unit)
        return Deployment(
            unit=unit.name,
            env=env,
            version=str(mv.version),
            deployed_at=tags.get(f"ud.{env}.deployed_at", ""),
            previous_version=tags.get(f"ud.{env}.previous") or None,
            details={
                "model_uri": f"models:/{unit.model_name}@{env}",
                "run_id": mv.run_id,
                "data_version": mv.tags.get("ud.data_version", ""),
            },
        )

    def health(self, unit: ModelUnit, env: str) -> Health:
        dep = self.status(unit, env)
        if dep is None:
            return Health(False, f"no version has alias {env}")
        mv = self.model_version(unit, dep.version)
        ok = mv.status == "READY"
        details: dict[str, Any] = {"version": dep.version, "status": mv.status}
        text = f"version {dep.version} is {mv.status}"
        history = (
            json.loads(self._tags(unit).get(f"ud.{env}.history", "[]")) if unit.monitor else []
        )
        action = history[-1].get("action", "deploy") if history else "deploy"
        window = soak.window(unit, env, dep, action)
        if ok and window is not None and window.active():
            from ..kinds.model.monitor import check

            verdict = check(self, unit, window)
            details["monitor"] = {"breached": verdict.breached, **verdict.evidence}
            if verdict.breached:
                return Health(
                    False,
                    f"{unit.model_name}@{env} version {dep.version}: {verdict.message}",
                    details,
                )
            text = f"{text}; monitor: {verdict.message}"
        return Health(ok, text, details)

    def versions(self, unit: ModelUnit, env: str) -> list[str]:
        found = self.client().search_model_versions(f"name='{unit.model_name}'")
        return [str(v.version) for v in sorted(found, key=lambda v: -int(v.version))]

    def info(self) -> dict[str, Any]:
        return {"tracking_uri": self.resolved_uri()}
