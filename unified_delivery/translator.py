"""Units into Dagster definitions: one asset per unit x stage, one blocking check per gate,
one promotion job per environment (promotions.py), and one rollback job. What runs inside them is
the engine's (engine/); what is particular to a kind, its translator's (kinds/<kind>/)."""

from typing import TYPE_CHECKING, TypedDict

import dagster as dg
import pydantic

from . import engine
from .engine.preview import PreviewConfig, TeardownConfig, preview_step, teardown_step
from .engine.promote import promote as promote_step
from .engine.rollback import rollback as rollback_step
from .gates import Gate
from .promotions import environment_jobs, gate_names, key
from .reports.scorecard import scorecard_asset
from .targets.kubernetes import dagster_k8s_tags
from .units import CANDIDATE, Unit

if TYPE_CHECKING:
    from .platform import Platform


class CandidateConfig(dg.Config):
    ref: str = pydantic.Field(
        default="",
        description="app: a commit or branch (default: the unit's branch); "
        "model: an existing registered version (default: train a new one); data: unused",
    )


class RollbackConfig(dg.Config):
    unit: str
    env: str
    to_version: str = ""
    reason: str


# A promotion's steps run one after another (build, gates, deploy); a process per step (the
# default for runs the UI or the daemon launch) only adds start-up and imports: ~30 s a run.
STEPS_IN_ONE_PROCESS = dg.in_process_executor


def _resource_keys(platform: "Platform", unit: Unit) -> set[str]:
    """The ledger and the targets of the unit's environments (each target is a resource)."""
    return {"ledger", *platform.targets.keys_for(unit)}


class _Common(TypedDict):
    """What every stage asset of a unit shares."""

    group_name: str
    kinds: set[str] | None
    owners: list[str]
    required_resource_keys: set[str]
    tags: dict[str, str]


def stage_assets(platform: "Platform", unit: Unit) -> list[dg.AssetsDefinition]:
    translator = platform.translator(unit)
    dagster_kinds = set(platform.kind(unit).dagster_kinds) or None  # the tags the UI shows
    common: _Common = {
        "group_name": unit.name,
        "kinds": dagster_kinds,
        "owners": [f"team:{unit.team}"],
        "required_resource_keys": _resource_keys(platform, unit),
        "tags": {"ud/kind": unit.kind},
    }

    @dg.asset(
        key=key(unit.name, CANDIDATE),
        deps=[key(u, s) for u, s in translator.candidate_deps(unit, platform.units)],
        description=f"{unit.name} ({unit.kind}) built, not yet deployed.",
        op_tags=dagster_k8s_tags(unit),
        **common,
    )
    def candidate(
        context: dg.AssetExecutionContext, config: CandidateConfig
    ) -> dg.MaterializeResult:
        return engine.build_candidate(context, platform, unit, config.ref)

    assets: list[dg.AssetsDefinition] = [candidate]
    for env in unit.environments:
        deps = [
            key(unit.name, unit.previous_stage(env)),
            *[key(u, s) for u, s in translator.env_deps(unit, env, platform.units)],
        ]

        assets.append(_env_asset(platform, unit, env, deps, common))
    return assets


def guarding(platform: "Platform", unit: Unit, env: str) -> list[str]:
    """The gates that guard `env`: the checks of the stage before it."""
    return gate_names(platform, unit, unit.previous_stage(env))


def guarded_by(platform: "Platform", unit: Unit, env: str) -> str:
    """What the UI's stage asset says of its gates: they are the checks of the stage before it
    (a blocking check guards what comes after the asset it checks)."""
    upstream = unit.previous_stage(env)
    names = guarding(platform, unit, env)
    if not names:
        return f"No gate guards {env}."
    return (
        f"Guarded by {len(names)} gate(s): {', '.join(names)}; they are the checks of "
        f"{unit.name}/{upstream}, run before every deploy to {env}."
    )


def _env_asset(
    platform: "Platform", unit: Unit, env: str, deps: list, common: _Common
) -> dg.AssetsDefinition:
    @dg.asset(
        key=key(unit.name, env),
        deps=deps,
        description=f"{unit.name} as deployed to {env}. {guarded_by(platform, unit, env)}",
        metadata={"ud/guarded_by": ", ".join(guarding(platform, unit, env))},
        **common,
    )
    def deployed(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
        return promote_step(context, platform, unit, env)

    return deployed


def gate_check(platform: "Platform", unit: Unit, gate: Gate) -> dg.AssetChecksDefinition:
    @dg.asset_check(
        asset=key(unit.name, gate.spec.stage),
        name=gate.name,
        blocking=True,
        required_resource_keys=_resource_keys(platform, unit),
        description=f"{gate.family} gate: guards {unit.name}'s promotion from {gate.spec.stage}.",
        metadata={"ud/family": gate.family, "ud/type": gate.type},
    )
    def check(context: dg.AssetCheckExecutionContext) -> dg.AssetCheckResult:
        return engine.run_gate(context, platform, unit, gate)

    return check


def rollback_job(platform: "Platform") -> dg.JobDefinition:
    @dg.op(required_resource_keys={"ledger", *platform.targets.resources()})
    def rollback_unit(context: dg.OpExecutionContext, config: RollbackConfig):
        unit = engine.unit_named(context, platform, config.unit)
        done = rollback_step(
            context, platform, unit, config.env, config.to_version or None, config.reason
        )
        yield dg.AssetMaterialization(
            asset_key=key(unit.name, config.env),
            description=f"rollback: {config.reason}",
            metadata={**done.metadata(), "reason": config.reason},
        )
        yield dg.Output(done.deployment.version)

    @dg.job(
        name="ud_rollback",
        executor_def=STEPS_IN_ONE_PROCESS,
        description="Roll a unit back in one environment through its target.",
    )
    def job():
        rollback_unit()

    return job


PREVIEW_JOB = "ud_preview"
PREVIEW_TEARDOWN_JOB = "ud_preview_teardown"


def preview_job(platform: "Platform") -> dg.JobDefinition:
    """Build, gate and deploy a branch's commit into its preview environment (the Git sensor
    requests it for pushes to branches other than a unit's own; its runs carry ud/preview)."""

    @dg.op(required_resource_keys={"ledger", *platform.targets.resources()})
    def preview_unit(context: dg.OpExecutionContext, config: PreviewConfig):
        metadata = preview_step(context, platform, config)
        context.add_output_metadata(metadata)
        return metadata["where"]

    @dg.job(
        name=PREVIEW_JOB,
        executor_def=STEPS_IN_ONE_PROCESS,
        description="Deploy a branch's commit of a unit to its preview environment.",
    )
    def job():
        preview_unit()

    return job


def preview_teardown_job(platform: "Platform") -> dg.JobDefinition:
    """Remove a branch's preview (its branch deleted or merged, or its time to live over)."""

    @dg.op(required_resource_keys={"ledger", *platform.targets.resources()})
    def tear_down_preview(context: dg.OpExecutionContext, config: TeardownConfig):
        metadata = teardown_step(context, platform, config)
        context.add_output_metadata(metadata)
        return metadata["env"]

    @dg.job(
        name=PREVIEW_TEARDOWN_JOB,
        executor_def=STEPS_IN_ONE_PROCESS,
        description="Remove a branch's preview environment of a unit.",
    )
    def job():
        tear_down_preview()

    return job


def platform_defs(platform: "Platform") -> dg.Definitions:
    assets, checks = [], []
    for name in platform.order():
        unit = platform.units[name]
        assets += stage_assets(platform, unit)
        checks += [gate_check(platform, unit, g) for g in platform.gates[name]]
    jobs: list = [*environment_jobs(platform), rollback_job(platform)]
    if any(u.git_source() for u in platform.units.values()):
        jobs += [preview_job(platform), preview_teardown_job(platform)]
    assets.append(scorecard_asset(platform))
    return dg.Definitions(
        assets=assets,
        asset_checks=checks,
        jobs=jobs,
        resources=platform.resources(),
        executor=STEPS_IN_ONE_PROCESS,
    )
