"""Cascade sensor: a new production version of a data unit requests retraining of the models
that train on it. The retrained candidate goes through its gates like any other: they are
blocking checks in the same run, so a model that got worse on the new data stops there.

Stateless: a model whose newest candidate was not trained on the data unit's production
version is due; run key: model, data unit and data version.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence

import dagster as dg

from ..events import Candidate
from ..promotions import promotion
from .base import Requester, note, request_sensor, runs_with_key

if TYPE_CHECKING:
    from ..platform import Platform


def cascade_requests(
    sensor: str, who: Requester, platform: Platform, context: Any
) -> list[dg.RunRequest]:
    ledger = platform.ledger.ledger()
    requests = []
    for name in platform.order():
        model = platform.units[name]
        source = model.retrains_on()
        if not source or getattr(model.policy, model.environments[0], "automatic") != "automatic":
            continue
        data = platform.units[source]
        try:
            dep = platform.target(data, data.environments[-1]).status(data, data.environments[-1])
        except Exception as exc:
            note(
                context,
                "error",
                f"{sensor}: {data.name}: status unavailable: {type(exc).__name__}: {exc}",
                event="error",
            )
            continue
        if dep is None:
            continue
        latest = ledger.latest(unit=name, action=Candidate.ACTION)
        trained_on = (
            (Candidate.read(latest).artifact.get("details") or {}).get("data_version")
            if latest
            else None
        )
        key = f"cascade:{name}:{data.name}@{dep.version}"
        if trained_on == dep.version or runs_with_key(context.instance, key):
            continue
        why = (
            f"{data.name} {dep.version[:12]} is in {data.environments[-1]}; {name} was trained on "
            f"{(trained_on or 'nothing')[:12]}"
        )
        note(context, "info", f"{sensor}: retraining {name}: {why}", unit=name, event="request")
        requests.append(
            who.promote(
                promotion(platform, model, model.environments[0]),
                run_key=key,
                reason=f"cascade: {why}",
            )
        )
    return requests


def cascade_sensor(
    platform: Platform,
    jobs: Sequence[Any],
    *,
    name: str = "ud_cascade",
    minimum_interval_seconds: int = 60,
    default_status: dg.DefaultSensorStatus = dg.DefaultSensorStatus.RUNNING,
    principal: str | None = None,
) -> dg.SensorDefinition:
    return request_sensor(
        name,
        lambda who, context: cascade_requests(name, who, platform, context),
        jobs,
        skip="every model is current",
        minimum_interval_seconds=minimum_interval_seconds,
        default_status=default_status,
        principal=principal,
        description=(
            "Retrains models when the data unit they train on has a new production version."
        ),
    )
