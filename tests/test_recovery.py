"""A deploy whose run died between changing the target and recording the outcome: the intent
is in the ledger, the outcome is not. The next command completes the record from what the
target actually runs (engine/recovery.py), unless that deploy is still under way."""

from __future__ import annotations

import shutil

from tests import tiny_platform as tiny
from tests.test_security import Tiny
from unified_delivery.engine.locks import env_lock
from unified_delivery.events import DeployStarted, record
from unified_delivery.home import Home
from unified_delivery.service import status
from unified_delivery.targets.base import Artifact


def test_an_intent_without_an_outcome_is_completed_from_the_target(tmp_path, monkeypatch):
    t = Tiny(tiny.make(tmp_path, approvals=0), monkeypatch)
    try:
        assert t.promote("staging").success
        v1 = t.running("staging")
        unit = t.platform.unit("svc")
        v2 = tiny.commit(t.paths["work"], "second")
        source = tmp_path / "v2-src"
        shutil.copytree(t.paths["work"], source, ignore=shutil.ignore_patterns(".git"))

        # A run that recorded its intent, switched the target, and was killed before the outcome.
        record(t.ledger, DeployStarted(from_version=v1, to_version=v2, run_id="run-killed-after-switch"),
               principal="human:dana", unit="svc", env="staging", version=v2)
        t.platform.target(unit, "staging").deploy(unit, "staging", Artifact(unit="svc", kind="app", version=v2, location=str(source)))
        with env_lock(Home.current(), unit, "staging"):  # still under way: nothing is concluded
            status(t.platform)
        assert not [e for e in t.ledger.entries(env="staging") if e.payload.get("recovered")]
        status(t.platform)
        (promoted,) = [e for e in t.ledger.entries(env="staging") if e.payload.get("recovered")]
        assert (promoted.action, promoted.version, promoted.principal) == ("promotion", v2, "human:dana")
        assert promoted.payload["from_version"] == v1 and promoted.payload["run_id"] == "run-killed-after-switch"

        # A run killed after its intent and before the target changed: a failure, staging unchanged.
        record(t.ledger, DeployStarted(from_version=v2, to_version="f" * 40, run_id="run-killed-before-switch"),
               principal="human:dana", unit="svc", env="staging", version="f" * 40)
        status(t.platform)
        recovered = [e for e in t.ledger.entries(env="staging") if e.payload.get("recovered")]
        assert [(e.action, e.version) for e in recovered] == [("promotion", v2), ("deploy-failed", "f" * 40)]
        assert recovered[1].payload["code"] == "UD-DEPLOY-INTERRUPTED" and recovered[1].payload["stayed_on"] == v2
        status(t.platform)  # completed once: nothing more
        assert len([e for e in t.ledger.entries(env="staging") if e.payload.get("recovered")]) == 2
        assert t.running("staging") == v2
        assert t.ledger.verify().ok
    finally:
        t.stop()
