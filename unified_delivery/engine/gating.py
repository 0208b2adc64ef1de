"""Gates in the engine: evaluating one (redacted, traced, a crash a failure), running one as a
blocking asset check, and reading what gates recorded, with the overrides in force."""

from __future__ import annotations

import traceback
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Callable

import dagster as dg

from .. import tracing
from ..errors import GateRefused, UDError
from ..events import GateEvaluated, OverrideUsed, record
from ..gates import Gate, GateContext, GateResult
from ..home import Home
from ..redaction import redact, redact_text
from ..units import CANDIDATE
from .desired import drift_error, note_drift, settled_state
from .overrides import OverriddenGate, override_in_force
from .steps import mark_outcome, metadata_value, principal_of, version_at

if TYPE_CHECKING:
    from ..governance import Governance
    from ..ledger import Ledger
    from ..platform import Platform
    from ..targets.base import Artifact
    from ..units import Unit


def active_override(
    ledger: Ledger,
    unit: Unit,
    version: str,
    gate: Gate,
    *,
    principal: str | None = None,
    governance: Governance | None = None,
) -> dict | None:
    """An unexpired break-glass override of `gate` for one version, if any; with `principal`,
    only one made for that principal (by name, or by a role it holds where the gate guards).
    A gate that is not overridable (the policy gate: who may deploy at all) never has one."""
    stage = gate.spec.stage
    return override_in_force(
        ledger,
        OverriddenGate(unit.name, gate.name, stage, gate.overridable),
        version,
        guards=unit.stages[unit.stages.index(stage) + 1],
        principal=principal,
        governance=governance,
    )


def evaluate_gate(
    platform: Platform,
    unit: Unit,
    gate: Gate,
    version: str,
    artifact: Artifact | None,
    principal: str,
    ledger: Ledger,
    log: Callable[[str], None] = print,
    run_id: str | None = None,
) -> GateResult:
    with tracing.span(
        f"gate {gate.name}",
        run_id=run_id,
        unit=unit.name,
        stage=gate.spec.stage,
        gate=gate.name,
        family=gate.family,
        version=version,
        team=unit.team,
        kind=unit.kind,
    ) as span:
        result = _evaluate(platform, unit, gate, version, artifact, principal, ledger, log)
        # One place for every gate: what a gate saw (test output, a warehouse's error) may hold
        # secrets.
        result = replace(
            result,
            message=redact_text(result.message),
            remediation=redact_text(result.remediation),
            metadata=redact(result.metadata),
        )
        tracing.record_gate(span, result)
        return result


def _evaluate(
    platform: Platform,
    unit: Unit,
    gate: Gate,
    version: str,
    artifact: Artifact | None,
    principal: str,
    ledger: Ledger,
    log: Callable[[str], None],
) -> GateResult:
    stage = gate.spec.stage
    guards = unit.stages[unit.stages.index(stage) + 1]
    ctx = GateContext(
        unit=unit,
        stage=stage,
        guards=guards,
        version=version,
        artifact=artifact,
        target=platform.target(unit, guards if stage == CANDIDATE else stage),
        home=Home.current(),
        log=log,
        principal=principal,
        governance=platform.governance,
        ledger=ledger,
        platform=platform,
    )
    try:
        return gate.evaluate(ctx)
    except UDError as exc:
        return GateResult(
            False,
            "UD-GATE-ERROR",
            f"gate {gate.name} failed to run: {exc.code}: {exc.message}",
            exc.remediation or "fix the cause and re-run the check",
            {"cause": exc.code},
        )
    except Exception as exc:  # a crashing gate is a failed gate, never a pass
        return GateResult(
            False,
            "UD-GATE-ERROR",
            f"gate {gate.name} crashed: {type(exc).__name__}: {exc}",
            "fix the cause and re-run the check",
            {"traceback": traceback.format_exc(limit=-5)},
        )


def run_gate(context: Any, platform: Platform, unit: Unit, gate: Gate) -> dg.AssetCheckResult:
    """A gate as a blocking asset check: evaluated on the version its stage holds, recorded."""
    stage = gate.spec.stage
    guards = unit.stages[unit.stages.index(stage) + 1]
    ledger = context.resources.ledger.ledger()
    principal = principal_of(context, platform, unit=unit.name, env=guards)
    version, artifact = version_at(context, platform, unit, stage)
    state = settled_state(platform, ledger, unit, stage) if stage != CANDIDATE else None
    drift = None
    if state is not None and not state.in_sync:
        # Gates judge what the platform put there, never a version that arrived outside it.
        note_drift(ledger, unit, stage, state, principal=principal, noticed_by=f"gates of {guards}")
        drift = drift_error(unit, stage, state)
        result = GateResult(False, drift.code, drift.message, drift.remediation)
    elif version is None:
        result = GateResult(
            False,
            "UD-GATE-NOTHING",
            f"{stage} holds no version to check",
            f"promote {unit.name} to {stage} first (ud promote {unit.name} --to {stage})"
            if stage != CANDIDATE
            else f"build a candidate: ud promote {unit.name} --to {guards}",
        )
    else:
        result = evaluate_gate(
            platform,
            unit,
            gate,
            version,
            artifact,
            principal,
            ledger,
            context.log.info,
            context.run.run_id,
        )
    override = (
        active_override(
            ledger, unit, version, gate, principal=principal, governance=platform.governance
        )
        if version and not result.passed and drift is None  # drift is no gate's to override
        else None
    )
    record(
        ledger,
        GateEvaluated(
            gate=gate.name,
            family=gate.family,
            stage=stage,
            passed=result.passed,
            code=result.code,
            message=result.message,
            remediation=result.remediation,
            metadata=result.metadata,
            overridden=bool(override),
            run_id=context.run.run_id,
            team=unit.team,
            kind=unit.kind,
        ),
        principal=principal,
        unit=unit.name,
        env=guards,
        version=version,
    )
    for covered in result.metadata.get("covered") or [] if version else []:
        # Every use of a scoped override is on the record: the finding, the version, the run.
        record(
            ledger,
            OverrideUsed(
                gate=gate.name,
                stage=stage,
                file=covered["file"],
                rule=covered["rule"],
                line=int(covered.get("line") or 0),
                override_seq=int(covered["override_seq"]),
                overridden_by=covered.get("overridden_by", ""),
                expires_at=covered.get("expires_at", ""),
                run_id=context.run.run_id,
            ),
            principal=principal,
            unit=unit.name,
            env=guards,
            version=version,
        )
    extra = (
        {
            "overridden_by": override["by"],
            "justification": override["justification"],
            "override_expires_at": override["expires_at"],
        }
        if override
        else {}
    )
    if not result.passed and not override:
        mark_outcome(context, drift.code if drift is not None else result.code)
    if drift is not None:  # whatever the gate, the refusal is the environment's
        extra.update(refusal_code=drift.code, exit_code=drift.exit_code)
    elif gate.refusal is not GateRefused:  # how `ud` reports this refusal, when not as a gate's
        refusal = gate.refused(result)
        extra.update(refusal_code=refusal.code, exit_code=refusal.exit_code)
    return dg.AssetCheckResult(
        passed=result.passed or bool(override),
        severity=dg.AssetCheckSeverity.ERROR,
        description=result.message,
        metadata={
            "code": result.code,
            "family": gate.family,
            "version": version or "",
            "message": result.message,
            "remediation": result.remediation,
            "overridden": bool(override),
            **extra,
            **{k: metadata_value(v) for k, v in result.metadata.items()},
        },
    )


def gate_results(
    ledger: Ledger,
    unit: Unit,
    gates: list[Gate],
    stage: str,
    version: str,
    *,
    principal: str,
    governance: Governance,
) -> dict[str, dict | None]:
    """The newest recorded result of each gate on `stage` for `version` (None: never run). An
    override counts only if it was made for `principal`, whatever the recorded result says."""
    out: dict[str, dict | None] = {}
    for gate in gates:
        if gate.spec.stage != stage:
            continue
        entry = ledger.latest(
            unit=unit.name,
            action=GateEvaluated.ACTION,
            predicate=lambda e, g=gate.name: (
                e.version == version
                and e.payload.get("gate") == g
                and e.payload.get("stage") == stage
            ),
        )
        payload = {**entry.payload, "overridden": False} if entry else None
        if not (payload and payload["passed"]) and (
            override := active_override(
                ledger, unit, version, gate, principal=principal, governance=governance
            )
        ):
            payload = {
                **(payload or {"gate": gate.name, "code": "UD-GATE-NOT-RUN"}),
                "overridden": True,
                "override": override,
            }
        out[gate.name] = payload
    return out


def passed_or_overridden(result: dict | None) -> bool:
    return bool(result and (result.get("passed") or result.get("overridden")))
