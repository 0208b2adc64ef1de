"""What a materialisation used, what that costs, and what a unit will cost per month.

`measure()` samples the process and its children while a build or deploy runs (CPU
seconds from getrusage, peak resident memory from psutil, wall time; GPU seconds when
`nvidia-smi` reports a GPU, else 0). A price table (resources/prices.yaml) turns use into
money; team budgets per month live next to it.
"""

from __future__ import annotations

import resource
import shutil
import subprocess
import threading
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Annotated, Iterator

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator

HOURS_PER_MONTH = 730
# ISO 4217 codes this platform accepts; there are no exchange rates, so a budget must be in
# the price table's currency.
CURRENCIES = {
    "USD",
    "EUR",
    "GBP",
    "CHF",
    "JPY",
    "CAD",
    "AUD",
    "SEK",
    "NOK",
    "DKK",
    "PLN",
    "INR",
    "CNY",
    "BRL",
}


def check_currency(value: str) -> str:
    if value not in CURRENCIES:
        raise ValueError(
            f"{value!r} is not a known currency (one of {', '.join(sorted(CURRENCIES))})"
        )
    return value


Currency = Annotated[str, AfterValidator(check_currency)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Prices(Strict):
    currency: Currency = "USD"
    cpu_hour: float = Field(ge=0)
    gb_hour: float = Field(ge=0)
    gpu_hour: float = Field(ge=0)
    replica_hour: dict[str, float] = Field(
        default_factory=dict
    )  # serving size -> price per replica-hour

    @field_validator("replica_hour")
    @classmethod
    def _non_negative(cls, v: dict[str, float]) -> dict[str, float]:
        bad = [k for k, p in v.items() if p < 0]
        if bad:
            raise ValueError(f"negative price for size {bad[0]!r}")
        return v


class TeamBudget(Strict):
    per_month: float = Field(ge=0)
    currency: Currency = "USD"


class CostFile(Strict):
    prices: Prices
    teams: dict[str, TeamBudget] = Field(default_factory=dict)


@dataclass(frozen=True)
class Usage:
    cpu_seconds: float
    peak_memory_mb: float
    wall_seconds: float
    gpu_seconds: float = 0.0

    def to_dict(self) -> dict:
        return {k: round(v, 3) for k, v in asdict(self).items()}


class CostModel:
    def __init__(self, costs: CostFile, source: str = "(built in)"):
        self.file = costs
        self.source = source

    @classmethod
    def from_file(cls, path: Path) -> "CostModel":
        from .settings_files import read_settings

        costs = read_settings(
            path,
            CostFile,
            code="UD-CONFIG-COST",
            keys="prices, teams",
            remedy="fix the price table",
            field_remedy="fix the price table or budget",
        )
        return cls(costs, str(path))

    @property
    def prices(self) -> Prices:
        return self.file.prices

    @property
    def currency(self) -> str:
        return self.prices.currency

    def run_cost(self, usage: Usage) -> float:
        p = self.prices
        return (
            usage.cpu_seconds / 3600 * p.cpu_hour
            + usage.peak_memory_mb / 1024 * usage.wall_seconds / 3600 * p.gb_hour
            + usage.gpu_seconds / 3600 * p.gpu_hour
        )

    def serving_month(self, size: str, replicas: int) -> float:
        return self.prices.replica_hour[size] * replicas * HOURS_PER_MONTH

    def team_budget(self, team: str) -> TeamBudget | None:
        return self.file.teams.get(team)


def _gpu_busy() -> bool:
    if not shutil.which("nvidia-smi"):
        return False
    out = subprocess.run(
        ["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits"],
        capture_output=True,
        text=True,
        timeout=5,
    )
    return out.returncode == 0 and any(
        line.strip() not in ("", "0") for line in out.stdout.splitlines()
    )


@contextmanager
def measure(interval_s: float = 0.1) -> Iterator[dict]:
    """Measure the block; the yielded dict gets `usage` (a Usage) when the block ends."""
    import psutil

    me = psutil.Process()
    peak = [0]
    gpu = [0.0]
    done = threading.Event()
    has_gpu = bool(shutil.which("nvidia-smi"))

    def sample() -> None:
        while not done.is_set():
            rss = me.memory_info().rss
            for child in me.children(recursive=True):
                try:
                    rss += child.memory_info().rss
                except psutil.Error:  # a child that ended between listing and reading
                    continue
            peak[0] = max(peak[0], rss)
            if has_gpu and _gpu_busy():
                gpu[0] += interval_s
            done.wait(interval_s)

    before = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    box: dict = {}
    try:
        yield box
    finally:
        done.set()
        thread.join()
        after = (
            resource.getrusage(resource.RUSAGE_SELF),
            resource.getrusage(resource.RUSAGE_CHILDREN),
        )
        cpu = sum(
            (a.ru_utime + a.ru_stime) - (b.ru_utime + b.ru_stime) for a, b in zip(after, before)
        )
        box["usage"] = Usage(
            cpu_seconds=cpu,
            peak_memory_mb=peak[0] / 2**20,
            wall_seconds=time.monotonic() - started,
            gpu_seconds=gpu[0],
        )
