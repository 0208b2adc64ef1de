"""The reference platform's Definitions as a whole: light to load, the asset graph and gates
that the units declare, the promotion jobs, and loadable by Dagster's own tooling."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

from unified_delivery.service import load_platform

ROOT = Path(__file__).resolve().parents[1]
PYTHON = ROOT / ".venv" / "bin" / "python"
UNITS = ("customer_features", "churn_model", "recommendation_api")
STAGES = ("candidate", "staging", "production")
# The clients targets and gates import when they run, never when the definitions load.
HEAVY = ("mlflow", "great_expectations", "dbt", "dbt_common", "dbt_adapters", "kubernetes", "dagster_dbt",
         "dagster_k8s", "dagster_mlflow")

# The name conflict that breaks `dagster definitions validate` (fixed; the tests below keep it so).
ROLLBACK_NAME_CLASH = (
    "translator.rollback_job names both its op and its job `ud_rollback`; Dagster refuses the repository "
    "('Conflicting definitions found in repository with name ud_rollback. Op/Graph definition names must be "
    "unique'), so the code location does not load in `dagster definitions validate`, `dagster dev` or `ud ui`")


def k(unit: str, stage: str) -> dg.AssetKey:
    return dg.AssetKey([unit, stage])


@pytest.fixture(scope="module")
def defs() -> dg.Definitions:
    return load_platform(ROOT)[1]


@pytest.fixture(scope="module")
def graph(defs: dg.Definitions):
    return defs.resolve_asset_graph()


def test_loading_the_definitions_imports_no_heavy_client(tmp_path, clean_env):
    script = "import json, sys\nfrom assets.definitions import defs\nprint(json.dumps(sorted(sys.modules)))\n"
    home = tmp_path / "home"
    proc = subprocess.run([str(PYTHON), "-c", script], cwd=ROOT, env=clean_env(UD_HOME=str(home)),
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    modules = json.loads(proc.stdout.strip().splitlines()[-1])
    assert "assets.definitions" in modules and "dagster" in modules  # the check saw a real load
    heavy = sorted(m for m in modules if any(m == name or m.startswith(name + ".") for name in HEAVY))
    assert heavy == [], f"loading the definitions imported {heavy[:10]}"
    assert not home.exists(), "loading the definitions must not write to the home"


def test_every_unit_is_one_asset_per_stage(graph):
    # plus the platform-wide scorecard (reports), which is no unit's stage
    assert set(graph.get_all_asset_keys()) == {k(u, s) for u in UNITS for s in STAGES} | {k("platform", "scorecard")}


def test_lineage_follows_stages_and_units(graph):
    expected = {
        k("customer_features", "candidate"): set(),
        k("customer_features", "staging"): {k("customer_features", "candidate")},
        k("customer_features", "production"): {k("customer_features", "staging")},
        # a model trains on what its data unit runs in production
        k("churn_model", "candidate"): {k("customer_features", "production")},
        k("churn_model", "staging"): {k("churn_model", "candidate")},
        k("churn_model", "production"): {k("churn_model", "staging")},
        # an app serves, per environment, the model version deployed in that environment
        k("recommendation_api", "candidate"): set(),
        k("recommendation_api", "staging"): {k("recommendation_api", "candidate"), k("churn_model", "staging")},
        k("recommendation_api", "production"): {k("recommendation_api", "staging"), k("churn_model", "production")},
    }
    actual = {key: set(graph.get(key).parent_keys) for key in expected}
    assert actual == expected


def test_gates_are_blocking_checks_on_the_stage_they_guard(graph):
    expected = {
        dg.AssetCheckKey(k("recommendation_api", "candidate"), "tests"),
        dg.AssetCheckKey(k("recommendation_api", "staging"), "health"),
        dg.AssetCheckKey(k("churn_model", "candidate"), "model_metric"),
        dg.AssetCheckKey(k("customer_features", "candidate"), "dbt_tests"),
    }
    # Governance adds a policy gate on every promotion and an approval gate where the unit asks for one.
    for unit in ("customer_features", "churn_model", "recommendation_api"):
        expected |= {dg.AssetCheckKey(k(unit, "candidate"), "policy"), dg.AssetCheckKey(k(unit, "staging"), "policy")}
    expected.add(dg.AssetCheckKey(k("recommendation_api", "staging"), "approval"))
    assert set(graph.asset_check_keys) >= expected
    for check_key in graph.asset_check_keys:
        spec = graph.get_check_spec(check_key)
        assert spec.blocking, f"{check_key} must block what it guards"


def test_each_deployed_stage_says_which_gates_guard_it(graph):
    """The UI shows "No checks defined" on production (its gates are checks of staging): its
    description and metadata name them."""
    node = graph.get(k("recommendation_api", "production"))
    guards = {c.name for c in graph.asset_check_keys if c.asset_key == k("recommendation_api", "staging")}
    assert node.metadata["ud/guarded_by"] == ", ".join(sorted(guards)) and "approval" in guards
    assert "Guarded by" in node.description and "recommendation_api/staging" in node.description


def test_assets_carry_the_owner_and_group_of_their_unit(graph):
    teams = {"customer_features": "analytics", "churn_model": "ml", "recommendation_api": "web"}  # analytics: dbt meta
    for unit, team in teams.items():
        for stage in STAGES:
            node = graph.get(k(unit, stage))
            assert node.owners == [f"team:{team}"], (unit, stage, node.owners)
            assert node.group_name == unit


def test_one_promotion_job_per_environment_holds_every_units_promotion_and_the_rollback_job_exists(defs, graph):
    from unified_delivery.promotions import promotion

    platform = load_platform(ROOT)[0]
    names = {j.name for j in defs.resolve_all_job_defs()}
    assert {n for n in names if n.startswith("ud_promote_")} == {"ud_promote_staging", "ud_promote_production"}
    assert not any("__to_" in n for n in names)  # no job per unit
    for env, upstream in (("staging", "candidate"), ("production", "staging")):
        job = defs.resolve_job_def(f"ud_promote_{env}")
        assert job.tags == {}  # unit, env and sizing are the run's tags, set at launch
        assets = set(job.asset_layer.selected_asset_keys)
        first = upstream == "candidate"
        assert assets == {k(u, env) for u in UNITS} | ({k(u, "candidate") for u in UNITS} if first else set())
        gates_before = {c for c in graph.asset_check_keys if c.asset_key in {k(u, upstream) for u in UNITS}}
        assert set(job.asset_layer.asset_graph.asset_check_keys) == gates_before  # none of env's own
        for unit in UNITS:
            # what a promotion of the unit selects: what its own job held (build, gate, deploy;
            # or the gates of the stage before, run again, then deploy)
            chosen = promotion(platform, platform.unit(unit), env)
            assert chosen.job == job.name
            gates = {c for c in graph.asset_check_keys if c.asset_key == k(unit, upstream)}
            assert set(chosen.checks) == gates and gates, unit
            assert set(chosen.assets) == ({k(unit, "candidate"), k(unit, env)} if first else {k(unit, env)})
            subset = job.get_subset(asset_selection=frozenset(chosen.assets), asset_check_selection=frozenset(chosen.checks))
            ops = {n.name for n in subset.nodes}  # one op per asset and per gate check
            assert ops == {f"{unit}__{a.path[1]}" for a in chosen.assets} | {f"{unit}__{upstream}_{c.name}" for c in gates}
    assert defs.resolve_job_def("ud_rollback").name == "ud_rollback"


def test_the_definitions_are_loadable_by_dagster(defs):
    dg.Definitions.validate_loadable(defs)


def test_dagster_definitions_validate_accepts_the_workspace(tmp_path, clean_env):
    dagster = Path(sys.executable).with_name("dagster")
    dagster = dagster if dagster.exists() else ROOT / ".venv" / "bin" / "dagster"
    env = clean_env(DAGSTER_HOME=str(tmp_path / "dagster"), UD_HOME=str(tmp_path / "home"))
    (tmp_path / "dagster").mkdir()
    (tmp_path / "dagster" / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    proc = subprocess.run([str(dagster), "definitions", "validate", "-w", "workspace.yaml"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
