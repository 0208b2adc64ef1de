"""Running the tutorials of docs/tutorials as written (tests/test_tutorial_*.py, one file per
tutorial so test workers take them in parallel).

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
           if (k == "UD_CODE_SERVER_IDLE_S" or not k.startswith(("UD_", "DAGSTER_", "MLFLOW_"))) and k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    env.update(PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}", GIT_AUTHOR_NAME="Tutorial Reader",
               GIT_AUTHOR_EMAIL="reader@example.com", GIT_COMMITTER_NAME="Tutorial Reader",
               GIT_COMMITTER_EMAIL="reader@example.com", PYTHONUNBUFFERED="1", UD_TUTORIALS=str(TUTORIALS), **extra)
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


def platform_remote(base: Path) -> Path:
    """What a platform team shares: a repository made by `ud init`, pushed to a bare remote."""
    base.mkdir(parents=True, exist_ok=True)
    subprocess.run([str(BIN / "ud"), "init", "acme"], cwd=base, env=environment(), check=True, capture_output=True)
    subprocess.run(["git", "clone", "-q", "--bare", str(base / "acme"), str(base / "acme.git")], check=True)
    return base / "acme.git"


def stop_services(root: Path) -> None:
    subprocess.run([str(BIN / "ud"), "down"], cwd=root, env=environment(), capture_output=True, timeout=120)
