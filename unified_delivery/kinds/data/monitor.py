"""The monitor of a data product in soak: its row count (at least `min_rows`, within
`max_row_change` of what the previous published version had) and its freshness (the newest
`freshness_column` value at most `max_age` old), judged against the unit's `monitor:` bounds
(soak.py). Called by the warehouse's health (targets/dbt_wap.py) while the version is in
soak; the warehouse reads, this judges."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any

from ...errors import UDError
from ...soak import Verdict, Window

if TYPE_CHECKING:
    from ...targets.dbt_wap import DbtWapTarget
    from ...targets.records import Deployment
    from .unit import DataUnit


def _as_time(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=UTC)
    if isinstance(value, str):
        try:
            return _as_time(datetime.fromisoformat(value))
        except ValueError:
            return None
    return None


def check(warehouse: DbtWapTarget, unit: DataUnit, window: Window, dep: Deployment) -> Verdict:
    spec = unit.monitor
    assert spec is not None  # only a unit with a monitor has a window
    table = spec.table or unit.name
    facts = warehouse.table_facts(window.env, table, dep.previous_version, spec.freshness_column)
    rows, previous = facts["rows"], facts["previous_rows"]
    evidence: dict[str, Any] = {
        "soak_until": window.until.isoformat(),
        "table": table,
        "rows": rows,
        "previous_version": dep.previous_version,
        "previous_rows": previous,
    }
    over = []
    if spec.min_rows is not None and rows < spec.min_rows:
        over.append(f"{table} has {rows} rows, fewer than min_rows {spec.min_rows}")
    if spec.max_row_change is not None and previous:
        change = abs(rows - previous) / previous
        evidence["row_change"] = round(change, 6)
        if change > spec.max_row_change:
            over.append(
                f"{table} has {rows} rows against {previous} in {dep.previous_version}: a "
                f"{change:.1%} change, above max_row_change {spec.max_row_change:.1%}"
            )
    if spec.freshness_column is not None:
        column = spec.freshness_column
        if column not in facts["columns"]:
            raise UDError(
                "UD-MONITOR-FRESHNESS-COLUMN",
                f"unit {unit.name}: monitor.freshness_column {column!r} is not a column of "
                f"{window.env}.{table}",
                f"name one of its columns: {', '.join(facts['columns']) or 'none'}",
            )
        newest = _as_time(facts["newest"])
        age = (datetime.now(UTC) - newest).total_seconds() if newest else None
        evidence.update(newest=newest.isoformat() if newest else None, age_s=age)
        limit = spec.max_age_s or 0.0
        if age is None or age > limit:
            seen = f"{age / 3600:.1f} h old" if age is not None else "empty"
            over.append(
                f"{table}.{column}'s newest value is {seen}, older than max_age {spec.max_age}"
            )
    until = window.until.isoformat(timespec="seconds")
    if over:
        evidence["breaches"] = over
        return Verdict(True, "; ".join(over), evidence)
    return Verdict(
        False,
        f"in soak until {until}: {table} {rows} rows"
        + (f" ({previous} before)" if previous is not None else ""),
        evidence,
    )
