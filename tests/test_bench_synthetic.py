"""The synthetic platform of bench/synthetic.py: generated, its dbt manifest made by the
platform, and its definitions loaded by a fresh process as the load benchmark does."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PYTHON = ROOT / ".venv" / "bin" / "python"


def _load_synthetic():
    """bench/ is not a package and holds a `sensors.py`: import the one module by path, so
    bench/ never shadows the platform's own `sensors` package in this process."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("bench_synthetic", ROOT / "bench" / "synthetic.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


synthetic = _load_synthetic()

GRAPH = """
import json, sys
sys.path.insert(0, ".")
from assets.definitions import defs
graph = defs.resolve_asset_graph()
print(json.dumps({
    "parents": {k.to_user_string(): sorted(p.to_user_string() for p in graph.get(k).parent_keys)
                for k in graph.get_all_asset_keys()},
    "checks": sorted(f"{c.asset_key.to_user_string()}:{c.name}" for c in graph.asset_check_keys),
    "owners": {k.to_user_string(): graph.get(k).owners for k in graph.get_all_asset_keys()},
    "jobs": sorted(j.name for j in defs.get_repository_def().get_all_jobs()),
}))
"""


@pytest.fixture(scope="module")
def platform(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("synthetic") / "platform"
    assert synthetic.generate(12, out) == {"units": 12, "data": 4, "model": 4, "app": 4}
    return out


def run(script: list[str], cwd: Path, home: Path, clean_env) -> dict:
    proc = subprocess.run([str(PYTHON), *script], cwd=cwd, env=clean_env(UD_HOME=str(home)),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_the_definitions_load_as_chains_of_units_with_their_gates(platform, tmp_path, clean_env):
    g = run(["-c", GRAPH], platform, tmp_path / "home", clean_env)
    from unified_delivery.dbt_shadow import cache_root

    # the platform made the manifest in the project's shadow, and wrote nothing into the project
    assert not (platform / "dbt_project" / "target").exists()
    assert list((cache_root() / "projects").glob("*/target/manifest.json"))
    assert not (tmp_path / "home").exists(), "loading must not write to the home"
    parents = g["parents"]
    units = {f"{kind}_{n:04d}" for kind in ("data", "model", "app") for n in range(4)}
    assert {k.split("/")[0] for k in parents} >= units
    assert len([k for k in parents if k.split("/")[0] in units]) == 12 * 3  # one asset per unit and stage
    assert parents["model_0002/candidate"] == ["data_0002/production"]  # a model trains on its data product
    assert parents["app_0002/staging"] == ["app_0002/candidate", "model_0002/staging"]  # an app serves its model
    assert parents["data_0001/candidate"] == ["data_0000/production"]  # a lineage of data products
    assert parents["data_0000/candidate"] == []
    checks = set(g["checks"])
    for n in range(4):
        assert {f"data_{n:04d}/candidate:dbt_tests", f"model_{n:04d}/candidate:model_metric",
                f"app_{n:04d}/candidate:tests", f"app_{n:04d}/staging:health"} <= checks
    assert g["owners"]["data_0001/production"] == ["team:team_01"]  # from dbt meta
    # one promotion job per environment for every unit, not one per unit
    assert {"ud_promote_staging", "ud_promote_production", "ud_rollback"} <= set(g["jobs"])
    assert not [j for j in g["jobs"] if "__to_" in j]


def test_generate_refuses_a_folder_that_is_not_empty(tmp_path):
    (tmp_path / "keep.txt").write_text("mine")
    proc = subprocess.run([str(PYTHON), str(ROOT / "bench" / "synthetic.py"), "--units", "3", "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "not empty" in proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.txt"]


PLAIN_GRAPH = """
import json, sys
sys.path.insert(0, ".")
from plain import defs
graph = defs.resolve_asset_graph()
print(json.dumps({
    "parents": {k.to_user_string(): sorted(p.to_user_string() for p in graph.get(k).parent_keys)
                for k in graph.get_all_asset_keys()},
    "checks": sorted(f"{c.asset_key.to_user_string()}:{c.name}" for c in graph.asset_check_keys),
    "blocking": all(graph.get_check_spec(c).blocking for c in graph.asset_check_keys),
    "jobs": sorted(j.name for j in defs.get_repository_def().get_all_jobs() if not j.name.startswith("__")),
}))
"""


def test_the_load_ratio_bench_times_the_same_graph_in_plain_dagster(tmp_path, clean_env):
    """bench/load_ratio.py at a small size, as docs/performance.md runs it at 100 and 1,000:
    the plain-Dagster workspace it writes has the platform's graph (every stage asset with its
    dependencies, every gate a blocking check), no jobs, and both validate."""
    out = tmp_path / "ratio.json"
    proc = subprocess.run([str(PYTHON), str(ROOT / "bench" / "load_ratio.py"), "--workdir", str(tmp_path / "w"),
                           "--sizes", "6", "--repeat", "1", "--out", str(out)],
                          env=clean_env(), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (row,) = json.loads(out.read_text())["rows"]
    # + the scorecard; two promotion jobs (one per environment), rollback, preview and its teardown
    assert row["units"] == 6 and row["assets"] == 6 * 3 + 1 and row["jobs"] == 5
    assert row["platform_wall_s"] > 0 and row["plain_wall_s"] > 0 and row["ratio_wall"] > 0
    assert "| 6 | 19 |" in proc.stdout  # the table docs/performance.md shows
    platform = run(["-c", GRAPH], tmp_path / "w" / "units-6", tmp_path / "home", clean_env)
    plain = run(["-c", PLAIN_GRAPH], tmp_path / "w" / "plain-6", tmp_path / "home", clean_env)
    assert plain["parents"] == platform["parents"] and plain["checks"] == platform["checks"]
    assert plain["blocking"] and plain["jobs"] == [] and len(plain["checks"]) == row["checks"]
