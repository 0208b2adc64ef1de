"""One promotion job per environment name, for all units; the unit is chosen when the run is
launched, by asset selection (`ud promote`, the sensors, `dagster job launch`, the UI's
"materialize selected").

A promotion of unit U to environment E selects what a job of its own would hold: U/candidate
and U/E with the candidate's gate checks when E comes first (build, gate, deploy), or else the
gate checks of U's previous stage (run again) and U/E. Two jobs instead of one per unit and
environment: a job costs its resolution and a snapshot of its run-config schema at every
load of the code location (docs/performance.md, issue 17).
"""

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import dagster as dg

from .run_tags import ENV_TAG, UNIT_TAG
from .targets.kubernetes import dagster_k8s_tags
from .units import CANDIDATE, Unit

if TYPE_CHECKING:
    from .platform import Platform

JOB_PREFIX = "ud_promote_"


def job_name(env: str) -> str:
    """The job that promotes any unit to `env`."""
    return f"{JOB_PREFIX}{env}"


def is_promotion_job(job: str) -> bool:
    return job.startswith(JOB_PREFIX)


def key(unit: str, stage: str) -> dg.AssetKey:
    return dg.AssetKey([unit, stage])


@dataclass(frozen=True)
class Promotion:
    """A run of `env`'s job that promotes `unit`: the assets and checks it selects, and the
    tags its run carries besides who and why."""

    unit: str
    env: str
    assets: tuple[dg.AssetKey, ...]
    checks: tuple[dg.AssetCheckKey, ...]
    # The Kubernetes sizing of a build run: K8sRunLauncher sizes a run's pod from run tags.
    sizing: Mapping[str, object] = field(default_factory=dict, compare=False, hash=False)

    @property
    def job(self) -> str:
        return job_name(self.env)

    def tags(self) -> dict[str, str]:
        """Run tags are strings: a structured value (dagster-k8s/config) as JSON, as Dagster
        writes a job's tags onto its runs."""
        sized = {k: v if isinstance(v, str) else json.dumps(v) for k, v in self.sizing.items()}
        return {**sized, UNIT_TAG: self.unit, ENV_TAG: self.env}


def gate_names(platform: "Platform", unit: Unit, stage: str) -> list[str]:
    """The unit's gates on `stage`: its checks, each guarding what comes after it."""
    return sorted(g.name for g in platform.gates[unit.name] if g.spec.stage == stage)


def promotion(platform: "Platform", unit: Unit, env: str) -> Promotion:
    upstream = unit.previous_stage(env)
    checks = tuple(
        dg.AssetCheckKey(key(unit.name, upstream), g) for g in gate_names(platform, unit, upstream)
    )
    if upstream == CANDIDATE:  # build, gate, deploy
        assets = (key(unit.name, CANDIDATE), key(unit.name, env))
        return Promotion(unit.name, env, assets, checks, dagster_k8s_tags(unit))
    # re-run the gates on the upstream environment, then deploy what it runs
    return Promotion(unit.name, env, (key(unit.name, env),), checks)


def environment_jobs(platform: "Platform") -> list:
    """A job per environment name any unit declares, over every unit's promotion to it. Each is
    resolved once, against the whole code location: linear in the number of units."""
    by_env: dict[str, list[Promotion]] = {}
    for name in platform.order():
        unit = platform.units[name]
        for env in unit.environments:
            by_env.setdefault(env, []).append(promotion(platform, unit, env))
    return [
        dg.define_asset_job(
            job_name(env),
            selection=dg.AssetSelection.assets(*(a for p in ps for a in p.assets)).without_checks()
            | dg.AssetSelection.checks(*(c for p in ps for c in p.checks)),
            description=f"Promote a unit to {env}: launch it with the unit's assets and checks "
            "selected (`ud promote UNIT --to ENV` does).",
        )
        for env, ps in by_env.items()
    ]
