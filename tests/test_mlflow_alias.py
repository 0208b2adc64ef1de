"""MlflowAliasTarget and the model-metric gate against a real MLflow registry (SQLite in a
temporary folder) and real scikit-learn models trained on synthetic data. What every target
promises (status, previous version, rollback, a failing deploy) is checked for this one too in
tests/test_target_contract.py; here, what is MLflow's own.

Two versions are registered once per module (registering costs seconds: MLflow infers
the pip requirements in a child process): a good model and one trained on shuffled
labels. Each test moves the alias of an environment of its own, so the tests do not
depend on their order; the metric-gate tests set `production`, the champion, themselves.
"""

from __future__ import annotations

import json
import os
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import mlflow
import mlflow.sklearn
import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import log_loss, roc_auc_score

from unified_delivery.errors import TargetError
from unified_delivery.gates.base import GateContext, GateResult
from unified_delivery.gates.model_metric import ModelMetricGate
from unified_delivery.home import Home
from unified_delivery.targets.base import Artifact
from unified_delivery.targets.mlflow_alias import MlflowAliasTarget
from unified_delivery.kinds.model.unit import ModelUnit
from unified_delivery.units import GateSpec

FEATURES = ["tenure", "spend", "noise"]
LABEL = "y"


def synthetic(rows: int, seed: int) -> pd.DataFrame:
    """A label that depends on two of the three features, with some noise."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(rng.normal(size=(rows, len(FEATURES))), columns=FEATURES)
    logit = 2.0 * frame["tenure"] - 1.5 * frame["spend"] + rng.normal(scale=0.7, size=rows)
    frame[LABEL] = (logit > 0).astype(int)
    return frame


@dataclass(frozen=True)
class Registry:
    target: MlflowAliasTarget
    unit: ModelUnit
    holdout: pd.DataFrame
    holdout_path: Path
    good: Artifact  # version 1
    shuffled: Artifact  # version 2, trained on shuffled labels
    fitted: dict[str, LogisticRegression]

    @property
    def client(self) -> MlflowClient:
        return self.target.client()

    def alias(self, env: str) -> str:
        return str(self.client.get_model_version_by_alias(self.unit.model_name, env).version)

    def roc_auc(self, key: str) -> float:
        return roc_auc_score(self.holdout[LABEL], self.fitted[key].predict_proba(self.holdout[FEATURES])[:, 1])

    def gate(self, artifact: Artifact, **settings) -> GateResult:
        gate = ModelMetricGate(GateSpec(type="model-metric", settings=settings), self.unit)
        return gate.evaluate(GateContext(unit=self.unit, stage="candidate", guards="staging", version=artifact.version,
                                         artifact=artifact, target=self.target, home=Home.current(), log=lambda _: None))


@contextmanager
def mlflow_uris_restored() -> Iterator[None]:
    """The target sets MLflow's process-wide tracking and registry URIs, and MLflow copies
    them into MLFLOW_TRACKING_URI / MLFLOW_REGISTRY_URI for child processes: undo both, so
    later tests and the processes they start do not write into this module's registry."""
    saved = {name: os.environ.get(name) for name in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")}
    try:
        yield
    finally:
        mlflow.set_tracking_uri(None)
        mlflow.set_registry_uri(None)
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@pytest.fixture(scope="module")
def reg(tmp_path_factory) -> Iterator[Registry]:
    root = tmp_path_factory.mktemp("mlflow")
    with pytest.MonkeyPatch.context() as mp, mlflow_uris_restored():
        mp.setenv("UD_HOME", str(root / "home"))
        mp.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
        target = MlflowAliasTarget(tracking_uri=f"sqlite:///{root}/mlflow.db", artifact_root=str(root / "artifacts"))
        unit = ModelUnit(name="m", team="ml", trains_on="d", features=FEATURES, label=LABEL)
        train, holdout = synthetic(600, seed=1), synthetic(300, seed=2)
        holdout_path = root / "holdout.parquet"
        holdout.to_parquet(holdout_path)
        shuffled_train = train.assign(**{LABEL: np.random.default_rng(3).permutation(train[LABEL].to_numpy())})
        fitted = {
            "good": LogisticRegression().fit(train[FEATURES], train[LABEL]),
            "shuffled": LogisticRegression().fit(shuffled_train[FEATURES], shuffled_train[LABEL]),
        }
        artifacts = {key: target.register(unit, model, train=train, holdout_path=holdout_path, data_version=f"d{i}",
                                          train_seconds=0.1, run_id=f"dagster-run-{key}")
                     for i, (key, model) in enumerate(fitted.items(), start=1)}
        yield Registry(target=target, unit=unit, holdout=holdout, holdout_path=holdout_path, fitted=fitted, **artifacts)


def test_register_records_version_provenance_and_metrics(reg):
    assert [reg.good.version, reg.shuffled.version] == ["1", "2"]
    assert (reg.good.unit, reg.good.kind, reg.good.location) == ("m", "model", "models:/m/1")
    assert reg.good.details["holdout_path"] == str(reg.holdout_path)

    mv = reg.client.get_model_version("m", "1")
    assert mv.tags["ud.data_version"] == "d1"
    assert mv.tags["ud.unit"] == "m"
    assert reg.client.get_model_version("m", "2").tags["ud.data_version"] == "d2"
    assert mv.run_id == reg.good.details["run_id"] and reg.good.digest == f"mlflow-run:{mv.run_id}"

    run = reg.client.get_run(mv.run_id)
    # Tied to the Dagster run that trained it, under dagster-mlflow's tag name.
    assert run.data.tags["dagster_run_id"] == mv.tags["dagster_run_id"] == "dagster-run-good"
    proba = reg.fitted["good"].predict_proba(reg.holdout[FEATURES])[:, 1]
    assert run.data.metrics["holdout_roc_auc"] == pytest.approx(roc_auc_score(reg.holdout[LABEL], proba))
    assert run.data.metrics["holdout_log_loss"] == pytest.approx(log_loss(reg.holdout[LABEL], proba))
    assert run.data.metrics["train_seconds"] == pytest.approx(0.1)
    assert {k: v for k, v in run.data.metrics.items() if k != "train_seconds"} == pytest.approx(reg.good.details["metrics"])
    assert {"holdout_accuracy", "holdout_f1", "holdout_precision", "holdout_recall"} <= set(run.data.metrics)
    assert run.data.params["data_version"] == "d1"
    assert run.data.params["features"] == ",".join(FEATURES)
    assert (run.data.params["rows_train"], run.data.params["rows_holdout"]) == ("600", "300")

    # The registered model is the fitted one.
    reg.target.activate()
    loaded = mlflow.sklearn.load_model(reg.good.location)
    np.testing.assert_allclose(loaded.predict_proba(reg.holdout[FEATURES]), reg.fitted["good"].predict_proba(reg.holdout[FEATURES]))
    assert reg.target.versions(reg.unit, "staging") == ["2", "1"]


def test_deploy_sets_the_alias_and_reports_the_registered_version(reg):
    env = "staging"
    dep = reg.target.deploy(reg.unit, env, reg.good)
    assert dep.details["model_uri"] == "models:/m@staging"
    assert reg.alias(env) == "1"
    status = reg.target.status(reg.unit, env)
    assert (status.details["run_id"], status.details["data_version"]) == (reg.good.details["run_id"], "d1")
    assert reg.target.health(reg.unit, env).details == {"version": "1", "status": "READY"}


def test_deploys_and_rollbacks_are_kept_in_the_alias_history(reg):
    env = "qa"
    reg.target.deploy(reg.unit, env, reg.good)
    reg.target.deploy(reg.unit, env, reg.shuffled)
    reg.target.rollback(reg.unit, env)
    history = json.loads(reg.client.get_registered_model("m").tags[f"ud.{env}.history"])
    assert [(h["version"], h["action"]) for h in history] == [("1", "deploy"), ("2", "deploy"), ("1", "rollback")]

    with pytest.raises(TargetError) as same:
        reg.target.rollback(reg.unit, env, to_version="1")
    assert same.value.code == "UD-TARGET-SAME-VERSION"
    assert reg.alias(env) == "1"


def test_deploy_of_a_missing_version_says_what_still_serves(reg):
    env = "blue"
    reg.target.deploy(reg.unit, env, reg.good)
    missing = Artifact(unit="m", kind="model", version="99", location="models:/m/99")
    with pytest.raises(TargetError) as failed:
        reg.target.deploy(reg.unit, env, missing)
    assert failed.value.code == "UD-TARGET-MLFLOW"
    assert "99" in failed.value.message
    assert failed.value.remediation == f"{env} still serves 1"
    assert reg.alias(env) == "1"


def test_metric_gate_passes_a_good_challenger(reg):
    reg.target.deploy(reg.unit, "production", reg.shuffled)
    result = reg.gate(reg.good, metric="roc_auc", min=0.8, max_regression=0.02)
    assert result.passed, result.message
    assert result.code == "UD-GATE-METRIC-OK"
    meta = result.metadata
    assert meta["value"] == pytest.approx(reg.roc_auc("good"), abs=1e-6)
    assert meta["value"] > 0.8
    assert meta["champion_version"] == "2"
    assert meta["champion_value"] == pytest.approx(reg.roc_auc("shuffled"), abs=1e-6)
    assert meta["holdout_rows"] == len(reg.holdout)


@pytest.mark.parametrize(("candidate", "settings", "word"), [
    ("shuffled", {"metric": "roc_auc", "min": 0.8}, "below"),
    ("good", {"metric": "log_loss", "min": 0.05}, "above"),  # lower is better: min is a maximum
])
def test_metric_gate_fails_outside_the_bound(reg, candidate, settings, word):
    result = reg.gate(getattr(reg, candidate), **settings)
    assert not result.passed
    assert result.code == "UD-GATE-METRIC-THRESHOLD"
    assert f"{word} the bound {settings['min']}" in result.message
    assert result.metadata["threshold"] == settings["min"]


def test_metric_gate_fails_a_challenger_worse_than_the_champion(reg):
    reg.target.deploy(reg.unit, "production", reg.good)
    assert reg.roc_auc("shuffled") < reg.roc_auc("good") - 0.2  # the premise: clearly worse
    result = reg.gate(reg.shuffled, metric="roc_auc", max_regression=0.02)
    assert not result.passed
    assert result.code == "UD-GATE-METRIC-REGRESSION"
    meta = result.metadata
    assert meta["champion_version"] == "1"
    assert meta["delta"] == pytest.approx(reg.roc_auc("shuffled") - reg.roc_auc("good"), abs=1e-5)
    assert meta["delta"] < -0.02
    assert "production version 1" in result.message


def test_a_tree_model_registers_and_loads_back(reg):
    """MLflow saves with skops, which refuses tree types unless trusted: a random forest once failed here."""
    import mlflow.pyfunc
    from sklearn.ensemble import RandomForestClassifier

    train = synthetic(300, seed=5)
    forest = RandomForestClassifier(n_estimators=10, max_depth=3, random_state=0).fit(train[FEATURES], train[LABEL])
    artifact = reg.target.register(reg.unit, forest, train=train, holdout_path=reg.holdout_path, data_version="d9",
                                   train_seconds=0.1)
    reg.target.activate()
    loaded = mlflow.pyfunc.load_model(artifact.location)  # as the serving app loads it
    assert list(loaded.predict(reg.holdout[FEATURES].head(5))) == list(forest.predict(reg.holdout[FEATURES].head(5)))
