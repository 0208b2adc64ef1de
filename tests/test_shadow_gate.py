"""The shadow gate for models, end to end: a real MLflow registry on SQLite, the real serving app
(templates/recommendation_api) on loopback answering with the production version while it
scores a sample of the same requests with the staging version in shadow (SHADOW_MODEL_URI,
SHADOW_SAMPLE), and bounded loops of real HTTP requests. A challenger trained like the champion
passes; one trained on inverted labels is refused; the clients' latency with and without a
shadow scoring is measured."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import mlflow.sklearn
import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from unified_delivery import ModelUnit
from unified_delivery.gates import build_gate
from unified_delivery.gates.base import GateContext, GateResult
from unified_delivery.home import Home
from unified_delivery.kinds.model import drift
from unified_delivery.targets.base import Artifact
from unified_delivery.targets.mlflow_alias import MlflowAliasTarget
from unified_delivery.units import GateSpec
from tests.test_mlflow_alias import mlflow_uris_restored
from tests.test_model_monitors import APP, FEATURES, customers, free_port


@dataclass
class Shadow:
    target: MlflowAliasTarget
    unit: ModelUnit
    url: str
    log: Path
    home: Home

    def health(self) -> dict:
        with urllib.request.urlopen(f"{self.url}/health", timeout=5) as resp:
            return json.loads(resp.read())

    def traffic(self, requests: int, seed: int) -> tuple[dict[str, float], list[dict]]:
        """`requests` POSTs of 4 records each; each request's client latency in ms by its first
        record (the records are unique, so the log tells which ones were shadowed), and the
        answers."""
        frame = customers(requests * 4, seed=seed)[FEATURES]
        latency, answers = {}, []
        for i in range(requests):
            records = frame.iloc[4 * i:4 * i + 4].to_dict(orient="records")
            body = json.dumps({"records": records}).encode()
            req = urllib.request.Request(f"{self.url}/predict", data=body, headers={"Content-Type": "application/json"})
            started = time.perf_counter()
            with urllib.request.urlopen(req, timeout=10) as resp:
                answers.append(json.loads(resp.read()))
            latency[json.dumps(records[0], sort_keys=True)] = (time.perf_counter() - started) * 1000
        return latency, answers

    def gate(self, version: str, guards: str = "production", **settings) -> GateResult:
        spec = GateSpec(type="shadow", stage="staging", settings={"min_samples": 100, **settings})
        gate = build_gate(spec, self.unit)
        return gate.evaluate(GateContext(unit=self.unit, stage="staging", guards=guards, version=version,
                                         artifact=None, target=self.target, home=self.home, log=lambda _: None))

    def wait_for_shadow(self, version: str) -> None:
        deadline = time.monotonic() + 30
        while self.health().get("shadow_model_version") != version:
            assert time.monotonic() < deadline, self.health()
            time.sleep(0.2)

    def shadowed_keys(self) -> set[str]:
        keys = set()
        for entry in drift.read_log(self.log):
            if entry.get("shadow"):
                keys.add(json.dumps(entry["records"][0], sort_keys=True))
        return keys


@pytest.fixture(scope="module")
def shadow(tmp_path_factory) -> Iterator[Shadow]:
    root = tmp_path_factory.mktemp("shadow")
    home = root / "home"
    with pytest.MonkeyPatch.context() as mp, mlflow_uris_restored():
        mp.setenv("UD_HOME", str(home))
        mp.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
        uri = f"sqlite:///{root}/mlflow.db"
        target = MlflowAliasTarget(tracking_uri=uri, artifact_root=str(root / "artifacts"))
        evaluation = root / "evaluation.csv"
        customers(200, seed=2).to_csv(evaluation, index=False)
        unit = ModelUnit(name="churn", team="ml", registered_model="churn", evaluation_dataset=str(evaluation),
                         features=FEATURES, label="churned")
        target.activate()
        # v1 the champion; v2 the same recipe on other customers; v3 trained on inverted labels.
        for seed, invert in ((1, False), (5, False), (6, True)):
            train = customers(800, seed=seed)
            label = 1 - train["churned"] if invert else train["churned"]
            fitted = LogisticRegression(max_iter=500).fit(train[FEATURES], label)
            mlflow.sklearn.log_model(fitted, name="model", registered_model_name="churn",
                                     pip_requirements=["scikit-learn"])
        target.deploy(unit, "production", Artifact(unit="churn", kind="model", version="1"))
        target.deploy(unit, "staging", Artifact(unit="churn", kind="model", version="2"))

        port = free_port()
        log = drift.log_path(home, "api", "production")
        log.parent.mkdir(parents=True, exist_ok=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("UD_", "MLFLOW_"))}
        env.update(MODEL_URI="models:/churn@production", SHADOW_MODEL_URI="models:/churn@staging",
                   SHADOW_SAMPLE="0.5", MODEL_REFRESH_S="0.5", MLFLOW_TRACKING_URI=uri, UD_ENV="production",
                   UD_PREDICTION_LOG=str(log), MLFLOW_DISABLE_TELEMETRY="true")
        proc = subprocess.Popen([sys.executable, "app.py", "--port", str(port)], cwd=APP, env=env,
                                stdout=subprocess.DEVNULL, stderr=open(root / "app.log", "wb"))
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 90
            while True:
                try:
                    with urllib.request.urlopen(f"{url}/health", timeout=2):
                        break
                except OSError:
                    assert proc.poll() is None, (root / "app.log").read_text()[-2000:]
                    assert time.monotonic() < deadline, "the serving app did not start"
                    time.sleep(0.2)
            yield Shadow(target, unit, url, log, Home(home))
        finally:
            proc.terminate()
            proc.wait(timeout=20)


def test_nothing_in_production_passes_with_no_champion(shadow: Shadow):
    result = shadow.gate("2", guards="qa")
    assert result.passed and result.code == "UD-GATE-SHADOW-NO-CHAMPION", result


def test_a_good_challenger_passes_and_a_bad_one_is_refused_the_answers_are_the_champions(shadow: Shadow):
    health = shadow.health()
    assert (health["model_version"], health["shadow_model_version"], health["shadow_sample"]) == ("1", "2", 0.5)
    too_few = shadow.gate("2")
    assert not too_few.passed and too_few.code == "UD-GATE-SHADOW-TOO-FEW", too_few

    latency, answers = shadow.traffic(100, seed=10)
    assert {a["model_version"] for a in answers} == {"1"}  # every answer is the champion's
    time.sleep(0.5)  # the last shadow scorings are logged after their answers
    good = shadow.gate("2")
    m = good.metadata
    assert good.passed and good.code == "UD-GATE-SHADOW-OK", good
    assert 100 <= m["samples"] <= 300 and m["agreement"] >= 0.9 and m["psi"] < 0.2, m
    print(f"good challenger: {m['samples']} records, agreement {m['agreement']:.1%}, PSI {m['psi']}, "
          f"shadow scoring p50 {m['shadow_ms_p50']} ms")

    # The clients' latency: the shadow is scored after the answer is sent.
    shadowed = shadow.shadowed_keys()
    with_shadow = [ms for key, ms in latency.items() if key in shadowed]
    without = [ms for key, ms in latency.items() if key not in shadowed]
    assert len(with_shadow) >= 20 and len(without) >= 20
    p50_with, p50_without = statistics.median(with_shadow), statistics.median(without)
    print(f"client latency p50: shadowed {p50_with:.2f} ms ({len(with_shadow)}), "
          f"not shadowed {p50_without:.2f} ms ({len(without)}); shadow scoring p50 {m['shadow_ms_p50']} ms")
    assert p50_with < p50_without + 20, (p50_with, p50_without)

    # A challenger trained on inverted labels: staging moves to it, the app follows the alias.
    shadow.target.deploy(shadow.unit, "staging", Artifact(unit="churn", kind="model", version="3"))
    shadow.wait_for_shadow("3")
    shadow.traffic(100, seed=11)
    time.sleep(0.5)
    bad = shadow.gate("3")
    m = bad.metadata
    assert not bad.passed and bad.code == "UD-GATE-SHADOW", bad
    assert m["agreement"] < 0.5 and "agreement" in m["exceeded"][0], m
    print(f"bad challenger: {m['samples']} records, agreement {m['agreement']:.1%}, PSI {m['psi']}")
    # Version 2's shadow records are not version 3's evidence.
    assert shadow.gate("2").metadata["samples"] == good.metadata["samples"]


def test_a_platform_loads_the_gate_and_refuses_its_bad_settings(tmp_path):
    from unified_delivery import Platform
    from unified_delivery.errors import ConfigError

    evaluation = tmp_path / "e.csv"
    customers(20, seed=1).to_csv(evaluation, index=False)

    def load(settings: dict) -> Platform:
        unit = ModelUnit(name="m", team="ml", registered_model="m", evaluation_dataset=str(evaluation),
                         features=FEATURES, label="churned",
                         gates=[GateSpec(type="shadow", stage="staging", settings=settings)])
        return Platform([unit], targets={"model": MlflowAliasTarget(tracking_uri=f"sqlite:///{tmp_path}/m.db")})

    (gate,) = [g for g in load({"min_agreement": 0.95}).gates["m"] if g.spec.type == "shadow"]
    assert (gate.settings.min_agreement, gate.spec.stage) == (0.95, "staging")
    with pytest.raises(ConfigError) as err:
        load({"min_agreement": 2})
    assert err.value.code == "UD-CONFIG-GATE" and "settings.min_agreement" in err.value.message
