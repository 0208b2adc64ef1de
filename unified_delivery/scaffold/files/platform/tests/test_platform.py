"""The platform as a whole: its definitions load, every unit has gates, a budget and a
policy, and every unit's promotions are in their environments' jobs. Runs in seconds; promotions are `make demo`'s job."""

import dagster as dg
import pytest

from assets.definitions import defs, platform


def test_definitions_load():
    assert isinstance(defs, dg.Definitions)
    defs.resolve_all_job_defs()


@pytest.mark.parametrize("name", sorted(platform.units))
def test_every_unit_is_governed(name):
    unit = platform.units[name]
    assert platform.gates[name], f"{name} has no gates"
    assert unit.budget.per_month is not None, f"{name} has no monthly budget"
    for env in unit.environments:
        job = defs.resolve_job_def(f"ud_promote_{env}")  # one job per environment, for all units
        assert dg.AssetKey([name, env]) in job.asset_layer.selected_asset_keys
