"""Cost and unit economics: refuse a version whose run costs more than its budget, whose
projected monthly spend would pass the unit's or the team's budget, or whose cost per
1,000 predictions (or per GB published) passes its limit; always say by how much.

The run cost is what the candidate's build actually used (measured, in the ledger), priced
by the platform's price table. The monthly projection is runs_per_month builds plus what
stays up (replicas x size x 730 h). An app may declare its replicas and size in
`ud-deploy.yaml` at the root of its source, so the projection follows the commit.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from ..errors import ConfigError
from ..events import Candidate
from ..units import Serving
from .base import Gate, GateContext, GateResult

DEPLOY_FILE = "ud-deploy.yaml"


def serving_of(ctx: GateContext) -> Serving | None:
    declared = ctx.unit.budget.serving
    # A unit built from a commit may say in its tree how it is served (the candidate is that tree).
    if ctx.unit.git_source() is not None and ctx.artifact is not None:
        path = Path(ctx.artifact.location) / DEPLOY_FILE
        if path.exists():
            raw = yaml.safe_load(path.read_text()) or {}
            return Serving(
                size=raw.get("size", declared.size if declared else ""),
                replicas=raw.get("replicas", 1),
            )
    return declared


def projected_by_unit(ledger, team: str, exclude: str) -> dict[str, float]:
    """Each other unit of the team: the projection of its newest passing cost gate."""
    seen: dict[str, float] = {}
    for e in reversed(ledger.entries(action="gate")):
        p = e.payload
        if (
            p.get("family") == "cost"
            and p.get("team") == team
            and e.unit != exclude
            and e.unit not in seen
            and p.get("passed")
        ):
            seen[e.unit] = float(p.get("metadata", {}).get("projected_monthly", 0.0))
    return seen


class CostGate(Gate):
    type = "cost"
    family = "cost"
    needs_prices = True

    def evaluate(self, ctx: GateContext) -> GateResult:
        costs = ctx.whole_platform().costs
        if costs is None:  # refused when the definitions load; a platform made otherwise
            raise ConfigError(
                "UD-CONFIG-COST",
                f"unit {ctx.unit.name}: gate {self.name!r} needs a price table",
                "give the platform a CostModel (resources/prices.yaml)",
            )
        b = ctx.unit.budget
        entry = ctx.ledger.latest(
            unit=ctx.unit.name,
            action=Candidate.ACTION,
            predicate=lambda e: e.version == ctx.version,
        )
        measured = (Candidate.read(entry).cost or {}) if entry else {}
        run_cost = float(measured.get("amount", 0.0))
        serving = serving_of(ctx)
        if serving and serving.size not in costs.prices.replica_hour:
            raise ConfigError(
                "UD-CONFIG-COST",
                f"unit {ctx.unit.name}: serving size {serving.size!r} has no price",
                f"use one of: {', '.join(costs.prices.replica_hour)}",
            )
        serving_month = costs.serving_month(serving.size, serving.replicas) if serving else 0.0
        monthly = run_cost * b.runs_per_month + serving_month
        cur = costs.currency
        meta = {
            "currency": cur,
            "run_cost": round(run_cost, 6),
            "usage": measured.get("usage", {}),
            "runs_per_month": b.runs_per_month,
            "serving_monthly": round(serving_month, 2),
            "projected_monthly": round(monthly, 2),
            **(
                {"serving": {"size": serving.size, "replicas": serving.replicas}} if serving else {}
            ),
        }
        problems: list[tuple[str, str]] = []
        if b.per_run is not None and run_cost > b.per_run:
            problems.append(
                (
                    "UD-GATE-COST-RUN",
                    f"a run cost {run_cost:.4f} {cur}, {run_cost - b.per_run:.4f} over the "
                    f"per-run budget of {b.per_run} {cur}",
                )
            )
        if b.per_month is not None and monthly > b.per_month:
            problems.append(
                (
                    "UD-GATE-COST-MONTH",
                    f"projected {monthly:.2f} {cur}/month, {monthly - b.per_month:.2f} over "
                    f"the unit's budget of {b.per_month} {cur}",
                )
            )
        team = costs.team_budget(ctx.unit.team)
        if team is not None:
            others = projected_by_unit(ctx.ledger, ctx.unit.team, ctx.unit.name)
            team_total = sum(others.values()) + monthly
            meta.update(
                team=ctx.unit.team,
                team_projected_monthly=round(team_total, 2),
                team_budget=team.per_month,
            )
            if team_total > team.per_month:
                problems.append(
                    (
                        "UD-GATE-COST-TEAM-BUDGET",
                        f"team {ctx.unit.team} would spend {team_total:.2f} {cur}/month, "
                        f"{team_total - team.per_month:.2f} over its budget of {team.per_month} "
                        f"{cur}",
                    )
                )
        if b.volume_per_month:
            per = b.volume_per_month if b.volume_unit == "gb" else b.volume_per_month / 1000
            unit_cost = monthly / per
            label = "per GB" if b.volume_unit == "gb" else f"per 1,000 {b.volume_unit}"
            meta.update(unit_cost=round(unit_cost, 6), unit_cost_label=label)
            if b.max_unit_cost is not None and unit_cost > b.max_unit_cost:
                problems.append(
                    (
                        "UD-GATE-COST-UNIT",
                        f"{unit_cost:.4f} {cur} {label}, {unit_cost - b.max_unit_cost:.4f} "
                        f"over the limit of {b.max_unit_cost}",
                    )
                )
        if problems:
            return GateResult(
                False,
                problems[0][0],
                "; ".join(p for _, p in problems),
                "reduce what the version uses (replicas, size, build time) or raise the budget "
                "with review",
                meta,
            )
        return GateResult(
            True,
            "UD-GATE-COST-OK",
            f"run {run_cost:.4f} {cur}, projected {monthly:.2f} {cur}/month",
            "",
            meta,
        )
