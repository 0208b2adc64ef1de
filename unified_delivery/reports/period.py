"""The time window a report covers: `since` inclusive, `until` exclusive, UTC."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

DEFAULT_DAYS = 30


@dataclass(frozen=True)
class Window:
    since: datetime
    until: datetime

    @property
    def days(self) -> float:
        return (self.until - self.since).total_seconds() / 86400

    def holds(self, ts: str) -> bool:
        return self.since <= parse_ts(ts) < self.until

    def to_dict(self) -> dict:
        return {
            "since": self.since.isoformat(),
            "until": self.until.isoformat(),
            "days": round(self.days, 3),
        }


def parse_ts(value: str) -> datetime:
    when = datetime.fromisoformat(value)
    return when if when.tzinfo else when.replace(tzinfo=timezone.utc)


def window(
    since: datetime | None = None, until: datetime | None = None, days: float = DEFAULT_DAYS
) -> Window:
    """`days` before `until` (default now) unless `since` is given."""
    until = until or datetime.now(timezone.utc)
    return Window(since or until - timedelta(days=days), until)
