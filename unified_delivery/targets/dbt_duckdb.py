"""Data target: dbt on DuckDB with write-audit-publish (dbt_wap.py), the embedded default.

The warehouse is one DuckDB file, by default the embedded home's. DuckDB lets one process
write a file at a time, so connecting waits out another writer (dbt, a reader) for a while.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .. import dbt
from .dbt_wap import RELEASES, DbtWapTarget
from .probes import connect_duckdb, duckdb_path

__all__ = ["RELEASES", "DbtDuckDBTarget"]  # RELEASES: readers and tests name the release schema


class DbtDuckDBTarget(DbtWapTarget):
    warehouse: str = ""  # path to the DuckDB file; empty: the embedded home's warehouse
    probe_kind = "dbt_duckdb"

    def _probe_fields(self, unit) -> dict[str, Any]:
        return {"warehouse": self.warehouse}

    def path(self) -> Path:
        return duckdb_path(self.warehouse)

    def connect(self, read_only: bool = False):
        return connect_duckdb(self.path(), read_only)

    def profile(self, profile: str, schema: str) -> str:
        return dbt.parse_profiles(profile, str(self.path()), schema)

    def location(self) -> str:
        return str(self.path())

    def _dbt_lock(self, unit, schema: str) -> Path:
        # One dbt process may write the file at a time, whatever the unit or schema: another
        # would fail on DuckDB's own file lock instead of waiting.
        path = self.path()
        path.parent.mkdir(parents=True, exist_ok=True)
        return path.with_name(path.name + ".dbt.lock")

    def _exists(self) -> bool:
        return self.path().exists()

    def _deployments_ddl(self) -> list[str]:
        return [
            f"CREATE SEQUENCE IF NOT EXISTS {RELEASES}.deploy_seq",
            f"""CREATE TABLE IF NOT EXISTS {RELEASES}.deployments (
            seq BIGINT DEFAULT nextval('{RELEASES}.deploy_seq'), unit VARCHAR, env VARCHAR,
            version VARCHAR, previous_version VARCHAR, models VARCHAR, deployed_at VARCHAR,
            action VARCHAR)""",
        ]

    def _frame(self, con, sql: str):
        return con.execute(sql).df()
