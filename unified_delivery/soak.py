"""Monitors after deploy: a unit's `monitor:` block and its soak window.

For `soak` after each deploy to the monitored environment (production by default), the
target's health also holds what runs there to the unit's monitor: a model's feature and
prediction drift against its training hold-out (kinds/model/monitor.py), a data product's
row count and freshness (kinds/data/monitor.py). The health sensor (triggers/health.py) polls
units in soak and rolls a breach back through the target at once, with the evidence in a
`monitor-breach` ledger entry.

    monitor:
      soak: 30m                      # 30s, 2h, or seconds; the window after each deploy
      max_feature_psi: 0.2           # model: population stability index per feature ...
      max_prediction_psi: 0.2        # ... and of the predictions, vs the training hold-out
      min_samples: 200               # served predictions before drift is judged
    monitor:
      soak: 2h
      min_rows: 1000                 # data: rows the published table has at least
      max_row_change: 0.2            # |rows - previous published version's| / previous
      freshness_column: updated_at   # and its newest value at most max_age old
      max_age: 26h

The window starts at the deploy time the target records (MLflow's `ud.<env>.deployed_at`
tag, the warehouse's deployments table), which the ledger's promotion agrees with.
Importable without Dagster, MLflow or dbt: `ud status` reads the soak from the catalog.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from .errors import ConfigError

if TYPE_CHECKING:
    from .targets.records import Deployment
    from .units import Unit

DURATION_RE = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m|h|d)?$")
DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
MAX_SOAK_S = 30 * 86400


def seconds(value: float | str) -> float:
    """A duration (`30s`, `2m`, `1h`, `1d` or a number of seconds) in seconds."""
    m = DURATION_RE.match(str(value).strip())
    if not m:
        raise ValueError(f"{value!r} is not a duration: write 30s, 2m, 1h or a number of seconds")
    return float(m.group(1)) * DURATION_UNITS[m.group(2) or "s"]


MODEL_FIELDS = frozenset({"max_feature_psi", "max_prediction_psi", "min_samples", "bins"})
DATA_FIELDS = frozenset({"table", "min_rows", "max_row_change", "freshness_column", "max_age"})


class MonitorSpec(BaseModel):
    """What holds a unit's environment to account for `soak` after each deploy."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    soak: float | str = Field(
        default="30m", description="how long after each deploy the monitor runs: 30m, 2h, 1d"
    )
    env: str | None = Field(
        default=None, description="the monitored environment (default: the last one)"
    )
    # models
    max_feature_psi: float | None = Field(
        default=0.2,
        gt=0,
        le=100,
        description="model: highest population stability index of a served feature against "
        "the training hold-out",
    )
    max_prediction_psi: float | None = Field(
        default=0.2,
        gt=0,
        le=100,
        description="model: highest PSI of the served predictions against the hold-out's",
    )
    min_samples: int = Field(
        default=200,
        ge=1,
        le=1_000_000,
        description="model: served predictions before drift is judged (PSI's noise on n samples "
        "and 10 bins is about 9/n)",
    )
    bins: int = Field(default=10, ge=2, le=100, description="model: quantile bins of the PSI")
    # data
    table: str | None = Field(default=None, description="data: the table (default: the unit's)")
    min_rows: int | None = Field(default=None, ge=0, description="data: fewest rows published")
    max_row_change: float | None = Field(
        default=None,
        ge=0,
        le=100,
        description="data: highest |rows - previous version's rows| / previous version's rows",
    )
    freshness_column: str | None = Field(
        default=None, description="data: a timestamp column whose newest value must be recent"
    )
    max_age: float | str | None = Field(
        default=None, description="data: how old freshness_column's newest value may be: 26h"
    )

    @field_validator("soak")
    @classmethod
    def _soak(cls, v: float | str) -> float | str:
        if not 0 < seconds(v) <= MAX_SOAK_S:
            raise ValueError("a soak is between 0 and 30 days")
        return v

    @field_validator("max_age")
    @classmethod
    def _age(cls, v: float | str | None) -> float | str | None:
        if v is not None and not seconds(v) > 0:
            raise ValueError("max_age is a positive duration")
        return v

    @property
    def soak_s(self) -> float:
        return seconds(self.soak)

    @property
    def max_age_s(self) -> float | None:
        return seconds(self.max_age) if self.max_age is not None else None


def monitored_env(unit: Unit) -> str | None:
    spec = getattr(unit, "monitor", None)
    if spec is None:
        return None
    return spec.env or unit.environments[-1]


def check(unit: Unit) -> None:
    """Refuse at load what the unit's monitor cannot mean for its kind (UD-CONFIG-MONITOR)."""
    spec: MonitorSpec | None = getattr(unit, "monitor", None)
    if spec is None:
        return

    def refuse(problem: str, remediation: str) -> None:
        raise ConfigError(
            "UD-CONFIG-MONITOR", f"unit {unit.name}: field monitor: {problem}", remediation
        )

    env = monitored_env(unit)
    if env not in unit.environments:
        refuse(
            f"env {env!r} is not one of its environments",
            f"use one of: {', '.join(unit.environments)}",
        )
    given = spec.model_fields_set
    if unit.kind == "model":
        other = sorted(given & DATA_FIELDS)
        if other:
            refuse(f"{', '.join(other)} watch a data product, not a model", "drop them")
    elif unit.kind == "data":
        other = sorted(given & MODEL_FIELDS)
        if other:
            refuse(f"{', '.join(other)} watch a model, not a data product", "drop them")
        if (spec.freshness_column is None) != (spec.max_age is None):
            refuse(
                "freshness_column and max_age go together",
                "give both (the column, and how old its newest value may be), or neither",
            )
        if spec.min_rows is None and spec.max_row_change is None and spec.max_age is None:
            refuse(
                "it checks nothing",
                "give min_rows, max_row_change, or freshness_column and max_age",
            )
    else:
        refuse(
            f"a {unit.kind} unit has no monitor of this kind",
            "an app is held to its canary's bounds after deploy by rollout.monitor_s "
            "(docs/canary.md)",
        )


def parse_time(iso: str | None) -> datetime | None:
    if not iso:
        return None
    try:
        at = datetime.fromisoformat(iso)
    except ValueError:
        return None
    return at if at.tzinfo else at.replace(tzinfo=UTC)


@dataclass(frozen=True)
class Window:
    """The soak of one deploy: from its deploy time for the unit's soak."""

    env: str
    version: str
    started: datetime
    until: datetime

    def active(self, now: datetime | None = None) -> bool:
        return (now or datetime.now(UTC)) < self.until

    def to_dict(self) -> dict[str, Any]:
        return {
            "env": self.env,
            "version": self.version,
            "started": self.started.isoformat(),
            "until": self.until.isoformat(),
        }


def window(unit: Unit, env: str, dep: Deployment | None, action: str = "deploy") -> Window | None:
    """The soak window of what `env` runs, when the unit monitors `env` (active or over). A
    version reached by a rollback (`action`, as the target recorded it) has none: it is the
    one that ran before the deploy that broke, not a new deploy."""
    spec: MonitorSpec | None = getattr(unit, "monitor", None)
    if spec is None or dep is None or monitored_env(unit) != env or action == "rollback":
        return None
    started = parse_time(dep.deployed_at)
    if started is None:
        return None
    from datetime import timedelta

    return Window(env, dep.version, started, started + timedelta(seconds=spec.soak_s))


def soak_until(deployed_at: str | None, soak_s: float, now: datetime | None = None) -> str | None:
    """When a deploy at `deployed_at` leaves its soak, if it has not yet (for `ud status`)."""
    from datetime import timedelta

    started = parse_time(deployed_at)
    if started is None:
        return None
    until = started + timedelta(seconds=soak_s)
    return until.isoformat() if (now or datetime.now(UTC)) < until else None


@dataclass(frozen=True)
class Verdict:
    """One look at a unit in soak: `breached` with the reasons, or within bounds (or not
    judged yet), with the evidence either way (PSI per feature, row counts)."""

    breached: bool
    message: str
    evidence: dict[str, Any] = field(default_factory=dict)
