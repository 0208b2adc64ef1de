"""Audit activity from the ledger: what happened to each unit in a window, by action, and the
entries a reviewer looks at first (refusals, overrides, forgeries, failed deploys)."""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Any

from .period import Window

NOTABLE = ("refusal", "override", "forgery", "deploy-failed", "rollback-failed", "build-failed")


def report(entries: list[Any], win: Window) -> dict:
    counts: dict[str, Counter] = defaultdict(Counter)
    notable = []
    for e in entries:
        if not win.holds(e.ts):
            continue
        counts[e.unit or "(platform)"][e.action] += 1
        if e.action in NOTABLE:
            notable.append(
                {
                    "seq": e.seq,
                    "at": e.ts,
                    "action": e.action,
                    "principal": e.principal,
                    "unit": e.unit,
                    "env": e.env,
                    "version": e.version,
                    "code": e.payload.get("code"),
                    "message": e.payload.get("message") or e.payload.get("justification") or "",
                }
            )
    return {
        "window": win.to_dict(),
        "activity": [
            {"unit": u, "actions": dict(sorted(c.items())), "total": sum(c.values())}
            for u, c in sorted(counts.items())
        ],
        "notable": notable,
    }
