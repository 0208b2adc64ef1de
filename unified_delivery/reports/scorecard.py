"""The reports in the Dagster UI: a `platform/scorecard` asset whose materialization renders
tables and charts for every unit and team (Dagster markdown, charts as SVG data URIs) and
records each stage asset's own DORA and cost figures on it as an observation. They are
computed when the scorecard is materialized (where they are read), not on every deploy.

No `from __future__ import annotations` here: Dagster reads the asset's `context` annotation
at definition time, and a string annotation is refused."""

from typing import TYPE_CHECKING, Any

import dagster as dg

from ..events import Promotion
from . import charts, cost, dora, render
from .period import DEFAULT_DAYS, window

if TYPE_CHECKING:
    from ..platform import Platform

SCORECARD_KEY = dg.AssetKey(["platform", "scorecard"])


def gate_summary(results: dict[str, dict | None]) -> str:
    """`3/4 passed, 1 overridden (approval)` for the gate results a promotion relied on."""
    passed = [n for n, r in results.items() if r and r.get("passed")]
    overridden = [
        n for n, r in results.items() if r and not r.get("passed") and r.get("overridden")
    ]
    text = f"{len(passed)}/{len(results)} passed"
    return text + (
        f", {len(overridden)} overridden ({', '.join(overridden)})" if overridden else ""
    )


# A stage asset's metric names carry their unit (the UI shows a name and a number).
STAGE_METRIC_NAMES = {
    "deployment_frequency": "dora_deploys_per_day",
    "change_failure_rate": "dora_change_failure_ratio",
}


def stage_metadata(
    entries: list[Any], unit: str, env: str, days: float = DEFAULT_DAYS
) -> dict[str, Any]:
    """What a stage asset shows besides its version: the unit's DORA figures in `env` and its spend
    over the last `days`, and what the deploy now in `env` cost. `entries`: the unit's ledger
    entries."""
    win = window(days=days)
    row = next((u for u in dora.report(entries, win, env)["units"] if u["unit"] == unit), None)
    meta: dict[str, Any] = {}
    if row is None:
        meta["dora"] = f"no deploy of {unit} to {env} in the last {days:g} days"
    else:
        meta.update(
            {
                STAGE_METRIC_NAMES.get(m, f"dora_{m}"): row[m]
                for m in ("deployments", *dora.METRICS)
                if row[m] is not None
            }
        )
        meta["dora"] = dg.MetadataValue.md(
            render.markdown(
                {
                    "title": f"DORA: {unit} in {env}, last {days:g} days",
                    "headers": ["metric", "value"],
                    "rows": [
                        ["deploys", str(row["deployments"])],
                        ["frequency", render.frequency(row["deployment_frequency"])],
                        ["lead time", render.duration(row["lead_time_seconds"])],
                        ["change failure rate", render.rate(row["change_failure_rate"])],
                        ["time to restore", render.duration(row["time_to_restore_seconds"])],
                    ],
                }
            )
        )
    spend = [u for u in cost.report(entries, win)["units"] if u["unit"] == unit]
    for u in spend[:1]:  # one currency per unit in practice; the scorecard lists every one
        meta.update(
            {
                f"spend_{days:g}d_{u['currency'].lower()}": u["spend"],
                "spend_currency": u["currency"],
            }
        )
    last = next(
        (
            e
            for e in reversed(entries)
            if e.unit == unit and e.env == env and e.action == Promotion.ACTION
        ),
        None,
    )
    if last is not None and isinstance(cost_of := Promotion.read(last).cost, dict):
        meta[f"deploy_cost_{str(cost_of.get('currency') or 'usd').lower()}"] = cost_of.get("amount")
    return meta


def _images(svgs: list[str], alt: str) -> str:
    return "\n\n".join(f"![{alt}]({charts.data_uri(svg)})" for svg in svgs)


def scorecard_metadata(
    entries: list[Any], verified: dict, units: dict[str, dict[str, str]], days: float = DEFAULT_DAYS
) -> dict:
    win = window(days=days)
    d, c = dora.report(entries, win, "production", units), cost.report(entries, win, units)
    warning = render.ledger_warning(verified)
    lead = f"**{warning}**\n\n" if warning else ""
    meta: dict[str, Any] = {
        "ledger": warning or f"verified: {verified['count']} entries, hash chain intact",
        "window": (
            f"last {days:g} days: {win.since.isoformat()[:19]} to {win.until.isoformat()[:19]} UTC"
        ),
        "dora": dg.MetadataValue.md(
            lead
            + _images(charts.dora_charts(d), "DORA chart")
            + "\n\n"
            + "\n\n".join(render.markdown(t) for t in render.dora_tables(d))
        ),
        "cost": dg.MetadataValue.md(
            lead
            + _images(charts.cost_charts(c), "spend chart")
            + "\n\n"
            + "\n\n".join(render.markdown(t) for t in render.cost_tables(c))
        ),
        "platform_deployments": d["platform"]["deployments"],
    }
    meta.update(
        {f"platform_{m}": d["platform"][m] for m in dora.METRICS if d["platform"][m] is not None}
    )
    meta.update({f"spend_{t['currency']}": t["spend"] for t in c["total"]})
    return meta


def scorecard_asset(platform: "Platform") -> dg.AssetsDefinition:
    """Reads the ledger only; it follows each unit's last environment so the graph shows what it
    sums up."""
    last_envs = [
        dg.AssetKey([n, u.environments[-1]]) for n, u in platform.units.items() if u.environments
    ]

    @dg.asset(
        key=SCORECARD_KEY,
        deps=last_envs,
        group_name="platform",
        required_resource_keys={"ledger"},
        kinds={"ledger"},
        description="DORA metrics and cost showback for every unit and team, from the ledger "
        f"(last {DEFAULT_DAYS} days). `ud report dora|cost` gives the same figures.",
    )
    def scorecard(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
        ledger = context.resources.ledger.ledger()
        entries = ledger.entries()
        units = {n: {"team": u.team, "kind": u.kind} for n, u in platform.units.items()}
        by_unit: dict[str, list[Any]] = {}
        for e in entries:
            by_unit.setdefault(e.unit or "", []).append(e)
        for name, unit in platform.units.items():
            for env in unit.environments:
                context.log_event(
                    dg.AssetObservation(
                        asset_key=dg.AssetKey([name, env]),
                        metadata=stage_metadata(by_unit.get(name, []), name, env),
                    )
                )
        return dg.MaterializeResult(
            metadata=scorecard_metadata(entries, ledger.verify().to_dict(), units)
        )

    return scorecard
