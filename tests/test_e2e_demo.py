"""End to end: `ud demo` on a fresh embedded home drives real Git, dbt on DuckDB, MLflow on
SQLite, local services and a Dagster instance; then the other commands read what it left."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
UD = str(Path(sys.executable).with_name("ud"))

pytestmark = pytest.mark.e2e


def ud(home: Path, *args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    env = {**os.environ, "UD_HOME": str(home)}
    env.pop("DAGSTER_HOME", None)
    return subprocess.run([UD, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


# demo_home (tests/conftest.py): the home after one `ud demo --json`, shared with the other files that need it.


def test_demo_takes_every_unit_to_production(demo_home):
    home, run = demo_home
    assert run.returncode == 0, run.stderr[-3000:]
    data = json.loads(run.stdout)  # stdout is exactly one JSON object
    assert data["ok"] is True
    steps = {s["step"]: s for s in data["steps"]}
    assert all(s["ok"] for s in steps.values()), steps

    status = json.loads(ud(home, "status", "--json").stdout)
    by_name = {u["name"]: u for u in status["units"]}
    assert set(by_name) == {"customer_features", "churn_model", "recommendation_api"}
    assert {u["kind"] for u in status["units"]} == {"app", "model", "data"}
    for unit in status["units"]:
        prod = unit["environments"]["production"]
        assert prod and prod["version"] and prod["deployed_at"], unit


def test_refused_commit_never_reaches_an_environment(demo_home):
    home, run = demo_home
    data = json.loads(run.stdout)
    refusal = data["refusal"]
    assert refusal["code"] == "UD-GATE-REFUSED"
    assert any(g["code"] == "UD-GATE-TESTS-FAILED" for g in refusal["gates"])
    status = {u["name"]: u for u in json.loads(ud(home, "status", "--json").stdout)["units"]}
    app = status["recommendation_api"]["environments"]
    workdir = Path(json.loads(ud(home, "info", "--json").stdout)["repos"]["recommendation_api"]["workdir"])
    log = subprocess.run(["git", "log", "--format=%H %s", "-5"], cwd=workdir, capture_output=True, text=True).stdout
    bad = next(line.split()[0] for line in log.splitlines() if "retention offers above 95%" in line)
    assert bad not in (app["staging"]["version"], app["production"]["version"])


def test_rollback_returned_production_to_the_previous_release_and_it_serves(demo_home):
    home, run = demo_home
    data = json.loads(run.stdout)
    rb = data["rollback"]
    assert rb["ok"] and rb["now_serving"]
    status = {u["name"]: u for u in json.loads(ud(home, "status", "--json").stdout)["units"]}
    prod = status["recommendation_api"]["environments"]["production"]
    assert prod["version"] == rb["now_serving"]
    # The rolled-back release answers, serving the production model through MLflow.
    with urllib.request.urlopen(prod["url"] + "/health", timeout=10) as resp:
        health = json.loads(resp.read())
    assert health["version"] == prod["version"] and health["model_version"] == status["churn_model"]["environments"]["production"]["version"]
    body = json.dumps({"records": [{"tenure_days": 400, "order_count": 1, "total_spend": 20.0,
                                    "avg_order_value": 20.0, "days_since_last_order": 300}]}).encode()
    req = urllib.request.Request(prod["url"] + "/predict", data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        pred = json.loads(resp.read())
    assert 0.0 <= pred["predictions"][0] <= 1.0


def test_every_gate_promotion_and_rollback_is_in_a_verified_ledger(demo_home):
    home, _ = demo_home
    from unified_delivery.ledger import Ledger

    info = json.loads(ud(home, "info", "--json").stdout)
    ledger = Ledger(info["ledger_url"])
    try:
        actions = [e.action for e in ledger.entries()]
        promotions = ledger.entries(action="promotion")
        assert {(e.unit, e.env) for e in promotions} >= {(u, env) for u in ("customer_features", "churn_model", "recommendation_api")
                                                          for env in ("staging", "production")}
        assert all(e.principal for e in ledger.entries())
        gates = {(e.unit, e.payload["gate"], e.payload["passed"]) for e in ledger.entries(action="gate")}
        assert ("customer_features", "dbt_tests", True) in gates
        assert ("churn_model", "model_metric", True) in gates
        assert ("recommendation_api", "tests", False) in gates
        assert ("recommendation_api", "health", True) in gates
        assert "rollback" in actions
        # The refused commit's failed gate is on record under that commit; it was never promoted.
        refused = {e.version for e in ledger.entries(action="gate") if e.payload["gate"] == "tests" and not e.payload["passed"]}
        assert refused and not refused & {e.version for e in promotions}
        assert ledger.verify().ok
    finally:
        ledger.dispose()


def test_runs_are_on_the_embedded_dagster_instance(demo_home):
    home, _ = demo_home
    info = json.loads(ud(home, "info", "--json").stdout)
    db = Path(info["dagster_home"]) / "history" / "runs.db"
    with sqlite3.connect(db) as con:
        jobs = {row[0] for row in con.execute("SELECT pipeline_name FROM runs")}
    assert {"ud_promote_staging", "ud_promote_production", "ud_rollback"} <= jobs
    assert not [j for j in jobs if "__to_" in j]  # one job per environment, the unit chosen per run


def test_gates_command_reports_the_refused_candidate(demo_home):
    home, _ = demo_home
    out = ud(home, "gates", "recommendation_api", "--json")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    tests = next(g for g in data["gates"] if g["name"] == "tests")
    # The newest candidate is the revert commit the demo pushed after the refusal: not yet built.
    assert tests["family"] == "tests"
    prod = json.loads(ud(home, "gates", "recommendation_api", "--env", "production", "--json").stdout)
    assert next(g for g in prod["gates"] if g["name"] == "tests")["passed"] is True
    # Any version built, by its start: the commit whose own tests failed, with the evidence.
    from unified_delivery.ledger import Ledger

    refused = next(e for e in Ledger(f"sqlite:///{home / 'ledger.db'}").entries(unit="recommendation_api", action="gate")
                   if e.payload["gate"] == "tests" and not e.payload["passed"])
    old = json.loads(ud(home, "gates", "recommendation_api", "--version", refused.version[:10], "--json").stdout)
    assert old["version"] == refused.version
    failed = next(g for g in old["gates"] if g["name"] == "tests")
    assert failed["passed"] is False and failed["code"] == "UD-GATE-TESTS-FAILED" and failed["evidence"]
    text = ud(home, "gates", "recommendation_api", "--version", refused.version[:10]).stdout
    assert "FAILED tests/" in text and "what to do:" in text  # the evidence, where a person reads
    unknown = ud(home, "gates", "recommendation_api", "--version", "nosuchversion", "--json")
    assert unknown.returncode == 2 and json.loads(unknown.stdout)["error"]["code"] == "UD-UNKNOWN-VERSION"


def test_user_errors_are_one_line_with_a_code_and_exit_code(demo_home):
    home, _ = demo_home
    out = ud(home, "promote", "recommendation_api", "--to", "nowhere", "--json")
    assert out.returncode == 2
    assert json.loads(out.stdout)["error"]["code"] == "UD-UNKNOWN-ENV"
    # A version production never ran is no rollback (it would skip the gates): not permitted, one line.
    out = ud(home, "rollback", "churn_model", "--env", "production", "--to", "999", "--reason", "test")
    assert out.returncode == 4 and "Traceback" not in out.stderr
    assert "UD-ROLLBACK-NOT-DEPLOYED" in out.stderr


def test_a_dry_run_the_command_would_refuse_exits_with_the_refusals_code(demo_home):
    home, _ = demo_home
    out = ud(home, "rollback", "churn_model", "--env", "production", "--to", "999", "--reason", "t", "--dry-run",
             "-o", "json")
    plan = json.loads(out.stdout)
    assert out.returncode == 4 and plan["ok"] is False and plan["permitted"] is False, out.stdout
    assert [b["code"] for b in plan["blocked_by"]] == ["UD-ROLLBACK-NOT-DEPLOYED"]
    # One that would go through: exit 0, and no Python repr in what people read.
    out = ud(home, "promote", "recommendation_api", "--to", "production", "--dry-run")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "None" not in out.stdout and "dry run: promote recommendation_api" in out.stdout


@pytest.mark.slow  # a second full demo: minutes; `make test-all` runs it
def test_demo_runs_twice(demo_home):
    home, _ = demo_home
    before = {u["name"]: u for u in json.loads(ud(home, "status", "--json").stdout)["units"]}
    again = ud(home, "demo", "--json")
    assert again.returncode == 0, again.stderr[-3000:]
    assert json.loads(again.stdout)["ok"] is True
    after = {u["name"]: u for u in json.loads(ud(home, "status", "--json").stdout)["units"]}
    # A second training run registers a new model version; data did not change, so its version stays.
    assert int(after["churn_model"]["environments"]["production"]["version"]) > int(before["churn_model"]["environments"]["production"]["version"])
    assert after["customer_features"]["environments"]["production"]["version"] == before["customer_features"]["environments"]["production"]["version"]


def test_runs_and_logs_show_what_each_run_did(demo_home):
    home, _ = demo_home
    listed = json.loads(ud(home, "runs", "recommendation_api", "--json").stdout)
    failed = [r for r in listed["runs"] if r["status"] == "FAILURE"]
    assert failed and all(r["unit"] == "recommendation_api" and r["principal"] for r in listed["runs"])
    log = json.loads(ud(home, "logs", failed[0]["run_id"][:8], "--json").stdout)
    checks = [e for e in log["events"] if "check" in e]
    assert any(e["passed"] is False and (e["code"] or "").startswith("UD-GATE-") for e in checks), checks
    assert any(e["event"] == "STEP_FAILURE" and e["error"] for e in log["events"])
    text = ud(home, "logs", failed[0]["run_id"][:8]).stdout
    assert ": FAIL UD-GATE-" in text
    unknown = ud(home, "logs", "no-such-run", "--json")
    assert unknown.returncode == 2 and json.loads(unknown.stdout)["error"]["code"] == "UD-UNKNOWN-RUN"
