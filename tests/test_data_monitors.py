"""The data monitor after deploy, end to end: real dbt building into DuckDB through the
write-audit-publish target, the health sensor ticking on a real Dagster instance. A version
whose row count stays close to the previous one soaks without a rollback; one that lost 60 % of
the rows breaks `max_row_change`, is recorded as a `monitor-breach` with the row counts and is
rolled back to the previous version's release tables. Freshness is judged on the newest value
of a column, and a column that does not exist is named (UD-MONITOR-FRESHNESS-COLUMN)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import dagster as dg
import pytest

from unified_delivery import DataUnit, Platform
from unified_delivery.kinds.data.unit import VarSpec
from unified_delivery.errors import ConfigError, UDError
from unified_delivery.events import MonitorBreach, Promotion, record
from unified_delivery.governance.policy import Governance, PolicyFile, Principal
from unified_delivery.home import Home
from unified_delivery.ledger import LedgerResource
from unified_delivery.soak import MonitorSpec
from unified_delivery.targets.base import Artifact
from unified_delivery.targets.dbt_duckdb import DbtDuckDBTarget
from unified_delivery.triggers.health import health_sensor
from unified_delivery.triggers.tick import tick

SENSORS = "service:sensors"
MODEL = """select i as event_id,
       current_timestamp - to_minutes(cast(i as bigint)) as updated_at,
       timestamp '2020-01-01 00:00:00' as loaded_at
from range({{ var('rows', 100) }}) as t(i)
"""


@dataclass
class World:
    platform: Platform
    defs: dg.Definitions
    home: Home
    unit: DataUnit
    target: DbtDuckDBTarget
    project: Path
    built: dict[str, Artifact] = field(default_factory=dict)

    def build(self, version: str, rows: int | None = None) -> Artifact:
        """Build the events with real dbt into the version's audit schema (`rows`: the var)."""
        artifact = self.target.write(self.unit, version, models=["events"], dbt_vars={"rows": rows} if rows else None)
        self.built[version] = artifact
        return artifact

    def publish(self, artifact: Artifact) -> None:
        """Publish to production and record the promotion as the engine does."""
        version = artifact.version
        self.target.deploy(self.unit, "production", artifact)
        record(self.platform.ledger.ledger(), Promotion(team="data", kind="data"), principal="service:test",
               unit="events", env="production", version=version)

    def health_tick(self) -> list[tuple[str, str]]:
        (entry,) = tick(self.defs, self.home)["sensors"]
        assert entry["error"] is None, entry
        return [(r["job"], r["outcome"]) for r in entry["requested"]]

    def production(self) -> str:
        dep = self.target.status(self.unit, "production")
        assert dep is not None
        return dep.version


def unit_with(project: Path, **monitor) -> DataUnit:
    return DataUnit(name="events", team="data", project=str(project), select="events",
                    environments=("production",), vars={"rows": VarSpec(type="integer", min=1)},
                    monitor=MonitorSpec(**monitor))


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Iterator[World]:
    root = tmp_path_factory.mktemp("data-monitor")
    home = root / "home"
    project = root / "project"
    (project / "models").mkdir(parents=True)
    (project / "dbt_project.yml").write_text(
        "name: events\nversion: '1.0.0'\nconfig-version: 2\nprofile: events\nmodel-paths: [models]\n"
        "models:\n  events:\n    +materialized: table\n")
    (project / "models" / "events.sql").write_text(MODEL)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("UD_HOME", str(home))
        for var in ("UD_MLFLOW_TRACKING_URI", "UD_WAREHOUSE", "UD_LEDGER_URL"):
            mp.delenv(var, raising=False)
        Home(home).ensure()
        unit = unit_with(project, soak="1h", min_rows=10, max_row_change=0.2,
                         freshness_column="updated_at", max_age="1h")
        target = DbtDuckDBTarget(warehouse=str(root / "warehouse.duckdb"))
        governance = Governance(PolicyFile(principals={SENSORS: Principal(roles={"*": ["deploy"]})}))
        platform = Platform([unit], targets={"data": target}, governance=governance,
                            ledger=LedgerResource(url=f"sqlite:///{home / 'ledger.db'}"))
        base = platform.definitions()
        jobs = {j.name: j for j in base.jobs}
        defs = dg.Definitions.merge(base, dg.Definitions(
            sensors=[health_sensor(platform, [jobs["ud_rollback"]], name="health", principal=SENSORS)]))
        yield World(platform, defs, Home(home), unit, target, project)


def test_a_small_change_soaks_and_a_row_count_drop_rolls_back_with_the_counts(world: World):
    first = world.build("v1")
    world.publish(first)
    # v2: a rebuild whose output did not change (dbt's build of v1, published as v2: a dbt build
    # costs 10-20 s here): the same rows, within max_row_change, fresh.
    world.publish(Artifact(unit="events", kind="data", version="v2", location=first.location,
                           details=first.details))
    health = world.target.health(world.unit, "production")
    seen = health.details["monitor"]
    assert health.healthy and not seen["breached"], health
    assert (seen["rows"], seen["previous_rows"], seen["row_change"]) == (100, 100, 0.0)
    assert seen["age_s"] < 3600 and "in soak until" in health.message
    assert world.health_tick() == []

    world.publish(world.build("v3", rows=40))  # 60 % fewer rows than v2
    assert world.health_tick() == [("ud_rollback", "success")]
    assert world.production() == "v2"
    ledger = world.platform.ledger.ledger()
    (breach,) = ledger.entries(unit="events", env="production", action=MonitorBreach.ACTION)
    event = MonitorBreach.read(breach)
    assert breach.version == "v3" and event.rollback_to == "v2"
    assert (event.evidence["rows"], event.evidence["previous_rows"]) == (40, 100)
    assert "a 60.0% change, above max_row_change 20.0%" in event.message
    rollback = ledger.latest(unit="events", env="production", action="rollback")
    assert rollback.version == "v2" and "monitor breach in soak of v3" in rollback.payload["reason"]

    # v2 again: where production was before the deploy that broke, not a new deploy (no soak of
    # its own); healthy, and nothing more is requested.
    health = world.target.health(world.unit, "production")
    assert health.healthy and "monitor" not in health.details, health
    assert world.health_tick() == []


def test_freshness_is_judged_on_the_newest_value_and_a_missing_column_is_named(world: World):
    # A deploy of its own (what a rollback reached does not soak): v1's build again, as v4.
    first = world.built.get("v1") or world.build("v1")
    world.publish(Artifact(unit="events", kind="data", version="v4", location=first.location, details=first.details))
    stale = unit_with(world.project, soak="1h", freshness_column="loaded_at", max_age="26h")
    health = world.target.health(stale, "production")
    assert not health.healthy and health.details["monitor"]["breached"]
    assert "events.loaded_at's newest value is" in health.message and "older than max_age 26h" in health.message

    missing = unit_with(world.project, soak="1h", freshness_column="nope", max_age="1h")
    with pytest.raises(UDError) as err:
        world.target.health(missing, "production")
    assert err.value.code == "UD-MONITOR-FRESHNESS-COLUMN" and "event_id, updated_at, loaded_at" in err.value.remediation


def test_a_data_monitor_that_checks_nothing_or_a_model_bound_is_refused(tmp_path):
    project = tmp_path / "p"
    cases = [({"soak": "1h"}, "it checks nothing"),
             ({"min_samples": 5, "min_rows": 1}, "min_samples watch a model"),
             ({"freshness_column": "updated_at", "min_rows": 1}, "freshness_column and max_age go together")]
    for monitor, says in cases:
        with pytest.raises(ConfigError) as err:
            Platform([unit_with(project, **monitor)], targets={"data": DbtDuckDBTarget(warehouse=str(tmp_path / "w"))})
        assert err.value.code == "UD-CONFIG-MONITOR" and says in err.value.message, err.value
