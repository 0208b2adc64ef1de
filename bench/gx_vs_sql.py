"""The data-quality gate's GX suite against the same checks as plain DuckDB SQL, same run.

    .venv/bin/python bench/gx_vs_sql.py [--rows 1000000] [--repeat 7]

Builds a customer_features-shaped table of --rows rows in a temporary DuckDB file, then
times, alternately, the reference unit's suite (dbt_project/models/schema.yml) through the
gate's `run_suite` and the same checks written by hand as SQL, each on a fresh connection
as the gate has. A second pair adds a uniqueness check of customer_id to both. The GX
import is timed once on its own; each GX run includes its ephemeral context, as in the gate.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import duckdb
import yaml

ROOT = Path(__file__).resolve().parents[1]

TABLE_SQL = """
CREATE SCHEMA audit;
CREATE TABLE audit.customer_features AS
SELECT i AS customer_id,
       ['north', 'south', 'east', 'west'][1 + i % 4] AS region,
       ['basic', 'plus', 'pro'][1 + i % 3] AS plan,
       ['18-25', '26-40', '41-60', '60+'][1 + i % 4] AS age_band,
       CAST(61 + i % 2000 AS INTEGER) AS tenure_days,
       CAST(i % 17 AS INTEGER) AS order_count,
       CAST((i % 17) * 42.5 AS DOUBLE) AS total_spend,
       CAST(CASE WHEN i % 17 = 0 THEN 0 ELSE 42.5 END AS DOUBLE) AS avg_order_value,
       CAST(1 + i % 60 AS INTEGER) AS days_since_last_order,
       CAST(i % 3 = 0 AS INTEGER) AS churned
FROM range({rows}) AS t(i)
"""

# The reference suite's checks as one would write them by hand: one scan.
SQL_CHECKS = """
SELECT count(*) AS rows,
       count(*) FILTER (WHERE customer_id IS NULL) AS customer_id_null,
       count(*) FILTER (WHERE region NOT IN ('north', 'south', 'east', 'west')) AS region_not_in_set,
       count(*) FILTER (WHERE plan NOT IN ('basic', 'plus', 'pro')) AS plan_not_in_set,
       count(*) FILTER (WHERE tenure_days < 0) AS tenure_days_negative,
       count(*) FILTER (WHERE order_count < 0) AS order_count_negative,
       count(*) FILTER (WHERE total_spend < 0) AS total_spend_negative,
       count(*) FILTER (WHERE avg_order_value < 0) AS avg_order_value_negative,
       count(*) FILTER (WHERE NOT tenure_days >= days_since_last_order) AS tenure_below_days_since,
       count(*) FILTER (WHERE churned NOT IN (0, 1)) AS churned_not_in_set
FROM audit.customer_features
"""
SQL_UNIQUE = """
SELECT coalesce(sum(n), 0) AS customer_id_duplicates FROM (
  SELECT count(*) AS n FROM audit.customer_features WHERE customer_id IS NOT NULL
  GROUP BY customer_id HAVING count(*) > 1)
"""


def reference_expectations() -> list:
    from unified_delivery.gates.data_quality import Expectation

    doc = yaml.safe_load((ROOT / "dbt_project" / "models" / "schema.yml").read_text())
    model = next(m for m in doc["models"] if m["name"] == "customer_features")
    gate = next(g for g in model["meta"]["ud"]["gates"] if g["type"] == "data-quality")
    return [Expectation(**e) for e in gate["settings"]["expectations"]]


def plain_sql(path: str, queries: list[str]) -> dict:
    con = duckdb.connect(path, read_only=True)
    try:
        counts: dict = {}
        for sql in queries:
            cur = con.execute(sql)
            counts.update(zip([d[0] for d in cur.description], cur.fetchone()))
    finally:
        con.close()
    return counts


def compare(path: str, expectations: list, queries: list[str], repeat: int, rows: int) -> tuple[list[float], list[float]]:
    from unified_delivery.gates.data_quality import run_suite

    conn = (f"duckdb:///{path}", {"connect_args": {"read_only": True}})
    gx_times, sql_times = [], []
    for _ in range(repeat):
        t = time.perf_counter()
        results = run_suite(conn, "audit", "customer_features", expectations, 5, "bench")
        gx_times.append(time.perf_counter() - t)
        t = time.perf_counter()
        counts = plain_sql(path, queries)
        sql_times.append(time.perf_counter() - t)
        assert all(r["passed"] for r in results), results
        assert counts["rows"] == rows and not any(v for k, v in counts.items() if k != "rows"), counts
    return gx_times, sql_times


def report(label: str, n: int, gx_times: list[float], sql_times: list[float]) -> None:
    gx, sql = statistics.median(gx_times), statistics.median(sql_times)
    print(f"{label} ({n} expectations):")
    print(f"  GX        median {gx:.3f} s  min {min(gx_times):.3f} s")
    print(f"  plain SQL median {sql:.3f} s  min {min(sql_times):.3f} s")
    print(f"  ratio GX / SQL: {gx / sql:.1f}x (median), {min(gx_times) / min(sql_times):.1f}x (min)")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    from unified_delivery.gates.data_quality import Expectation, run_suite

    suite = reference_expectations()
    unique = [*suite, Expectation(type="expect_column_values_to_be_unique", column="customer_id")]
    with tempfile.TemporaryDirectory(prefix="ud-bench-") as tmp:
        path = str(Path(tmp) / "warehouse.duckdb")
        con = duckdb.connect(path)
        con.execute(TABLE_SQL.format(rows=args.rows))
        con.close()
        started = time.perf_counter()
        import great_expectations  # noqa: F401

        gx_import = time.perf_counter() - started
        run_suite((f"duckdb:///{path}", {"connect_args": {"read_only": True}}), "audit", "customer_features",
                  suite, 5, "warmup")  # first use fills GX's caches
        first = compare(path, suite, [SQL_CHECKS], args.repeat, args.rows)
        second = compare(path, unique, [SQL_CHECKS, SQL_UNIQUE], args.repeat, args.rows)
    print(f"rows={args.rows} repeat={args.repeat}; great_expectations import {gx_import:.2f} s (once per process)")
    report("reference suite", len(suite), *first)
    report("reference suite + expect_column_values_to_be_unique(customer_id)", len(unique), *second)


if __name__ == "__main__":
    main()
