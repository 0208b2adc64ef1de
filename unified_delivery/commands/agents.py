"""`ud mcp [--http [--port N]]`: the platform as a Model Context Protocol server for AI agents
(unified_delivery/mcp_server.py): over stdio by default (one session, the token of `--token`
or $UD_TOKEN), or over streamable HTTP on the loopback address (each request with its own
`Authorization: Bearer` token). The MCP SDK is imported only here, when the server starts."""

from __future__ import annotations

import json
import os

from ..errors import UDError


def cmd_mcp(args, out) -> int:
    from ..mcp_server import serve_http, serve_stdio

    if not args.http:
        serve_stdio(args.token or os.environ.get("UD_TOKEN") or None)
        return 0
    if args.token:
        raise UDError(
            "UD-USAGE",
            "over HTTP each request brings its own token; `ud mcp --http` takes none",
            "give the token to the client, as the header `Authorization: Bearer TOKEN`",
        )

    def ready(url: str) -> None:
        out.progress(f"serving MCP over streamable HTTP on {url} (Ctrl-C stops it)")
        if out.as_json:  # one line: a script learns the address (--port 0: the one picked)
            print(json.dumps({"ok": True, "transport": "http", "url": url}), flush=True)

    serve_http(args.port, ready)
    return 0


def register(add) -> None:
    sp = add(
        "mcp",
        cmd_mcp,
        "serve the platform to AI agents over the Model Context Protocol (stdio, or --http)",
    )
    sp.add_argument(
        "--http",
        action="store_true",
        help="streamable HTTP on 127.0.0.1 instead of stdio; each request's bearer token acts",
    )
    sp.add_argument(
        "--port", type=int, default=8765, help="with --http: the port (0: any free one)"
    )
