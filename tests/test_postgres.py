"""Everything the platform keeps in Postgres, against a real Postgres server (tests/pg.py):
the ledger, the Dagster instance (deploy/dagster.yaml as shipped) running a promotion, and
the data product's warehouse with write-audit-publish through dbt-postgres.

The reference dbt model is written in DuckDB's dialect (`date_diff`, `double`); the copy
used here says the same in portable SQL (the one change a project needs to run on both
warehouses), on a sixth of the seed rows to keep dbt's seed loading short.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import os
import re
import shutil
import threading
from pathlib import Path
from typing import Iterator

import pandas as pd
import psycopg2
import pytest
import sqlalchemy as sa

from tests.pg import USER, PostgresServer, start_or_skip
from unified_delivery import Platform
from unified_delivery.service import promote
from unified_delivery.errors import TargetError
from unified_delivery.governance.tokens import issue, signing_key
from unified_delivery.home import Home
from unified_delivery.ledger import Ledger, LedgerResource
from unified_delivery.runner import RunOutcome
from unified_delivery.targets.base import Artifact
from unified_delivery.targets.dbt_postgres import DbtPostgresTarget
from unified_delivery.kinds.data.unit import DataUnit
from unified_delivery.units import GateSpec

ROOT = Path(__file__).resolve().parents[1]
MODEL = "customer_features"
PASSWORD_ENV = "UD_TEST_WAREHOUSE_PASSWORD"
V2_COLUMN = "signup_date"


@pytest.fixture(scope="module")
def pg() -> Iterator[PostgresServer]:
    server = start_or_skip()
    try:
        yield server
    finally:
        server.stop()


def _psql(pg: PostgresServer, database: str, sql: str, params: tuple = ()) -> list[tuple]:
    con = psycopg2.connect(host="127.0.0.1", port=pg.port, user=USER, password=pg.password, dbname=database)
    con.autocommit = True
    try:
        cur = con.cursor()
        cur.execute(sql, params)
        return cur.fetchall() if cur.description else []
    finally:
        con.close()


# ---- the ledger ----------------------------------------------------------------------------

def test_ledger_on_postgres_chains_redacts_and_detects_tampering(pg):
    ledger = Ledger(pg.url(pg.create_database("ledger_basic")))
    try:
        first = ledger.append("candidate", principal="service:ci", unit="api", version="v1", payload={"run_id": "r1"})
        ledger.append("gate", principal="service:ci", unit="api", env="staging", version="v1",
                      payload={"gate": "tests", "passed": True, "db": {"password": "hunter2"}})
        third = ledger.append("promotion", principal="user:ana", unit="api", env="staging", version="v1")
        assert [e.seq for e in ledger.entries()] == [1, 2, 3]
        assert third.prev_hash == ledger.entries()[1].hash and first.prev_hash == "0" * 64
        assert ledger.latest(unit="api", action="gate").payload["db"] == {"password": "[redacted]"}
        assert ledger.verify(expected_head=third.hash).ok

        stored = _psql(pg, "ledger_basic", "SELECT payload FROM ud_ledger WHERE seq = 2")[0][0]
        assert "hunter2" not in stored  # redacted before it reached the database
        _psql(pg, "ledger_basic", "UPDATE ud_ledger SET payload = replace(payload, 'true', 'false') WHERE seq = 2")
        report = ledger.verify()
        assert (report.ok, report.first_bad_seq, report.count) == (False, 2, 1)
    finally:
        ledger.dispose()


def test_the_platforms_ledger_role_may_only_insert_and_read(pg):
    """docs/governance.md: the role the platform writes the ledger with has INSERT and SELECT on
    it and nothing else, so even the platform's own credentials cannot rewrite history."""
    db = pg.create_database("ledger_roles")
    owner = Ledger(pg.url(db))
    owner.append("candidate", principal="service:ci", unit="api", version="v1")
    from unified_delivery.governance import grants

    grants.for_run(owner.engine, b"k" * 32, "human:ana", run_id="r", job="j", unit="api", env="staging",
                   run_config={})  # the owner makes the tables; the writer only uses them
    owner.dispose()
    for statement in LEDGER_WRITER_SQL:
        _psql(pg, db, statement)
    writer_url = pg.url(db).replace(f"{USER}:{pg.password}@", "ud_ledger_writer:writer-secret@")
    writer = Ledger(writer_url)
    try:
        writer.append("promotion", principal="human:ana", unit="api", env="staging", version="v1")
        assert [e.seq for e in writer.entries()] == [1, 2] and writer.verify().ok
        for attack in ("UPDATE ud_ledger SET principal = 'human:olivia' WHERE seq = 2", "DELETE FROM ud_ledger WHERE seq = 2",
                       "TRUNCATE ud_ledger"):
            with pytest.raises(sa.exc.ProgrammingError, match="permission denied"):
                with writer.engine.begin() as conn:
                    conn.execute(sa.text(attack))
        assert [e.principal for e in writer.entries()] == ["service:ci", "human:ana"]
    finally:
        writer.dispose()


LEDGER_WRITER_SQL = (  # as in docs/governance.md
    "CREATE ROLE ud_ledger_writer LOGIN PASSWORD 'writer-secret'",
    "GRANT CONNECT ON DATABASE ledger_roles TO ud_ledger_writer",
    "GRANT USAGE ON SCHEMA public TO ud_ledger_writer",
    "GRANT SELECT, INSERT ON ud_ledger TO ud_ledger_writer",
    "GRANT SELECT, INSERT, UPDATE ON ud_run_grants TO ud_ledger_writer",
)


def test_concurrent_writers_on_postgres_never_fork_the_chain(pg):
    url = pg.url(pg.create_database("ledger_race"))
    Ledger(url).count()  # create the table before the race
    start, errors = threading.Barrier(4), []

    def writer(worker: int) -> None:
        ledger = Ledger(url)  # an engine (and connections) of its own, as another process would have
        try:
            start.wait()
            for i in range(40):
                ledger.append("gate", principal=f"agent:worker-{worker}", unit="api", payload={"i": i})
        except Exception as exc:  # reported below: a thread's exception would otherwise vanish
            errors.append(exc)
        finally:
            ledger.dispose()

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert errors == []
    ledger = Ledger(url)
    try:
        entries = ledger.entries()
        assert [e.seq for e in entries] == list(range(1, 161))
        assert {e.principal for e in entries} == {f"agent:worker-{w}" for w in range(4)}
        assert ledger.verify().ok
    finally:
        ledger.dispose()


# ---- the Dagster instance and the warehouse --------------------------------------------------

def portable_project(dest: Path) -> Path:
    """The reference dbt project, its one DuckDB-only model rewritten in SQL Postgres also speaks."""
    shutil.copytree(ROOT / "dbt_project", dest, ignore=shutil.ignore_patterns("target", "logs", "*.duckdb*"))
    sql = dest / "models" / f"{MODEL}.sql"
    text = sql.read_text()
    portable = re.sub(r"date_diff\('day', (.+?), (p\.as_of_date)\)", r"(\2 - \1)", text)
    portable = portable.replace("as double)", "as double precision)").replace("as double\n", "as double precision\n")
    assert "date_diff" not in portable and portable.count("double precision") == 2, "the reference model changed"
    sql.write_text(portable)
    # A sixth of the customers and their orders: dbt loads seeds row by row, and nothing
    # Postgres-specific depends on the volume.
    keep = _keep_rows(dest / "seeds" / "customers.csv", lambda row: int(row["customer_id"]) <= 300)
    _keep_rows(dest / "seeds" / "orders.csv", lambda row: row["customer_id"] in keep)
    return dest


def _keep_rows(path: Path, wanted) -> set[str]:
    with path.open(newline="") as fh:
        reader = csv.DictReader(fh)
        fields, rows = reader.fieldnames, [r for r in reader if wanted(r)]
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    return {r["customer_id"] for r in rows}


@dataclasses.dataclass
class Shared:
    pg: PostgresServer
    home: Home
    unit: DataUnit
    target: DbtPostgresTarget
    platform: Platform
    staging_run: RunOutcome
    production_run: RunOutcome

    def warehouse(self, sql: str, params: tuple = ()) -> list[tuple]:
        return _psql(self.pg, "warehouse", sql, params)

    def view_source(self, env: str) -> str:
        return self.warehouse("SELECT definition FROM pg_views WHERE schemaname = %s AND viewname = %s", (env, MODEL))[0][0]

    def columns(self, schema: str) -> list[str]:
        return [c for (c,) in self.warehouse("SELECT column_name FROM information_schema.columns WHERE table_schema = %s "
                                             "AND table_name = %s ORDER BY ordinal_position", (schema, MODEL))]


@pytest.fixture(scope="module")
def shared(pg, tmp_path_factory) -> Iterator[Shared]:
    """customer_features promoted to staging, then production, by Dagster runs on an instance,
    a ledger and a warehouse that are all in Postgres."""
    root = tmp_path_factory.mktemp("pg-platform")
    for db in ("dagster", "ud", "warehouse"):
        pg.create_database(db)
    home = Home(root / "home")
    home.dagster_home.mkdir(parents=True)
    shutil.copy2(ROOT / "deploy" / "dagster.yaml", home.dagster_home / "dagster.yaml")
    with pytest.MonkeyPatch.context() as mp:
        for var, value in {"DAGSTER_PG_HOST": "127.0.0.1", "DAGSTER_PG_PORT": str(pg.port), "DAGSTER_PG_USERNAME": USER,
                           "DAGSTER_PG_PASSWORD": pg.password, "DAGSTER_PG_DB": "dagster", PASSWORD_ENV: pg.password,
                           "UD_HOME": str(home.root), "DAGSTER_HOME": str(home.dagster_home)}.items():
            mp.setenv(var, value)
        unit = DataUnit(name=MODEL, team="analytics", project=str(portable_project(root / "project")),
                        select=f"+{MODEL}", gates=[GateSpec(type="dbt-tests")])
        target = DbtPostgresTarget(host="127.0.0.1", port=pg.port, user=USER, database="warehouse",
                                   password_env=PASSWORD_ENV)
        platform = Platform([unit], targets={"data": target}, ledger=LedgerResource(url=pg.url("ud")))
        defs = platform.definitions()
        # A shared ledger: nobody is the local operator without a token (UD-AUTH-TOKEN-REQUIRED).
        from unified_delivery.errors import NotPermitted
        from unified_delivery.service import identity

        with pytest.raises(NotPermitted, match="the ledger is shared"):
            identity(platform, home=home)
        token = issue("human:local-operator", 3600, key=signing_key(home))
        operator = identity(platform, token, home)
        staging = promote(platform, defs, MODEL, "staging", reason="postgres", home=home, principal=operator)
        production = promote(platform, defs, MODEL, "production", reason="postgres", home=home, principal=operator)
        yield Shared(pg, home, unit, target, platform, staging, production)
        platform.ledger.ledger().dispose()


def test_a_promotion_runs_on_a_dagster_instance_in_postgres(shared):
    import dagster as dg
    from dagster_postgres import PostgresRunStorage

    for outcome in (shared.staging_run, shared.production_run):
        assert outcome.success, outcome.error
    assert shared.staging_run.materialized == [f"{MODEL}/candidate", f"{MODEL}/staging"]
    assert shared.production_run.materialized == [f"{MODEL}/production"]

    instance = dg.DagsterInstance.from_config(str(shared.home.dagster_home))
    try:
        assert isinstance(instance.run_storage, PostgresRunStorage)
        run = instance.get_run_by_id(shared.staging_run.run_id)
        assert run.job_name == "ud_promote_staging" and run.tags["ud/unit"] == MODEL and run.status == dg.DagsterRunStatus.SUCCESS
        assert run.tags["ud/reason"] == "postgres"
        checks = [e.dagster_event.event_specific_data for e in instance.all_logs(run.run_id)
                  if e.dagster_event and e.dagster_event.event_type == dg.DagsterEventType.ASSET_CHECK_EVALUATION]
        assert ("dbt_tests", True) in [(c.check_name, c.passed) for c in checks]
    finally:
        instance.dispose()
    stored = {r for (r,) in _psql(shared.pg, "dagster", "SELECT run_id FROM runs")}
    assert {shared.staging_run.run_id, shared.production_run.run_id} <= stored


def test_the_ledger_of_that_promotion_is_in_postgres(shared):
    ledger = shared.platform.ledger.ledger()
    assert ledger.engine.dialect.name == "postgresql"
    steps = [(e.action, e.env) for e in ledger.entries(unit=MODEL) if e.action in ("candidate", "promotion")]
    assert steps == [("candidate", "candidate"), ("promotion", "staging"), ("promotion", "production")]
    gate = ledger.latest(unit=MODEL, action="gate", predicate=lambda e: e.payload.get("gate") == "dbt_tests").payload
    assert (gate["passed"], gate["code"]) == (True, "UD-GATE-DBT-TESTS-PASSED")
    assert ledger.verify().ok
    assert shared.pg.password not in str([e.payload for e in ledger.entries()])


def test_the_data_product_was_written_audited_and_published_in_postgres(shared):
    customers = len((Path(shared.unit.project) / "seeds" / "customers.csv").read_text().strip().splitlines()) - 1
    version = shared.target.status(shared.unit, "staging").version
    for env in ("staging", "production"):
        assert shared.target.status(shared.unit, env).version == version
        assert f"{MODEL}__{version}" in shared.view_source(env)
        assert shared.warehouse(f'SELECT count(*) FROM "{env}".{MODEL}')[0][0] == customers
        assert shared.target.health(shared.unit, env).healthy
    audit = f"ud_audit_{MODEL}_{version}"
    frame = shared.target.read(shared.unit, "production", MODEL)
    assert list(frame.columns) == shared.columns(audit) and frame["customer_id"].is_unique
    assert (frame["tenure_days"] >= frame["days_since_last_order"]).all()
    assert shared.target.location() == f"postgresql://{USER}@127.0.0.1:{shared.pg.port}/warehouse"
    # The password reached dbt through the environment only: the profile names the variable. A
    # successful dbt call's work folder (profile included) is gone; any folder kept has no password.
    profile = shared.target.profile("ud_reference", audit)
    assert PASSWORD_ENV in profile and shared.pg.password not in profile
    assert all(shared.pg.password not in p.read_text() for p in (shared.home.builds / MODEL).rglob("*") if p.is_file())


def test_a_second_version_publishes_and_rolls_back_on_postgres(shared):
    v1 = shared.target.status(shared.unit, "staging").version
    # The second version's audited table, one column wider, made with SQL: the dbt write
    # into an audit schema is what the promotion above did; here the publish is under test.
    v2 = Artifact(unit=MODEL, kind="data", version="v2columns", location=f"ud_audit_{MODEL}_v2columns",
                  details={"models": [MODEL]})
    shared.warehouse(f'CREATE SCHEMA "{v2.location}"')
    shared.warehouse(f'CREATE TABLE "{v2.location}".{MODEL} AS SELECT f.*, c.{V2_COLUMN} FROM "ud_audit_{MODEL}_{v1}".{MODEL} f '
                     f'JOIN "ud_audit_{MODEL}_{v1}".customers c USING (customer_id)')
    deployed = shared.target.deploy(shared.unit, "staging", v2)
    assert (deployed.version, deployed.previous_version) == (v2.version, v1)
    assert V2_COLUMN in shared.columns("staging")

    # Back to v1, whose view has one column fewer: CREATE OR REPLACE VIEW cannot do that on Postgres.
    back = shared.target.rollback(shared.unit, "staging")
    assert (back.version, back.previous_version) == (v1, v2.version)
    assert V2_COLUMN not in shared.columns("staging")
    assert f"{MODEL}__{v1}" in shared.view_source("staging")
    assert shared.target.versions(shared.unit, "staging")[:2] == [v1, v2.version]
    assert shared.target.health(shared.unit, "staging").healthy


def test_a_failure_inside_the_publish_transaction_leaves_the_views_as_they_were(shared):
    env = "preprod"
    v1 = shared.target.status(shared.unit, "production").version
    artifact = Artifact(unit=MODEL, kind="data", version=v1, location=f"ud_audit_{MODEL}_{v1}", details={"models": [MODEL]})
    shared.target.deploy(shared.unit, env, artifact)
    shared.warehouse(f'CREATE TABLE "{env}".customers AS SELECT 42 AS blocker')
    # The first view is replaced inside the transaction before the second statement fails.
    both = dataclasses.replace(artifact, details={"models": [MODEL, "customers"]})
    with pytest.raises(TargetError) as failed:
        shared.target.deploy(shared.unit, env, both)
    assert failed.value.code == "UD-TARGET-PUBLISH" and "customers" in failed.value.message
    assert f"{MODEL}__{v1}" in shared.view_source(env)
    assert shared.warehouse(f'SELECT * FROM "{env}".customers') == [(42,)]
    assert shared.warehouse("SELECT count(*) FROM ud_releases.deployments WHERE env = %s", (env,)) == [(1,)]


def test_a_missing_password_variable_is_a_clear_error(shared, monkeypatch):
    monkeypatch.delenv(PASSWORD_ENV, raising=False)
    with pytest.raises(TargetError) as missing:
        shared.target.status(shared.unit, "staging")
    assert missing.value.code == "UD-TARGET-WAREHOUSE-PASSWORD" and PASSWORD_ENV in missing.value.remediation
    monkeypatch.setenv(PASSWORD_ENV, shared.pg.password)
    url = shared.target.sqlalchemy_url()
    engine = sa.create_engine(url)
    try:
        with engine.connect() as con:
            assert con.execute(sa.text(f'SELECT count(*) FROM "staging".{MODEL}')).scalar_one() > 0
    finally:
        engine.dispose()
    assert isinstance(shared.target.read(shared.unit, "staging", MODEL), pd.DataFrame)


TWO_MACHINES_DEFINITIONS = '''
import os
from pathlib import Path

from unified_delivery import Platform
from unified_delivery.governance import Governance
from unified_delivery.ledger import LedgerResource

platform = Platform.from_directory(Path(__file__).parent / "units",
                                   governance=Governance.from_file(Path(__file__).parents[1] / "resources" / "policy.yaml"),
                                   ledger=LedgerResource(url=os.environ["TEST_SHARED_LEDGER_URL"]))
defs = platform.definitions()
'''

# Postgres storage, and the runs launched at once from the code server (no daemon here).
TWO_MACHINES_INSTANCE = (ROOT / "deploy" / "dagster.yaml").read_text() + '''
run_coordinator:
  module: dagster._core.run_coordinator
  class: DefaultRunCoordinator
'''


def test_two_promotions_of_one_unit_from_two_machines_take_turns(pg, tmp_path, monkeypatch):
    """Two `ud promote` of one unit and environment at once, from two homes (two machines: no
    file lock in common) on one Postgres ledger and one Postgres Dagster instance: each run is
    launched by the instance from its machine's code server, and the second waits for the first
    (the advisory lock on the shared ledger), from build to deploy."""
    import subprocess
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from tests import tiny_platform as tiny

    for db in ("dagster_two", "ud_two"):
        pg.create_database(db)
    paths = tiny.make(tmp_path)
    (paths["project"] / "assets" / "definitions.py").write_text(TWO_MACHINES_DEFINITIONS)
    # A suite that takes a few seconds, so that the two runs overlap.
    (paths["work"] / "test_slow.py").write_text("import time\n\ndef test_slow():\n    time.sleep(4)\n")
    tiny.commit(paths["work"], "a slow suite")
    signing = "s" * 64
    ledger_key = Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode()
    token = issue("human:local-operator", 3600, key=signing.encode())
    base = {k: v for k, v in os.environ.items() if k == "UD_CODE_SERVER_IDLE_S" or not k.startswith(("UD_", "DAGSTER"))}
    base.update(TEST_SHARED_LEDGER_URL=pg.url("ud_two"), UD_SIGNING_KEY=signing, UD_LEDGER_KEY=ledger_key,
                UD_TOKEN=token, UD_PROJECT=str(paths["project"]), DAGSTER_PG_HOST="127.0.0.1",
                DAGSTER_PG_PORT=str(pg.port), DAGSTER_PG_USERNAME=USER, DAGSTER_PG_PASSWORD=pg.password,
                DAGSTER_PG_DB="dagster_two")
    homes = [tmp_path / "machine-a", tmp_path / "machine-b"]
    for home in homes:
        (home / "dagster").mkdir(parents=True)
        (home / "dagster" / "dagster.yaml").write_text(TWO_MACHINES_INSTANCE)
    try:
        procs = [subprocess.Popen([tiny.UD, "promote", "svc", "--to", "staging", "--json"], cwd=paths["project"],
                                  env={**base, "UD_HOME": str(home)}, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  text=True) for home in homes]
        outs = [p.communicate(timeout=600) for p in procs]
        assert all(p.returncode == 0 for p in procs), outs
        run_ids = [json.loads(out)["run_id"] for out, _ in outs]

        ledger = Ledger(pg.url("ud_two"))
        try:
            assert ledger.verify().ok
            order = [e.payload["run_id"] for e in ledger.entries()
                     if e.action in ("candidate", "deploy-started", "promotion") and e.payload.get("run_id") in run_ids]
            # One run from build to deploy, then the other: never interleaved.
            assert len(order) == 6 and order[:3] == [order[0]] * 3 and order[3:] == [order[3]] * 3, order
        finally:
            ledger.dispose()

        import dagster as dg

        for var in ("DAGSTER_PG_HOST", "DAGSTER_PG_PORT", "DAGSTER_PG_USERNAME", "DAGSTER_PG_PASSWORD", "DAGSTER_PG_DB"):
            monkeypatch.setenv(var, base[var])
        instance = dg.DagsterInstance.from_config(str(homes[0] / "dagster"))
        try:
            waited = [r for r in run_ids if any("waiting for the run of svc to staging" in (e.user_message or "")
                                                for e in instance.all_logs(r))]
            assert len(waited) == 1, waited  # the second one, told so in its run's log
            assert {instance.get_run_by_id(r).status for r in run_ids} == {dg.DagsterRunStatus.SUCCESS}
        finally:
            instance.dispose()
    finally:
        for home in homes:
            subprocess.run([tiny.UD, "down"], cwd=paths["project"], env={**base, "UD_HOME": str(home)},
                           capture_output=True, timeout=120)
