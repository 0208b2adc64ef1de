"""`ud mcp` driven by the MCP SDK's own client, over stdio and over streamable HTTP, on one tiny
platform (tests/tiny_platform.py: one app unit; agent:release-bot may deploy to staging only,
two changes a day): the agent lists the tools, promotes to staging, is refused production
with UD-AUTH-FORBIDDEN as structured content, hits its quota on the call after the last one
allowed, and every call it made is an `mcp-call` entry in the ledger under its name."""

from __future__ import annotations

import asyncio
import json
import os
import random
import subprocess
from pathlib import Path

import httpx2
import pytest
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client

from tests import tiny_platform as tiny
from unified_delivery.events import McpCall
from unified_delivery.ledger import Ledger

pytestmark = pytest.mark.e2e

TOOLS = {"status", "plan_promotion", "plan_rollback", "promote", "rollback", "request_approval", "gates",
         "audit", "report"}
BOT = "agent:release-bot"


@pytest.fixture(scope="module")
def platform(tmp_path_factory):
    paths = tiny.make(tmp_path_factory.mktemp("mcp"))
    paths["token"] = tiny.ud(paths, "token", "issue", BOT, "--ttl", "1h").stdout.strip()
    yield paths
    tiny.ud(paths, "down")


@pytest.fixture
def loaded(platform, monkeypatch):
    """The tiny platform loaded in this process, as `ud` loads it."""
    from unified_delivery import service

    monkeypatch.setenv("UD_HOME", str(platform["home"]))
    monkeypatch.setenv("UD_PROJECT", str(platform["project"]))
    return service.load_platform(platform["project"])


def _env(paths: dict, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k == "UD_CODE_SERVER_IDLE_S" or not k.startswith(("UD_", "DAGSTER"))}
    return {**env, "UD_HOME": str(paths["home"]), "UD_PROJECT": str(paths["project"]), **extra}


def _calls(paths: dict, transport: str) -> list[tuple[str, str, str]]:
    """(tool, principal, code) of every recorded MCP call over `transport`, in order."""
    entries = Ledger(f"sqlite:///{paths['home'] / 'ledger.db'}").entries(action=McpCall.ACTION)
    return [(c.tool, e.principal, c.code) for e in entries for c in [McpCall.read(e)] if c.transport == transport]


class Agent:
    """One MCP session, and what it called: (tool, the principal it expects, the code it got)."""

    def __init__(self, session: ClientSession, principal: str = BOT):
        self.session, self.principal, self.made = session, principal, []

    async def call(self, tool: str, **arguments) -> dict:
        result = await self.session.call_tool(tool, arguments)
        data = result.structured_content
        assert data is not None and result.is_error == (not data["ok"]), result
        assert json.loads(result.content[0].text) == data  # the same for a client that reads text only
        refusal = data.get("error") or (data.get("blocked_by") or [{}])[0]  # a plan's: the first blocker
        self.made.append((tool, self.principal, refusal.get("code", "")))
        return data

    async def read(self, uri: str) -> dict:
        data = json.loads((await self.session.read_resource(uri)).contents[0].text)
        self.made.append((f"read {uri}", self.principal, (data.get("error") or {}).get("code", "")))
        return data


def test_over_stdio_an_agent_promotes_to_staging_and_is_refused_production(platform):
    params = StdioServerParameters(command=tiny.UD, args=["mcp"], env=_env(platform, UD_TOKEN=platform["token"]),
                                   cwd=str(platform["project"]))

    async def session() -> list:
        async with stdio_client(params) as (read, write), ClientSession(read, write) as s:
            await s.initialize()
            tools = {t.name: t for t in (await s.list_tools()).tools}
            assert set(tools) == TOOLS
            assert "UD-AUTH-FORBIDDEN" in tools["promote"].description and "UD-AUTH-QUOTA" in tools["promote"].description
            assert {str(r.uri) for r in (await s.list_resources()).resources} == {"ud://units", "ud://policy"}
            agent = Agent(s)
            units = await agent.read("ud://units")
            assert [u["name"] for u in units["units"]] == ["svc"]
            plan = await agent.call("plan_promotion", unit="svc", env="production")
            assert not plan["ok"] and plan["blocked_by"][0]["code"] == "UD-AUTH-FORBIDDEN"
            staged = await agent.call("promote", unit="svc", env="staging", reason="agent test")
            assert staged["ok"] and staged["version"], staged
            refused = await agent.call("promote", unit="svc", env="production")
            assert refused["error"]["code"] == "UD-AUTH-FORBIDDEN" and refused["error"]["exit_code"] == 4
            assert refused["error"]["remediation"] and refused["run_id"]
            status = await agent.call("status")
            envs = status["units"][0]["environments"]
            assert envs["staging"]["version"] == staged["version"] and envs["production"] is None
            policy = await agent.read("ud://policy")
            assert policy["you"]["roles"] == {"production": [], "staging": ["deploy"]}
            assert policy["you"]["promotions_per_day"]["staging"]["used"] >= 1
            return agent.made

    made = asyncio.run(session())
    assert _calls(platform, "stdio") == made


def test_over_http_each_request_acts_for_its_token_up_to_the_quota(platform, loaded):
    server = subprocess.Popen([tiny.UD, "mcp", "--http", "--port", "0", "--json"], cwd=platform["project"],
                              env=_env(platform), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        announced = json.loads(server.stdout.readline() or "{}")
        assert announced.get("url", "").startswith("http://127.0.0.1:"), server.stderr.read()[-2000:] if server.poll() else announced

        async def session(token: str | None, principal: str) -> Agent:
            headers = {"Authorization": f"Bearer {token}"} if token else {}
            async with (httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(30, read=600)) as http,
                        streamable_http_client(announced["url"], http_client=http) as (read, write),
                        ClientSession(read, write) as s):
                await s.initialize()
                assert {t.name for t in (await s.list_tools()).tools} == TOOLS
                agent = Agent(s, principal)
                if token is None or token != platform["token"]:
                    refused = await agent.call("status")
                    agent.refused = refused["error"]
                    return agent
                left = (await agent.read("ud://policy"))["you"]["promotions_per_day"]["staging"]["left"]
                assert left >= 1
                for _ in range(left):  # up to the last change the quota allows
                    tiny.commit(platform["work"], f"change {random.random()}")
                    done = await agent.call("promote", unit="svc", env="staging")
                    assert done["ok"], done
                tiny.commit(platform["work"], "one too many")
                over = await agent.call("promote", unit="svc", env="staging")
                assert over["error"]["code"] == "UD-AUTH-QUOTA" and over["error"]["exit_code"] == 4, over
                asked = await agent.call("request_approval", unit="svc", env="production", version=done["version"],
                                         note="ready for production")
                assert "human:olivia" in asked["may_approve"] and "human:dana" not in asked["may_approve"]  # her commit
                assert asked["required"] == 1 and asked["approvals"] == 0
                mine = await agent.call("audit", action=McpCall.ACTION, principal=BOT)
                assert mine["ledger"]["ok"] and mine["entries"][-1]["payload"]["tool"] == "request_approval"
                return agent

        nobody = asyncio.run(session(None, "service:dagster-ui"))
        assert nobody.refused["code"] == "UD-AUTH-TOKEN-REQUIRED" and nobody.refused["exit_code"] == 4
        forged = asyncio.run(session(platform["token"][:-3] + "AAA", "service:dagster-ui"))
        assert forged.refused["code"] == "UD-AUTH-TOKEN-INVALID"
        agent = asyncio.run(session(platform["token"], BOT))
        assert _calls(platform, "http") == nobody.made + forged.made + agent.made
        # The request reaches the approvers like a version waiting at a gate (notifications).
        from unified_delivery.notifications.outbox import messages

        ledger = loaded[0].ledger.ledger()
        asked = [m for m in messages(loaded[0], ledger, ledger.entries()) if m.event == "approval-pending"]
        assert asked and asked[-1].principal == BOT and "human:olivia" in asked[-1].details["approvers"]
        assert "ready for production" in asked[-1].text and "ud approve svc" in asked[-1].details["command"]
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_in_process_refusals_reports_and_a_bug_are_structured_and_recorded(platform, loaded):
    """The same server connected in-process (the SDK's `Client` on an `MCPServer`): reports, bad
    arguments refused with their codes, and a bug in ud said as UD-MCP-INTERNAL, every one recorded."""
    from mcp import Client

    from unified_delivery.home import Home
    from unified_delivery.mcp_server import Gateway, build_server

    gw = Gateway(*loaded, Home.current(), "in-process", lambda: platform["token"])

    async def session() -> list[dict]:
        async with Client(build_server(gw)) as client:
            answers = []
            for tool, arguments in (("report", {"what": "dora", "env": "staging"}), ("report", {"what": "cost"}),
                                    ("audit", {"limit": 0}), ("report", {"what": "dora", "since": "last tuesday"}),
                                    ("request_approval", {"unit": "svc", "env": "production", "version": "0" * 40}),
                                    ("gates", {"unit": "ghost"})):
                result = await client.call_tool(tool, arguments)
                assert result.is_error == (not result.structured_content["ok"])
                answers.append(result.structured_content)
            return answers

    dora, cost, limit, date, unknown, ghost = asyncio.run(session())
    assert dora["ok"] and dora["ledger"]["ok"] and dora["env"] == "staging" and cost["ok"]
    assert [a["error"]["code"] for a in (limit, date, unknown, ghost)] == [
        "UD-USAGE", "UD-USAGE", "UD-APPROVAL-UNKNOWN-VERSION", "UD-UNKNOWN-UNIT"]
    assert all(a["error"]["remediation"] and a["error"]["exit_code"] == 2 for a in (limit, date, ghost))
    bug = gw._run("status", {}, platform["token"], lambda who: {"n": 1 / 0})  # noqa: SLF001
    assert bug["error"]["code"] == "UD-MCP-INTERNAL" and "ZeroDivisionError" in bug["error"]["message"]
    recorded = _calls(platform, "in-process")
    assert [code for _, _, code in recorded] == ["", "", "UD-USAGE", "UD-USAGE", "UD-APPROVAL-UNKNOWN-VERSION",
                                                 "UD-UNKNOWN-UNIT", "UD-MCP-INTERNAL"]
    assert {principal for _, principal, _ in recorded} == {BOT}
