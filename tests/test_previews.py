"""Preview environments per branch, end to end on real components: an app and a dbt project in
Git repositories with bare remotes, branches pushed with the git CLI, the Git sensor ticking
(its runs executed in this process on a real Dagster instance). The app's preview answers HTTP
on loopback on its own port, the data unit's preview is a schema of its own in DuckDB with the
unchanged model deferred to production, the verdict is a Git note read back with plain
`git notes --ref=ud show`, and `ud previews --json` lists them from the ledger."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import dagster as dg
import duckdb
import pytest

from unified_delivery import Platform
from unified_delivery.cost import CostModel
from unified_delivery.governance import Governance, PolicyFile
from unified_delivery.home import Home
from unified_delivery.ledger import LedgerResource
from unified_delivery.previews import env_for, live, merged_note, slug
from unified_delivery.service import promote
from unified_delivery.targets.dbt_duckdb import DbtDuckDBTarget
from unified_delivery.targets.local_release import LocalReleaseTarget
from unified_delivery.triggers.standard import standard_sensors
from unified_delivery.triggers.tick import tick

ROOT = Path(__file__).resolve().parents[1]
UD = str(Path(sys.executable).with_name("ud"))
SENSORS = "service:sensors"
POLICY = PolicyFile(principals={
    "human:local-operator": {"roles": {"*": ["deploy", "approve", "override", "admin"]}},
    SENSORS: {"roles": {"*": ["deploy"]}},
})

APP = '''
import json, os, sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

GREETING = "{greeting}"

class H(BaseHTTPRequestHandler):
    def do_GET(self):
        body = json.dumps({{"status": "ok", "greeting": GREETING, "env": os.environ["UD_ENV"],
                           "version": os.environ.get("UD_VERSION")}}).encode()
        self.send_response(200); self.send_header("Content-Type", "application/json"); self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass

ThreadingHTTPServer(("127.0.0.1", int(sys.argv[sys.argv.index("--port") + 1])), H).serve_forever()
'''
TEST = "def test_adds():\n    assert 1 + 1 == {total}\n"

DBT = {
    "dbt_project.yml": 'name: shop\nversion: "1.0.0"\nprofile: shop\n'
                       "models:\n  shop:\n    +materialized: table\n",
    "seeds/raw_orders.csv": "id,customer,amount\n1,ann,10\n2,bob,5\n3,ann,7\n",
    "models/orders.sql": "select id as order_id, customer, amount from {{ ref('raw_orders') }}\n",
    "models/customers.sql": "select customer, count(*) as orders from {{ ref('orders') }} group by 1\n",
    "models/schema.yml": "version: 2\nmodels:\n  - name: orders\n    columns:\n"
                         "      - name: order_id\n        data_tests: [unique, not_null]\n"
                         "  - name: customers\n    columns:\n"
                         "      - name: customer\n        data_tests: [unique]\n",
}
# The branch's change: one model; `orders` is unchanged and comes from production.
REVENUE = ("select customer, count(*) as orders, sum(amount) as revenue "
           "from {{ ref('orders') }} group by 1\n")

UNITS = {
    "svc.yaml": """\
type: unified_delivery.app
attributes:
  name: svc
  team: web
  repository: "{app_remote}"
  gates: [{{type: tests}}]
  service: {{startup_timeout_s: 15}}
""",
    "shop.yaml": """\
type: unified_delivery.data
attributes:
  name: shop
  team: analytics
  repository: "{data_remote}"
  select: "orders customers"
""",
}

DEFINITIONS = '''
from pathlib import Path

from unified_delivery import Platform
from unified_delivery.cost import CostModel
from unified_delivery.governance import Governance, PolicyFile
from unified_delivery.targets.dbt_duckdb import DbtDuckDBTarget
from unified_delivery.targets.local_release import LocalReleaseTarget

platform = Platform.from_directory(
    Path(__file__).parent / "units",
    targets={{"app": LocalReleaseTarget(), "data": DbtDuckDBTarget(warehouse={warehouse!r})}},
    governance=Governance(PolicyFile.model_validate({policy!r})),
    costs=CostModel.from_file({prices!r}),
)
defs = platform.definitions()
'''


def git(*args: str, cwd: Path) -> str:
    return subprocess.run(["git", "-c", "user.name=Dana", "-c", "user.email=dana@example.com", *args],
                          cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


class Repo:
    """A bare remote and a developer's clone that pushes to it with the git CLI."""

    def __init__(self, root: Path, name: str):
        self.remote, self.work = root / f"{name}.git", root / name
        git("init", "-q", "--bare", "--initial-branch=main", str(self.remote), cwd=root)
        git("clone", "-q", str(self.remote), str(self.work), cwd=root)
        git("checkout", "-q", "-b", "main", cwd=self.work)

    def push(self, branch: str, files: dict[str, str], message: str) -> str:
        """Commit `files` on `branch` (a new one from main) and push it; the clone is left on main."""
        if branch != "main":
            known = git("branch", "--list", branch, cwd=self.work)
            git("checkout", "-q", *([branch] if known else ["-b", branch, "main"]), cwd=self.work)
        for name, text in files.items():
            (self.work / name).parent.mkdir(parents=True, exist_ok=True)
            (self.work / name).write_text(text)
        git("add", "-A", cwd=self.work)
        git("commit", "-q", "-m", message, cwd=self.work)
        git("push", "-q", "origin", branch, cwd=self.work)
        sha = git("rev-parse", "HEAD", cwd=self.work)
        git("checkout", "-q", "main", cwd=self.work)
        return sha

    def note(self, sha: str) -> str:
        """The commit's verdict as a developer reads it: fetch the notes, `git notes show`."""
        git("fetch", "-q", "origin", "+refs/notes/ud:refs/notes/ud", cwd=self.work)
        return git("notes", "--ref=ud", "show", sha, cwd=self.work)


@dataclass
class World:
    root: Path
    home: Home
    app: Repo
    data: Repo
    platform: Platform
    defs: dg.Definitions
    warehouse: Path
    project: Path

    def ledger(self):
        return self.platform.ledger.ledger()

    def preview(self, unit: str, branch: str):
        return self.ledger().latest(unit=unit, env=env_for(branch), action="preview")

    def query(self, sql: str) -> list[tuple]:
        con = duckdb.connect(str(self.warehouse), read_only=True)
        try:
            return con.execute(sql).fetchall()
        finally:
            con.close()

    def tick(self) -> list[tuple[str, str, str]]:
        report = tick(self.defs, self.home, ["ud_git_push"])
        (entry,) = report["sensors"]
        assert entry["error"] is None, entry
        return sorted((r["what"], r["outcome"], r["run_key"]) for r in entry["requested"])


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Iterator[World]:
    root = tmp_path_factory.mktemp("previews")
    app, data = Repo(root, "svc"), Repo(root, "shop")
    project = root / "platform"
    units = project / "assets" / "units"
    units.mkdir(parents=True)
    (project / "assets" / "__init__.py").write_text("")
    for name, text in UNITS.items():
        (units / name).write_text(text.format(app_remote=app.remote, data_remote=data.remote))
    warehouse = root / "w.duckdb"
    prices = str(ROOT / "resources" / "prices.yaml")
    (project / "assets" / "definitions.py").write_text(DEFINITIONS.format(
        warehouse=str(warehouse), policy=POLICY.model_dump(exclude_unset=True), prices=prices))
    home = Home(root / "home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("UD_HOME", str(home.root))
        mp.setenv("DAGSTER_HOME", str(home.dagster_home))
        mp.setenv("UD_DBT_CACHE", str(root / "dbt-cache"))
        mp.delenv("UD_TOKEN", raising=False)
        app.push("main", {"app.py": APP.format(greeting="hello"), "test_app.py": TEST.format(total=2)},
                 "the service")
        data.push("main", DBT, "the shop")
        platform = Platform.from_directory(
            units,
            targets={"app": LocalReleaseTarget(), "data": DbtDuckDBTarget(warehouse=str(warehouse))},
            ledger=LedgerResource(url=f"sqlite:///{home.root / 'ledger.db'}"),
            governance=Governance(POLICY),
            costs=CostModel.from_file(Path(prices)),
        )
        base = platform.definitions()
        defs = dg.Definitions.merge(base, dg.Definitions(sensors=standard_sensors(platform, base, SENSORS)))
        w = World(root, home, app, data, platform, defs, warehouse, project)
        # main of both goes to staging (the sensor's first look), the shop on to production:
        # what a data preview defers its unchanged models to.
        assert [(j, o) for j, o, _ in w.tick()] == [("shop to staging", "success"),
                                                   ("svc to staging", "success")]
        out = promote(platform, defs, "shop", "production", home=home)
        assert out.error is None, out.error
        try:
            yield w
        finally:
            LocalReleaseTarget().stop_all()


def get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=5) as resp:
        return json.loads(resp.read())


def test_branch_names_become_distinct_safe_environments():
    assert slug("add-revenue") == "add-revenue"
    assert env_for("add-revenue") == "preview-add-revenue"
    a, b = slug("feat/x"), slug("feat-x")
    assert a != b and a.startswith("feat-x-") and b == "feat-x"
    assert slug("Feature/Login_Page") != slug("feature/login-page")
    long = slug("x" * 200)
    assert len(long) <= 40 and long.startswith("xxx")
    assert slug("///") and slug("--") != slug("///")
    # One note per commit holds one block per unit: a second preview replaces its own block.
    two = merged_note(merged_note("", "a", "ud preview a: PASSED\n  x"), "b", "ud preview b: REFUSED")
    assert merged_note(two, "a", "ud preview a: REFUSED") == "ud preview b: REFUSED\n\nud preview a: REFUSED\n"


def test_a_pushed_branch_gets_its_own_app_and_schema_and_a_git_note(world):
    started = time.monotonic()
    app_sha = world.app.push("feature/Login", {"app.py": APP.format(greeting="preview!")}, "a new greeting")
    data_sha = world.data.push("add-revenue", {"models/customers.sql": REVENUE}, "revenue per customer")
    ran = world.tick()
    ready_s = time.monotonic() - started
    app_env, data_env = env_for("feature/Login"), env_for("add-revenue")
    assert [(j, o) for j, o, _ in ran] == [("ud_preview", "success"), ("ud_preview", "success")], ran
    assert {k.split(":")[-1] for _, _, k in ran} == {"svc", "shop"}

    # The app: its own release on its own loopback port, the branch's code; staging untouched.
    entry = world.preview("svc", "feature/Login")
    assert entry.version == app_sha and entry.payload["passed"], entry.payload
    url = entry.payload["url"]
    assert url.startswith("http://127.0.0.1:")
    body = get(url + "/")
    assert body == {"status": "ok", "greeting": "preview!", "env": app_env, "version": app_sha}
    staging = world.platform.target(world.platform.unit("svc"), "staging").status(world.platform.unit("svc"), "staging")
    assert staging is not None and staging.version != app_sha
    assert get(staging.details["url"] + "/")["greeting"] == "hello"
    assert (world.home.root / "releases" / "svc" / app_env / "releases" / app_sha).is_dir()
    assert entry.payload["gates"]["tests"] and entry.payload["team"] == "web"
    assert entry.payload["cost"]["amount"] >= 0 and entry.payload["usage"]

    # The data unit: its own schema; the changed model built, the unchanged one from production.
    shop = world.preview("shop", "add-revenue")
    assert shop.payload["passed"] and shop.payload["schema"] == data_env, shop.payload
    assert shop.payload["build"]["commit"] == data_sha
    assert shop.payload["build"]["built"] == ["model.shop.customers"], shop.payload["build"]
    assert shop.payload["build"]["reused"] == ["model.shop.orders"]
    assert world.query(f'select customer, orders, revenue from "{data_env}".customers order by 1') == [
        ("ann", 2, 17), ("bob", 1, 5)]
    assert world.query("select count(*) from production.orders") == [(3,)]
    with pytest.raises(duckdb.BinderException):  # production has not changed
        world.query("select revenue from production.customers")

    # The verdict on the commit, with plain git, in the developer's clone.
    note = world.app.note(app_sha)
    assert note.startswith("ud preview svc: PASSED"), note
    assert f"env:     {app_env}" in note and url in note and "tests=" in note
    data_note = world.data.note(data_sha)
    assert "ud preview shop: PASSED" in data_note and f"at:      schema {data_env}" in data_note
    # In the bare remote too: that is what `git fetch` read.
    assert "PASSED" in git("notes", "--ref=ud", "show", app_sha, cwd=world.app.remote)

    # The run list shows the previews by their tag.
    from unified_delivery.runner import instance as open_instance

    runs = open_instance(world.home).get_runs(filters=dg.RunsFilter(tags={"ud/preview": "feature/Login"}))
    assert [r.job_name for r in runs] == ["ud_preview"]

    # Pushing the same branch again moves the same preview to the new commit.
    again = world.app.push("feature/Login", {"app.py": APP.format(greeting="second")}, "another")
    assert [(j, o) for j, o, _ in world.tick()] == [("ud_preview", "success")]
    moved = world.preview("svc", "feature/Login")
    assert moved.version == again and get(moved.payload["url"] + "/")["greeting"] == "second"
    rows = {(r["unit"], r["branch"]): r for r in live(world.ledger())}
    assert rows[("svc", "feature/Login")]["version"] == again
    print(f"push -> preview ready (app and data, one tick): {ready_s:.1f} s; in the preview runs: "
          f"svc {entry.payload['seconds']:.1f} s, shop {shop.payload['seconds']:.1f} s")
    print(f"$ git notes --ref=ud show {app_sha[:12]}\n{note}\n$ git notes --ref=ud show {data_sha[:12]}\n{data_note}")


def test_a_branch_whose_gate_fails_is_refused_and_says_so_on_the_commit(world):
    sha = world.app.push("broken", {"test_app.py": TEST.format(total=3)}, "a failing test")
    assert [(j, o) for j, o, _ in world.tick()] == [("ud_preview", "failed")]
    entry = world.preview("svc", "broken")
    assert entry.version == sha and not entry.payload["passed"]
    assert entry.payload["code"] == entry.payload["gates"]["tests"] and entry.payload["code"] != "UD-OK"
    assert entry.payload["url"] == ""
    # Nothing was deployed for it.
    assert not (world.home.root / "releases" / "svc" / env_for("broken")).exists()
    note = world.app.note(sha)
    assert note.startswith("ud preview svc: REFUSED") and "why:" in note and "gate tests" in note

    # A failing push to a branch whose preview runs: refused, and the last good push serves on.
    before = world.preview("svc", "feature/Login")
    bad = world.app.push("feature/Login", {"test_app.py": TEST.format(total=3)}, "breaks the test")
    assert [(j, o) for j, o, _ in world.tick()] == [("ud_preview", "failed")]
    refused = world.preview("svc", "feature/Login")
    assert refused.version == bad and not refused.payload["passed"]
    assert refused.payload["serving"] == before.version and refused.payload["url"] == before.payload["url"]
    assert get(refused.payload["url"] + "/")["greeting"] == "second"
    assert world.app.note(bad).startswith("ud preview svc: REFUSED")


def test_a_branch_named_like_another_branchs_preview_is_refused_not_mixed_up(world):
    first = world.app.push("feat/x", {"app.py": APP.format(greeting="feat/x")}, "feat/x")
    assert [(j, o) for j, o, _ in world.tick()] == [("ud_preview", "success")]
    twin = slug("feat/x")  # a safe name: as a branch it keeps it, and so the same environment
    world.app.push(twin, {"app.py": APP.format(greeting="twin")}, "the twin")
    report = tick(world.defs, world.home, ["ud_git_push"])
    (ran,) = report["sensors"][0]["requested"]
    assert ran["outcome"] == "failed" and ran["error"]["code"] == "UD-PREVIEW-SLUG-TAKEN", ran
    entry = world.preview("svc", "feat/x")
    assert entry.payload["branch"] == "feat/x" and entry.version == first
    assert get(entry.payload["url"] + "/")["greeting"] == "feat/x"


def test_ud_previews_lists_them_from_the_ledger(world):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("UD_", "DAGSTER"))}
    env.update(UD_HOME=str(world.home.root), UD_PROJECT=str(world.project))
    proc = subprocess.run([UD, "previews", "--json"], cwd=world.project, env=env, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    data = data.get("data", data)
    rows = {(r["unit"], r["branch"]): r for r in data["previews"]}
    assert rows[("svc", "feature/Login")]["verdict"] == "refused"  # its last push; the one before serves
    assert rows[("svc", "feature/Login")]["url"].startswith("http://127.0.0.1:")
    assert rows[("svc", "feat/x")]["verdict"] == "passed"
    assert rows[("shop", "add-revenue")]["schema"] == "preview-add-revenue"
    assert rows[("svc", "broken")]["verdict"] == "refused"
    assert all(r["expires_at"] and not r["expired"] for r in rows.values())
    proc = subprocess.run([UD, "previews", "svc"], cwd=world.project, env=env, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "feature/Login" in proc.stdout and "add-revenue" not in proc.stdout
    print(f"$ ud previews svc\n{proc.stdout}")
    # The listing is a read of the record: no Dagster import on its path.
    code = ("import sys; import unified_delivery.commands.previews, unified_delivery.previews; "
            "assert 'dagster' not in sys.modules, 'dagster imported'")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).returncode == 0


def test_deleting_or_merging_a_branch_tears_its_preview_down(world):
    app_env, data_env = env_for("feature/Login"), env_for("add-revenue")
    url = world.preview("svc", "feature/Login").payload["url"]
    assert get(url + "/")["env"] == app_env
    # Deleted: a push that deletes the branch.
    git("push", "-q", "origin", "--delete", "feature/Login", cwd=world.app.work)
    # Merged: the data branch merged into main and pushed (main itself builds to staging).
    git("merge", "-q", "--no-ff", "-m", "merge add-revenue", "add-revenue", cwd=world.data.work)
    git("push", "-q", "origin", "main", cwd=world.data.work)
    ran = world.tick()
    assert [(j, o) for j, o, _ in ran] == [("shop to staging", "success"), ("ud_preview_teardown", "success"),
                                           ("ud_preview_teardown", "success")], ran
    downs = {e.unit: e for e in world.ledger().entries(action="preview-teardown")}
    assert downs["svc"].env == app_env and downs["svc"].payload["why"] == "deleted"
    assert downs["shop"].env == data_env and downs["shop"].payload["why"] == "merged"
    # The app is stopped and its release folder gone; staging still serves.
    with pytest.raises(OSError):
        get(url + "/")
    assert not (world.home.root / "releases" / "svc" / app_env).exists()
    unit = world.platform.unit("svc")
    staging = world.platform.target(unit, "staging").status(unit, "staging")
    assert get(staging.details["url"] + "/")["greeting"] == "hello"
    # The schema is dropped; staging now has the merged model.
    with pytest.raises(duckdb.CatalogException):
        world.query(f'select * from "{data_env}".customers')
    assert world.query("select customer, revenue from staging.customers order by 1") == [("ann", 17), ("bob", 5)]
    assert {r["unit"] for r in live(world.ledger())} == {"svc"}  # the refused `broken` one is left
    # A second tick asks for nothing more: each preview is torn down once.
    assert world.tick() == []


def test_a_forgotten_preview_expires_and_its_cost_shows_under_the_team(world):
    from datetime import UTC, datetime, timedelta

    from unified_delivery.engine.preview import prune
    from unified_delivery.reports.cost import report
    from unified_delivery.reports.period import window

    sha = world.app.push("forgotten", {"app.py": APP.format(greeting="old")}, "left behind")
    assert [(j, o) for j, o, _ in world.tick()] == [("ud_preview", "success")]
    entry = world.preview("svc", "forgotten")
    assert entry.version == sha
    assert prune(world.platform, "human:local-operator") == []  # not expired yet: nothing goes
    later = datetime.now(UTC) + timedelta(hours=73)  # past the default time to live, 72 h
    pruned = prune(world.platform, "human:local-operator", now=later)
    assert {(r["unit"], r["branch"]) for r in pruned} == {("svc", "forgotten"), ("svc", "broken"),
                                                          ("svc", "feat/x")}
    assert not (world.home.root / "releases" / "svc" / env_for("forgotten")).exists()
    assert live(world.ledger()) == []
    why = {e.payload["branch"]: e.payload["why"] for e in world.ledger().entries(action="preview-teardown")}
    assert why["forgotten"] == "expired"

    # Showback: what the previews cost is in the team's spend, and apart as preview spend.
    entries = world.ledger().entries()
    shown = report(entries, window(until=later), {"svc": {"team": "web"}, "shop": {"team": "analytics"}})
    web = next(t for t in shown["teams"] if t["team"] == "web")
    spent = sum(e.payload["cost"]["amount"] for e in entries if e.action == "preview" and e.unit == "svc")
    assert spent > 0 and web["preview_spend"] == pytest.approx(spent, abs=1e-5)
    assert web["spend"] >= web["preview_spend"]
    svc = next(u for u in shown["units"] if u["unit"] == "svc")
    assert svc["by_action"]["preview"] == svc["preview_spend"]


def test_an_app_that_serves_a_model_previews_with_the_model_under_the_preview_alias(tmp_path, ud_home):
    """The app's preview reads the model of its own environment: the platform sets the alias
    `preview-<slug>` on the model's staging version, and removes it with the preview."""
    from unified_delivery.engine.preview import run_preview, tear_down
    from unified_delivery.kinds.app.unit import AppUnit
    from unified_delivery.kinds.model.unit import ModelUnit
    from unified_delivery.targets.base import Artifact
    from unified_delivery.targets.mlflow_alias import MlflowAliasTarget

    repo = Repo(tmp_path, "scorer")
    repo.push("main", {"app.py": APP.format(greeting="score")}, "the scorer")
    registry = MlflowAliasTarget(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}",
                                 artifact_root=str(tmp_path / "artifacts"))
    (tmp_path / "eval.csv").write_text("tenure_days,churned\n10,1\n400,0\n")
    model = ModelUnit(name="churn", team="ml", registered_model="churn-reg", label="churned",
                      evaluation_dataset=str(tmp_path / "eval.csv"))
    app = AppUnit(name="scorer", team="web", repository=str(repo.remote), serves="churn",
                  service={"startup_timeout_s": 15})
    platform = Platform([model, app], targets={"app": LocalReleaseTarget(), "model": registry},
                        ledger=LedgerResource(url=f"sqlite:///{ud_home / 'ledger.db'}"),
                        governance=Governance(POLICY))
    client = registry.client()
    client.create_registered_model("churn-reg")
    (tmp_path / "artifacts").mkdir()
    version = client.create_model_version("churn-reg", source=(tmp_path / "artifacts").as_uri()).version
    registry.deploy(model, "staging", Artifact("churn", "model", str(version)))

    sha = repo.push("try-model", {"app.py": APP.format(greeting="with model")}, "uses the model")
    ledger = platform.ledger.ledger()
    done = run_preview(platform, app, "try-model", sha, ledger=ledger, principal="human:local-operator")
    assert done.verdict.passed, done.verdict
    env = env_for("try-model")
    assert str(client.get_model_version_by_alias("churn-reg", env).version) == str(version)
    entry = ledger.latest(unit="scorer", env=env, action="preview")
    assert entry.payload["alias"] == f"models:/churn-reg@{env}"
    assert get(entry.payload["url"] + "/")["greeting"] == "with model"

    removed = tear_down(platform, app, "try-model", "manual", ledger=ledger, principal="human:local-operator")
    assert removed and f"alias churn-reg@{env}" in removed
    assert env not in client.get_registered_model("churn-reg").aliases
    assert str(client.get_model_version_by_alias("churn-reg", "staging").version) == str(version)  # untouched
    assert tear_down(platform, app, "try-model", "manual", ledger=ledger, principal="human:local-operator") is None


def test_a_unit_sets_its_own_time_to_live_or_turns_previews_off(tmp_path):
    from pydantic import ValidationError

    from unified_delivery.kinds.app.unit import AppUnit
    from unified_delivery.triggers.git import app_watches

    repo = tmp_path / "r.git"
    git("init", "-q", "--bare", str(repo), cwd=tmp_path)
    short = AppUnit(name="short", team="web", repository=str(repo), previews={"ttl_hours": 0.5})
    off = AppUnit(name="off", team="web", repository=str(repo), previews={"enabled": False},
                  policy={"staging": "manual"})
    with pytest.raises(ValidationError):
        AppUnit(name="bad", team="web", repository=str(repo), previews={"ttl_hours": 0})
    platform = Platform([short, off], targets={"app": LocalReleaseTarget()})
    from unified_delivery.engine.preview import _ttl

    assert _ttl(short) == 0.5 and _ttl(off) == 72.0
    (watch,) = app_watches(platform, Home(tmp_path / "home"))
    # `off` has a manual staging and no previews: nothing of it is watched.
    assert [(b.unit, b.preview_job) for b in watch.builds] == [("short", "ud_preview")]
