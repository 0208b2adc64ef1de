"""Fairness and schema gates on real scikit-learn models, logged and registered by the
model target on a SQLite MLflow tracking store in a temporary folder."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from unified_delivery.errors import ConfigError
from unified_delivery.gates import GateContext, build_gate
from unified_delivery.home import Home
from unified_delivery.targets.base import Artifact
from unified_delivery.targets.mlflow_alias import MlflowAliasTarget
from unified_delivery.kinds.model.unit import ModelUnit
from unified_delivery.units import GateSpec

FEATURES = ["tenure_days", "spend"]
SENDS = {"tenure_days": "double", "spend": "double"}


def frame(biased: bool, rows: int = 800, seed: int = 0) -> pd.DataFrame:
    """Customers of two plans; when `biased`, churn (and so the model's score) follows the plan."""
    rng = np.random.default_rng(seed)
    plan = np.where(rng.random(rows) < 0.5, "basic", "pro")
    tenure = rng.integers(30, 2000, rows).astype("int32")  # an integer column, as in customer_features
    spend = rng.normal(100, 30, rows) + (np.where(plan == "pro", 80.0, 0.0) if biased else 0.0)
    logit = -(tenure - 1000) / 300 - (spend - 100) / (15 if biased else 60)
    churned = (rng.random(rows) < 1 / (1 + np.exp(-logit))).astype(int)
    return pd.DataFrame({"tenure_days": tenure, "spend": spend, "plan": plan, "churned": churned})


def model_unit(*gates: GateSpec, extra_columns=("plan",)) -> ModelUnit:
    return ModelUnit(name="churn", team="ml", trains_on="features", features=FEATURES, label="churned",
                     extra_columns=list(extra_columns), gates=list(gates))


@pytest.fixture(scope="module")
def registry(tmp_path_factory) -> tuple[MlflowAliasTarget, dict, Path]:
    """One MLflow store for the module, with an unbiased and a biased model version."""
    root = tmp_path_factory.mktemp("mlflow")
    target = MlflowAliasTarget(tracking_uri=f"sqlite:///{root / 'mlflow.db'}", artifact_root=str(root / "artifacts"))
    unit = model_unit()
    versions = {biased: register(target, unit, frame(biased), root / f"holdout-{biased}.parquet")
                for biased in (False, True)}
    return target, versions, root


def register(target: MlflowAliasTarget, unit: ModelUnit, data: pd.DataFrame, path: Path) -> Artifact:
    """What the model kind and target do: hold out a quarter (with the extra columns), fit, log
    with the signature inferred from the training columns, register. Pip requirements are
    given, not inferred: inference costs MLflow a child process and ~15 s per model."""
    import mlflow
    import mlflow.sklearn
    from mlflow.models import infer_signature
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    train, holdout = data.iloc[:600], data.iloc[600:]
    holdout[[*unit.features, unit.label, *unit.extra_columns]].to_parquet(path)
    fitted = make_pipeline(StandardScaler(), LogisticRegression()).fit(train[FEATURES], train["churned"])
    target.activate()
    sample = train[FEATURES].head(5)
    experiment = mlflow.get_experiment_by_name("gates") or mlflow.get_experiment(mlflow.create_experiment(
        "gates", artifact_location=Path(target.artifact_root).as_uri()))  # not ./mlruns in the working directory
    with mlflow.start_run(experiment_id=experiment.experiment_id):
        info = mlflow.sklearn.log_model(fitted, name="model", signature=infer_signature(sample, fitted.predict(sample)),
                                        pip_requirements=["scikit-learn"], registered_model_name=unit.model_name)
    version = str(info.registered_model_version)
    return Artifact(unit=unit.name, kind="model", version=version, location=f"models:/{unit.model_name}/{version}",
                    details={"holdout_path": str(path)})


def run(settings: dict, registry, biased: bool = False, gate: str = "fairness"):
    target, versions, root = registry
    unit = model_unit(GateSpec(type=gate, settings=settings))
    artifact = versions[biased]
    ctx = GateContext(unit=unit, stage="candidate", guards="staging", version=artifact.version, artifact=artifact,
                      target=target, home=Home(root), log=lambda _: None)
    return build_gate(unit.gates[0], unit).evaluate(ctx)


def test_fairness_passes_when_groups_are_scored_alike(registry):
    result = run({"sensitive_column": "plan", "max_gap": 0.2}, registry)
    assert result.passed, result.message
    assert result.code == "UD-GATE-FAIRNESS-OK"
    groups = result.metadata["groups"]
    assert set(groups) == {"basic", "pro"} and sum(g["rows"] for g in groups.values()) == 200
    assert result.metadata["gap"] == pytest.approx(abs(groups["basic"]["rate"] - groups["pro"]["rate"]), abs=1e-6)
    assert result.metadata["gap"] <= 0.2


def test_fairness_refuses_a_gap_above_the_bound(registry):
    result = run({"sensitive_column": "plan", "max_gap": 0.1}, registry, biased=True)
    assert not result.passed
    assert result.code == "UD-GATE-FAIRNESS-GAP"
    assert result.metadata["gap"] > 0.1
    assert result.metadata["highest"] == "basic" and result.metadata["lowest"] == "pro"
    assert "above the bound 0.1" in result.message


def test_fairness_recall_and_groups_too_small_to_compare(registry):
    result = run({"sensitive_column": "plan", "rate": "recall", "max_gap": 0.5, "min_group_size": 500}, registry)
    assert not result.passed
    assert result.code == "UD-GATE-FAIRNESS-GROUPS"
    # Recall is counted over actual positives only.
    assert all(g["base"] < g["rows"] for g in result.metadata["groups"].values())


def test_fairness_gate_refuses_a_column_not_in_the_holdout():
    unit = model_unit(GateSpec(type="fairness", settings={"sensitive_column": "plan", "max_gap": 0.2}), extra_columns=())
    with pytest.raises(ConfigError) as err:
        build_gate(unit.gates[0], unit)
    assert "unit churn" in err.value.message and "field settings.sensitive_column" in err.value.message
    assert "extra_columns" in err.value.remediation


def test_schema_passes_for_what_the_app_sends(registry):
    result = run({"consumers": {"recommendation_api": SENDS}}, registry, gate="schema")
    assert result.passed, result.message
    assert result.code == "UD-GATE-SCHEMA-OK"
    assert result.metadata["signature"] == {"tenure_days": "integer", "spend": "double"}
    # A double sent for an integer input passes by default, and is listed.
    assert result.metadata["conversions"] == [{"app": "recommendation_api", "column": "tenure_days",
                                               "expected": "integer", "sent": "double"}]


def test_schema_mismatch_names_the_column_and_the_app(registry):
    consumers = {"recommendation_api": SENDS, "crm_sync": {"tenure_days": "long", "spend": "string"},
                 "mobile": {"spend": "double"}}
    result = run({"consumers": consumers}, registry, gate="schema")
    assert not result.passed
    assert result.code == "UD-GATE-SCHEMA-MISMATCH"
    problems = {(p["app"], p["column"]): p["sent"] for p in result.metadata["problems"]}
    assert problems == {("crm_sync", "spend"): "string", ("mobile", "tenure_days"): None}
    assert "mobile does not send tenure_days" in result.message
    assert "crm_sync sends spend as string" in result.message


def test_schema_strict_types_follow_mlflow_enforcement(registry):
    result = run({"consumers": {"recommendation_api": SENDS}, "strict_types": True}, registry, gate="schema")
    assert not result.passed
    assert result.code == "UD-GATE-SCHEMA-MISMATCH"
    assert "recommendation_api sends tenure_days as double, the model expects integer" in result.message


def test_schema_refuses_an_unknown_type_at_load():
    with pytest.raises(ConfigError) as err:
        unit = model_unit(GateSpec(type="schema", settings={"consumers": {"app": {"spend": "decimal"}}}))
        build_gate(unit.gates[0], unit)
    assert "settings.consumers.app.spend" in err.value.message


@pytest.mark.parametrize("sent, expected, strict, verdict", [
    ("double", "double", True, "ok"),
    ("integer", "long", True, "ok"),
    ("integer", "double", True, "ok"),
    ("long", "double", True, "incompatible"),  # MLflow refuses int64 -> float64 (precision)
    ("double", "integer", True, "incompatible"),
    ("double", "integer", False, "conversion"),
    ("string", "double", False, "incompatible"),
    ("boolean", "long", False, "incompatible"),
])
def test_type_compatibility(sent: str, expected: str, strict: bool, verdict: str):
    from unified_delivery.gates.schema import verdict as judge

    assert judge(sent, expected, strict) == verdict
