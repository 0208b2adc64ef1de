"""docs/tutorials/agent.md, run as written (tests/tutorials.py), and what it claims: the agent,
through `ud mcp` over stdio and over HTTP, promoted to staging and was refused production,
and every call it made is in the ledger under its name."""

import os
import signal
from pathlib import Path

import pytest

from tutorials import deployed, ledger_entries, platform_remote, run_tutorial

pytestmark = pytest.mark.e2e


def test_agent(tmp_path: Path):
    root = tmp_path / "acme"
    try:
        run_tutorial("agent.md", tmp_path, PLATFORM_REMOTE=str(platform_remote(tmp_path / "platform")))
    finally:  # the HTTP server the tutorial starts, should it have stopped half-way
        pid = root / "mcp-server.pid"
        if pid.exists():
            try:
                os.kill(int(pid.read_text()), signal.SIGTERM)
            except ProcessLookupError:
                pass
    state = deployed(root)["features"]
    assert state["staging"] and state["production"] == state["staging"]
    by_agent = [e for e in ledger_entries(root) if e.principal == "agent:release-bot"]
    assert any(e.action == "promotion" and e.env == "staging" for e in by_agent), [e.action for e in by_agent]
    assert any(e.action == "gate" and not e.payload.get("passed") and e.env == "production" for e in by_agent)
    calls = [(e.payload["transport"], e.payload["tool"], e.payload["code"]) for e in by_agent if e.action == "mcp-call"]
    assert ("stdio", "promote", "") in calls and ("stdio", "promote", "UD-AUTH-FORBIDDEN") in calls, calls
    assert [c[1] for c in calls if c[0] == "http"] == ["gates", "audit"], calls
    assert not [e for e in ledger_entries(root) if e.action == "mcp-call" and e.principal != "agent:release-bot"]
