"""Evaluate sensors once and execute what they request, on the instance, without a daemon
(`ud sensors tick`, scripts, tests).

Each sensor is evaluated through Dagster's own sensor API, then each run it requests is
executed in this process (runner.execute) with the run key and sensor name the daemon would
set; a request whose run key already has a run of that sensor is skipped, as the daemon does.
Sensors run one after the other, so the promotion sensor sees what the Git sensor's runs
just deployed. A sensor that fails is reported and the others still tick.
"""

from __future__ import annotations

from typing import Any, Sequence

import dagster as dg

from ..errors import UDError
from ..home import Home
from ..run_tags import ENV_TAG, REASON_TAG, RUN_KEY_TAG, SENSOR_NAME_TAG, UNIT_TAG
from ..service.run_history import what
from .base import collect_notes, runs_with_key


def sensor_defs(defs: dg.Definitions, names: Sequence[str] = ()) -> list[dg.SensorDefinition]:
    sensors = list(defs.sensors or [])
    if not names:
        return sensors
    by_name = {s.name: s for s in sensors}
    unknown = [n for n in names if n not in by_name]
    if unknown:
        raise UDError(
            "UD-UNKNOWN-SENSOR",
            f"no sensor named {unknown[0]!r}",
            f"known sensors: {', '.join(by_name) or 'none'}",
        )
    return [by_name[n] for n in names]


def already_run(instance: dg.DagsterInstance, sensor: str, run_key: str) -> dg.DagsterRun | None:
    return next(
        (r for r in runs_with_key(instance, run_key) if r.tags.get(SENSOR_NAME_TAG) == sensor), None
    )


def tick(
    defs: dg.Definitions, home: Home, names: Sequence[str] = (), progress=lambda text: None
) -> dict[str, Any]:
    from ..runner import Selection, execute
    from ..runner import instance as open_instance

    sensors = sensor_defs(defs, names)
    inst = open_instance(home)
    report = []
    for sensor in sensors:
        entry: dict[str, Any] = {
            "name": sensor.name,
            "requested": [],
            "skip_reason": None,
            "notes": [],
            "error": None,
        }
        report.append(entry)
        with collect_notes() as notes:
            try:
                with dg.build_sensor_context(
                    instance=inst, definitions=defs, sensor_name=sensor.name
                ) as context:
                    data = sensor.evaluate_tick(context)
            except Exception as exc:  # one broken sensor must not stop the others
                entry["error"] = f"{type(exc).__name__}: {exc}"
                progress(f"{sensor.name}: failed: {entry['error']}")
                continue
            finally:
                entry["notes"] = notes
        entry["skip_reason"] = data.skip_message
        for req in data.run_requests or []:
            # A request without a job runs the sensor's own (the only one it targets).
            job = req.job_name or sensor.job_name
            item: dict[str, Any] = {
                "run_key": req.run_key,
                "job": job,
                "what": what(job or "", req.tags),
                "unit": req.tags.get(UNIT_TAG),
                "env": req.tags.get(ENV_TAG),
                "reason": req.tags.get(REASON_TAG),
            }
            entry["requested"].append(item)
            existing = already_run(inst, sensor.name, req.run_key) if req.run_key else None
            if existing is not None:
                item.update(
                    outcome="skipped",
                    run_id=existing.run_id,
                    message="a run with this run key exists",
                )
                continue
            if job is None:
                item.update(outcome="failed", message="the request names no job to run")
                continue
            progress(f"{sensor.name}: running {job} for {req.run_key}")
            tags = {
                **req.tags,
                SENSOR_NAME_TAG: sensor.name,
                **({RUN_KEY_TAG: req.run_key} if req.run_key else {}),
            }
            selection = (
                Selection(tuple(req.asset_selection), tuple(req.asset_check_keys or ()))
                if req.asset_selection is not None
                else None
            )
            outcome = execute(
                defs,
                job,
                home=home,
                run_config=dict(req.run_config),
                tags=tags,
                selection=selection,
            )
            item.update(
                outcome="success" if outcome.success else "failed",
                run_id=outcome.run_id,
                error=outcome.error.to_dict() if outcome.error else None,
            )
            progress(
                f"{sensor.name}: {job} {item['outcome']}"
                + (f": {outcome.error.code} {outcome.error.message}" if outcome.error else "")
            )
    executed = [
        r for s in report for r in s["requested"] if r.get("outcome") in ("success", "failed")
    ]
    return {
        "ok": not any(s["error"] for s in report),
        "sensors": report,
        "runs_executed": len(executed),
        "runs_failed": sum(r["outcome"] == "failed" for r in executed),
    }
