"""Completing the record of a deploy whose run died between changing the target and writing
the outcome: the intent (`deploy-started`, `rollback-started`) is in the ledger, the
outcome is not. The target's actual state says what happened: it runs the version the
intent named (a `promotion` or `rollback`, marked recovered) or it does not (a
`deploy-failed` or `rollback-failed`, marked recovered). Only an intent whose lock is free
is completed: a held lock is a deploy still under way."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from ..events import (
    INTENTS,
    OUTCOMES,
    DeployFailed,
    DeployStarted,
    Promotion,
    Rollback,
    RollbackFailed,
    RollbackStarted,
    record,
)

if TYPE_CHECKING:
    from ..ledger import Ledger, LedgerEntry
    from ..platform import Platform
    from ..units import Unit

INTERRUPTED = "UD-DEPLOY-INTERRUPTED"


def open_intent(ledger: Ledger, unit: Unit, env: str) -> LedgerEntry | None:
    """The newest intent for `unit` in `env`, if no outcome of its run follows it. Older ones
    were completed by the run that recorded the newer (it recovered first)."""
    intent = ledger.latest(
        unit=unit.name,
        env=env,
        action=INTENTS,
    )
    if intent is None:
        return None
    run_id = intent.payload.get("run_id")
    done = ledger.latest(
        unit=unit.name,
        env=env,
        predicate=lambda e: (
            e.seq > intent.seq and e.action in OUTCOMES and e.payload.get("run_id") == run_id
        ),
    )
    return None if done is not None else intent


def recover(ledger: Ledger, platform: Platform, unit: Unit, env: str) -> LedgerEntry | None:
    """Complete the open intent of `unit` in `env` from the target; the caller holds its lock."""
    intent = open_intent(ledger, unit, env)
    if intent is None:
        return None
    dep = platform.target(unit, env).status(unit, env)
    actual = dep.version if dep else None
    where = {"principal": intent.principal, "unit": unit.name, "env": env}
    if intent.action == DeployStarted.ACTION:
        started = DeployStarted.read(intent)
        if actual == started.to_version:
            return record(
                ledger,
                Promotion(
                    from_version=started.from_version,
                    reason="recovered: the deploying run died after the target switched",
                    run_id=started.run_id,
                    team=unit.team,
                    kind=unit.kind,
                    recovered=True,
                ),
                version=actual,
                **where,
            )
        return record(
            ledger,
            DeployFailed(
                code=INTERRUPTED,
                message=f"the deploying run died before {env} ran "
                f"{started.to_version[:12]}; it runs {actual or 'nothing'}",
                stayed_on=actual,
                run_id=started.run_id,
                recovered=True,
            ),
            version=started.to_version,
            **where,
        )
    back = RollbackStarted.read(intent)
    if actual == back.to_version:
        return record(
            ledger,
            Rollback(
                from_version=back.from_version,
                reason=back.reason,
                run_id=back.run_id,
                team=unit.team,
                kind=unit.kind,
                consumers=platform.consumers(unit.name),
                recovered=True,
            ),
            version=actual,
            **where,
        )
    return record(
        ledger,
        RollbackFailed(
            code=INTERRUPTED,
            message=f"the rollback's run died before {env} ran "
            f"{back.to_version[:12]}; it runs {actual or 'nothing'}",
            reason=back.reason,
            run_id=back.run_id,
            recovered=True,
        ),
        version=back.to_version,
        **where,
    )


def unfinished(ledger: Ledger) -> list[tuple[str, str]]:
    """The places (unit, environment) whose newest intent no outcome of its run follows."""
    # Two queries, whatever the history's length: the newest intent and the newest outcome of
    # each place. An intent whose own run recorded the newest outcome there is finished; any
    # other is looked at closely by `recover` (open_intent).
    outcomes = ledger.latest_by_place(OUTCOMES)
    return [
        place
        for place, intent in ledger.latest_by_place(INTENTS).items()
        if (outcome := outcomes.get(place)) is None
        or outcome.seq < intent.seq
        or outcome.payload.get("run_id") != intent.payload.get("run_id")
    ]


def to_recover(ledger: Ledger, units: Iterable[str]) -> list[tuple[str, str]]:
    """The unfinished places of these units whose deploy is not under way (its lock is free now):
    what `recover_all` would complete. Needs no platform, so a reader of the record knows
    whether it must load one."""
    from ..home import Home
    from .locks import deploy_under_way

    home, known = Home.current(), set(units)
    return [
        (name, env)
        for name, env in unfinished(ledger)
        if name in known and not deploy_under_way(home, name, env)
    ]


def recover_all(ledger: Ledger, platform: Platform) -> list[LedgerEntry]:
    """Complete every open intent whose deploy is not under way (its lock is free)."""
    from ..home import Home
    from .locks import unless_busy

    done = []
    home = Home.current()
    for name, env in unfinished(ledger):
        unit = platform.units.get(name)
        if unit is None:
            continue
        with unless_busy(home, unit, env) as free:
            if free and (entry := recover(ledger, platform, unit, env)) is not None:
                done.append(entry)
    return done
