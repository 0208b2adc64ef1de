"""A dbt project as a team has it, never edited by the platform: staging and mart layers,
seeds, a local package named in packages.yml, a `relationships` test spanning two models,
in a Git repository pushed to a bare remote. A data unit declares it by repository; the Git
sensor builds each pushed commit (a checkout of it), candidate -> staging -> production; the
next change builds only what changed since production; a broken commit is refused with its
real cause; and `git status` of the project is clean at the end.

Real Git, real dbt on a real DuckDB file, a real Dagster instance; the runs execute in this
process (triggers.tick, service.promote). The dbt cache is the module's own, so what it
holds is what these builds made.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import dagster as dg
import duckdb
import pytest

from unified_delivery import Platform
from unified_delivery.dbt_state import kept, plan
from unified_delivery.governance import Governance, PolicyFile
from unified_delivery.home import Home
from unified_delivery.ledger import LedgerResource
from unified_delivery.service import promote
from unified_delivery.targets.dbt_duckdb import DbtDuckDBTarget
from unified_delivery.triggers.git import app_watches, git_sensor
from unified_delivery.triggers.tick import tick

SENSORS = "service:sensors"
POLICY = PolicyFile(principals={
    "human:local-operator": {"roles": {"*": ["deploy", "approve", "override", "admin"]}},
    SENSORS: {"roles": {"*": ["deploy"]}},
})

# The project, as its files are in the team's repository: the dbt project in warehouse/, a
# package of the team's macros beside it in shop_utils/.
FILES = {
    "warehouse/dbt_project.yml": """\
name: warehouse
version: "1.0.0"
profile: warehouse
models:
  warehouse:
    staging: {+materialized: view}
    marts: {+materialized: table}
""",
    "warehouse/packages.yml": "packages:\n  - local: ../shop_utils\n",
    "warehouse/.gitignore": "target/\nlogs/\ndbt_packages/\n",
    "warehouse/seeds/raw_customers.csv": "id,name\n1,Ann\n2,Bob\n3,Cy\n",
    "warehouse/seeds/raw_orders.csv": "id,customer_id,amount_cents\n10,1,1250\n11,2,300\n12,1,990\n",
    "warehouse/models/staging/stg_customers.sql":
        "select id as customer_id, name\nfrom {{ ref('raw_customers') }}\n",
    "warehouse/models/staging/stg_orders.sql":
        "select\n    id as order_id,\n    customer_id,\n"
        "    {{ shop_utils.cents_to_dollars('amount_cents') }} as amount\n"
        "from {{ ref('raw_orders') }}\n",
    "warehouse/models/staging/_staging.yml": """\
version: 2
models:
  - name: stg_customers
    columns:
      - name: customer_id
        data_tests: [unique, not_null]
  - name: stg_orders
    columns:
      - name: order_id
        data_tests: [unique, not_null]
""",
    "warehouse/models/marts/customers.sql": """\
select
    c.customer_id,
    c.name,
    count(o.order_id) as orders,
    coalesce(sum(o.amount), 0) as revenue
from {{ ref('stg_customers') }} as c
left join {{ ref('stg_orders') }} as o on o.customer_id = c.customer_id
group by 1, 2
""",
    "warehouse/models/marts/orders.sql":
        "select order_id, customer_id, amount\nfrom {{ ref('stg_orders') }}\n",
    "warehouse/models/marts/_marts.yml": """\
version: 2
models:
  - name: customers
    columns:
      - name: customer_id
        data_tests: [unique, not_null]
  - name: orders
    columns:
      - name: order_id
        data_tests: [unique]
      - name: customer_id
        data_tests:
          - relationships:
              arguments: {to: ref('customers'), field: customer_id}
""",
    "shop_utils/dbt_project.yml": 'name: shop_utils\nversion: "1.0.0"\nconfig-version: 2\n',
    "shop_utils/macros/cents.sql":
        "{% macro cents_to_dollars(col) %}({{ col }} / 100.0){% endmacro %}\n",
}

UNIT = """\
type: unified_delivery.data
attributes:
  name: marts
  team: analytics
  repository: "{remote}"
  project: warehouse
  select: "customers orders"
"""

# One model per unit, declared by path: the relationships test from orders to customers
# still runs (customers is built for it), and the working copy stays as it was.
ORDERS_ONLY = """\
type: unified_delivery.data
attributes:
  name: orders_only
  team: analytics
  project: "{work}/warehouse"
  select: orders
  policy: {{staging: manual}}
"""


def git(*args: str, cwd: Path) -> str:
    return subprocess.run(["git", "-c", "user.name=Ann", "-c", "user.email=ann@example.com", *args],
                          cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


def commit(work: Path, message: str, changes: dict[str, str], branch: str = "main") -> str:
    """Commit `changes` on `branch` (from main) and push it; the clone is left on main."""
    if branch != "main":
        git("checkout", "-q", "-B", branch, "main", cwd=work)
    for name, text in changes.items():
        (work / name).parent.mkdir(parents=True, exist_ok=True)
        (work / name).write_text(text)
    git("add", "-A", cwd=work)
    git("commit", "-q", "-m", message, cwd=work)
    git("push", "-q", "origin", branch, cwd=work)
    sha = git("rev-parse", "HEAD", cwd=work)
    git("checkout", "-q", "main", cwd=work)
    return sha


@dataclass
class Shop:
    root: Path
    remote: Path
    work: Path
    home: Home
    platform: Platform
    defs: dg.Definitions  # the platform's and the Git sensor
    target: DbtDuckDBTarget
    base: dg.Definitions  # the platform's alone

    def commit(self, message: str, changes: dict[str, str], branch: str = "main") -> str:
        return commit(self.work, message, changes, branch)

    def unit(self, name: str = "marts"):
        return self.platform.unit(name)

    def served(self, env: str, name: str = "marts") -> str | None:
        dep = self.target.status(self.unit(name), env)
        return dep.version if dep else None

    def query(self, sql: str) -> list[tuple]:
        con = duckdb.connect(str(self.root / "w.duckdb"), read_only=True)
        try:
            return con.execute(sql).fetchall()
        finally:
            con.close()

    def candidate(self, name: str = "marts"):
        """The newest candidate entry of the unit in the ledger."""
        return self.platform.ledger.ledger().latest(unit=name, action="candidate")

    def dbt_tests(self, name: str = "marts") -> dict:
        """The newest result of the unit's dbt-tests gate, as the ledger has it."""
        gates = self.platform.ledger.ledger().entries(unit=name, action="gate")
        found = [e.payload for e in gates if "dbt" in str(e.payload.get("gate"))]
        assert found, [e.payload for e in gates]
        return found[-1]

    def details(self, name: str = "marts") -> dict:
        return self.candidate(name).payload["artifact"]["details"]


@pytest.fixture(scope="module")
def shop(tmp_path_factory) -> Iterator[Shop]:
    root = tmp_path_factory.mktemp("dbt-projects")
    remote, work = root / "shop.git", root / "shop"
    git("init", "-q", "--bare", "--initial-branch=main", str(remote), cwd=root)
    git("clone", "-q", str(remote), str(work), cwd=root)
    git("checkout", "-q", "-b", "main", cwd=work)
    units = root / "platform" / "units"
    units.mkdir(parents=True)
    (units / "marts.yaml").write_text(UNIT.format(remote=remote))
    (units / "orders_only.yaml").write_text(ORDERS_ONLY.format(work=work))
    home = Home(root / "home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("UD_HOME", str(home.root))
        mp.setenv("DAGSTER_HOME", str(home.dagster_home))
        mp.setenv("UD_DBT_CACHE", str(root / "dbt-cache"))
        mp.delenv("UD_TOKEN", raising=False)
        commit(work, "the shop's warehouse", FILES)
        target = DbtDuckDBTarget(warehouse=str(root / "w.duckdb"))
        platform = Platform.from_directory(units, targets={"data": target},
                                           ledger=LedgerResource(url=f"sqlite:///{home.root / 'ledger.db'}"),
                                           governance=Governance(POLICY))
        base = platform.definitions()
        jobs = {j.name: j for j in base.jobs}
        sensor = git_sensor("git", lambda: app_watches(platform, home), [jobs["ud_promote_staging"]], principal=SENSORS)
        defs = dg.Definitions.merge(base, dg.Definitions(sensors=[sensor]))
        yield Shop(root, remote, work, home, platform, defs, target, base)


def requested(report: dict) -> list[tuple[str, str]]:
    entry = next(s for s in report["sensors"] if s["name"] == "git")
    return [(r["what"], r["outcome"]) for r in entry["requested"]]


def test_a_push_is_built_from_its_commit_and_promoted_to_production(shop):
    first = git("rev-parse", "HEAD", cwd=shop.work)
    # An edit not committed: the build is of the pushed commit, never of a working copy.
    (shop.work / "warehouse/models/marts/orders.sql").write_text("selec nothing\n")
    try:
        report = tick(shop.defs, shop.home)
    finally:
        git("checkout", "--", "warehouse/models/marts/orders.sql", cwd=shop.work)
    assert requested(report) == [("marts to staging", "success")]
    built = shop.candidate()
    details = shop.details()
    assert details["commit"] == first
    # The parents the selection reads were built in its audit schema (no production yet).
    assert not details["slim"] and "model.warehouse.stg_orders" in details["built"]
    assert shop.served("staging") == built.version
    assert shop.query('select customer_id, orders, revenue from staging.customers order by 1') == [
        (1, 2, 22.4), (2, 1, 3.0), (3, 0, 0)]
    tests = shop.dbt_tests()
    assert tests["passed"] and tests["metadata"]["tests"] == 4, tests

    out = promote(shop.platform, shop.defs, "marts", "production", home=shop.home)
    assert out.error is None, out.error
    assert shop.served("production") == built.version
    assert shop.target.production_state(shop.unit()) is not None

    # A Git sensor looking for the first time (a new daemon, `ud ui` opened) does not build again
    # the commit the platform built: a data unit's version is a digest, its commit a detail.
    jobs = {j.name: j for j in shop.base.jobs}
    fresh = git_sensor("git_fresh", lambda: app_watches(shop.platform, shop.home), [jobs["ud_promote_staging"]],
                       principal=SENSORS)
    again = tick(dg.Definitions.merge(shop.base, dg.Definitions(sensors=[fresh])), shop.home)
    assert next(s for s in again["sensors"] if s["name"] == "git_fresh")["requested"] == []


def test_a_unit_of_one_model_runs_the_test_spanning_two(shop):
    out = promote(shop.platform, shop.defs, "orders_only", "staging", home=shop.home)
    assert out.error is None, out.error
    gate = shop.dbt_tests("orders_only")
    assert gate["passed"], gate
    # unique on order_id and the relationships test to customers, built for it in the audit schema
    assert gate["metadata"]["tests"] == 2, gate
    assert shop.query("select count(*) from staging.orders") == [(3,)]


def test_a_change_builds_only_what_changed_since_production(shop):
    sha = shop.commit("orders carry their amount in cents too", {
        "warehouse/models/marts/orders.sql":
            "select order_id, customer_id, amount, amount * 100 as amount_cents\nfrom {{ ref('stg_orders') }}\n"})
    report = tick(shop.defs, shop.home)
    assert requested(report) == [("marts to staging", "success")]
    details = shop.details()
    assert details["commit"] == sha and details["slim"]
    assert details["built"] == ["model.warehouse.orders"]
    assert details["reused"] == ["model.warehouse.customers"]
    assert set(details["deferred"]) >= {"model.warehouse.stg_orders", "model.warehouse.stg_customers"}
    assert shop.served("staging") == shop.candidate().version != shop.served("production")
    assert shop.query("select amount_cents from staging.orders order by order_id") == [(1250,), (300,), (990,)]
    assert shop.query("select count(*) from staging.customers") == [(3,)]


BROKEN = {
    "compile error": (
        {"warehouse/models/marts/customers.sql": "select\n    c.customer_id,\n    c.name\nfrom {{ ref('stg_customers') }} as c\nwhere c.name = = 'x'\n"},
        "UD-DATA-COMPILE-ERROR", "models/marts/customers.sql line 5"),
    "unknown ref": (
        {"warehouse/models/marts/orders.sql": "select *\nfrom {{ ref('stg_payments') }}\n"},
        "UD-DATA-COMPILE-ERROR", "models/marts/orders.sql"),
    "failing test": (
        {"warehouse/seeds/raw_orders.csv": FILES["warehouse/seeds/raw_orders.csv"] + "13,99,100\n"},
        "UD-GATE-DBT-TESTS-FAILED", '"from_field":99'),
    "missing parent": (
        {"warehouse/models/marts/_sources.yml": "version: 2\nsources:\n  - name: raw\n    tables: [{name: payments}]\n",
         "warehouse/models/marts/orders.sql": "select o.*\nfrom {{ ref('stg_orders') }} as o\n"
                                              "join {{ source('raw', 'payments') }} as p on p.order_id = o.order_id\n"},
        "UD-DATA-MISSING-PARENT", "reads source raw.payments"),
}


@pytest.mark.parametrize("case", list(BROKEN))
def test_a_broken_commit_is_refused_with_its_real_cause(shop, case):
    changes, code, cause = BROKEN[case]
    before = shop.served("staging")
    sha = shop.commit(case, changes, branch=f"broken-{case.replace(' ', '-')}")
    out = promote(shop.platform, shop.defs, "marts", "staging", ref=sha, home=shop.home)
    assert out.error is not None, case
    told = f"{out.error.code} {out.error.message} {out.error.remediation}".replace(" ", "")
    assert code in told, told  # a refused gate names its own code in the refusal
    assert cause.replace(" ", "") in told, told
    assert shop.served("staging") == before


def test_the_project_is_never_written_and_packages_install_once(shop):
    assert git("status", "--porcelain", "--ignored", cwd=shop.work) == ""
    cache = shop.root / "dbt-cache"
    # every commit had the same packages.yml: `dbt deps` ran once
    assert len([p for p in (cache / "packages").iterdir() if p.is_dir()]) == 1


# -- the plan, on a manifest's graph (pure) -------------------------------------------------

def node(uid: str, kind: str = "model", parents: tuple[str, ...] = ()) -> dict:
    return {"unique_id": uid, "resource_type": kind, "name": uid.split(".")[-1], "fqn": ["shop", uid.split(".")[-1]],
            "schema": "audit_v2", "relation_name": f'"w"."audit_v2"."{uid.split(".")[-1]}"',
            "depends_on": {"nodes": list(parents)}}


GRAPH = [node("seed.raw"), node("model.stg", parents=("seed.raw",)), node("model.customers", parents=("model.stg",)),
         node("model.orders", parents=("model.stg",)),
         node("test.rel", "test", parents=("model.orders", "model.customers")), node("model.unrelated")]
MANIFEST = {"nodes": {n["unique_id"]: n for n in GRAPH},
            "parent_map": {n["unique_id"]: n["depends_on"]["nodes"] for n in GRAPH}}


def test_a_plan_builds_what_a_selection_reads_then_defers_it_to_production():
    first = plan(MANIFEST, ["model.orders"], None, None)
    # the parents and the other model of the relationships test, nothing unrelated
    assert first.parents_built == ["model.customers", "model.stg", "seed.raw"] and not first.slim
    assert "fqn:shop.unrelated" not in first.args
    state = kept(MANIFEST, {"model.orders", "model.customers", "model.stg", "seed.raw"}, None)
    assert "model.unrelated" not in state["nodes"]  # never built: the next candidate sees it as new
    state["nodes"] = {u: {**n, "schema": "audit_v1"} for u, n in state["nodes"].items()}
    slim = plan(MANIFEST, ["model.orders"], state, Path("/state"))
    assert slim.slim and slim.parents_built == [] and slim.parents_deferred == ["model.customers", "model.stg", "seed.raw"]
    assert slim.args[-3:] == ["--defer", "--state", "/state"]
    assert slim.args[:2] == ["--select", "state:modified+"]
    assert slim.args[slim.args.index("--exclude") + 1] == "fqn:shop.unrelated"  # what the unit does not read
    # a node read from production keeps production's relation in the next kept state
    after = kept(MANIFEST, {"model.orders"}, state)
    assert after["nodes"]["model.stg"]["schema"] == "audit_v1" and after["nodes"]["model.orders"]["schema"] == "audit_v2"
