"""Reconcile sensor: on every tick, compares what each environment runs (its target) with what
the platform deployed there (the ledger), records a `drift` entry once per difference, and,
for a unit whose policy says `self_heal: true`, puts the recorded version back through
`ud_rollback` (as Argo CD's self-heal does), for apps, models and data alike.

A target that cannot answer is noted and skipped; an environment the platform never deployed
to and that runs nothing is in sync."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence

import dagster as dg

from ..engine.desired import EnvState, note_drift, recorded_changes
from ..engine.locks import unless_busy
from ..home import Home
from .base import Requester, default_principal, durable_sensor, note
from .health import rollback_config

if TYPE_CHECKING:
    from ..platform import Platform


def reconcile_tick(sensor: str, principal: str, platform: Platform):
    def tick(context: dg.SensorEvaluationContext, state: dict) -> list[dg.RunRequest]:
        who = Requester.for_tick(sensor, principal)
        ledger = platform.ledger.ledger()
        home = Home.current()
        recorded = recorded_changes(ledger)
        requests = []
        for name in platform.order():
            unit = platform.units[name]
            for env in unit.environments:
                try:
                    with unless_busy(home, unit, env) as free:
                        # A deploy under way is not drift: looked at again next tick.
                        actual = platform.target(unit, env).status(unit, env) if free else None
                    if not free:
                        continue
                except Exception as exc:
                    note(
                        context,
                        "error",
                        f"{sensor}: {name}/{env}: status unavailable: {type(exc).__name__}: {exc}",
                        unit=name,
                        env=env,
                        event="error",
                    )
                    continue
                st = EnvState(recorded.get((name, env)), actual)
                if st.in_sync:
                    continue
                runs = st.actual_version or "nothing"
                wanted = st.recorded_version
                if note_drift(ledger, unit, env, st, principal=principal, noticed_by=sensor):
                    note(
                        context,
                        "warning",
                        f"{sensor}: {name}/{env} runs {runs[:12]} outside the platform (it "
                        f"deployed {(wanted or 'nothing')[:12]}); recorded as drift",
                        unit=name,
                        env=env,
                        event="drift",
                    )
                if not (unit.policy.self_heal and wanted and st.recorded):
                    continue
                reason = f"self-heal: {env} ran {runs[:12]} outside the platform"
                requests.append(
                    who.request(
                        job="ud_rollback",
                        # One attempt per difference: a failed heal is for a person to read.
                        run_key=f"heal:{name}:{env}:{st.recorded.seq}:{runs}",
                        unit=name,
                        env=env,
                        reason=reason,
                        run_config=rollback_config(name, env, reason, to_version=wanted),
                    )
                )
        return requests

    return tick


def reconcile_sensor(
    platform: Platform,
    jobs: Sequence[Any],
    *,
    name: str = "ud_reconcile",
    minimum_interval_seconds: int = 60,
    default_status: dg.DefaultSensorStatus = dg.DefaultSensorStatus.RUNNING,
    principal: str | None = None,
) -> dg.SensorDefinition:
    tick = reconcile_tick(name, principal or default_principal(name), platform)
    return durable_sensor(
        name,
        tick,
        jobs,
        description="Records what runs outside the platform's record (drift) and, where a "
        "unit's policy says self_heal, puts the recorded version back.",
        minimum_interval_seconds=minimum_interval_seconds,
        default_status=default_status,
    )
