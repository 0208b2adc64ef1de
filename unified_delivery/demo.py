"""`ud demo`: a platform end to end on the embedded home.

Takes every unit to production through Dagster runs, in dependency order, approving where
the policy asks (MLflow, the warehouse and the Dagster instance appear on first use). On the
reference platform (this repository, with templates/recommendation_api) it first makes the
app's Git remote and working clone, and afterwards shows refusals (an app commit whose tests
fail, one over budget, a data rebuild that fails its suite) and a rollback. Every step is a
real run on the instance, so `ud ui` shows them after. Running it again builds on what the
previous run left.
"""

from __future__ import annotations

import re
import shutil
import time
from pathlib import Path
from typing import Any

from .git_mirror import git
from .governance.authors import eligible_approvers
from .home import Home, project_root
from .kinds.app.unit import AppUnit
from .output import Output, status_table
from .runner import prepare_home
from .service import approve, load_platform, promote, rollback, status

APP = "recommendation_api"
DEMO_AUTHOR = ["-c", "user.name=Dana Developer", "-c", "user.email=dana@example.com"]


def ensure_app_repo(home: Home, template: Path, remote: Path, workdir: Path) -> None:
    """A bare remote and a working clone holding the app template, as a developer would have."""
    if not remote.exists():
        remote.parent.mkdir(parents=True, exist_ok=True)
        git("init", "--quiet", "--bare", "--initial-branch=main", str(remote))
    if not workdir.exists():
        git("clone", "--quiet", str(remote), str(workdir))
    if not git("ls-remote", "--heads", str(remote), "main"):
        shutil.copytree(
            template,
            workdir,
            dirs_exist_ok=True,
            ignore=shutil.ignore_patterns("__pycache__", ".pytest_cache", "*.pyc"),
        )
        commit(workdir, "Initial recommendation_api from the platform template")
    else:
        git("pull", "--quiet", "--ff-only", "origin", "main", cwd=workdir)


def commit(workdir: Path, message: str) -> str:
    git("checkout", "--quiet", "-B", "main", cwd=workdir)
    git("add", "-A", cwd=workdir)
    git(*DEMO_AUTHOR, "commit", "--quiet", "--allow-empty", "-m", message, cwd=workdir)
    git("push", "--quiet", "origin", "main", cwd=workdir)
    return git("rev-parse", "HEAD", cwd=workdir)


def run_demo(out: Output) -> dict[str, Any]:
    started = time.monotonic()
    home = Home.current()
    prepare_home(home)
    platform, defs = load_platform()
    out.progress(f"home {home.root}")
    reference = APP in platform.units and (project_root() / "templates" / APP).is_dir()
    workdir = home.repos / APP
    if reference:
        app = platform.unit(APP)
        assert isinstance(app, AppUnit)  # the reference platform's web app
        remote = Path(home.expand(app.repository))
        ensure_app_repo(home, project_root() / "templates" / APP, remote, workdir)
    steps: list[dict[str, Any]] = []

    def step(label: str, fn, *, expect_refusal: bool = False, **kw) -> dict[str, Any]:
        if steps and not all(
            s["ok"] for s in steps
        ):  # after an unexpected failure, later steps would only cascade
            row = {
                "step": label,
                "ok": False,
                "skipped": True,
                "code": "UD-DEMO-SKIPPED",
                "message": "an earlier step failed",
            }
            steps.append(row)
            return row
        t0 = time.monotonic()
        out.progress(f"{label} ...")
        outcome = fn(platform, defs, **kw, home=home)
        row = {
            "step": label,
            "ok": (outcome.error is not None) if expect_refusal else outcome.error is None,
            "expected_refusal": expect_refusal,
            "run_id": outcome.run_id,
            "code": outcome.error.code if outcome.error else None,
            "message": outcome.error.message if outcome.error else None,
            "seconds": round(time.monotonic() - t0, 1),
        }
        if expect_refusal and outcome.failed_checks:
            row["gates"] = outcome.failed_checks
        steps.append(row)
        verdict = (
            ("refused as expected: " if expect_refusal else "FAILED: ")
            + f"{row['code']} {row['message']}"
            if outcome.error
            else ("ok" if not expect_refusal else "NOT REFUSED (unexpected)")
        )
        out.progress(f"{label}: {verdict} ({row['seconds']} s)")
        return row

    def env_of(unit: str, env: str) -> str | None:
        u = platform.unit(unit)
        dep = platform.target(u, env).status(u, env)
        return dep.version if dep else None

    def approve_if_needed(name: str, env: str) -> None:
        """Four-eyes: someone who may approve there and is not an author (the operator built the
        change, the commit names its developer) approves what the stage before runs."""
        unit = platform.unit(name)
        if unit.policy.approvals.get(env, 0) and (
            version := env_of(name, unit.previous_stage(env))
        ):
            approver = next(
                iter(
                    eligible_approvers(
                        platform.governance, platform.ledger.ledger(), name, version, env
                    )
                ),
                None,
            )
            if approver is None:
                out.progress(
                    f"{name} {version[:12]} waits for an approval for {env}: the policy names no "
                    "approver who is not one of its authors"
                )
                return
            data = approve(platform, approver, name, env, version)
            out.progress(f"{data['principal']} approved {name} {version[:12]} for {env}")

    for name in platform.order():  # customer_features -> churn_model -> recommendation_api
        for env in platform.units[name].environments:
            if all(s["ok"] for s in steps):
                approve_if_needed(name, env)
            step(
                f"promote {name} to {env}",
                promote,
                unit_name=name,
                env=env,
                reason="demo: first release",
            )
    if not reference:
        return summary(platform, steps, started, home)

    # A second, good app change goes all the way, so production has a version to roll back to.
    readme = workdir / "README.md"
    readme.write_text(
        readme.read_text()
        + f"\nRelease note {time.strftime('%Y-%m-%d %H:%M:%S')}: tuned response headers.\n"
    )
    good = commit(workdir, "Add a release note")
    for env in app.environments:
        if all(s["ok"] for s in steps):
            approve_if_needed(APP, env)
        step(
            f"promote {APP} {good[:8]} to {env}",
            promote,
            unit_name=APP,
            env=env,
            reason="demo: second release",
        )
    serving_before = env_of(APP, "production")

    # A change whose own tests fail: the candidate is refused, production keeps serving.
    service = workdir / "service.py"
    original = service.read_text()
    service.write_text(
        re.sub(r"RETENTION_OFFER_AT = [0-9.]+", "RETENTION_OFFER_AT = 0.95", original, count=1)
    )
    bad = commit(workdir, "Only make retention offers above 95% churn risk")
    refusal = step(
        f"promote {APP} {bad[:8]} to staging (its tests fail)",
        promote,
        unit_name=APP,
        env="staging",
        reason="demo: a change that breaks the app's tests",
        expect_refusal=True,
    )
    refusal["production_still_serves"] = env_of(APP, "production")
    refusal["ok"] = refusal["ok"] and refusal["production_still_serves"] == serving_before
    service.write_text(original)
    commit(workdir, "Revert the retention threshold change")

    # A change that would pass the team's budget: twelve large replicas, declared in the app's repo.
    deploy_file = workdir / "ud-deploy.yaml"
    deploy_file.write_text(
        "# serving size and replicas, read by the cost gate\nsize: large\nreplicas: 12\n"
    )
    costly = commit(workdir, "Scale to twelve large replicas for the sale")
    cost_refusal = step(
        f"promote {APP} {costly[:8]} to staging (over budget)",
        promote,
        unit_name=APP,
        env="staging",
        reason="demo: a change that would pass the team's budget",
        expect_refusal=True,
    )
    cost_refusal["ok"] = cost_refusal["ok"] and any(
        g.get("code", "").startswith("UD-GATE-COST") for g in cost_refusal.get("gates", [])
    )
    deploy_file.unlink()
    commit(workdir, "Back to the budgeted serving size")

    # A data rebuild that produces impossible values (dated before the customers signed up):
    # the data-quality gate refuses it in the audit schema; readers keep the published version.
    data = "customer_features"
    published = env_of(data, "staging")
    dq_refusal = step(
        f"promote {data} to staging (backdated rebuild)",
        promote,
        unit_name=data,
        env="staging",
        ref="{as_of_date: '2020-01-01'}",
        reason="demo: a rebuild whose data fails its suite",
        expect_refusal=True,
    )
    dq_refusal["ok"] = (
        dq_refusal["ok"]
        and env_of(data, "staging") == published
        and any(g.get("code") == "UD-GATE-DQ-FAILED" for g in dq_refusal.get("gates", []))
    )

    rb = step(
        f"roll back {APP} in production",
        rollback,
        unit_name=APP,
        env="production",
        reason="demo: rolling back the second release",
    )
    rb["now_serving"] = env_of(APP, "production")

    health = platform.target(app, "production").health(app, "production")
    now = status(platform)
    ok = all(s["ok"] for s in steps) and health.healthy
    wall = round(time.monotonic() - started, 1)
    lines = [
        "",
        "unified-delivery demo: " + ("OK" if ok else "FAILED") + f" in {wall} s",
        "",
        status_table(now),
        "",
    ]
    lines.append(
        f"refusal : {APP} {bad[:12]} refused ({refusal['code']}: its tests fail); production "
        f"stayed on {(refusal['production_still_serves'] or '-')[:12]}"
    )
    for r in (cost_refusal, dq_refusal):
        codes = ", ".join(sorted({g["code"] for g in r.get("gates", [])})) or r.get("code")
        lines.append(f"refusal : {r['step']}: {codes}")
    lines.append(
        f"rollback: {APP} production {serving_before[:12] if serving_before else '-'} -> "
        f"{(rb['now_serving'] or '-')[:12]}"
    )
    lines.append(f"health  : {APP} production: {health.message}")
    lines.append(
        "next    : `ud ui` to see lineage, runs and gate results; `ud down` stops the local "
        "services"
    )
    if not ok:
        lines += [
            f"failed step: {s['step']}: {s['code']} {s['message']}"
            for s in steps
            if not s["ok"] and not s.get("skipped")
        ]
    return {
        "ok": ok,
        "home": str(home.root),
        "wall_seconds": wall,
        "steps": steps,
        "status": now,
        "refusal": refusal,
        "refusals": [refusal, cost_refusal, dq_refusal],
        "rollback": rb,
        "production_health": {"healthy": health.healthy, "message": health.message},
        "summary_text": "\n".join(lines),
    }


def summary(platform, steps: list[dict[str, Any]], started: float, home: Home) -> dict[str, Any]:
    """Any platform's demo: every unit through every environment, then what runs where."""
    now = status(platform)
    health = {}
    for unit in platform.units.values():
        last = unit.environments[-1]
        if unit.kind == "app" and (dep := platform.target(unit, last).status(unit, last)):
            h = platform.target(unit, last).health(unit, last)
            health[unit.name] = {
                "healthy": h.healthy,
                "message": h.message,
                "url": dep.details.get("url"),
            }
    ok = all(s["ok"] for s in steps) and all(h["healthy"] for h in health.values())
    wall = round(time.monotonic() - started, 1)
    lines = [
        "",
        "unified-delivery demo: " + ("OK" if ok else "FAILED") + f" in {wall} s",
        "",
        status_table(now),
        "",
    ]
    if not platform.units:
        lines.append("no units yet: add one with `ud new app|model|data NAME`")
    lines += [f"health  : {n} {h['url'] or ''}: {h['message']}" for n, h in health.items()]
    lines.append(
        "next    : `ud ui` to see lineage, runs and gate results; `ud down` stops the local "
        "services"
    )
    lines += [
        f"failed step: {s['step']}: {s['code']} {s['message']}"
        for s in steps
        if not s["ok"] and not s.get("skipped")
    ]
    return {
        "ok": ok,
        "home": str(home.root),
        "wall_seconds": wall,
        "steps": steps,
        "status": now,
        "production_health": health,
        "summary_text": "\n".join(lines),
    }


__all__ = ["run_demo"]
