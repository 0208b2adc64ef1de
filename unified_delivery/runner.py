"""Running the platform's jobs as Dagster runs on the embedded (or configured) instance.

`ud promote`, `ud rollback` and `ud demo` execute the platform's own jobs in this process
against the instance in $DAGSTER_HOME, so every run, materialization and check result is
on that instance and shows in `ud ui`. A step failure carries its UD code in metadata;
here it becomes the UDError the command reports.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sys
from dataclasses import dataclass, field
from typing import Any

from .errors import EXIT_GATE, GateRefused, NotPermitted, UDError
from .home import Home
from .run_tags import ENV_TAG, QUIET_LOGS, UNIT_TAG

DAGSTER_YAML = """# Written by ud: the embedded Dagster instance (SQLite storage under this folder).
telemetry:
  enabled: false
run_coordinator:
  module: dagster._core.run_coordinator
  class: DefaultRunCoordinator
"""


def prepare_home(home: Home) -> None:
    home.ensure()
    for d in (
        home.root,
        home.dagster_home,
        home.repos,
        home.releases,
        home.builds,
        home.mlflow_dir,
    ):
        d.mkdir(parents=True, exist_ok=True)
    cfg = home.dagster_home / "dagster.yaml"
    if not cfg.exists():
        cfg.write_text(DAGSTER_YAML)


def instance(home: Home):
    import dagster as dg

    prepare_home(home)
    os.environ["DAGSTER_HOME"] = str(home.dagster_home)
    os.environ["UD_HOME"] = str(home.root)
    home.locks.mkdir(parents=True, exist_ok=True)
    with open(home.locks / "dagster-storage.lock", "w") as lock:
        # Two `ud` processes on a new home would both create the SQLite schema and one fails.
        fcntl.flock(lock, fcntl.LOCK_EX)
        inst = dg.DagsterInstance.get()
        inst.get_runs(limit=1)  # creates the run and event storage while the lock is held
        fcntl.flock(lock, fcntl.LOCK_UN)
    return inst


@dataclass
class RunOutcome:
    run_id: str
    success: bool
    error: UDError | None = None
    failed_checks: list[dict] = field(default_factory=list)
    materialized: list[str] = field(default_factory=list)


def execute(
    defs: Any,
    job: str,
    *,
    home: Home,
    run_config: dict | None = None,
    tags: dict[str, str] | None = None,
    run_id: str | None = None,
) -> RunOutcome:
    import dagster as dg

    from .engine import run_lock

    inst = instance(home)
    config = {**QUIET_LOGS, **(run_config or {})}
    tags = tags or {}
    # One promotion of a unit to an environment at a time, from build to deploy: the second waits.
    lock = (
        run_lock(home, tags[UNIT_TAG], tags[ENV_TAG])
        if tags.get(UNIT_TAG) and tags.get(ENV_TAG)
        else contextlib.nullcontext()
    )
    with (
        lock,
        contextlib.redirect_stdout(sys.stderr),
    ):  # stdout belongs to the command's own output (JSON for agents)
        result = defs.resolve_job_def(job).execute_in_process(
            instance=inst, run_config=config, tags=tags, raise_on_error=False, run_id=run_id
        )
    materialized = [
        ev.asset_key.to_user_string() for ev in result.get_asset_materialization_events()
    ]
    failed_checks = []
    for ev in result.get_asset_check_evaluations():
        if not ev.passed:
            meta = {k: v.value for k, v in ev.metadata.items()}
            failed_checks.append(
                {
                    "check": ev.check_name,
                    "asset": ev.asset_key.to_user_string(),
                    "code": meta.get("code"),
                    "message": meta.get("message") or ev.description,
                    "remediation": meta.get("remediation", ""),
                    "refusal_code": meta.get("refusal_code"),
                    "exit_code": meta.get("exit_code", EXIT_GATE),
                }
            )
    outcome = RunOutcome(
        run_id=result.run_id,
        success=result.success,
        failed_checks=failed_checks,
        materialized=materialized,
    )
    if result.success:
        return outcome
    for event in result.all_events:
        if event.event_type != dg.DagsterEventType.STEP_FAILURE:
            continue
        data = event.step_failure_data
        meta = {
            k: v.value
            for k, v in (data.user_failure_data.metadata if data.user_failure_data else {}).items()
        }
        if "ud_code" in meta:
            outcome.error = UDError(
                meta["ud_code"],
                meta.get("ud_message", ""),
                meta.get("remediation", ""),
                exit_code=int(meta.get("exit_code", 5)),
            )
            return outcome
    # A check that names its refusal (run_gate sets refusal_code) is not a verdict on the
    # version: the principal lacks a right or a quota, or the environment was changed outside
    # the platform. A denial goes first: it is the caller's to fix before anything else.
    named = sorted(
        (c for c in failed_checks if c["refusal_code"]),
        key=lambda c: c["exit_code"] != NotPermitted.exit_code,
    )
    if named:
        first = named[0]
        cls = NotPermitted if first["exit_code"] == NotPermitted.exit_code else GateRefused
        outcome.error = cls(
            first["refusal_code"],
            first["message"],
            first["remediation"],
            exit_code=first["exit_code"],
        )
        return outcome
    if failed_checks:
        first = failed_checks[0]
        names = ", ".join(f"{c['check']} ({c['code']})" for c in failed_checks)
        outcome.error = GateRefused(
            "UD-GATE-REFUSED",
            f"gates refused: {names}: {first['message']}",
            first["remediation"] or "see `ud gates`",
            exit_code=EXIT_GATE,
        )
        return outcome
    err = next(
        (
            e.step_failure_data.error
            for e in result.all_events
            if e.event_type == dg.DagsterEventType.STEP_FAILURE
        ),
        None,
    )
    outcome.error = UDError(
        "UD-RUN-FAILED",
        f"run {result.run_id} failed: {err.message.strip() if err else 'unknown error'}",
        "see the run in `ud ui`",
        exit_code=5,
    )
    return outcome
