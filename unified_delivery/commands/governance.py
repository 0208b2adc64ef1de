"""`ud token issue`, `ud approve`, `ud override`: governance actions, each recorded in the
ledger, each refused with its own code when not allowed (and the refusal recorded too)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from ..errors import NotPermitted, UDError
from ..governance.authors import check_may_approve
from ..governance.policy import ROLES
from ..home import Home


def _platform_and_principal(args):
    from ..cli import _platform, identity

    platform, _ = _platform()
    return platform, identity(platform, args.token)


def _refuse(platform, principal: str, exc: UDError, **where) -> UDError:
    platform.ledger.ledger().append("refusal", principal=principal, unit=where.get("unit"), env=where.get("env"),
                                    version=where.get("version"),
                                    payload={"code": exc.code, "message": exc.message, "action": where.get("action", "")})
    return exc


def _candidate(platform, unit, version: str):
    entry = platform.ledger.ledger().latest(unit=unit.name, action="candidate", predicate=lambda e: e.version == version)
    if entry is None:
        raise UDError("UD-APPROVAL-UNKNOWN-VERSION", f"{unit.name} has no built version {version!r}",
                      f"see `ud gates {unit.name}` for the newest candidate")
    return entry.payload["artifact"]


def cmd_token_issue(args, out) -> int:
    from ..governance import tokens

    platform, caller = _platform_and_principal(args)
    ttl = tokens.parse_duration(args.ttl)
    if not platform.governance.allowed(caller, "admin", "*"):
        raise _refuse(platform, caller, NotPermitted("UD-AUTH-FORBIDDEN", f"{caller} may not issue tokens",
                                                      "ask an admin (role admin in every environment `*`)"), action="token")
    platform.governance.principal(args.principal)  # refuses an unknown principal
    if args.dry_run:
        out.result({"ok": True, "dry_run": True, "principal": args.principal, "ttl_seconds": ttl},
                   f"dry run: would issue a token for {args.principal} valid {args.ttl}")
        return 0
    token = tokens.issue(args.principal, ttl, key=tokens.signing_key(Home.current()))
    expires = datetime.now(timezone.utc) + timedelta(seconds=ttl)
    platform.ledger.ledger().append("token-issued", principal=caller,
                                    payload={"subject": args.principal, "expires_at": expires.isoformat()})
    out.result({"ok": True, "principal": args.principal, "token": token, "expires_at": expires.isoformat()}, token)
    return 0


def cmd_approve(args, out) -> int:
    platform, caller = _platform_and_principal(args)
    data = approve(platform, caller, args.unit, args.env, args.version, dry_run=args.dry_run)
    if args.dry_run:
        out.result(data, f"dry run: {caller} would approve {args.unit} {args.version} for {args.env}")
    else:
        out.result(data, f"{caller} approved {args.unit} {args.version} for {args.env} ({data['approvals']} of {data['required']})")
    return 0


def approve(platform, caller: str, unit_name: str, env: str, version: str, *, dry_run: bool = False) -> dict:
    """Record `caller`'s approval of one version for one environment, or refuse with a code."""
    unit = platform.unit(unit_name)
    where = {"unit": unit.name, "env": env, "version": version, "action": "approve"}
    if env not in unit.environments:
        raise UDError("UD-UNKNOWN-ENV", f"{unit.name} has no environment {env!r}", f"use one of: {', '.join(unit.environments)}")
    if not platform.governance.allowed(caller, "approve", env):
        raise _refuse(platform, caller, NotPermitted("UD-AUTH-FORBIDDEN", f"{caller} may not approve in {env}",
                                                      "ask someone with the approve role there"), **where)
    try:
        _candidate(platform, unit, version)
    except UDError as exc:
        raise _refuse(platform, caller, exc, **where) from None
    try:
        authors = check_may_approve(platform.governance, platform.ledger.ledger(), unit.name, version, caller)
    except NotPermitted as exc:
        raise _refuse(platform, caller, exc, **where) from None
    from ..gates.approval import approvers

    ledger = platform.ledger.ledger()
    already = caller in approvers(ledger, unit.name, env, version)
    needed = unit.policy.approvals.get(env, 0)
    if dry_run:
        return {"ok": True, "dry_run": True, **where, "principal": caller, "already_approved": already, "required": needed}
    if not already:
        ledger.append("approval", principal=caller, unit=unit.name, env=env, version=version,
                      payload={"authors": authors.to_dict(), "team": unit.team})
    have = approvers(ledger, unit.name, env, version)
    return {"ok": True, "unit": unit.name, "env": env, "version": version, "principal": caller,
            "approvals": len(have), "required": needed, "approved_by": have}


def cmd_override(args, out) -> int:
    platform, caller = _platform_and_principal(args)
    data = override(platform, caller, args.unit, args.gate, args.version, justification=args.justification,
                    expires=args.expires, stage=args.stage, for_=args.for_, dry_run=args.dry_run)
    if args.dry_run:
        out.result(data, f"dry run: {caller} would override {data['gate']} for {args.unit} {args.version} until "
                         f"{data['expires_at']}, for {', '.join(data['for'])}")
    else:
        out.result(data, f"{caller} overrode {data['gate']} for {args.unit} {args.version} until {data['expires_at']}, "
                         f"for {', '.join(data['for'])}: {data['justification']}")
    return 0


def override(platform, caller: str, unit_name: str, gate_name: str, version: str, *, justification: str,
             expires: str = "24h", stage: str = "", for_: list[str] | None = None, dry_run: bool = False) -> dict:
    """Record a break-glass override of one failed gate for one version, usable only by the
    principals (or holders of a role) it names; the policy gate is never overridden."""
    from ..governance import tokens

    unit = platform.unit(unit_name)
    gates = [g for g in platform.gates[unit.name] if g.name == gate_name and (not stage or g.spec.stage == stage)]
    if not gates:
        raise UDError("UD-UNKNOWN-GATE", f"{unit.name} has no gate {gate_name!r}" + (f" on {stage}" if stage else ""),
                      f"gates: {', '.join(sorted({g.name for g in platform.gates[unit.name]}))}")
    if len(gates) > 1 and not all(g.family == "policy" for g in gates):
        raise UDError("UD-USAGE", f"gate {gate_name!r} of {unit.name} is on several stages", "give --stage")
    gate = gates[-1]
    guards = unit.stages[unit.stages.index(gate.spec.stage) + 1]
    where = {"unit": unit.name, "env": guards, "version": version, "action": "override"}
    if gate.family == "policy":
        raise _refuse(platform, caller, NotPermitted(
            "UD-OVERRIDE-POLICY", f"the policy gate says who may deploy to {guards}; no override stands in for it",
            f"give the principal the deploy role in {guards} in {platform.governance.source}"), **where)
    beneficiaries = list(dict.fromkeys(for_ or [caller]))
    for b in beneficiaries:
        if b.startswith("role:"):
            if b[5:] not in ROLES:
                raise UDError("UD-USAGE", f"--for {b}: {b[5:]!r} is not a role", f"use role:{' or role:'.join(ROLES)}")
        else:
            platform.governance.principal(b)  # refuses an unknown principal
    if not (justification or "").strip():
        raise _refuse(platform, caller, UDError("UD-OVERRIDE-NO-JUSTIFICATION", "a break-glass override needs a written justification",
                                                "give --justification 'why this version must go through'"), **where)
    if not platform.governance.allowed(caller, "override", guards):
        raise _refuse(platform, caller, NotPermitted("UD-AUTH-FORBIDDEN", f"{caller} may not override gates guarding {guards}",
                                                      "ask someone with the override role there"), **where)
    try:
        _candidate(platform, unit, version)
    except UDError as exc:
        raise _refuse(platform, caller, exc, **where) from None
    until = datetime.now(timezone.utc) + timedelta(seconds=tokens.parse_duration(expires))
    payload = {"gate": gate.name, "family": gate.family, "stage": gate.spec.stage, "justification": justification.strip(),
               "expires_at": until.isoformat(), "for": beneficiaries}
    if dry_run:
        return {"ok": True, "dry_run": True, **where, "principal": caller, **payload}
    platform.ledger.ledger().append("override", principal=caller, unit=unit.name, env=guards, version=version, payload=payload)
    return {"ok": True, **where, "principal": caller, **payload}


def register(add) -> None:
    sp = add("token", cmd_token_issue, "issue a signed, expiring token for a principal (admins only)")
    sp.add_argument("verb", choices=["issue"])
    sp.add_argument("principal")
    sp.add_argument("--ttl", default="8h", help="how long the token is valid: 90s, 15m, 8h, 7d")
    sp.add_argument("--dry-run", action="store_true")
    sp = add("approve", cmd_approve, "approve a version of a unit for an environment (not its author)")
    sp.add_argument("unit")
    sp.add_argument("--env", required=True)
    sp.add_argument("--version", required=True)
    sp.add_argument("--dry-run", action="store_true")
    sp = add("override", cmd_override, "break-glass: let one version through one failed gate, with a justification")
    sp.add_argument("unit")
    sp.add_argument("--gate", required=True)
    sp.add_argument("--version", required=True)
    sp.add_argument("--justification", default="")
    sp.add_argument("--stage", default="")
    sp.add_argument("--expires", default="24h")
    sp.add_argument("--for", dest="for_", action="append", metavar="PRINCIPAL",
                    help="who may use the override: a principal, or role:ROLE for anyone with that role where the "
                         "gate guards (repeatable; default: you)")
    sp.add_argument("--dry-run", action="store_true")
