"""Running the platform's jobs as Dagster runs on the embedded (or configured) instance.

`ud promote` and `ud rollback` submit the platform's jobs to the instance in $DAGSTER_HOME
(`submit`, through the home's code server: code_server.py), whose run coordinator and
launcher decide where they run, and follow them there (`watch`); the Python API and `ud demo`
execute them in their own process (`execute`). Either way every run, materialization and
check result is on that instance and shows in `ud ui`. A step failure carries its UD code in
metadata; `outcome_of` makes it the UDError the command reports.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from .errors import EXIT_GATE, GateRefused, NotPermitted, UDError
from .home import Home
from .run_tags import ENV_TAG, QUIET_LOGS, UNIT_TAG

if TYPE_CHECKING:
    from .promotions import Promotion

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


_INSTANCES: dict[str, Any] = {}


def instance(home: Home):
    """The home's Dagster instance, opened once per process (opening one checks the schema of
    each of its three storages: about half a second each time)."""
    import dagster as dg

    opened = _INSTANCES.get(str(home.dagster_home))
    if (
        opened is not None
        and os.environ.get("DAGSTER_HOME") == str(home.dagster_home)
        and (home.dagster_home / "dagster.yaml").exists()  # not a home removed since
    ):
        return opened
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
    _INSTANCES[str(home.dagster_home)] = inst
    return inst


@dataclass(frozen=True)
class Selection:
    """The assets and checks of a job one run executes (a promotion: promotions.Promotion); the
    checks exactly these, none of the other checks of the selected assets."""

    assets: tuple[Any, ...]
    checks: tuple[Any, ...] = ()

    @classmethod
    def of(cls, promotion: "Promotion") -> "Selection":
        return cls(promotion.assets, promotion.checks)


@dataclass
class RunOutcome:
    run_id: str
    success: bool
    error: UDError | None = None
    failed_checks: list[dict] = field(default_factory=list)
    materialized: list[str] = field(default_factory=list)
    pending: bool = False  # submitted, not waited for: `ud watch RUN` follows it
    # The version each materialization of this run recorded ("unit/env" -> version): what this
    # run deployed, whatever another run deployed since.
    versions: dict[str, str] = field(default_factory=dict)


def execute(
    defs: Any,
    job: str,
    *,
    home: Home,
    run_config: dict | None = None,
    tags: dict[str, str] | None = None,
    run_id: str | None = None,
    lock_engine: Any = None,
    selection: Selection | None = None,
) -> RunOutcome:
    """The job executed in this process (the Python API, the demo): no code server, no second
    load of the definitions. With `selection`, only its assets and checks of the job run."""
    from .engine import run_lock

    inst = instance(home)
    config = {**QUIET_LOGS, **(run_config or {})}
    tags = tags or {}
    # One promotion of a unit to an environment at a time, from build to deploy: the second waits.
    lock = (
        run_lock(home, tags[UNIT_TAG], tags[ENV_TAG], engine=lock_engine)
        if tags.get(UNIT_TAG) and tags.get(ENV_TAG)
        else contextlib.nullcontext()
    )
    with (
        lock,
        contextlib.redirect_stdout(sys.stderr),
    ):  # stdout belongs to the command's own output (JSON for agents)
        job_def = defs.resolve_job_def(job)
        if selection is not None:
            job_def = job_def.get_subset(
                asset_selection=frozenset(selection.assets),
                asset_check_selection=frozenset(selection.checks),
            )
        result = job_def.execute_in_process(
            instance=inst, run_config=config, tags=tags, raise_on_error=False, run_id=run_id
        )
    return outcome_of(result.run_id, result.success, result.all_events)


def submit(
    root: Path,
    job: str,
    *,
    home: Home,
    run_id: str,
    run_config: dict | None = None,
    tags: dict[str, str] | None = None,
    selection: Selection | None = None,
    fresh_id: Callable[[], str] | None = None,
) -> str:
    """The job submitted to the instance as `dagster job launch` does: made from the code
    server's view of the job, then handed to the instance's run coordinator, whose launcher
    decides where it runs (a process of the code server on the embedded home, a Kubernetes Job
    with deploy/dagster.yaml); with `selection`, the subset of the job the UI's "materialize
    selected" makes. The run's id."""
    from . import code_server

    inst = instance(home)
    config = {**QUIET_LOGS, **(run_config or {})}
    for attempt in (1, 2):
        try:
            return _submit(inst, root, job, home, run_id, config, tags, selection)
        except Exception as exc:
            # A server that ended just as this command reached it (its idle time ran out, and
            # it still answered the ping before): a new server gets the request again. A run
            # the failed launch created stays in the run list as it ended (failed, never
            # started); the retry is a new run, under a new id from `fresh_id` (its own grant).
            if attempt == 2 or not code_server.gone(exc):
                raise
            if inst.has_run(run_id):
                if fresh_id is None or not _never_started(inst, run_id):
                    raise
                run_id = fresh_id()
            code_server.forget(home)
    raise AssertionError("unreachable")


def _never_started(inst: Any, run_id: str) -> bool:
    """Whether the run's launch failed before any process of it began (no RUN_START)."""
    import dagster as dg

    run = inst.get_run_by_id(run_id)
    if run is None or run.status not in (
        dg.DagsterRunStatus.FAILURE,
        dg.DagsterRunStatus.NOT_STARTED,
    ):
        return False
    started = inst.get_records_for_run(
        run_id, of_type={dg.DagsterEventType.RUN_START, dg.DagsterEventType.STEP_START}, limit=1
    )
    return not started.records


def _submit(
    inst: Any,
    root: Path,
    job: str,
    home: Home,
    run_id: str,
    config: dict,
    tags: dict[str, str] | None,
    selection: Selection | None,
) -> str:
    from dagster._core.definitions.selector import JobSubsetSelector

    from . import code_server

    with code_server.workspace(inst, home, root) as workspace:
        location = workspace.get_code_location(code_server.LOCATION)
        repo = next(iter(location.get_repositories().values()))  # a Definitions: one repository
        selector = JobSubsetSelector(
            location_name=location.name,
            repository_name=repo.name,
            job_name=job,
            op_selection=None,
            asset_selection=selection.assets if selection else None,
            asset_check_selection=selection.checks if selection else None,
        )
        remote_job = location.get_job(selector)
        plan = location.get_execution_plan(
            remote_job, config, step_keys_to_execute=None, known_state=None, instance=inst
        )
        run = inst.create_run(
            job_name=job,
            run_id=run_id,
            run_config=config,
            resolved_op_selection=None,
            step_keys_to_execute=None,
            op_selection=None,
            status=None,
            root_run_id=None,
            parent_run_id=None,
            tags={**remote_job.tags, **(tags or {})},
            job_snapshot=remote_job.job_snapshot,
            execution_plan_snapshot=plan.execution_plan_snapshot,
            parent_job_snapshot=remote_job.parent_job_snapshot,
            remote_job_origin=remote_job.get_remote_origin(),
            job_code_origin=remote_job.get_python_origin(),
            asset_selection=frozenset(selection.assets) if selection else None,
            asset_check_selection=frozenset(selection.checks) if selection else None,
            asset_graph=repo.asset_graph,
        )
        inst.submit_run(run.run_id, workspace)
    return run.run_id


# What a watcher is told of, as the run writes it.
WATCHED = (
    "ASSET_MATERIALIZATION_PLANNED",
    "STEP_START",
    "STEP_SUCCESS",
    "STEP_FAILURE",
    "ASSET_MATERIALIZATION",
    "ASSET_CHECK_EVALUATION",
    "RUN_START",
    "RUN_SUCCESS",
    "RUN_FAILURE",
    "RUN_CANCELED",
    "RUN_ENQUEUED",
    "RUN_DEQUEUED",
    "RUN_STARTING",
)


def watch(
    run_id: str,
    *,
    home: Home,
    on_event: Callable[[Any], None] | None = None,
    poll_s: float = 0.25,
) -> RunOutcome:
    """Follow a run of the instance to its end (wherever it runs: the event log is the
    instance's), telling `on_event` of each event log entry of WATCHED as it is written; the
    outcome as `execute` gives it."""
    import dagster as dg

    inst = instance(home)
    if inst.get_run_by_id(run_id) is None:
        raise UDError("UD-UNKNOWN-RUN", f"no run {run_id!r}", "see `ud runs` for the run ids")
    cursor = None
    events: list[Any] = []
    while True:
        run = inst.get_run_by_id(run_id)
        finished = run is not None and run.is_finished  # read before the events: none is missed
        while True:
            conn = inst.get_records_for_run(run_id, cursor=cursor, limit=500)
            for record in conn.records:
                entry = record.event_log_entry
                event = entry.dagster_event
                if event is None:
                    continue
                events.append(event)
                if on_event is not None and event.event_type.name in WATCHED:
                    on_event(entry)
            cursor = conn.cursor
            if not conn.has_more:
                break
        if finished:
            break
        time.sleep(poll_s)
    assert run is not None
    return outcome_of(run_id, run.status == dg.DagsterRunStatus.SUCCESS, events)


def outcome_of(run_id: str, success: bool, events: list[Any]) -> RunOutcome:
    """What a finished run means for the caller, from its Dagster events: a step failure carries
    its UD code in metadata; a failed check that names a refusal, or any failed gate, becomes
    the refusal the command reports."""
    import dagster as dg

    materialized = [
        ev.asset_key.to_user_string()
        for ev in events
        if ev.event_type == dg.DagsterEventType.ASSET_MATERIALIZATION and ev.asset_key
    ]
    versions = {}
    for ev in events:
        if ev.event_type == dg.DagsterEventType.ASSET_MATERIALIZATION and ev.asset_key:
            entry = ev.event_specific_data.materialization.metadata.get("version")
            if entry is not None and isinstance(entry.value, str):
                versions[ev.asset_key.to_user_string()] = entry.value
    failed_checks = []
    for ev in events:
        if ev.event_type != dg.DagsterEventType.ASSET_CHECK_EVALUATION:
            continue
        check = ev.event_specific_data
        if check.passed:
            continue
        meta = {k: v.value for k, v in check.metadata.items()}
        failed_checks.append(
            {
                "check": check.check_name,
                "asset": check.asset_key.to_user_string(),
                "code": meta.get("code"),
                "message": meta.get("message") or check.description,
                "remediation": meta.get("remediation", ""),
                "refusal_code": meta.get("refusal_code"),
                "exit_code": meta.get("exit_code", EXIT_GATE),
            }
        )
    outcome = RunOutcome(
        run_id=run_id,
        success=success,
        failed_checks=failed_checks,
        materialized=materialized,
        versions=versions,
    )
    if success:
        return outcome
    failures = [ev for ev in events if ev.event_type == dg.DagsterEventType.STEP_FAILURE]
    for event in failures:
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
    err = failures[0].step_failure_data.error if failures else None
    ended = next(
        (
            ev
            for ev in events
            if ev.event_type in (dg.DagsterEventType.RUN_FAILURE, dg.DagsterEventType.RUN_CANCELED)
        ),
        None,
    )
    why = (
        err.message.strip()
        if err
        else (ended.message if ended is not None and ended.message else "unknown error")
    )
    outcome.error = UDError(
        "UD-RUN-FAILED",
        f"run {run_id} failed: {why}",
        f"see `ud logs {run_id[:8]}`, or the run in `ud ui`",
        exit_code=5,
    )
    return outcome
