"""What `ud new KIND NAME` asks of a kind: its template folder (files whose paths and text
have `@@key@@` placeholders), the owner team by default, and the values of its placeholders.
Writing the files, all or none, is scaffold/'s job."""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.resources.abc import Traversable
from pathlib import Path

SAMPLE_COLUMNS = ["x1", "x2", "x3", "x4"]


@dataclass(frozen=True)
class NewUnit:
    """One `ud new` request: the platform repository, the unit, and the options some kinds take."""

    root: Path
    name: str
    team: str
    trains_on: str | None = None  # model: the data unit it trains on
    label: str | None = None  # model: the column it predicts
    serves: str | None = None  # app: the model unit it serves


@dataclass(frozen=True)
class Filled:
    """A kind's answer to a request: its placeholders' values (besides name and team), the
    files it adds to the template's (relative path -> text), and what to do next."""

    values: dict[str, str] = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)
    next_steps: list[str] = field(default_factory=list)


def only_promote(request: NewUnit) -> Filled:
    """A kind whose template needs no more than the name and the team."""
    return Filled(next_steps=[f"ud promote {request.name} --to staging"])


@dataclass(frozen=True)
class Scaffold:
    template: Traversable
    team: str  # the owner team when `--team` is not given
    fill: Callable[[NewUnit], Filled] = only_promote


def sample_rows(name: str, *, with_id: bool, n: int = 600) -> str:
    """Reproducible rows with a learnable label, to start from (seeded by the unit name)."""
    rng = random.Random(int(hashlib.sha256(name.encode()).hexdigest()[:8], 16))
    head = (["id"] if with_id else []) + SAMPLE_COLUMNS + ["label"]
    lines = [",".join(head)]
    for i in range(n):
        xs = [round(rng.gauss(0, 1), 4) for _ in SAMPLE_COLUMNS]
        score = 1.5 * xs[0] - 1.0 * xs[1] + 0.5 * xs[2] + rng.gauss(0, 1)
        row = ([str(i + 1)] if with_id else []) + [str(x) for x in xs] + [str(int(score > 0))]
        lines.append(",".join(row))
    return "\n".join(lines) + "\n"
