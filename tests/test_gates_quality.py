"""The data-quality gate: a GX suite on a real DuckDB audit table, and its load-time checks
against the columns the reference dbt project documents."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import pytest

from unified_delivery.errors import ConfigError, UDError
from unified_delivery.gates import GateContext, build_gate
from unified_delivery.gates.data_quality import EXPECTATIONS, run_suite
from unified_delivery.home import Home
from unified_delivery.loader import load_yaml_unit
from unified_delivery.targets.base import Artifact
from unified_delivery.targets.dbt_duckdb import DbtDuckDBTarget
from unified_delivery.kinds.data.unit import DataUnit
from unified_delivery.units import GateSpec

REPO = Path(__file__).resolve().parents[1]
SCHEMA = "ud_audit_customer_features_v1"
SUITE = [
    {"type": "expect_column_values_to_not_be_null", "column": "customer_id"},
    {"type": "expect_column_values_to_be_between", "column": "tenure_days", "min_value": 0},
    {"type": "expect_column_values_to_be_in_set", "column": "region", "value_set": ["north", "south", "east", "west"]},
    {"type": "expect_table_row_count_to_be_between", "min_value": 1},
]


def unit_with(settings: dict) -> DataUnit:
    return DataUnit(name="customer_features", team="analytics", project=str(REPO / "dbt_project"),
                    select="+customer_features", gates=[GateSpec(type="data-quality", settings=settings)])


def gate_for(settings: dict):
    unit = unit_with(settings)
    return unit, build_gate(unit.gates[0], unit)


@pytest.fixture
def warehouse(tmp_path: Path) -> Path:
    path = tmp_path / "warehouse.duckdb"
    con = duckdb.connect(str(path))
    con.execute(f"CREATE SCHEMA {SCHEMA}")
    con.execute(f"""CREATE TABLE {SCHEMA}.customer_features AS
        SELECT i AS customer_id, ['north', 'south', 'east', 'west'][1 + i % 4] AS region,
               CAST(30 + i AS INTEGER) AS tenure_days FROM range(200) AS t(i)""")
    con.close()
    return path


def evaluate(gate, unit, path: Path):
    artifact = Artifact(unit=unit.name, kind="data", version="v1", location=SCHEMA, details={"warehouse": str(path)})
    ctx = GateContext(unit=unit, stage="candidate", guards="staging", version="v1", artifact=artifact,
                      target=DbtDuckDBTarget(warehouse=str(path)), home=Home(path.parent / "home"), log=lambda _: None)
    return gate.evaluate(ctx)


def test_suite_passes_on_good_data(warehouse: Path):
    unit, gate = gate_for({"expectations": SUITE})
    result = evaluate(gate, unit, warehouse)
    assert result.passed, result.message
    assert result.code == "UD-GATE-DQ-PASSED"
    assert result.metadata["expectations"] == 4 and result.metadata["failed"] == 0
    between = result.metadata["results"][1]
    assert between == {"expectation": "expect_column_values_to_be_between", "columns": ["tenure_days"], "passed": True,
                       "unexpected_count": 0, "unexpected_percent": 0.0, "failing_values": []}
    assert result.metadata["results"][3]["observed_value"] == 200
    # The gate leaves no connection behind: the deploy that follows opens the file read-write.
    duckdb.connect(str(warehouse)).close()


def test_bad_rows_refuse_with_counts_and_values(warehouse: Path):
    con = duckdb.connect(str(warehouse))
    con.execute(f"INSERT INTO {SCHEMA}.customer_features VALUES (1000, 'mars', -5), (1001, 'venus', 10), (NULL, 'north', 1)")
    con.close()
    unit, gate = gate_for({"expectations": SUITE, "failing_values": 3})
    result = evaluate(gate, unit, warehouse)
    assert not result.passed
    assert result.code == "UD-GATE-DQ-FAILED"
    by_type = {r["expectation"]: r for r in result.metadata["results"]}
    region = by_type["expect_column_values_to_be_in_set"]
    assert not region["passed"] and region["unexpected_count"] == 2
    assert sorted(region["failing_values"]) == ["mars", "venus"]
    assert region["unexpected_percent"] == pytest.approx(100 * 2 / 203, abs=1e-3)
    tenure = by_type["expect_column_values_to_be_between"]
    assert tenure["unexpected_count"] == 1 and tenure["failing_values"] == [-5]
    assert by_type["expect_column_values_to_not_be_null"]["unexpected_count"] == 1
    assert by_type["expect_table_row_count_to_be_between"]["passed"]
    assert result.metadata["failed"] == 3
    assert "3 of 4 expectations failed" in result.message and "region" in result.message


def test_mostly_lets_a_share_of_rows_fail(warehouse: Path):
    con = duckdb.connect(str(warehouse))
    con.execute(f"INSERT INTO {SCHEMA}.customer_features VALUES (1000, 'mars', 1)")
    con.close()
    unit, gate = gate_for({"expectations": [{"type": "expect_column_values_to_be_in_set", "column": "region",
                                             "value_set": ["north", "south", "east", "west"], "mostly": 0.99}]})
    result = evaluate(gate, unit, warehouse)
    assert result.passed, result.message
    assert result.metadata["results"][0]["unexpected_count"] == 1


def test_a_table_missing_from_the_candidate_is_an_error_not_a_pass(warehouse: Path):
    con = duckdb.connect(str(warehouse))
    con.execute(f"DROP TABLE {SCHEMA}.customer_features")
    con.close()
    unit, gate = gate_for({"expectations": SUITE})
    with pytest.raises(UDError) as err:
        evaluate(gate, unit, warehouse)
    assert err.value.code == "UD-GATE-DQ-ERROR"


def test_every_supported_expectation_runs_on_duckdb(warehouse: Path):
    """The static list is what the gate accepts without importing GX: each entry must be a
    GX expectation with those arguments, and must run as SQL on DuckDB."""
    import great_expectations as gx

    args = {"column": "customer_id", "column_A": "tenure_days", "column_B": "customer_id",
            "value_set": [0, 1], "column_list": ["customer_id", "region"], "column_set": ["customer_id"],
            "value": 200, "min_value": 0}
    suite = []
    for name, (single, required, optional) in EXPECTATIONS.items():
        cls = getattr(gx.expectations, "".join(p.capitalize() for p in name.split("_")))
        assert set((*single, *required, *optional)) <= set(cls.__fields__), name
        kwargs = {a: args[a] for a in (*single, *required)}
        if "min_value" in optional:
            kwargs["min_value"] = 0
        if name == "expect_column_value_lengths_to_be_between":
            kwargs["column"] = "region"  # lengths of text
        suite.append({"type": name, **kwargs})
    unit, gate = gate_for({"expectations": suite})
    results = run_suite((f"duckdb:///{warehouse}", {"connect_args": {"read_only": True}}), SCHEMA,
                        "customer_features", gate.settings.expectations, 3, "all")
    assert [r for r in results if r.get("error")] == []
    assert len(results) == len(EXPECTATIONS)


@pytest.mark.parametrize("expectation, field, words", [
    ({"type": "expect_column_values_to_not_be_null", "column": "customer_idd"}, "settings.expectations[0].column",
     "'customer_idd' is not a column of customer_features"),
    ({"type": "expect_column_pair_values_a_to_be_greater_than_b", "column_A": "tenure_days", "column_B": "age"},
     "settings.expectations[0].column_B", "'age' is not a column"),
    ({"type": "expect_compound_columns_to_be_unique", "column_list": ["customer_id", "nope"]},
     "settings.expectations[0].column_list", "'nope' is not a column"),
    ({"type": "expect_column_values_to_be_purple", "column": "region"}, "settings.expectations[0].type",
     "not a supported expectation type"),
    ({"type": "expect_column_values_to_be_in_set", "column": "region"}, "settings.expectations[0].value_set",
     "needs `value_set`"),
    ({"type": "expect_column_values_to_be_between", "column": "tenure_days", "minimum": 0},
     "settings.expectations[0].minimum", "is not an argument"),
])
def test_load_refuses_what_cannot_run(expectation: dict, field: str, words: str):
    with pytest.raises(ConfigError) as err:
        gate_for({"expectations": [expectation]})
    assert err.value.code == "UD-CONFIG-GATE"
    assert "unit customer_features" in err.value.message and f"field {field}" in err.value.message
    assert words in err.value.message


def test_load_refuses_a_table_outside_the_selection_and_an_empty_suite():
    with pytest.raises(ConfigError) as err:
        gate_for({"table": "nowhere", "expectations": SUITE})
    assert "field settings.table" in err.value.message and "customer_features" in err.value.remediation
    with pytest.raises(ConfigError) as err:
        gate_for({"expectations": []})
    assert "settings.expectations" in err.value.message


def test_reference_unit_has_dbt_tests_and_data_quality():
    unit = load_yaml_unit(REPO / "assets" / "units" / "customer_features" / "defs.yaml")
    types = [g.type for g in unit.gates]
    assert "dbt-tests" in types and "data-quality" in types
    spec = next(g for g in unit.gates if g.type == "data-quality")
    build_gate(spec, unit)  # the reference suite passes the load-time checks


@pytest.fixture(scope="module")
def postgres():
    from tests.pg import start_or_skip

    server = start_or_skip()
    try:
        yield server
    finally:
        server.stop()


def test_the_same_suite_runs_on_postgres(postgres, monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    import psycopg2

    from tests.pg import USER
    from unified_delivery.targets.dbt_postgres import DbtPostgresTarget

    database = postgres.create_database("dq")
    con = psycopg2.connect(host="127.0.0.1", port=postgres.port, user=USER, password=postgres.password, dbname=database)
    con.autocommit = True
    con.cursor().execute(f"""CREATE SCHEMA {SCHEMA};
        CREATE TABLE {SCHEMA}.customer_features AS
        SELECT i AS customer_id, (ARRAY['north', 'south', 'east', 'west'])[1 + i % 4] AS region,
               30 + i AS tenure_days FROM generate_series(0, 199) AS i""")
    monkeypatch.setenv("UD_TEST_DQ_PASSWORD", postgres.password)
    target = DbtPostgresTarget(host="127.0.0.1", port=postgres.port, user=USER, database=database,
                               password_env="UD_TEST_DQ_PASSWORD")
    unit, gate = gate_for({"expectations": SUITE})
    artifact = Artifact(unit=unit.name, kind="data", version="v1", location=SCHEMA, details={})
    ctx = GateContext(unit=unit, stage="candidate", guards="staging", version="v1", artifact=artifact,
                      target=target, home=Home(tmp_path / "home"), log=lambda _: None)
    passed = gate.evaluate(ctx)
    assert passed.passed, passed.message
    con.cursor().execute(f"INSERT INTO {SCHEMA}.customer_features VALUES (1000, 'mars', -1)")
    con.close()
    failed = gate.evaluate(ctx)
    assert failed.code == "UD-GATE-DQ-FAILED"
    by_type = {r["expectation"]: r for r in failed.metadata["results"]}
    assert by_type["expect_column_values_to_be_in_set"]["failing_values"] == ["mars"]
    assert by_type["expect_column_values_to_be_between"]["failing_values"] == [-1]
    assert postgres.password not in json.dumps(failed.to_dict())
