"""The DeployTarget contract, one suite for every local target (targets/base.py keeps it for
each): a release directory (local_release), an artifact file (local_artifact), an MLflow alias
(mlflow_alias, on SQLite), dbt write-audit-publish on DuckDB (dbt_duckdb) and on the real
Postgres of tests/pg.py (dbt_postgres).

What runs is always read from the place itself, as a reader would (`serving`): the service's
answer, the published file, the alias in the registry, the environment's view; never only from
the target's own `status`. Each test uses environments of its own, so the order does not
matter. What only one target does (blue-green, a changed file, the publish transaction, the
alias history) stays in that target's own test file.

The two dbt places get their audited versions with SQL (an audit schema with the table a
`dbt build` would have written): the publish is under test here, dbt's write is in
tests/test_dbt_duckdb.py.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from tests.pg import USER, start_or_skip
from unified_delivery.errors import TargetError
from unified_delivery.targets.base import Artifact, BaseTarget, Deployment
from unified_delivery.units import Unit
from unified_delivery.kinds.app.unit import AppUnit, ServiceSpec
from unified_delivery.kinds.asset.unit import AssetUnit
from unified_delivery.kinds.data.unit import DataUnit
from unified_delivery.kinds.model.unit import ModelUnit

# c_unknown first: a warehouse lists the versions of the unit's environments in their order.
ENVS = (
    "c_unknown",
    "c_first",
    "c_roll",
    "c_fail",
    "c_raise",
    "c_again",
    "c_none",
    "c_lock",
    "c_kind",
)
PLACES = ["local_release", "local_artifact", "mlflow_alias", "dbt_duckdb", "dbt_postgres"]
TABLE = "features"

APP = """
import json, os, sys
from http.server import BaseHTTPRequestHandler, HTTPServer

if os.environ["UD_VERSION"].startswith("bad"):
    sys.exit("this release cannot start: its configuration is missing")


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        body = json.dumps({"version": os.environ["UD_VERSION"]}).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


HTTPServer(("127.0.0.1", int(sys.argv[sys.argv.index("--port") + 1])), Handler).serve_forever()
"""


@dataclass
class Place:
    """A target, a unit it deploys, two good versions and one whose deploy fails."""

    name: str
    target: BaseTarget
    unit: Unit
    v1: Artifact
    v2: Artifact
    broken: Artifact  # its deploy fails the way this target fails (`broken_code`)
    broken_code: str
    no_previous: tuple[
        str, str
    ]  # the code of a rollback with nothing deployed, then with one version
    serving: Callable[[str], str | None]  # the version a reader of the environment gets, or None

    def state(self, env: str) -> tuple[str, str | None, str] | None:
        dep = self.target.status(self.unit, env)
        return dep and (dep.version, dep.previous_version, dep.deployed_at)


def _local_release(root: Path) -> tuple[Place, Callable[[], None]]:
    import urllib.request

    from unified_delivery.targets.local_release import LocalReleaseTarget

    def source(version: str) -> Artifact:
        folder = root / "src" / version
        folder.mkdir(parents=True)
        (folder / "app.py").write_text(APP)
        return Artifact(unit="svc", kind="app", version=version, location=str(folder))

    target = LocalReleaseTarget(home=str(root / "home"), drain_s=0.1)
    unit = AppUnit(
        name="svc",
        team="web",
        repository="/nowhere",
        environments=ENVS,
        service=ServiceSpec(startup_timeout_s=15),
    )
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def serving(env: str) -> str | None:
        dep = target.status(unit, env)
        if dep is None or not dep.details["running"]:
            return None
        with opener.open(dep.details["url"] + "/health", timeout=5) as answer:
            return json.loads(answer.read())["version"]

    place = Place(
        "local_release",
        target,
        unit,
        source("v1"),
        source("v2"),
        source("bad1"),
        "UD-TARGET-START",
        ("UD-TARGET-NO-RELEASE", "UD-TARGET-NO-RELEASE"),
        serving,
    )
    return place, target.stop_all


def _local_artifact(root: Path) -> tuple[Place, Callable[[], None]]:
    from unified_delivery.targets.local_artifact import LocalArtifactTarget

    def built(version: str, content: bytes | None = None) -> Artifact:
        path = root / "builds" / version / "value.json"
        path.parent.mkdir(parents=True)
        path.write_bytes(json.dumps(version).encode())
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        if content is not None:  # changed after it was built
            path.write_bytes(content)
        return Artifact(
            unit="totals",
            kind="asset",
            version=version,
            digest=f"sha256:{digest}",
            location=str(path),
        )

    target = LocalArtifactTarget(home=str(root / "home"))
    unit = AssetUnit(name="totals", team="analytics", asset_key="totals", environments=ENVS)

    def serving(env: str) -> str | None:
        current = root / "home" / "artifacts" / "totals" / env / "current" / "value.json"
        return json.loads(current.read_text()) if current.exists() else None

    place = Place(
        "local_artifact",
        target,
        unit,
        built("v1"),
        built("v2"),
        built("bad1", b'"tampered"'),
        "UD-TARGET-ARTIFACT",
        ("UD-TARGET-NO-RELEASE", "UD-TARGET-NO-PREVIOUS"),
        serving,
    )
    return place, lambda: None


def _mlflow_alias(root: Path) -> tuple[Place, Callable[[], None]]:
    from mlflow.exceptions import MlflowException
    from sklearn.linear_model import LogisticRegression

    from tests.test_mlflow_alias import FEATURES, LABEL, synthetic
    from unified_delivery.targets.mlflow_alias import MlflowAliasTarget

    target = MlflowAliasTarget(
        tracking_uri=f"sqlite:///{root}/mlflow.db", artifact_root=str(root / "artifacts")
    )
    unit = ModelUnit(
        name="scorer", team="ml", trains_on="d", features=FEATURES, label=LABEL, environments=ENVS
    )
    train, holdout = synthetic(300, seed=1), synthetic(100, seed=2)
    holdout.to_parquet(root / "holdout.parquet")
    v1, v2 = (
        target.register(
            unit,
            LogisticRegression(C=c).fit(train[FEATURES], train[LABEL]),
            train=train,
            holdout_path=root / "holdout.parquet",
            data_version=f"d{c}",
            train_seconds=0.1,
        )
        for c in (1.0, 0.5)
    )

    def serving(env: str) -> str | None:
        try:
            return str(target.client().get_model_version_by_alias("scorer", env).version)
        except MlflowException:
            return None

    missing = Artifact(unit="scorer", kind="model", version="99", location="models:/scorer/99")
    place = Place(
        "mlflow_alias",
        target,
        unit,
        v1,
        v2,
        missing,
        "UD-TARGET-MLFLOW",
        ("UD-TARGET-NO-PREVIOUS", "UD-TARGET-NO-PREVIOUS"),
        serving,
    )
    return place, lambda: None


def _warehouse_place(name: str, target, run: Callable[[str], list[tuple]]) -> Place:
    """Audited versions made with SQL: what `dbt build` leaves in an audit schema, one row each."""
    for version in ("v1", "v2"):
        run(f'CREATE SCHEMA "audit_{version}"')
        run(
            f'CREATE TABLE "audit_{version}".{TABLE} AS '
            f"SELECT 1 AS customer_id, CAST('{version}' AS VARCHAR) AS version"
        )
    unit = DataUnit(
        name="customer_features",
        team="analytics",
        project="/nowhere",
        select=TABLE,
        environments=ENVS,
    )

    def audited(
        version: str,
    ) -> Artifact:  # "bad1" was never written: its audit schema does not exist
        return Artifact(
            unit=unit.name,
            kind="data",
            version=version,
            location=f"audit_{version}",
            details={"models": [TABLE]},
        )

    def serving(env: str) -> str | None:
        found = run(
            f"SELECT count(*) FROM information_schema.tables WHERE table_schema = '{env}' "
            f"AND table_name = '{TABLE}'"
        )
        return run(f'SELECT version FROM "{env}".{TABLE}')[0][0] if found[0][0] else None

    return Place(
        name,
        target,
        unit,
        audited("v1"),
        audited("v2"),
        audited("bad1"),
        "UD-TARGET-PUBLISH",
        ("UD-TARGET-NO-PREVIOUS", "UD-TARGET-NO-PREVIOUS"),
        serving,
    )


def _dbt_duckdb(root: Path) -> tuple[Place, Callable[[], None]]:
    import duckdb

    from unified_delivery.targets.dbt_duckdb import DbtDuckDBTarget

    path = root / "warehouse.duckdb"

    def run(sql: str) -> list[tuple]:
        con = duckdb.connect(str(path))  # opened per statement: the target needs the file to itself
        try:
            return con.execute(sql).fetchall()
        finally:
            con.close()

    return _warehouse_place("dbt_duckdb", DbtDuckDBTarget(warehouse=str(path)), run), lambda: None


def _dbt_postgres(root: Path, mp: pytest.MonkeyPatch) -> tuple[Place, Callable[[], None]]:
    import psycopg2

    from unified_delivery.targets.dbt_postgres import DbtPostgresTarget

    server = start_or_skip()
    database = server.create_database("contract")
    mp.setenv("UD_CONTRACT_WAREHOUSE_PASSWORD", server.password)
    target = DbtPostgresTarget(
        host="127.0.0.1",
        port=server.port,
        user=USER,
        database=database,
        password_env="UD_CONTRACT_WAREHOUSE_PASSWORD",
    )

    def run(sql: str) -> list[tuple]:
        con = psycopg2.connect(
            host="127.0.0.1", port=server.port, user=USER, password=server.password, dbname=database
        )
        con.autocommit = True
        try:
            cur = con.cursor()
            cur.execute(sql)
            return cur.fetchall() if cur.description else []
        finally:
            con.close()

    return _warehouse_place("dbt_postgres", target, run), server.stop


@pytest.fixture(scope="module", params=PLACES)
def place(request, tmp_path_factory) -> Iterator[Place]:
    root = tmp_path_factory.mktemp(request.param)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("UD_HOME", str(root / "ud-home"))  # the targets' locks, MLflow's defaults
        mp.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
        if request.param == "mlflow_alias":
            from tests.test_mlflow_alias import mlflow_uris_restored

            with mlflow_uris_restored():
                made, close = _mlflow_alias(root)
                yield made
                return
        if request.param == "dbt_postgres":
            made, close = _dbt_postgres(root, mp)
        else:
            made, close = {
                "local_release": _local_release,
                "local_artifact": _local_artifact,
                "dbt_duckdb": _dbt_duckdb,
            }[request.param](root)
        try:
            yield made
        finally:
            close()


def _deploy_both(place: Place, env: str) -> Deployment:
    place.target.deploy(place.unit, env, place.v1)
    return place.target.deploy(place.unit, env, place.v2)


def _named(text: str, version: str) -> bool:
    return re.search(rf"(?<![\w.]){re.escape(version)}(?![\w.])", text) is not None


def test_a_first_and_a_second_version_deploy_and_report_status_and_previous(place):
    p, env = place, "c_first"
    assert p.target.status(p.unit, env) is None and p.serving(env) is None
    assert not p.target.health(p.unit, env).healthy

    first = p.target.deploy(p.unit, env, p.v1)
    assert (first.unit, first.env, first.version, first.previous_version) == (
        p.unit.name,
        env,
        p.v1.version,
        None,
    )
    assert p.state(env) == (p.v1.version, None, first.deployed_at)
    assert p.serving(env) == p.v1.version
    assert p.target.health(p.unit, env).healthy

    second = p.target.deploy(p.unit, env, p.v2)
    assert (second.version, second.previous_version) == (p.v2.version, p.v1.version)
    assert p.state(env) == (p.v2.version, p.v1.version, second.deployed_at)
    assert p.serving(env) == p.v2.version
    assert p.target.health(p.unit, env).healthy
    versions = p.target.versions(p.unit, env)
    assert versions.index(p.v2.version) < versions.index(p.v1.version), versions  # newest first


def test_rollback_returns_to_the_previous_version_and_forward_again(place):
    p, env = place, "c_roll"
    _deploy_both(p, env)
    back = p.target.rollback(p.unit, env)
    assert (back.version, back.previous_version) == (p.v1.version, p.v2.version)
    assert p.state(env) == (p.v1.version, p.v2.version, back.deployed_at)
    assert p.serving(env) == p.v1.version
    assert p.target.health(p.unit, env).healthy

    forward = p.target.rollback(p.unit, env, to_version=p.v2.version)
    assert (forward.version, forward.previous_version) == (p.v2.version, p.v1.version)
    assert p.serving(env) == p.v2.version


def test_a_failing_deploy_keeps_the_previous_version_serving(place):
    p, env = place, "c_fail"
    _deploy_both(p, env)
    before = p.state(env)
    with pytest.raises(TargetError) as failed:
        p.target.deploy(p.unit, env, p.broken)
    assert failed.value.code == p.broken_code and failed.value.remediation
    assert p.state(env) == before  # version, previous version and deploy time: as they were
    assert p.serving(env) == p.v2.version
    assert p.target.health(p.unit, env).healthy
    assert (
        p.target.rollback(p.unit, env).version == p.v1.version
    )  # the rollback point is intact too


def test_an_exception_of_any_type_in_a_step_is_a_target_error_and_the_environment_is_put_back(
    place,
):
    """The caller's log fails at its first line: before the switch for some targets, after it
    for others (the alias moved, the views re-pointed); either way the environment is as before."""
    p, env = place, "c_raise"
    _deploy_both(p, env)
    before = p.state(env)

    def broken_log(message: str) -> None:
        raise RuntimeError("the log sink is gone")

    for call in (
        lambda: p.target.deploy(p.unit, env, p.v1, log=broken_log),
        lambda: p.target.rollback(p.unit, env, log=broken_log),
    ):
        with pytest.raises(TargetError) as failed:
            call()
        assert failed.value.code == "UD-TARGET-FAILED"
        assert (
            "RuntimeError: the log sink is gone" in failed.value.message
            and failed.value.remediation
        )
        assert isinstance(failed.value.__cause__, RuntimeError)
        assert p.state(env) == before
        assert p.serving(env) == p.v2.version
    assert p.target.rollback(p.unit, env).version == p.v1.version


def test_redeploying_the_current_version_keeps_the_rollback_point(place):
    p, env = place, "c_again"
    _deploy_both(p, env)
    again = p.target.deploy(p.unit, env, p.v2)
    assert (again.version, again.previous_version) == (p.v2.version, p.v1.version)
    assert p.target.rollback(p.unit, env).version == p.v1.version


def test_rollback_to_an_unknown_version_names_the_versions_that_exist(place):
    p, env = place, "c_unknown"
    _deploy_both(p, env)
    before = p.state(env)
    with pytest.raises(TargetError) as unknown:
        p.target.rollback(p.unit, env, to_version="999")
    assert unknown.value.code == "UD-TARGET-NO-RELEASE"
    text = f"{unknown.value.message} {unknown.value.remediation}"
    assert _named(text, "999") and f"{p.v2.version}, {p.v1.version}" in text, text
    assert p.state(env) == before and p.serving(env) == p.v2.version


def test_rollback_without_a_previous_version_is_refused_and_changes_nothing(place):
    p, env = place, "c_none"
    never, first = p.no_previous
    with pytest.raises(TargetError) as nothing:
        p.target.rollback(p.unit, env)
    assert nothing.value.code == never and p.target.status(p.unit, env) is None
    p.target.deploy(p.unit, env, p.v1)
    before = p.state(env)
    with pytest.raises(TargetError) as only_one:
        p.target.rollback(p.unit, env)
    assert only_one.value.code == first
    assert p.state(env) == before and p.serving(env) == p.v1.version


def test_names_that_cannot_name_a_release_are_refused_before_anything_is_touched(place):
    p = place
    for env, version in (
        ("../c_kind", "v1"),
        ("c_kind", "../v1"),
        ("c_kind", "v1.tmp-x"),
        ("c_kind", ""),
    ):
        with pytest.raises(TargetError) as bad:
            p.target.deploy(p.unit, env, replace(p.v1, version=version))
        assert bad.value.code == "UD-TARGET-ARTIFACT"
    with pytest.raises(TargetError) as bad_env:
        p.target.rollback(p.unit, "c kind")
    assert bad_env.value.code == "UD-TARGET-ARTIFACT"
    assert p.target.status(p.unit, "c_kind") is None


def test_a_unit_of_another_kind_or_an_artifact_of_another_unit_is_refused(place):
    p, env = place, "c_kind"
    other: Unit = (
        AppUnit(name="other", team="t", repository="/nowhere")
        if p.unit.kind != "app"
        else AssetUnit(name="other", team="t", asset_key="other")
    )
    for unit, artifact in (
        (other, replace(p.v1, unit="other", kind=other.kind)),
        (p.unit, replace(p.v1, unit="someone_else")),
    ):
        with pytest.raises(TargetError) as refused:
            p.target.deploy(unit, env, artifact)
        assert refused.value.code == "UD-TARGET-ARTIFACT"
    assert p.target.status(p.unit, env) is None


def test_one_deploy_at_a_time_per_unit_and_environment(place):
    p, env = place, "c_lock"
    done: list[Deployment] = []
    worker = threading.Thread(target=lambda: done.append(p.target.deploy(p.unit, env, p.v1)))
    with p.target._lock(p.unit, env):  # as another deploy of this unit and environment would
        worker.start()
        worker.join(1.0)
        assert worker.is_alive() and not done, "the deploy did not wait for the lock"
        assert p.target.status(p.unit, env) is None
    worker.join(60)
    assert [d.version for d in done] == [p.v1.version] and p.serving(env) == p.v1.version
