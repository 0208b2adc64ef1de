"""Promotion sensor: a unit moves on from one environment to the next (staging -> production)
by itself when its policy for that environment is `automatic`, its soak time in the previous
environment has elapsed, and no gate on the previous environment has failed for the version
it runs; otherwise it waits. The promotion run re-runs those gates as blocking checks, so a
gate that fails then still stops it. Run key: unit, environment and version, plus the newest
approval or override of the unit: one attempt per version, and one more after each approval
or override (a failure recorded before it no longer holds the version back).
"""

from __future__ import annotations

import time
from datetime import datetime
from typing import TYPE_CHECKING, Any, Sequence

import dagster as dg

from ..engine import gate_results
from ..engine.desired import recorded_changes
from ..events import GateEvaluated
from ..promotions import promotion
from .base import Requester, note, request_sensor, runs_with_key

if TYPE_CHECKING:
    from ..platform import Platform


def seconds_since(iso: str | None, now: float) -> float | None:
    if not iso:
        return None
    try:
        return now - datetime.fromisoformat(iso).timestamp()
    except ValueError:
        return None


def promotion_requests(
    sensor: str, who: Requester, platform: Platform, context: Any
) -> list[dg.RunRequest]:
    now = time.time()
    ledger = platform.ledger.ledger()
    recorded: dict | None = None  # read once, when a version is a candidate to promote
    requests = []
    for name in platform.order():
        unit = platform.units[name]
        for env in unit.environments[1:]:
            if getattr(unit.policy, env, "manual") != "automatic":
                continue
            prev = unit.previous_stage(env)
            try:
                src = platform.target(unit, prev).status(unit, prev)
                dst = platform.target(unit, env).status(unit, env)
            except Exception as exc:  # a target that cannot answer holds back this unit only
                note(
                    context,
                    "error",
                    f"{sensor}: {name}: cannot read {prev}/{env}: {type(exc).__name__}: {exc}",
                    unit=name,
                    event="error",
                )
                continue
            if src is None or (dst is not None and dst.version == src.version):
                continue
            if recorded is None:
                recorded = recorded_changes(ledger)
            last = recorded.get((name, prev))
            if last is None or last.version != src.version:
                # Reached outside the platform: the reconcile sensor records it; promoting it
                # would be refused (UD-DRIFT).
                note(
                    context,
                    "warning",
                    f"{sensor}: {name} {src.version[:12]} in {prev} is not what the platform "
                    "deployed there; not promoted",
                    unit=name,
                    env=env,
                    event="drift",
                )
                continue
            # An approval or override given since is new evidence: it earns the version another
            # attempt.
            evidence = ledger.latest(unit=name, action=("approval", "override"))
            since = evidence.seq if evidence else 0
            key = f"promote:{name}:{env}:{src.version}" + (f"@{since}" if since else "")
            if runs_with_key(context.instance, key):
                continue
            soaked = seconds_since(src.deployed_at, now)
            soak = unit.policy.soak_seconds
            if soak and (soaked is None or soaked < soak):
                left = (
                    f"{soak - soaked:.0f} s left" if soaked is not None else "deploy time unknown"
                )
                note(
                    context,
                    "info",
                    f"{sensor}: {name} {src.version[:12]} waits in {prev}: soak {soak} s ({left})",
                    unit=name,
                    env=env,
                    event="soaking",
                )
                continue
            results = gate_results(
                ledger,
                unit,
                platform.gates[name],
                prev,
                src.version,
                principal=who.principal,
                governance=platform.governance,
            )
            failed = sorted(g for g, r in results.items() if r is not None and not r["passed"])
            last_failure = (
                ledger.latest(
                    unit=name,
                    action=GateEvaluated.ACTION,
                    predicate=lambda e, version=src.version: (
                        e.version == version
                        and e.payload.get("stage") == prev
                        and not e.payload.get("passed")
                    ),
                )
                if failed
                else None
            )
            if last_failure is not None and last_failure.seq > since:
                note(
                    context,
                    "info",
                    f"{sensor}: {name} {src.version[:12]} waits in {prev}: gates failed: "
                    f"{', '.join(failed)}",
                    unit=name,
                    env=env,
                    event="gates-failed",
                )
                continue
            why = (
                f"policy {env}: automatic; {src.version[:12]} soaked {soaked or 0:.0f} s in {prev}"
            )
            note(context, "info", f"{sensor}: {name}: {why}", unit=name, env=env, event="request")
            requests.append(
                who.promote(
                    promotion(platform, unit, env),
                    run_key=key,
                    reason=f"promotion: {why}",
                )
            )
    return requests


def promotion_sensor(
    platform: Platform,
    jobs: Sequence[Any],
    *,
    name: str = "ud_promotion",
    minimum_interval_seconds: int = 60,
    default_status: dg.DefaultSensorStatus = dg.DefaultSensorStatus.RUNNING,
    principal: str | None = None,
) -> dg.SensorDefinition:
    return request_sensor(
        name,
        lambda who, context: promotion_requests(name, who, platform, context),
        jobs,
        skip="nothing to promote",
        minimum_interval_seconds=minimum_interval_seconds,
        default_status=default_status,
        principal=principal,
        description="Promotes to the next environment when the unit's policy is automatic, "
        "the soak time has elapsed and no gate failed.",
    )
