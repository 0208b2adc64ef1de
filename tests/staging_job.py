"""A staging promotion job as the platform makes one, for sensor tests: a candidate asset per
unit (its op `<unit>__candidate` takes the ref to build) in one job, `ud_promote_staging`, and
each unit's promotion selecting its own candidate."""

import dagster as dg

from unified_delivery.promotions import Promotion, job_name


class Ref(dg.Config):
    ref: str


def promotion_of(unit: str) -> Promotion:
    return Promotion(unit, "staging", (dg.AssetKey([unit, "candidate"]),), ())


def candidate(unit: str) -> dg.AssetsDefinition:
    @dg.asset(key=dg.AssetKey([unit, "candidate"]))
    def built(config: Ref) -> str:
        return config.ref

    return built


def staging_defs(units, sensors=lambda jobs: []) -> dg.Definitions:
    """The units' candidates, their staging job and the sensors `sensors(jobs)` makes for it."""
    job = dg.define_asset_job(job_name("staging"), selection=[dg.AssetKey([u, "candidate"]) for u in units])
    return dg.Definitions(assets=[candidate(u) for u in units], jobs=[job], sensors=sensors([job]))
