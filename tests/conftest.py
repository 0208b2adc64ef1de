"""Shared fixtures: an isolated home, resources that live in it, and a scratch copy of
the platform repository for tests that run `ud` against a modified platform."""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
VENV_BIN = REPO_ROOT / ".venv" / "bin"


@pytest.fixture
def ud_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """`$UD_HOME` for this test; not created, so a test can tell whether anything wrote to it."""
    home = tmp_path / "ud-home"
    monkeypatch.setenv("UD_HOME", str(home))
    for var in ("UD_MLFLOW_TRACKING_URI", "UD_WAREHOUSE", "UD_LEDGER_URL"):
        monkeypatch.delenv(var, raising=False)
    return home


@pytest.fixture
def home_resources(ud_home: Path) -> dict:
    """`targets` and `ledger` keyword arguments for `Platform`, every one of them inside `ud_home`."""
    from unified_delivery.cost import CostModel
    from unified_delivery.ledger import LedgerResource
    from unified_delivery.targets.dbt_duckdb import DbtDuckDBTarget
    from unified_delivery.targets.local_release import LocalReleaseTarget
    from unified_delivery.targets.mlflow_alias import MlflowAliasTarget

    return {
        "targets": {
            "app": LocalReleaseTarget(home=str(ud_home)),
            "model": MlflowAliasTarget(tracking_uri=f"sqlite:///{ud_home / 'mlflow' / 'mlflow.db'}",
                                       artifact_root=str(ud_home / "mlflow" / "artifacts")),
            "data": DbtDuckDBTarget(warehouse=str(ud_home / "warehouse.duckdb")),
        },
        "ledger": LedgerResource(url=f"sqlite:///{ud_home / 'ledger.db'}"),
        "costs": CostModel.from_file(REPO_ROOT / "resources" / "prices.yaml"),
    }


@pytest.fixture
def platform_copy(tmp_path: Path) -> Path:
    """The repository layout `ud` loads (assets/, resources/, dbt_project/, workspace.yaml),
    copied without dbt's generated target/ and logs/, free for a test to edit."""
    root = tmp_path / "platform"
    ignore = shutil.ignore_patterns("__pycache__", "target", "logs", "dbt_packages")
    for name in ("assets", "resources", "sensors", "dbt_project", "templates"):
        shutil.copytree(REPO_ROOT / name, root / name, ignore=ignore)
    shutil.copy2(REPO_ROOT / "workspace.yaml", root / "workspace.yaml")
    return root


def _clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k == "UD_CODE_SERVER_IDLE_S" or not k.startswith(("UD_", "DAGSTER_", "PYTHONPATH"))}
    return {**env, **extra}


@pytest.fixture
def run_ud(tmp_path: Path):
    """Run the installed `ud` console script: `run_ud(*args, project=..., home=...)`.

    The environment is scrubbed of UD_/DAGSTER_ variables; the home defaults to a fresh
    folder under tmp_path and the project to the repository itself."""

    def run(*args: str, project: Path = REPO_ROOT, home: Path | None = None,
            timeout: float = 120) -> subprocess.CompletedProcess:
        home = home or tmp_path / "cli-home"
        env = _clean_env(UD_PROJECT=str(project), UD_HOME=str(home), DAGSTER_HOME=str(home / "dagster"))
        return subprocess.run([str(VENV_BIN / "ud"), *args], cwd=project, env=env, capture_output=True,
                              text=True, timeout=timeout)

    return run


SHARED = "UDTEST_SHARED_DIR"  # one folder for the whole run, seen by every xdist worker


def pytest_configure(config):
    if not hasattr(config, "workerinput"):  # the controller (or a run without xdist): workers inherit it
        os.environ[SHARED] = tempfile.mkdtemp(prefix="ud-tests-shared-")
    # The code servers `ud promote` starts (one per home) go after 30 s without a command, not 10 min.
    os.environ.setdefault("UD_CODE_SERVER_IDLE_S", "30")


def pytest_sessionfinish(session):
    """The demo's services stop when the whole run ends, not when one worker is done with them."""
    if hasattr(session.config, "workerinput"):
        return
    shared = Path(os.environ.get(SHARED, "/nonexistent"))
    if (shared / "demo-home").exists():
        env = {**os.environ, "UD_HOME": str(shared / "demo-home")}
        env.pop("DAGSTER_HOME", None)
        subprocess.run([str(VENV_BIN / "ud"), "down"], cwd=REPO_ROOT, env=env, capture_output=True, timeout=300)
    shutil.rmtree(shared, ignore_errors=True)


@pytest.fixture(scope="session")
def demo_home():
    """`(home, completed_process)` after `ud demo --json` on a fresh home. The demo takes minutes,
    so every test that reads what it leaves shares this one run, across xdist workers too: the
    first worker to get here runs it, the others wait for it and read its outcome."""
    shared = Path(os.environ[SHARED])
    home, outcome = shared / "demo-home", shared / "demo-outcome.json"
    env = {**os.environ, "UD_HOME": str(home)}
    env.pop("DAGSTER_HOME", None)
    with open(shared / "demo.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not outcome.exists():
            run = subprocess.run([str(VENV_BIN / "ud"), "demo", "--json"], cwd=REPO_ROOT, env=env, capture_output=True,
                                 text=True, timeout=900)
            outcome.write_text(json.dumps({"args": run.args, "returncode": run.returncode, "stdout": run.stdout,
                                           "stderr": run.stderr}))
    done = json.loads(outcome.read_text())
    yield home, subprocess.CompletedProcess(done["args"], done["returncode"], done["stdout"], done["stderr"])


@pytest.fixture
def clean_env():
    """`clean_env(**extra)`: this environment without UD_/DAGSTER_ variables or PYTHONPATH, plus `extra`."""
    return _clean_env


# The longest files first, so that under pytest-xdist (a file per worker) no worker is left with
# a long file at the end while the others idle.
LONGEST_FIRST = [  # seconds per file in a CI run, longest first (the Makefile keeps this order)
    "test_tutorial_platform_engineer.py", "test_tutorial_analytics_engineer.py", "test_governance.py",
    "test_reports.py", "test_run_submit.py", "test_tutorial_app_developer.py", "test_tutorial_data_scientist.py",
    "test_scaffold.py", "test_tutorial_agent.py", "test_drift_app.py", "test_security.py", "test_status_fast.py",
    "test_dbt_projects.py", "test_canary.py", "test_registered_models.py", "test_bench_synthetic.py",
    "test_previews.py", "test_dbt_duckdb.py", "test_mcp_server.py", "test_data_vars.py", "test_postgres.py",
    "test_notifications.py", "test_data_monitors.py", "test_browser.py", "test_escape_hatch.py", "test_e2e_demo.py"]


def pytest_collection_modifyitems(config, items):
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: file order otherwise
