"""Desired and actual state: the ledger says what each environment should run (its last
promotion or rollback), each target says what it runs. They differ when something changed an
environment outside the platform; such a version never counts as deployed, and nothing is
promoted out of an environment that is out of sync until it is resolved (put back through
`ud rollback`, or replaced by a promotion through the platform)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..errors import EXIT_GATE, UDError
from ..events import CHANGES, Drift, record

if TYPE_CHECKING:
    from ..ledger import Ledger, LedgerEntry
    from ..platform import Platform
    from ..targets.base import Deployment
    from ..units import Unit


@dataclass(frozen=True)
class EnvState:
    """One environment of one unit: the platform's record beside the target's answer."""

    recorded: LedgerEntry | None  # the last promotion or rollback there
    actual: Deployment | None

    @property
    def recorded_version(self) -> str | None:
        return self.recorded.version if self.recorded else None

    @property
    def actual_version(self) -> str | None:
        return self.actual.version if self.actual else None

    @property
    def in_sync(self) -> bool:
        return self.recorded_version == self.actual_version


def recorded_changes(ledger: Ledger) -> dict[tuple[str, str], LedgerEntry]:
    """The last promotion or rollback of every unit and environment (one query)."""
    return ledger.latest_by_place(CHANGES)


def state_of(
    platform: Platform, ledger: Ledger, unit: Unit, env: str, recorded: LedgerEntry | None = None
) -> EnvState:
    if recorded is None:
        recorded = ledger.latest(unit=unit.name, env=env, action=CHANGES)
    return EnvState(recorded, platform.target(unit, env).status(unit, env))


def settled_state(platform: Platform, ledger: Ledger, unit: Unit, env: str) -> EnvState | None:
    """The state of `env` while no deploy of the unit there is under way (its deploy lock is
    held for the moment of reading); None when one is: a target midway through a switch is
    not drift."""
    from ..home import Home
    from .locks import unless_busy

    with unless_busy(Home.current(), unit, env) as free:
        return state_of(platform, ledger, unit, env) if free else None


def note_drift(
    ledger: Ledger, unit: Unit, env: str, state: EnvState, *, principal: str, noticed_by: str
) -> LedgerEntry | None:
    """Record the drift unless this very difference was recorded already (once per change: a
    new promotion or rollback there, or another actual version, is a new one)."""
    if state.in_sync:
        return None
    last = ledger.latest(unit=unit.name, env=env, action=(*CHANGES, Drift.ACTION))
    if (
        last is not None
        and last.action == Drift.ACTION
        and last.payload.get("actual_version") == state.actual_version
        and last.payload.get("recorded_version") == state.recorded_version
    ):
        return None
    return record(
        ledger,
        Drift(
            recorded_version=state.recorded_version,
            actual_version=state.actual_version,
            noticed_by=noticed_by,
        ),
        principal=principal,
        unit=unit.name,
        env=env,
        version=state.actual_version,
    )


def drift_error(unit: Unit, env: str, state: EnvState) -> UDError:
    recorded, actual = state.recorded_version, state.actual_version
    runs = f"runs {actual[:12]}" if actual else "runs nothing"
    put_back = (
        f"put {recorded[:12]} back (ud rollback {unit.name} --env {env} --to {recorded} "
        "--reason ...)"
        if recorded
        else f"deploy it through the platform (ud promote {unit.name} --to {env})"
    )
    return UDError(
        "UD-DRIFT",
        f"{unit.name} in {env} {runs}, but the platform deployed "
        f"{recorded[:12] if recorded else 'nothing'} there: it was changed outside the platform",
        f"{put_back}, or promote a version to {env} through the platform; nothing is promoted "
        f"out of {env} until it is in sync",
        exit_code=EXIT_GATE,
    )
