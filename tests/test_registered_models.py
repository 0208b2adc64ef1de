"""Registered models: a model unit declared in YAML (`unified_delivery.Model`) with no
training function, only a registered model name and an evaluation dataset. Its versions are
logged and registered by a plain MLflow script in another process (a pyfunc PythonModel, not
scikit-learn), picked up by the registry sensor, gated on the evaluation rows (metric against
production, fairness, schema) and promoted through MLflow aliases; broken versions are refused
with their real cause. A real SQLite MLflow registry and a real Dagster instance."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd
import pytest

from unified_delivery import Platform
from unified_delivery.errors import ConfigError
from unified_delivery.governance.policy import Governance, PolicyFile, Principal
from unified_delivery.home import Home
from unified_delivery.ledger import LedgerResource
from unified_delivery.targets.mlflow_alias import MlflowAliasTarget
from unified_delivery.promotions import job_name
from unified_delivery.triggers.registry import ledger_knows, model_watches, registry_sensor, undeclared_models
from unified_delivery.triggers.tick import tick

SENSORS, MAYA = "service:sensors", "human:maya"

UNIT = """
type: unified_delivery.Model
attributes:
  name: churn_external
  team: ml
  registered_model: churn-external
  evaluation_dataset: data/evaluation.csv
  label: churned
  gates:
    - {type: model-metric, settings: {metric: roc_auc, min: 0.6, max_regression: 0.02}}
    - {type: fairness, settings: {sensitive_column: plan, max_gap: 0.25}}
    - {type: schema, settings: {consumers: {churn_api: {tenure_days: double, spend: double}}}}
"""

# What a data scientist runs on their own machine: no platform import, MLflow only.
SCRIPT = '''
import sys

import mlflow
import mlflow.pyfunc
import numpy as np
import pandas as pd
from mlflow.models import infer_signature

uri, root = sys.argv[1], sys.argv[2]
mlflow.set_tracking_uri(uri)
mlflow.set_registry_uri(uri)


class Churn(mlflow.pyfunc.PythonModel):
    """A hand-written logistic score: the probability of churn, or (labels=True) 0/1."""

    def __init__(self, weights, columns, labels=False):
        self.weights, self.columns, self.labels = weights, columns, labels

    def predict(self, context, model_input, params=None):
        x = model_input[self.columns].to_numpy(dtype=float)
        z = self.weights[0] + x @ np.asarray(self.weights[1:], dtype=float)
        p = 1 / (1 + np.exp(-z))
        return (p >= 0.5).astype(int) if self.labels else p


VARIANTS = {  # weights on (tenure_days, spend), in the columns' own units
    "good": (Churn([3.3, -1 / 300, -1 / 60], ["tenure_days", "spend"]), ["tenure_days", "spend"]),
    "worse": (Churn([0.0, 0.0, -1 / 400], ["tenure_days", "spend"]), ["tenure_days", "spend"]),
    "renamed": (Churn([3.3, -1 / 300, -1 / 60], ["tenure_days", "monthly_spend"]), ["tenure_days", "monthly_spend"]),
    "labels": (Churn([3.3, -1 / 300, -1 / 60], ["tenure_days", "spend"], labels=True), ["tenure_days", "spend"]),
}
experiment = mlflow.get_experiment_by_name("churn") or mlflow.get_experiment(
    mlflow.create_experiment("churn", artifact_location=root))
for variant in sys.argv[3:]:
    model, columns = VARIANTS[variant]
    sample = pd.DataFrame({c: [100.0, 900.0] for c in columns})
    with mlflow.start_run(experiment_id=experiment.experiment_id, run_name=variant):
        mlflow.pyfunc.log_model(name="model", python_model=model, pip_requirements=["mlflow", "numpy"],
                                signature=infer_signature(sample, model.predict(None, sample)),
                                registered_model_name="churn-external")
client = mlflow.MlflowClient()
if not client.search_registered_models(filter_string="name = 'scratch-notebook'"):
    client.create_registered_model("scratch-notebook")  # a model nobody declares
'''


def evaluation_rows(rows: int = 600, seed: int = 3) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    tenure = rng.integers(30, 2000, rows).astype(float)
    spend = rng.normal(100, 40, rows)
    p = 1 / (1 + np.exp(-(3.3 - tenure / 300 - spend / 60)))
    return pd.DataFrame({"tenure_days": tenure, "spend": spend,
                         "plan": np.where(rng.random(rows) < 0.5, "basic", "pro"),
                         "churned": (rng.random(rows) < p).astype(int)})


@pytest.fixture
def registry(tmp_path: Path, ud_home: Path):
    """The platform (its one unit in YAML), its Definitions with the registry sensor, and a
    function that runs the data scientist's script for some variants."""
    units = tmp_path / "platform" / "assets" / "units"
    (units / "data").mkdir(parents=True)
    (units / "churn_external.yaml").write_text(UNIT)
    evaluation_rows().to_csv(units / "data" / "evaluation.csv", index=False)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    target = MlflowAliasTarget(tracking_uri=uri, artifact_root=str(tmp_path / "artifacts"))
    governance = Governance(PolicyFile(principals={SENSORS: Principal(roles={"staging": ["deploy"]}),
                                                   MAYA: Principal(roles={"*": ["deploy"]})}))
    platform = Platform.from_directory(units, targets={"model": target}, governance=governance,
                                       ledger=LedgerResource(url=f"sqlite:///{ud_home / 'ledger.db'}"))
    base = platform.definitions()
    jobs = {j.name: j for j in base.jobs}
    sensor = registry_sensor("registry", lambda: model_watches(platform), target.client,
                             [jobs[job_name("staging")]], known=ledger_knows(platform),
                             undeclared=undeclared_models(platform, SENSORS), principal=SENSORS)
    defs = dg.Definitions.merge(base, dg.Definitions(sensors=[sensor]))
    script = tmp_path / "train.py"
    script.write_text(SCRIPT)

    def register(*variants: str) -> None:
        subprocess.run([sys.executable, str(script), uri, (tmp_path / "notebook-artifacts").as_uri(), *variants],
                       check=True, capture_output=True, text=True, cwd=tmp_path, timeout=300)

    return platform, defs, register


def requested(report: dict) -> list[tuple[str, str]]:
    return [(r["run_key"], r["outcome"]) for s in report["sensors"] for r in s["requested"]]


def failed_gates(platform, version: str) -> dict[str, dict]:
    ledger = platform.ledger.ledger()
    entries = [e for e in ledger.entries(unit="churn_external", action="gate") if e.version == version]
    return {e.payload["gate"]: e.payload for e in entries if not e.payload["passed"]}


def test_a_model_registered_by_a_plain_script_is_gated_and_promoted(registry, ud_home):
    from unified_delivery import service

    platform, defs, register = registry
    unit = platform.unit("churn_external")
    target, home = platform.target(unit, "staging"), Home(ud_home)

    # No version yet: a promotion says so, with its code.
    outcome = service.promote(platform, defs, "churn_external", "staging", reason="t", principal=MAYA, home=home)
    assert outcome.error is not None and outcome.error.code == "UD-MODEL-NO-VERSION"

    register("good")
    report = tick(defs, home)
    assert requested(report) == [("mlflow:churn-external:1", "success")]
    assert target.status(unit, "staging").version == "1"
    notes = [n for s in report["sensors"] for n in s.get("notes", [])]
    assert any(n.get("event") == "undeclared" and n.get("model") == "scratch-notebook" for n in notes), notes
    gates = platform.ledger.ledger().entries(unit="churn_external", action="gate")
    assert {e.payload["gate"]: e.payload["passed"] for e in gates} == {
        "model_metric": True, "fairness": True, "schema": True, "policy": True}
    metric = next(e.payload for e in gates if e.payload["gate"] == "model_metric")["metadata"]
    assert metric["flavor"] == "pyfunc" and metric["holdout_rows"] == 600 and metric["value"] > 0.75

    outcome = service.promote(platform, defs, "churn_external", "production", reason="t", principal=MAYA, home=home)
    assert outcome.error is None and target.status(unit, "production").version == "1"

    # Three more versions at once: the newest (labels only) is built and refused for roc_auc.
    register("worse", "renamed", "labels")
    assert requested(tick(defs, home)) == [("mlflow:churn-external:4", "failed")]
    labels_only = failed_gates(platform, "4")
    assert labels_only["model_metric"]["code"] == "UD-MODEL-NO-PROBABILITIES"
    assert "fairness" not in labels_only  # fairness judges its predicted labels
    # The worse one, asked for by version: worse than production on the same rows.
    outcome = service.promote(platform, defs, "churn_external", "staging", ref="2", reason="t", principal=MAYA,
                              home=home)
    assert outcome.error is not None
    refused = failed_gates(platform, "2")["model_metric"]
    assert refused["code"] == "UD-GATE-METRIC-REGRESSION" and "production version 1" in refused["message"]
    # The one whose input was renamed: it cannot take the evaluation rows, nor what the app sends.
    service.promote(platform, defs, "churn_external", "staging", ref="3", reason="t", principal=MAYA, home=home)
    broken = failed_gates(platform, "3")
    assert broken["model_metric"]["code"] == "UD-MODEL-SCHEMA-MISMATCH" and "monthly_spend" in broken["model_metric"]["message"]
    assert broken["schema"]["code"] == "UD-GATE-SCHEMA-MISMATCH"
    assert target.status(unit, "staging").version == "1" and target.status(unit, "production").version == "1"

    # The undeclared model is in the ledger once, whatever the ticks.
    undeclared = platform.ledger.ledger().entries(action="model-undeclared")
    assert [e.payload["model"] for e in undeclared] == ["scratch-notebook"]


def test_a_model_unit_in_yaml_without_an_evaluation_dataset_is_refused(tmp_path: Path):
    (tmp_path / "m.yaml").write_text("type: unified_delivery.Model\nattributes: {team: ml, registered_model: m, "
                                     "label: y}\n")
    with pytest.raises(ConfigError) as err:
        Platform.from_directory(tmp_path)
    assert err.value.code == "UD-CONFIG-UNIT" and "evaluation_dataset" in err.value.message


def test_the_model_component_schema_is_the_unit_declaration():
    from unified_delivery import Model, ModelUnit

    assert set(Model.get_model_cls().model_fields) == set(ModelUnit.model_fields)
    schema = Model.get_model_cls().model_json_schema()
    assert set(schema["required"]) == {"team", "label"}  # the name defaults to the folder
    assert "registered" in schema["properties"]["evaluation_dataset"]["description"]


class Predicts:
    """What the gates call on a pyfunc model: predict(rows) -> its output, as a flavor gives it."""

    def __init__(self, output):
        self.output = output

    def predict(self, rows):
        return self.output(rows)


@pytest.mark.parametrize("output, kind, classes", [
    (lambda X: X["x"].to_numpy() / 10, "proba", (0, 1)),                                   # one column in [0, 1]
    (lambda X: pd.DataFrame({"0": 1 - X["x"] / 10, "1": X["x"] / 10}), "classes", (0, 1)),  # a column per class
    (lambda X: (X["x"] > 5).astype(int), "labels", (0, 1)),                                 # 0/1
    (lambda X: np.where(X["x"] > 5, "yes", "no"), "labels", ("no", "yes")),                 # class names
])
def test_a_pyfunc_output_is_read_as_probabilities_class_columns_or_labels(output, kind, classes):
    from unified_delivery.errors import UDError
    from unified_delivery.gates.model_metric import score
    from unified_delivery.kinds.model.evaluation import Scorer

    rows = pd.DataFrame({"x": [1.0, 2.0, 4.0, 6.0, 8.0, 9.0]})
    y = pd.Series([classes[0]] * 3 + [classes[1]] * 3)
    scorer = Scorer("7", Predicts(output), "pyfunc")
    assert scorer._predict(rows)[0] == kind
    assert score("accuracy", scorer, rows, y) == 1.0
    if kind == "labels":
        with pytest.raises(UDError) as err:
            score("roc_auc", scorer, rows, y)
        assert err.value.code == "UD-MODEL-NO-PROBABILITIES"
    else:
        assert score("roc_auc", scorer, rows, y) == 1.0
    with pytest.raises(UDError) as err:
        scorer.inputs(rows, ["x", "z"])
    assert err.value.code == "UD-MODEL-SCHEMA-MISMATCH" and "'z'" in err.value.message
