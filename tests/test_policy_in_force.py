"""The policy in force is the platform's, as the ledger records it, not the caller's working copy
(governance/in_force.py, service/policy_changes.py, docs/governance.md "The policy in force").

The attack of the trust review, performed as it was found: an agent whose refusal pointed at
the policy edits its clone's policy to give itself production and promotes with its own token.
Then the way a change is meant to go: proposed, refused to its author and to a non-admin,
adopted by another admin, in force from then on."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests import tiny_platform as tiny
from tests.test_security import Tiny
from unified_delivery import Platform
from unified_delivery.errors import NotPermitted, UDError
from unified_delivery.events import PolicyAdopted, PolicyProposed
from unified_delivery.governance import Governance, in_force
from unified_delivery.service import (
    identity,
    issue_token,
    policy_approve,
    policy_propose,
    policy_show,
)

ADA = "  human:ada: {roles: {\"*\": [admin]}}\n"  # a second admin, to adopt what others propose
BOT_STAGING = "agent:release-bot: {roles: {staging: [deploy]}"
BOT_PRODUCTION = "agent:release-bot: {roles: {staging: [deploy], production: [deploy]}"


def _edit(paths: dict, old: str, new: str) -> None:
    policy = paths["project"] / "resources" / "policy.yaml"
    text = policy.read_text()
    assert old in text
    policy.write_text(text.replace(old, new, 1))


def _adoptions(t: Tiny) -> list[tuple[str, PolicyAdopted]]:
    return [(e.principal, PolicyAdopted.read(e)) for e in t.ledger.entries(action="policy-adopted")]


def test_an_agents_edited_policy_is_refused_until_another_admin_adopts_it(tmp_path, monkeypatch, capsys):
    paths = tiny.make(tmp_path, approvals=0)
    _edit(paths, "principals:\n", "principals:\n" + ADA)
    t = Tiny(paths, monkeypatch)
    try:
        assert t.promote("staging").success
        (who, first), = _adoptions(t)  # the first governance a ledger sees is in force (TOFU)
        assert first.bootstrap and first.digest == in_force.digest(in_force.document(t.platform))
        gate = t.ledger.latest(action="gate", predicate=lambda e: e.payload["gate"] == "policy")
        assert gate.payload["metadata"]["policy_digest"] == first.digest  # what it decided with
        bot = issue_token(t.platform, "human:local-operator", "agent:release-bot", "1h")["token"]

        # The attack: the agent gives itself production in its working copy.
        _edit(paths, BOT_STAGING, BOT_PRODUCTION)
        edited = Tiny(paths, monkeypatch)
        cli = tiny.ud(paths, "promote", "svc", "--to", "production", "--json", token=bot)
        assert cli.returncode == 4, cli.stdout + cli.stderr[-2000:]
        error = json.loads(cli.stdout)["error"]
        assert error["code"] == "UD-POLICY-NOT-IN-FORCE"
        assert "ud policy propose" in error["remediation"] and "edit" not in error["remediation"]
        # A run whose code loaded the edited policy (a sensor's, the UI's) is refused by its gate.
        out = edited.promote("production", principal="agent:release-bot")
        assert out.error.code == "UD-POLICY-NOT-IN-FORCE" and out.error.exit_code == 4
        assert edited.running("production") is None
        refused = [e.payload["code"] for e in t.ledger.entries(action="refusal")]
        assert refused == ["UD-POLICY-NOT-IN-FORCE"]  # the front door's, before any run
        gate = t.ledger.latest(action="gate", predicate=lambda e: e.payload["gate"] == "policy")
        assert not gate.payload["passed"] and gate.env == "production"  # the run's, in its gate
        assert gate.payload["metadata"]["cause"] == "UD-POLICY-NOT-IN-FORCE"

        # `ud policy show` says what the working copy would change.
        shown = tiny.ud(paths, "policy", "show")
        assert shown.returncode == 0, shown.stderr[-2000:]
        assert "NOT the policy in force" in shown.stdout and re.search(r"^\+ +production:$", shown.stdout, re.M)

        # A change is proposed (the whole document recorded), never adopted by its author or a
        # principal who is not an admin under the policy in force.
        proposal = policy_propose(edited.platform, "agent:release-bot", reason="ship to production")
        recorded = PolicyProposed.read(t.ledger.latest(action="policy-proposed"))
        assert recorded.document == in_force.document(edited.platform)
        with pytest.raises(NotPermitted) as info:
            policy_approve(edited.platform, "agent:release-bot", proposal["digest"])
        assert info.value.code == "UD-AUTH-FORBIDDEN"  # it would be admin only under its own edit
        with pytest.raises(UDError) as info:
            policy_propose(t.platform, "human:ada")  # the policy in force: nothing to propose
        assert info.value.code == "UD-POLICY-UNCHANGED"

        # An admin's own proposal is not hers to adopt; a proposal overtaken by another is stale.
        _edit(paths, "freezes: []", "freezes: [{env: production, start: '2000-01-01T00:00', "
                                    "end: '2000-01-02T00:00', reason: old}]")
        other = Tiny(paths, monkeypatch)
        second = policy_propose(other.platform, "human:ada")
        with pytest.raises(NotPermitted) as info:
            policy_approve(other.platform, "human:ada", second["digest"][7:19])
        assert info.value.code == "UD-POLICY-SELF-APPROVAL"
        adopted = policy_approve(edited.platform, "human:ada", proposal["digest"][7:19])
        assert adopted["proposed_by"] == "agent:release-bot" and adopted["approved_by"] == "human:ada"
        with pytest.raises(UDError) as info:
            policy_approve(other.platform, "human:local-operator", second["digest"])
        assert info.value.code == "UD-POLICY-STALE"

        # In force now: the agent's production promotion goes through, under the adopted policy.
        assert identity(edited.platform, bot) == "agent:release-bot"
        assert edited.promote("production", principal="agent:release-bot").success
        assert edited.running("production") == edited.running("staging")
        who, latest = _adoptions(t)[-1]
        assert (who, latest.proposed_by, latest.previous) == ("human:ada", "agent:release-bot", first.digest)
        assert not latest.self_approved and not latest.bootstrap

        # The old copy is now the one out of force, for a token holder...
        with pytest.raises(NotPermitted) as info:
            identity(t.platform, bot)
        assert info.value.code == "UD-POLICY-NOT-IN-FORCE"
        # ... while the embedded home's owner, without a token, adopts its own change (recorded).
        capsys.readouterr()
        assert identity(other.platform) == "human:local-operator"
        assert "the policy in force is now this copy's" in capsys.readouterr().err  # said, not silent
        who, latest = _adoptions(t)[-1]
        assert who == "human:local-operator" and latest.self_approved
        assert latest.digest == second["digest"]
        # Never once the key comes from outside the home: then nobody is the owner.
        monkeypatch.setenv("UD_SIGNING_KEY", "a-key-from-the-secret-store-0123456789")
        with pytest.raises(NotPermitted) as info:
            in_force.ensure(edited.platform, "human:local-operator")
        assert info.value.code == "UD-POLICY-NOT-IN-FORCE"
        monkeypatch.delenv("UD_SIGNING_KEY")
        assert t.ledger.verify().ok
    finally:
        t.stop()


def test_prices_and_budgets_are_part_of_the_governance_digest(tmp_path):
    paths = tiny.make(tmp_path)
    units = paths["project"] / "assets" / "units"
    governance = Governance.from_file(paths["project"] / "resources" / "policy.yaml")

    def digest() -> str:
        return in_force.digest(in_force.document(Platform.from_directory(units, governance=governance)))

    before = digest()
    assert digest() == before  # stable across loads
    unit = units / "svc.yaml"
    unit.write_text(unit.read_text() + "  budget: {per_run: 5}\n")
    with_budget = digest()
    assert with_budget != before
    doc = in_force.document(Platform.from_directory(units, governance=governance))
    assert doc["budgets"] == {"svc": {"per_run": 5.0}}
    assert "per_run: 5.0" in in_force.diff({}, doc, "a", "b")


def test_policy_show_names_the_policy_in_force(tmp_path, monkeypatch):
    t = Tiny(tiny.make(tmp_path), monkeypatch)
    shown = policy_show(t.platform)  # the first reader records the policy it finds (bootstrap)
    assert shown["in_force"]["how"] == "bootstrap" and shown["local"]["in_force"]
    assert shown["local"]["diff"] == "" and shown["pending"] == []
    assert Path(shown["local"]["source"]).name == "policy.yaml"
