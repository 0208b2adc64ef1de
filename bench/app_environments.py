"""How long an app's own environment takes to make (kinds/app/environments.py).

  .venv/bin/python bench/app_environments.py [--repeat 3]

For a Flask app (requirements.txt: flask, werkzeug, pytest) and a Node service (package.json
and package-lock.json with one dependency), each `--repeat` times on a fresh home:
- cold: the first environment of a home (empty download cache in {home}/cache);
- warm: a second environment in the same home for a changed requirements file (a new digest,
  so a new environment, with the downloads cached);
- reused: the same digest again (a commit that did not touch the files).
Python is measured with uv and with pip (this machine's pip configuration applies to pip).
Printed: the median seconds of each.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from unified_delivery.home import Home
from unified_delivery.kinds.app.environments import ensure
from unified_delivery.kinds.app.unit import AppUnit

REQUIREMENTS = "flask==3.0.3\nwerkzeug==3.0.6\npytest>=8\n"
PACKAGE = {"name": "clock", "version": "1.0.0", "private": True, "dependencies": {"ms": "2.1.3"}}


def _timed(unit: AppUnit, app: Path, home: Home, installer: str | None) -> float:
    started = time.perf_counter()
    ensure(unit, app, home, log=lambda _: None, installer=installer)
    return time.perf_counter() - started


def python_round(installer: str) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="ud-bench-env-") as tmp:
        app, home = Path(tmp) / "app", Home(Path(tmp) / "home")
        app.mkdir()
        unit = AppUnit(name="bench", team="web", repository=tmp, dependencies="auto")
        (app / "requirements.txt").write_text(REQUIREMENTS)
        cold = _timed(unit, app, home, installer)
        reused = _timed(unit, app, home, installer)
        (app / "requirements.txt").write_text(REQUIREMENTS + "# a new digest\n")
        warm = _timed(unit, app, home, installer)
        return {"cold": cold, "warm": warm, "reused": reused}


def node_round() -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="ud-bench-env-") as tmp:
        app, home = Path(tmp) / "app", Home(Path(tmp) / "home")
        app.mkdir()
        (app / "package.json").write_text(json.dumps(PACKAGE))
        subprocess.run(
            ["npm", "install", "--package-lock-only", "--no-audit", "--no-fund"],
            cwd=app, check=True, capture_output=True,
        )
        unit = AppUnit(name="bench", team="web", repository=tmp, dependencies="auto")
        cold = _timed(unit, app, home, None)
        reused = _timed(unit, app, home, None)
        (app / "package.json").write_text(json.dumps({**PACKAGE, "description": "new digest"}))
        warm = _timed(unit, app, home, None)
        return {"cold": cold, "warm": warm, "reused": reused}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    rounds: dict[str, list[dict[str, float]]] = {"uv": [], "pip": [], "npm ci": []}
    for _ in range(args.repeat):
        rounds["uv"].append(python_round("uv"))
        rounds["pip"].append(python_round("pip"))
        rounds["npm ci"].append(node_round())
    print(f"{'installer':<10}{'cold s':>10}{'warm s':>10}{'reused s':>10}   (median of {args.repeat})")
    for name, found in rounds.items():
        medians = {k: statistics.median(r[k] for r in found) for k in ("cold", "warm", "reused")}
        print(f"{name:<10}{medians['cold']:>10.2f}{medians['warm']:>10.2f}{medians['reused']:>10.3f}")


if __name__ == "__main__":
    main()
