"""Cost showback from the ledger: what each team's and unit's builds and deploys cost in a window.

Entries that cost something (candidate builds, promotions, branch previews) carry `payload["cost"] =
{"amount": ..., "currency": ...}`; entries without one count 0. A cost that cannot be read
(not a number, negative, no currency) is left out of the sums and listed under `invalid`,
so a wrong figure is visible instead of silently summed.
"""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Any, Mapping

from .period import Window

DEFAULT_CURRENCY = "USD"
UNKNOWN = "unknown"
PREVIEW = "preview"  # events.PreviewDeployed.ACTION: a branch's build, gates and deploy


def _cost(entry: Any) -> tuple[float, str] | str | None:
    """(amount, currency), None when the entry has no cost, or why the cost cannot be read."""
    cost = entry.payload.get("cost")
    if cost is None:
        return None
    if not isinstance(cost, dict):
        return f"cost is a {type(cost).__name__}, not an object"
    amount, currency = cost.get("amount"), cost.get("currency", DEFAULT_CURRENCY)
    if (
        isinstance(amount, bool)
        or not isinstance(amount, (int, float))
        or not math.isfinite(amount)
    ):
        return f"amount {amount!r} is not a number"
    if amount < 0:
        return f"amount {amount} is negative"
    if not isinstance(currency, str) or not currency:
        return f"currency {currency!r} is not a currency code"
    return float(amount), currency


def report(
    entries: list[Any], win: Window, units: Mapping[str, Mapping[str, str]] | None = None
) -> dict:
    """Spend per team and per unit (one row per currency: there are no exchange rates); what
    branch previews cost is in the spend, and also apart as `preview_spend`."""
    units = units or {}
    unit_spend: dict[tuple[str, str, str], dict] = {}
    invalid = []
    for e in entries:
        if not win.holds(e.ts):
            continue
        cost = _cost(e)
        if isinstance(cost, str):
            invalid.append({"seq": e.seq, "unit": e.unit, "action": e.action, "reason": cost})
            continue
        team = units.get(e.unit or "", {}).get("team") or e.payload.get("team") or UNKNOWN
        if cost is None and not e.unit:
            continue
        amount, currency = cost or (0.0, DEFAULT_CURRENCY)
        row = unit_spend.setdefault(
            (team, e.unit or UNKNOWN, currency),
            {
                "unit": e.unit or UNKNOWN,
                "team": team,
                "currency": currency,
                "spend": 0.0,
                "costed_entries": 0,
                "by_action": defaultdict(float),
            },
        )
        if cost is not None:
            row["spend"] += amount
            row["costed_entries"] += 1
            row["by_action"][e.action] += amount
    for name, declared in units.items():  # every declared unit shows, if only with 0
        team = declared.get("team") or UNKNOWN
        if not any(u == name for _, u, _ in unit_spend):
            unit_spend[(team, name, DEFAULT_CURRENCY)] = {
                "unit": name,
                "team": team,
                "currency": DEFAULT_CURRENCY,
                "spend": 0.0,
                "costed_entries": 0,
                "by_action": {},
            }
    unit_rows = sorted(
        (
            {
                **r,
                "spend": round(r["spend"], 6),
                "preview_spend": round(r["by_action"].get(PREVIEW, 0.0), 6),
                "by_action": {k: round(v, 6) for k, v in r["by_action"].items()},
            }
            for r in unit_spend.values()
        ),
        key=lambda r: (r["team"], r["unit"], r["currency"]),
    )
    teams: dict[tuple[str, str], dict] = {}
    for r in unit_rows:
        t = teams.setdefault(
            (r["team"], r["currency"]),
            {
                "team": r["team"],
                "spend": 0.0,
                "currency": r["currency"],
                "costed_entries": 0,
                "units": [],
            },
        )
        t["spend"] += r["spend"]
        t["preview_spend"] = t.get("preview_spend", 0.0) + r["preview_spend"]
        t["costed_entries"] += r["costed_entries"]
        t["units"].append({"unit": r["unit"], "spend": r["spend"]})
    totals: dict[str, float] = defaultdict(float)
    for t in teams.values():
        t["spend"] = round(t["spend"], 6)
        t["preview_spend"] = round(t["preview_spend"], 6)
        totals[t["currency"]] += t["spend"]
    return {
        "window": win.to_dict(),
        "teams": sorted(teams.values(), key=lambda t: (-t["spend"], t["team"], t["currency"])),
        "units": unit_rows,
        "total": [{"currency": c, "spend": round(s, 6)} for c, s in sorted(totals.items())],
        "invalid": invalid,
    }
