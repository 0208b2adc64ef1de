"""Data target: dbt on Postgres with write-audit-publish (dbt_wap.py), for shared use.

The password is never part of the configuration: `password_env` names the environment
variable that holds it, read when a connection opens, and the dbt profile refers to the
same variable (`env_var(...)`), so it is on no disk, in no log and in no artifact.
"""

from __future__ import annotations

import os

import yaml
from pydantic import Field

from ..errors import TargetError
from .dbt_wap import RELEASES, DbtWapTarget, q


class DbtPostgresTarget(DbtWapTarget):
    host: str = Field(default="localhost", description="Postgres host")
    port: int = Field(default=5432, description="Postgres port")
    user: str = Field(default="ud", description="role dbt and the publisher connect as")
    database: str = Field(
        default="warehouse",
        description="database holding the audit, release and environment schemas",
    )
    password_env: str = Field(
        default="UD_WAREHOUSE_PASSWORD",
        description="name of the environment variable holding the password (empty: none)",
    )

    def _password(self) -> str | None:
        if not self.password_env:
            return None
        value = os.environ.get(self.password_env)
        if value is None:
            raise TargetError(
                "UD-TARGET-WAREHOUSE-PASSWORD",
                f"the warehouse password variable {self.password_env} is not set",
                f"export {self.password_env} in the environment of ud and the Dagster runs",
            )
        return value

    def connect(self, read_only: bool = False):
        import psycopg2

        con = psycopg2.connect(
            host=self.host,
            port=self.port,
            user=self.user,
            password=self._password(),
            dbname=self.database,
            application_name="unified-delivery",
        )
        con.autocommit = True  # transactions are explicit BEGIN/COMMIT, as on DuckDB
        return con

    def sqlalchemy_url(self) -> str:
        """For the data-quality gate (GX through SQLAlchemy)."""
        import sqlalchemy as sa

        return sa.URL.create(
            "postgresql+psycopg2",
            username=self.user,
            password=self._password(),
            host=self.host,
            port=self.port,
            database=self.database,
        ).render_as_string(hide_password=False)

    def profile(self, profile: str, schema: str) -> str:
        self._password()  # refuse early, before dbt starts, when it is missing
        output = {
            "type": "postgres",
            "host": self.host,
            "port": self.port,
            "user": self.user,
            "password": "{{ env_var('%s') }}" % self.password_env if self.password_env else "",
            "dbname": self.database,
            "schema": schema,
            "threads": 1,
        }
        return yaml.safe_dump({profile: {"target": "ud", "outputs": {"ud": output}}})

    def location(self) -> str:
        return f"postgresql://{self.user}@{self.host}:{self.port}/{self.database}"

    def _exec(self, con, sql: str, params: list | tuple = ()):
        cur = con.cursor()
        cur.execute(sql.replace("?", "%s"), tuple(params))  # the shared SQL has no literal `?`
        return cur

    def _replace_view(self, con, env: str, model: str, release: str) -> None:
        # CREATE OR REPLACE VIEW cannot drop or reorder columns on Postgres; a rollback may have to.
        # Both statements run inside the publish transaction, so readers never see the gap.
        self._exec(con, f"DROP VIEW IF EXISTS {q(env)}.{q(model)}")
        self._exec(con, f"CREATE VIEW {q(env)}.{q(model)} AS SELECT * FROM {RELEASES}.{q(release)}")

    def _view_sql(self, con, schema: str) -> list[tuple[str, str | None]]:
        # information_schema shows a view's SQL to its owner only; pg_views to every reader.
        return self._exec(
            con, "SELECT viewname, definition FROM pg_views WHERE schemaname = ?", [schema]
        ).fetchall()

    def _frame(self, con, sql: str):
        import pandas as pd

        cur = self._exec(con, sql)
        columns = [d.name for d in cur.description]
        # pandas' SequenceNotStr protocol spells list.index unlike typeshed: a list is refused.
        return pd.DataFrame(cur.fetchall(), columns=columns)  # pyright: ignore[reportArgumentType]
