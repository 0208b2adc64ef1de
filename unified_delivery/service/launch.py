"""Starting promotions and rollbacks: a Dagster run with its grant recorded.

A run acts for the principal of the grant recorded here for its id (governance/grants.py);
its tags only say, for people reading the run list, who and why.
"""

from __future__ import annotations

import sys
import uuid
from typing import TYPE_CHECKING, Any, Callable

from ..errors import UDError
from ..governance import grants, tokens
from ..home import Home, project_root
from ..run_tags import ENV_TAG, PRINCIPAL_TAG, REASON_TAG, UNIT_TAG
from ..units import CANDIDATE
from .principals import identity

if TYPE_CHECKING:
    from ..platform import Platform
    from ..runner import RunOutcome, Selection
    from ..units import Unit


def unit_in(platform: Platform, unit_name: str, env: str) -> Unit:
    """The unit, refused with its code when it has no environment `env`."""
    unit = platform.unit(unit_name)
    if env not in unit.environments:
        raise UDError(
            "UD-UNKNOWN-ENV",
            f"{unit_name} has no environment {env!r}",
            f"use one of: {', '.join(unit.environments)}",
        )
    return unit


def check_ref(platform: Platform, unit: Unit, ref: str) -> None:
    """A candidate's --ref, refused here, before any run exists, when its kind can tell it is
    wrong (a data unit's undeclared dbt vars); the build checks again: a run may come from
    elsewhere."""
    platform.translator(unit).check_ref(unit, ref)


def granted_run(
    platform: Platform,
    principal: str,
    reason: str,
    unit: str,
    env: str,
    home: Home,
    *,
    job: str,
    run_config: dict,
) -> tuple[str, dict[str, str]]:
    """A new run id with its grant recorded (never in the tags), and the tags people read."""
    run_id = str(uuid.uuid4())
    grants.for_run(
        platform.ledger.ledger().engine,
        tokens.signing_key(home),
        principal,
        run_id=run_id,
        job=job,
        unit=unit,
        env=env,
        run_config=run_config,
    )
    return run_id, {
        PRINCIPAL_TAG: principal,
        REASON_TAG: reason or "",
        UNIT_TAG: unit,
        ENV_TAG: env,
    }


def promote(
    platform: Platform,
    defs: Any,
    unit_name: str,
    env: str,
    *,
    reason: str = "",
    ref: str = "",
    principal: str | None = None,
    home: Home | None = None,
    submit: bool = False,
    wait: bool = True,
    on_event: Callable[[Any], None] | None = None,
) -> RunOutcome:
    """Promote a unit to an environment as a Dagster run of the environment's job with the
    unit's own stages selected (promotions.py): build and gate a candidate (for the first
    environment) or re-run the gates on the one before, then deploy. Executed in this process,
    or submitted to the instance (`submit`): see _run."""
    from ..promotions import promotion
    from ..runner import Selection

    unit = unit_in(platform, unit_name, env)
    upstream = unit.previous_stage(env)
    # Nothing to promote is the caller's to fix, said before a run exists (the gates would
    # otherwise refuse the empty stage, exit 3, as if a version had failed them).
    if upstream != CANDIDATE and platform.target(unit, upstream).status(unit, upstream) is None:
        raise UDError(
            "UD-PROMOTE-NOTHING",
            f"{unit_name} has no {upstream} version to promote to {env}",
            f"promote it to {upstream} first: ud promote {unit_name} --to {upstream}",
        )
    run_config: dict = {}
    if upstream == CANDIDATE and ref:
        check_ref(platform, unit, ref)
        run_config = {"ops": {f"{unit_name}__candidate": {"config": {"ref": ref}}}}
    home = home or Home.current()
    chosen = promotion(platform, unit, env)
    grant = (principal or identity(platform, home=home), reason, unit_name, env)
    return _run(
        platform,
        defs,
        chosen.job,
        home,
        grant,
        run_config,
        submit,
        wait,
        on_event,
        Selection.of(chosen),
        chosen.tags(),
    )


def rollback(
    platform: Platform,
    defs: Any,
    unit_name: str,
    env: str,
    *,
    to: str = "",
    reason: str,
    principal: str | None = None,
    home: Home | None = None,
    submit: bool = False,
    wait: bool = True,
    on_event: Callable[[Any], None] | None = None,
) -> RunOutcome:
    """Return a unit in an environment to the previous (or the given) version as a Dagster run,
    executed or submitted as a promotion is."""
    if not reason.strip():
        raise UDError(
            "UD-USAGE", "a rollback needs a reason", "say why, e.g. --reason 'errors after deploy'"
        )
    unit_in(platform, unit_name, env)
    home = home or Home.current()
    config = {
        "ops": {
            "rollback_unit": {
                "config": {"unit": unit_name, "env": env, "to_version": to or "", "reason": reason}
            }
        }
    }
    grant = (principal or identity(platform, home=home), reason, unit_name, env)
    return _run(platform, defs, "ud_rollback", home, grant, config, submit, wait, on_event)


def _run(
    platform: Platform,
    defs: Any,
    job: str,
    home: Home,
    grant: tuple[str, str, str, str],
    run_config: dict,
    submit: bool,
    wait: bool,
    on_event: Callable[[Any], None] | None,
    selection: Selection | None = None,
    job_tags: dict[str, str] | None = None,
) -> RunOutcome:
    """The run granted to `grant` (principal, reason, unit, env), executed here (`submit=False`:
    the Python API, the demo), or submitted to the instance and, with `wait`, followed to its
    end (`ud promote`, `ud rollback`)."""
    from .. import runner

    def granted() -> tuple[str, dict[str, str]]:
        run_id, tags = granted_run(platform, *grant, home, job=job, run_config=run_config)
        return run_id, {**(job_tags or {}), **tags}

    run_id, tags = granted()
    engine = platform.ledger.ledger().engine
    if not submit:
        outcome = runner.execute(
            defs,
            job,
            home=home,
            run_config=run_config,
            tags=tags,
            run_id=run_id,
            lock_engine=engine,
            selection=selection,
        )
    else:
        run_id = runner.submit(
            project_root(),
            job,
            home=home,
            run_id=run_id,
            run_config=run_config,
            tags=tags,
            selection=selection,
            fresh_id=lambda: granted()[0],  # a launch tried again is a new run
        )
        if not wait:
            return runner.RunOutcome(run_id=run_id, success=False, pending=True)
        outcome = runner.watch(run_id, home=home, on_event=on_event)
    notify(platform, home)
    return outcome


NOTIFY_BUDGET_S = 5.0


def notify(platform: Platform, home: Home) -> None:
    """Tell what the run recorded, along the platform's routes, for at most NOTIFY_BUDGET_S:
    what cannot be sent now (a receiver down) is retried by the next call or the ud_notify
    sensor. Never fails the command: the outcome of every attempt is in the ledger."""
    if not platform.notifications.file.routes:
        return
    from ..notifications import deliver

    try:
        deliver(platform, home=home, budget_s=NOTIFY_BUDGET_S)
    except Exception as exc:  # a broken notifier is reported, never the promotion's failure
        print(f"ud: notifications not delivered: {type(exc).__name__}: {exc}", file=sys.stderr)
