"""The escape hatch: a plain Dagster asset, wrapped with `ud.wrap_asset`, goes candidate ->
staging -> production through the platform's jobs on a real Dagster instance, its own
asset checks gate it, and its target publishes and rolls back its file."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import dagster as dg
import pytest

import unified_delivery as ud
from unified_delivery.service import promote, rollback
from unified_delivery.service import approve
from unified_delivery.cost import CostModel
from unified_delivery.errors import ConfigError, TargetError
from unified_delivery.governance import Governance, PolicyFile
from unified_delivery.home import Home
from unified_delivery.kinds.asset.values import read_value, write_value
from unified_delivery.ledger import LedgerResource
from unified_delivery.targets.base import Artifact
from unified_delivery.targets.local_artifact import LocalArtifactTarget

ROOT = Path(__file__).resolve().parents[1]
UNIT = "daily_totals"


class Source(dg.ConfigurableResource):
    """Where the plain asset reads its rows: the test changes the file between builds."""

    path: str


@dg.asset(description="Totals per day, as the analytics team wrote it.")
def daily_totals(source: Source) -> list:
    rows = json.loads(Path(source.path).read_text())
    if rows == "boom":
        raise ValueError("the upstream export is corrupt")
    return rows


@dg.asset_check(asset=daily_totals, blocking=True)
def has_rows(daily_totals: list) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(passed=len(daily_totals) > 0, metadata={"rows": len(daily_totals)})


POLICY = PolicyFile(principals={
    "human:local-operator": {"roles": {"*": ["deploy", "approve", "override", "admin"]}},
    "human:olivia": {"roles": {"production": ["deploy", "approve"]}},
    "agent:release-bot": {"roles": {"staging": ["deploy"]}},
    "service:sensors": {"roles": {"*": ["deploy"]}},  # the reconcile sensor's self-heal
})


def platform_in(home: Path, source: Path, *, self_heal: bool = False) -> ud.Platform:
    resources = {"source": Source(path=str(source))}
    units = [
        ud.wrap_asset(daily_totals, team="analytics", checks=[has_rows], resources=resources,
                      gates=[ud.gate("cost"), ud.gate("health", stage="staging")], budget={"per_run": 1.0},
                      policy={"approvals": {"production": 1}, "self_heal": self_heal}),
        # the same asset under a budget no build can meet: the measured cost refuses it
        ud.wrap_asset(daily_totals, name="frugal_totals", team="analytics", resources=resources,
                      gates=[ud.gate("cost")], budget={"per_run": 0.0}),
    ]
    return ud.Platform(units, targets={"asset": LocalArtifactTarget(home=str(home))},
                       ledger=LedgerResource(url=f"sqlite:///{home / 'ledger.db'}"), governance=Governance(POLICY),
                       costs=CostModel.from_file(ROOT / "resources" / "prices.yaml"))


@dataclass
class Story:
    platform: ud.Platform
    target: LocalArtifactTarget
    outcomes: dict[str, Any] = field(default_factory=dict)
    staging: dict[str, Any] = field(default_factory=dict)  # what staging published after each step
    production: dict[str, Any] = field(default_factory=dict)
    instance: dg.DagsterInstance | None = None  # the home's instance the runs are on

    def ledger(self, **where):
        return self.platform.ledger.ledger().entries(unit=UNIT, **where)


@pytest.fixture(scope="module")
def story(tmp_path_factory) -> Iterator[Story]:
    """One run of the whole life of the wrapped asset, every step a Dagster run on the home's instance."""
    root = tmp_path_factory.mktemp("escape-hatch")
    home, source = Home(root / "home"), root / "source.json"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("UD_HOME", str(home.root))
        mp.setenv("DAGSTER_HOME", str(home.dagster_home))
        mp.delenv("UD_TOKEN", raising=False)
        platform = platform_in(home.root, source)
        defs = platform.definitions()
        unit = platform.unit(UNIT)
        s = Story(platform, platform.target(unit, "staging"))  # one target, every environment

        def step(name: str, rows: Any, run) -> None:
            if rows is not None:
                source.write_text(json.dumps(rows))
            s.outcomes[name] = run()
            for env, seen in (("staging", s.staging), ("production", s.production)):
                dep = s.target.status(unit, env)
                seen[name] = dep and (dep.version, Path(dep.details["path"]).read_bytes())

        step("v1 to staging", [{"day": "2026-11-01", "total": 3}], lambda: promote(platform, defs, UNIT, "staging", home=home))
        step("v1 to production by an agent", None,
             lambda: promote(platform, defs, UNIT, "production", principal="agent:release-bot", home=home))
        step("v1 to production unapproved", None, lambda: promote(platform, defs, UNIT, "production", home=home))
        v1 = s.staging["v1 to staging"][0]
        approve(platform, "human:olivia", UNIT, "production", v1)
        step("v1 to production", None, lambda: promote(platform, defs, UNIT, "production", home=home))
        step("empty to staging", [], lambda: promote(platform, defs, UNIT, "staging", home=home))
        step("broken to staging", "boom", lambda: promote(platform, defs, UNIT, "staging", home=home))
        step("v2 to staging", [{"day": "2026-11-01", "total": 3}, {"day": "2026-11-02", "total": 4}],
             lambda: promote(platform, defs, UNIT, "staging", home=home))
        approve(platform, "human:olivia", UNIT, "production", s.staging["v2 to staging"][0])
        step("v2 to production", None, lambda: promote(platform, defs, UNIT, "production", home=home))
        step("v2 rebuilt", None, lambda: promote(platform, defs, UNIT, "staging", home=home))
        step("rollback", None, lambda: rollback(platform, defs, UNIT, "production", reason="totals look off", home=home))
        s.outcomes["frugal"] = promote(platform, defs, "frugal_totals", "staging", home=home)
        s.outcomes["frugal status"] = s.target.status(platform.unit("frugal_totals"), "staging")
        s.outcomes["read"] = s.target.read(unit, "production")
        s.instance = dg.DagsterInstance.get()
        s.outcomes["home"], s.outcomes["source"] = home, source
        yield s
        s.instance.dispose()


def test_the_graph_is_candidate_staging_production_with_the_checks_as_gates(story):
    graph = story.platform.definitions().resolve_asset_graph()
    stages = [dg.AssetKey([UNIT, s]) for s in ("candidate", "staging", "production")]
    assert all(k in graph.get_all_asset_keys() for k in stages)
    assert graph.get(stages[1]).parent_keys == {stages[0]} and graph.get(stages[2]).parent_keys == {stages[1]}
    checks = {c.name for c in graph.asset_check_keys if c.asset_key == stages[0]}
    assert checks == {"has_rows", "cost", "policy"}
    assert {g.family for g in story.platform.gates[UNIT] if g.name == "has_rows"} == {"tests"}


def ran_in(instance: dg.DagsterInstance, run_id: str) -> tuple[set, set]:
    """The assets a run materialized and the checks it evaluated, from its event log."""
    materialized, evaluated = set(), set()
    for record in instance.get_records_for_run(run_id, limit=10_000).records:
        event = record.event_log_entry.dagster_event
        if event is None:
            continue
        if event.event_type == dg.DagsterEventType.ASSET_MATERIALIZATION:
            materialized.add(event.asset_key)
        if event.event_type == dg.DagsterEventType.ASSET_CHECK_EVALUATION:
            data = event.event_specific_data
            evaluated.add(dg.AssetCheckKey(data.asset_key, data.check_name))
    return materialized, evaluated


def test_a_promotion_runs_its_environments_job_for_its_own_unit_alone(story):
    """One job per environment holds every unit's promotion to it; a run selects one unit's
    stages and gates, and the other unit's, in the same job, are left alone."""
    candidate, staging = dg.AssetKey([UNIT, "candidate"]), dg.AssetKey([UNIT, "staging"])
    job = story.platform.definitions().resolve_job_def("ud_promote_staging")
    other = dg.AssetKey(["frugal_totals", "staging"])
    assert {staging, other} <= set(job.asset_layer.selected_asset_keys)  # both units' in one job
    gates = {dg.AssetCheckKey(candidate, n) for n in ("has_rows", "cost", "policy")}
    run = story.instance.get_run_by_id(story.outcomes["v1 to staging"].run_id)
    assert ran_in(story.instance, run.run_id) == ({candidate, staging}, gates)
    # to production: the gates of staging run again, then production; nothing else
    run = story.instance.get_run_by_id(story.outcomes["v1 to production"].run_id)
    assert run.job_name == "ud_promote_production" and run.tags["ud/env"] == "production"
    health = {dg.AssetCheckKey(staging, n) for n in ("approval", "health", "policy")}
    assert ran_in(story.instance, run.run_id) == ({dg.AssetKey([UNIT, "production"])}, health)
    # the other unit's own run, in the same job, touched none of the first unit's
    run = story.instance.get_run_by_id(story.outcomes["frugal"].run_id)
    materialized, evaluated = ran_in(story.instance, run.run_id)
    assert run.job_name == "ud_promote_staging" and run.tags["ud/unit"] == "frugal_totals"
    assert {k.path[0] for k in materialized | {c.asset_key for c in evaluated}} == {"frugal_totals"}
    assert {c.name for c in evaluated} == {"cost", "policy"}


def test_a_wrapped_asset_goes_to_production_through_its_gates(story):
    staged, produced = story.outcomes["v1 to staging"], story.outcomes["v1 to production"]
    assert staged.success, staged.error
    assert staged.materialized == [f"{UNIT}/candidate", f"{UNIT}/staging"]
    assert produced.success and produced.materialized == [f"{UNIT}/production"]
    version, published = story.production["v1 to production"]
    assert version == story.staging["v1 to staging"][0]
    assert json.loads(published) == [{"day": "2026-11-01", "total": 3}]
    run = story.instance.get_run_by_id(staged.run_id)
    assert run.job_name == "ud_promote_staging" and run.status == dg.DagsterRunStatus.SUCCESS
    assert run.tags["ud/unit"] == UNIT and run.tags["ud/env"] == "staging"  # found by its tags
    gates = {e.payload["gate"]: e.payload for e in story.ledger(action="gate") if e.version == version and e.env == "staging"}
    assert gates["has_rows"]["code"] == "UD-GATE-ASSET-CHECK-PASSED" and gates["has_rows"]["metadata"]["rows"] == 1
    assert gates["cost"]["passed"] and gates["cost"]["metadata"]["run_cost"] > 0  # measured, not declared
    assert gates["policy"]["passed"]
    candidate = next(e for e in story.ledger(action="candidate") if e.version == version)
    assert candidate.payload["artifact"]["digest"].startswith(f"sha256:{version}")
    assert candidate.payload["usage"]["cpu_seconds"] > 0


def test_governance_refuses_production_until_permitted_and_approved(story):
    agent = story.outcomes["v1 to production by an agent"]
    assert agent.error.code == "UD-AUTH-FORBIDDEN" and agent.error.exit_code == 4
    unapproved = story.outcomes["v1 to production unapproved"]
    assert unapproved.error.code == "UD-GATE-REFUSED" and unapproved.error.exit_code == 3
    assert [c["code"] for c in unapproved.failed_checks] == ["UD-GATE-APPROVAL-PENDING"]
    for name in ("v1 to production by an agent", "v1 to production unapproved"):
        assert story.production[name] is None  # nothing was published
    assert [e.principal for e in story.ledger(action="approval")] == ["human:olivia", "human:olivia"]


def test_a_failing_check_refuses_and_staging_keeps_its_file(story):
    refused = story.outcomes["empty to staging"]
    assert not refused.success and refused.error.code == "UD-GATE-REFUSED" and refused.error.exit_code == 3
    assert [c["code"] for c in refused.failed_checks] == ["UD-GATE-ASSET-CHECK-FAILED"]
    assert story.staging["empty to staging"] == story.staging["v1 to staging"]  # same version, same bytes
    failed = [e for e in story.ledger(action="gate") if e.payload["gate"] == "has_rows" and not e.payload["passed"]]
    assert len(failed) == 1 and failed[0].payload["metadata"]["rows"] == 0


def test_an_asset_that_raises_deploys_nothing(story):
    broken = story.outcomes["broken to staging"]
    assert broken.error.code == "UD-ASSET-BUILD-FAILED" and broken.error.exit_code == 5
    assert "the upstream export is corrupt" in broken.error.message
    assert story.staging["broken to staging"] == story.staging["v1 to staging"]
    assert story.ledger(action="build-failed")[0].payload["code"] == "UD-ASSET-BUILD-FAILED"


def test_the_version_is_the_content_digest(story):
    v1, v2 = story.staging["v1 to staging"][0], story.staging["v2 to staging"][0]
    assert v1 != v2 and story.outcomes["v2 rebuilt"].success
    assert story.staging["v2 rebuilt"] == story.staging["v2 to staging"]
    assert [e.version for e in story.ledger(action="already-deployed")] == [v2]


def test_rollback_returns_production_to_the_previous_version(story):
    assert story.outcomes["rollback"].success, story.outcomes["rollback"].error
    v1, v2 = story.staging["v1 to staging"][0], story.staging["v2 to staging"][0]
    assert story.production["v2 to production"][0] == v2
    assert story.production["rollback"] == story.production["v1 to production"]
    assert story.outcomes["read"] == [{"day": "2026-11-01", "total": 3}]
    entry = story.ledger(action="rollback")[-1]
    assert (entry.version, entry.payload["from_version"], entry.payload["reason"]) == (v1, v2, "totals look off")
    assert story.target.health(story.platform.unit(UNIT), "production").healthy
    assert [(e.env, e.version) for e in story.ledger(action="promotion")] == \
        [("staging", v1), ("production", v1), ("staging", v2), ("production", v2)]
    assert story.platform.ledger.ledger().verify().ok


def test_the_measured_cost_refuses_a_build_over_its_budget(story):
    refused = story.outcomes["frugal"]
    assert refused.error.code == "UD-GATE-REFUSED" and [c["code"] for c in refused.failed_checks] == ["UD-GATE-COST-RUN"]
    assert story.outcomes["frugal status"] is None


# -- what is refused when the unit is declared ----------------------------------------------------

@dg.asset
def needs_upstream(daily_totals: list) -> int:
    return len(daily_totals)


@dg.asset(partitions_def=dg.StaticPartitionsDefinition(["a"]))
def partitioned() -> int:
    return 1


@dg.multi_asset(specs=[dg.AssetSpec("left"), dg.AssetSpec("right")])
def two_assets():
    return None


@dg.asset_check(asset=needs_upstream)
def other_asset_check() -> dg.AssetCheckResult:
    return dg.AssetCheckResult(passed=True)


@pytest.mark.parametrize("call, code, says", [
    (lambda: ud.wrap_asset(needs_upstream, team="t"), "UD-CONFIG-ASSET", "field asset: needs_upstream takes inputs"),
    (lambda: ud.wrap_asset(partitioned, team="t"), "UD-CONFIG-ASSET", "is partitioned"),
    (lambda: ud.wrap_asset(two_assets, team="t"), "UD-CONFIG-ASSET", "a multi-asset (left, right)"),
    (lambda: ud.wrap_asset(lambda: 1, team="t"), "UD-CONFIG-ASSET", "is not a Dagster asset"),
    (lambda: ud.wrap_asset(daily_totals, team="t"), "UD-CONFIG-ASSET",
     "field resources: the asset or its checks need resources ['source']"),
    (lambda: ud.wrap_asset(daily_totals, team="t", resources={"source": Source(path="x"), "io_manager": dg.fs_io_manager}),
     "UD-CONFIG-ASSET", "['io_manager'] name IO managers"),
    (lambda: ud.wrap_asset(daily_totals, team="t", checks=[other_asset_check], resources={"source": Source(path="x")}),
     "UD-CONFIG-ASSET", "field checks: check 'other_asset_check' checks needs_upstream"),
    (lambda: ud.wrap_asset(daily_totals, team="t", name="Daily", resources={"source": Source(path="x")}),
     "UD-CONFIG-UNIT", "field name"),
    (lambda: ud.Platform([ud.wrap_asset(daily_totals, team="t", resources={"source": Source(path="x")},
                                        gates=[ud.gate("asset-check", check="has_rows")])]),
     "UD-CONFIG-GATE", "'has_rows' is not a check wrapped with daily_totals"),
    (lambda: ud.Platform([ud.wrap_asset(daily_totals, team="t", resources={"source": Source(path="x")},
                                        gates=[ud.gate("tests")])]),
     "UD-CONFIG-GATE", "does not apply to asset units"),
])
def test_what_cannot_run_is_refused_when_declared(call, code, says):
    with pytest.raises(ConfigError) as info:
        call()
    assert info.value.code == code and says in info.value.message, info.value.message


@dg.asset
def nums() -> list:
    return [1, 2]


@dg.multi_asset_check(specs=[dg.AssetCheckSpec("positive", asset=nums), dg.AssetCheckSpec("short", asset=nums)])
def nums_checks(nums: list):
    yield dg.AssetCheckResult(check_name="positive", passed=all(n > 0 for n in nums))
    yield dg.AssetCheckResult(check_name="short", passed=len(nums) < 2, severity=dg.AssetCheckSeverity.WARN)


@dg.asset_check(asset=nums)
def explodes(nums: list) -> dg.AssetCheckResult:
    raise RuntimeError("the reference table is gone")


def test_each_check_of_a_multi_check_is_its_own_gate_on_the_stored_value(tmp_path, ud_home):
    from unified_delivery.engine import evaluate_gate

    platform = ud.Platform([ud.wrap_asset(nums, team="t", checks=[nums_checks, explodes],
                                          gates=[ud.gate("asset-check", name="short_strict", check="short", fail_on_warn=True,
                                                         stage="staging")])],
                           targets={"asset": LocalArtifactTarget(home=str(ud_home))})
    stored = write_value([3, -1, 4], tmp_path)  # not what the asset returns: the gates judge the stored value
    artifact = Artifact(unit="nums", kind="asset", version="v", location=str(stored))
    results = {g.name: evaluate_gate(platform, platform.unit("nums"), g, "v", artifact, "human:local-operator", None)
               for g in platform.gates["nums"] if g.type == "asset-check"}
    assert {n: r.code for n, r in results.items()} == {"positive": "UD-GATE-ASSET-CHECK-FAILED",
                                                       "short": "UD-GATE-ASSET-CHECK-WARNED",
                                                       "short_strict": "UD-GATE-ASSET-CHECK-FAILED",
                                                       "explodes": "UD-GATE-ERROR"}
    assert results["short"].passed and results["short"].metadata["severity"] == "WARN"
    crashed = results["explodes"]  # a check that raises could not judge: never a pass
    assert not crashed.passed and crashed.metadata["cause"] == "UD-GATE-ASSET-CHECK-ERROR"
    assert "the reference table is gone" in crashed.message


# -- the stored value and the target --------------------------------------------------------------

@pytest.mark.parametrize("value, suffix", [
    ({"b": [1, 2.5, None], "a": "x"}, ".json"), ("text", ".txt"), (b"\x00raw", ".bin"),
    ((1, 2), ".pickle"), ({1: "int key"}, ".pickle"),  # JSON would change them: kept exactly
])
def test_values_are_stored_in_a_format_that_keeps_them(tmp_path, value, suffix):
    path = write_value(value, tmp_path)
    assert path.suffix == suffix and read_value(path) == value


def test_a_dataframe_is_stored_as_parquet(tmp_path):
    import pandas as pd

    frame = pd.DataFrame({"day": ["a", "b"], "total": [3, 4]})
    path = write_value(frame, tmp_path)
    assert path.suffix == ".parquet"
    pd.testing.assert_frame_equal(read_value(path), frame)
    mixed = pd.DataFrame({"a": [1, "x"]})  # Arrow cannot type the column: kept exactly, pickled
    (tmp_path / "mixed").mkdir()
    path = write_value(mixed, tmp_path / "mixed")
    assert path.suffix == ".pickle" and read_value(path).equals(mixed)


def _built(tmp_path: Path, content: bytes) -> Artifact:
    import hashlib

    digest = hashlib.sha256(content).hexdigest()
    path = tmp_path / "builds" / digest[:12] / "value.json"
    path.parent.mkdir(parents=True)
    path.write_bytes(content)
    return Artifact(unit="u", kind="asset", version=digest[:12], digest=f"sha256:{digest}", location=str(path))


def test_the_target_switches_rolls_back_and_notices_a_changed_file(tmp_path):
    unit = ud.AssetUnit(name="u", team="t", asset_key="u")
    target = LocalArtifactTarget(home=str(tmp_path / "home"))
    one, two = _built(tmp_path, b"[1]"), _built(tmp_path, b"[2]")
    assert not target.health(unit, "staging").healthy  # rollbacks of nothing: the contract
    target.deploy(unit, "staging", one)
    dep = target.deploy(unit, "staging", two)
    assert (dep.version, dep.previous_version) == (two.version, one.version)
    assert target.read(unit, "staging") == [2] and target.versions(unit, "staging") == [two.version, one.version]
    Path(two.location).write_bytes(b"[3]")  # the build changed after it was built: refused, staging unchanged
    with pytest.raises(TargetError) as info:
        target.deploy(unit, "production", two)
    assert info.value.code == "UD-TARGET-ARTIFACT" and target.status(unit, "production") is None
    back = target.rollback(unit, "staging", one.version)
    assert (back.version, back.previous_version) == (one.version, two.version) and target.read(unit, "staging") == [1]
    assert target.health(unit, "staging").healthy
    target.path(unit, "staging").write_bytes(b"[9]")  # someone edits the published file in place
    health = target.health(unit, "staging")
    assert not health.healthy and "changed after it was published" in health.message


# -- the `ud` command ------------------------------------------------------------------------------

DEFINITIONS = '''
import json
from pathlib import Path

import dagster as dg

import unified_delivery as ud


class Source(dg.ConfigurableResource):
    path: str


@dg.asset
def daily_totals(source: Source) -> list:
    return json.loads(Path(source.path).read_text())


@dg.asset_check(asset=daily_totals)
def has_rows(daily_totals: list) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(passed=len(daily_totals) > 0)


platform = ud.Platform([ud.wrap_asset(daily_totals, team="analytics", checks=[has_rows],
                                      resources={"source": Source(path=str(Path(__file__).parents[1] / "source.json"))})])
defs = platform.definitions()
'''


def test_ud_promote_drives_a_wrapped_asset_from_a_platform_repository(tmp_path, run_ud):
    project = tmp_path / "platform"
    (project / "assets").mkdir(parents=True)
    (project / "assets" / "__init__.py").write_text("")
    (project / "assets" / "definitions.py").write_text(DEFINITIONS)
    (project / "source.json").write_text("[1]")
    done = run_ud("promote", UNIT, "--to", "staging", "--json", project=project)
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout)["version"]
    (project / "source.json").write_text("[]")
    refused = run_ud("promote", UNIT, "--to", "staging", "--json", project=project)
    assert refused.returncode == 3, refused.stderr[-2000:]
    error = json.loads(refused.stdout)["error"]
    assert error["code"] == "UD-GATE-REFUSED" and "has_rows (UD-GATE-ASSET-CHECK-FAILED)" in error["message"]


# -- drift: `current` switched by hand -------------------------------------------------------------

def test_current_switched_by_hand_is_drift_and_self_heal_publishes_the_recorded_version(story, monkeypatch):
    """After the story (production back on v1, v2 still kept), production's `current` is pointed
    at v2 with plain `ln -sfn`, as someone without `ud` would: status shows it as drift, the
    reconcile sensor records it, and for `self_heal: true` publishes v1 again through a rollback."""
    import subprocess

    from unified_delivery.service import status
    from unified_delivery.triggers.standard import with_standard_sensors
    from unified_delivery.triggers.tick import tick

    home, unit = story.outcomes["home"], story.platform.unit(UNIT)
    monkeypatch.setenv("UD_HOME", str(home.root))
    monkeypatch.setenv("DAGSTER_HOME", str(home.dagster_home))
    monkeypatch.setenv("UD_PROJECT", str(home.root))  # no Git repository: checkpoints stay in the home
    v1, v2 = story.staging["v1 to staging"][0], story.staging["v2 to staging"][0]
    root = home.root / "artifacts" / UNIT / "production"
    subprocess.run(["ln", "-sfn", f"versions/{v2}", str(root / "current")], check=True)
    moved = story.target.status(unit, "production")
    assert (moved.version, moved.details["published_version"]) == (v2, v1)
    assert not story.target.health(unit, "production").healthy
    production = status(story.platform)["units"][0]["environments"]["production"]
    assert (production["version"], production["actual_version"], production["in_sync"]) == (v1, v2, False)

    head = story.platform.ledger.ledger().head()
    seen = tick(with_standard_sensors(story.platform, "service:sensors"), home, ["ud_reconcile"])
    assert seen["sensors"][0]["requested"] == []  # no self_heal: noticed and recorded only
    # The same tick anchored the ledger: a signed checkpoint of the head, outside the ledger.
    from unified_delivery.ledger import checkpoints

    (kept,) = [n for n in seen["sensors"][0]["notes"] if n.get("event") == "checkpoint"]
    checkpoint, problems = checkpoints.newest(home)
    assert problems == [] and checkpoint.seq > head.seq  # the head after the drift entry
    assert f"entry {checkpoint.seq}" in kept["message"]
    (drift,) = [e for e in story.ledger(action="drift") if e.env == "production"]
    assert (drift.version, drift.payload["recorded_version"]) == (v2, v1)

    healing = platform_in(home.root, story.outcomes["source"], self_heal=True)
    healed = tick(with_standard_sensors(healing, "service:sensors"), home, ["ud_reconcile"])
    assert [r["outcome"] for r in healed["sensors"][0]["requested"]] == ["success"], healed
    production = status(story.platform)["units"][0]["environments"]["production"]
    assert (production["version"], production["actual_version"], production["in_sync"]) == (v1, v1, True)
    assert story.target.read(unit, "production") == [{"day": "2026-11-01", "total": 3}]
    assert story.target.health(unit, "production").healthy
    assert not [n for n in healed["sensors"][0]["notes"] if n.get("event") == "checkpoint"]  # hourly
    assert story.platform.ledger.ledger().verify(checkpoint=checkpoint).ok
