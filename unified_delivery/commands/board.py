"""`ud board`: the release board (unified_delivery/board.py) on a local port, beside the
Dagster UI (`ud ui`), until interrupted."""

from __future__ import annotations

import signal

from .. import service


def cmd_board(args, out) -> int:
    from ..board import BoardServer

    platform, _ = service.load_platform()
    server = BoardServer(platform, args.host, args.port, args.dagster_url)
    host, port = server.server_address[:2]
    out.result(
        {"url": f"http://{host}:{port}/", "units": len(platform.units)},
        f"release board of {len(platform.units)} units on http://{host}:{port}/ (Ctrl-C stops)",
    )
    # Ctrl-C and SIGTERM stop it, even when it was started with SIGINT ignored (`ud board &` in
    # a script): Python then leaves SIGINT ignored.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


def register(add) -> None:
    sp = add(
        "board",
        cmd_board,
        "the release board: every unit and environment, who, since when, waiting for whom",
    )
    sp.add_argument("--port", type=int, default=3100)
    sp.add_argument("--host", default="127.0.0.1")
    sp.add_argument(
        "--dagster-url",
        default="http://127.0.0.1:3000",
        help="the Dagster UI the rows link their runs to (`ud ui`)",
    )
