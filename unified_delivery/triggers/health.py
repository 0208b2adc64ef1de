"""Health sensor: after a deploy, polls what each environment runs; after N consecutive
failed polls it rolls the environment back to its previous version through `ud_rollback`,
with the failures as the recorded reason.

Only deployments younger than the watch window, or in their unit's soak (soak.py), are
polled: a service stopped on purpose days later (`ud down`) is not a bad deploy. A monitor
breach in soak (the health's `monitor` details say `breached`) is judged on every request
since the deploy, not on one probe: it is recorded (a `monitor-breach` entry with the
evidence) and rolled back at once. A version that was itself reached by a rollback
is not rolled back again (that would swing between two bad versions): it is noted for a
person. A health check that cannot run (the target raised) counts as neither pass nor fail.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Sequence

import dagster as dg

from .. import soak
from ..events import CHANGES, MonitorBreach, Rollback, record
from .base import Requester, default_principal, durable_sensor, note
from .promotion import seconds_since

if TYPE_CHECKING:
    from ..platform import Platform
    from ..targets.records import Deployment


def rollback_config(unit: str, env: str, reason: str, to_version: str = "") -> dict:
    return {
        "ops": {
            "rollback_unit": {
                "config": {"unit": unit, "env": env, "to_version": to_version, "reason": reason}
            }
        }
    }


def reached_by_rollback(platform: Platform, unit: str, env: str) -> bool:
    last = platform.ledger.ledger().latest(unit=unit, env=env, action=CHANGES)
    return last is not None and last.action == Rollback.ACTION


def record_breach(
    platform: Platform,
    sensor: str,
    principal: str,
    unit: str,
    env: str,
    dep: Deployment,
    details: dict[str, Any],
    message: str,
    window: soak.Window | None,
) -> None:
    """The breach and its evidence in the ledger, once per version and environment."""
    ledger = platform.ledger.ledger()
    last = ledger.latest(unit=unit, env=env, action=(*CHANGES, MonitorBreach.ACTION))
    if last is not None and last.action == MonitorBreach.ACTION and last.version == dep.version:
        return
    evidence = {k: v for k, v in (details.get("monitor") or {}).items() if k != "breached"}
    back = dep.previous_version if not reached_by_rollback(platform, unit, env) else None
    record(
        ledger,
        MonitorBreach(
            message=message,
            evidence=evidence,
            soak_until=window.until.isoformat() if window else "",
            rollback_to=back,
            noticed_by=sensor,
        ),
        principal=principal,
        unit=unit,
        env=env,
        version=dep.version,
    )


def health_tick(
    sensor: str, principal: str, platform: Platform, failures: int, watch_seconds: float
):
    def tick(context: dg.SensorEvaluationContext, state: dict) -> list[dg.RunRequest]:
        now = time.time()
        who = Requester.for_tick(sensor, principal)
        requests = []
        for name in platform.order():
            unit = platform.units[name]
            for env in unit.environments:
                key = f"{name}/{env}"
                target = platform.target(unit, env)
                try:
                    dep = target.status(unit, env)
                except Exception as exc:
                    note(
                        context,
                        "error",
                        f"{sensor}: {key}: status unavailable: {type(exc).__name__}: {exc}",
                        event="error",
                    )
                    continue
                age = seconds_since(dep.deployed_at, now) if dep else None
                # polled while in soak (a version reached by a rollback too: its target then
                # judges no monitor, soak.window)
                window = soak.window(unit, env, dep)
                in_soak = window is not None and window.active()
                if dep is None or age is None or (age > watch_seconds and not in_soak):
                    state.pop(key, None)
                    continue
                entry = state.get(key)
                if not entry or entry.get("version") != dep.version:
                    entry = {"version": dep.version, "failures": 0, "messages": []}
                try:
                    health = target.health(unit, env)
                except Exception as exc:
                    note(
                        context,
                        "warning",
                        f"{sensor}: {key}: health could not be checked: {type(exc).__name__}: "
                        f"{exc}",
                        event="unchecked",
                    )
                    state[key] = entry
                    continue
                breach = (health.details.get("monitor") or {}).get("breached") is True
                if health.healthy:
                    entry.update(failures=0, messages=[])
                elif breach:  # judged on the whole soak's sample, not a flaky probe: at once
                    entry["failures"] = failures
                    entry["messages"] = [*entry["messages"], health.message][-failures:]
                    record_breach(
                        platform,
                        sensor,
                        principal,
                        name,
                        env,
                        dep,
                        health.details,
                        health.message,
                        window,
                    )
                    note(
                        context,
                        "warning",
                        f"{sensor}: {key} {dep.version[:12]} broke its monitor in soak: "
                        f"{health.message}",
                        unit=name,
                        env=env,
                        event="monitor-breach",
                    )
                else:
                    entry["failures"] += 1
                    entry["messages"] = [*entry["messages"], health.message][-failures:]
                    note(
                        context,
                        "warning",
                        f"{sensor}: {key} {dep.version[:12]} unhealthy "
                        f"({entry['failures']}/{failures}): {health.message}",
                        unit=name,
                        env=env,
                        event="unhealthy",
                    )
                state[key] = entry
                if entry["failures"] < failures:
                    continue
                if not dep.previous_version:
                    note(
                        context,
                        "error",
                        f"{sensor}: {key} {dep.version[:12]} failed {entry['failures']} health "
                        "checks and has no previous version to roll back to; a person must act",
                        unit=name,
                        env=env,
                        event="stuck",
                    )
                elif reached_by_rollback(platform, name, env):
                    note(
                        context,
                        "error",
                        f"{sensor}: {key} {dep.version[:12]} failed {entry['failures']} health "
                        "checks but is itself the result of a rollback; not rolling back again, a "
                        "person must act",
                        unit=name,
                        env=env,
                        event="stuck",
                    )
                else:
                    reason = (
                        f"health sensor: monitor breach in soak of {dep.version[:12]}: "
                        f"{entry['messages'][-1]}"
                        if breach
                        else f"health sensor: {entry['failures']} consecutive failed health "
                        f"checks of {dep.version[:12]}: {entry['messages'][-1]}"
                    )
                    note(
                        context,
                        "warning",
                        f"{sensor}: rolling {key} back to {dep.previous_version[:12]}",
                        unit=name,
                        env=env,
                        event="rollback",
                    )
                    requests.append(
                        who.request(
                            job="ud_rollback",
                            run_key=f"health:{name}:{env}:{dep.version}",
                            unit=name,
                            env=env,
                            reason=reason,
                            run_config=rollback_config(name, env, reason),
                        )
                    )
        return requests

    return tick


def health_sensor(
    platform: Platform,
    jobs: Sequence[Any],
    *,
    name: str = "ud_health",
    failures: int = 3,
    watch_seconds: float = 900,
    minimum_interval_seconds: int = 30,
    default_status: dg.DefaultSensorStatus = dg.DefaultSensorStatus.RUNNING,
    principal: str | None = None,
) -> dg.SensorDefinition:
    tick = health_tick(
        name, principal or default_principal(name), platform, failures, watch_seconds
    )
    return durable_sensor(
        name,
        tick,
        jobs,
        description=f"Rolls a deploy back after {failures} consecutive failed health checks "
        f"within {watch_seconds:.0f} s of the deploy.",
        minimum_interval_seconds=minimum_interval_seconds,
        default_status=default_status,
    )
