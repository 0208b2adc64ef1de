"""Governance: tokens, the policy matrix, freezes, quotas, approvals, forged identities,
overrides, concurrency and kills, on a tiny platform driven through `ud` and Dagster."""

from __future__ import annotations

import json
import os
import random
import signal
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import dagster as dg
import pytest

from tests import tiny_platform as tiny
from unified_delivery.errors import ConfigError, NotPermitted
from unified_delivery.governance import Governance, grants, tokens
from unified_delivery.ledger import Ledger

ROOT = Path(__file__).resolve().parents[1]
KEY = b"k" * 32


# -- tokens -----------------------------------------------------------------------------------

def test_a_token_names_its_principal_until_it_expires():
    token = tokens.issue("agent:release-bot", 60, key=KEY)
    assert tokens.verify(token, key=KEY)["sub"] == "agent:release-bot"
    with pytest.raises(NotPermitted) as info:
        tokens.verify(token, key=KEY, now=time.time() + 61)
    assert info.value.code == "UD-AUTH-TOKEN-EXPIRED"


@pytest.mark.parametrize("mangle, code", [
    (lambda t: t[:-2] + ("A" if t[-2] != "A" else "B") + t[-1], "UD-AUTH-TOKEN-INVALID"),
    (lambda t: t.replace(t.split(".")[1], tokens._b64(b'{"sub":"human:local-operator","exp":9999999999}')), "UD-AUTH-TOKEN-INVALID"),
    (lambda t: "not-a-token", "UD-AUTH-TOKEN-MALFORMED"),
])
def test_a_tampered_token_is_refused(mangle, code):
    token = tokens.issue("agent:release-bot", 60, key=KEY)
    with pytest.raises(NotPermitted) as info:
        tokens.verify(mangle(token), key=KEY)
    assert info.value.code == code


def test_a_token_signed_with_another_key_is_refused():
    with pytest.raises(NotPermitted) as info:
        tokens.verify(tokens.issue("human:dana", 60, key=b"other"), key=KEY)
    assert info.value.code == "UD-AUTH-TOKEN-INVALID"


def test_a_grant_only_identifies_the_run_it_was_issued_for(tmp_path):
    engine = Ledger(f"sqlite:///{tmp_path / 'l.db'}").engine
    config = {"ops": {"svc__candidate": {"config": {"ref": "abc"}}}}
    grants.for_run(engine, KEY, "human:dana", run_id="run-1", job="ud_promote_staging", unit="svc", env="staging",
                   run_config=config)
    ask = dict(run_key=None, job="ud_promote_staging", run_config=config, unit="svc", env="staging")
    assert grants.principal_for(engine, KEY, run_id="run-1", **ask) == "human:dana"
    assert grants.principal_for(engine, KEY, run_id="run-2", **ask) is None  # another run: no grant at all
    for change, code in (({"job": "ud_rollback"}, "UD-AUTH-GRANT-FORGED"),
                         ({"run_config": {"ops": {"svc__candidate": {"config": {"ref": "evil"}}}}}, "UD-AUTH-GRANT-FORGED"),
                         ({"env": "production"}, "UD-AUTH-GRANT-FORGED"),
                         ({"unit": "api"}, "UD-AUTH-GRANT-FORGED")):  # one job serves every unit: the unit binds
        with pytest.raises(NotPermitted) as info:
            grants.principal_for(engine, KEY, run_id="run-1", **{**ask, **change})
        assert info.value.code == code, change
    # A run-key grant (a sensor's request) serves the first run that claims it, and no other.
    grants.for_request(engine, KEY, "service:sensors", run_key="git:repo:main:abc:svc", job="ud_promote_staging", unit="svc",
                       env="staging", run_config=config)
    keyed = {**ask, "run_key": "git:repo:main:abc:svc"}
    assert grants.principal_for(engine, KEY, run_id="daemon-run", **keyed) == "service:sensors"
    assert grants.principal_for(engine, KEY, run_id="daemon-run", **keyed) == "service:sensors"  # its later steps
    with pytest.raises(NotPermitted) as info:
        grants.principal_for(engine, KEY, run_id="copied-run", **keyed)
    assert info.value.code == "UD-AUTH-GRANT-FORGED"
    # A grant row edited in the table (another principal) no longer verifies.
    with engine.begin() as conn:
        conn.execute(grants.grants_table.update().values(principal="human:local-operator"))
    with pytest.raises(NotPermitted):
        grants.principal_for(engine, KEY, run_id="run-1", **ask)
    # Signed with a key of its own: the same HMAC is never a token's signature.
    with pytest.raises(NotPermitted):
        tokens.verify(tokens._sign({"sub": "human:local-operator", "exp": 9999999999, "run_id": "run-1"}, KEY), key=KEY)


# -- the policy matrix ------------------------------------------------------------------------

REFERENCE = Governance.from_file(ROOT / "resources" / "policy.yaml")
MATRIX = [
    # principal, role, env, allowed
    ("agent:release-bot", "deploy", "staging", True),
    ("agent:release-bot", "deploy", "production", False),
    ("agent:release-bot", "approve", "staging", False),
    ("agent:release-bot", "override", "production", False),
    ("service:dagster-ui", "deploy", "staging", True),
    ("service:dagster-ui", "deploy", "production", False),
    ("human:dana", "deploy", "production", True),
    ("human:dana", "approve", "production", True),
    ("human:dana", "approve", "staging", False),
    ("human:dana", "override", "production", False),
    ("human:olivia", "override", "production", True),
    ("human:olivia", "override", "staging", False),
    ("human:local-operator", "admin", "*", True),
    ("human:dana", "admin", "*", False),
    ("human:nobody", "deploy", "staging", False),
]


@pytest.mark.parametrize("principal, role, env, allowed", MATRIX)
def test_the_reference_policy_matrix(principal, role, env, allowed):
    assert REFERENCE.allowed(principal, role, env) is allowed
    if not allowed:
        with pytest.raises(NotPermitted) as info:
            REFERENCE.authorize(principal, role, env)
        assert info.value.code in ("UD-AUTH-FORBIDDEN", "UD-AUTH-UNKNOWN-PRINCIPAL")


def _policy(tmp_path: Path, text: str) -> Governance:
    path = tmp_path / "policy.yaml"
    path.write_text(text)
    return Governance.from_file(path)


def test_a_fixed_freeze_window_in_its_time_zone(tmp_path):
    gov = _policy(tmp_path, "freezes: [{env: production, start: '2026-12-24T00:00', end: '2026-12-27T00:00', "
                            "timezone: Europe/Berlin, reason: holidays}]")
    inside = datetime(2026, 12, 23, 23, 30, tzinfo=timezone.utc)  # 00:30 on the 24th in Berlin
    before = datetime(2026, 12, 23, 22, 30, tzinfo=timezone.utc)
    assert gov.active_freeze("production", inside)[0].reason == "holidays"
    assert gov.active_freeze("production", before) is None
    assert gov.active_freeze("staging", inside) is None


def test_a_recurring_freeze_window(tmp_path):
    gov = _policy(tmp_path, "freezes: [{env: '*', cron: '0 18 * * 5', duration: 62h, timezone: Europe/Berlin}]")
    saturday = datetime(2026, 11, 21, 12, 0, tzinfo=timezone.utc)
    tuesday = datetime(2026, 11, 24, 12, 0, tzinfo=timezone.utc)
    assert gov.active_freeze("production", saturday) is not None
    assert gov.active_freeze("production", tuesday) is None


@pytest.mark.parametrize("freeze", [
    "{env: production, cron: 'not a cron', duration: 1h}",
    "{env: production, cron: '0 18 * * 5'}",
    "{env: production, start: '2026-12-27', end: '2026-12-24'}",
    "{env: production, start: '2026-12-24', end: '2026-12-27', timezone: Mars/Olympus}",
])
def test_a_freeze_that_does_not_parse_is_refused(tmp_path, freeze):
    with pytest.raises(ConfigError) as info:
        _policy(tmp_path, f"freezes: [{freeze}]")
    assert info.value.code == "UD-CONFIG-FREEZE" and "freezes.0" in info.value.message


def test_an_unknown_role_or_principal_name_is_refused(tmp_path):
    with pytest.raises(ConfigError) as info:
        _policy(tmp_path, "principals: {'human:x': {roles: {staging: [deploy, fly]}}}")
    assert info.value.code == "UD-CONFIG-POLICY"
    with pytest.raises(ConfigError):
        _policy(tmp_path, "principals: {'robot:x': {roles: {}}}")


def test_an_agent_quota_counts_promotions_in_the_ledger(tmp_path):
    ledger = Ledger(f"sqlite:///{tmp_path / 'l.db'}")
    gov = _policy(tmp_path, "defaults: {ui_principal: 'agent:bot', local_principal: 'agent:bot'}\n"
                            "principals: {'agent:bot': {roles: {staging: [deploy]}, quotas: {promotions_per_day: {staging: 2}}}}")
    for _ in range(2):
        gov.check_quota("agent:bot", "staging", ledger)
        ledger.append("promotion", principal="agent:bot", unit="u", env="staging", version="v")
    ledger.append("promotion", principal="human:x", unit="u", env="staging", version="v")  # others do not count
    with pytest.raises(NotPermitted) as info:
        gov.check_quota("agent:bot", "staging", ledger)
    assert info.value.code == "UD-AUTH-QUOTA"


# -- end to end on a tiny platform ------------------------------------------------------------

@pytest.fixture
def platform(tmp_path):
    paths = tiny.make(tmp_path)
    yield paths
    tiny.ud(paths, "down")


def _json(proc):
    assert proc.stdout.strip(), proc.stderr[-2000:]
    return json.loads(proc.stdout)


def _ledger(paths) -> Ledger:
    return Ledger(f"sqlite:///{paths['home'] / 'ledger.db'}")


def test_an_agent_may_deploy_to_staging_but_not_production(platform):
    bot = tiny.ud(platform, "token", "issue", "agent:release-bot", "--ttl", "1h").stdout.strip()
    ok = tiny.ud(platform, "promote", "svc", "--to", "staging", "--json", token=bot)
    assert ok.returncode == 0, ok.stderr[-2000:]
    version = _json(ok)["version"]
    assert tiny.ud(platform, "approve", "svc", "--env", "production", "--version", version).returncode == 0
    refused = tiny.ud(platform, "promote", "svc", "--to", "production", "--json", token=bot)
    assert refused.returncode == 4 and _json(refused)["error"]["code"] == "UD-AUTH-FORBIDDEN"
    status = _json(tiny.ud(platform, "status", "--json"))["units"][0]["environments"]
    assert status["production"] is None
    entries = _ledger(platform).entries()
    assert {e.principal for e in entries if e.action == "promotion"} == {"agent:release-bot"}
    assert any(e.action == "gate" and e.payload["gate"] == "policy" and not e.payload["passed"]
               and e.principal == "agent:release-bot" for e in entries)


def test_quota_tokens_and_tampering_are_refused_and_recorded(platform):
    bot = tiny.ud(platform, "token", "issue", "agent:release-bot", "--ttl", "1h").stdout.strip()
    for _ in range(2):
        tiny.commit(platform["work"], f"change {random.random()}")
        assert tiny.ud(platform, "promote", "svc", "--to", "staging", token=bot).returncode == 0
    tiny.commit(platform["work"], "one too many")
    over = tiny.ud(platform, "promote", "svc", "--to", "staging", "--json", token=bot)
    assert over.returncode == 4 and _json(over)["error"]["code"] == "UD-AUTH-QUOTA"  # docs/errors.md
    assert "quota" in _json(over)["error"]["message"]
    key = tokens.signing_key(__import__("unified_delivery.home", fromlist=["Home"]).Home(platform["home"]))
    tampered = tiny.ud(platform, "promote", "svc", "--to", "staging", "--dry-run", "--json", token=bot[:-3] + "AAA")
    expired = tiny.ud(platform, "promote", "svc", "--to", "staging", "--dry-run", "--json",
                      token=tokens.issue("agent:release-bot", -10, key=key))
    unknown_caller = tiny.ud(platform, "token", "issue", "human:ghost")
    for proc, code in ((tampered, "UD-AUTH-TOKEN-INVALID"), (expired, "UD-AUTH-TOKEN-EXPIRED")):
        assert proc.returncode == 4 and _json(proc)["error"]["code"] == code
    assert unknown_caller.returncode == 4 and "UD-AUTH-UNKNOWN-PRINCIPAL" in unknown_caller.stderr
    refusals = [e.payload["code"] for e in _ledger(platform).entries(action="refusal")]
    assert "UD-AUTH-TOKEN-INVALID" in refusals
    not_admin = tiny.ud(platform, "token", "issue", "human:dana", token=bot)
    assert not_admin.returncode == 4


def test_four_eyes_approval_then_production(platform):
    staged = _json(tiny.ud(platform, "promote", "svc", "--to", "staging", "--json"))
    version = staged["version"]
    waiting = tiny.ud(platform, "promote", "svc", "--to", "production", "--json")
    assert waiting.returncode == 3 and "APPROVAL" in _json(waiting)["error"]["message"]
    gates = _json(tiny.ud(platform, "gates", "svc", "--env", "staging", "--json"))["gates"]
    assert any(g["family"] == "approval" and g["passed"] is False for g in gates)
    dana = tiny.ud(platform, "token", "issue", "human:dana").stdout.strip()
    self_approval = tiny.ud(platform, "approve", "svc", "--env", "production", "--version", version, "--json", token=dana)
    assert self_approval.returncode == 4 and _json(self_approval)["error"]["code"] == "UD-APPROVAL-SELF"
    ghost = tiny.ud(platform, "approve", "svc", "--env", "production", "--version", "deadbeef", "--json")
    assert ghost.returncode == 2 and _json(ghost)["error"]["code"] == "UD-APPROVAL-UNKNOWN-VERSION"
    olivia = tiny.ud(platform, "token", "issue", "human:olivia").stdout.strip()
    dry = _json(tiny.ud(platform, "approve", "svc", "--env", "production", "--version", version, "--dry-run", "--json", token=olivia))
    assert dry["dry_run"] and not _ledger(platform).entries(action="approval")
    assert tiny.ud(platform, "approve", "svc", "--env", "production", "--version", version, token=olivia).returncode == 0
    done = tiny.ud(platform, "promote", "svc", "--to", "production", "--json")
    assert done.returncode == 0, done.stderr[-2000:]
    evidence = json.loads(tiny.ud(platform, "audit", "export", "--format", "json").stdout)
    change = next(c for c in evidence["changes"] if c["action"] == "promotion")
    assert change["approvals"][0]["principal"] == "human:olivia" and change["gates"]


def test_a_ui_run_with_a_forged_principal_tag_is_refused_and_recorded(platform, monkeypatch):
    from unified_delivery import Platform
    from unified_delivery.home import Home
    from unified_delivery.promotions import promotion
    from unified_delivery.runner import Selection, execute

    monkeypatch.setenv("UD_HOME", str(platform["home"]))
    monkeypatch.setenv("DAGSTER_HOME", str(platform["home"] / "dagster"))
    plat = Platform.from_directory(platform["project"] / "assets" / "units",
                                   governance=Governance.from_file(platform["project"] / "resources" / "policy.yaml"))
    defs = plat.definitions()
    home = Home.current()
    staging, production = (promotion(plat, plat.unit("svc"), env) for env in ("staging", "production"))

    def run(p, **kw):  # as the UI's "materialize selected" launches one unit's promotion
        return execute(defs, p.job, home=home, selection=Selection.of(p), **kw)

    forged = run(staging, tags={"ud/principal": "human:local-operator"})
    assert forged.error and forged.error.code == "UD-AUTH-FORGED-TAG" and forged.error.exit_code == 4
    other = str(__import__("uuid").uuid4())
    grants.for_run(plat.ledger.ledger().engine, tokens.signing_key(home), "human:local-operator", run_id=other,
                   job="ud_promote_production", unit="svc", env="production", run_config={})
    copied = run(staging, run_id=other)  # a grant for another job
    assert copied.error and copied.error.code == "UD-AUTH-GRANT-FORGED"
    # Without any tag, a UI run acts as the least-privileged principal: staging yes, production no.
    ui = run(staging)
    assert ui.success, ui.error
    prod = run(production)
    assert not prod.success and prod.error.code == "UD-AUTH-FORBIDDEN"
    forgeries = _ledger(platform).entries(action="forgery")
    assert {e.payload["code"] for e in forgeries} == {"UD-AUTH-FORGED-TAG", "UD-AUTH-GRANT-FORGED"}
    assert _ledger(platform).entries(action="promotion")[0].principal == "service:dagster-ui"
    assert len(dg.DagsterInstance.get().get_run_records()) == 4  # real runs on the home's instance


def test_override_needs_a_justification_and_lets_one_version_through(platform):
    staged = _json(tiny.ud(platform, "promote", "svc", "--to", "staging", "--json"))
    bad = tiny.commit(platform["work"], "breaks its test", passing=False)
    refused = tiny.ud(platform, "promote", "svc", "--to", "staging", "--json")
    assert refused.returncode == 3
    olivia = tiny.ud(platform, "token", "issue", "human:olivia").stdout.strip()
    dana = tiny.ud(platform, "token", "issue", "human:dana").stdout.strip()
    empty = tiny.ud(platform, "override", "svc", "--gate", "tests", "--version", bad, "--json", token=olivia)
    assert empty.returncode == 2 and _json(empty)["error"]["code"] == "UD-OVERRIDE-NO-JUSTIFICATION"
    no_right = tiny.ud(platform, "override", "svc", "--gate", "tests", "--version", bad, "--justification", "x", "--json", token=dana)
    assert no_right.returncode == 4
    # olivia may override gates guarding production only; the local operator may everywhere.
    ok = tiny.ud(platform, "override", "svc", "--gate", "tests", "--version", bad, "--justification",
                 "hotfix for incident 42; test fixed in the next commit", "--expires", "1h", "--json")
    assert ok.returncode == 0, ok.stderr
    through = tiny.ud(platform, "promote", "svc", "--to", "staging", "--ref", bad, "--json")
    assert through.returncode == 0, through.stderr[-2000:]
    assert _json(through)["version"] == bad != staged["version"]
    gates = _json(tiny.ud(platform, "gates", "svc", "--json"))["gates"]
    tests_gate = next(g for g in gates if g["name"] == "tests")
    assert tests_gate["passed"] is False and tests_gate["overridden"] is True
    change = _ledger(platform).entries(action="promotion")[-1]
    assert change.payload["overrides"]["tests"]["justification"].startswith("hotfix")


def test_a_freeze_refuses_production_except_with_an_override(tmp_path):
    paths = tiny.make(tmp_path, approvals=0, freezes="[{env: production, start: '2000-01-01T00:00', end: '2999-01-01T00:00', reason: audit}]")
    try:
        version = _json(tiny.ud(paths, "promote", "svc", "--to", "staging", "--json"))["version"]
        frozen = tiny.ud(paths, "promote", "svc", "--to", "production", "--json")
        assert frozen.returncode == 3 and "FREEZE" in _json(frozen)["error"]["message"]
        assert tiny.ud(paths, "override", "svc", "--gate", "freeze", "--version", version,
                       "--justification", "security fix during the audit freeze").returncode == 0
        assert tiny.ud(paths, "promote", "svc", "--to", "production").returncode == 0
    finally:
        tiny.ud(paths, "down")


def test_two_concurrent_promotions_never_interleave(platform):
    procs = [tiny.ud(platform, "promote", "svc", "--to", "staging", "--json", popen=True) for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    ledger = _ledger(platform)
    assert ledger.verify().ok
    deploys = [e for e in ledger.entries(env="staging") if e.action in ("promotion", "already-deployed")]
    assert len(deploys) == 2  # one deployed, the other found it deployed: serialised by the lock


def test_a_killed_promotion_leaves_the_previous_or_the_new_version(platform):
    first = _json(tiny.ud(platform, "promote", "svc", "--to", "staging", "--json"))["version"]
    rng = random.Random(7)
    # Killing `ud promote` leaves its run going (it runs where the instance launched it); the
    # process killed here is the one that deploys: the Python API executes the run in itself.
    script = "import unified_delivery as ud; ud.promote('svc', to='staging')"
    for attempt in range(3):
        new = tiny.commit(platform["work"], f"kill attempt {attempt}")
        proc = tiny.ud(platform, "-c", script, popen=True, program=sys.executable)
        time.sleep(rng.uniform(1.0, 6.0))
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        status = _json(tiny.ud(platform, "status", "--json"))["units"][0]["environments"]["staging"]
        current = (platform["home"] / "releases" / "svc" / "staging" / "current").resolve()
        assert status["version"] in (first, new) and current.name == status["version"]
        assert (current / "app.py").exists()  # a complete release, never a half-copied one
        first = status["version"]
        ledger = _ledger(platform)
        assert ledger.verify().ok
        # Whatever staging runs, the ledger recorded putting it there: a kill after the switch
        # left an intent, which `ud status` completed from the target (recovered).
        assert status["version"] in {e.version for e in ledger.entries(env="staging", action="promotion")}
        ended = {e.payload["run_id"] for a in ("promotion", "deploy-failed") for e in ledger.entries(action=a)}
        assert all(e.payload["run_id"] in ended for e in ledger.entries(action="deploy-started"))
    assert tiny.ud(platform, "promote", "svc", "--to", "staging").returncode == 0  # and the next one still works
