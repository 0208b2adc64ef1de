"""`ud status` answers from the platform's record, its catalog (catalog.py), the ledger and each
target's probe (targets/probes.py), without importing Dagster or MLflow; the same answer as the
loaded platform's, and a load again whenever the definitions' files change or a deploy that
died is to be completed first."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests import tiny_platform as tiny
from tests.test_security import Tiny
from unified_delivery.events import DeployStarted, record
from unified_delivery.service import gate_report, status
from unified_delivery.targets.local_release import LocalReleaseTarget
from unified_delivery.targets.probes import NO_PROBE, probe

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("dagster", "mlflow", "dbt", "great_expectations")
# `ud` in a process that says, when it ends, which heavy packages it imported.
WRAPPER = f"""
import json, sys
from unified_delivery.cli import main
code = main(sys.argv[1:])
heavy = sorted({{m.split('.')[0] for m in sys.modules}} & set({HEAVY!r}))
print(json.dumps({{"code": code, "heavy": heavy}}), file=sys.stderr)
"""
# The loaded platform's answer, and each probe beside its target's own `status`.
LOADED = """
import json
from unified_delivery import service
from unified_delivery.targets.probes import NO_PROBE, probe
platform, _ = service.load_platform()
out = {"status": service.status(platform), "differ": [], "probed": 0}
for name in platform.order():
    unit = platform.units[name]
    for env in unit.environments:
        target = platform.target(unit, env)
        got, want = probe(target.probe_spec(unit), env), target.status(unit, env)
        if got is NO_PROBE or got != want:
            out["differ"].append([name, env, repr(got), repr(want)])
        out["probed"] += want is not None
out["gates"] = {f"{n}:{e}": service.gate_report(platform, n, e) for n in platform.units
                for e in ("", *platform.units[n].environments)}
print(json.dumps(out))
"""


def _env(project: Path, home: Path) -> dict[str, str]:
    import os

    env = {k: v for k, v in os.environ.items() if k == "UD_CODE_SERVER_IDLE_S" or not k.startswith(("UD_", "DAGSTER", "PYTHONPATH"))}
    return {**env, "UD_HOME": str(home), "UD_PROJECT": str(project)}


def ud(project: Path, home: Path, *args: str) -> tuple[dict, list[str]]:
    """`ud ARGS --json`: its answer, and the heavy packages it imported."""
    proc = subprocess.run([sys.executable, "-c", WRAPPER, *args, "--json"], cwd=project,
                          env=_env(project, home), capture_output=True, text=True, timeout=300)
    report = json.loads(proc.stderr.strip().splitlines()[-1])
    assert report["code"] == 0, proc.stdout + proc.stderr
    return json.loads(proc.stdout), report["heavy"]


def ud_status(project: Path, home: Path) -> tuple[dict, list[str]]:
    return ud(project, home, "status")


def test_status_needs_no_dagster_once_the_catalog_is_written_and_loads_again_on_an_edit(tmp_path, monkeypatch):
    t = Tiny(tiny.make(tmp_path, approvals=0), monkeypatch)
    project, home = t.paths["project"], t.paths["home"]
    try:
        assert t.promote("staging").success
        loaded = json.loads(json.dumps({"ok": True, **status(t.platform)}))
        first, heavy = ud_status(project, home)  # no catalog yet: loads, and writes it
        assert "dagster" in heavy and first == loaded
        second, heavy = ud_status(project, home)
        assert heavy == [], f"`ud status` imported {heavy}"
        assert second == loaded and second["units"][0]["environments"]["staging"]["in_sync"] is True
        # The other read commands answer from the same catalog and ledger.
        for env in ("", "staging"):
            gates, heavy = ud(project, home, "gates", "svc", *(["--env", env] if env else []))
            assert heavy == [] and gates == json.loads(json.dumps({"ok": True, **gate_report(t.platform, "svc", env)}))
        info, heavy = ud(project, home, "info")
        assert heavy == [] and info["repos"]["svc"]["remote"] == str(t.paths["remote"])
        assert info["ledger_url"] == t.ledger.url and info["warehouse"] == str(home.resolve() / "warehouse.duckdb")
        assert info["mlflow_tracking_uri"] == f"sqlite:///{home.resolve() / 'mlflow' / 'mlflow.db'}"
        for args in (["audit", "verify"], ["report", "dora"], ["report", "audit"]):
            doc, heavy = ud(project, home, *args)
            assert heavy == [] and doc["ok"] is True, (args, doc)

        # An edited unit: the catalog is stale, the platform is loaded again and the change shown.
        unit_file = project / "assets" / "units" / "svc.yaml"
        unit_file.write_text(unit_file.read_text().replace("team: web", "team: payments"))
        third, heavy = ud_status(project, home)
        assert "dagster" in heavy and third["units"][0]["team"] == "payments"
        fourth, heavy = ud_status(project, home)
        assert heavy == [] and fourth == third

        # A deploy that died after its intent: completed first, which loads the platform once.
        running = second["units"][0]["environments"]["staging"]["version"]
        record(t.ledger, DeployStarted(from_version=running, to_version="f" * 40, run_id="killed"),
               principal="human:dana", unit="svc", env="staging", version="f" * 40)
        fifth, heavy = ud_status(project, home)
        assert "dagster" in heavy and fifth == fourth
        (done,) = [e for e in t.ledger.entries(env="staging") if e.payload.get("recovered")]
        assert (done.action, done.payload["stayed_on"]) == ("deploy-failed", running)
        assert ud_status(project, home) == (fourth, [])
    finally:
        t.stop()


def test_the_demo_status_from_probes_is_the_loaded_platform_s(demo_home):
    """Every target of the reference platform (release directory, MLflow alias, DuckDB views) has
    a probe whose Deployment equals the target's own; `ud status` then gives the same answer."""
    home, run = demo_home
    assert run.returncode == 0, run.stderr[-3000:]
    proc = subprocess.run([sys.executable, "-c", LOADED], cwd=ROOT, env=_env(ROOT, home), capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    loaded = json.loads(proc.stdout.strip().splitlines()[-1])
    assert loaded["differ"] == [] and loaded["probed"] == 6, loaded  # 3 units in 2 environments
    answer, heavy = ud_status(ROOT, home)  # the load above wrote the catalog
    assert heavy == [], f"`ud status` imported {heavy}"
    assert answer == json.loads(json.dumps({"ok": True, **loaded["status"]}))
    for place, report in loaded["gates"].items():  # a pending approval loads the platform: same answer
        unit, env = place.split(":")
        gates, _ = ud(ROOT, home, "gates", unit, *(["--env", env] if env else []))
        assert gates == {"ok": True, **report}, place


def test_a_target_that_reads_its_place_otherwise_has_no_probe():
    class Mine(LocalReleaseTarget):
        pass

    class Unit:
        name = "svc"

    assert LocalReleaseTarget().probe_spec(Unit()) == {"probe": "local_release", "unit": "svc", "home": ""}
    assert Mine().probe_spec(Unit()) is None  # a subclass may read otherwise: its own status answers
    assert probe(None, "staging") is NO_PROBE and probe({"probe": "kubernetes"}, "staging") is NO_PROBE
