"""The deploy step of a promotion, in the order it decides:

1. resolve the version the stage before holds (this run's own candidate, or what the
   environment before runs);
2. check that what it depends on is there (an app needs its model in the same environment);
3. decide the live gates now, for this run's principal (who acts, freezes, approvals),
   whatever an earlier run recorded;
4. require every other gate's recorded result to have passed (or be overridden for this
   principal): Dagster's blocking checks stop only their own run;
5. deploy under the lock, and record the promotion (or the failure, with its cause).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import dagster as dg

from .. import tracing
from ..cost import measure
from ..errors import EXIT_GATE, GateRefused, UDError
from ..events import AlreadyDeployed, DeployFailed, DeployStarted, Promotion, record
from ..home import Home
from ..reports.scorecard import gate_summary
from ..run_tags import REASON_TAG
from ..units import CANDIDATE
from .build import priced
from .desired import drift_error, note_drift, settled_state
from .gating import active_override, evaluate_gate, gate_results, passed_or_overridden
from .locks import env_lock, release_for_run
from .recovery import recover
from .steps import (
    as_target_error,
    failure,
    metadata_value,
    principal_of,
    refusal,
    version_at,
)

if TYPE_CHECKING:
    from ..gates import Gate
    from ..ledger import Ledger
    from ..platform import Platform
    from ..targets.base import Artifact
    from ..units import Unit


class Step:
    """One promotion's deploy step: its run, unit, environment and principal."""

    def __init__(self, context: Any, platform: Platform, unit: Unit, env: str):
        self.context, self.platform, self.unit, self.env = context, platform, unit, env
        self.ledger: Ledger = context.resources.ledger.ledger()
        self.run_id: str = context.run.run_id
        self.principal = principal_of(context, platform, unit=unit.name, env=env)
        self.upstream = unit.previous_stage(env)
        self.gates: list[Gate] = [
            g for g in platform.gates[unit.name] if g.spec.stage == self.upstream
        ]
        self.version: str | None = None

    def refuse(self, exc: UDError) -> dg.Failure:
        return refusal(
            self.ledger,
            exc,
            principal=self.principal,
            unit=self.unit.name,
            env=self.env,
            version=self.version,
            run_id=self.run_id,
            context=self.context,
        )

    def resolve(self) -> tuple[str, Artifact]:
        version, artifact = version_at(self.context, self.platform, self.unit, self.upstream)
        self.version = version
        if self.upstream != CANDIDATE:
            # What the environment before runs must be what the platform put there.
            state = settled_state(self.platform, self.ledger, self.unit, self.upstream)
            if state is not None and not state.in_sync:
                note_drift(
                    self.ledger,
                    self.unit,
                    self.upstream,
                    state,
                    principal=self.principal,
                    noticed_by=f"promotion to {self.env}",
                )
                raise self.refuse(drift_error(self.unit, self.upstream, state))
        if version is None or artifact is None:
            raise self.refuse(
                UDError(
                    "UD-PROMOTE-NOTHING",
                    f"{self.unit.name} has no {self.upstream} version to promote to {self.env}",
                    f"promote {self.unit.name} to {self.upstream} first",
                )
            )
        return version, artifact

    def check_dependencies(self) -> None:
        for dep, dep_env in self.platform.translator(self.unit).env_deps(
            self.unit, self.env, self.platform.units
        ):
            # An app serving a model's `env` version would start without one and fail its health
            # check.
            other = self.platform.units[dep]
            if self.platform.target(other, dep_env).status(other, dep_env) is None:
                raise self.refuse(
                    UDError(
                        "UD-PROMOTE-DEPENDENCY",
                        f"{self.unit.name} needs {dep} in {dep_env}, which has no version yet",
                        f"promote {dep} to {dep_env} first (ud promote {dep} --to {dep_env})",
                    )
                )

    def decide_live(self, version: str, artifact: Artifact | None) -> None:
        for gate in self.gates:
            if not gate.live:
                continue
            live = evaluate_gate(
                self.platform,
                self.unit,
                gate,
                version,
                artifact,
                self.principal,
                self.ledger,
                self.context.log.info,
                self.run_id,
            )
            if not live.passed and not active_override(
                self.ledger,
                self.unit,
                version,
                gate,
                principal=self.principal,
                governance=self.platform.governance,
            ):
                raise self.refuse(gate.refused(live))

    def recorded(self, version: str) -> dict[str, dict | None]:
        results = gate_results(
            self.ledger,
            self.unit,
            self.gates,
            self.upstream,
            version,
            principal=self.principal,
            governance=self.platform.governance,
        )
        live = {g.name for g in self.gates if g.live}
        failed = [
            f"{name} ({r['code']})" if r else f"{name} (not run)"
            for name, r in results.items()
            if name not in live and not passed_or_overridden(r)
        ]
        if failed:
            raise self.refuse(
                GateRefused(
                    "UD-GATE-REFUSED",
                    f"{self.unit.name} {version[:12]} may not go to {self.env}: "
                    f"gates not passed: {', '.join(failed)}",
                    f"see `ud gates {self.unit.name}`; fix and rebuild",
                    exit_code=EXIT_GATE,
                )
            )
        return results

    def deploy(
        self, version: str, artifact: Artifact, results: dict[str, dict | None]
    ) -> dg.MaterializeResult:
        unit, env, target = self.unit, self.env, self.platform.target(self.unit, self.env)
        reason = self.context.run.tags.get(REASON_TAG, "")
        with env_lock(Home.current(), unit, env):
            recover(
                self.ledger, self.platform, unit, env
            )  # a run that died mid-deploy: its record first
            current = target.status(unit, env)
            if (
                current is not None
                and current.version == version
                and target.health(unit, env).healthy
            ):
                record(
                    self.ledger,
                    AlreadyDeployed(reason=reason, run_id=self.run_id),
                    principal=self.principal,
                    unit=unit.name,
                    env=env,
                    version=version,
                )
                return dg.MaterializeResult(
                    metadata={
                        "version": version,
                        "deployed_at": current.deployed_at,
                        "unchanged": True,
                        "principal": self.principal,
                    },
                    data_version=dg.DataVersion(version),
                )
            record(
                self.ledger,
                DeployStarted(
                    from_version=current.version if current else None,
                    to_version=version,
                    run_id=self.run_id,
                ),
                principal=self.principal,
                unit=unit.name,
                env=env,
                version=version,
            )
            started = time.monotonic()
            try:
                with (
                    measure() as measured,
                    tracing.span(
                        f"deploy {unit.name} to {env}",
                        run_id=self.run_id,
                        unit=unit.name,
                        env=env,
                        version=version,
                        from_version=current.version if current else None,
                        target=type(target).__name__,
                        team=unit.team,
                        kind=unit.kind,
                    ),
                ):
                    dep = target.deploy(unit, env, artifact, log=self.context.log.info)
            except (
                Exception
            ) as exc:  # a target's own bug too: recorded with its cause, never a bare run failure
                exc = as_target_error(exc, f"deploying {unit.name} {version[:12]} to {env}")
                record(
                    self.ledger,
                    DeployFailed(
                        code=exc.code,
                        message=exc.message,
                        stayed_on=current.version if current else None,
                        run_id=self.run_id,
                    ),
                    principal=self.principal,
                    unit=unit.name,
                    env=env,
                    version=version,
                )
                raise failure(exc, self.context) from None
            codes = {k: (v or {}).get("code") for k, v in results.items()}
            record(
                self.ledger,
                Promotion(
                    from_version=current.version if current else None,
                    reason=reason,
                    digest=artifact.digest,
                    run_id=self.run_id,
                    team=unit.team,
                    kind=unit.kind,
                    deploy_seconds=round(time.monotonic() - started, 3),
                    change_created_at=artifact.details.get("change_created_at"),
                    gates=codes,
                    overrides={
                        k: v["override"] for k, v in results.items() if v and v.get("overridden")
                    },
                    **priced(self.platform, measured["usage"]),
                ),
                principal=self.principal,
                unit=unit.name,
                env=env,
                version=version,
            )
        return dg.MaterializeResult(
            metadata={
                "version": version,
                "previous_version": dep.previous_version or "",
                "deployed_at": dep.deployed_at,
                "principal": self.principal,
                "gates": metadata_value(codes),
                "gate_summary": gate_summary(results),
                **{k: metadata_value(v) for k, v in dep.details.items()},
            },
            data_version=dg.DataVersion(version),
        )


def promote(context: Any, platform: Platform, unit: Unit, env: str) -> dg.MaterializeResult:
    try:
        step = Step(context, platform, unit, env)
        version, artifact = step.resolve()
        step.check_dependencies()
        step.decide_live(version, artifact)
        results = step.recorded(version)
        return step.deploy(version, artifact, results)
    finally:  # the run's last step: the next run of this unit and environment may start
        release_for_run(unit.name, env, context.run.run_id)
