"""Data target: dbt with write-audit-publish, on any SQL warehouse.

Write: `dbt build` of the selection (tests excluded) into an audit schema of its own,
`ud_audit_<unit>_<version>`. Audit: the gates run there (`dbt test` is `run_tests`).
Publish: each published model is copied once into an immutable release table
`ud_releases."<model>__<version>"`; then, in one transaction, the environment's views
(`"<env>"."<model>"`) are pointed at those tables and the deployment is recorded. Readers
see the old product or the new one, never a half-built one; rollback re-points the views.

A warehouse is a subclass that says how to connect, the dbt profile, and the few
statements whose SQL differs (`_deployments_ddl`, `_replace_view`, `_frame`). dbt runs as
a child process (see `_dbt`).
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import tempfile
from abc import abstractmethod
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from .. import dbt, dbt_state, soak
from ..dbt_errors import build_failure, explain
from ..errors import TargetError, UDError
from ..home import Home
from ..redaction import redact_text
from .base import Artifact, BaseTarget, Deployment, Health, Log, _quiet
from .probes import DUCKDB_VIEWS, RELEASES, wap_history, wap_served, wap_status

if TYPE_CHECKING:
    import pandas as pd

    from ..kinds.data.unit import DataUnit

R = TypeVar("R")


class Connection(Protocol):
    """A warehouse's DB-API connection (DuckDB's, psycopg2's), as the shared code holds it:
    statements go through `_exec` and `_frame`, which each warehouse writes."""

    def close(self) -> None: ...


def q(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


PARTIAL_PARSE = "partial_parse.msgpack"
DBT_TIMEOUT_S = 3600  # a hung warehouse must not hold the promotion's lock forever


def _now() -> str:
    return datetime.now(UTC).isoformat()


def shown(text: str, limit: int, tail: bool = False) -> str:
    """dbt or warehouse output fit for an error message: secrets redacted, then cut to `limit`
    characters (a warehouse error may echo a value it read; the whole log stays in the work
    folder)."""
    text = redact_text(text).strip()
    if len(text) <= limit:
        return text
    return "..." + text[-limit:] if tail else text[:limit] + "..."


@dataclass(frozen=True)
class DbtRun:
    ok: bool  # dbt exited 0
    results: dict  # its run_results.json
    work: Path  # its work folder: removed when ok, kept with the log otherwise
    manifest: dict  # the manifest it wrote (with what it deferred), {} when it wrote none
    output: str  # what dbt printed


class DbtWapTarget(BaseTarget):
    """Write-audit-publish of dbt selections; one subclass per warehouse. The warehouse
    (roles.Warehouse) of the data units it publishes."""

    kinds = ("data",)

    # -- what differs per warehouse ----------------------------------------------------------
    @abstractmethod
    def connect(self, read_only: bool = False) -> Connection:
        """A DB-API connection in autocommit mode (transactions are explicit BEGIN/COMMIT)."""

    @abstractmethod
    def profile(self, profile: str, schema: str) -> str:
        """profiles.yml text with one target, `ud`, writing into `schema`."""

    @abstractmethod
    def location(self) -> str:
        """Where the warehouse is, for people: never a secret."""

    def _exists(self) -> bool:
        """Whether the warehouse can hold anything yet (a file-based one may not exist)."""
        return True

    def _exec(self, con, sql: str, params: list | tuple = ()):
        """Run one statement with `?` placeholders; returns something with fetchone/fetchall."""
        return con.execute(sql, list(params))

    def _deployments_ddl(self) -> list[str]:
        return [
            f"""CREATE TABLE IF NOT EXISTS {RELEASES}.deployments (
            seq BIGSERIAL, unit VARCHAR, env VARCHAR, version VARCHAR,
            previous_version VARCHAR, models VARCHAR, deployed_at VARCHAR, action VARCHAR)"""
        ]

    def _replace_view(self, con, env: str, model: str, release: str) -> None:
        self._exec(
            con,
            f"CREATE OR REPLACE VIEW {q(env)}.{q(model)} AS SELECT * FROM {RELEASES}.{q(release)}",
        )

    @abstractmethod
    def _frame(self, con, sql: str) -> pd.DataFrame:
        """The rows of a query as a pandas DataFrame."""

    # -- write and audit -------------------------------------------------------------------
    def audit_schema(self, unit: DataUnit, version: str) -> str:
        return f"ud_audit_{unit.name}_{version}"

    def _dbt_lock(self, unit: DataUnit, schema: str) -> Path:
        """The file a dbt call holds a lock on while it runs: two builds into one schema (two
        promotions of one version at once) take turns instead of dropping each other's tables."""
        return Home.current().locks / f"dbt.{unit.name}.{schema}.lock"

    @contextmanager
    def _turn(self, unit: DataUnit, schema: str, log: Log) -> Iterator[None]:
        path = self._dbt_lock(unit, schema)
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "w") as fh:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                log(f"waiting for another dbt run ({path.name})")
                fcntl.flock(fh, fcntl.LOCK_EX)  # dbt's own timeout bounds the wait
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def _dbt(
        self,
        unit: DataUnit,
        schema: str,
        args: list[str],
        log: Log,
        *,
        project: Path | None = None,
        select: list[str] | None = None,
        partial_parse: Path | None = None,
        keep_parse: Path | None = None,
    ) -> DbtRun:
        """dbt in a child process, its results read from its own target path. dbt itself, not
        dagster-dbt's DbtCliResource: the wrapper doubled the wall time of each call (11 s -> 30 s
        for a one-model build on this machine) and a promotion makes two calls.

        dbt runs in the project's shadow (dbt_shadow.py), never in the project. Every call has a
        work folder of its own under builds/<unit>/ (profiles, target path, dbt's logs), so
        concurrent calls share nothing. The folder is private to the home's owner (mkdtemp:
        0700), since dbt's log may echo what the warehouse returned; it is removed when dbt
        succeeds and kept, for its log, when it fails.

        `partial_parse`: a `partial_parse.msgpack` of an earlier call on the same shadow and
        profile, so dbt does not parse the project again; `keep_parse`: where to keep this
        call's."""
        source = Path(project or unit.project)
        shadow = dbt.shadow_of(source)
        profile = dbt.project_file(shadow).get("profile", "default")
        builds = Home.current().builds / unit.name
        builds.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix=f"{schema}.{args[0]}.", dir=builds))
        (work / "profiles").mkdir()
        (work / "profiles" / "profiles.yml").write_text(self.profile(profile, schema))
        target_path, log_path = work / "target", work / "logs"
        if partial_parse and partial_parse.exists():
            target_path.mkdir()
            shutil.copy2(partial_parse, target_path / PARTIAL_PARSE)
        log(f"dbt {args[0]} into {schema} in {work}")
        cmd = [
            dbt.dbt_executable(),
            *args,
            *(select if select is not None else ["--select", unit.select]),
            "--project-dir",
            str(shadow),
            "--profiles-dir",
            str(work / "profiles"),
            "--target",
            "ud",
            "--target-path",
            str(target_path),
            "--log-path",
            str(log_path),
        ]
        env = {**os.environ, "DBT_LOG_PATH": str(log_path), "DBT_TARGET_PATH": str(target_path)}
        with self._turn(unit, schema, log):
            proc = subprocess.run(
                cmd,
                cwd=work,
                capture_output=True,
                text=True,
                timeout=DBT_TIMEOUT_S,
                env=env,
                check=False,
            )
        output = proc.stdout + proc.stderr
        (work / "dbt.log").write_text(output)
        results = target_path / "run_results.json"
        if not results.exists():
            where = explain(output)
            raise UDError(
                "UD-DATA-DBT-DID-NOT-RUN",
                f"unit {unit.name}: dbt {args[0]} did not run: {shown(output, 600, tail=True)}",
                (f"fix {where}; " if where else "") + f"see {work / 'dbt.log'}",
                exit_code=5,
            )
        manifest_file = target_path / "manifest.json"
        run = DbtRun(
            ok=proc.returncode == 0,
            results=json.loads(results.read_text()),
            work=work,
            manifest=json.loads(manifest_file.read_text()) if manifest_file.exists() else {},
            output=output,
        )
        if keep_parse and (target_path / PARTIAL_PARSE).exists():
            keep_parse.mkdir(parents=True, exist_ok=True)
            shutil.copy2(target_path / PARTIAL_PARSE, keep_parse / PARTIAL_PARSE)
        if run.ok:
            shutil.rmtree(work, ignore_errors=True)
        else:
            log(f"dbt {args[0]} failed; its log is kept in {work}")
        return run

    # -- the production state a candidate is built against (dbt_state.py) -------------------
    def _states(self, unit: DataUnit) -> Path:
        return Home.current().root / "dbt-state" / unit.name

    def production_state(self, unit: DataUnit) -> Path | None:
        """The kept manifest folder of the version the unit's last environment serves."""
        pointer = self._states(unit) / "production"
        if not pointer.exists():
            return None
        folder = self._states(unit) / pointer.read_text().strip()
        return folder if (folder / dbt_state.STATE_FILE).exists() else None

    def _mark_production(self, unit: DataUnit, env: str, version: str) -> None:
        if env != unit.environments[-1]:
            return
        pointer = self._states(unit) / "production"
        if (self._states(unit) / version / dbt_state.STATE_FILE).exists():
            tmp = self._states(unit) / "production.tmp"
            tmp.write_text(version)
            tmp.replace(pointer)
        else:  # a version built with vars keeps no state: the next candidate is a full build
            pointer.unlink(missing_ok=True)

    def write(
        self,
        unit: DataUnit,
        version: str,
        *,
        models: list[str],
        log: Log = _quiet,
        dbt_vars: dict | None = None,
        project: Path | None = None,
    ) -> Artifact:
        """Build the selection into the version's audit schema, with what it reads: unselected
        parents built there too, or deferred to production's relations; with a production
        state, only what changed since it (dbt_state.py). `dbt_vars` must already be checked
        against the unit's declared vars (kinds/data/vars.py); they reach dbt as JSON, and a
        build with vars is a full one (dbt's state comparison does not see vars)."""
        source = Path(project or unit.project)
        schema = self.audit_schema(unit, version)
        manifest = dbt.ensure_manifest(source)
        selected = dbt.select(manifest, unit.select, source)
        state_dir = None if dbt_vars else self.production_state(unit)
        state = dbt.load_manifest(state_dir / dbt_state.STATE_FILE) if state_dir else None
        plan = dbt_state.plan(manifest, selected, state, state_dir)
        if plan.parents_built:
            log(f"building {len(plan.parents_built)} unselected parent(s) in {schema}")
        extra = ["--vars", json.dumps(dbt_vars)] if dbt_vars else []
        run = self._dbt(
            unit,
            schema,
            ["build", "--exclude-resource-type", "test", *extra],
            log,
            project=source,
            select=plan.args,
            keep_parse=self._states(unit) / version,
        )
        failed = [r for r in run.results.get("results", []) if r["status"] in ("error", "fail")]
        if not run.ok or failed:
            raise build_failure(unit, schema, run, failed, self.location())
        executed = {
            r["unique_id"] for r in run.results.get("results", []) if r["status"] == "success"
        }
        reused = [u for u in selected if u not in executed]
        deferred = [u for u in plan.parents_deferred if u not in executed]
        if reused:  # unchanged since production: the audit schema reads production's relation
            held = (state or {}).get("nodes", {})
            lost = [u for u in reused if u not in held]
            if lost:
                raise UDError(
                    "UD-DATA-BUILD-FAILED",
                    f"unit {unit.name}: dbt built neither {', '.join(lost[:3])} nor found it in "
                    "production's state",
                    f"see dbt's log: {run.work / 'dbt.log'}",
                    exit_code=5,
                )
            self._views_onto(schema, [(manifest["nodes"][u], held[u]) for u in reused])
        # A build with vars is no state to build others against: its relations hold the vars'.
        state_folder = (
            None
            if dbt_vars
            else dbt_state.write_state(
                self._states(unit) / version, dbt_state.kept(run.manifest, executed, state)
            )
        )
        log(
            f"built {len(executed)} node(s) in {schema}"
            + (f", reused {len(reused)} unchanged from production" if reused else "")
            + (f", deferred {len(deferred)} parent(s) to production's" if deferred else "")
        )
        return Artifact(
            unit=unit.name,
            kind="data",
            version=version,
            digest=f"dbt-selection:{version}",
            location=schema,
            details={
                "schema": schema,
                "models": models,
                "warehouse": self.location(),
                "vars": dbt_vars or {},
                "change_created_at": _now(),
                "rows": self._counts(schema, models),
                "project": str(source),
                "state": str(state_dir) if state_dir else None,
                "kept_state": str(state_folder or self._states(unit) / version),
                "built": sorted(executed),
                "reused": sorted(reused),
                "deferred": deferred,
                "slim": plan.slim,
            },
        )

    def _views_onto(self, schema: str, pairs: list[tuple[dict, dict]]) -> None:
        con = self.connect()
        try:
            self._exec(con, f"CREATE SCHEMA IF NOT EXISTS {q(schema)}")
            for node, old in pairs:
                name = node.get("alias") or node["name"]
                self._exec(
                    con,
                    f"CREATE OR REPLACE VIEW {q(schema)}.{q(name)} AS SELECT * FROM "
                    f"{old['relation_name']}",
                )
        finally:
            con.close()

    def run_tests(
        self, unit: DataUnit, artifact: Artifact, log: Log = _quiet
    ) -> list[dict[str, Any]]:
        """Every test touching the selection (dbt's eager indirect selection), including those
        spanning a selected model and another (built for them or deferred), in the audit schema,
        the others read where the build read them. Failing rows are stored
        (`--store-failures`) and a few of them returned with each failing test."""
        state = artifact.details.get("state")
        defer = ["--defer", "--state", state] if state and Path(state).exists() else []
        project = artifact.details.get("project")
        kept = artifact.details.get("kept_state")
        run = self._dbt(
            unit,
            artifact.location,
            ["test", "--store-failures", *defer],
            log,
            project=Path(project) if project else None,
            # the build's parse, on the same shadow and profile (none when it had vars)
            partial_parse=Path(kept) / PARTIAL_PARSE
            if kept and not artifact.details.get("vars")
            else None,
        )
        out = []
        for r in run.results.get("results", []):
            uid = r["unique_id"]
            entry = {
                "name": uid.split(".")[-2] if uid.count(".") >= 3 else uid,
                "unique_id": uid,
                "status": r["status"],
                "failures": r.get("failures"),
                "message": shown(r["message"], 600) if r.get("message") else r.get("message"),
            }
            node = run.manifest.get("nodes", {}).get(uid) or {}
            if r["status"] in ("fail", "warn") and node.get("relation_name"):
                entry["rows"] = self._failing_rows(node["relation_name"])
            out.append(entry)
        return out

    def _failing_rows(self, relation: str, limit: int = 5) -> list[dict[str, Any]]:
        con = self.connect(read_only=True)
        try:
            frame = self._frame(con, f"SELECT * FROM {relation} LIMIT {int(limit)}")
        finally:
            con.close()
        return json.loads(frame.to_json(orient="records", date_format="iso") or "[]")

    def _counts(self, schema: str, tables: list[str]) -> dict[str, int]:
        """Rows of each table, on one connection (a 300-model selection: one, not 300)."""
        con = self.connect(read_only=True)
        try:
            return {
                t: int(self._exec(con, f"SELECT count(*) FROM {q(schema)}.{q(t)}").fetchone()[0])
                for t in tables
            }
        finally:
            con.close()

    def _count(self, schema: str, table: str) -> int:
        con = self.connect(read_only=True)
        try:
            return int(
                self._exec(con, f"SELECT count(*) FROM {q(schema)}.{q(table)}").fetchone()[0]
            )
        finally:
            con.close()

    # -- publish ---------------------------------------------------------------------------
    def _ensure_tables(self, con) -> None:
        self._exec(con, f"CREATE SCHEMA IF NOT EXISTS {RELEASES}")
        for statement in self._deployments_ddl():
            self._exec(con, statement)

    def _point(
        self,
        unit: DataUnit,
        env: str,
        version: str,
        models: list[str],
        previous: str | None,
        action: str,
        at: str | None = None,
    ) -> Deployment:
        at = at or _now()
        con = self.connect()
        try:
            self._ensure_tables(con)
            self._exec(con, "BEGIN TRANSACTION")
            try:
                self._exec(con, f"CREATE SCHEMA IF NOT EXISTS {q(env)}")
                for m in models:
                    self._replace_view(con, env, m, f"{m}__{version}")
                self._exec(
                    con,
                    f"INSERT INTO {RELEASES}.deployments (unit, env, version, previous_version, "
                    "models, deployed_at, action) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    [unit.name, env, version, previous, ",".join(models), at, action],
                )
                self._exec(con, "COMMIT")
            except Exception:
                self._exec(con, "ROLLBACK")
                raise
        finally:
            con.close()
        self._mark_production(unit, env, version)
        return Deployment(
            unit=unit.name,
            env=env,
            version=version,
            deployed_at=at,
            previous_version=previous,
            details={"schema": env, "models": models, "warehouse": self.location()},
        )

    def _deploy(
        self, unit: DataUnit, env: str, artifact: Artifact, current: Deployment | None, log: Log
    ) -> Deployment:
        models = list(artifact.details.get("models") or [])
        try:
            con = self.connect()
            try:
                self._ensure_tables(con)
                have = {
                    r[0]
                    for r in self._exec(
                        con,
                        "SELECT table_name FROM information_schema.tables WHERE table_schema = ?",
                        [RELEASES],
                    ).fetchall()
                }
                for m in models:
                    release = f"{m}__{artifact.version}"
                    if (
                        release not in have
                    ):  # write once, from the audited schema; immutable afterwards
                        self._exec(
                            con,
                            f"CREATE TABLE {RELEASES}.{q(release)} AS SELECT * FROM "
                            f"{q(artifact.location)}.{q(m)}",
                        )
            finally:
                con.close()
            # Redeploying what runs keeps the rollback point instead of pointing it at itself.
            previous = (
                (
                    current.previous_version
                    if current.version == artifact.version
                    else current.version
                )
                if current
                else None
            )
            dep = self._point(unit, env, artifact.version, models, previous, "deploy")
        except Exception as exc:
            raise TargetError(
                "UD-TARGET-PUBLISH",
                f"publishing {unit.name} {artifact.version} to {env} failed: {exc}",
                f"{env} still serves {current.version if current else 'nothing'}; check the audit "
                f"schema {artifact.location}",
            ) from exc
        log(f"published {', '.join(models)} at {artifact.version} to schema {env}")
        return dep

    def remove(self, unit: DataUnit, env: str, log: Log = _quiet) -> list[str]:
        """Drop `env`'s schema and its deployment records, and the release tables and audit
        schema of its version when no other environment serves that version (roles.Removable:
        a preview's schema)."""
        if not self._exists():
            return []
        current = self.status(unit, env)
        if current is None:
            return []
        removed = []
        con = self.connect()
        try:
            self._exec(con, "BEGIN TRANSACTION")
            try:
                self._exec(con, f"DROP SCHEMA IF EXISTS {q(env)} CASCADE")
                removed.append(f"schema {env}")
                self._exec(
                    con,
                    f"DELETE FROM {RELEASES}.deployments WHERE unit = ? AND env = ?",
                    [unit.name, env],
                )
                elsewhere = self._exec(
                    con,
                    f"SELECT count(*) FROM {RELEASES}.deployments WHERE unit = ? AND version = ?",
                    [unit.name, current.version],
                ).fetchone()[0]
                if not elsewhere:
                    for m in current.details.get("models") or []:
                        release = f"{m}__{current.version}"
                        self._exec(con, f"DROP TABLE IF EXISTS {RELEASES}.{q(release)}")
                        removed.append(f"{RELEASES}.{release}")
                    audit = self.audit_schema(unit, current.version)
                    self._exec(con, f"DROP SCHEMA IF EXISTS {q(audit)} CASCADE")
                    removed.append(f"schema {audit}")
                self._exec(con, "COMMIT")
            except Exception:
                self._exec(con, "ROLLBACK")
                raise
        finally:
            con.close()
        log(f"{unit.name}/{env} removed: {', '.join(removed)}")
        return removed

    def _restore(self, unit: DataUnit, env: str, before: Deployment | None, log: Log) -> None:
        if before is None:
            super()._restore(unit, env, before, log)
            return
        models = before.details["models"]
        self._point(
            unit,
            env,
            before.version,
            models,
            before.previous_version,
            "restore",
            at=before.deployed_at,
        )

    def _history(self, unit: DataUnit, env: str) -> list[tuple]:
        return self._reading(lambda con: self._history_on(con, unit, env), [])

    def _reading(self, read: Callable[[Any], R], empty: R) -> R:
        """`read(con)` on one read-only connection; `empty` when the warehouse does not exist."""
        if not self._exists():
            return empty
        con = self.connect(read_only=True)
        try:
            return read(con)
        finally:
            con.close()

    def _history_on(self, con, unit: DataUnit, env: str) -> list[tuple]:
        return wap_history(lambda sql, params: self._exec(con, sql, params), unit.name, env)

    def status(self, unit: DataUnit, env: str) -> Deployment | None:
        """What the environment's views serve (probes.wap_status)."""

        def read(con) -> tuple[list[tuple], dict[str, str | None]]:
            rows = self._history_on(con, unit, env)
            models = rows[0][2] if rows else ""
            return rows, self._served(con, env, models.split(",") if models else [])

        rows, served = self._reading(read, ([], {}))
        return wap_status(unit.name, env, rows, served, self.location())

    def _served(self, con, env: str, models: list[str]) -> dict[str, str | None]:
        """The release version each model's view in `env` selects from (probes.wap_served)."""
        return wap_served(self._view_sql(con, env), models) if models else {}

    def _view_sql(self, con, schema: str) -> list[tuple[str, str | None]]:
        """(view name, its SQL) of every view in `schema`."""
        return self._exec(con, DUCKDB_VIEWS, [schema]).fetchall()

    def _rollback(
        self, unit: DataUnit, env: str, to_version: str | None, current: Deployment | None, log: Log
    ) -> Deployment:
        if current is None:
            raise TargetError(
                "UD-TARGET-NO-PREVIOUS",
                f"{unit.name} was never published to {env}",
                "nothing to roll back",
            )
        target = to_version or current.previous_version
        if not target:
            raise TargetError(
                "UD-TARGET-NO-PREVIOUS",
                f"{unit.name} in {env} has no previous version",
                "give --to VERSION",
            )
        if target == current.version:
            raise TargetError(
                "UD-TARGET-SAME-VERSION",
                f"{unit.name} in {env} already serves {target}",
                "give another --to VERSION",
            )
        known = self.versions(unit, env)
        if target not in known:
            raise TargetError(
                "UD-TARGET-NO-RELEASE",
                f"{unit.name} has no release {target}",
                f"known: {', '.join(known) or 'none'}",
            )
        rows = [
            r for r in self._history(unit, env) if r[0] == target
        ]  # the models *that* version published
        models = rows[0][2].split(",") if rows and rows[0][2] else current.details["models"]
        try:
            dep = self._point(unit, env, target, models, current.version, "rollback")
        except Exception as exc:
            raise TargetError(
                "UD-TARGET-PUBLISH",
                f"rolling {unit.name} in {env} back to {target} failed: {exc}",
                f"{env} still serves {current.version}",
            ) from exc
        log(f"{unit.name} in {env} rolled back to {target}")
        return dep

    def health(self, unit: DataUnit, env: str) -> Health:
        dep = self.status(unit, env)
        if dep is None:
            return Health(False, f"nothing published to {env}")
        rows = {m: self._count(env, m) for m in dep.details["models"]}
        empty = [m for m, n in rows.items() if n == 0]
        details: dict[str, Any] = {"version": dep.version, "rows": rows}
        text = f"{env} rows: " + ", ".join(f"{m}={n}" for m, n in rows.items())
        history = self._history(unit, env) if unit.monitor else []
        action = history[0][4] if history else "deploy"
        window = soak.window(unit, env, dep, action)
        if window is not None and window.active() and not empty:
            from ..kinds.data.monitor import check

            verdict = check(self, unit, window, dep)
            details["monitor"] = {"breached": verdict.breached, **verdict.evidence}
            text = f"{text}; monitor: {verdict.message}"
            if verdict.breached:
                return Health(False, f"{unit.name}/{env} {dep.version}: {verdict.message}", details)
        return Health(not empty, text, details)

    def table_facts(
        self, env: str, table: str, previous_version: str | None, freshness_column: str | None
    ) -> dict[str, Any]:
        """What a data monitor judges (kinds/data/monitor.py), on one read-only connection: the
        rows `env` publishes in `table`, the rows the previous version published, its columns
        and the newest value of `freshness_column`."""

        def read(con) -> dict[str, Any]:
            rows = int(self._exec(con, f"SELECT count(*) FROM {q(env)}.{q(table)}").fetchone()[0])
            columns = [
                r[0]
                for r in self._exec(
                    con,
                    "SELECT column_name FROM information_schema.columns "
                    "WHERE table_schema = ? AND table_name = ?",
                    [env, table],
                ).fetchall()
            ]
            previous = None
            if previous_version:
                release = f"{table}__{previous_version}"
                found = self._exec(
                    con,
                    "SELECT count(*) FROM information_schema.tables "
                    "WHERE table_schema = ? AND table_name = ?",
                    [RELEASES, release],
                ).fetchone()[0]
                if found:
                    sql = f"SELECT count(*) FROM {RELEASES}.{q(release)}"
                    previous = int(self._exec(con, sql).fetchone()[0])
            newest = None
            if freshness_column and freshness_column in columns:
                sql = f"SELECT max({q(freshness_column)}) FROM {q(env)}.{q(table)}"
                newest = self._exec(con, sql).fetchone()[0]
            return {"rows": rows, "previous_rows": previous, "columns": columns, "newest": newest}

        nothing = {"rows": 0, "previous_rows": None, "columns": [], "newest": None}
        return self._reading(read, nothing)

    def versions(self, unit: DataUnit, env: str) -> list[str]:
        """This unit's versions ever published in any of its environments (their release tables
        are kept), newest first."""
        seen: list[str] = []
        for env_ in getattr(unit, "environments", (env,)):
            for version, *_ in self._history(unit, env_):
                if version not in seen:
                    seen.append(version)
        return seen

    def read(self, unit: DataUnit, env: str, table: str) -> pd.DataFrame:
        con = self.connect(read_only=True)
        try:
            return self._frame(con, f"SELECT * FROM {q(env)}.{q(table)}")
        finally:
            con.close()

    def info(self) -> dict[str, Any]:
        return {"warehouse": self.location()}
