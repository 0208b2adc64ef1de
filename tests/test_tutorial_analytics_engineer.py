"""docs/tutorials/analytics-engineer.md, run as written (tests/tutorials.py), and what it claims."""

from pathlib import Path

import pytest

from tutorials import deployed, platform_remote, run_tutorial, ud_json

pytestmark = pytest.mark.e2e


def test_analytics_engineer(tmp_path: Path):
    import duckdb

    run_tutorial("analytics-engineer.md", tmp_path, PLATFORM_REMOTE=str(platform_remote(tmp_path / "platform")))
    root = tmp_path / "acme"
    state = deployed(root)["orders"]
    assert state["production"] and state["production"] == state["staging"]
    warehouse = ud_json(root, "info")["warehouse"]
    with duckdb.connect(warehouse, read_only=True) as con:
        columns = [r[0] for r in con.execute("describe production.orders").fetchall()]
        labels = {r[0] for r in con.execute("select distinct label from production.orders").fetchall()}
    assert "x1_x2" in columns  # the dbt-only change reached production
    assert labels == {0, 1}  # the refused change did not
