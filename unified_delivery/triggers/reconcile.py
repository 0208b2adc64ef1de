"""Reconcile sensor: on every tick, compares what each environment runs (its target) with what
the platform deployed there (the ledger), records a `drift` entry once per difference, and,
for a unit whose policy says `self_heal: true`, puts the recorded version back through
`ud_rollback` (as Argo CD's self-heal does), for apps, models and data alike.

A target that cannot answer is noted and skipped; an environment the platform never deployed
to and that runs nothing is in sync.

It also anchors the ledger: at most once per `checkpoint_every_seconds`, when the head moved,
it writes a signed checkpoint of the head outside the ledger (a file under the home and, when
the platform repository is a Git repository, `refs/ud/checkpoints`), as `ud audit checkpoint`
does, so a truncated tail is found by `ud audit verify` without anyone remembering to."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Sequence

import dagster as dg

from ..engine.desired import EnvState, note_drift, recorded_changes
from ..engine.locks import unless_busy
from ..errors import UDError
from ..home import Home, project_root
from ..ledger import LedgerKey, checkpoints
from .base import Requester, default_principal, durable_sensor, note
from .health import rollback_config

if TYPE_CHECKING:
    from ..ledger import Ledger
    from ..platform import Platform

CHECKPOINT_EVERY_SECONDS = 3600


def reconcile_tick(
    sensor: str,
    principal: str,
    platform: Platform,
    checkpoint_every_seconds: float = CHECKPOINT_EVERY_SECONDS,
):
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
        _checkpoint(context, sensor, ledger, home, state, checkpoint_every_seconds)
        return requests

    return tick


def _checkpoint(
    context: Any, sensor: str, ledger: Ledger, home: Home, state: dict, every: float
) -> None:
    """A signed checkpoint of the head, when it moved and `every` seconds have passed since the
    last one this sensor wrote (or tried to: a ledger that does not verify is reported once an
    interval, not every tick)."""
    head, now = ledger.head(), time.time()
    if head is None or head.seq == state.get("checkpoint_seq"):
        return
    if now - state.get("checkpoint_at", 0) < every:
        return
    state["checkpoint_at"] = now
    try:
        cp, kept = checkpoints.write(ledger, LedgerKey.for_home(home), home, project_root())
    except UDError as exc:
        note(context, "error", f"{sensor}: no checkpoint written: {exc}", event="error")
        return
    state["checkpoint_seq"] = cp.seq
    note(
        context,
        "info",
        f"{sensor}: checkpoint of entry {cp.seq} ({cp.hash[:12]}) kept in {', '.join(kept)}",
        event="checkpoint",
    )


def reconcile_sensor(
    platform: Platform,
    jobs: Sequence[Any],
    *,
    name: str = "ud_reconcile",
    minimum_interval_seconds: int = 60,
    default_status: dg.DefaultSensorStatus = dg.DefaultSensorStatus.RUNNING,
    principal: str | None = None,
    checkpoint_every_seconds: float = CHECKPOINT_EVERY_SECONDS,
) -> dg.SensorDefinition:
    tick = reconcile_tick(
        name, principal or default_principal(name), platform, checkpoint_every_seconds
    )
    return durable_sensor(
        name,
        tick,
        jobs,
        description="Records what runs outside the platform's record (drift) and, where a "
        "unit's policy says self_heal, puts the recorded version back; checkpoints the "
        "ledger's head outside the ledger.",
        minimum_interval_seconds=minimum_interval_seconds,
        default_status=default_status,
    )
