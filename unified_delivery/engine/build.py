"""The candidate step: build (or pick up) the version a unit's first environment would get."""

from __future__ import annotations

from dataclasses import asdict
from typing import TYPE_CHECKING, Any

import dagster as dg

from ..cost import Usage, measure
from ..errors import UDError
from ..events import BuildFailed, Candidate, record
from ..home import Home
from ..kinds.base import BuildContext
from ..units import CANDIDATE
from .steps import failure, metadata_value, principal_of

if TYPE_CHECKING:
    from ..platform import Platform
    from ..units import Unit


def priced(platform: Platform, usage: Usage) -> dict[str, Any]:
    """Usage and, with a price table, its cost: the ledger fields showback sums."""
    out: dict[str, Any] = {"usage": usage.to_dict()}
    if platform.costs is not None:
        out["cost"] = {
            "amount": round(platform.costs.run_cost(usage), 6),
            "currency": platform.costs.currency,
        }
    return out


def build_candidate(context: Any, platform: Platform, unit: Unit, ref: str) -> dg.MaterializeResult:
    ledger = context.resources.ledger.ledger()
    principal = principal_of(context, platform, unit=unit.name)
    run_id = context.run.run_id
    ctx = BuildContext(
        home=Home.current(),
        target=platform.target(unit, unit.environments[0]),
        targets=platform.targets,
        units=platform.units,
        config={"ref": ref},
        trainer=platform.trainers.get(unit.name),
        log=context.log.info,
        principal=principal,
        run_id=context.run.run_id,
        registry=platform.registry,
    )
    try:
        with measure() as measured:
            artifact = platform.translator(unit).build_candidate(unit, ctx)
    except UDError as exc:
        record(
            ledger,
            BuildFailed(code=exc.code, message=exc.message, run_id=run_id),
            principal=principal,
            unit=unit.name,
            env=CANDIDATE,
        )
        raise failure(exc, context) from None
    record(
        ledger,
        Candidate(
            artifact=asdict(artifact),
            run_id=run_id,
            team=unit.team,
            kind=unit.kind,
            **priced(platform, measured["usage"]),
        ),
        principal=principal,
        unit=unit.name,
        env=CANDIDATE,
        version=artifact.version,
    )
    return dg.MaterializeResult(
        metadata={
            "version": artifact.version,
            "digest": artifact.digest,
            "location": artifact.location,
            **{k: metadata_value(v) for k, v in artifact.details.items() if k != "holdout_path"},
        },
        data_version=dg.DataVersion(artifact.version),
    )
