"""The model monitor after deploy, end to end: a real MLflow registry on SQLite, the real serving
app (templates/recommendation_api) in its own process on loopback logging what it serves to
UD_PREDICTION_LOG, bounded loops of real HTTP requests, and the health sensor ticking on a real
Dagster instance. Requests drawn like the training hold-out stay in soak with a small PSI and
nothing is rolled back; requests whose features shifted breach the monitor, which records a
`monitor-breach` entry with the PSI per feature and rolls production back through the target."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import dagster as dg
import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

from unified_delivery import ModelUnit, Platform
from unified_delivery.errors import ConfigError
from unified_delivery.events import MonitorBreach, Promotion, record
from unified_delivery.governance.policy import Governance, PolicyFile, Principal
from unified_delivery.home import Home
from unified_delivery.kinds.model import drift
from unified_delivery.ledger import LedgerResource
from unified_delivery.notifications.outbox import messages
from unified_delivery.soak import MonitorSpec
from unified_delivery.targets.base import Artifact
from unified_delivery.targets.mlflow_alias import MlflowAliasTarget
from unified_delivery.triggers.health import health_sensor
from unified_delivery.triggers.tick import tick
from tests.test_mlflow_alias import mlflow_uris_restored

REPO_ROOT = Path(__file__).resolve().parents[1]
APP = REPO_ROOT / "templates" / "recommendation_api"
FEATURES = ["tenure_days", "order_count", "total_spend", "avg_order_value", "days_since_last_order"]
SENSORS = "service:sensors"


def customers(rows: int, seed: int, shift: float = 0.0) -> pd.DataFrame:
    """Synthetic customers; `shift` moves recency and tenure the way a changed population would."""
    rng = np.random.default_rng(seed)
    orders = rng.poisson(8, rows) + 1
    spend = rng.gamma(2.0, 150.0, rows)
    frame = pd.DataFrame({
        "tenure_days": rng.uniform(30, 1000, rows) * (1 - 0.6 * shift),
        "order_count": orders.astype(float),
        "total_spend": spend,
        "avg_order_value": spend / orders,
        "days_since_last_order": rng.exponential(30, rows) * (1 + 3 * shift),
    })
    logit = 0.05 * frame["days_since_last_order"] - 0.002 * frame["tenure_days"] + rng.normal(0, 0.5, rows)
    frame["churned"] = (logit > 0).astype(int)
    return frame


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class World:
    platform: Platform
    defs: dg.Definitions
    home: Home
    unit: ModelUnit
    target: MlflowAliasTarget
    url: str
    log: Path

    def predict(self, frame: pd.DataFrame, batch: int = 5) -> int:
        """POST the rows in requests of `batch` records; the number of requests sent."""
        sent = 0
        for start in range(0, len(frame), batch):
            records = frame.iloc[start:start + batch][FEATURES].to_dict(orient="records")
            body = json.dumps({"records": records}).encode()
            req = urllib.request.Request(f"{self.url}/predict", data=body, headers={"Content-Type": "application/json"})
            with urllib.request.urlopen(req, timeout=10) as resp:
                assert resp.status == 200
            sent += 1
        return sent

    def health_tick(self) -> list[tuple[str, str]]:
        report = tick(self.defs, self.home)
        (entry,) = report["sensors"]
        assert entry["error"] is None, entry
        return [(r["job"], r["outcome"]) for r in entry["requested"]]

    def production(self) -> str:
        dep = self.target.status(self.unit, "production")
        assert dep is not None
        return dep.version


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Iterator[World]:
    root = tmp_path_factory.mktemp("model-monitor")
    home = root / "home"
    with pytest.MonkeyPatch.context() as mp, mlflow_uris_restored():
        mp.setenv("UD_HOME", str(home))
        mp.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
        for var in ("UD_MLFLOW_TRACKING_URI", "UD_WAREHOUSE", "UD_LEDGER_URL"):
            mp.delenv(var, raising=False)
        t0 = time.monotonic()
        uri = f"sqlite:///{root}/mlflow.db"
        target = MlflowAliasTarget(tracking_uri=uri, artifact_root=str(root / "artifacts"))
        evaluation = root / "evaluation.csv"
        train, holdout = customers(800, seed=1), customers(400, seed=2)
        holdout.to_csv(evaluation, index=False)
        holdout_path = root / "holdout.parquet"
        holdout.to_parquet(holdout_path)
        unit = ModelUnit(name="churn", team="ml", registered_model="churn", evaluation_dataset=str(evaluation),
                         features=FEATURES, label="churned",
                         monitor=MonitorSpec(soak="1h", min_samples=50, max_feature_psi=0.2, max_prediction_psi=0.2))
        governance = Governance(PolicyFile(principals={SENSORS: Principal(roles={"*": ["deploy"]})}))
        platform = Platform([unit], targets={"model": target}, governance=governance,
                            ledger=LedgerResource(url=f"sqlite:///{home / 'ledger.db'}"))
        Home(home).ensure()
        ledger = platform.ledger.ledger()
        fitted = LogisticRegression(max_iter=500).fit(train[FEATURES], train["churned"])
        first = target.register(unit, fitted, train=train, holdout_path=holdout_path, data_version="d1",
                                train_seconds=0.1)
        # A second version of the same run's model (a retrain costs seconds and shows nothing more
        # here): production has a version to go back to.
        mv = target.client().get_model_version("churn", first.version)
        second = target.client().create_model_version("churn", mv.source, run_id=mv.run_id)
        for version in (first.version, str(second.version)):
            target.deploy(unit, "production", Artifact(unit="churn", kind="model", version=version))
            record(ledger, Promotion(team="ml", kind="model"), principal="service:test", unit="churn",
                   env="production", version=version)
        base = platform.definitions()
        jobs = {j.name: j for j in base.jobs}
        defs = dg.Definitions.merge(base, dg.Definitions(
            sensors=[health_sensor(platform, [jobs["ud_rollback"]], name="health", principal=SENSORS)]))

        print(f"registry ready: {time.monotonic() - t0:.1f} s")
        port = free_port()
        log = drift.log_path(home, "api", "production")
        log.parent.mkdir(parents=True, exist_ok=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("UD_", "MLFLOW_"))}
        env.update(MODEL_URI="models:/churn@production", MLFLOW_TRACKING_URI=uri, UD_ENV="production",
                   UD_PREDICTION_LOG=str(log), MLFLOW_DISABLE_TELEMETRY="true")
        proc = subprocess.Popen([sys.executable, "app.py", "--port", str(port)], cwd=APP, env=env,
                                stdout=subprocess.DEVNULL, stderr=open(root / "app.log", "wb"))
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 90
            while True:
                try:
                    with urllib.request.urlopen(f"{url}/health", timeout=2) as resp:
                        body = json.loads(resp.read())
                        break
                except OSError:
                    assert proc.poll() is None, (root / "app.log").read_text()[-2000:]
                    assert time.monotonic() < deadline, "the serving app did not start"
                    time.sleep(0.2)
            assert body["model_version"] == "2"
            print(f"app serving: {time.monotonic() - t0:.1f} s")
            yield World(platform, defs, Home(home), unit, target, url, log)
        finally:
            proc.terminate()
            proc.wait(timeout=20)


def test_served_requests_like_the_holdout_soak_and_a_shift_rolls_back_with_the_evidence(world: World):
    assert world.production() == "2"
    # Before enough requests: in soak, not judged yet.
    health = world.target.health(world.unit, "production")
    assert health.healthy and health.details["monitor"]["samples"] == 0, health

    # Customers like the ones the model was trained on: no drift, nothing rolled back.
    world.predict(customers(300, seed=3))
    lines = [json.loads(line) for line in world.log.read_text().splitlines()]
    assert len(lines) == 60 and {(e["model"], e["model_version"]) for e in lines} == {("churn", "2")}
    assert world.health_tick() == []
    health = world.target.health(world.unit, "production")
    calm = health.details["monitor"]
    assert health.healthy and calm["samples"] == 300 and not calm["breached"], health
    assert max(calm["feature_psi"].values()) < 0.1 and calm["prediction_psi"] < 0.1, calm
    print(f"healthy: feature PSI {calm['feature_psi']}, predictions {calm['prediction_psi']}")

    # The population shifts: recency triples, tenure falls. The monitor breaks and production
    # goes back to version 1 through the ud_rollback run.
    world.predict(customers(300, seed=4, shift=1.0))
    started = time.monotonic()
    assert world.health_tick() == [("ud_rollback", "success")]
    print(f"breach tick and rollback run: {time.monotonic() - started:.1f} s")
    assert world.production() == "1"
    ledger = world.platform.ledger.ledger()
    (breach,) = ledger.entries(unit="churn", env="production", action=MonitorBreach.ACTION)
    event = MonitorBreach.read(breach)
    assert breach.version == "2" and breach.principal == SENSORS and event.rollback_to == "1"
    psi = event.evidence["feature_psi"]
    assert psi["days_since_last_order"] > 0.2 and event.evidence["samples"] == 600, event.evidence
    assert "days_since_last_order PSI" in event.message
    print(f"shifted: feature PSI {psi}, predictions {event.evidence['prediction_psi']}")
    rollback = ledger.latest(unit="churn", env="production", action="rollback")
    assert rollback.version == "1" and "monitor breach in soak of 2" in rollback.payload["reason"]
    told = [m for m in messages(world.platform, ledger, ledger.entries(unit="churn")) if m.event == "monitor-breach"]
    assert [m.title for m in told] == ["churn in production: 2 broke its monitor in soak; rolling back to 1"]
    assert told[0].details["evidence"]["feature_psi"] == psi  # what a notification route sends

    # Version 1 is where production was before the deploy that broke, not a new deploy: no soak
    # of its own, and nothing more is requested (no second breach entry, no rollback back).
    health = world.target.health(world.unit, "production")
    assert health.healthy and "monitor" not in health.details, health
    assert world.health_tick() == []
    assert len(ledger.entries(unit="churn", env="production", action=MonitorBreach.ACTION)) == 1


def test_status_shows_a_deploy_in_soak_and_not_a_rollback(world: World):
    from unified_delivery.output import status_table
    from unified_delivery.service.unit_status import status

    ledger = world.platform.ledger.ledger()
    if world.production() != "2":  # the first test rolled it back: a rollback does not soak
        assert "soak_until" not in status(world.platform)["units"][0]["environments"]["production"]
        world.target.deploy(world.unit, "production", Artifact(unit="churn", kind="model", version="2"))
        record(ledger, Promotion(team="ml", kind="model"), principal="service:test", unit="churn",
               env="production", version="2")
    data = status(world.platform)
    (unit,) = data["units"]
    until = unit["environments"]["production"]["soak_until"]
    assert until > unit["environments"]["production"]["deployed_at"]
    assert "in soak until " + until[:19].replace("T", " ") in status_table(data)


def test_psi_is_small_for_the_same_population_and_large_for_a_shifted_one():
    rng = np.random.default_rng(0)
    reference = rng.normal(size=2000).tolist()
    assert drift.psi(reference, rng.normal(size=500).tolist()) < 0.05
    assert drift.psi(reference, rng.normal(loc=1.0, size=500).tolist()) > 0.5
    assert drift.psi([1.0] * 10, [1.0] * 10) == 0.0  # one value: one bin, no shift


def test_a_monitor_that_does_not_fit_the_unit_is_refused_at_load(tmp_path):
    evaluation = tmp_path / "e.csv"
    customers(20, seed=1).to_csv(evaluation, index=False)

    def load(**monitor):
        unit = ModelUnit(name="m", team="ml", registered_model="m", evaluation_dataset=str(evaluation),
                         features=FEATURES, label="churned", monitor=MonitorSpec(**monitor))
        return Platform([unit], targets={"model": MlflowAliasTarget(tracking_uri=f"sqlite:///{tmp_path}/m.db")})

    with pytest.raises(ConfigError) as err:
        load(min_rows=10)
    assert err.value.code == "UD-CONFIG-MONITOR" and "min_rows watch a data product" in err.value.message
    with pytest.raises(ConfigError) as err:
        load(env="qa")
    assert err.value.code == "UD-CONFIG-MONITOR" and "'qa' is not one of its environments" in err.value.message
    with pytest.raises(ValueError, match="not a duration"):
        MonitorSpec(soak="soon")
