"""The data-quality gate's GX suite against the same checks as plain DuckDB SQL, same run.

    .venv/bin/python bench/gx_vs_sql.py [--rows 1000000] [--repeat 5]

Builds a customer_features-shaped table of --rows rows in a temporary DuckDB file, then
times, alternately, the reference unit's suite (dbt_project/models/schema.yml) through
the gate's `run_suite` and the same checks written by hand in SQL. The GX import is timed
once on its own; each timed GX run includes its ephemeral context, as the gate does.
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

# The reference suite's checks, as one would write them by hand: one scan for the row-level
# checks, one aggregate for uniqueness, and the failing values only for checks that fail.
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
SELECT coalesce(sum(n), 0) FROM (
  SELECT count(*) AS n FROM audit.customer_features WHERE customer_id IS NOT NULL
  GROUP BY customer_id HAVING count(*) > 1)
"""


def reference_expectations():
    from unified_delivery.gates.data_quality import Expectation

    doc = yaml.safe_load((ROOT / "dbt_project" / "models" / "schema.yml").read_text())
    model = next(m for m in doc["models"] if m["name"] == "customer_features")
    gate = next(g for g in model["meta"]["ud"]["gates"] if g["type"] == "data-quality")
    return [Expectation(**e) for e in gate["settings"]["expectations"]]


def plain_sql(path: str) -> dict:
    con = duckdb.connect(path, read_only=True)
    try:
        cur = con.execute(SQL_CHECKS)
        counts = dict(zip([d[0] for d in cur.description], cur.fetchone()))
        counts["customer_id_duplicates"] = con.execute(SQL_UNIQUE).fetchone()[0]
    finally:
        con.close()
    return counts


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    from unified_delivery.gates.data_quality import run_suite

    expectations = reference_expectations()
    with tempfile.TemporaryDirectory(prefix="ud-bench-") as tmp:
        path = str(Path(tmp) / "warehouse.duckdb")
        con = duckdb.connect(path)
        con.execute(TABLE_SQL.format(rows=args.rows))
        con.close()

        started = time.perf_counter()
        import great_expectations  # noqa: F401

        gx_import = time.perf_counter() - started
        conn = (f"duckdb:///{path}", {"connect_args": {"read_only": True}})
        run_suite(conn, "audit", "customer_features", expectations, 5, "warmup")  # first-use caches
        gx_times, sql_times = [], []
        for _ in range(args.repeat):
            t = time.perf_counter()
            results = run_suite(conn, "audit", "customer_features", expectations, 5, "bench")
            gx_times.append(time.perf_counter() - t)
            t = time.perf_counter()
            counts = plain_sql(path)
            sql_times.append(time.perf_counter() - t)
        assert all(r["passed"] for r in results), results
        assert counts["rows"] == args.rows and not any(v for k, v in counts.items() if k != "rows"), counts
    gx, sql = statistics.median(gx_times), statistics.median(sql_times)
    print(f"rows={args.rows} expectations={len(expectations)} repeat={args.repeat}")
    print(f"great_expectations import: {gx_import:.2f} s (once per process)")
    print(f"GX suite (median): {gx:.3f} s   runs: {', '.join(f'{t:.3f}' for t in gx_times)}")
    print(f"plain SQL (median): {sql:.3f} s   runs: {', '.join(f'{t:.3f}' for t in sql_times)}")
    print(f"ratio GX / SQL: {gx / sql:.1f}x")


if __name__ == "__main__":
    main()
