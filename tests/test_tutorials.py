"""The tutorials in docs/tutorials run as written, and do what they say.

Every ```sh block of a tutorial runs, in order, in one bash per tutorial (`set -euo pipefail`),
in a temporary folder with this installation's `ud`, `python` and `dg` first on PATH. A block
fenced as ```sh exit=N must exit with N. Afterwards each test checks the tutorial's outcome
through `ud --json` and the real stores (MLflow, the DuckDB warehouse, the ledger).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

REPO_ROOT = Path(__file__).resolve().parents[1]
TUTORIALS = REPO_ROOT / "docs" / "tutorials"
BLOCK = re.compile(r"^```sh(?: exit=(\d+))?\n(.*?)^```", re.S | re.M)
BIN = Path(sys.executable).parent


def blocks(tutorial: str) -> list[tuple[int | None, str]]:
    return [(int(code) if code else None, body) for code, body in BLOCK.findall((TUTORIALS / tutorial).read_text())]


def script(tutorial: str) -> str:
    lines = ["set -euo pipefail"]
    for i, (code, body) in enumerate(blocks(tutorial), 1):
        lines.append(f"echo '### {tutorial} block {i}' >&2")
        if code is None:
            lines.append(body)
        else:  # a refusal shown on purpose: it must happen, with this exit code
            lines += ["set +e", "(", "set -e", body, ")", "rc=$?", "set -e",
                      f"if [ $rc -ne {code} ]; then echo '{tutorial} block {i}: exit '$rc', expected {code}' >&2; exit 97; fi"]
    return "\n".join(lines) + "\n"


def environment(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("UD_", "DAGSTER_", "MLFLOW_")) and k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    env.update(PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}", GIT_AUTHOR_NAME="Tutorial Reader",
               GIT_AUTHOR_EMAIL="reader@example.com", GIT_COMMITTER_NAME="Tutorial Reader",
               GIT_COMMITTER_EMAIL="reader@example.com", PYTHONUNBUFFERED="1", **extra)
    return env


def run_tutorial(tutorial: str, cwd: Path, **env: str) -> subprocess.CompletedProcess:
    proc = subprocess.run(["bash", "-c", script(tutorial)], cwd=cwd, env=environment(**env), capture_output=True,
                          text=True, timeout=900)
    assert proc.returncode == 0, f"{tutorial} failed (exit {proc.returncode}):\n{proc.stderr[-6000:]}\n{proc.stdout[-3000:]}"
    return proc


def ud_json(cwd: Path, *args: str) -> dict:
    proc = subprocess.run([str(BIN / "ud"), *args, "--json"], cwd=cwd, env=environment(), capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return json.loads(proc.stdout)


def deployed(cwd: Path) -> dict[str, dict[str, str | None]]:
    return {u["name"]: {env: (d or {}).get("version") for env, d in u["environments"].items()}
            for u in ud_json(cwd, "status")["units"]}


def ledger_entries(cwd: Path, **filters: str) -> list:
    from unified_delivery.ledger import Ledger

    return Ledger(f"sqlite:///{cwd / '.ud' / 'ledger.db'}").entries(**filters)


@pytest.fixture(scope="module")
def platform_remote(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """What a platform team shares: a repository made by `ud init`, pushed to a bare remote."""
    base = tmp_path_factory.mktemp("platform")
    subprocess.run([str(BIN / "ud"), "init", "acme"], cwd=base, env=environment(), check=True, capture_output=True)
    subprocess.run(["git", "clone", "-q", "--bare", str(base / "acme"), str(base / "acme.git")], check=True)
    return base / "acme.git"


@pytest.fixture
def stop_services():
    started: list[Path] = []
    yield started.append
    for root in started:
        subprocess.run([str(BIN / "ud"), "down"], cwd=root, env=environment(), capture_output=True, timeout=120)


def test_every_tutorial_is_tested():
    tested = {name.removeprefix("test_").replace("_", "-") + ".md" for name in globals() if name.startswith("test_")}
    assert {p.name for p in TUTORIALS.glob("*.md")} - {"README.md"} <= tested
    assert all(blocks(p.name) for p in TUTORIALS.glob("*.md") if p.name != "README.md")


def test_platform_engineer(tmp_path: Path, stop_services):
    stop_services(tmp_path / "acme")
    run_tutorial("platform-engineer.md", tmp_path)
    root = tmp_path / "acme"
    state = deployed(root)
    for unit in ("features", "scorer", "api", "daily_report"):
        assert state[unit]["production"], f"{unit} is not in production: {state}"
    assert ud_json(root, "audit", "verify")["ok"]
    heads = subprocess.run(["git", "ls-remote", "--heads", str(tmp_path / "acme.git")], capture_output=True, text=True)
    assert "refs/heads/main" in heads.stdout


def test_app_developer(tmp_path: Path, platform_remote: Path, stop_services):
    stop_services(tmp_path / "acme")
    run_tutorial("app-developer.md", tmp_path, PLATFORM_REMOTE=str(platform_remote))
    root = tmp_path / "acme"
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True).stdout.strip()
    refused = subprocess.run(["git", "rev-parse", "HEAD~1"], cwd=root, capture_output=True, text=True).stdout.strip()
    state = deployed(root)["shop"]
    assert state == {"staging": head, "production": head}
    gate_results = ledger_entries(root, unit="shop", action="gate")
    assert any(e.version == refused and not e.payload["passed"] and e.payload["gate"] == "tests" for e in gate_results)


def test_data_scientist(tmp_path: Path, platform_remote: Path):
    proc = run_tutorial("data-scientist.md", tmp_path, PLATFORM_REMOTE=str(platform_remote))
    assert "refused: UD-GATE-REFUSED" in proc.stdout
    root = tmp_path / "acme"
    assert deployed(root)["churn"] == {"staging": "1", "production": "1"}
    assert any(e.version == "2" and not e.payload["passed"] and e.payload["gate"] == "model_metric"
               for e in ledger_entries(root, unit="churn", action="gate"))


def test_analytics_engineer(tmp_path: Path, platform_remote: Path):
    import duckdb

    run_tutorial("analytics-engineer.md", tmp_path, PLATFORM_REMOTE=str(platform_remote))
    root = tmp_path / "acme"
    state = deployed(root)["orders"]
    assert state["production"] and state["production"] == state["staging"]
    warehouse = ud_json(root, "info")["warehouse"]
    with duckdb.connect(warehouse, read_only=True) as con:
        columns = [r[0] for r in con.execute("describe production.orders").fetchall()]
        labels = {r[0] for r in con.execute("select distinct label from production.orders").fetchall()}
    assert "x1_x2" in columns  # the dbt-only change reached production
    assert labels == {0, 1}  # the refused change did not


def test_agent(tmp_path: Path, platform_remote: Path):
    run_tutorial("agent.md", tmp_path, PLATFORM_REMOTE=str(platform_remote))
    root = tmp_path / "acme"
    state = deployed(root)["features"]
    assert state["staging"] and state["production"] == state["staging"]
    by_agent = [e for e in ledger_entries(root) if e.principal == "agent:release-bot"]
    assert any(e.action == "promotion" and e.env == "staging" for e in by_agent), [e.action for e in by_agent]
    assert any(e.action == "refusal" for e in by_agent) or any(
        e.action == "gate" and not e.payload.get("passed") and e.env == "production" for e in by_agent)
