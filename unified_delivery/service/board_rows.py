"""The release board's answers, from the platform's record only (the ledger, in a few queries
whatever the number of units): for every unit and environment, the version and since when, who
put it there and why, its gates, whether it drifted, its soak, what waits for approval; and
DORA and spend per team. No target is asked (a page at 1,000 units must not probe 2,000
deployments): drift is what the reconcile sensor last recorded."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

from ..events import CHANGES, Approval, Drift

if TYPE_CHECKING:
    from ..platform import Platform


def release_board(
    platform: Platform, *, team: str = "", kind: str = "", days: float = 30
) -> dict[str, Any]:
    from ..reports import cost, dora, window

    ledger = platform.ledger.ledger()
    changes = ledger.latest_by_place(CHANGES)
    drifts = ledger.latest_by_place(Drift.ACTION)
    approvals: dict[tuple[str, str, str], list[str]] = {}
    for e in ledger.entries(action=Approval.ACTION):
        who = approvals.setdefault((e.unit or "", e.env or "", e.version or ""), [])
        if e.principal not in who:
            who.append(e.principal)
    now = datetime.now(timezone.utc)
    rows = []
    for name in platform.order():
        unit = platform.units[name]
        if (team and unit.team != team) or (kind and unit.kind != kind):
            continue
        envs = []
        for i, env in enumerate(unit.environments):
            change = changes.get((name, env))
            drift = drifts.get((name, env))
            cell: dict[str, Any] = {"env": env, "version": None}
            if change is not None:
                p = change.payload
                cell.update(
                    version=change.version,
                    since=change.ts,
                    by=change.principal,
                    action=change.action,
                    reason=p.get("reason", ""),
                    run_id=p.get("run_id", ""),
                    gates=p.get("gates") or {},
                    overrides=sorted(p.get("overrides") or {}),
                )
            if drift is not None and (change is None or drift.seq > change.seq):
                cell["drift"] = {"runs": drift.version, "noticed": drift.ts}
            before = changes.get((name, unit.environments[i - 1])) if i else None
            waiting = before.version if before else None
            if waiting and waiting != cell["version"]:
                needed = unit.policy.approvals.get(env, 0)
                have = approvals.get((name, env, waiting), [])
                cell["waiting"] = {"version": waiting, "approvals": len(have), "required": needed}
                if needed > len(have):
                    cell["waiting"]["command"] = (
                        f"ud approve {name} --env {env} --version {waiting}"
                    )
                soak = unit.policy.soak_seconds
                if soak and before is not None:
                    ends = datetime.fromisoformat(before.ts) + timedelta(seconds=soak)
                    if ends > now:
                        cell["waiting"]["soak_until"] = ends.isoformat(timespec="seconds")
            envs.append(cell)
        rows.append({"unit": name, "kind": unit.kind, "team": unit.team, "envs": envs})
    win = window(days=days)
    entries = ledger.entries(since=win.since)
    units = {n: {"team": u.team, "kind": u.kind} for n, u in platform.units.items()}
    teams_dora = dora.report(entries, win, "production", units)["teams"]
    spend = cost.report(entries, win, units)["teams"]
    return {
        "units": rows,
        "teams": sorted({u.team for u in platform.units.values()}),
        "kinds": sorted({u.kind for u in platform.units.values()}),
        "filter": {"team": team, "kind": kind},
        "dora": [t for t in teams_dora if not team or t["team"] == team],
        "spend": [t for t in spend if not team or t["team"] == team],
        "window_days": days,
        "entries": ledger.count(),
    }
