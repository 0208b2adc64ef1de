"""DbtDuckDBTarget against real dbt and a real DuckDB file: write-audit-publish, a second
version and rollback, a failing dbt test, a broken model, and publishes that fail half-way.
What every target promises is checked for this one too in tests/test_target_contract.py.

dbt invocations are the cost here (each starts dbt, and dagster-dbt first runs
`dbt --version`), so the built versions are module-scoped. `staging` serves v1 for the whole
module (the second-version test rolls it back to v1); every other test that publishes uses
an environment of its own.
"""

from __future__ import annotations

import dataclasses
import shutil
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import duckdb
import pandas as pd
import pytest

from unified_delivery.errors import TargetError, UDError
from unified_delivery.gates.base import GateContext, GateResult
from unified_delivery.gates.dbt_tests import DbtTestsGate
from unified_delivery.home import Home
from unified_delivery.kinds.base import BuildContext
from unified_delivery.kinds.data.translator import DataTranslator
from unified_delivery.targets.base import Artifact
from unified_delivery.targets.dbt_duckdb import RELEASES, DbtDuckDBTarget
from unified_delivery.kinds.data.unit import DataUnit
from unified_delivery.targets.routing import Targets
from unified_delivery.units import GateSpec

REFERENCE = Path(__file__).resolve().parents[1] / "dbt_project"
MODEL = "customer_features"
ENV = "staging"
SQL = Path("models") / f"{MODEL}.sql"
CUSTOMERS_CSV = Path("seeds") / "customers.csv"
LAST_COLUMN = "    c.churned\nfrom customers as c"
V2_COLUMN = "signup_date"  # the column v2 adds: its presence tells v2's data from v1's


@dataclass(frozen=True)
class Lab:
    root: Path
    project: Path
    unit: DataUnit
    target: DbtDuckDBTarget

    @property
    def warehouse(self) -> Path:
        return self.root / "w.duckdb"

    def build(self) -> Artifact:
        """A candidate the way the platform builds one: manifest, selection digest, write."""
        ctx = BuildContext(home=Home.current(), target=self.target,
                           targets=Targets({"data": self.target}),
                           units={self.unit.name: self.unit}, log=lambda _: None)
        return DataTranslator().build_candidate(self.unit, ctx)

    def query(self, sql: str, *params) -> list[tuple]:
        # Opened and closed per query: dbt and the target need the file to themselves.
        con = duckdb.connect(str(self.warehouse), read_only=True)
        try:
            return con.execute(sql, list(params)).fetchall()
        finally:
            con.close()

    def execute(self, sql: str) -> None:
        con = duckdb.connect(str(self.warehouse))
        try:
            con.execute(sql)
        finally:
            con.close()

    def columns(self, schema: str, table: str) -> list[str]:
        return [c for (c,) in self.query("SELECT column_name FROM information_schema.columns WHERE table_schema = ? "
                                         "AND table_name = ? ORDER BY ordinal_position", schema, table)]

    def view_source(self, schema: str, view: str) -> str:
        rows = self.query("SELECT sql FROM duckdb_views() WHERE schema_name = ? AND view_name = ?", schema, view)
        assert rows, f"no view {schema}.{view}"
        return rows[0][0]

    def serves(self, env: str, artifact: Artifact) -> bool:
        """Whether the environment's view reads the release table of `artifact`'s version."""
        return f"{MODEL}__{artifact.version}" in self.view_source(env, MODEL)

    def frame(self, schema: str) -> pd.DataFrame:
        con = duckdb.connect(str(self.warehouse), read_only=True)
        try:
            return con.execute(f'SELECT * FROM "{schema}"."{MODEL}" ORDER BY customer_id').df()
        finally:
            con.close()

    def relations(self) -> set[tuple[str, str]]:
        return set(self.query("SELECT table_schema, table_name FROM information_schema.tables"))

    def deployments(self, env: str) -> int:
        return self.query(f"SELECT count(*) FROM {RELEASES}.deployments WHERE env = ?", env)[0][0]

    def dbt_tests_gate(self, artifact: Artifact) -> GateResult:
        gate = DbtTestsGate(GateSpec(type="dbt-tests"), self.unit)
        return gate.evaluate(GateContext(unit=self.unit, stage="candidate", guards=ENV, version=artifact.version,
                                         artifact=artifact, target=self.target, home=Home.current(), log=lambda _: None))


@contextmanager
def edited(path: Path, old: str, new: str) -> Iterator[None]:
    """Change a file of the project copy for the duration of the block."""
    original = path.read_text()
    assert original.count(old) == 1, f"{old!r} is not once in {path}"
    path.write_text(original.replace(old, new))
    try:
        yield
    finally:
        path.write_text(original)


@contextmanager
def added(path: Path, text: str) -> Iterator[None]:
    """Add a file to the project copy for the duration of the block."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    try:
        yield
    finally:
        path.unlink()


@pytest.fixture(scope="module")
def lab(tmp_path_factory) -> Iterator[Lab]:
    root = tmp_path_factory.mktemp("dbt")
    project = root / "project"
    shutil.copytree(REFERENCE, project, ignore=shutil.ignore_patterns("target", "logs", "*.duckdb", "*.duckdb.wal"))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("UD_HOME", str(root / "home"))
        unit = DataUnit(name=MODEL, team="analytics", project=str(project), select=f"+{MODEL}")
        yield Lab(root=root, project=project, unit=unit, target=DbtDuckDBTarget(warehouse=str(root / "w.duckdb")))


@pytest.fixture(scope="module")
def customers(lab) -> int:
    return len((lab.project / CUSTOMERS_CSV).read_text().strip().splitlines()) - 1


@pytest.fixture(scope="module")
def written_v1(lab) -> tuple[Artifact, set[tuple[str, str]]]:
    """v1 written to its audit schema, and the warehouse's relations right after the write."""
    artifact = lab.build()
    return artifact, lab.relations()


@pytest.fixture(scope="module")
def v1(written_v1) -> Artifact:
    return written_v1[0]


@pytest.fixture(scope="module")
def staging_v1(lab, v1):
    return lab.target.deploy(lab.unit, ENV, v1)


@pytest.fixture(scope="module")
def v2(lab, v1) -> Artifact:
    """The model with one more column, written to its own audit schema (not published)."""
    with edited(lab.project / SQL, LAST_COLUMN, f"    c.churned,\n    c.{V2_COLUMN}\nfrom customers as c"):
        return lab.build()


def test_write_audit_publish(lab, written_v1, staging_v1, customers):
    artifact, after_write = written_v1
    schema = f"ud_audit_{MODEL}_{artifact.version}"
    assert (artifact.location, artifact.details["schema"], artifact.details["models"]) == (schema, schema, [MODEL])
    assert artifact.details["rows"] == {MODEL: customers}
    # Written: the selection (seeds and model) is in the audit schema, nothing readers see.
    assert {(schema, t) for t in (MODEL, "customers", "orders")} <= after_write
    assert not {s for s, _ in after_write} & {ENV, RELEASES}

    results = lab.target.run_tests(lab.unit, artifact)
    assert results and {r["status"] for r in results} == {"pass"}, [r for r in results if r["status"] != "pass"]
    assert {"unique_customer_features_customer_id", "unique_customers_customer_id"} <= {r["name"] for r in results}

    # Published: the view serves a release copied from the audited table, row for row.
    assert (staging_v1.version, staging_v1.previous_version, staging_v1.details["models"]) == (artifact.version, None, [MODEL])
    assert lab.serves(ENV, artifact)
    pd.testing.assert_frame_equal(lab.frame(ENV), lab.frame(schema))
    assert lab.target.read(lab.unit, ENV, MODEL).shape[0] == customers

    status = lab.target.status(lab.unit, ENV)
    assert (status.version, status.previous_version, status.details["last_action"]) == (artifact.version, None, "deploy")
    assert status.deployed_at == staging_v1.deployed_at
    health = lab.target.health(lab.unit, ENV)
    assert health.healthy, health.message
    assert health.details == {"version": artifact.version, "rows": {MODEL: customers}}
    assert not lab.target.health(lab.unit, "nowhere").healthy
    assert lab.target.status(lab.unit, "nowhere") is None


def test_second_version_publishes_and_rolls_back(lab, v1, staging_v1, v2, customers):
    assert v2.version != v1.version, "a changed model must be a new version (and a new audit schema)"
    assert V2_COLUMN in lab.columns(v2.location, MODEL)

    deployed = lab.target.deploy(lab.unit, ENV, v2)
    assert (deployed.version, deployed.previous_version) == (v2.version, v1.version)
    assert lab.serves(ENV, v2)
    assert V2_COLUMN in lab.columns(ENV, MODEL)
    assert lab.target.status(lab.unit, ENV).version == v2.version
    assert lab.target.versions(lab.unit, ENV)[:2] == [v2.version, v1.version]

    back = lab.target.rollback(lab.unit, ENV)
    assert (back.version, back.previous_version) == (v1.version, v2.version)
    assert lab.serves(ENV, v1)
    assert V2_COLUMN not in lab.columns(ENV, MODEL)
    pd.testing.assert_frame_equal(lab.frame(ENV), lab.frame(v1.location))
    status = lab.target.status(lab.unit, ENV)
    assert (status.version, status.previous_version, status.details["last_action"]) == (v1.version, v2.version, "rollback")
    assert lab.target.health(lab.unit, ENV).details["rows"] == {MODEL: customers}
    assert lab.target.versions(lab.unit, ENV)[:2] == [v1.version, v2.version]

    with pytest.raises(TargetError) as same:
        lab.target.rollback(lab.unit, ENV, to_version=v1.version)
    assert same.value.code == "UD-TARGET-SAME-VERSION"
    assert lab.serves(ENV, v1)


def test_failing_dbt_test_fails_the_gate_and_publishes_nothing(lab, v1, staging_v1, customers):
    header, first = (lab.project / CUSTOMERS_CSV).read_text().splitlines()[:2]
    with edited(lab.project / CUSTOMERS_CSV, header + "\n", f"{header}\n{first}\n"):  # customer 1, once more
        candidate = lab.target.write(lab.unit, "dup_customer", models=[MODEL])
        # The write excludes tests, so the bad data reaches the audit schema and stops there.
        assert candidate.details["rows"] == {MODEL: customers + 1}
        result = lab.dbt_tests_gate(candidate)

    assert not result.passed
    assert result.code == "UD-GATE-DBT-TESTS-FAILED"
    failed = {f["test"] for f in result.metadata["failures"]}
    assert {"unique_customers_customer_id", "unique_customer_features_customer_id"} <= failed
    assert "unique_customers_customer_id" in result.message
    assert result.metadata["schema"] == candidate.location
    assert result.metadata["failed"] == len(failed) < result.metadata["tests"]

    assert lab.target.status(lab.unit, ENV).version == v1.version
    assert lab.serves(ENV, v1)
    assert lab.target.read(lab.unit, ENV, MODEL)["customer_id"].is_unique
    assert "dup_customer" not in lab.target.versions(lab.unit, ENV)
    assert (RELEASES, f"{MODEL}__dup_customer") not in lab.relations()


def test_broken_model_fails_the_write_and_publishes_nothing(lab, v1, staging_v1, customers):
    with edited(lab.project / SQL, LAST_COLUMN, "    c.churned,\n    c.no_such_column\nfrom customers as c"):
        with pytest.raises(UDError) as broken:
            lab.target.write(lab.unit, "broken", models=[MODEL])
    assert broken.value.code == "UD-DATA-BUILD-FAILED"
    assert broken.value.exit_code == 5
    assert f"model.ud_reference.{MODEL}" in broken.value.message
    assert "no_such_column" in broken.value.message
    assert lab.target.status(lab.unit, ENV).version == v1.version
    assert lab.serves(ENV, v1)
    assert lab.target.health(lab.unit, ENV).details["rows"] == {MODEL: customers}
    assert "broken" not in lab.target.versions(lab.unit, ENV)


def test_publish_of_a_model_missing_from_the_audit_schema_changes_nothing(lab, v1, v2):
    env = "production"
    lab.target.deploy(lab.unit, env, v1)
    ghost = dataclasses.replace(v2, details={**v2.details, "models": [MODEL, "ghost"]})
    with pytest.raises(TargetError) as failed:
        lab.target.deploy(lab.unit, env, ghost)
    assert failed.value.code == "UD-TARGET-PUBLISH"
    assert "ghost" in failed.value.message
    assert v1.version in failed.value.remediation  # says what the environment still serves
    assert lab.serves(env, v1)
    assert V2_COLUMN not in lab.columns(env, MODEL)
    assert (env, "ghost") not in lab.relations()
    status = lab.target.status(lab.unit, env)
    assert (status.version, lab.deployments(env)) == (v1.version, 1)


def test_failure_inside_the_publish_transaction_leaves_every_view_on_the_old_version(lab, v1, v2):
    env = "preprod"
    lab.target.deploy(lab.unit, env, v1)
    # A table where the second view must go: the first view has already been replaced in
    # the transaction when the second statement fails.
    lab.execute(f'CREATE TABLE "{env}".customers AS SELECT 42 AS blocker')
    both = dataclasses.replace(v2, details={**v2.details, "models": [MODEL, "customers"]})
    with pytest.raises(TargetError) as failed:
        lab.target.deploy(lab.unit, env, both)
    assert failed.value.code == "UD-TARGET-PUBLISH"
    assert "customers" in failed.value.message
    assert lab.serves(env, v1)
    assert V2_COLUMN not in lab.columns(env, MODEL)
    assert lab.query(f'SELECT * FROM "{env}".customers') == [(42,)]
    status = lab.target.status(lab.unit, env)
    assert (status.version, status.details["models"], lab.deployments(env)) == (v1.version, [MODEL], 1)


def test_rollback_to_a_version_that_published_fewer_models(lab, v1, v2):
    env = "qa"
    lab.target.deploy(lab.unit, env, v1)
    lab.target.deploy(lab.unit, env, dataclasses.replace(v2, details={**v2.details, "models": [MODEL, "customers"]}))
    back = lab.target.rollback(lab.unit, env)
    assert back.version == v1.version
    assert lab.serves(env, v1)
    assert lab.target.status(lab.unit, env).version == v1.version


def test_dbt_test_that_does_not_run_fails_the_gate(lab, v1):
    with added(lab.project / "tests" / "assert_orders_positive.sql",
               "select * from {{ ref('orders' }} where amount <= 0\n"):  # unbalanced: dbt cannot compile it
        try:
            passed = lab.dbt_tests_gate(v1).passed
        except UDError:  # refusing with an error is as good as failing the gate
            passed = False
    assert not passed


def test_versions_lists_only_the_units_own_releases(lab, staging_v1):
    other = DataUnit(name="orders_mart", team="finance", project=str(lab.project), select="orders")
    assert lab.target.status(other, ENV) is None
    assert lab.target.versions(other, ENV) == []


def test_a_view_re_pointed_by_hand_shows_as_what_it_serves(lab, v1, staging_v1, v2):
    """Status reads the views, not only the target's own table: a view re-pointed with plain
    DuckDB is the version it now serves (the platform then sees the drift), one that reads no
    release is `mixed(...)`, and putting it back is in sync again."""
    lab.target.deploy(lab.unit, ENV, v2)
    lab.target.deploy(lab.unit, ENV, v1)  # published: v1; both releases exist
    assert lab.target.status(lab.unit, ENV).version == v1.version
    lab.execute(f'CREATE OR REPLACE VIEW {ENV}."{MODEL}" AS SELECT * FROM {RELEASES}."{MODEL}__{v2.version}"')
    moved = lab.target.status(lab.unit, ENV)
    assert moved.version == v2.version and moved.details["published_version"] == v1.version
    lab.execute(f'CREATE OR REPLACE VIEW {ENV}."{MODEL}" AS SELECT 1 AS customer_id')
    assert lab.target.status(lab.unit, ENV).version == f"mixed({MODEL}=none)"
    lab.execute(f'CREATE OR REPLACE VIEW {ENV}."{MODEL}" AS SELECT * FROM {RELEASES}."{MODEL}__{v1.version}"')
    back = lab.target.status(lab.unit, ENV)
    assert back.version == v1.version and "published_version" not in back.details


def test_the_data_diff_gate_compares_the_audited_candidate_with_what_is_published(lab, v1, staging_v1, v2, customers):
    """The data-diff gate (gates/data_diff.py) end to end: v2, written by dbt to its audit
    schema, against the v1 that staging publishes through the target: same rows and values,
    one column more. Then a candidate that changes every row's values, refused."""
    from unified_delivery.gates import build_gate

    lab.target.deploy(lab.unit, ENV, v1)
    spec = GateSpec(type="data-diff", settings={"key": ["customer_id"], "max_changed": 0.5})
    gate = build_gate(spec, lab.unit)

    def evaluate(artifact: Artifact) -> GateResult:
        return gate.evaluate(GateContext(unit=lab.unit, stage="candidate", guards=ENV, version=artifact.version,
                                         artifact=artifact, target=lab.target, home=Home.current(),
                                         log=lambda _: None))

    same = evaluate(v2)
    assert same.passed, same.message
    m = same.metadata
    assert (m["added"], m["removed"], m["changed"], m["published_rows"]) == (0, 0, 0, customers)
    assert m["columns_added"] == [V2_COLUMN]
    with edited(lab.project / SQL, LAST_COLUMN, "    not c.churned as churned\nfrom customers as c"):
        flipped = lab.build()
    refused = evaluate(flipped)
    assert not refused.passed and refused.code == "UD-GATE-DIFF-EXCEEDED"
    assert refused.metadata["column_change"]["churned"] == 1.0 and refused.metadata["changed"] == customers
