"""`ud sensors tick [NAME]`: evaluate the platform's sensors once and run what they request;
`ud sensors webhook`: receive MLflow registry webhooks and evaluate the registry sensor at once."""

from __future__ import annotations

from ..errors import EXIT_TARGET


def cmd_tick(args, out) -> int:
    from ..home import Home
    from ..service import load_platform
    from ..triggers.tick import tick

    _, defs = load_platform()
    data = tick(defs, Home.current(), [args.name] if args.name else [], progress=out.progress)

    def text() -> str:
        lines = []
        for s in data["sensors"]:
            head = f"{s['name']}: " + (
                f"FAILED {s['error']}"
                if s["error"]
                else f"{len(s['requested'])} run(s) requested"
                if s["requested"]
                else (s["skip_reason"] or "nothing")
            )
            lines.append(head)
            lines += [f"  {n['level']:7} {n['message']}" for n in s["notes"]]
            for r in s["requested"]:
                err = f" {r['error']['code']}: {r['error']['message']}" if r.get("error") else ""
                lines.append(
                    f"  {r['outcome']:7} {r['job']} {r['run_key']} (run "
                    f"{(r.get('run_id') or '-')[:8]}){err}"
                )
        return "\n".join(lines)

    out.result(data, text)
    if not data["ok"]:
        return EXIT_TARGET
    # A run it asked for that failed is this command's failure too: its own exit class (3 a
    # gate refused, 4 not permitted, 5 a target failed), so a script sees it.
    failed = [r for s in data["sensors"] for r in s["requested"] if r.get("outcome") == "failed"]
    return max(
        (int((r.get("error") or {}).get("exit_code") or EXIT_TARGET) for r in failed), default=0
    )


def cmd_webhook(args, out) -> int:
    import os

    from ..errors import ConfigError
    from ..home import Home
    from ..service import load_platform
    from ..triggers.webhook import serve

    secret = os.environ.get(args.secret_env, "")
    if not secret:
        raise ConfigError(
            "UD-WEBHOOK-NO-SECRET",
            f"the webhook secret variable {args.secret_env} is not set",
            f"export {args.secret_env}=<the secret given to MLflow's create_webhook>",
        )
    _, defs = load_platform()
    out.progress(
        f"receiving MLflow webhooks on http://{args.host}:{args.port}/ (sensor {args.sensor})"
    )
    serve(
        args.host,
        args.port,
        secret,
        sensor=args.sensor,
        dagster_url=args.dagster_url,
        defs=defs,
        home=Home.current(),
        log=out.progress,
    )
    return 0


def register(add) -> None:
    sp = add(
        "sensors",
        None,
        "the platform's sensors (Git push, MLflow registry, promotion, health, cascade)",
    )
    sub = sp.add_subparsers(dest="action", required=True, parser_class=type(sp))
    tick = sub.add_parser(
        "tick",
        help="evaluate the sensors once and run what they request",
        description="Evaluate the sensors once (all, or NAME) and execute the runs they request on "
        "the instance; for scripts and tests that run no daemon.",
    )
    tick.add_argument("name", nargs="?", default="", metavar="NAME")
    tick.set_defaults(fn=cmd_tick)
    hook = sub.add_parser(
        "webhook",
        help="receive MLflow registry webhooks (HMAC-verified) and evaluate the registry sensor",
        description="An HTTP receiver for MLflow model registry webhooks: "
        "each delivery with a valid signature evaluates the "
        "registry sensor at once. A body needs a Content-Length "
        "of at most 1 MiB, a connection has 10 s for headers and "
        "body, and 64 are served at once; the rest are refused "
        "and logged.",
    )
    hook.add_argument("--host", default="127.0.0.1")
    hook.add_argument("--port", type=int, default=8790)
    hook.add_argument(
        "--secret-env",
        default="UD_MLFLOW_WEBHOOK_SECRET",
        help="variable holding the webhook secret",
    )
    hook.add_argument("--sensor", default="ud_mlflow_registry")
    hook.add_argument(
        "--dagster-url",
        default="http://127.0.0.1:3000",
        help="a running `ud ui`; without one the sensor is evaluated in this process",
    )
    hook.set_defaults(fn=cmd_webhook)
