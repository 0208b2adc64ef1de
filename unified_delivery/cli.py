"""The `ud` command: one front door for people, scripts and agents.

Every command takes `--json`. Errors are one line (or one JSON object) with a stable
code and a remediation; exit codes: 0 ok, 2 usage or configuration, 3 a gate refused,
4 not permitted, 5 a target failed. A traceback is printed only for a bug in ud itself.
Each command parses its arguments, calls the service layer (`unified_delivery/service/`)
and renders what it returns.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import os
import signal
import sys
import warnings
from pathlib import Path
from typing import Any

from . import code_server, service
from .errors import UDError
from .home import Home
from .output import (
    FORMATS,
    Output,
    RunStream,
    dump,
    gates_text,
    output_format,
    plan_text,
    status_table,
)
from .targets.roles import ReleaseStore


class Parser(argparse.ArgumentParser):
    def error(
        self, message: str
    ) -> None:  # usage errors are user errors: code + exit 2, no usage dump
        raise UDError("UD-USAGE", f"{self.prog}: {message}", f"see `{self.prog} --help`")


def global_options(parser: argparse.ArgumentParser, *, suppress: bool) -> None:
    """--json, -o and --token: before the command (`ud --json status`), after it or after its
    verb (`ud audit verify -o yaml`). A command's copy is suppressed when not given, so it never
    resets what was given before it."""
    unset = argparse.SUPPRESS
    parser.add_argument(
        "--json",
        action="store_true",
        default=unset if suppress else False,
        help="one JSON object on stdout, no progress (same as -o json)",
    )
    parser.add_argument(
        "-o",
        "--output",
        choices=FORMATS,
        default=unset if suppress else "table",
        help="table (default), json or yaml",
    )
    parser.add_argument(
        "--token",
        default=unset if suppress else None,
        help="act as the principal of this token (default: $UD_TOKEN)",
    )


class CommandParser(Parser):
    """The parser of a command, and of a command's verbs (`parser_class=type(sp)`): each takes
    the global options."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        global_options(self, suppress=True)


def cmd_status(args, out: Output) -> int:
    data = service.status_from_record()  # the platform is loaded only when it must be
    out.result(data, lambda: status_table(data))
    return 0


def cmd_info(args, out: Output) -> int:
    data = service.home_info()
    repos = data["repos"]
    out.result(
        data,
        lambda: (
            "\n".join(f"{k:20} {v}" for k, v in data.items() if k != "repos")
            + "".join(
                f"\nrepo {n:15} {r['remote']} (workdir {r['workdir']})" for n, r in repos.items()
            )
        ),
    )
    return 0


def cmd_promote(args, out: Output) -> int:
    platform, defs = service.load_platform()
    platform.unit(args.unit)  # an unknown unit is a usage error, before anything is recorded
    principal = service.identity(platform, args.token)
    if args.dry_run:
        plan = service.promote_plan(platform, args.unit, args.to, principal, args.ref)
        out.result(plan, lambda: plan_text(plan))
        from .service.plans import plan_exit_code

        return plan_exit_code(plan)
    out.progress(f"promoting {args.unit} to {args.to} as {principal}")
    outcome = service.promote(
        platform,
        defs,
        args.unit,
        args.to,
        reason=args.reason,
        ref=args.ref,
        principal=principal,
        submit=True,
        wait=not args.no_wait,
        on_event=RunStream(out.progress),
    )
    if (code := settled(out, outcome, args.unit, args.to)) is not None:
        return code
    unit = platform.unit(args.unit)
    dep = platform.target(unit, args.to).status(unit, args.to)
    data = {
        "ok": True,
        "unit": args.unit,
        "env": args.to,
        # what this run deployed: another promotion may have deployed a newer one since
        "version": outcome.versions.get(f"{args.unit}/{args.to}") or (dep.version if dep else None),
        "run_id": outcome.run_id,
        "run_url": run_url(outcome.run_id),
    }
    out.result(
        data,
        f"{args.unit} {data['version']} is in {args.to} (run {outcome.run_id[:8]}: "
        f"{data['run_url']})",
    )
    return 0


def run_url(run_id: str) -> str:
    """The run in the Dagster UI (`ud ui`, or $UD_DAGSTER_URL)."""
    base = os.environ.get("UD_DAGSTER_URL", "http://127.0.0.1:3000").rstrip("/")
    return f"{base}/runs/{run_id}"


def settled(out: Output, outcome: Any, unit: str, env: str) -> int | None:
    """What a run of `ud promote` or `ud rollback` leaves to say before its own result: with
    `--no-wait` the run id, for `ud watch` (the exit code returned); a refusal, raised; None
    once the run succeeded."""
    if outcome.pending:
        url = run_url(outcome.run_id)
        data = {"ok": True, "unit": unit, "env": env, "run_id": outcome.run_id, "run_url": url}
        out.result(data, f"{outcome.run_id}\n  follow it: ud watch {outcome.run_id[:8]}   ({url})")
        return 0
    if outcome.error:
        raise outcome.error
    return None


def cmd_rollback(args, out: Output) -> int:
    if not args.reason.strip():
        raise UDError(
            "UD-USAGE", "a rollback needs --reason", "say why, e.g. --reason 'errors after deploy'"
        )
    platform, defs = service.load_platform()
    platform.unit(args.unit)  # an unknown unit is a usage error, before anything is recorded
    principal = service.identity(platform, args.token)
    if args.dry_run:
        plan = service.rollback_plan(platform, args.unit, args.env, principal, args.to)
        out.result(plan, lambda: plan_text(plan))
        from .service.plans import plan_exit_code

        return plan_exit_code(plan)
    out.progress(f"rolling {args.unit} back in {args.env} as {principal}")
    outcome = service.rollback(
        platform,
        defs,
        args.unit,
        args.env,
        to=args.to,
        reason=args.reason,
        principal=principal,
        submit=True,
        wait=not args.no_wait,
        on_event=RunStream(out.progress),
    )
    if (code := settled(out, outcome, args.unit, args.env)) is not None:
        return code
    unit = platform.unit(args.unit)
    dep = platform.target(unit, args.env).status(unit, args.env)
    data = {
        "ok": True,
        "unit": args.unit,
        "env": args.env,
        "version": outcome.versions.get(f"{args.unit}/{args.env}")
        or (dep.version if dep else None),
        "previous_version": dep.previous_version if dep else None,
        "run_id": outcome.run_id,
        "run_url": run_url(outcome.run_id),
        "consumers": platform.consumers(args.unit),
    }
    extra = (
        f"; it is served by {', '.join(data['consumers'])}"
        if unit.kind == "model" and data["consumers"]
        else ""
    )
    out.result(
        data,
        f"{args.unit} in {args.env} is back on {data['version']} "
        f"(was {data['previous_version']}){extra}",
    )
    return 0


def cmd_gates(args, out: Output) -> int:
    data = service.gate_report_from_record(args.unit, args.env, args.version)
    out.result(data, lambda: gates_text(data))
    return 0


def cmd_down(args, out: Output) -> int:
    from .targets.registry import stop_local as stop_registry

    platform, _ = service.load_platform()
    stopped = [s for store in platform.targets.playing(ReleaseStore) for s in store.stop_all()]
    if code_server.stop(Home.current(), wait_for_runs=False):
        stopped.append("code server")
    if stop_ui(Home.current()):
        stopped.append("ui")
    if stop_registry(Home.current()):
        stopped.append("image registry")
    out.result(
        {"ok": True, "stopped": stopped},
        f"stopped {len(stopped)} service(s): {', '.join(stopped) or '-'}",
    )
    return 0


def ui_file(home: Home):
    return home.root / "run" / "ui.json"


def stop_ui(home: Home, timeout_s: float = 30) -> bool:
    """Stop the `ud ui` of this home (dagster dev turns SIGTERM into its Ctrl-C: the webserver,
    the daemon and their code servers stop). Whether one was running."""
    import time

    try:
        pid = int(json.loads(ui_file(home).read_text())["pid"])
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError, KeyError):
        return False
    ui_file(home).unlink(missing_ok=True)
    if b"dagster" not in cmdline:  # the pid was reused by another program
        return False
    import psutil

    try:
        ui = psutil.Process(pid)
        family = [ui, *ui.children(recursive=True)]  # the webserver, the daemon, code servers
    except psutil.NoSuchProcess:
        return False

    def gone(proc: psutil.Process) -> bool:  # a zombie has ended: its parent reaps it
        try:
            return proc.status() == psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return True

    ui.terminate()
    deadline = time.monotonic() + timeout_s
    while not all(gone(p) for p in family) and time.monotonic() < deadline:
        time.sleep(0.2)
    for proc in family:  # one that would not stop (cmd_ui resets an inherited SIG_IGN: rare)
        if not gone(proc):
            with contextlib.suppress(psutil.NoSuchProcess):
                proc.kill()
    return True


def cmd_ui(args, out: Output) -> int:
    from .home import project_root
    from .runner import prepare_home

    home = Home.current()
    prepare_home(home)
    env = {**os.environ, "DAGSTER_HOME": str(home.dagster_home), "UD_HOME": str(home.root)}
    cmd = [
        os.path.join(os.path.dirname(sys.executable), "dagster"),
        "dev",
        "-w",
        str(project_root() / "workspace.yaml"),
        "-p",
        str(args.port),
        "-h",
        args.host,
    ]
    out.progress(
        f"starting the Dagster UI on http://{args.host}:{args.port} (instance {home.dagster_home});"
        " Ctrl-C, SIGTERM or `ud down` stops it"
    )
    os.chdir(project_root())
    ui_file(home).parent.mkdir(parents=True, exist_ok=True)
    # This process becomes `dagster dev` (same pid), which `ud down` finds here.
    ui_file(home).write_text(
        json.dumps({"pid": os.getpid(), "url": f"http://{args.host}:{args.port}"})
    )
    # A shell's background job (`ud ui &` in a script, nohup) inherits SIGINT ignored, and
    # dagster dev maps SIGTERM to SIGINT's handler: it would ignore `ud down` and Ctrl-C alike.
    # Dispositions set to ignore survive exec, defaults let the new interpreter install its own.
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    os.execve(cmd[0], cmd, env)
    return 0


def cmd_demo(args, out: Output) -> int:
    from .demo import run_demo

    data = run_demo(out)
    out.result(data, lambda: data["summary_text"])
    return 0 if data["ok"] else 5


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("unified-delivery")
    except PackageNotFoundError:  # run from a checkout that was never installed
        return "unknown"


def cmd_completion(args, out) -> int:
    from argcomplete.shell_integration import shellcode

    print(shellcode(["ud"], shell=args.shell), end="")
    return 0


NO_WAIT = "submit the run to the instance, print its id and return (follow it: ud watch RUN)"


def build_parser() -> Parser:
    p = Parser(
        prog="ud",
        description="unified-delivery: one pipeline for app code, ML models and data products.",
    )
    p.add_argument("--version", action="version", version=f"ud {_version()}")

    global_options(p, suppress=False)
    sub = p.add_subparsers(dest="command", required=True, parser_class=CommandParser)

    def add(name: str, fn, help_: str) -> Parser:
        sp = sub.add_parser(name, help=help_, description=help_)
        sp.set_defaults(fn=fn)
        return sp

    add(
        "demo",
        cmd_demo,
        "take every unit to production on the embedded home (the reference platform: then refusals "
        "and a rollback)",
    )
    add("status", cmd_status, "the deployed version of each unit in each environment")
    add("info", cmd_info, "where the embedded home keeps things")
    sp = add(
        "completion",
        cmd_completion,
        'print the shell completion script: eval "$(ud completion bash)" (or zsh)',
    )
    sp.add_argument("shell", choices=["bash", "zsh"])
    sp = add(
        "promote",
        cmd_promote,
        "promote a unit to an environment (a Dagster run; gates run as in the pipeline)",
    )
    sp.add_argument("unit")
    sp.add_argument("--to", required=True, metavar="ENV")
    sp.add_argument("--reason", default="")
    sp.add_argument(
        "--ref",
        default="",
        help="app: commit or branch to build; model: an existing registered version; "
        "data: dbt vars the unit declares, as YAML ({as_of_date: '2026-11-01'})",
    )
    sp.add_argument("--dry-run", action="store_true", help="print the plan; change nothing")
    sp.add_argument("--no-wait", action="store_true", help=NO_WAIT)
    sp = add("rollback", cmd_rollback, "roll a unit back in an environment through its target")
    sp.add_argument("unit")
    sp.add_argument("--env", required=True)
    sp.add_argument("--to", default="", metavar="VERSION")
    sp.add_argument("--reason", required=True)
    sp.add_argument("--dry-run", action="store_true", help="print the plan; change nothing")
    sp.add_argument("--no-wait", action="store_true", help=NO_WAIT)
    sp = add("gates", cmd_gates, "the latest result of each gate of a unit, with its evidence")
    sp.add_argument("unit")
    sp.add_argument("--env", default="", help="the version this environment runs")
    sp.add_argument(
        "--version", default="", help="any version built (or its start): its gates' results"
    )
    add(
        "down",
        cmd_down,
        "stop the local services the app target started, the code server and `ud ui`",
    )
    sp = add(
        "ui", cmd_ui, "the Dagster UI (dagster dev) on this workspace and the embedded instance"
    )
    sp.add_argument("--port", type=int, default=3000)
    sp.add_argument("--host", default="127.0.0.1")
    for name in COMMAND_MODULES:  # commands that live in their own module: each has register(add)
        importlib.import_module(f"unified_delivery.commands.{name}").register(add)
    for name, lines in EXAMPLES.items():
        command = sub.choices[name]
        command.epilog = "examples:\n" + "\n".join(f"  {line}" for line in lines)
        command.formatter_class = argparse.RawDescriptionHelpFormatter
    return p


# Shown under each command's --help, as kubectl does.
EXAMPLES: dict[str, list[str]] = {
    "rollout": [
        "ud rollout status api --env production",
        "ud rollout status api --env staging -o json",
    ],
    "previews": [
        "ud previews",
        "ud previews api --json | jq '.previews[].url'",
        "ud previews --prune",
    ],
    "status": ["ud status", "ud status -o json | jq '.units[].environments.production'"],
    "promote": [
        "ud promote api --to staging",
        "ud promote api --to staging --no-wait",
        "ud promote api --to production --reason 'release 42' --dry-run",
        "ud promote features --to staging --ref \"{as_of_date: '2026-11-01'}\"",
    ],
    "rollback": ["ud rollback api --env production --reason 'errors after deploy'"],
    "gates": ["ud gates api", "ud gates api --env production", "ud gates api --version 1a2b3c"],
    "approve": ["ud approvals", "ud approve api --env production --version 1a2b3c --comment ok"],
    "override": [
        "ud override api --gate tests --version 1a2b3c --justification 'flaky, fixed in #12'",
        "ud override api --gate security --file app/settings.py --rule B105 --expires 30d "
        "--reason 'dev-only key'",
    ],
    "policy": ["ud policy show", "ud policy propose --reason 'freeze for the holidays'"],
    "runs": ["ud runs api", "ud logs 91ef2353"],
    "watch": ["ud watch 91ef2353"],
    "board": ["ud board --port 3100 --dagster-url http://127.0.0.1:3000"],
    "mcp": ['ud mcp --token "$AGENT_TOKEN"', "ud mcp --http --port 8765"],
}


# One line per command module in unified_delivery/commands/.
COMMAND_MODULES: list[str] = [
    "scaffold",
    "governance",
    "audit",
    "render",
    "sensors",
    "hook",
    "report",
    "notify",
    "board",
    "agents",
    "runs",
    "rollouts",
    "previews",
]


def main(argv: list[str] | None = None) -> int:
    try:
        try:
            return _main(argv)
        finally:  # what is still buffered goes now, while a closed pipe can be answered
            sys.stdout.flush()
    except BrokenPipeError:
        # The reader left (`ud status --json | head`): no traceback, and none at exit either
        # when Python flushes stdout into the closed pipe.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # as a process the pipe's SIGPIPE ended


def _main(argv: list[str] | None) -> int:
    warnings.filterwarnings("ignore")
    from .home import PRIVATE_UMASK

    # What ud writes under the home (and the UI it starts) is its owner's alone.
    os.umask(PRIVATE_UMASK)
    # MLflow's INFO lines (creating tables, migrations) are not the user's business on a
    # terminal; a run's own logs keep them. A caller's own setting wins.
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
    argv = sys.argv[1:] if argv is None else argv
    out = Output(output_format(argv))
    try:
        parser = build_parser()
        if "_ARGCOMPLETE" in os.environ:  # the shell asks for completions (`ud completion`)
            import argcomplete

            argcomplete.autocomplete(parser)
        args = parser.parse_args(argv)
        return args.fn(args, out)
    except UDError as exc:
        from .redaction import redact_text

        exc.message, exc.remediation = redact_text(exc.message), redact_text(exc.remediation)
        if out.as_json:
            print(dump({"ok": False, "error": exc.to_dict()}, out.format))
        else:
            print(
                f"error {exc.code}: {exc.message}"
                + (f"\n  what to do: {exc.remediation}" if exc.remediation else ""),
                file=sys.stderr,
            )
        return exc.exit_code
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
