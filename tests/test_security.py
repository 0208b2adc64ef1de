"""Attacks on the platform's own promises, performed the way an insider would, each shown
refused, recorded, and changing nothing (docs/governance.md, "Threat model").

A tiny app platform (tests/tiny_platform.py) driven in this process through the service
functions `ud` calls, and, for the run-grant attacks, through a real Dagster webserver's
GraphQL API, the way anyone who can reach the UI would."""

from __future__ import annotations

import json
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests import tiny_platform as tiny
from unified_delivery.service import identity, promote, rollback
from unified_delivery.service import approve, override
from unified_delivery.errors import ConfigError, NotPermitted, UDError
from unified_delivery.governance import Governance, tokens
from unified_delivery.ledger import Ledger
from unified_delivery.targets.roles import ReleaseStore

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent

SENSOR_DEFINITIONS = '''
from pathlib import Path

from unified_delivery import Platform
from unified_delivery.governance import Governance
from unified_delivery.triggers.standard import with_standard_sensors

platform = Platform.from_directory(Path(__file__).parent / "units",
                                   governance=Governance.from_file(Path(__file__).parents[1] / "resources" / "policy.yaml"))
defs = with_standard_sensors(platform, "service:sensors")
'''


class Tiny:
    """The tiny platform loaded in this process, on its own home."""

    def __init__(self, paths: dict, monkeypatch: pytest.MonkeyPatch):
        from unified_delivery import Platform

        self.paths = paths
        monkeypatch.setenv("UD_HOME", str(paths["home"]))
        monkeypatch.setenv("DAGSTER_HOME", str(paths["home"] / "dagster"))
        monkeypatch.setenv("UD_PROJECT", str(paths["project"]))
        self.platform = Platform.from_directory(paths["project"] / "assets" / "units",
                                                governance=Governance.from_file(paths["project"] / "resources" / "policy.yaml"))
        self.defs = self.platform.definitions()
        self.ledger = self.platform.ledger.ledger()

    def promote(self, env: str, principal: str = "human:local-operator", ref: str = ""):
        return promote(self.platform, self.defs, "svc", env, principal=principal, ref=ref)

    def rollback(self, env: str, to: str = "", principal: str = "human:local-operator"):
        return rollback(self.platform, self.defs, "svc", env, to=to, reason="test", principal=principal)

    def running(self, env: str) -> str | None:
        unit = self.platform.unit("svc")
        dep = self.platform.target(unit, env).status(unit, env)
        return dep.version if dep else None

    def stop(self) -> None:
        for store in self.platform.targets.playing(ReleaseStore):
            store.stop_all()


@pytest.fixture
def svc(tmp_path, monkeypatch):
    made = Tiny(tiny.make(tmp_path, approvals=1), monkeypatch)
    yield made
    made.stop()


def _staged_and_approved(t: Tiny) -> str:
    ok = t.promote("staging")
    assert ok.success, ok.error
    v1 = t.running("staging")
    approve(t.platform, "human:olivia", "svc", "production", v1)
    assert t.promote("production").success
    return v1


# -- 4. a rollback is not an ungated promotion ---------------------------------------------

def test_a_rollback_only_goes_back_to_what_ran_there_through_policy_freeze_and_quota(svc, tmp_path, monkeypatch):
    v1 = _staged_and_approved(svc)
    v2 = tiny.commit(svc.paths["work"], "second")
    assert svc.promote("staging").success
    refused_by_gates = tiny.commit(svc.paths["work"], "breaks its test", passing=False)
    assert svc.promote("staging").error.code == "UD-GATE-REFUSED"  # built, refused: a candidate nobody staged

    # The attack: "roll back" production to a version its gates refused and nobody staged.
    out = svc.rollback("production", to=refused_by_gates)
    assert out.error.code == "UD-ROLLBACK-NOT-DEPLOYED" and out.error.exit_code == 4
    # What staging runs is no shortcut past production's approval either.
    out = svc.rollback("production", to=v2)
    assert out.error.code == "UD-GATE-APPROVAL-PENDING"
    assert svc.running("production") == v1
    refusals = [e.payload["code"] for e in svc.ledger.entries(action="refusal") if e.payload.get("action") == "rollback"]
    assert refusals == ["UD-ROLLBACK-NOT-DEPLOYED", "UD-GATE-APPROVAL-PENDING"]

    # A rollback needs the deploy right and stays inside an agent's quota (rollbacks count).
    out = svc.rollback("production", principal="agent:release-bot")
    assert out.error.code == "UD-AUTH-FORBIDDEN"
    for _ in range(2):  # the bot's quota: 2 changes to staging a day
        assert svc.rollback("staging", principal="agent:release-bot").success
    out = svc.rollback("staging", principal="agent:release-bot")
    assert out.error.code == "UD-AUTH-QUOTA" and "quota" in out.error.message

    # During a freeze, a rollback is refused like a promotion (a break-glass override lets it through).
    policy = svc.paths["project"] / "resources" / "policy.yaml"
    policy.write_text(policy.read_text().replace("freezes: []", "freezes: [{env: production, start: '2000-01-01T00:00', "
                                                                 "end: '2999-01-01T00:00', reason: audit}]"))
    frozen = Tiny(svc.paths, monkeypatch)
    assert svc.running("production") == v1
    assert frozen.rollback("staging").success  # staging is not frozen
    assert frozen.promote("staging", ref=v2).success and frozen.running("staging") == v2
    approve(frozen.platform, "human:olivia", "svc", "production", v2)
    override(frozen.platform, "human:local-operator", "svc", "freeze", v2, justification="fix during the audit freeze")
    assert frozen.promote("production").success and frozen.running("production") == v2
    out = frozen.rollback("production")  # back to v1: it ran there, but production is frozen
    assert out.error.code == "UD-GATE-FREEZE-ACTIVE" and frozen.running("production") == v2
    assert not [e for e in frozen.ledger.entries(action="rollback") if e.env == "production"]


# -- 5. an override is for someone, and never for the policy gate --------------------------

def test_an_override_serves_only_whom_it_names_and_never_the_policy_gate(svc):
    assert svc.promote("staging").success
    v1 = svc.running("staging")
    approve(svc.platform, "human:olivia", "svc", "production", v1)
    with pytest.raises(NotPermitted) as info:  # the admin's break-glass of the policy gate
        override(svc.platform, "human:local-operator", "svc", "policy", v1, justification="let the bot ship")
    assert info.value.code == "UD-OVERRIDE-POLICY"
    # An override recorded by an older version (no `for`, on the policy gate) is no key either.
    svc.ledger.append("override", principal="human:local-operator", unit="svc", env="production", version=v1,
                      payload={"gate": "policy", "family": "policy", "stage": "staging", "justification": "old",
                               "expires_at": "2999-01-01T00:00:00+00:00"})
    out = svc.promote("production", principal="agent:release-bot")
    assert out.error.code == "UD-AUTH-FORBIDDEN" and svc.running("production") is None
    bad = tiny.commit(svc.paths["work"], "breaks its test", passing=False)
    assert svc.promote("staging").error.code == "UD-GATE-REFUSED"
    override(svc.platform, "human:local-operator", "svc", "tests", bad, justification="hotfix 42",
             for_=["human:olivia"])
    # The agent may deploy to staging, but the override is olivia's: refused for the bot.
    out = svc.promote("staging", principal="agent:release-bot", ref=bad)
    assert out.error.code == "UD-GATE-REFUSED" and svc.running("staging") == v1
    assert svc.promote("staging", principal="human:olivia", ref=bad).success and svc.running("staging") == bad
    by_role = tiny.commit(svc.paths["work"], "breaks its test again", passing=False)
    assert svc.promote("staging").error
    override(svc.platform, "human:local-operator", "svc", "tests", by_role, justification="hotfix 43",
             for_=["role:approve"])  # anyone who may approve in staging: olivia, not the bot
    assert svc.promote("staging", principal="agent:release-bot", ref=by_role).error.code == "UD-GATE-REFUSED"
    with pytest.raises(UDError) as info:
        override(svc.platform, "human:local-operator", "svc", "tests", by_role, justification="x", for_=["role:fly"])
    assert info.value.code == "UD-USAGE"


# -- 6. four eyes: the author is who the platform saw, not who the commit names ----------

def test_an_author_cannot_approve_a_change_committed_under_another_name(svc):
    work = svc.paths["work"]
    (work / "NOTES").write_text("dana's change, committed as olivia")
    as_olivia = {**os.environ, "GIT_AUTHOR_NAME": "Olivia", "GIT_AUTHOR_EMAIL": "olivia@example.com",
                 "GIT_COMMITTER_NAME": "Olivia", "GIT_COMMITTER_EMAIL": "olivia@example.com"}
    for args in (["add", "-A"], ["commit", "-q", "-m", "x"], ["push", "-q", "origin", "main"]):
        subprocess.run(["git", *args], cwd=work, env=as_olivia, check=True, capture_output=True)
    assert svc.promote("staging", principal="human:dana").success  # dana builds it with her own identity
    version = svc.running("staging")
    for who in ("human:dana", "human:olivia"):  # who built it, and who the commit names
        with pytest.raises(NotPermitted) as info:
            approve(svc.platform, who, "svc", "production", version)
        assert info.value.code == "UD-APPROVAL-SELF"
    approve(svc.platform, "human:local-operator", "svc", "production", version)
    entry = svc.ledger.entries(action="approval")[-1]
    assert entry.payload["authors"]["established"] == ["human:dana"]
    assert entry.payload["authors"]["claimed"] == ["human:olivia"]
    # Built by a service alone, nobody answers for a change: no approval counts until someone does.
    tiny.commit(work, "pushed and built by the sensor only")
    assert svc.promote("staging", principal="service:dagster-ui").success
    with pytest.raises(NotPermitted) as info:
        approve(svc.platform, "human:olivia", "svc", "production", svc.running("staging"))
    assert info.value.code == "UD-APPROVAL-AUTHOR-UNKNOWN"
    assert [e.payload["code"] for e in svc.ledger.entries(action="refusal")][-3:] == [
        "UD-APPROVAL-SELF", "UD-APPROVAL-SELF", "UD-APPROVAL-AUTHOR-UNKNOWN"]


# -- 7. a typo never switches a control off ------------------------------------------------

@pytest.mark.parametrize("unit_policy, policy_edit, where", [
    ("{approvals: {prod: 1}}", None, "policy.approvals"),
    ("{approvals: {production: 1}}", ("freezes: []", "freezes: [{env: prodution, start: '2000-01-01', end: '2999-01-01'}]"),
     "freezes.0.env"),
    ("{approvals: {production: 1}}", ("staging: [deploy, approve]", "stagng: [deploy, approve]"), "roles"),
    ("{approvals: {production: 1}}", ("promotions_per_day: {staging: 2}", "promotions_per_day: {stage: 2}"),
     "quotas.promotions_per_day"),
])
def test_an_unknown_environment_in_a_control_is_refused_at_load(tmp_path, unit_policy, policy_edit, where):
    from unified_delivery import Platform

    paths = tiny.make(tmp_path)
    unit_file = paths["project"] / "assets" / "units" / "svc.yaml"
    unit_file.write_text(unit_file.read_text().replace("policy: {approvals: {production: 1}}", f"policy: {unit_policy}"))
    policy = paths["project"] / "resources" / "policy.yaml"
    if policy_edit:
        assert policy_edit[0] in policy.read_text()
        policy.write_text(policy.read_text().replace(*policy_edit))
    with pytest.raises(ConfigError) as info:
        Platform.from_directory(paths["project"] / "assets" / "units", governance=Governance.from_file(policy))
    assert info.value.code == "UD-CONFIG-UNKNOWN-ENV" and where in info.value.message


def test_a_misspelt_key_in_dbt_meta_is_refused_at_load(tmp_path):
    from unified_delivery import Platform

    project = tmp_path / "dbt_project"
    shutil.copytree(ROOT / "dbt_project", project, ignore=shutil.ignore_patterns("target", "logs"))
    schema = project / "models" / "schema.yml"
    text = schema.read_text()
    assert "      ud:\n" in text and "gates:" in text
    schema.write_text(text.replace("gates:", "gatess:", 1))
    (tmp_path / "no-yaml-units").mkdir()
    with pytest.raises(UDError) as info:
        Platform.from_directory(tmp_path / "no-yaml-units", dbt_projects=[project])
    assert info.value.code == "UD-CONFIG-DBT-META" and "'gatess'" in info.value.message


# -- 1. a run grant grants nothing outside its run ---------------------------------------

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _graphql(url: str, query: str, variables: dict | None = None) -> dict:
    req = urllib.request.Request(url + "/graphql", data=json.dumps({"query": query, "variables": variables or {}}).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=60) as resp:
        doc = json.loads(resp.read())
    assert not doc.get("errors"), doc["errors"]
    return doc["data"]


RUN_STATUS = "query($id: ID!) { runOrError(runId: $id) { __typename ... on Run { status } } }"


def _launch(url: str, job: str, config: dict, tags: dict) -> str:
    from unified_delivery.triggers.dagster_api import LAUNCH

    params = {"selector": {"repositoryLocationName": "tiny", "repositoryName": "__repository__", "jobName": job},
              "runConfigData": config, "executionMetadata": {"tags": [{"key": k, "value": v} for k, v in tags.items()]}}
    launched = _graphql(url, LAUNCH, {"params": params})["launchRun"]
    assert launched["__typename"] == "LaunchRunSuccess", launched
    run_id = launched["run"]["runId"]
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        status = _graphql(url, RUN_STATUS, {"id": run_id})["runOrError"]["status"]
        if status in ("SUCCESS", "FAILURE", "CANCELED"):
            return status
        time.sleep(1)
    raise AssertionError(f"run {run_id} did not finish")


def _run_tags(home: Path) -> list[tuple[str, str, str]]:
    """What a local user who reads the run storage sees: every run's tags."""
    with sqlite3.connect(home / "dagster" / "history" / "runs.db") as db:
        return db.execute("select run_id, key, value from run_tags").fetchall()


@pytest.mark.e2e
def test_copied_run_tags_and_dry_runs_authorize_nothing(tmp_path, monkeypatch):
    paths = tiny.make(tmp_path, approvals=0)
    (paths["project"] / "assets" / "definitions.py").write_text(SENSOR_DEFINITIONS)
    policy = paths["project"] / "resources" / "policy.yaml"
    policy.write_text(policy.read_text().replace(
        "principals:\n", "principals:\n  service:sensors: {roles: {staging: [deploy], production: [deploy]}}\n"))
    (paths["project"] / "workspace.yaml").write_text(
        f"load_from:\n  - python_module:\n      module_name: assets.definitions\n      working_directory: {paths['project']}\n"
        "      location_name: tiny\n")
    t = Tiny(paths, monkeypatch)
    try:
        assert t.promote("staging").success and t.promote("production").success
        v1 = t.running("production")
        v2 = tiny.commit(paths["work"], "second")
        tick = tiny.ud(paths, "sensors", "tick", "ud_git_push", "--json")  # the sensor's own run of v2
        assert tick.returncode == 0, tick.stderr[-2000:]
        assert t.running("staging") == v2
        assert t.promote("production").success and t.running("production") == v2

        # The home and its run storage are private to their owner.
        assert paths["home"].stat().st_mode & 0o077 == 0
        tags = _run_tags(paths["home"])
        assert not [v for _, _, v in tags if "ud1." in v or "grant" in v.lower()]
        for _, _, value in [t for t in tags if t[2]]:  # no tag value is a token
            with pytest.raises(NotPermitted):
                identity(t.platform, token=value)
        sensor_run_key = next(v for _, k, v in tags if k == "dagster/run_key")

        port = _free_port()
        url = f"http://127.0.0.1:{port}"
        env = {k: v for k, v in os.environ.items() if k == "UD_CODE_SERVER_IDLE_S" or not k.startswith(("UD_", "DAGSTER"))}
        env.update(UD_HOME=str(paths["home"]), UD_PROJECT=str(paths["project"]), DAGSTER_HOME=str(paths["home"] / "dagster"))
        web = subprocess.Popen([str(BIN / "dagster-webserver"), "-w", str(paths["project"] / "workspace.yaml"), "-h",
                                "127.0.0.1", "-p", str(port)], cwd=paths["project"], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            deadline = time.monotonic() + 180
            while True:
                try:
                    urllib.request.urlopen(url + "/server_info", timeout=5)
                    break
                except OSError:
                    assert web.poll() is None and time.monotonic() < deadline, "the webserver did not start"
                    time.sleep(1)
            # The attack of the review: a sensor run's tags, copied onto a launch of a production rollback.
            rollback_config = {"ops": {"rollback_unit": {"config": {"unit": "svc", "env": "production", "to_version": "",
                                                                   "reason": "copied tags"}}}}
            copied = {"dagster/run_key": sensor_run_key, "dagster/sensor_name": "ud_git_push",
                      "ud/principal": "service:sensors", "ud/unit": "svc", "ud/env": "production"}
            assert _launch(url, "ud_rollback", rollback_config, copied) == "FAILURE"
            assert _launch(url, "ud_rollback", rollback_config,
                           {k: v for k, v in copied.items() if k != "ud/principal"}) == "FAILURE"
            assert t.running("production") == v2

            # A dry run of the sensor (what the UI's "test sensor" does) hands out nothing that works
            # for anything but the exact run the sensor asked for.
            v3 = tiny.commit(paths["work"], "third")
            from unified_delivery.triggers.dagster_api import DRY_RUN

            selector = {"repositoryLocationName": "tiny", "repositoryName": "__repository__", "sensorName": "ud_git_push"}
            dry = _graphql(url, DRY_RUN, {"selector": selector, "cursor": None})["sensorDryRun"]
            assert "ud1." not in json.dumps(dry)
            request = dry["evaluationResult"]["runRequests"][0]
            req_tags = {x["key"]: x["value"] for x in request["tags"]}
            for value in [v for v in req_tags.values() if v]:
                with pytest.raises(NotPermitted):
                    identity(t.platform, token=value)
            stolen = {**req_tags, "dagster/run_key": request["runKey"], "dagster/sensor_name": "ud_git_push"}
            other_ref = {"ops": {"svc__candidate": {"config": {"ref": v1}}}}  # the request, pointed elsewhere
            assert _launch(url, request["jobName"], other_ref, stolen) == "FAILURE"
            assert _launch(url, "ud_rollback", rollback_config, stolen) == "FAILURE"
            assert t.running("staging") == v2 and t.running("production") == v2
            # The exact request is what the sensor decided: it runs, once, as the sensor (the push hook's path).
            import yaml

            exact = yaml.safe_load(request["runConfigYaml"]) or {}
            assert _launch(url, request["jobName"], exact, stolen) == "SUCCESS"
            assert t.running("staging") == v3
            assert _launch(url, request["jobName"], exact, stolen) == "FAILURE"  # once: its grant is spent
        finally:
            web.terminate()
            web.wait(timeout=60)
        ledger = Ledger(f"sqlite:///{paths['home'] / 'ledger.db'}")
        forgeries = ledger.entries(action="forgery")
        assert len(forgeries) == 5 and {e.payload["code"] for e in forgeries} <= {"UD-AUTH-GRANT-FORGED", "UD-AUTH-FORGED-TAG"}
        assert not [e for e in ledger.entries(action="rollback")]
        staged = [e for e in ledger.entries(action="promotion") if e.env == "staging"]
        assert [(e.version, e.principal) for e in staged] == [(v1, "human:local-operator"), (v2, "service:sensors"),
                                                              (v3, "service:sensors")]
    finally:
        t.stop()


def test_sensors_tick_exits_with_the_class_of_a_run_that_failed_and_shows_its_notes(tmp_path):
    paths = tiny.make(tmp_path, approvals=0)
    (paths["project"] / "assets" / "definitions.py").write_text(SENSOR_DEFINITIONS)
    policy = paths["project"] / "resources" / "policy.yaml"
    policy.write_text(policy.read_text().replace(
        "principals:\n", "principals:\n  service:sensors: {roles: {staging: [deploy], production: [deploy]}}\n"))
    tiny.commit(paths["work"], "breaks its test", passing=False)
    try:
        tick = tiny.ud(paths, "sensors", "tick", "ud_git_push")
        assert tick.returncode == 3, tick.stdout + tick.stderr[-2000:]  # a gate refused the run it asked for
        assert "first look" in tick.stdout and "failed" in tick.stdout  # its notes, in plain output too
        again = tiny.ud(paths, "sensors", "tick", "ud_git_push")
        assert again.returncode == 0  # nothing new: nothing failed
    finally:
        tiny.ud(paths, "down")


def test_without_a_token_nobody_is_the_local_operator_once_the_key_comes_from_outside(svc, monkeypatch):
    assert identity(svc.platform) == "human:local-operator"  # the embedded home's owner
    monkeypatch.setenv("UD_SIGNING_KEY", "a-key-from-the-secret-store-0123456789")
    with pytest.raises(NotPermitted) as info:
        identity(svc.platform)
    assert info.value.code == "UD-AUTH-TOKEN-REQUIRED" and "UD_SIGNING_KEY" in info.value.message
    token = tokens.issue("human:dana", 60, key=b"a-key-from-the-secret-store-0123456789")
    assert identity(svc.platform, token) == "human:dana"
    assert svc.ledger.entries(action="refusal")[-1].payload["code"] == "UD-AUTH-TOKEN-REQUIRED"
