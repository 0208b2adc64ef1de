"""Crash safety: promotions killed with SIGKILL at random moments, across the three kinds.

    python bench/kill.py --workdir /tmp/ud-kill --trials 30 [--seed 1]

On a fresh home with the reference platform, each trial starts `ud promote UNIT --to
staging` (the data product, the model, then the app, in turn) in its own process group, kills
the group with SIGKILL after a random delay (uniform between --min-s and the time a warm
unkilled promotion of that unit took; every other trial instead waits for the deploy step's
`deploy-started` intent in the ledger and kills 0 to 1.5 s after it, the window where the
target switches and the outcome is recorded), then asks `ud status --json` (which completes any
deploy the killed run left unrecorded) and `ud audit verify --json`. A trial counts:

- torn: what staging runs is not a coherent version (a data product whose views disagree,
  `mixed(...)`; an app without a `current` release);
- unrecorded: staging runs something other than what the ledger says it should (not in
  sync after the recovery `ud status` did);
- ledger broken: `ud audit verify` fails.

The goal is 0, 0 and 0. Every promotion the bench starts is a real one: candidates are built,
gated and deployed on the embedded home.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import PYTHON, ROOT, child_env, machine, save, table  # noqa: E402

UNITS = {"data": "customer_features", "model": "churn_model", "app": "recommendation_api"}
ENV = "staging"


def last_seq(db: Path) -> int:
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return con.execute("SELECT coalesce(max(seq), 0) FROM ud_ledger").fetchone()[0]
    finally:
        con.close()


def deploy_started(db: Path, unit: str, after: int) -> bool:
    """Whether a deploy of `unit` recorded its intent after entry `after` (the switch is next)."""
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return con.execute("SELECT count(*) FROM ud_ledger WHERE seq > ? AND unit = ? AND action = 'deploy-started'",
                           (after, unit)).fetchone()[0] > 0
    except sqlite3.OperationalError:  # busy: asked again
        return False
    finally:
        con.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", type=Path, required=True, help="emptied, then holds the home")
    parser.add_argument("--trials", type=int, default=30)
    parser.add_argument("--min-s", type=float, default=0.5, help="the earliest kill after the start")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    shutil.rmtree(args.workdir, ignore_errors=True)
    args.workdir.mkdir(parents=True)
    home = args.workdir / "home"
    env = child_env(UD_HOME=str(home), DAGSTER_HOME=str(home / "dagster"), MLFLOW_DISABLE_TELEMETRY="true")
    ud = str(Path(PYTHON).parent / "ud")

    def run(*argv: str, timeout: float = 900) -> subprocess.CompletedProcess:
        return subprocess.run([ud, *argv], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)

    def staging(unit: str) -> dict | None:
        out = run("status", "--json")
        data = json.loads(out.stdout)
        return next(u for u in data["units"] if u["name"] == unit)["environments"][ENV]

    # One unkilled promotion of each unit: the time the kills are spread over, and a staging
    # version for the app's model (the app needs its model in staging).
    # The reference app's repository, as `ud demo` makes it.
    from unified_delivery.demo import ensure_app_repo
    from unified_delivery.home import Home

    h = Home(home)
    app = UNITS["app"]
    ensure_app_repo(h, ROOT / "templates" / app, h.repos / f"{app}.git", h.repos / app)
    # The model trains on the data product's production version.
    full: dict[str, float] = {}
    setup = [("data", ENV), ("data", "production"), ("model", ENV), ("app", ENV)]
    # The staging runs twice: the second (warm) one's time is what the kills spread over.
    for kind, env_name in [*setup, *[(k, ENV) for k in UNITS]]:
        unit = UNITS[kind]
        started = time.monotonic()
        done = run("promote", unit, "--to", env_name, "--reason", "bench: unkilled")
        if env_name == ENV:
            full[kind] = time.monotonic() - started
        if done.returncode != 0:
            raise RuntimeError(f"{unit}: {done.stdout[-1500:]}{done.stderr[-1500:]}")
    ledger_db = home / "ledger.db"
    trials = []
    before = {kind: (staging(unit) or {}).get("version") for kind, unit in UNITS.items()}
    for i in range(args.trials):
        kind = list(UNITS)[i % len(UNITS)]
        unit = UNITS[kind]
        # Over the whole of a warm unkilled run: the deploy is its last seconds.
        delay = rng.uniform(args.min_s, max(args.min_s, full[kind]))
        # Each trial deploys a new version, so a kill can fall on a real switch: the data product
        # with another as_of_date, the app at a new commit (the model retrains: a new version).
        extra = []
        if kind == "data":
            extra = ["--ref", f"{{as_of_date: '2026-10-{1 + i % 28:02d}'}}"]
        elif kind == "app":
            git = ["git", "-C", str(h.repos / app), "-c", "user.name=Bench", "-c", "user.email=bench@example.com"]
            subprocess.run([*git, "commit", "-q", "--allow-empty", "-m", f"bench: trial {i}"], check=True, env=env)
            subprocess.run([*git, "push", "-q", "origin", "HEAD:main"], check=True, env=env)
        at_deploy = i % 2 == 1  # every other trial aims at the switch itself
        if at_deploy:
            delay = rng.uniform(0.0, 1.5)  # after the deploy step recorded its intent
        seen = last_seq(ledger_db)
        proc = subprocess.Popen([ud, "promote", unit, "--to", ENV, "--reason", f"bench: kill {i}", *extra],
                                cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True)
        try:
            if at_deploy:
                started = time.monotonic()
                while proc.poll() is None and not deploy_started(ledger_db, unit, seen):
                    if time.monotonic() - started > 600:
                        raise RuntimeError(f"trial {i}: no deploy-started after 600 s")
                    time.sleep(0.05)
            proc.wait(timeout=delay)
            killed = False  # it finished first
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            killed = True
        state = staging(unit) or {}
        actual = state.get("actual_version") or ""
        changed = state.get("version") != before.get(kind)
        before[kind] = state.get("version")
        verify = run("audit", "verify", "--json")
        trials.append({
            "trial": i, "kind": kind, "at_deploy": at_deploy, "delay_s": round(delay, 2), "killed": killed,
            "version": state.get("version"), "actual_version": actual or None, "changed": changed,
            "torn": actual.startswith("mixed(") or actual == "(no current release)",
            "unrecorded": not state.get("in_sync", True),
            "ledger_broken": verify.returncode != 0 or not json.loads(verify.stdout or "{}").get("ok"),
        })
        print(json.dumps(trials[-1]), flush=True)
    rows = []
    for kind in UNITS:
        mine = [t for t in trials if t["kind"] == kind]
        rows.append([kind, len(mine), sum(t["killed"] for t in mine), sum(t["at_deploy"] and t["killed"] for t in mine),
                     sum(t["changed"] for t in mine),
                     sum(t["torn"] for t in mine),
                     sum(t["unrecorded"] for t in mine), sum(t["ledger_broken"] for t in mine),
                     round(full[kind], 1)])
    print(table(["kind", "trials", "killed", "killed in the deploy step", "version changed", "torn", "unrecorded", "ledger broken",
                 "unkilled promotion s"], rows))
    save(args.out, {"machine": machine(), "seed": args.seed, "full_s": full, "trials": trials})
    return 0 if not any(t["torn"] or t["unrecorded"] or t["ledger_broken"] for t in trials) else 1


if __name__ == "__main__":
    sys.exit(main())
