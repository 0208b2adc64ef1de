"""DORA metrics from the ledger, per unit and pooled per team, kind and platform.

- A deploy is a `promotion` entry into the environment (production by default). An
  `already-deployed` no-op is not one, nor a `deploy-failed` attempt (the target stayed on the
  previous version; those are counted apart as `failed_attempts`).
- Deployment frequency: deploys in the window per day of the window.
- Lead time: median, over deploys, of the deploy time minus the change's creation (the
  commit time of an app, the creation of a model version), as the promotion recorded it,
  else as its candidate recorded it, else when the candidate was built.
- Change failure rate: the share of deploys followed, before the next change of that unit in
  that environment, by a rollback or by a failed health gate on the deployed version.
- Time to restore: median, over failed deploys, from the first failure signal (the failed
  health gate, else the deploy itself: nothing earlier is on record) to the change that
  replaced the version (the rollback or a roll-forward). A failure not yet replaced is open.

A metric with nothing to measure is None ("no data"), never a division by zero.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Iterable, Mapping

from ..events import CHANGES, Candidate, DeployFailed, GateEvaluated, Promotion, Rollback
from .period import Window, parse_ts

METRICS = (
    "deployment_frequency",
    "lead_time_seconds",
    "change_failure_rate",
    "time_to_restore_seconds",
)
MEASURES = {
    "deployment_frequency": "deploys per day",
    "lead_time_seconds": "median seconds, change created to deployed",
    "change_failure_rate": "failed deploys / deploys",
    "time_to_restore_seconds": "median seconds, failure to restore",
}
UNKNOWN = "unknown"


@dataclass(frozen=True)
class Deploy:
    unit: str
    team: str
    kind: str
    version: str | None
    at: datetime
    lead_seconds: float | None
    failed: bool
    restore_seconds: float | None  # None when not failed, or failed and not restored yet


def _ts(value: Any) -> datetime | None:
    """A recorded time, or None when it is missing or not a time (the deploy's lead time is then
    unknown)."""
    if not isinstance(value, str) or not value:
        return None
    try:
        return parse_ts(value)
    except ValueError:
        return None


def _candidate_created(entry: Any) -> datetime | None:
    details = Candidate.read(entry).artifact.get("details") or {}
    return _ts(details.get("change_created_at")) or _ts(entry.ts)


def _health_failed(entry: Any, env: str) -> bool:
    gate = GateEvaluated.read(entry)
    return gate.family == "health" and gate.passed is False and (gate.stage or entry.env) == env


def deploys(
    entries: Iterable[Any],
    win: Window,
    env: str = "production",
    units: Mapping[str, Mapping[str, str]] | None = None,
) -> list[Deploy]:
    """Every deploy into `env` inside the window, with its lead time and whether (and when) it
    failed and was restored. `entries` should be the whole ledger: a deploy's candidate comes before
    the window, its rollback may come after."""
    units = units or {}
    created: dict[tuple[str, str], datetime | None] = {}
    changes: dict[str, list[Any]] = defaultdict(list)
    health: dict[tuple[str, str], list[Any]] = defaultdict(list)
    for e in sorted(entries, key=lambda e: e.seq):
        if e.action == Candidate.ACTION and e.unit and e.version:
            created.setdefault((e.unit, e.version), _candidate_created(e))
        elif e.action in CHANGES and e.env == env and e.unit:
            changes[e.unit].append(e)
        elif e.action == GateEvaluated.ACTION and e.unit and e.version and _health_failed(e, env):
            health[(e.unit, e.version)].append(e)
    out = []
    for unit, history in changes.items():
        for i, p in enumerate(history):
            if p.action != Promotion.ACTION or not win.holds(p.ts):
                continue
            at = parse_ts(p.ts)
            nxt = history[i + 1] if i + 1 < len(history) else None
            signals = [
                h
                for h in health.get((unit, p.version or ""), [])
                if p.seq < h.seq and (nxt is None or h.seq < nxt.seq)
            ]
            failed = bool(signals) or (nxt is not None and nxt.action == Rollback.ACTION)
            restore = None
            if failed and nxt is not None:
                restore = max(
                    0.0,
                    (
                        parse_ts(nxt.ts) - parse_ts(signals[0].ts if signals else p.ts)
                    ).total_seconds(),
                )
            change = Promotion.read(p)
            start = _ts(change.change_created_at) or created.get((unit, p.version or ""))
            # A change "created" after its deploy is a skewed clock (a commit date is the author's
            # to set).
            lead = max(0.0, (at - start).total_seconds()) if start else None
            declared = units.get(unit, {})
            out.append(
                Deploy(
                    unit,
                    declared.get("team") or change.team or UNKNOWN,
                    declared.get("kind") or change.kind or UNKNOWN,
                    p.version,
                    at,
                    lead,
                    failed,
                    restore,
                )
            )
    return sorted(out, key=lambda d: d.at)


def _median(values: list[float]) -> float | None:
    return round(statistics.median(values), 1) if values else None


def figures(ds: list[Deploy], days: float, failed_attempts: int = 0) -> dict:
    n = len(ds)
    failed = [d for d in ds if d.failed]
    restores = [d.restore_seconds for d in failed if d.restore_seconds is not None]
    return {
        "deployments": n,
        "deployment_frequency": round(n / days, 4) if n else 0.0,
        "lead_time_seconds": _median([d.lead_seconds for d in ds if d.lead_seconds is not None]),
        "change_failure_rate": round(len(failed) / n, 4) if n else None,
        "time_to_restore_seconds": _median(restores),
        "failures": len(failed),
        "open_failures": len(failed) - len(restores),
        "lead_time_unknown": sum(d.lead_seconds is None for d in ds),
        "failed_attempts": failed_attempts,
    }


def report(
    entries: list[Any],
    win: Window,
    env: str = "production",
    units: Mapping[str, Mapping[str, str]] | None = None,
) -> dict:
    """DORA figures per unit, team, kind and for the whole platform. `units` (name -> team, kind)
    lists units that should appear even without a deploy in the window."""
    units = dict(units or {})
    ds = deploys(entries, win, env, units)
    attempts: dict[str, int] = defaultdict(int)
    for e in entries:
        if e.action == DeployFailed.ACTION and e.env == env and e.unit and win.holds(e.ts):
            attempts[e.unit] += 1
    for d in ds:
        units.setdefault(d.unit, {"team": d.team, "kind": d.kind})
    for name in attempts:
        units.setdefault(name, {"team": UNKNOWN, "kind": UNKNOWN})

    def team(name: str) -> str:
        return units[name].get("team") or UNKNOWN

    def kind(name: str) -> str:
        return units[name].get("kind") or UNKNOWN

    by_unit: dict[str, list[Deploy]] = defaultdict(list)
    for d in ds:
        by_unit[d.unit].append(d)

    def pooled(by, value: str) -> dict:
        members = [u for u in units if by(u) == value]
        return figures(
            [d for u in members for d in by_unit[u]], win.days, sum(attempts[u] for u in members)
        )

    rows = [
        {"unit": u, "team": team(u), "kind": kind(u), **pooled(lambda x: x, u)}
        for u in sorted(units, key=lambda u: (team(u), u))
    ]
    return {
        "env": env,
        "window": win.to_dict(),
        "measures": MEASURES,
        "units": rows,
        "teams": [{"team": t, **pooled(team, t)} for t in sorted({team(u) for u in units})],
        "kinds": [{"kind": k, **pooled(kind, k)} for k in sorted({kind(u) for u in units})],
        "platform": figures(ds, win.days, sum(attempts.values())),
    }
