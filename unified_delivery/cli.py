"""The `ud` command: one front door for people, scripts and agents.

Every command takes `--json`. Errors are one line (or one JSON object) with a stable
code and a remediation; exit codes: 0 ok, 2 usage or configuration, 3 a gate refused,
4 not permitted, 5 a target failed. A traceback is printed only for a bug in ud itself.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import time
import warnings
from typing import Any, Callable

from .errors import UDError
from .home import Home


class Output:
    """Progress on a terminal, silence and one JSON object with --json."""

    def __init__(self, as_json: bool):
        self.as_json = as_json
        self.started = time.monotonic()

    def progress(self, text: str) -> None:
        if not self.as_json:
            print(f"[{time.monotonic() - self.started:6.1f}s] {text}", file=sys.stderr, flush=True)

    def result(self, data: Any, text: str | Callable[[], str]) -> None:
        if self.as_json:
            print(json.dumps(data, indent=2, default=str))
        else:
            print(text() if callable(text) else text)


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # usage errors are user errors: code + exit 2, no usage dump
        raise UDError("UD-USAGE", f"{self.prog}: {message}", f"see `{self.prog} --help`")


def _platform():
    from .runner import load_platform

    return load_platform()


def _status(platform) -> dict:
    units = []
    for name in platform.order():
        unit = platform.units[name]
        target = platform.target(unit)
        envs = {}
        for env in unit.environments:
            dep = target.status(unit, env)
            envs[env] = None if dep is None else {"version": dep.version, "deployed_at": dep.deployed_at,
                                                   **({"url": dep.details["url"]} if "url" in dep.details else {})}
        units.append({"name": name, "kind": unit.kind, "team": unit.team, "environments": envs})
    return {"units": units}


def _status_table(data: dict) -> str:
    rows = [("unit", "kind", "environment", "version", "deployed at")]
    for u in data["units"]:
        for env, dep in u["environments"].items():
            rows.append((u["name"], u["kind"], env, (dep or {}).get("version", "-")[:12] or "-",
                         (dep or {}).get("deployed_at", "")[:19].replace("T", " ")))
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows)


def cmd_status(args, out: Output) -> int:
    platform, _ = _platform()
    data = _status(platform)
    out.result(data, lambda: _status_table(data))
    return 0


def cmd_info(args, out: Output) -> int:
    home = Home.current()
    platform, _ = _platform()
    repos = {}
    for unit in platform.units.values():
        if unit.kind == "app":
            repos[unit.name] = {"remote": home.expand(unit.repository), "workdir": str(home.repos / unit.name)}
    data = {"home": str(home.root), "dagster_home": str(home.dagster_home),
            "mlflow_tracking_uri": platform.targets["model"].resolved_uri(),
            "warehouse": platform.targets["data"].location(), "ledger_url": platform.ledger.ledger().url, "repos": repos}
    out.result(data, lambda: "\n".join(f"{k:20} {v}" for k, v in data.items() if k != "repos") +
               "".join(f"\nrepo {n:15} {r['remote']} (workdir {r['workdir']})" for n, r in repos.items()))
    return 0


def identity(platform, token: str | None = None, home: Home | None = None) -> str:
    """Who `ud` acts for: the principal of --token / UD_TOKEN, else the policy's local principal.
    A refused token is recorded in the ledger."""
    from .errors import NotPermitted
    from .governance import tokens

    token = token or os.environ.get("UD_TOKEN")
    if not token:
        return platform.governance.local_principal
    try:
        principal = tokens.verify(token, key=tokens.signing_key(home))["sub"]
        platform.governance.principal(principal)
        return principal
    except NotPermitted as exc:
        platform.ledger.ledger().append("refusal", principal=platform.governance.ui_principal,
                                        payload={"code": exc.code, "message": exc.message, "action": "authenticate"})
        raise


def run_tags(platform, principal: str, reason: str, unit: str, env: str, home: Home, *, job: str,
             run_config: dict) -> tuple[str, dict[str, str]]:
    """A new run id with its grant recorded (never in the tags: governance/grants.py), and the
    tags people read in the run list."""
    import uuid

    from .governance import grants, tokens
    from .promotion import PRINCIPAL_TAG, REASON_TAG

    run_id = str(uuid.uuid4())
    grants.for_run(platform.ledger.ledger().engine, tokens.signing_key(home), principal, run_id=run_id, job=job,
                   unit=unit, env=env, run_config=run_config)
    return run_id, {PRINCIPAL_TAG: principal, REASON_TAG: reason or "", "ud/unit": unit, "ud/env": env}


def _check_ref(unit, ref: str) -> None:
    """A data unit's --ref is dbt vars: refused here, before any run exists, when the unit does
    not declare them (the build checks again: a run may come from elsewhere)."""
    if unit.kind == "data":
        from .kinds.data import parse_vars

        parse_vars(unit, ref)


def promote(platform, defs, unit_name: str, env: str, *, reason: str = "", ref: str = "", principal: str | None = None,
            home: Home | None = None):
    """Promote a unit to an environment as a Dagster run; returns the RunOutcome."""
    from .runner import execute
    from .translator import job_name
    from .units import CANDIDATE

    unit = platform.unit(unit_name)
    if env not in unit.environments:
        raise UDError("UD-UNKNOWN-ENV", f"{unit_name} has no environment {env!r}", f"use one of: {', '.join(unit.environments)}")
    run_config = {}
    if unit.previous_stage(env) == CANDIDATE and ref:
        _check_ref(unit, ref)
        run_config = {"ops": {f"{unit_name}__candidate": {"config": {"ref": ref}}}}
    home = home or Home.current()
    job = job_name(unit_name, env)
    run_id, tags = run_tags(platform, principal or identity(platform, home=home), reason, unit_name, env, home, job=job,
                            run_config=run_config)
    return execute(defs, job, home=home, run_config=run_config, tags=tags, run_id=run_id)


def promote_plan(platform, unit_name: str, env: str, principal: str, ref: str = "") -> dict:
    """What `ud promote` would do, changing nothing: the version, the gates, and whether policy allows it."""
    from .units import CANDIDATE

    unit = platform.unit(unit_name)
    if env not in unit.environments:
        raise UDError("UD-UNKNOWN-ENV", f"{unit_name} has no environment {env!r}", f"use one of: {', '.join(unit.environments)}")
    target = platform.target(unit)
    upstream = unit.previous_stage(env)
    current = target.status(unit, env)
    if upstream == CANDIDATE and ref:
        _check_ref(unit, ref)
    if upstream == CANDIDATE:
        version = f"a new candidate built from {ref or getattr(unit, 'branch', None) or 'the unit source'}"
    else:
        dep = target.status(unit, upstream)
        version = dep.version if dep else None
    gates = [{"name": g.name, "family": g.family, "stage": g.spec.stage} for g in platform.gates[unit.name]
             if g.spec.stage == upstream]
    blocked = []
    if not platform.governance.allowed(principal, "deploy", env):
        blocked.append({"code": "UD-AUTH-FORBIDDEN", "message": f"{principal} may not deploy in {env}"})
    if (freeze := platform.governance.active_freeze(env)) is not None:
        blocked.append({"code": "UD-GATE-FREEZE-ACTIVE", "message": f"{env} is frozen until {freeze[1][1].isoformat()}"})
    if version is None:
        blocked.append({"code": "UD-PROMOTE-NOTHING", "message": f"{upstream} holds no version"})
    return {"ok": True, "dry_run": True, "action": "promote", "unit": unit_name, "env": env, "principal": principal,
            "from_version": current.version if current else None, "to_version": version, "gates": gates,
            "permitted": not blocked, "blocked_by": blocked,
            "changes": f"{env} of {unit_name}: {current.version if current else 'nothing'} -> {version}"}


def _plan_text(plan: dict) -> str:
    lines = [f"dry run: {plan['action']} {plan['unit']} in {plan['env']} as {plan['principal']} (nothing changed)",
             f"  would change: {plan['changes']}"]
    lines += [f"  gate: {g['name']} ({g['family']})" for g in plan.get("gates", [])]
    lines += [f"  blocked: {b['code']} {b['message']}" for b in plan["blocked_by"]]
    return "\n".join(lines)


def cmd_promote(args, out: Output) -> int:
    platform, defs = _platform()
    principal = identity(platform, args.token)
    if args.dry_run:
        plan = promote_plan(platform, args.unit, args.to, principal, args.ref)
        out.result(plan, lambda: _plan_text(plan))
        return 0
    out.progress(f"promoting {args.unit} to {args.to} as {principal}")
    outcome = promote(platform, defs, args.unit, args.to, reason=args.reason, ref=args.ref, principal=principal)
    if outcome.error:
        raise outcome.error
    dep = platform.target(platform.unit(args.unit)).status(platform.unit(args.unit), args.to)
    data = {"ok": True, "unit": args.unit, "env": args.to, "version": dep.version if dep else None, "run_id": outcome.run_id}
    out.result(data, f"{args.unit} {data['version']} is in {args.to} (run {outcome.run_id})")
    return 0


def rollback(platform, defs, unit_name: str, env: str, *, to: str = "", reason: str, principal: str | None = None,
             home: Home | None = None):
    from .runner import execute

    unit = platform.unit(unit_name)
    if env not in unit.environments:
        raise UDError("UD-UNKNOWN-ENV", f"{unit_name} has no environment {env!r}", f"use one of: {', '.join(unit.environments)}")
    home = home or Home.current()
    config = {"ops": {"rollback_unit": {"config": {"unit": unit_name, "env": env, "to_version": to or "", "reason": reason}}}}
    run_id, tags = run_tags(platform, principal or identity(platform, home=home), reason, unit_name, env, home,
                            job="ud_rollback", run_config=config)
    return execute(defs, "ud_rollback", home=home, run_config=config, tags=tags, run_id=run_id)


def cmd_rollback(args, out: Output) -> int:
    if not args.reason.strip():
        raise UDError("UD-USAGE", "a rollback needs --reason", "say why, e.g. --reason 'errors after deploy'")
    platform, defs = _platform()
    principal = identity(platform, args.token)
    if args.dry_run:
        unit = platform.unit(args.unit)
        current = platform.target(unit).status(unit, args.env)
        to = args.to or (current.previous_version if current else None)
        blocked = [] if platform.governance.allowed(principal, "deploy", args.env) else \
            [{"code": "UD-AUTH-FORBIDDEN", "message": f"{principal} may not deploy in {args.env}"}]
        from .promotion import rollback_candidates

        if to is None:
            blocked.append({"code": "UD-ROLLBACK-NOTHING", "message": f"{args.env} has no previous version"})
        elif to not in rollback_candidates(platform.ledger.ledger(), platform, unit, args.env):
            blocked.append({"code": "UD-ROLLBACK-NOT-DEPLOYED", "message": f"{to[:12]} never ran in {args.env}"})
        if (freeze := platform.governance.active_freeze(args.env)) is not None:
            blocked.append({"code": "UD-GATE-FREEZE-ACTIVE", "message": f"{args.env} is frozen until {freeze[1][1].isoformat()}"})
        plan = {"ok": True, "dry_run": True, "action": "rollback", "unit": args.unit, "env": args.env, "principal": principal,
                "from_version": current.version if current else None, "to_version": to, "permitted": not blocked,
                "blocked_by": blocked, "consumers": platform.consumers(args.unit),
                "changes": f"{args.env} of {args.unit}: {current.version if current else 'nothing'} -> {to}"}
        out.result(plan, lambda: _plan_text(plan))
        return 0
    out.progress(f"rolling {args.unit} back in {args.env} as {principal}")
    outcome = rollback(platform, defs, args.unit, args.env, to=args.to, reason=args.reason, principal=principal)
    if outcome.error:
        raise outcome.error
    unit = platform.unit(args.unit)
    dep = platform.target(unit).status(unit, args.env)
    data = {"ok": True, "unit": args.unit, "env": args.env, "version": dep.version, "previous_version": dep.previous_version,
            "run_id": outcome.run_id, "consumers": platform.consumers(args.unit)}
    extra = f"; it is served by {', '.join(data['consumers'])}" if unit.kind == "model" and data["consumers"] else ""
    out.result(data, f"{args.unit} in {args.env} is back on {dep.version} (was {dep.previous_version}){extra}")
    return 0


def cmd_gates(args, out: Output) -> int:
    from .promotion import active_override, evaluate_gate
    from .units import CANDIDATE

    platform, _ = _platform()
    unit = platform.unit(args.unit)
    ledger = platform.ledger.ledger()
    if args.env:
        dep = platform.target(unit).status(unit, args.env)
        version = dep.version if dep else None
    else:
        entry = ledger.latest(unit=unit.name, action="candidate")
        version = entry.version if entry else None
    stage = args.env or CANDIDATE
    gates = []
    for gate in platform.gates[unit.name]:
        entry = ledger.latest(unit=unit.name, action="gate",
                              predicate=lambda e, g=gate: e.payload.get("gate") == g.name and e.version == version
                              and e.payload.get("stage") == g.spec.stage)
        p = entry.payload if entry else {}
        override = active_override(ledger, unit, version, gate.name, gate.spec.stage) if version else None
        row = {"name": gate.name, "family": gate.family, "stage": gate.spec.stage, "passed": p.get("passed"),
               "code": p.get("code"), "message": p.get("message", "not run for this version"),
               "remediation": p.get("remediation", ""), "overridden": bool(p.get("overridden") or override),
               "at": entry.ts if entry else None}
        if override:
            row["override"] = {"by": override["by"], "justification": override["justification"],
                               "expires_at": override["expires_at"], "for": override.get("for") or [override["by"]]}
        if gate.family == "approval" and version and not p.get("passed"):  # pending approvals are live, not cached
            live = evaluate_gate(platform, unit, gate, version, None, "", ledger)
            row.update(passed=live.passed, code=live.code, message=live.message, remediation=live.remediation)
        gates.append(row)
    data = {"unit": unit.name, "version": version, "env": stage, "gates": gates}

    def text() -> str:
        lines = [f"{unit.name} {version or '(none)'} ({args.env or 'candidate'})"]
        for g in gates:
            mark = {True: "PASS", False: "FAIL", None: "----"}[g["passed"]]
            mark = "OVRD" if g["overridden"] and not g["passed"] else mark
            lines.append(f"  {mark}  {g['stage']:10} {g['name']:16} {g['family']:13} {g['code'] or '':28} {g['message']}")
        return "\n".join(lines)

    out.result(data, text)
    return 0


def cmd_down(args, out: Output) -> int:
    platform, _ = _platform()
    stopped = platform.targets["app"].stop_all()
    out.result({"ok": True, "stopped": stopped}, f"stopped {len(stopped)} service(s): {', '.join(stopped) or '-'}")
    return 0


def cmd_ui(args, out: Output) -> int:
    from .home import project_root
    from .runner import prepare_home

    home = Home.current()
    prepare_home(home)
    env = {**os.environ, "DAGSTER_HOME": str(home.dagster_home), "UD_HOME": str(home.root)}
    cmd = [os.path.join(os.path.dirname(sys.executable), "dagster"), "dev", "-w", str(project_root() / "workspace.yaml"),
           "-p", str(args.port), "-h", args.host]
    out.progress(f"starting the Dagster UI on http://{args.host}:{args.port} (instance {home.dagster_home})")
    os.chdir(project_root())
    os.execve(cmd[0], cmd, env)
    return 0


def cmd_demo(args, out: Output) -> int:
    from .demo import run_demo

    data = run_demo(out)
    out.result(data, lambda: data["summary_text"])
    return 0 if data["ok"] else 5


def build_parser() -> Parser:
    p = Parser(prog="ud", description="unified-delivery: one pipeline for app code, ML models and data products.")
    sub = p.add_subparsers(dest="command", required=True, parser_class=Parser)

    def add(name: str, fn, help_: str) -> Parser:
        sp = sub.add_parser(name, help=help_, description=help_)
        sp.add_argument("--json", action="store_true", help="one JSON object on stdout, no progress")
        sp.add_argument("--token", default=None, help="act as the principal of this token (default: $UD_TOKEN)")
        sp.set_defaults(fn=fn)
        return sp

    add("demo", cmd_demo, "take every unit to production on the embedded home (the reference platform: then refusals and a rollback)")
    add("status", cmd_status, "the deployed version of each unit in each environment")
    add("info", cmd_info, "where the embedded home keeps things")
    sp = add("promote", cmd_promote, "promote a unit to an environment (a Dagster run; gates run as in the pipeline)")
    sp.add_argument("unit")
    sp.add_argument("--to", required=True, metavar="ENV")
    sp.add_argument("--reason", default="")
    sp.add_argument("--ref", default="", help="app: commit or branch to build; model: an existing registered version; "
                    "data: dbt vars the unit declares, as YAML ({as_of_date: '2026-11-01'})")
    sp.add_argument("--dry-run", action="store_true", help="print the plan; change nothing")
    sp = add("rollback", cmd_rollback, "roll a unit back in an environment through its target")
    sp.add_argument("unit")
    sp.add_argument("--env", required=True)
    sp.add_argument("--to", default="", metavar="VERSION")
    sp.add_argument("--reason", required=True)
    sp.add_argument("--dry-run", action="store_true", help="print the plan; change nothing")
    sp = add("gates", cmd_gates, "the latest result of each gate of a unit")
    sp.add_argument("unit")
    sp.add_argument("--env", default="")
    add("down", cmd_down, "stop the local services the app target started")
    sp = add("ui", cmd_ui, "the Dagster UI (dagster dev) on this workspace and the embedded instance")
    sp.add_argument("--port", type=int, default=3000)
    sp.add_argument("--host", default="127.0.0.1")
    for name in COMMAND_MODULES:  # commands that live in their own module: each has register(add)
        importlib.import_module(f"unified_delivery.commands.{name}").register(add)
    return p


# One line per command module in unified_delivery/commands/.
COMMAND_MODULES: list[str] = ["scaffold", "governance", "audit", "render", "sensors", "hook", "report"]


def main(argv: list[str] | None = None) -> int:
    warnings.filterwarnings("ignore")
    from .home import PRIVATE_UMASK

    os.umask(PRIVATE_UMASK)  # what ud writes under the home (and the UI it starts) is its owner's alone
    argv = sys.argv[1:] if argv is None else argv
    as_json = "--json" in argv
    out = Output(as_json)
    try:
        args = build_parser().parse_args(argv)
        return args.fn(args, out)
    except UDError as exc:
        from .redaction import redact_text

        exc.message, exc.remediation = redact_text(exc.message), redact_text(exc.remediation)
        if as_json:
            print(json.dumps({"ok": False, "error": exc.to_dict()}, indent=2))
        else:
            print(f"error {exc.code}: {exc.message}" + (f"\n  what to do: {exc.remediation}" if exc.remediation else ""),
                  file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
