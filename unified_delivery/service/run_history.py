"""The Dagster runs of the platform, as `ud runs` and `ud logs` show them: from the instance's
run and event storage (wherever the instance keeps them: the home's SQLite, or Postgres)."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from ..errors import UDError
from ..home import Home
from ..run_tags import ENV_TAG, PRINCIPAL_TAG, REASON_TAG, TRIGGER_TAG, UNIT_TAG


def runs(unit: str = "", *, limit: int = 20, home: Home | None = None) -> dict[str, Any]:
    """The newest runs (of `unit`), newest first: job, status, who and why, when and how long."""
    import dagster as dg

    from ..runner import instance

    inst = instance(home or Home.current())
    filters = dg.RunsFilter(tags={UNIT_TAG: unit}) if unit else None
    records = inst.get_run_records(filters=filters, limit=limit)
    return {"runs": [_run(r) for r in records], "unit": unit or None}


def _when(ts: float | None) -> str | None:
    return datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="seconds") if ts else None


def _run(record: Any) -> dict[str, Any]:
    run, tags = record.dagster_run, record.dagster_run.tags
    seconds = (
        round(record.end_time - record.start_time, 1)
        if record.end_time and record.start_time
        else None
    )
    return {
        "run_id": run.run_id,
        "job": run.job_name,
        "what": what(run.job_name, tags),
        "status": run.status.value,
        "unit": tags.get(UNIT_TAG),
        "env": tags.get(ENV_TAG),
        "principal": tags.get(PRINCIPAL_TAG),
        "reason": tags.get(REASON_TAG) or None,
        "trigger": tags.get(TRIGGER_TAG),
        "started_at": _when(record.start_time),
        "seconds": seconds,
    }


def what(job: str, tags: Any) -> str:
    """A run as people name it: `svc to staging` for a promotion (a run of its environment's job,
    the unit in its tags), else its job."""
    from ..promotions import is_promotion_job

    unit, env = tags.get(UNIT_TAG), tags.get(ENV_TAG)
    if unit and env and is_promotion_job(job):
        return f"{unit} to {env}"
    return job


def find_run(inst: Any, run_id: str) -> Any:
    """The run record whose id is (or starts with) `run_id`, as `ud runs` prints it."""
    found = inst.get_run_record_by_id(run_id) if len(run_id) == 36 else None
    if found is not None:
        return found
    matches = [
        r for r in inst.get_run_records(limit=5000) if r.dagster_run.run_id.startswith(run_id)
    ]
    if len(matches) != 1:
        raise UDError(
            "UD-UNKNOWN-RUN",
            f"no run {run_id!r}" if not matches else f"{run_id!r} names {len(matches)} runs",
            "see `ud runs` for the run ids" if not matches else "give more of the run id",
        )
    return matches[0]


def watch(run_id: str, *, on_event: Any = None, home: Home | None = None) -> dict[str, Any]:
    """Follow a run to its end (runner.watch): what it was and how it ended, with the refusal's
    error when it was refused."""
    from .. import runner

    home = home or Home.current()
    record = find_run(runner.instance(home), run_id)
    outcome = runner.watch(record.dagster_run.run_id, home=home, on_event=on_event)
    ended = find_run(runner.instance(home), outcome.run_id)
    return {**_run(ended), "ok": outcome.success, "outcome": outcome}


def run_log(run_id: str, *, home: Home | None = None) -> dict[str, Any]:
    """A run's steps and what they said: each step's start and end, gate (check) results,
    materializations, and failures with their messages."""
    import dagster as dg

    from ..runner import instance

    inst = instance(home or Home.current())
    record = find_run(inst, run_id)
    wanted = {
        dg.DagsterEventType.STEP_START,
        dg.DagsterEventType.STEP_SUCCESS,
        dg.DagsterEventType.STEP_FAILURE,
        dg.DagsterEventType.ASSET_MATERIALIZATION,
        dg.DagsterEventType.ASSET_CHECK_EVALUATION,
        dg.DagsterEventType.RUN_FAILURE,
        dg.DagsterEventType.RUN_SUCCESS,
    }
    events = []
    for entry in inst.all_logs(record.dagster_run.run_id):
        event = entry.dagster_event
        if event is None or event.event_type not in wanted:
            continue
        line: dict[str, Any] = {
            "at": _when(entry.timestamp),
            "event": event.event_type.value,
            "step": event.step_key,
            "message": event.message or "",
        }
        if event.event_type == dg.DagsterEventType.ASSET_CHECK_EVALUATION:
            check = event.event_specific_data
            line["check"] = check.check_name  # type: ignore[union-attr]
            line["passed"] = check.passed  # type: ignore[union-attr]
            meta = check.metadata or {}  # type: ignore[union-attr]
            code = meta.get("ud_code") or meta.get("code")
            line["code"] = getattr(code, "value", code)
        if event.event_type == dg.DagsterEventType.STEP_FAILURE:
            error = event.step_failure_data.error  # type: ignore[union-attr]
            line["error"] = error.message.strip() if error else ""
        events.append(line)
    return {**_run(record), "events": events}
