"""What every trigger shares: run requests that name their principal, durable sensor state,
and notes a tick leaves for people.

Sensor state lives in the Dagster instance's key-value store, not in Dagster's own sensor
cursor, so the daemon (`ud ui`), a push hook's dry run and `ud sensors tick` all read and
advance the same state. Requests are remembered as pending until a run with their run key
exists; a request whose run never appeared (a crash between the tick and the launch, a dry
run nobody launched) is requested again, and run keys keep that from ever running twice.
"""

from __future__ import annotations

import contextvars
import json
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Iterator, Sequence

import dagster as dg

from ..run_tags import (
    ENV_TAG,
    PRINCIPAL_TAG,
    REASON_TAG,
    RUN_KEY_TAG,
    TRIGGER_TAG,
    UNIT_TAG,
)

if TYPE_CHECKING:
    from ..promotions import Promotion

STATE_KEY = "ud/sensor-state/{name}"
# Long enough for the daemon or a hook to launch what a tick requested; short enough that a
# lost request is retried within a few ticks.
PENDING_GRACE_S = 120.0

_notes: contextvars.ContextVar[list[dict] | None] = contextvars.ContextVar(
    "ud_trigger_notes", default=None
)


def default_principal(sensor: str) -> str:
    return f"service:sensor/{sensor}"


def grant_requests(context: Any, requests: Sequence[dg.RunRequest]) -> None:
    """Record a grant for each request this tick made (governance/grants.py): bound to its run
    key, job, config, unit and environment, so the run the daemon, a hook or `ud sensors tick`
    starts for it acts for the sensor's principal, and a copy of its tags acts for no one.
    The principal comes from the request this process just built, never from a caller."""
    if not requests:
        return
    from ..governance import grants, tokens

    engine = sensor_ledger(context).engine
    key = tokens.signing_key()
    for r in requests:
        grants.for_request(
            engine,
            key,
            r.tags[PRINCIPAL_TAG],
            run_key=r.run_key or "",
            job=r.job_name or "",
            unit=r.tags.get(UNIT_TAG, ""),
            env=r.tags.get(ENV_TAG, ""),
            run_config=dict(r.run_config),
        )


def sensor_ledger(context: Any):
    resources = getattr(context, "resources", None)
    resource = getattr(resources, "ledger", None) if resources is not None else None
    if resource is None:  # a sensor evaluated without the platform's resources: the home's ledger
        from ..ledger import LedgerResource

        resource = LedgerResource()
    return resource.ledger()


def request_sensor(
    name: str,
    requests: Callable[[Requester, Any], list],
    jobs: Sequence[Any],
    *,
    skip: str,
    description: str,
    minimum_interval_seconds: int,
    default_status: dg.DefaultSensorStatus,
    principal: str | None,
) -> dg.SensorDefinition:
    """A sensor whose tick is `requests(requester, context)`; nothing requested is a skip."""

    def evaluate(context: dg.SensorEvaluationContext):
        found = requests(Requester.for_tick(name, principal or default_principal(name)), context)
        grant_requests(context, found)
        return dg.SensorResult(run_requests=found) if found else dg.SkipReason(skip)

    return dg.SensorDefinition(
        name=name,
        evaluation_fn=evaluate,
        jobs=list(jobs),
        minimum_interval_seconds=minimum_interval_seconds,
        default_status=default_status,
        description=description,
        required_resource_keys={"ledger"},
    )


@dataclass(frozen=True)
class Requester:
    """Makes one tick's run requests: its sensor and the principal its runs act for (granted
    by `grant_requests` when the tick returns)."""

    sensor: str
    principal: str

    @classmethod
    def for_tick(cls, sensor: str, principal: str) -> "Requester":
        return cls(sensor, principal)

    def request(
        self,
        *,
        job: str,
        run_key: str,
        unit: str,
        env: str,
        reason: str,
        run_config: dict | None = None,
        tags: dict[str, str] | None = None,
        asset_selection: Sequence[dg.AssetKey] | None = None,
        asset_check_keys: Sequence[dg.AssetCheckKey] | None = None,
    ) -> dg.RunRequest:
        tags = {
            **(tags or {}),
            PRINCIPAL_TAG: self.principal,
            REASON_TAG: f"{self.sensor}: {reason}",
            UNIT_TAG: unit,
            ENV_TAG: env,
            TRIGGER_TAG: self.sensor,
        }
        return dg.RunRequest(
            run_key=run_key,
            job_name=job,
            run_config=run_config or {},
            tags=tags,
            asset_selection=list(asset_selection) if asset_selection is not None else None,
            asset_check_keys=list(asset_check_keys) if asset_check_keys is not None else None,
        )

    def promote(
        self,
        promotion: "Promotion",
        *,
        run_key: str,
        reason: str,
        run_config: dict | None = None,
    ) -> dg.RunRequest:
        """A run of the environment's job with the unit's own assets and checks selected, sized
        by its tags (promotions.py)."""
        return self.request(
            job=promotion.job,
            run_key=run_key,
            unit=promotion.unit,
            env=promotion.env,
            reason=reason,
            run_config=run_config,
            tags=promotion.tags(),
            asset_selection=promotion.assets,
            asset_check_keys=promotion.checks,
        )


def candidate_config(unit: str, ref: str) -> dict:
    """Run config of a promotion to the unit's first environment that builds the candidate at
    `ref` (see service/launch.py)."""
    return {"ops": {f"{unit}__candidate": {"config": {"ref": ref}}}}


def runs_with_key(instance: dg.DagsterInstance, run_key: str) -> list[dg.DagsterRun]:
    return list(instance.get_runs(filters=dg.RunsFilter(tags={RUN_KEY_TAG: run_key}), limit=5))


def keys_with_runs(instance: dg.DagsterInstance, keys: list[str], chunk: int = 500) -> set[str]:
    found: set[str] = set()
    for i in range(0, len(keys), chunk):
        runs = instance.get_runs(filters=dg.RunsFilter(tags={RUN_KEY_TAG: keys[i : i + chunk]}))
        found.update(r.tags[RUN_KEY_TAG] for r in runs)
    return found


def note(context: Any, level: str, text: str, **details: Any) -> None:
    """A line in the sensor's log (the UI's tick log) and, under `collect_notes`, in ud's output."""
    getattr(
        context.log, "warning" if level == "warning" else "error" if level == "error" else "info"
    )(text)
    sink = _notes.get()
    if sink is not None:
        sink.append({"level": level, "message": text, **details})


@contextmanager
def collect_notes() -> Iterator[list[dict]]:
    sink: list[dict] = []
    token = _notes.set(sink)
    try:
        yield sink
    finally:
        _notes.reset(token)


@dataclass
class SensorState:
    name: str
    data: dict = field(default_factory=dict)
    pending: list[dict] = field(default_factory=list)

    @classmethod
    def load(cls, instance: dg.DagsterInstance, name: str) -> "SensorState":
        key = STATE_KEY.format(name=name)
        raw = instance.run_storage.get_cursor_values({key}).get(key)
        doc = json.loads(raw) if raw else {}
        return cls(name=name, data=doc.get("data", {}), pending=doc.get("pending", []))

    def save(self, instance: dg.DagsterInstance) -> None:
        doc = json.dumps(
            {"data": self.data, "pending": self.pending}, sort_keys=True, separators=(",", ":")
        )
        instance.run_storage.set_cursor_values({STATE_KEY.format(name=self.name): doc})

    def lost_requests(self, instance: dg.DagsterInstance, now: float) -> list[dg.RunRequest]:
        """Pending requests past the grace period that still have no run: request them again.
        Only those are looked up, in one query per few hundred keys: a tick that requested a
        thousand runs must not make the next one pay a thousand queries."""
        # A request saved before promotions had one job per environment names a job of one
        # unit, which no longer exists: the sensor requests what is still due afresh.
        self.pending = [p for p in self.pending if "__to_" not in (p["job"] or "")]
        due = [p for p in self.pending if now - p["at"] >= PENDING_GRACE_S]
        have_runs = keys_with_runs(instance, [p["run_key"] for p in due])
        self.pending = [p for p in self.pending if p["run_key"] not in have_runs]
        lost = []
        for item in due:
            if item["run_key"] in have_runs:
                continue
            tags = {
                k: v for k, v in item["tags"].items() if k != "ud/grant"
            }  # state saved by older versions held one
            lost.append(
                dg.RunRequest(
                    run_key=item["run_key"],
                    job_name=item["job"],
                    run_config=item["run_config"],
                    tags=tags,
                    **_selection_from(item),
                )
            )
        return lost

    def remember(self, requests: list[dg.RunRequest], now: float) -> None:
        known = {p["run_key"] for p in self.pending}
        for r in requests:
            if r.run_key in known:
                for p in self.pending:
                    if p["run_key"] == r.run_key:
                        p["at"] = now
                continue
            self.pending.append(
                {
                    "run_key": r.run_key,
                    "job": r.job_name,
                    "run_config": dict(r.run_config),
                    "tags": dict(r.tags),
                    **_selection_of(r),
                    "at": now,
                }
            )


def _selection_of(r: dg.RunRequest) -> dict:
    """A request's asset and check selection as JSON: retried, it selects what it selected."""
    if r.asset_selection is None:
        return {}
    return {
        "assets": [list(k.path) for k in r.asset_selection],
        "checks": [[list(c.asset_key.path), c.name] for c in r.asset_check_keys or ()],
    }


def _selection_from(item: dict) -> dict:
    if "assets" not in item:
        return {}
    return {
        "asset_selection": [dg.AssetKey(path) for path in item["assets"]],
        "asset_check_keys": [dg.AssetCheckKey(dg.AssetKey(p), n) for p, n in item["checks"]],
    }


Tick = Callable[[dg.SensorEvaluationContext, dict], list[dg.RunRequest]]


# What a sensor built on `durable` or `request_sensor` needs: the ledger, where its grants go.
SENSOR_RESOURCES = frozenset({"ledger"})


def durable(name: str, tick: Tick) -> Callable[[dg.SensorEvaluationContext], dg.SensorResult]:
    """Wrap a tick `(context, state) -> requests` that reads and updates `state` in place."""

    def evaluate(context: dg.SensorEvaluationContext) -> dg.SensorResult:
        instance = context.instance
        now = time.time()
        state = SensorState.load(instance, name)
        retried = state.lost_requests(instance, now)
        for r in retried:
            note(
                context,
                "warning",
                f"{name}: requesting {r.run_key} again: no run was launched for it",
                run_key=r.run_key,
            )
        requests = tick(context, state.data)
        fresh = {r.run_key for r in requests}
        requests += [r for r in retried if r.run_key not in fresh]
        state.remember(requests, now)
        state.save(instance)
        grant_requests(context, requests)  # the retried ones too: an old grant may have expired
        if requests:
            return dg.SensorResult(run_requests=requests)
        return dg.SensorResult(skip_reason=dg.SkipReason("nothing new"))

    return evaluate


def durable_sensor(
    name: str,
    tick: Tick,
    jobs: Sequence[Any],
    *,
    description: str,
    minimum_interval_seconds: int,
    default_status: dg.DefaultSensorStatus,
) -> dg.SensorDefinition:
    """A sensor whose tick keeps state between evaluations (`durable`)."""
    return dg.SensorDefinition(
        name=name,
        evaluation_fn=durable(name, tick),
        required_resource_keys=set(SENSOR_RESOURCES),
        jobs=list(jobs),
        minimum_interval_seconds=minimum_interval_seconds,
        default_status=default_status,
        description=description,
    )
