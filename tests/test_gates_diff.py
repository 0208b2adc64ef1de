"""The data-diff gate (gates/data_diff.py) on a real DuckDB warehouse: the audited candidate
against the table the guarded environment publishes, by key."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from unified_delivery.errors import UDError
from unified_delivery.gates import build_gate
from unified_delivery.gates.base import GateContext
from unified_delivery.home import Home
from unified_delivery.kinds.data.unit import DataUnit
from unified_delivery.targets.base import Artifact
from unified_delivery.targets.dbt_duckdb import DbtDuckDBTarget
from unified_delivery.units import GateSpec

REPO = Path(__file__).resolve().parents[1]
AUDIT = "ud_audit_customer_features_v2"
ROWS = """SELECT i AS customer_id, ['north', 'south'][1 + i % 2] AS region,
                 CAST(30 + i AS INTEGER) AS tenure_days FROM range(100) AS t(i)"""


class Published(DbtDuckDBTarget):
    """The DuckDB target, answering that staging publishes something: the warehouse's
    `staging.customer_features` (its own deployments table is not what this test is about)."""

    def status(self, unit, env):
        from unified_delivery.targets.base import Deployment

        return Deployment(unit=unit.name, env=env, version="v1", deployed_at="") if env == "staging" else None


def run(tmp_path: Path, candidate_sql: str, settings: dict, *, published: bool = True):
    path = tmp_path / "w.duckdb"
    con = duckdb.connect(str(path))
    con.execute("CREATE SCHEMA staging")
    con.execute(f"CREATE SCHEMA {AUDIT}")
    con.execute(f"CREATE TABLE staging.customer_features AS {ROWS}")
    con.execute(f"CREATE TABLE {AUDIT}.customer_features AS {candidate_sql}")
    con.close()
    unit = DataUnit(name="customer_features", team="analytics", project=str(REPO / "dbt_project"),
                    select="+customer_features", gates=[GateSpec(type="data-diff", settings=settings)])
    gate = build_gate(unit.gates[0], unit)
    target = (Published if published else DbtDuckDBTarget)(warehouse=str(path))
    artifact = Artifact(unit=unit.name, kind="data", version="v2", location=AUDIT, details={"warehouse": str(path)})
    ctx = GateContext(unit=unit, stage="candidate", guards="staging", version="v2", artifact=artifact,
                      target=target, home=Home(tmp_path / "home"), log=lambda _: None)
    return gate.evaluate(ctx)


def test_an_unchanged_candidate_passes_with_a_zero_diff(tmp_path):
    result = run(tmp_path, ROWS, {"key": ["customer_id"], "max_changed": 0})
    assert result.passed and result.code == "UD-GATE-DIFF-OK"
    m = result.metadata
    assert (m["added"], m["removed"], m["changed"], m["published_rows"]) == (0, 0, 0, 100)
    assert m["column_change"] == {"region": 0.0, "tenure_days": 0.0}


def test_added_removed_and_changed_rows_are_counted_and_refused_over_the_limits(tmp_path):
    # 10 rows gone (90..99), 5 new (100..104), tenure changed on every 4th row, a new column.
    candidate = """SELECT i AS customer_id, ['north', 'south'][1 + i % 2] AS region,
                          CAST(30 + i + CASE WHEN i % 4 = 0 THEN 1 ELSE 0 END AS INTEGER) AS tenure_days,
                          i * 2 AS score
                   FROM range(105) AS t(i) WHERE i < 90 OR i >= 100"""
    result = run(tmp_path, candidate, {"key": ["customer_id"], "max_removed": 0.05,
                                       "max_column_change": {"tenure_days": 0.1, "region": 0.0}})
    m = result.metadata
    assert (m["added"], m["removed"], m["changed"]) == (5, 10, 23)  # i % 4 == 0 below 90: 23 rows
    assert m["column_change"]["region"] == 0.0 and m["column_change"]["tenure_days"] == round(23 / 90, 6)
    assert m["columns_added"] == ["score"] and m["columns_removed"] == []
    assert not result.passed and result.code == "UD-GATE-DIFF-EXCEEDED"
    assert m["exceeded"] == ["removed 10.0% > 5.0%", "tenure_days changed in 25.6% of rows > 10.0%"]
    assert "5 added, 10 removed, 23 changed of 100 rows" in result.message


def test_without_thresholds_it_reports_only(tmp_path):
    result = run(tmp_path, "SELECT * FROM staging.customer_features WHERE customer_id < 50", {"key": ["customer_id"]})
    assert result.passed and result.metadata["removed"] == 50


def test_a_first_publish_has_nothing_to_diff(tmp_path):
    result = run(tmp_path, ROWS, {"key": ["customer_id"], "max_changed": 0}, published=False)
    assert result.passed and result.metadata["published"] is False


@pytest.mark.parametrize("settings, says", [
    ({"key": ["nope"]}, "no key column 'nope'"),
    ({"key": ["region"]}, "is not unique"),
    ({"key": ["customer_id"], "max_rows": 10}, "more than the gate's max_rows"),
])
def test_a_diff_that_cannot_be_made_is_an_error_not_a_pass(tmp_path, settings, says):
    with pytest.raises(UDError) as info:
        run(tmp_path, ROWS, settings)
    assert info.value.code == "UD-GATE-DIFF-ERROR" and says in info.value.message


def test_thresholds_are_checked_when_the_unit_loads():
    from unified_delivery.errors import ConfigError

    with pytest.raises(ConfigError) as info:
        unit = DataUnit(name="customer_features", team="analytics", project=str(REPO / "dbt_project"),
                        select="+customer_features",
                        gates=[GateSpec(type="data-diff", settings={"key": [], "max_changed": 2})])
        build_gate(unit.gates[0], unit)
    assert info.value.code == "UD-CONFIG-GATE"
