"""Reading the ledger for people and agents: the evidence of every change to an environment,
DORA, cost and audit reports, and audit queries over the entries themselves. The ledger is
verified first; a broken chain is the first thing each says."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from ..errors import UDError
from ..events import (
    CHANGES,
    Approval,
    GateEvaluated,
    Override,
    OverrideUsed,
    Promotion,
    Rollback,
    read,
)

if TYPE_CHECKING:
    from ..ledger import Ledger
    from ..platform import Platform
    from ..reports import Window

REPORTS = ("dora", "cost", "audit")


def parse_date(flag: str, text: str) -> datetime | None:
    """An ISO date or time (UTC unless it says otherwise), or None for an empty one."""
    if not text:
        return None
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise UDError(
            "UD-USAGE", f"{flag} {text!r} is not a date", "use an ISO date or time like 2026-11-01"
        ) from None
    return when if when.tzinfo else when.replace(tzinfo=timezone.utc)


def report_window(since: str = "", until: str = "") -> Window:
    """The window of a report: `since` to `until` (default: the 30 days before now)."""
    from ..reports import window

    win = window(parse_date("--since", since), parse_date("--until", until))
    if win.since >= win.until:
        raise UDError(
            "UD-USAGE",
            f"--since {win.since.isoformat()} is not before --until {win.until.isoformat()}",
            "give a --since earlier than --until",
        )
    return win


def evidence(ledger: Ledger, since: datetime | None, env: str = "production") -> list[dict]:
    """Every change (promotion, rollback) to `env` since `since`, with the gate results,
    approvals and overrides recorded before it for its version."""
    entries = ledger.entries(since=since) if since else ledger.entries()
    changes = []
    for e in entries:
        if e.action not in CHANGES or e.env != env:
            continue
        gates = {}
        for g in ledger.entries(unit=e.unit, action=GateEvaluated.ACTION):
            if g.version == e.version and g.seq < e.seq:
                gate = GateEvaluated.read(g)
                gates[(gate.stage, gate.gate)] = {
                    "gate": gate.gate,
                    "family": gate.family,
                    "stage": gate.stage,
                    "passed": gate.passed,
                    "code": gate.code,
                    "overridden": gate.overridden,
                    "at": g.ts,
                }
        approvals = [
            {"principal": a.principal, "at": a.ts}
            for a in ledger.entries(unit=e.unit, env=env, action=Approval.ACTION)
            if a.version == e.version and a.seq < e.seq
        ]
        overrides = [
            {
                "principal": o.principal,
                "gate": ov.gate,
                "justification": ov.justification,
                "expires_at": ov.expires_at,
                "at": o.ts,
            }
            for o in ledger.entries(unit=e.unit, action=Override.ACTION)
            if o.version == e.version and o.seq < e.seq
            for ov in [Override.read(o)]
        ] + [
            {  # a scoped override, used for this version: the finding it let through
                "principal": used.overridden_by,
                "gate": used.gate,
                "finding": f"{used.file}:{used.line} {used.rule}",
                "override_seq": used.override_seq,
                "expires_at": used.expires_at,
                "at": u.ts,
            }
            for u in ledger.entries(unit=e.unit, env=env, action=OverrideUsed.ACTION)
            if u.version == e.version and u.seq < e.seq
            for used in [OverrideUsed.read(u)]
        ]
        change = read(e)
        assert isinstance(change, (Promotion, Rollback))
        changes.append(
            {
                "seq": e.seq,
                "at": e.ts,
                "action": e.action,
                "unit": e.unit,
                "env": e.env,
                "version": e.version,
                "from_version": change.from_version,
                "principal": e.principal,
                "reason": change.reason,
                "kind": change.kind or None,
                "team": change.team or None,
                "run_id": change.run_id or None,
                "gates": list(gates.values()),
                "approvals": approvals,
                "overrides": overrides,
            }
        )
    return changes


def report(platform: Platform, what: str, win: Window, env: str = "production") -> dict[str, Any]:
    """A DORA, cost or audit report of the loaded platform (see `report_of`)."""
    units = {
        name: {"team": u.team, "kind": u.kind, "environments": list(u.environments)}
        for name, u in platform.units.items()
    }
    return report_of(units, platform.ledger.ledger(), what, win, env)


def report_of(
    units: dict[str, dict[str, Any]],
    ledger: Ledger,
    what: str,
    win: Window,
    env: str = "production",
) -> dict[str, Any]:
    """A DORA, cost or audit report as data: the ledger's verification first, then the
    figures. `units`: name -> team, kind and environments (the loaded platform's, or its
    catalog's: no platform load). `env`: the environment whose deploys DORA counts."""
    from ..reports import audit, cost, dora
    from ..reports.period import parse_ts
    from ..reports.render import ledger_warning

    if what not in REPORTS:
        raise UDError("UD-USAGE", f"no report {what!r}", f"ask for one of: {', '.join(REPORTS)}")
    envs = {e for u in units.values() for e in u.get("environments", [])}
    if what == "dora" and env not in envs:
        raise UDError(
            "UD-UNKNOWN-ENV",
            f"no unit has an environment {env!r}",
            f"use one of: {', '.join(sorted(envs))}",
        )
    check = ledger.verify().to_dict()
    # all of it: a deploy's candidate may predate the window, its rollback follow it
    entries = ledger.entries()
    teams = {name: {"team": u["team"], "kind": u["kind"]} for name, u in units.items()}
    head = {"ok": True, "report": what, "ledger": check}
    if warning := ledger_warning(check):
        head["warning"] = warning
    if what == "dora":
        return {**head, **dora.report(entries, win, env, teams)}
    if what == "cost":
        return {**head, **cost.report(entries, win, teams)}
    changes = [c for c in evidence(ledger, win.since) if parse_ts(c["at"]) < win.until]
    return {**head, **audit.report(entries, win), "changes": changes}


def audit_entries(
    platform: Platform,
    *,
    since: str = "",
    until: str = "",
    unit: str = "",
    env: str = "",
    action: str = "",
    principal: str = "",
    limit: int = 50,
) -> dict[str, Any]:
    """The ledger's entries that match, newest last, at most `limit` (the newest ones), with
    the ledger's verification: what happened, who did it, and whether the record holds."""
    if not 1 <= limit <= 1000:
        raise UDError("UD-USAGE", f"limit {limit} is out of range", "give a limit from 1 to 1000")
    ledger = platform.ledger.ledger()
    check = ledger.verify().to_dict()
    found = [
        e
        for e in ledger.entries(
            unit=unit or None,
            env=env or None,
            action=action or None,
            since=parse_date("since", since),
            until=parse_date("until", until),
        )
        if not principal or e.principal == principal
    ]
    keep = found[-limit:]
    return {
        "ok": True,
        "ledger": check,
        "matched": len(found),
        "entries": [
            {
                "seq": e.seq,
                "at": e.ts,
                "action": e.action,
                "principal": e.principal,
                "unit": e.unit,
                "env": e.env,
                "version": e.version,
                "payload": e.payload,
            }
            for e in keep
        ],
    }
