"""`ud mcp`: the platform as a Model Context Protocol server, for AI agents.

A front door like the CLI: each tool parses its arguments, calls one function of the service
layer (`unified_delivery/service/`) and renders what it returns, as structured content. It
acts only for the principal of the token each call comes with (over stdio: the server's
`--token` or `$UD_TOKEN`; over HTTP: the request's `Authorization: Bearer` header): that
principal's roles and quotas decide, and without a token nothing runs. A refusal is
structured content too, `{"ok": false, "error": {code, message, remediation, exit_code}}`
with the same UD- code and exit class `ud --json` gives, and every call, refused or not, is
one `mcp-call` entry in the ledger under the principal it acted for.

Service calls run one at a time, in a worker thread: a promotion is a Dagster run in this
process, and the platform it loaded is shared by every session.
"""

from __future__ import annotations

import contextvars
import hashlib
import inspect
import json
import socket
import sys
import threading
import time
import traceback
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal

import anyio
from mcp.server.mcpserver import MCPServer
from mcp.types import CallToolResult, TextContent, ToolAnnotations

from . import service
from .errors import EXIT_OK, EXIT_TARGET, NotPermitted, UDError
from .events import McpCall, record
from .home import Home
from .ledger.chain import canonical_json

if TYPE_CHECKING:
    from .platform import Platform
    from .runner import RunOutcome

Transport = str  # how calls reach the server: "stdio" or "http" (tests: "in-process")
LOOPBACK = "127.0.0.1"
PATH = "/mcp"

INSTRUCTIONS = """\
unified-delivery: one delivery pipeline for apps, ML models and dbt data products. You act as
the principal of your token, with its roles per environment and its quotas; every call is
recorded in the ledger under your name. Read `ud://policy` for what you may do and what is
left of your quotas, `ud://units` for the units. Plan before you act (plan_promotion,
plan_rollback change nothing). A refusal comes back as structured content: error.code (a
stable UD- code), error.remediation (what to do) and error.exit_code (2 usage, 3 a gate
refused, 4 not permitted, 5 a target failed). Do not retry a refusal with exit code 4 with
other arguments: it is a decision of the platform's policy; hand it to a human."""

REFUSALS = (
    "Refused without a valid token (UD-AUTH-TOKEN-REQUIRED, UD-AUTH-TOKEN-INVALID, "
    "UD-AUTH-TOKEN-EXPIRED, UD-AUTH-UNKNOWN-PRINCIPAL: exit class 4)"
)


def _digest(arguments: dict[str, Any]) -> str:
    return hashlib.sha256(canonical_json(arguments).encode()).hexdigest()


def _result(data: dict[str, Any]) -> CallToolResult:
    return CallToolResult(
        content=[TextContent(type="text", text=json.dumps(data, default=str))],
        structured_content=data,
        is_error=not data.get("ok", True),
    )


class Gateway:
    """What every tool shares: who the call acts for, running the service call, recording it.

    `token_of()` gives the token the current call came with: the server's own over stdio,
    the HTTP request's bearer token (`BearerToken`) over HTTP."""

    def __init__(
        self,
        platform: Platform,
        defs: Any,
        home: Home,
        transport: Transport,
        token_of: Callable[[], str | None],
    ):
        self.platform, self.defs, self.home = platform, defs, home
        self.transport = transport
        self.token_of = token_of
        self._one_at_a_time = threading.Lock()

    def principal(self, token: str | None) -> str:
        """The token's principal; no token is no principal (never the local operator's)."""
        if not token:
            raise NotPermitted(
                "UD-AUTH-TOKEN-REQUIRED",
                "the MCP server acts only with a token, and this call came without one",
                "an admin issues one (`ud token issue agent:NAME --ttl 1h`); give it as "
                "$UD_TOKEN or --token to `ud mcp` (stdio), or as `Authorization: Bearer TOKEN` "
                "(HTTP)",
            )
        return service.identity(self.platform, token, self.home)

    async def call(
        self,
        tool: str,
        arguments: dict[str, Any],
        action: Callable[[str], dict[str, Any]],
    ) -> CallToolResult:
        token = self.token_of()
        return _result(await anyio.to_thread.run_sync(self._run, tool, arguments, token, action))

    def _run(
        self,
        tool: str,
        arguments: dict[str, Any],
        token: str | None,
        action: Callable[[str], dict[str, Any]],
    ) -> dict[str, Any]:
        with self._one_at_a_time:
            started = time.monotonic()
            principal = self.platform.governance.ui_principal  # until the token names one
            try:
                principal = self.principal(token)
                data = {"ok": True, **action(principal)}
            except RunRefused as refused:
                data = {"ok": False, "error": _said(refused.error), "run_id": refused.run_id}
            except UDError as exc:
                data = {"ok": False, "error": _said(exc)}
            except Exception as exc:  # a bug in ud: said as such, the traceback on stderr
                traceback.print_exc(file=sys.stderr)
                data = {
                    "ok": False,
                    "error": UDError(
                        "UD-MCP-INTERNAL",
                        f"{tool} failed inside ud: {type(exc).__name__}",
                        "a bug in ud, not in the call: the server's stderr has the traceback",
                        exit_code=EXIT_TARGET,
                    ).to_dict(),
                }
            error = data.get("error") or {}
            if not error and data.get("dry_run") and data.get("blocked_by"):
                error = data["blocked_by"][0]  # a plan the real call would refuse
            record(
                self.platform.ledger.ledger(),
                McpCall(
                    tool=tool,
                    arguments=arguments,
                    digest=_digest(arguments),
                    ok=bool(data["ok"]),
                    code=error.get("code", ""),
                    exit_code=int(error.get("exit_code", EXIT_OK)),
                    transport=self.transport,
                    seconds=round(time.monotonic() - started, 3),
                ),
                principal=principal,
                unit=arguments.get("unit") or None,
                env=arguments.get("env") or None,
                version=arguments.get("version") or None,
            )
            return data

    async def read(self, uri: str, action: Callable[[str], dict[str, Any]]) -> str:
        """A resource, read for the caller's principal (recorded as a call of `read URI`); a
        refused read is the same error object a tool gives."""
        token = self.token_of()
        data = await anyio.to_thread.run_sync(self._run, f"read {uri}", {}, token, action)
        return json.dumps(data, default=str)


class RunRefused(Exception):
    """A Dagster run that ended with a UD error: the error, and the run to look at."""

    def __init__(self, error: UDError, run_id: str):
        super().__init__(str(error))
        self.error, self.run_id = error, run_id


def _said(exc: UDError) -> dict[str, Any]:
    """The error as `ud --json` says it: code, message, remediation, exit code; redacted."""
    from .redaction import redact_text

    return {
        **exc.to_dict(),
        "message": redact_text(exc.message),
        "remediation": redact_text(exc.remediation),
    }


def _run_outcome(
    platform: Platform, outcome: RunOutcome, unit_name: str, env: str
) -> dict[str, Any]:
    if outcome.error:
        raise RunRefused(outcome.error, outcome.run_id)
    unit = platform.unit(unit_name)
    dep = platform.target(unit, env).status(unit, env)
    return {
        "unit": unit_name,
        "env": env,
        "version": dep.version if dep else None,
        "previous_version": dep.previous_version if dep else None,
        "run_id": outcome.run_id,
    }


def build_server(gw: Gateway) -> MCPServer:
    """The tools and resources, each a thin call of the service layer through `gw`."""
    p = gw.platform
    server = MCPServer(
        "unified-delivery", instructions=INSTRUCTIONS, version=_version(), log_level="WARNING"
    )
    read_only = ToolAnnotations(read_only_hint=True, destructive_hint=False)
    changes = ToolAnnotations(read_only_hint=False, destructive_hint=True, idempotent_hint=False)

    def tool(annotations: ToolAnnotations | None) -> Callable[[Callable], Callable]:
        # A tool's description is its docstring and what every tool may be refused for.
        def register(fn: Callable) -> Callable:
            about = f"{inspect.cleandoc(fn.__doc__ or '')} {REFUSALS}."
            server.add_tool(fn, description=about, annotations=annotations)
            return fn

        return register

    @tool(read_only)
    async def status() -> CallToolResult:
        """Each unit's version per environment: `version` is what the platform deployed there
        (the ledger), `actual_version` what the target runs, `in_sync` whether they agree;
        service URLs. Changes nothing."""
        return await gw.call("status", {}, lambda who: service.status(p))

    @tool(read_only)
    async def plan_promotion(unit: str, env: str, ref: str = "") -> CallToolResult:
        """Dry run of `promote`: the version it would deploy to `env`, the gates it would run,
        and `blocked_by` (each with code, message, remediation, exit_code) when policy (your
        roles: UD-AUTH-FORBIDDEN), a change freeze (UD-GATE-FREEZE-ACTIVE) or an empty previous
        stage (UD-PROMOTE-NOTHING) would refuse it. Changes nothing; ok is false when the real
        call would be refused. Gates are not run here. Refused for an unknown unit
        (UD-UNKNOWN-UNIT) or environment (UD-UNKNOWN-ENV)."""
        return await gw.call(
            "plan_promotion",
            {"unit": unit, "env": env, "ref": ref},
            lambda who: service.promote_plan(p, unit, env, who, ref),
        )

    @tool(read_only)
    async def plan_rollback(unit: str, env: str, to: str = "") -> CallToolResult:
        """Dry run of `rollback`: the version `env` would go back to (the previous one, or
        `to`), the units that consume it, and `blocked_by` when your roles
        (UD-AUTH-FORBIDDEN), a freeze, no previous version (UD-ROLLBACK-NOTHING) or a version
        that never ran there (UD-ROLLBACK-NOT-DEPLOYED) would refuse it. Changes nothing.
        """
        return await gw.call(
            "plan_rollback",
            {"unit": unit, "env": env, "to": to},
            lambda who: service.rollback_plan(p, unit, env, who, to),
        )

    @tool(changes)
    async def promote(unit: str, env: str, reason: str = "", ref: str = "") -> CallToolResult:
        """Promote `unit` to `env` as a Dagster run (minutes at most): build and gate a new
        candidate for the first environment (`ref`: an app's commit or branch, a model's
        registered version, a data unit's dbt vars as YAML), or re-run the gates on the
        previous environment, then deploy. Returns the version now in `env` and the run id.
        Counts against your daily quota for `env`. Refused when you lack the deploy role in
        `env` (UD-AUTH-FORBIDDEN, exit 4), your daily quota of changes there is used up
        (UD-AUTH-QUOTA, exit 4), a gate refuses the version (UD-GATE-REFUSED or the gate's
        code, exit 3: see `gates`), approvals are missing, `env` is frozen, the previous stage
        is empty (UD-PROMOTE-NOTHING, exit 2) or the target fails (exit 5: the environment
        keeps its previous version)."""
        return await gw.call(
            "promote",
            {"unit": unit, "env": env, "reason": reason, "ref": ref},
            lambda who: _run_outcome(
                p,
                service.promote(
                    p, gw.defs, unit, env, reason=reason, ref=ref, principal=who, home=gw.home
                ),
                unit,
                env,
            ),
        )

    @tool(changes)
    async def rollback(unit: str, env: str, reason: str, to: str = "") -> CallToolResult:
        """Return `unit` in `env` to its previous version (or `to`, one that environment ran)
        through its target, as a Dagster run; `reason` is required and recorded. Counts
        against your daily quota for `env`. Refused without a reason (UD-USAGE), without the
        deploy role in `env` (UD-AUTH-FORBIDDEN), past your quota (UD-AUTH-QUOTA), with
        nothing to go back to (UD-ROLLBACK-NOTHING) or to a version `env` never ran
        (UD-ROLLBACK-NOT-DEPLOYED)."""
        return await gw.call(
            "rollback",
            {"unit": unit, "env": env, "reason": reason, "to": to},
            lambda who: _run_outcome(
                p,
                service.rollback(
                    p, gw.defs, unit, env, to=to, reason=reason, principal=who, home=gw.home
                ),
                unit,
                env,
            ),
        )

    @tool(None)
    async def request_approval(unit: str, env: str, version: str, note: str = "") -> CallToolResult:
        """Ask for the approvals `version` of `unit` needs before it may go to `env`
        (four-eyes): recorded in the ledger with your note; says how many are required and
        given, who may approve (the approve role in `env`, the version's authors excepted) and
        the command they run. Approves nothing. Refused for a version the platform never built
        (UD-APPROVAL-UNKNOWN-VERSION) or an unknown environment (UD-UNKNOWN-ENV).
        """
        return await gw.call(
            "request_approval",
            {"unit": unit, "env": env, "version": version, "note": note},
            lambda who: service.request_approval(p, who, unit, env, version, note=note),
        )

    @tool(read_only)
    async def gates(unit: str, env: str = "") -> CallToolResult:
        """The latest result of each gate of `unit` for its newest candidate (or for the
        version in `env`): passed, code, message, remediation, any override in force, and
        `evidence` (what the gate measured: metrics, findings, costs). Pending approvals are
        evaluated live. Changes nothing. Refused for an unknown unit or environment.
        """
        return await gw.call(
            "gates", {"unit": unit, "env": env}, lambda who: service.gate_report(p, unit, env)
        )

    @tool(read_only)
    async def audit(
        unit: str = "",
        env: str = "",
        action: str = "",
        principal: str = "",
        since: str = "",
        until: str = "",
        limit: int = 50,
    ) -> CallToolResult:
        """Ledger entries that match (each: seq, at, action, principal, unit, env, version,
        payload), the newest `limit` of them (1 to 1000), with the ledger's verification
        (`ledger.ok`: chain and signatures intact). Filters: unit, env, action (promotion,
        rollback, gate, refusal, approval, override, mcp-call, ...), principal, since and
        until (ISO dates, UTC). Changes nothing (the call itself is recorded). Refused for a
        date that does not parse or a limit out of range (UD-USAGE)."""
        args = {
            "unit": unit,
            "env": env,
            "action": action,
            "principal": principal,
            "since": since,
            "until": until,
            "limit": limit,
        }
        return await gw.call("audit", args, lambda who: service.audit_entries(p, **args))

    @tool(read_only)
    async def report(
        what: Literal["dora", "cost", "audit"],
        since: str = "",
        until: str = "",
        env: str = "production",
    ) -> CallToolResult:
        """A report from the verified ledger, last 30 days unless since/until (ISO dates) say
        otherwise: `dora` (deployment frequency, lead time, change failure rate, time to
        restore per unit, team and kind, for deploys to `env`), `cost` (spend per team and
        unit against budgets) or `audit` (production changes and notable entries). A broken
        ledger is its `warning`. Refused for a date that does not parse or an environment no
        unit has (UD-USAGE, UD-UNKNOWN-ENV)."""
        return await gw.call(
            "report",
            {"what": what, "since": since, "until": until, "env": env},
            lambda who: service.report(p, what, service.report_window(since, until), env),
        )

    @server.resource("ud://units", mime_type="application/json")
    async def units() -> str:
        """Every unit in dependency order: kind, team, dependencies and consumers,
        environments, the gates guarding each stage, budget and promotion policy."""
        return await gw.read("ud://units", lambda who: service.units(p))

    @server.resource("ud://policy", mime_type="application/json")
    async def policy() -> str:
        """Who may do what where: your roles per environment and what is left of your daily
        quotas; every principal's roles and quotas; freezes, and which is active now."""
        return await gw.read("ud://policy", lambda who: service.policy_summary(p, who))

    return server


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("unified-delivery")
    except PackageNotFoundError:
        return "0"


_bearer: contextvars.ContextVar[str | None] = contextvars.ContextVar("ud_bearer", default=None)


class BearerToken:
    """ASGI middleware: the `Authorization: Bearer TOKEN` of each HTTP request, kept for the
    tools and resources that request reaches (the SDK carries a request's context variables
    to its handlers). A request without one acts for nobody."""

    def __init__(self, app: Any):
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        token = None
        if scope.get("type") == "http":
            for name, value in scope.get("headers", []):
                if name == b"authorization":
                    scheme, _, rest = value.decode("latin-1").partition(" ")
                    if scheme.lower() == "bearer" and rest.strip():
                        token = rest.strip()
        reset = _bearer.set(token)
        try:
            await self.app(scope, receive, send)
        finally:
            _bearer.reset(reset)


def serve_stdio(token: str | None) -> None:
    """Serve one session over this process's stdin and stdout (the SDK keeps stray output of
    runs and their tools off the wire: fd 1 points at stderr while it serves)."""
    platform, defs = service.load_platform()
    gw = Gateway(platform, defs, Home.current(), "stdio", lambda: token)
    build_server(gw).run("stdio")


def serve_http(port: int, ready: Callable[[str], None]) -> None:
    """Serve streamable HTTP on the loopback address until interrupted; each request acts for
    its own bearer token. `ready(url)` is told the address once the socket listens (port 0:
    one the system picks)."""
    import uvicorn

    platform, defs = service.load_platform()
    gw = Gateway(platform, defs, Home.current(), "http", _bearer.get)
    app = BearerToken(
        build_server(gw).streamable_http_app(streamable_http_path=PATH, host=LOOPBACK)
    )
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((LOOPBACK, port))
    except OSError as exc:
        sock.close()
        raise UDError(
            "UD-USAGE",
            f"cannot listen on {LOOPBACK}:{port}: {exc.strerror}",
            "give another --port (0: any free one)",
        ) from None
    sock.listen(64)
    url = f"http://{LOOPBACK}:{sock.getsockname()[1]}{PATH}"
    config = uvicorn.Config(app, log_level="warning", lifespan="on")
    ready(url)
    uvicorn.Server(config).run(sockets=[sock])
