"""The rollback op: back to a version the environment ran, through the gates that bind a
rollback (who acts, quotas, freezes); a version new to the environment (what the one before
it runs) through every gate guarding it, as a promotion."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import dagster as dg

from .. import tracing
from ..errors import EXIT_GATE, GateRefused, NotPermitted, TargetError, UDError
from ..events import CHANGES, Rollback, RollbackFailed, RollbackStarted, record
from ..home import Home
from ..reports.scorecard import gate_summary
from ..units import CANDIDATE
from .gating import active_override, evaluate_gate, gate_results, passed_or_overridden
from .locks import env_lock, release_for_run
from .recovery import recover
from .steps import (
    as_target_error,
    failure,
    metadata_value,
    principal_of,
    refusal,
)

if TYPE_CHECKING:
    from ..ledger import Ledger
    from ..platform import Platform
    from ..targets.base import Deployment
    from ..units import Unit


def ran_in(ledger: Ledger, unit: Unit, env: str) -> set[str]:
    """The versions the ledger says `env` ran: promoted or rolled back to."""
    return {
        e.version
        for action in CHANGES
        for e in ledger.entries(unit=unit.name, env=env, action=action)
        if e.version
    }


def rollback_candidates(ledger: Ledger, platform: Platform, unit: Unit, env: str) -> set[str]:
    """The versions a rollback of `env` may go to: what `env` ran before, and what the
    environment before it runs now (which must then pass every gate guarding `env`, as a
    promotion would). Anything else has not been through `env`'s gates and is a promotion."""
    been = ran_in(ledger, unit, env)
    upstream = unit.previous_stage(env)
    dep = platform.target(unit, upstream).status(unit, upstream) if upstream != CANDIDATE else None
    if dep is not None:
        been.add(dep.version)
    return been


@dataclass
class RolledBack:
    """What a rollback did, for its materialization: the deployment, who, and the gates."""

    deployment: Deployment
    principal: str
    gates: dict[str, dict | None]

    def metadata(self) -> dict[str, Any]:
        """The same fields as a promotion's materialization (engine/promote.py), and the
        rollback's own."""
        dep = self.deployment
        return {
            "version": dep.version,
            "previous_version": dep.previous_version or "",
            "deployed_at": dep.deployed_at,
            "principal": self.principal,
            "gates": metadata_value({k: (v or {}).get("code") for k, v in self.gates.items()}),
            "gate_summary": gate_summary(self.gates),
            "action": "rollback",
            **{k: metadata_value(v) for k, v in dep.details.items()},
        }


def rollback(
    context: Any, platform: Platform, unit: Unit, env: str, to_version: str | None, reason: str
) -> RolledBack:
    try:
        return _rollback(context, platform, unit, env, to_version, reason)
    finally:  # the run's only step: the next run of this unit and environment may start
        release_for_run(unit.name, env, context.run.run_id)


def _rollback(
    context: Any, platform: Platform, unit: Unit, env: str, to_version: str | None, reason: str
) -> RolledBack:
    ledger = context.resources.ledger.ledger()
    principal = principal_of(context, platform, unit=unit.name, env=env)
    run_id = context.run.run_id
    target = platform.target(unit, env)
    upstream = unit.previous_stage(env)

    def refuse(exc: UDError, version: str | None) -> dg.Failure:
        return refusal(
            ledger,
            exc,
            principal=principal,
            unit=unit.name,
            env=env,
            version=version,
            run_id=run_id,
            refused="rollback",
            context=context,
        )

    try:  # first, so that nobody without the right learns what the environment could go back to
        platform.governance.authorize(principal, "deploy", env)
    except NotPermitted as exc:
        raise refuse(exc, to_version) from None
    with env_lock(Home.current(), unit, env):
        recover(ledger, platform, unit, env)  # a run that died mid-deploy: its record first
        current = target.status(unit, env)
        wanted = to_version or (current.previous_version if current else None)
        if not wanted:
            raise refuse(
                TargetError(
                    "UD-ROLLBACK-NOTHING",
                    f"{unit.name} in {env} has no previous version to go back to",
                    f"promote a version to {env} instead",
                ),
                None,
            )
        if wanted not in rollback_candidates(ledger, platform, unit, env):
            raise refuse(
                NotPermitted(
                    "UD-ROLLBACK-NOT-DEPLOYED",
                    f"{unit.name} {wanted[:12]} never ran in {env}: a rollback only goes back to a "
                    f"version {env} ran before, or one {upstream} runs now",
                    f"a version {env} never ran goes through its gates: ud promote {unit.name} "
                    f"--to {env}",
                ),
                wanted,
            )
        new_here = wanted not in ran_in(ledger, unit, env)
        gates = [g for g in platform.gates[unit.name] if g.spec.stage == upstream]
        for gate in gates:
            if not (gate.live and (gate.binds_rollbacks or new_here)):
                continue
            live = evaluate_gate(
                platform, unit, gate, wanted, None, principal, ledger, context.log.info, run_id
            )
            if not live.passed and not active_override(
                ledger, unit, wanted, gate, principal=principal, governance=platform.governance
            ):
                raise refuse(gate.refused(live), wanted)
        # What the gates recorded for `wanted`: required of a version new here, and what the
        # rollback's materialization shows either way.
        results = gate_results(
            ledger,
            unit,
            gates,
            upstream,
            wanted,
            principal=principal,
            governance=platform.governance,
        )
        if new_here:
            failed = [
                n
                for n, r in results.items()
                if not passed_or_overridden(r) and not any(g.name == n and g.live for g in gates)
            ]
            if failed:
                raise refuse(
                    GateRefused(
                        "UD-GATE-REFUSED",
                        f"{unit.name} {wanted[:12]} may not go to {env}: gates not "
                        f"passed: {', '.join(failed)}",
                        f"see `ud gates {unit.name} --env {upstream}`",
                        exit_code=EXIT_GATE,
                    ),
                    wanted,
                )
        record(
            ledger,
            RollbackStarted(
                from_version=current.version if current else None,
                to_version=wanted,
                reason=reason,
                run_id=run_id,
            ),
            principal=principal,
            unit=unit.name,
            env=env,
            version=wanted,
        )
        try:
            with tracing.span(
                f"rollback {unit.name} in {env}",
                run_id=run_id,
                unit=unit.name,
                env=env,
                from_version=current.version if current else None,
                to_version=wanted,
                target=type(target).__name__,
                reason=reason,
                team=unit.team,
                kind=unit.kind,
            ):
                dep = target.rollback(unit, env, wanted, log=context.log.info)
        except Exception as exc:
            exc = as_target_error(exc, f"rolling {unit.name} back to {wanted[:12]} in {env}")
            record(
                ledger,
                RollbackFailed(code=exc.code, message=exc.message, reason=reason, run_id=run_id),
                principal=principal,
                unit=unit.name,
                env=env,
                version=wanted,
            )
            raise failure(exc, context) from None
        record(
            ledger,
            Rollback(
                from_version=current.version if current else None,
                reason=reason,
                run_id=run_id,
                team=unit.team,
                kind=unit.kind,
                consumers=platform.consumers(unit.name),
            ),
            principal=principal,
            unit=unit.name,
            env=env,
            version=dep.version,
        )
    return RolledBack(dep, principal, results)
