"""Promotion, health and cascade sensors on a real platform, Git repository and Dagster
instance: a push reaches staging and, with an automatic policy, production; a deploy whose
health fails is rolled back with the reason recorded; a new data version retrains its model.
Apps deploy through a small file-backed target (a BaseTarget with its two steps), so the runs
deploy for real but in milliseconds; data and models have the embedded targets, the roles their
kinds need (a warehouse, a model registry), though nothing here builds them."""

from __future__ import annotations

import json
import subprocess
import time
from datetime import datetime, timezone
from pathlib import Path

import dagster as dg
import pytest

from unified_delivery import AppUnit, ModelUnit, Platform, Policy
from unified_delivery.errors import TargetError
from unified_delivery.governance.policy import Governance, PolicyFile, Principal
from unified_delivery.home import Home
from unified_delivery.ledger import LedgerResource
from unified_delivery.targets.base import BaseTarget, Deployment, Health
from unified_delivery.targets.dbt_duckdb import DbtDuckDBTarget
from unified_delivery.targets.mlflow_alias import MlflowAliasTarget
from unified_delivery.triggers.base import collect_notes
from unified_delivery.triggers.cascade import cascade_sensor
from unified_delivery.triggers.git import app_watches, git_sensor
from unified_delivery.triggers.health import health_sensor
from unified_delivery.triggers.promotion import promotion_sensor
from unified_delivery.triggers.tick import tick

REPO_ROOT = Path(__file__).resolve().parents[1]
SENSORS = "service:sensors"


class FileTarget(BaseTarget):
    """Deployments as JSON files; health fails for the versions listed in `<unit>.<env>.unhealthy`."""

    root: str

    def _file(self, unit, env: str) -> Path:
        return Path(self.root) / f"{unit.name}.{env}.json"

    def _write(self, unit, env: str, version: str, previous: str | None) -> Deployment:
        Path(self.root).mkdir(parents=True, exist_ok=True)
        dep = {"version": version, "previous_version": previous, "deployed_at": datetime.now(timezone.utc).isoformat()}
        self._file(unit, env).write_text(json.dumps(dep))
        return Deployment(unit=unit.name, env=env, **dep)

    def _deploy(self, unit, env, artifact, current, log) -> Deployment:
        return self._write(unit, env, artifact.version, current.version if current else None)

    def _rollback(self, unit, env, to_version, current, log) -> Deployment:
        target = to_version or (current.previous_version if current else None)
        if not target:
            raise TargetError("UD-TARGET-NO-PREVIOUS", f"{unit.name} has no previous version in {env}", "give --to")
        return self._write(unit, env, target, current.version)

    def status(self, unit, env) -> Deployment | None:
        f = self._file(unit, env)
        return Deployment(unit=unit.name, env=env, **json.loads(f.read_text())) if f.exists() else None

    def health(self, unit, env) -> Health:
        dep = self.status(unit, env)
        flags = Path(self.root) / f"{unit.name}.{env}.unhealthy"
        bad = dep is not None and flags.exists() and dep.version in flags.read_text().split()
        return Health(dep is not None and not bad, f"{dep.version[:12] if dep else 'nothing'} answers 500" if bad else "ok")

    def mark_unhealthy(self, unit: str, env: str, version: str) -> None:
        Path(self.root, f"{unit}.{env}.unhealthy").write_text(version)


def git(*args: str, cwd: Path | None = None) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture
def repo(tmp_path: Path):
    remote, work = tmp_path / "shop.git", tmp_path / "shop"
    git("init", "--quiet", "--bare", "--initial-branch=main", str(remote))
    git("clone", "--quiet", str(remote), str(work))
    git("checkout", "--quiet", "-b", "main", cwd=work)

    def push(message: str) -> str:
        (work / "app.py").write_text(f"# {message}\n")
        git("add", "-A", cwd=work)
        git("-c", "user.name=Dana", "-c", "user.email=dana@example.com", "commit", "--quiet", "-m", message, cwd=work)
        git("push", "--quiet", "origin", "main", cwd=work)
        return git("rev-parse", "HEAD", cwd=work)

    return remote, push


def make_platform(units, tmp_path: Path, ud_home: Path) -> Platform:
    targets = {"app": FileTarget(root=str(tmp_path / "deployments")),
               "model": MlflowAliasTarget(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}"),
               "data": DbtDuckDBTarget(warehouse=str(tmp_path / "warehouse.duckdb"))}
    governance = Governance(PolicyFile(principals={SENSORS: Principal(roles={"*": ["deploy"]})}))
    return Platform(units, targets=targets, ledger=LedgerResource(url=f"sqlite:///{ud_home / 'ledger.db'}"),
                    governance=governance)


def definitions(platform: Platform) -> dg.Definitions:
    base = platform.definitions()
    jobs = {j.name: j for j in base.jobs}
    apps = [u for u in platform.units.values() if u.kind == "app"]
    assert apps  # one job per environment serves them all
    sensors = [git_sensor("git", lambda: app_watches(platform), [jobs["ud_promote_staging"]], principal=SENSORS),
               promotion_sensor(platform, [jobs["ud_promote_production"]], name="promotion", principal=SENSORS),
               health_sensor(platform, [jobs["ud_rollback"]], name="health", principal=SENSORS)]
    return dg.Definitions.merge(base, dg.Definitions(sensors=sensors))


def ran(report: dict, sensor: str) -> list[tuple[str, str]]:
    entry = next(s for s in report["sensors"] if s["name"] == sensor)
    return [(r["what"], r["outcome"]) for r in entry["requested"]]


def test_a_push_goes_to_production_by_policy_and_a_failing_deploy_is_rolled_back(tmp_path, ud_home, repo):
    remote, push = repo
    unit = AppUnit(name="shop", team="web", repository=str(remote), policy=Policy(production="automatic"))
    platform = make_platform([unit], tmp_path, ud_home)
    defs, home, target = definitions(platform), Home(ud_home), platform.target(unit, "production")

    first = push("first release")
    report = tick(defs, home)
    assert ran(report, "git") == [("shop to staging", "success")]
    assert ran(report, "promotion") == [("shop to production", "success")]
    assert target.status(unit, "production").version == first

    second = push("second release")
    tick(defs, home)
    assert target.status(unit, "production").version == second

    # Production starts failing its health checks: after three failed polls it is rolled back.
    target.mark_unhealthy("shop", "production", second)
    for _ in range(2):
        assert ran(tick(defs, home), "health") == []
    report = tick(defs, home)
    assert ran(report, "health") == [("ud_rollback", "success")]
    assert target.status(unit, "production").version == first
    rollback = platform.ledger.ledger().latest(unit="shop", env="production", action="rollback")
    assert rollback.principal == SENSORS and "3 consecutive failed health checks" in rollback.payload["reason"]

    # Nothing is requested again: not the rollback, not a re-promotion of the bad version.
    again = tick(defs, home)
    assert all(s["requested"] == [] for s in again["sensors"]), again
    promotions = platform.ledger.ledger().entries(unit="shop", env="production", action="promotion")
    assert [e.version for e in promotions] == [first, second] and {e.principal for e in promotions} == {SENSORS}


def test_promotion_waits_for_its_soak_time_and_for_failed_gates(tmp_path, ud_home, repo, monkeypatch):
    from unified_delivery.events import Promotion, record
    from unified_delivery.runner import instance as open_instance
    from unified_delivery.targets.base import Artifact

    remote, push = repo
    soaking = AppUnit(name="soaking", team="web", repository=str(remote), policy=Policy(production="automatic", soak_seconds=3600))
    gated = AppUnit(name="gated", team="web", repository=str(remote), policy=Policy(production="automatic"))
    manual = AppUnit(name="manual", team="web", repository=str(remote))  # production: manual by default
    platform = make_platform([soaking, gated, manual], tmp_path, ud_home)
    defs = definitions(platform)
    for unit in (soaking, gated, manual):
        artifact = Artifact(unit=unit.name, kind="app", version="v1")
        platform.target(unit, "staging").deploy(unit, "staging", artifact)
        # ... and recorded as the engine records it: a version the ledger does not know in
        # staging is drift, and is never promoted (test_target_routing.py).
        record(platform.ledger.ledger(), Promotion(team="web", kind="app"), principal="service:test",
               unit=unit.name, env="staging", version="v1")
    platform.ledger.ledger().append("gate", principal="service:test", unit="gated", env="production", version="v1",
                                    payload={"gate": "policy", "stage": "staging", "passed": False, "code": "UD-AUTH-FORBIDDEN"})
    sensor = next(s for s in defs.sensors if s.name == "promotion")
    with collect_notes() as notes, dg.build_sensor_context(instance=open_instance(Home(ud_home)), definitions=defs) as ctx:
        data = sensor.evaluate_tick(ctx)
    assert data.run_requests == []
    waits = {n["unit"]: n["message"] for n in notes}
    assert "soak 3600 s" in waits["soaking"] and "gates failed: policy" in waits["gated"] and "manual" not in waits

    # Once the soak time has passed, the soaking unit goes; the gated one still waits.
    monkeypatch.setattr(time, "time", lambda: datetime.now(timezone.utc).timestamp() + 3601)
    with dg.build_sensor_context(instance=open_instance(Home(ud_home)), definitions=defs) as ctx:
        data = sensor.evaluate_tick(ctx)
    (request,) = data.run_requests
    assert (request.job_name, request.run_key) == ("ud_promote_production", "promote:soaking:production:v1")
    # the soaking unit's production alone, after its staging gates run again
    assert request.tags["ud/unit"] == "soaking" and request.asset_selection == [dg.AssetKey(["soaking", "production"])]
    assert {c.asset_key for c in request.asset_check_keys} == {dg.AssetKey(["soaking", "staging"])}

    # An approval recorded after the failure is new evidence: the gated unit gets another attempt.
    approval = platform.ledger.ledger().append("approval", principal="human:olivia", unit="gated", env="production",
                                               version="v1", payload={})
    with dg.build_sensor_context(instance=open_instance(Home(ud_home)), definitions=defs) as ctx:
        data = sensor.evaluate_tick(ctx)
    assert f"promote:gated:production:v1@{approval.seq}" in [r.run_key for r in data.run_requests]


def test_a_new_production_data_version_retrains_the_models_that_train_on_it(tmp_path, ud_home):
    from unified_delivery import DataUnit
    from unified_delivery.runner import instance as open_instance
    from unified_delivery.targets.base import Artifact

    data = DataUnit(name="customer_features", team="analytics", project=str(REPO_ROOT / "dbt_project"), select="+customer_features")
    model = ModelUnit(name="churn", team="ml", trains_on="customer_features", features=["tenure_days"], label="churned")
    platform = make_platform([data, model], tmp_path, ud_home)
    base = platform.definitions()
    sensor = cascade_sensor(platform, [next(j for j in base.jobs if j.name == "ud_promote_staging")], principal=SENSORS)
    defs = dg.Definitions.merge(base, dg.Definitions(sensors=[sensor]))
    instance = open_instance(Home(ud_home))

    def evaluate() -> list[str]:
        with dg.build_sensor_context(instance=instance, definitions=defs) as ctx:
            return [r.run_key for r in sensor.evaluate_tick(ctx).run_requests]

    published = platform.target(data, "production")  # versions without models: only recorded

    def version(name: str) -> Artifact:
        return Artifact(unit="customer_features", kind="data", version=name)

    published.deploy(data, "production", version("d1"))
    platform.ledger.ledger().append("candidate", principal=SENSORS, unit="churn", env="candidate", version="1",
                                    payload={"artifact": {"details": {"data_version": "d1"}}})
    assert evaluate() == []  # trained on what production runs
    published.deploy(data, "production", version("d2"))
    assert evaluate() == ["cascade:churn:customer_features@d2"]


def test_a_version_that_reached_staging_outside_the_platform_is_not_promoted(tmp_path, ud_home, repo):
    from unified_delivery.runner import instance as open_instance
    from unified_delivery.targets.base import Artifact

    remote, _ = repo
    unit = AppUnit(name="bypass", team="web", repository=str(remote), policy=Policy(production="automatic"))
    platform = make_platform([unit], tmp_path, ud_home)
    defs = definitions(platform)
    platform.target(unit, "staging").deploy(unit, "staging", Artifact(unit="bypass", kind="app", version="v9"))
    sensor = next(s for s in defs.sensors if s.name == "promotion")
    with collect_notes() as notes, dg.build_sensor_context(instance=open_instance(Home(ud_home)), definitions=defs) as ctx:
        data = sensor.evaluate_tick(ctx)
    assert data.run_requests == []
    assert [n["event"] for n in notes] == ["drift"] and "not what the platform deployed" in notes[0]["message"]
