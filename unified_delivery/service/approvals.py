"""Approvals and break-glass overrides: each recorded in the ledger, each refused with its own
code when not allowed (and the refusal recorded too)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

from ..errors import NotPermitted, UDError
from ..events import CHANGES, Approval, ApprovalRequested, Candidate, Override, Refusal, record
from ..governance import tokens
from ..governance.authors import check_may_approve, eligible_approvers
from ..governance.policy import ROLES

if TYPE_CHECKING:
    from ..platform import Platform
    from ..units import Unit


def refuse(platform: Platform, principal: str, exc: UDError, **where: Any) -> UDError:
    """Record a refusal of `principal` (what, where) and give the error back to raise."""
    record(
        platform.ledger.ledger(),
        Refusal(code=exc.code, message=exc.message, refused=where.get("action", "")),
        principal=principal,
        unit=where.get("unit"),
        env=where.get("env"),
        version=where.get("version"),
    )
    return exc


def built(platform: Platform, unit: Unit, version: str) -> dict[str, Any]:
    """The artifact of a version the platform built, or UD-APPROVAL-UNKNOWN-VERSION."""
    entry = platform.ledger.ledger().latest(
        unit=unit.name, action=Candidate.ACTION, predicate=lambda e: e.version == version
    )
    if entry is None:
        raise UDError(
            "UD-APPROVAL-UNKNOWN-VERSION",
            f"{unit.name} has no built version {version!r}",
            f"see `ud gates {unit.name}` for the newest candidate",
        )
    return Candidate.read(entry).artifact


def approve(
    platform: Platform,
    caller: str,
    unit_name: str,
    env: str,
    version: str,
    *,
    comment: str = "",
    dry_run: bool = False,
) -> dict:
    """Record `caller`'s approval of one version for one environment (with a comment), or refuse
    with a code: among them, a version that waited in the stage before and no longer does."""
    unit = platform.unit(unit_name)
    where = {"unit": unit.name, "env": env, "version": version, "action": "approve"}
    if env not in unit.environments:
        raise UDError(
            "UD-UNKNOWN-ENV",
            f"{unit.name} has no environment {env!r}",
            f"use one of: {', '.join(unit.environments)}",
        )
    if not platform.governance.allowed(caller, "approve", env):
        raise refuse(
            platform,
            caller,
            NotPermitted(
                "UD-AUTH-FORBIDDEN",
                f"{caller} may not approve in {env}",
                "ask someone with the approve role there",
            ),
            **where,
        )
    try:
        built(platform, unit, version)
    except UDError as exc:
        raise refuse(platform, caller, exc, **where) from None
    waiting = _waiting(platform, unit, env)
    if waiting is not None and waiting != version and _was_there(platform, unit, env, version):
        raise refuse(
            platform,
            caller,
            UDError(
                "UD-APPROVAL-NOT-WAITING",
                f"{unit.name} {version[:12]} no longer waits for {env}: "
                f"{unit.previous_stage(env)} now has {waiting[:12]}",
                f"approve the version waiting: ud approve {unit.name} --env {env} --version "
                f"{waiting} (`ud approvals` lists what you may approve)",
            ),
            **where,
        )
    try:
        authors = check_may_approve(
            platform.governance, platform.ledger.ledger(), unit.name, version, caller
        )
    except NotPermitted as exc:
        raise refuse(platform, caller, exc, **where) from None
    from ..gates.approval import approvers

    ledger = platform.ledger.ledger()
    already = caller in approvers(ledger, unit.name, env, version)
    needed = unit.policy.approvals.get(env, 0)
    if dry_run:
        return {
            "ok": True,
            "dry_run": True,
            **where,
            "principal": caller,
            "already_approved": already,
            "required": needed,
        }
    if not already:
        record(
            ledger,
            Approval(authors=authors.to_dict(), team=unit.team, comment=comment),
            principal=caller,
            unit=unit.name,
            env=env,
            version=version,
        )
    have = approvers(ledger, unit.name, env, version)
    return {
        "ok": True,
        "unit": unit.name,
        "env": env,
        "version": version,
        "principal": caller,
        "approvals": len(have),
        "required": needed,
        "approved_by": have,
    }


def _waiting(platform: Platform, unit: Unit, env: str) -> str | None:
    """The version the stage before `env` holds (the one a promotion into `env` would take),
    from the ledger; None for the first environment (its candidates are built, not waiting)."""
    before = unit.previous_stage(env)
    if before not in unit.environments:
        return None
    entry = platform.ledger.ledger().latest(unit=unit.name, env=before, action=CHANGES)
    return entry.version if entry else None


def _was_there(platform: Platform, unit: Unit, env: str, version: str) -> bool:
    before = unit.previous_stage(env)
    entry = platform.ledger.ledger().latest(
        unit=unit.name, env=before, action=CHANGES, predicate=lambda e: e.version == version
    )
    return entry is not None


def pending_approvals(platform: Platform, caller: str) -> dict[str, Any]:
    """What waits for an approval that `caller` may give: per unit and environment that asks for
    approvals, the version the stage before holds, not yet deployed there, short of approvals,
    and `caller` allowed to approve it (the approve role there, not an author, not already)."""
    from ..gates.approval import approvers

    ledger = platform.ledger.ledger()
    out = []
    for name in platform.order():
        unit = platform.units[name]
        for env, needed in unit.policy.approvals.items():
            version = _waiting(platform, unit, env) if needed else None
            if version is None:
                continue
            deployed = ledger.latest(unit=name, env=env, action=CHANGES)
            have = approvers(ledger, name, env, version)
            if (deployed and deployed.version == version) or len(have) >= needed:
                continue
            may = eligible_approvers(platform.governance, ledger, name, version, env)
            out.append(
                {
                    "unit": name,
                    "env": env,
                    "version": version,
                    "team": unit.team,
                    "approvals": len(have),
                    "required": needed,
                    "approved_by": have,
                    "may_approve": [p for p in may if p not in have],
                    "you_may": caller in may and caller not in have,
                    "command": f"ud approve {name} --env {env} --version {version}",
                }
            )
    return {"principal": caller, "pending": [p for p in out if p["you_may"]], "all": out}


def request_approval(
    platform: Platform,
    caller: str,
    unit_name: str,
    env: str,
    version: str,
    *,
    note: str = "",
) -> dict[str, Any]:
    """Record that `caller` asks for the approvals `version` still needs in `env`, and say who
    may give them (the approve role there, the version's authors excepted) and how. Approves
    nothing; anyone may ask."""
    from ..gates.approval import approvers

    unit = platform.unit(unit_name)
    if env not in unit.environments:
        raise UDError(
            "UD-UNKNOWN-ENV",
            f"{unit.name} has no environment {env!r}",
            f"use one of: {', '.join(unit.environments)}",
        )
    where = {"unit": unit.name, "env": env, "version": version, "action": "request-approval"}
    try:
        built(platform, unit, version)
    except UDError as exc:
        raise refuse(platform, caller, exc, **where) from None
    ledger = platform.ledger.ledger()
    may = eligible_approvers(platform.governance, ledger, unit.name, version, env)
    have = approvers(ledger, unit.name, env, version)
    needed = unit.policy.approvals.get(env, 0)
    event = ApprovalRequested(
        note=note.strip(), required=needed, approvals=len(have), approvers=may
    )
    record(ledger, event, principal=caller, unit=unit.name, env=env, version=version)
    return {
        "ok": True,
        **{k: v for k, v in where.items() if k != "action"},
        "principal": caller,
        "required": needed,
        "approvals": len(have),
        "approved_by": have,
        "may_approve": [p for p in may if p not in have],
        "command": f"ud approve {unit.name} --env {env} --version {version}",
    }


def override(
    platform: Platform,
    caller: str,
    unit_name: str,
    gate_name: str,
    version: str = "",
    *,
    justification: str,
    expires: str = "",
    until: str = "",
    stage: str = "",
    for_: list[str] | None = None,
    file: str = "",
    rule: str = "",
    dry_run: bool = False,
) -> dict:
    """Record a break-glass override of one failed gate, usable only by the principals (or
    holders of a role) it names; the policy gate is never overridden. With `version`, it lets
    that version through the gate; with `file` and `rule` (scoped), it covers that one finding
    of the gate in every version until it expires, for everyone unless `for_` says whom."""
    unit = platform.unit(unit_name)
    gates = [
        g
        for g in platform.gates[unit.name]
        if g.name == gate_name and (not stage or g.spec.stage == stage)
    ]
    if not gates:
        raise UDError(
            "UD-UNKNOWN-GATE",
            f"{unit.name} has no gate {gate_name!r}" + (f" on {stage}" if stage else ""),
            f"gates: {', '.join(sorted({g.name for g in platform.gates[unit.name]}))}",
        )
    if len(gates) > 1 and any(g.overridable for g in gates):
        raise UDError(
            "UD-USAGE", f"gate {gate_name!r} of {unit.name} is on several stages", "give --stage"
        )
    gate = gates[-1]
    guards = unit.stages[unit.stages.index(gate.spec.stage) + 1]
    scoped = bool(file or rule)
    where = {"unit": unit.name, "env": guards, "version": version or None, "action": "override"}
    if not gate.overridable:
        raise refuse(
            platform,
            caller,
            NotPermitted(
                "UD-OVERRIDE-POLICY",
                f"the policy gate says who may deploy to {guards}; no override stands in for it",
                f"give the principal the deploy role in {guards} in {platform.governance.source}",
            ),
            **where,
        )
    _check_scope(platform, caller, gate, version, file, rule, where)
    beneficiaries = list(dict.fromkeys(for_ or (["*"] if scoped else [caller])))
    for b in beneficiaries:
        if b == "*" and scoped:
            continue
        if b.startswith("role:"):
            if b[5:] not in ROLES:
                raise UDError(
                    "UD-USAGE",
                    f"--for {b}: {b[5:]!r} is not a role",
                    f"use role:{' or role:'.join(ROLES)}",
                )
        else:
            platform.governance.principal(b)  # refuses an unknown principal
    if not (justification or "").strip():
        raise refuse(
            platform,
            caller,
            UDError(
                "UD-OVERRIDE-NO-JUSTIFICATION",
                "a break-glass override needs a written justification",
                "give --reason 'why this must go through'",
            ),
            **where,
        )
    if not platform.governance.allowed(caller, "override", guards):
        raise refuse(
            platform,
            caller,
            NotPermitted(
                "UD-AUTH-FORBIDDEN",
                f"{caller} may not override gates guarding {guards}",
                "ask someone with the override role there",
            ),
            **where,
        )
    if not scoped:
        try:
            built(platform, unit, version)
        except UDError as exc:
            raise refuse(platform, caller, exc, **where) from None
    event = Override(
        gate=gate.name,
        family=gate.family,
        stage=gate.spec.stage,
        justification=justification.strip(),
        expires_at=_expiry(expires, until).isoformat(),
        for_=beneficiaries,
        file=file.strip().removeprefix("./"),
        rule=rule.strip(),
    )
    if dry_run:
        return {"ok": True, "dry_run": True, **where, "principal": caller, **event.payload()}
    entry = record(
        platform.ledger.ledger(),
        event,
        principal=caller,
        unit=unit.name,
        env=guards,
        version=None if scoped else version,
    )
    return {"ok": True, **where, "principal": caller, "seq": entry.seq, **event.payload()}


def _check_scope(
    platform: Platform,
    caller: str,
    gate: Any,
    version: str,
    file: str,
    rule: str,
    where: dict[str, Any],
) -> None:
    """An override names one version, or one finding (a file and a rule) of a gate that
    reports findings; anything else is refused before it is recorded."""
    if not (file or rule):
        if version:
            return
        raise refuse(
            platform,
            caller,
            UDError(
                "UD-OVERRIDE-NOT-SCOPED",
                "an override without --version must be scoped to one finding",
                f"give --version V (one version), or --file F --rule R (one finding of "
                f"{gate.name}, every version, until it expires)",
            ),
            **where,
        )
    if not (file.strip() and rule.strip()):
        raise refuse(
            platform,
            caller,
            UDError(
                "UD-OVERRIDE-NOT-SCOPED",
                f"a scoped override names both the file and the rule (given: "
                f"{'--file' if file.strip() else '--rule'} only)",
                "give --file PATH --rule RULE, as the gate's finding lists them "
                "(e.g. --file app/settings.py --rule B105)",
            ),
            **where,
        )
    if not gate.scoped_findings:
        raise refuse(
            platform,
            caller,
            UDError(
                "UD-OVERRIDE-SCOPE-UNSUPPORTED",
                f"gate {gate.name} ({gate.type}) reports no findings a scoped override can cover",
                "override one version instead: --version V",
            ),
            **where,
        )
    if version:
        raise UDError(
            "UD-USAGE",
            "a scoped override covers its finding in every version: --version does not go "
            "with --file and --rule",
            "drop --version",
        )


def _expiry(expires: str, until: str) -> datetime:
    """When an override ends: `expires` from now (a duration), or at `until` (an ISO date or
    time, UTC when it names no zone); 24 hours when neither is given."""
    now = datetime.now(timezone.utc)
    if expires and until:
        raise UDError("UD-USAGE", "give --expires or --until, not both", "drop one of them")
    if not until:
        return now + timedelta(seconds=tokens.parse_duration(expires or "24h"))
    try:
        at = datetime.fromisoformat(until.strip())
    except ValueError:
        raise UDError(
            "UD-USAGE",
            f"--until {until[:40]!r} is not a date",
            "give an ISO date or time: 2026-12-31 or 2026-12-31T18:00:00+00:00",
        ) from None
    at = at if at.tzinfo else at.replace(tzinfo=timezone.utc)
    if at <= now:
        raise UDError("UD-USAGE", f"--until {until} is in the past", "give a date after today's")
    if (at - now).total_seconds() > tokens.MAX_DURATION_S:
        raise UDError("UD-USAGE", f"--until {until} is more than a year away", "give a nearer date")
    return at
