"""Data diff: before a data product is published, its audited candidate is compared with what
the guarded environment publishes now, row by row on a key: rows added, removed and changed,
the change rate of each column, and the columns added or dropped. Thresholds turn the diff
into a refusal; without them it only reports (the summary is in the gate's metadata and in
`ud gates`).

    - type: data-diff
      settings:
        table: customer_features   # default: the unit's name
        key: [customer_id]
        max_removed: 0.0           # rates of the published rows
        max_changed: 0.2
        max_column_change: {tenure_days: 0.05}

dbt's slim CI and Datafold's data diff compare by key the same way. The two sides are read
whole (pandas), which suits tables up to `max_rows` (a million by default); a larger one is
refused by name rather than diffed slowly.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import Field

from ..errors import UDError
from ..targets.roles import Warehouse
from .base import Gate, GateContext, GateResult, GateSettings

if TYPE_CHECKING:
    import pandas as pd

Rate = Field(default=None, ge=0, le=1)


class DataDiffSettings(GateSettings):
    table: str | None = Field(default=None, description="the model to compare; default: unit")
    key: list[str] = Field(min_length=1, description="the columns that identify a row")
    columns: list[str] | None = Field(
        default=None, description="the columns compared; default: every shared non-key column"
    )
    max_added: float | None = Field(default=None, ge=0, description="added rows / published")
    max_removed: float | None = Rate
    max_changed: float | None = Rate
    max_column_change: dict[str, float] = Field(
        default_factory=dict, description="per column: changed values / matched rows, 0 to 1"
    )
    max_rows: int = Field(default=1_000_000, ge=1, le=50_000_000)


class DataDiffGate(Gate[DataDiffSettings]):
    type = "data-diff"
    family = "data-quality"
    kinds = ("data",)
    needs = (Warehouse,)
    Settings = DataDiffSettings

    def evaluate(self, ctx: GateContext) -> GateResult:
        table = self.settings.table or ctx.unit.name
        published = self._published(ctx, table)
        if published is None:
            return GateResult(
                True,
                "UD-GATE-DIFF-OK",
                f"nothing is published to {ctx.guards} yet: no diff for {table}",
                "",
                {"table": table, "published": False},
            )
        candidate = self._candidate(ctx, table)
        summary = diff(candidate, published, self.settings, table)
        exceeded = self._exceeded(summary)
        meta = {"table": table, "against": ctx.guards, **summary}
        text = (
            f"{table} against {ctx.guards}: {summary['added']} added, {summary['removed']} "
            f"removed, {summary['changed']} changed of {summary['published_rows']} rows"
        )
        if exceeded:
            return GateResult(
                False,
                "UD-GATE-DIFF-EXCEEDED",
                f"{text}; over the limits: {'; '.join(exceeded)}",
                "check the change is intended; if it is, raise the gate's thresholds in a "
                "reviewed change of the unit",
                {**meta, "exceeded": exceeded},
            )
        return GateResult(True, "UD-GATE-DIFF-OK", text, "", meta)

    def _published(self, ctx: GateContext, table: str) -> pd.DataFrame | None:
        warehouse = ctx.role(Warehouse)
        if ctx.target_in(ctx.guards).status(ctx.unit, ctx.guards) is None:
            return None
        try:
            return warehouse.read(ctx.unit, ctx.guards, table)  # type: ignore[arg-type]
        except Exception as exc:
            raise UDError(
                "UD-GATE-DIFF-ERROR",
                f"unit {ctx.unit.name}: {table} as {ctx.guards} publishes it cannot be read: "
                f"{type(exc).__name__}: {str(exc)[:200]}",
                "check the table is part of the unit's selection",
            ) from None

    def _candidate(self, ctx: GateContext, table: str) -> pd.DataFrame:
        if ctx.artifact is not None and ctx.artifact.location:
            import pandas as pd
            import sqlalchemy as sa

            from .data_quality import connection

            url, kwargs = connection(ctx)
            engine = sa.create_engine(url, **kwargs)
            schema = ctx.artifact.location
            try:
                with engine.connect() as conn:
                    rel = sa.table(table, schema=schema)
                    count = conn.execute(sa.select(sa.func.count()).select_from(rel)).scalar_one()
                    self._fits(ctx, table, count)
                    return pd.read_sql(sa.select(sa.text("*")).select_from(rel), conn)
            except UDError:
                raise
            except Exception as exc:
                raise UDError(
                    "UD-GATE-DIFF-ERROR",
                    f"unit {ctx.unit.name}: {schema}.{table} cannot be read from the candidate: "
                    f"{type(exc).__name__}: {str(exc)[:200]}",
                    "check the table is part of the unit's selection",
                ) from None
            finally:
                engine.dispose()
        # A gate on a later stage: the version that stage publishes.
        frame = ctx.role(Warehouse).read(ctx.unit, ctx.stage, table)  # type: ignore[arg-type]
        self._fits(ctx, table, len(frame))
        return frame

    def _fits(self, ctx: GateContext, table: str, rows: int) -> None:
        if rows > self.settings.max_rows:
            raise UDError(
                "UD-GATE-DIFF-ERROR",
                f"unit {ctx.unit.name}: {table} has {rows} rows, more than the gate's max_rows "
                f"({self.settings.max_rows}) it diffs in memory",
                "raise max_rows in the gate's settings, or diff a narrower table",
            )

    def _exceeded(self, summary: dict[str, Any]) -> list[str]:
        s, out = self.settings, []
        for name, limit in (
            ("added", s.max_added),
            ("removed", s.max_removed),
            ("changed", s.max_changed),
        ):
            rate = summary[f"{name}_rate"]
            if limit is not None and rate > limit:
                out.append(f"{name} {rate:.1%} > {limit:.1%}")
        for column, limit in s.max_column_change.items():
            rate = summary["column_change"].get(column)
            if rate is not None and rate > limit:
                out.append(f"{column} changed in {rate:.1%} of rows > {limit:.1%}")
        return out


def diff(
    candidate: pd.DataFrame, published: pd.DataFrame, settings: DataDiffSettings, table: str
) -> dict[str, Any]:
    """The key-based diff of two frames, as plain numbers (what the gate's metadata holds)."""
    import pandas as pd

    key = settings.key
    for side, frame in (("candidate", candidate), ("published", published)):
        missing = [k for k in key if k not in frame.columns]
        if missing:
            raise UDError(
                "UD-GATE-DIFF-ERROR",
                f"{table}: the {side} has no key column {missing[0]!r}",
                f"name key columns of {table}: {', '.join(map(str, frame.columns))}",
            )
        if frame.duplicated(subset=key).any():
            raise UDError(
                "UD-GATE-DIFF-ERROR",
                f"{table}: the key {key} is not unique in the {side}",
                "give the gate a key that identifies one row",
            )
    shared = [c for c in candidate.columns if c in published.columns and c not in key]
    compared = [c for c in (settings.columns or shared) if c in shared]
    merged = candidate[key + compared].merge(
        published[key + compared], on=key, how="outer", suffixes=("__new", "__old"), indicator=True
    )
    both = merged[merged["_merge"] == "both"]
    added = int((merged["_merge"] == "left_only").sum())
    removed = int((merged["_merge"] == "right_only").sum())
    changes: dict[str, float] = {}
    any_change = pd.Series(False, index=both.index)
    for column in compared:
        new, old = both[f"{column}__new"], both[f"{column}__old"]
        differs = (new != old) & ~(pd.isna(new) & pd.isna(old))
        any_change |= differs
        changes[column] = round(float(differs.mean()), 6) if len(both) else 0.0
    base = max(len(published), 1)
    changed = int(any_change.sum())
    return {
        "candidate_rows": len(candidate),
        "published_rows": len(published),
        "added": added,
        "removed": removed,
        "changed": changed,
        "added_rate": round(added / base, 6),
        "removed_rate": round(removed / base, 6),
        "changed_rate": round(changed / base, 6),
        "column_change": changes,
        "columns_added": [c for c in candidate.columns if c not in published.columns],
        "columns_removed": [c for c in published.columns if c not in candidate.columns],
    }
