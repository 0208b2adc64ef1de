"""Data target: dbt on DuckDB with write-audit-publish.

Write: `dbt build` of the selection (tests excluded) into an audit schema of its own,
`ud_audit_<unit>_<version>`. Audit: the gates run there (`dbt test` is `run_tests`).
Publish: each published model is copied once into an immutable release table
`ud_releases."<model>__<version>"`; then, in one transaction, the environment's views
(`"<env>"."<model>"`) are pointed at those tables and the deployment is recorded. Readers
see the old product or the new one, never a half-built one; rollback re-points the views.
dbt runs through dagster-dbt's DbtCliResource, imported when used.
"""

from __future__ import annotations

import contextlib
import io
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .. import dbt
from ..errors import TargetError, UDError
from ..home import Home
from .base import Artifact, Deployment, DeployTarget, Health, Log, _quiet

RELEASES = "ud_releases"


def q(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


def _now() -> str:
    return datetime.now(timezone.utc).isoformat()


class DbtDuckDBTarget(DeployTarget):
    warehouse: str = ""  # path to the DuckDB file; empty: the embedded home's warehouse

    def path(self) -> Path:
        return Path(self.warehouse) if self.warehouse else Home.current().warehouse

    def connect(self, read_only: bool = False):
        import duckdb

        path = self.path()
        path.parent.mkdir(parents=True, exist_ok=True)
        for attempt in range(60):  # another process (dbt, a reader) may hold the file for a moment
            try:
                return duckdb.connect(str(path), read_only=read_only and path.exists())
            except duckdb.IOException as exc:
                if "lock" not in str(exc).lower() or attempt == 59:
                    raise
                time.sleep(0.5)

    def audit_schema(self, unit, version: str) -> str:
        return f"ud_audit_{unit.name}_{version}"

    # -- write and audit -------------------------------------------------------------------
    def _dbt(self, unit, schema: str, args: list[str], log: Log):
        from dagster_dbt import DbtCliResource

        project = Path(unit.project)
        profile = dbt.project_file(project).get("profile", "default")
        work = Home.current().builds / unit.name / schema
        (work / "profiles").mkdir(parents=True, exist_ok=True)
        (work / "profiles" / "profiles.yml").write_text(dbt.parse_profiles(profile, str(self.path()), schema))
        cli = DbtCliResource(project_dir=str(project), profiles_dir=str(work / "profiles"), target="ud",
                              dbt_executable=dbt.dbt_executable())
        log(f"dbt {' '.join(args)} into {schema}")
        inv = cli.cli([*args, "--select", unit.select], raise_on_error=False, target_path=work / "target",
                      manifest=project / "target" / "manifest.json")
        with contextlib.redirect_stdout(io.StringIO()) as out:  # dagster-dbt echoes dbt's log to stdout
            inv.wait()
        (work / "dbt.log").write_text(out.getvalue())
        results = inv.get_artifact("run_results.json") if (work / "target" / "run_results.json").exists() else {"results": []}
        return inv, results

    def write(self, unit, version: str, *, models: list[str], log: Log = _quiet) -> Artifact:
        schema = self.audit_schema(unit, version)
        inv, results = self._dbt(unit, schema, ["build", "--exclude-resource-type", "test"], log)
        failed = [r for r in results.get("results", []) if r["status"] in ("error", "fail")]
        if not inv.is_successful() or failed:
            detail = "; ".join(f"{r['unique_id']}: {(r.get('message') or '')[:200]}" for r in failed[:3])
            raise UDError("UD-DATA-BUILD-FAILED", f"unit {unit.name}: dbt build into {schema} failed: {detail or 'see dbt log'}",
                          "fix the dbt models; nothing was published", exit_code=5)
        return Artifact(unit=unit.name, kind="data", version=version, digest=f"dbt-selection:{version}", location=schema,
                        details={"schema": schema, "models": models, "warehouse": str(self.path()),
                                 "change_created_at": _now(),
                                 "rows": {m: self._count(schema, m) for m in models}})

    def run_tests(self, unit, artifact: Artifact, log: Log = _quiet) -> list[dict[str, Any]]:
        _, results = self._dbt(unit, artifact.location, ["test"], log)
        return [{"name": r["unique_id"].split(".")[-2] if r["unique_id"].count(".") >= 3 else r["unique_id"],
                 "unique_id": r["unique_id"], "status": r["status"], "failures": r.get("failures"),
                 "message": r.get("message")} for r in results.get("results", [])]

    def _count(self, schema: str, table: str) -> int:
        con = self.connect(read_only=True)
        try:
            return int(con.execute(f"SELECT count(*) FROM {q(schema)}.{q(table)}").fetchone()[0])
        finally:
            con.close()

    # -- publish ---------------------------------------------------------------------------
    def _ensure_tables(self, con) -> None:
        con.execute(f"CREATE SCHEMA IF NOT EXISTS {RELEASES}")
        con.execute(f"CREATE SEQUENCE IF NOT EXISTS {RELEASES}.deploy_seq")
        con.execute(f"""CREATE TABLE IF NOT EXISTS {RELEASES}.deployments (
            seq BIGINT DEFAULT nextval('{RELEASES}.deploy_seq'), unit VARCHAR, env VARCHAR, version VARCHAR,
            previous_version VARCHAR, models VARCHAR, deployed_at VARCHAR, action VARCHAR)""")

    def _point(self, unit, env: str, version: str, models: list[str], previous: str | None, action: str) -> Deployment:
        at = _now()
        con = self.connect()
        try:
            self._ensure_tables(con)
            con.execute("BEGIN TRANSACTION")
            try:
                con.execute(f"CREATE SCHEMA IF NOT EXISTS {q(env)}")
                for m in models:
                    con.execute(f"CREATE OR REPLACE VIEW {q(env)}.{q(m)} AS SELECT * FROM {RELEASES}.{q(f'{m}__{version}')}")
                con.execute(f"INSERT INTO {RELEASES}.deployments (unit, env, version, previous_version, models, deployed_at, action) "
                            "VALUES (?, ?, ?, ?, ?, ?, ?)", [unit.name, env, version, previous, ",".join(models), at, action])
                con.execute("COMMIT")
            except Exception:
                con.execute("ROLLBACK")
                raise
        finally:
            con.close()
        return Deployment(unit=unit.name, env=env, version=version, deployed_at=at, previous_version=previous,
                          details={"schema": env, "models": models, "warehouse": str(self.path())})

    def deploy(self, unit, env: str, artifact: Artifact, log: Log = _quiet) -> Deployment:
        models = list(artifact.details.get("models") or [])
        current = self.status(unit, env)
        try:
            con = self.connect()
            try:
                self._ensure_tables(con)
                have = {r[0] for r in con.execute("SELECT table_name FROM information_schema.tables WHERE table_schema = ?",
                                                  [RELEASES]).fetchall()}
                for m in models:
                    release = f"{m}__{artifact.version}"
                    if release not in have:  # write once, from the audited schema; immutable afterwards
                        con.execute(f"CREATE TABLE {RELEASES}.{q(release)} AS SELECT * FROM {q(artifact.location)}.{q(m)}")
            finally:
                con.close()
            dep = self._point(unit, env, artifact.version, models, current.version if current else None, "deploy")
        except Exception as exc:
            raise TargetError("UD-TARGET-PUBLISH", f"publishing {unit.name} {artifact.version} to {env} failed: {exc}",
                              f"{env} still serves {current.version if current else 'nothing'}; check the audit schema "
                              f"{artifact.location}") from exc
        log(f"published {', '.join(models)} at {artifact.version} to schema {env}")
        return dep

    def _history(self, unit, env: str) -> list[tuple]:
        if not self.path().exists():
            return []
        con = self.connect(read_only=True)
        try:
            exists = con.execute("SELECT count(*) FROM information_schema.tables WHERE table_schema = ? AND table_name = 'deployments'",
                                 [RELEASES]).fetchone()[0]
            if not exists:
                return []
            return con.execute(f"SELECT version, previous_version, models, deployed_at, action FROM {RELEASES}.deployments "
                               "WHERE unit = ? AND env = ? ORDER BY seq DESC", [unit.name, env]).fetchall()
        finally:
            con.close()

    def status(self, unit, env: str) -> Deployment | None:
        rows = self._history(unit, env)
        if not rows:
            return None
        version, previous, models, at, action = rows[0]
        return Deployment(unit=unit.name, env=env, version=version, deployed_at=at, previous_version=previous,
                          details={"schema": env, "models": models.split(",") if models else [], "last_action": action,
                                   "warehouse": str(self.path())})

    def rollback(self, unit, env: str, to_version: str | None = None, log: Log = _quiet) -> Deployment:
        current = self.status(unit, env)
        if current is None:
            raise TargetError("UD-TARGET-NO-PREVIOUS", f"{unit.name} was never published to {env}", "nothing to roll back")
        target = to_version or current.previous_version
        if not target:
            raise TargetError("UD-TARGET-NO-PREVIOUS", f"{unit.name} in {env} has no previous version", "give --to VERSION")
        if target == current.version:
            raise TargetError("UD-TARGET-SAME-VERSION", f"{unit.name} in {env} already serves {target}", "give another --to VERSION")
        known = self.versions(unit, env)
        if target not in known:
            raise TargetError("UD-TARGET-NO-RELEASE", f"{unit.name} has no release {target}", f"known: {', '.join(known) or 'none'}")
        dep = self._point(unit, env, target, current.details["models"], current.version, "rollback")
        log(f"{unit.name} in {env} rolled back to {target}")
        return dep

    def health(self, unit, env: str) -> Health:
        dep = self.status(unit, env)
        if dep is None:
            return Health(False, f"nothing published to {env}")
        rows = {m: self._count(env, m) for m in dep.details["models"]}
        empty = [m for m, n in rows.items() if n == 0]
        return Health(not empty, f"{env} rows: " + ", ".join(f"{m}={n}" for m, n in rows.items()),
                      {"version": dep.version, "rows": rows})

    def versions(self, unit, env: str) -> list[str]:
        seen: list[str] = []
        for env_ in (env,):
            for version, *_ in self._history(unit, env_):
                if version not in seen:
                    seen.append(version)
        con = self.connect(read_only=True) if self.path().exists() else None
        if con is not None:
            try:
                for (name,) in con.execute("SELECT table_name FROM information_schema.tables WHERE table_schema = ?", [RELEASES]).fetchall():
                    if "__" in name and name != "deployments":
                        v = name.rsplit("__", 1)[1]
                        if v not in seen:
                            seen.append(v)
            finally:
                con.close()
        return seen

    def read(self, unit, env: str, table: str):
        con = self.connect(read_only=True)
        try:
            return con.execute(f"SELECT * FROM {q(env)}.{q(table)}").df()
        finally:
            con.close()

    def info(self) -> dict[str, Any]:
        return {"warehouse": str(self.path())}
