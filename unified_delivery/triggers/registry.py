"""MLflow registry sensor: a new version of a watched registered model, or an alias set on one
outside the platform (an ML engineer in a notebook), requests a candidate run for that version.

Two bulk queries per hundred models per tick (registered models with their aliases and tags,
then their versions), not calls per model.
Versions the platform registered itself (its training runs tag them `ud.unit`, and its
ledger holds every candidate it built) are not requested again; while a run of the unit is
in progress the model waits a tick, because its training may just have registered a version
it has not tagged yet. Aliases the platform's own target moved (its `ud.<env>.history` tag
names the same version) are not changes from outside.

State per model: the highest version seen and each alias's version. Run key: model and
version, plus the alias when an alias triggered it.
"""

from __future__ import annotations

import json
import os
import time
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any, Callable, Iterator, Sequence

import dagster as dg

from ..events import Candidate
from ..promotions import Promotion, promotion
from ..run_tags import UNIT_TAG
from .base import (
    Requester,
    candidate_config,
    default_principal,
    durable_sensor,
    note,
)

if TYPE_CHECKING:
    from ..platform import Platform

CHUNK = 100
IN_PROGRESS = [
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
]
# A run that has claimed to be in progress for longer than this crashed; it must not hold a model
# back forever.
IN_PROGRESS_WINDOW = timedelta(hours=1)


@dataclass(frozen=True)
class ModelWatch:
    model: str  # the registered model name
    unit: str
    promotion: Promotion  # builds and deploys the unit's candidate
    environments: tuple[str, ...] = (
        "staging",
        "production",
    )  # aliases the platform's target manages


@contextmanager
def fail_fast() -> Iterator[None]:
    """A registry that is down must cost one failed request, not MLflow's minutes of retries."""
    saved = {
        k: os.environ.get(k)
        for k in ("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "MLFLOW_HTTP_REQUEST_TIMEOUT")
    }
    os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] = "0"
    os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] = "10"
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _quote(name: str) -> str:
    return "'" + name + "'" if "'" not in name else '"' + name + '"'


def _pages(search, filter_string: str | None) -> Iterator[Any]:
    token = None
    while True:
        page = search(filter_string=filter_string, max_results=1000, page_token=token)
        yield from page
        token = getattr(page, "token", None)
        if not token:
            return


def search(client: Any, models: Sequence[str]) -> tuple[dict[str, Any], dict[str, list]]:
    """The registered models among `models` (with their aliases and tags) and all their versions,
    in two bulk queries per hundred models."""
    registered: dict[str, Any] = {}
    versions: dict[str, list] = {m: [] for m in models}
    names = [m for m in models if not ("'" in m and '"' in m)]
    for i in range(0, len(names), CHUNK):
        where = f"name IN ({', '.join(_quote(n) for n in names[i : i + CHUNK])})"
        registered.update((rm.name, rm) for rm in _pages(client.search_registered_models, where))
        for mv in _pages(client.search_model_versions, where):
            versions.setdefault(mv.name, []).append(mv)
    return registered, versions


def _platform_alias(registered: Any, watch: ModelWatch, alias: str, version: str) -> bool:
    if alias not in watch.environments:
        return False
    history = json.loads((registered.tags or {}).get(f"ud.{alias}.history", "[]") or "[]")
    return bool(history) and str(history[-1].get("version")) == version


def plan(
    sensor: str,
    who: Requester,
    watch: ModelWatch,
    registered: Any,
    versions: list,
    seen: dict | None,
    *,
    known: Callable[[str, str], bool],
    context: Any,
) -> tuple[list[dg.RunRequest], dict]:
    """Requests for one model and its new state."""
    highest = max((int(v.version) for v in versions), default=0)
    aliases = {a: str(v) for a, v in (registered.aliases or {}).items()}
    new_state = {"max": max(highest, (seen or {}).get("max", 0)), "aliases": aliases}
    requests: list[dg.RunRequest] = []
    requested: set[str] = set()

    def ask(version: str, why: str, alias: str | None = None) -> None:
        if version in requested:
            return
        requested.add(version)
        key = f"mlflow:{watch.model}:{version}" + (f"@{alias}" if alias else "")
        note(
            context,
            "info",
            f"{sensor}: {watch.model}: {why}",
            model=watch.model,
            version=version,
            event="request",
        )
        requests.append(
            who.promote(
                watch.promotion,
                run_key=key,
                reason=f"mlflow: {why}",
                run_config=candidate_config(watch.unit, version),
            )
        )

    floor = (seen or {}).get("max", 0)
    fresh = sorted((v for v in versions if int(v.version) > floor), key=lambda v: -int(v.version))
    untagged = [v for v in fresh if not (v.tags or {}).get("ud.unit")]
    # Only the newest needs the ledger's word: older ones are skipped in any case.
    first = next((i for i, v in enumerate(untagged) if not known(watch.unit, str(v.version))), None)
    if first is not None:
        newest, older = untagged[first], untagged[first + 1 :]
        if older:
            note(
                context,
                "info",
                f"{sensor}: {watch.model}: building the newest new version {newest.version}; "
                f"skipped {', '.join(str(v.version) for v in older)}",
                model=watch.model,
                event="skipped",
                skipped=[str(v.version) for v in older],
            )
        by = f" by {newest.user_id}" if getattr(newest, "user_id", None) else ""
        ask(str(newest.version), f"new version {newest.version} registered{by}")
    if seen is not None:
        before = seen.get("aliases", {})
        for alias in sorted(set(before) - set(aliases)):
            note(
                context,
                "info",
                f"{sensor}: {watch.model}: alias {alias} was removed (was version {before[alias]})",
                model=watch.model,
                event="alias-removed",
            )
        for alias, version in sorted(aliases.items()):
            if before.get(alias) == version or _platform_alias(registered, watch, alias, version):
                continue
            ask(version, f"alias {alias} set on version {version} outside the platform", alias)
    return requests, new_state


def units_in_progress(instance: dg.DagsterInstance) -> set[str]:
    since = datetime.now(timezone.utc) - IN_PROGRESS_WINDOW
    runs = instance.get_runs(filters=dg.RunsFilter(statuses=IN_PROGRESS, created_after=since))
    return {r.tags[UNIT_TAG] for r in runs if UNIT_TAG in r.tags}


@dataclass(frozen=True)
class Undeclared:
    """What the sensor does with registered models that no unit declares: `declared()` names
    the models units declare (watched or not), `record(model)` records one, once."""

    declared: Callable[[], set[str]]
    record: Callable[[str], None]


def registry_tick(
    sensor: str,
    principal: str,
    watches: Callable[[], Sequence[ModelWatch]],
    client: Callable[[], Any],
    known: Callable[[str, str], bool],
    undeclared: Undeclared | None = None,
):
    def tick(context: dg.SensorEvaluationContext, state: dict) -> list[dg.RunRequest]:
        started = time.monotonic()
        wanted = list(watches())
        if not wanted and undeclared is None:
            return []
        try:
            with fail_fast():
                registered, found = search(client(), [w.model for w in wanted])
                if undeclared is not None:
                    _note_undeclared(context, sensor, client(), undeclared, state)
        except (
            Exception
        ) as exc:  # any failure to reach the registry: this source skips a tick, others go on
            first_line = str(exc).splitlines()[0][:300] if str(exc) else ""
            note(
                context,
                "error",
                f"{sensor}: the MLflow registry cannot be read ({type(exc).__name__}: "
                f"{first_line}); skipped this tick",
                event="registry-down",
            )
            return []
        busy = units_in_progress(context.instance)
        who = Requester.for_tick(sensor, principal)
        requests: list[dg.RunRequest] = []
        for w in wanted:
            if w.model not in registered:
                note(
                    context,
                    "warning",
                    f"{sensor}: {w.model}: no registered model of that name; skipped",
                    model=w.model,
                    event="no-model",
                )
                continue
            if w.unit in busy:
                note(
                    context,
                    "info",
                    f"{sensor}: {w.model}: a run of {w.unit} is in progress; looking again next "
                    "tick",
                    model=w.model,
                    event="deferred",
                )
                continue
            try:
                reqs, state[w.model] = plan(
                    sensor,
                    who,
                    w,
                    registered[w.model],
                    found.get(w.model, []),
                    state.get(w.model),
                    known=known,
                    context=context,
                )
            except Exception as exc:  # one model's failure must not stop the others
                note(
                    context,
                    "error",
                    f"{sensor}: {w.model}: {type(exc).__name__}: {exc}; skipped this tick",
                    model=w.model,
                    event="error",
                )
                continue
            requests += reqs
        context.log.info(
            f"{sensor}: {len(wanted)} models read in {time.monotonic() - started:.3f} s"
        )
        return requests

    return tick


UNDECLARED_STATE = "__undeclared__"  # not a model name MLflow accepts as another model's


def _note_undeclared(
    context: Any, sensor: str, client: Any, undeclared: Undeclared, state: dict
) -> None:
    """Name each registered model no unit declares, once: a version registered there is not
    gated or promoted, and someone should know."""
    declared = undeclared.declared()
    seen = set(state.get(UNDECLARED_STATE) or [])
    names = {rm.name for rm in _pages(client.search_registered_models, None)}
    for name in sorted(names - declared - seen):
        note(
            context,
            "warning",
            f"{sensor}: registered model {name!r} is declared by no unit: its versions are not "
            "gated or promoted (declare a model unit for it, or ignore this)",
            model=name,
            event="undeclared",
        )
        undeclared.record(name)
        seen.add(name)
    state[UNDECLARED_STATE] = sorted(seen & names)


def registry_sensor(
    name: str,
    watches: Callable[[], Sequence[ModelWatch]],
    client: Callable[[], Any],
    jobs: Sequence[Any],
    *,
    known: Callable[[str, str], bool] = lambda unit, version: False,
    undeclared: Undeclared | None = None,
    minimum_interval_seconds: int = 30,
    default_status: dg.DefaultSensorStatus = dg.DefaultSensorStatus.RUNNING,
    principal: str | None = None,
) -> dg.SensorDefinition:
    """A registry sensor; `client()` returns an MlflowClient, `known(unit, version)` says the
    platform already built that version as a candidate; with `undeclared`, registered models no
    unit declares are named in the notes and recorded once."""
    tick = registry_tick(
        name, principal or default_principal(name), watches, client, known, undeclared
    )
    return durable_sensor(
        name,
        tick,
        jobs,
        description="New registered model versions and aliases set outside the platform request "
        "candidate runs (run key: model, version, alias).",
        minimum_interval_seconds=minimum_interval_seconds,
        default_status=default_status,
    )


def model_watches(platform: Platform) -> list[ModelWatch]:
    return [
        ModelWatch(model, u.name, promotion(platform, u, u.environments[0]), tuple(u.environments))
        for u in platform.units.values()
        if (model := u.registered_model_name())
        and getattr(u.policy, u.environments[0], "automatic") == "automatic"
    ]


def undeclared_models(platform: Platform, principal: str) -> Undeclared:
    """Registered models no unit of `platform` declares: recorded once each in the ledger
    (`model-undeclared`), whatever the sensor's state."""
    from ..events import ModelUndeclared, record

    def declared() -> set[str]:
        return {m for u in platform.units.values() if (m := u.registered_model_name())}

    def record_once(model: str) -> None:
        ledger = platform.ledger.ledger()
        if ledger.latest(
            action=ModelUndeclared.ACTION, predicate=lambda e: e.payload.get("model") == model
        ):
            return
        record(ledger, ModelUndeclared(model=model), principal=principal)

    return Undeclared(declared, record_once)


def ledger_knows(platform: Platform) -> Callable[[str, str], bool]:
    def known(unit: str, version: str) -> bool:
        ledger = platform.ledger.ledger()
        return (
            ledger.latest(
                unit=unit, action=Candidate.ACTION, predicate=lambda e: e.version == version
            )
            is not None
        )

    return known
