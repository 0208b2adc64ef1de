"""An app's `current` release switched by hand, end to end through `ud`: status shows it out of
sync, nothing is promoted out of it, `ud sensors tick ud_reconcile` records the drift once and,
for a unit whose policy says `self_heal: true`, starts the recorded release again through a
rollback (docs/governance.md, "Desired state, actual state and drift")."""

from __future__ import annotations

import json
import subprocess
import urllib.request

from tests import tiny_platform as tiny
from tests.test_security import SENSOR_DEFINITIONS, Tiny


def _env(paths: dict, env: str) -> dict:
    out = tiny.ud(paths, "status", "--json")
    assert out.returncode == 0, out.stderr[-2000:]
    (unit,) = json.loads(out.stdout)["units"]
    return unit["environments"][env]


def test_a_release_switched_by_hand_is_drift_and_self_heal_starts_the_recorded_one(tmp_path, monkeypatch):
    paths = tiny.make(tmp_path, approvals=0)
    (paths["project"] / "assets" / "definitions.py").write_text(SENSOR_DEFINITIONS)
    policy = paths["project"] / "resources" / "policy.yaml"
    policy.write_text(policy.read_text().replace(
        "principals:\n", "principals:\n  service:sensors: {roles: {staging: [deploy], production: [deploy]}}\n"))
    unit_file = paths["project"] / "assets" / "units" / "svc.yaml"
    t = Tiny(paths, monkeypatch)
    try:
        assert t.promote("staging").success
        v1 = t.running("staging")
        v2 = tiny.commit(paths["work"], "second")
        assert t.promote("staging").success and t.running("staging") == v2

        # Someone switches staging back to the old release with plain `ln -sfn`.
        staging = paths["home"] / "releases" / "svc" / "staging"
        subprocess.run(["ln", "-sfn", f"releases/{v1}", str(staging / "current")], check=True)
        seen = _env(paths, "staging")
        assert (seen["version"], seen["actual_version"], seen["in_sync"]) == (v2, v1, False)
        refused = tiny.ud(paths, "promote", "svc", "--to", "production", "--json")
        assert refused.returncode == 3 and json.loads(refused.stdout)["error"]["code"] == "UD-DRIFT"

        tick = tiny.ud(paths, "sensors", "tick", "ud_reconcile", "--json")
        assert tick.returncode == 0, tick.stdout + tick.stderr[-2000:]
        (sensor,) = json.loads(tick.stdout)["sensors"]
        assert sensor["requested"] == []  # no self_heal yet: recorded, nothing changed
        drifts = [e for e in t.ledger.entries(action="drift") if e.env == "staging"]
        assert [(d.version, d.payload["recorded_version"]) for d in drifts] == [(v1, v2)]  # once

        # With `self_heal: true`, the next tick starts the recorded release again.
        unit_file.write_text(unit_file.read_text().replace(
            "policy: {approvals: {production: 0}}", "policy: {approvals: {production: 0}, self_heal: true}"))
        tick = tiny.ud(paths, "sensors", "tick", "ud_reconcile", "--json")
        assert tick.returncode == 0, tick.stdout + tick.stderr[-2000:]
        (sensor,) = json.loads(tick.stdout)["sensors"]
        assert [r["outcome"] for r in sensor["requested"]] == ["success"], sensor
        healed = _env(paths, "staging")
        assert (healed["version"], healed["actual_version"], healed["in_sync"]) == (v2, v2, True)
        with urllib.request.urlopen(healed["url"] + "/", timeout=10) as resp:
            assert json.load(resp)["version"] == v2  # the service that answers is the recorded one
        (rollback,) = [e for e in t.ledger.entries(action="rollback") if e.env == "staging"]
        assert rollback.principal == "service:sensors" and rollback.version == v2
        assert t.ledger.verify().ok
    finally:
        tiny.ud(paths, "down")
        t.stop()
