"""`ud token issue`, `ud approve`, `ud override`, `ud policy`: governance actions
(service/approvals.py, service/tokens.py, service/policy_changes.py), each recorded in the
ledger, each refused with its own code when not allowed (and the refusal recorded too)."""

from __future__ import annotations

from .. import service
from ..errors import UDError


def _platform_and_principal(args):
    platform, _ = service.load_platform()
    return platform, service.identity(platform, args.token)


def cmd_token_issue(args, out) -> int:
    platform, caller = _platform_and_principal(args)
    data = service.issue_token(platform, caller, args.principal, args.ttl, dry_run=args.dry_run)
    if args.dry_run:
        out.result(data, f"dry run: would issue a token for {args.principal} valid {args.ttl}")
    else:
        out.result(data, data["token"])
    return 0


def cmd_approve(args, out) -> int:
    platform, caller = _platform_and_principal(args)
    data = service.approve(
        platform,
        caller,
        args.unit,
        args.env,
        args.version,
        comment=args.comment,
        dry_run=args.dry_run,
    )
    if args.dry_run:
        out.result(
            data, f"dry run: {caller} would approve {args.unit} {args.version} for {args.env}"
        )
    else:
        out.result(
            data,
            f"{caller} approved {args.unit} {args.version} for {args.env} ({data['approvals']} of "
            f"{data['required']})",
        )
    return 0


def cmd_approvals(args, out) -> int:
    platform, caller = _platform_and_principal(args)
    data = service.pending_approvals(platform, caller)
    shown = data["all"] if args.all else data["pending"]
    if not shown:
        text = f"nothing waits for an approval {caller} may give" + (
            "" if args.all else f" ({len(data['all'])} waiting for others: --all)"
        )
    else:
        text = "\n".join(
            f"{p['unit']} {p['version'][:12]} -> {p['env']}: {p['approvals']} of "
            f"{p['required']} approvals; may approve: {', '.join(p['may_approve']) or 'nobody'}"
            f"\n  {p['command']}"
            for p in shown
        )
    out.result(data, text)
    return 0


def cmd_override(args, out) -> int:
    platform, caller = _platform_and_principal(args)
    data = service.override(
        platform,
        caller,
        args.unit,
        args.gate,
        args.version,
        justification=args.justification,
        expires=args.expires,
        until=args.until,
        stage=args.stage,
        for_=args.for_,
        file=args.file,
        rule=args.rule,
        dry_run=args.dry_run,
    )
    what = (
        f"{data['file']} {data['rule']} in {args.unit} (every version)"
        if data["file"]
        else f"{args.unit} {args.version}"
    )
    head = f"dry run: {caller} would override" if args.dry_run else f"{caller} overrode"
    tail = "" if args.dry_run else f": {data['justification']}"
    out.result(
        data,
        f"{head} {data['gate']} for {what} until {data['expires_at']}, for "
        f"{', '.join('everyone' if b == '*' else b for b in data['for'])}{tail}",
    )
    return 0


def cmd_policy(args, out) -> int:
    platform, _ = service.load_platform()
    if args.verb == "show":
        data = service.policy_show(platform)
        out.result(data, _show(data))
        return 0
    caller = service.identity(platform, args.token, policy_in_force=False)
    if args.verb == "propose":
        data = service.policy_propose(platform, caller, reason=args.reason, dry_run=args.dry_run)
        head = "dry run: would propose" if args.dry_run else f"{caller} proposed"
        out.result(
            data,
            f"{head} policy {_short(data['digest'])} (in force: {_short(data['previous'])}); "
            f"an admin who is not {caller} adopts it with `ud policy approve "
            f"{_short(data['digest'])}`\n{data['diff']}",
        )
        return 0
    if not args.digest:
        raise UDError(
            "UD-USAGE",
            "ud policy approve needs the DIGEST of a proposal",
            "see `ud policy show` for the proposals waiting",
        )
    data = service.policy_approve(platform, caller, args.digest, dry_run=args.dry_run)
    head = "dry run: would adopt" if args.dry_run else f"{caller} adopted"
    out.result(
        data,
        f"{head} policy {_short(data['digest'])}, proposed by {data['proposed_by']}, in place "
        f"of {_short(data['previous'])}",
    )
    return 0


def _short(digest: str) -> str:
    return digest.removeprefix("sha256:")[:12]


def _show(data: dict) -> str:
    now, local = data["in_force"], data["local"]
    lines = [
        f"in force: {_short(now['digest'])} ({now['how']}), adopted by {now['adopted_by']} at "
        f"{now['adopted_at']}",
        f"this copy ({local['source']}): {_short(local['digest'])}, "
        + ("the policy in force" if local["in_force"] else "NOT the policy in force:"),
    ]
    if not local["in_force"]:
        lines.append(local["diff"].rstrip())
    for p in data["pending"]:
        lines.append(
            f"proposed: {_short(p['digest'])} by {p['proposed_by']} at {p['proposed_at']}"
            + (" (stale: proposed against an older policy)" if p["stale"] else "")
            + (f": {p['reason']}" if p["reason"] else "")
        )
    return "\n".join(lines)


def register(add) -> None:
    sp = add(
        "policy",
        cmd_policy,
        "the governance in force; propose a change of it, or adopt one (admins, not its author)",
    )
    sp.add_argument("verb", choices=["show", "propose", "approve"])
    sp.add_argument("digest", nargs="?", help="approve: the proposal's digest (or its start)")
    sp.add_argument("--reason", default="", help="propose: why the change")
    sp.add_argument("--dry-run", action="store_true")
    sp = add(
        "token", cmd_token_issue, "issue a signed, expiring token for a principal (admins only)"
    )
    sp.add_argument("verb", choices=["issue"])
    sp.add_argument("principal")
    sp.add_argument("--ttl", default="8h", help="how long the token is valid: 90s, 15m, 8h, 7d")
    sp.add_argument("--dry-run", action="store_true")
    sp = add(
        "approve", cmd_approve, "approve a version of a unit for an environment (not its author)"
    )
    sp.add_argument("unit")
    sp.add_argument("--env", required=True)
    sp.add_argument("--version", required=True)
    sp.add_argument("--comment", default="", help="why, for the record (in the ledger)")
    sp.add_argument("--dry-run", action="store_true")
    sp = add(
        "approvals",
        cmd_approvals,
        "what waits for an approval you may give, with who else may and the command",
    )
    sp.add_argument("--all", action="store_true", help="also what waits for others' approval")
    sp = add(
        "override",
        cmd_override,
        "break-glass: let one version through one failed gate, or one finding of a gate through "
        "for a period (--file, --rule), with a reason",
    )
    sp.add_argument("unit")
    sp.add_argument("--gate", required=True)
    sp.add_argument("--version", default="", help="the one version to let through")
    sp.add_argument("--file", default="", help="scoped: the finding's file (as the gate lists it)")
    sp.add_argument(
        "--rule", default="", help="scoped: the finding's rule (B105, 'Secret Keyword')"
    )
    sp.add_argument(
        "--justification", "--reason", dest="justification", default="", help="why, recorded"
    )
    sp.add_argument("--stage", default="")
    when = sp.add_mutually_exclusive_group()
    when.add_argument("--expires", default="", help="for how long: 90s, 15m, 8h, 7d (24h)")
    when.add_argument("--until", default="", help="or until a date: 2026-12-31")
    sp.add_argument(
        "--for",
        dest="for_",
        action="append",
        metavar="PRINCIPAL",
        help=(
            "who may use the override: a principal, or role:ROLE for anyone with that role where "
            "the gate guards (repeatable; default: you, or everyone for a scoped override)"
        ),
    )
    sp.add_argument("--dry-run", action="store_true")
