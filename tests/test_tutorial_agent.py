"""docs/tutorials/agent.md, run as written (tests/tutorials.py), and what it claims."""

from pathlib import Path

import pytest

from tutorials import deployed, ledger_entries, platform_remote, run_tutorial

pytestmark = pytest.mark.e2e


def test_agent(tmp_path: Path):
    run_tutorial("agent.md", tmp_path, PLATFORM_REMOTE=str(platform_remote(tmp_path / "platform")))
    root = tmp_path / "acme"
    state = deployed(root)["features"]
    assert state["staging"] and state["production"] == state["staging"]
    by_agent = [e for e in ledger_entries(root) if e.principal == "agent:release-bot"]
    assert any(e.action == "promotion" and e.env == "staging" for e in by_agent), [e.action for e in by_agent]
    assert any(e.action == "refusal" for e in by_agent) or any(
        e.action == "gate" and not e.payload.get("passed") and e.env == "production" for e in by_agent)
