"""What happens inside a stage asset or a gate check, whichever kind the unit is.

The ledger is the record of every gate result, so a promotion in one run can refuse a
version whose gates failed in another run (Dagster's blocking checks stop only the run
they are in).
"""

from __future__ import annotations

import fcntl
import time
import traceback
from contextlib import contextmanager
from dataclasses import asdict
from datetime import datetime, timezone
from typing import Any, Iterator

import dagster as dg

from . import tracing
from .cost import Usage, measure
from .errors import EXIT_GATE, EXIT_TARGET, GateRefused, NotPermitted, TargetError, UDError
from .gates import Gate, GateContext, GateResult
from .governance import grants, tokens
from .home import Home
from .kinds.base import BuildContext
from .ledger import Ledger
from .redaction import redact, redact_text
from .reports.scorecard import gate_summary, stage_metadata
from .targets.base import Artifact
from .units import CANDIDATE, Unit

PRINCIPAL_TAG = "ud/principal"  # for people reading the run list; never trusted on its own
REASON_TAG = "ud/reason"
GOVERNANCE_FAMILIES = ("policy", "freeze", "approval")


def principal_of(context: Any, platform: Any, unit: str | None = None, env: str | None = None) -> str:
    """Who a run acts for: the principal of the grant recorded for this very run (its id, or
    the run key a sensor requested it under, with the same job, config, unit and environment),
    or the UI's least-privileged principal when none was. A grant that does not fit the run,
    or a principal tag without a grant, is a forgery: refused, and recorded."""
    run = context.run
    tags = run.tags
    claimed = tags.get(PRINCIPAL_TAG)
    ledger = context.resources.ledger.ledger()
    try:
        principal = grants.principal_for(ledger.engine, tokens.signing_key(), run_id=run.run_id,
                                         run_key=tags.get("dagster/run_key"), job=run.job_name,
                                         run_config=run.run_config, unit=unit, env=env)
        if principal is None and claimed:
            raise NotPermitted("UD-AUTH-FORGED-TAG", f"the run claims to act for {claimed} without a grant",
                               "a tag grants nothing: start promotions with `ud` and a token")
        if principal is not None and claimed and claimed != principal:
            raise NotPermitted("UD-AUTH-FORGED-TAG", f"the run claims {claimed} but its grant names {principal}",
                               "start promotions with `ud` and your own token")
    except NotPermitted as exc:
        ledger.append("forgery", principal=platform.governance.ui_principal, unit=tags.get("ud/unit"),
                      env=tags.get("ud/env"), payload={"code": exc.code, "message": exc.message,
                                                       "claimed": claimed or "", "run_id": run.run_id,
                                                       "job": run.job_name})
        raise failure(exc) from None
    return principal or platform.governance.ui_principal


def active_override(ledger: Ledger, unit: Unit, version: str, gate: str, stage: str, *, principal: str | None = None,
                    governance: Any = None) -> dict | None:
    """An unexpired break-glass override of one gate for one version, if any; with `principal`,
    only one made for that principal (by name, or by a role it holds where the gate guards).
    The policy gate is never overridden: it is who may deploy at all."""
    now = datetime.now(timezone.utc).isoformat()
    guards = unit.stages[unit.stages.index(stage) + 1] if stage in unit.stages[:-1] else ""

    def applies(e) -> bool:
        if e.payload.get("family") == "policy":
            return False
        if principal is None:
            return True
        beneficiaries = e.payload.get("for") or [e.principal]  # older overrides: their author only
        return any(b == principal or (b.startswith("role:") and governance is not None
                                      and governance.allowed(principal, b[5:], guards)) for b in beneficiaries)

    entry = ledger.latest(unit=unit.name, action="override",
                          predicate=lambda e: e.version == version and e.payload.get("gate") == gate
                          and e.payload.get("stage") == stage and e.payload.get("expires_at", "") > now and applies(e))
    return {**entry.payload, "by": entry.principal, "at": entry.ts} if entry else None


def failure(exc: UDError) -> dg.Failure:
    """A step failure that carries the UD code, so `ud` can report it without parsing text."""
    message, remediation = redact_text(exc.message), redact_text(exc.remediation)  # the event log is shown in the UI
    return dg.Failure(description=f"{exc.code}: {message}", allow_retries=False,
                      metadata={"ud_code": exc.code, "ud_message": message, "remediation": remediation,
                                "exit_code": exc.exit_code})


def as_target_error(exc: Exception, doing: str) -> TargetError:
    """A target's failure as the TargetError the caller records; an exception that is not one
    (a bug, a full disk) keeps its type and message as the cause."""
    if isinstance(exc, TargetError):
        return exc
    if isinstance(exc, UDError):
        return TargetError(exc.code, exc.message, exc.remediation)
    return TargetError("UD-TARGET-FAILED", f"{doing} failed: {type(exc).__name__}: {redact_text(str(exc))}",
                       "the environment kept its previous version; fix the cause and promote again")


def metadata_value(value: Any) -> Any:
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value if not (isinstance(value, str) and "\n" in value) else dg.MetadataValue.md(f"```\n{value}\n```")
    return dg.MetadataValue.json(value)


def artifact_for(ledger: Ledger, unit: Unit, version: str) -> Artifact | None:
    entry = ledger.latest(unit=unit.name, action="candidate", predicate=lambda e: e.version == version)
    return Artifact(**entry.payload["artifact"]) if entry else None


def version_at(context: Any, platform: Any, unit: Unit, stage: str) -> tuple[str | None, Artifact | None]:
    """The version a stage holds now: the newest candidate built, or what an environment runs."""
    ledger = context.resources.ledger.ledger()
    if stage == CANDIDATE:
        # The candidate this run built, when it built one: another run of the same unit may have
        # built a newer one meanwhile, and its gates ran there, not here.
        own = ledger.latest(unit=unit.name, action="candidate",
                            predicate=lambda e: e.payload.get("run_id") == context.run.run_id)
        if own is not None:
            return own.version, Artifact(**own.payload["artifact"])
        event = context.instance.get_latest_materialization_event(dg.AssetKey([unit.name, CANDIDATE]))
        if event is None or event.asset_materialization is None:
            return None, None
        version = event.asset_materialization.metadata["version"].value
    else:
        dep = platform.target(unit).status(unit, stage)
        if dep is None:
            return None, None
        version = dep.version
    return version, artifact_for(ledger, unit, version)


def priced(platform: Any, usage: Usage) -> dict:
    """Usage and, with a price table, its cost: the ledger fields showback sums."""
    out: dict = {"usage": usage.to_dict()}
    if platform.costs is not None:
        out["cost"] = {"amount": round(platform.costs.run_cost(usage), 6), "currency": platform.costs.currency}
    return out


def build_candidate(context: Any, platform: Any, unit: Unit, ref: str) -> dg.MaterializeResult:
    ledger = context.resources.ledger.ledger()
    principal = principal_of(context, platform, unit=unit.name)
    ctx = BuildContext(home=Home.current(), target=platform.target(unit), targets=platform.targets, units=platform.units,
                       config={"ref": ref}, trainer=platform.trainers.get(unit.name), log=context.log.info,
                       principal=principal)
    try:
        with measure() as measured:
            artifact = platform.translator(unit).build_candidate(unit, ctx)
    except UDError as exc:
        ledger.append("build-failed", principal=principal, unit=unit.name, env=CANDIDATE,
                      payload={"code": exc.code, "message": exc.message, "run_id": context.run.run_id})
        raise failure(exc) from None
    spent = priced(platform, measured["usage"])
    ledger.append("candidate", principal=principal, unit=unit.name, env=CANDIDATE, version=artifact.version,
                  payload={"artifact": asdict(artifact), "run_id": context.run.run_id, "team": unit.team, "kind": unit.kind,
                           **spent})
    return dg.MaterializeResult(
        metadata={"version": artifact.version, "digest": artifact.digest, "location": artifact.location,
                  **{k: metadata_value(v) for k, v in artifact.details.items() if k != "holdout_path"}},
        data_version=dg.DataVersion(artifact.version))


def evaluate_gate(platform: Any, unit: Unit, gate: Gate, version: str, artifact: Artifact | None, principal: str,
                  ledger: Ledger, log: Any = print, run_id: str | None = None) -> GateResult:
    with tracing.span(f"gate {gate.name}", run_id=run_id, unit=unit.name, stage=gate.spec.stage, gate=gate.name,
                      family=gate.family, version=version, team=unit.team, kind=unit.kind) as span:
        result = _evaluate_gate(platform, unit, gate, version, artifact, principal, ledger, log)
        # One place for every gate: what a gate saw (test output, a warehouse's error) may hold secrets.
        result = GateResult(result.passed, result.code, redact_text(result.message), redact_text(result.remediation),
                            redact(result.metadata))
        tracing.record_gate(span, result)
        return result


def _evaluate_gate(platform: Any, unit: Unit, gate: Gate, version: str, artifact: Artifact | None, principal: str,
                   ledger: Ledger, log: Any) -> GateResult:
    stage = gate.spec.stage
    ctx = GateContext(unit=unit, stage=stage, guards=unit.stages[unit.stages.index(stage) + 1], version=version,
                      artifact=artifact, target=platform.target(unit), home=Home.current(), log=log,
                      principal=principal, governance=platform.governance, ledger=ledger, platform=platform)
    try:
        return gate.evaluate(ctx)
    except UDError as exc:
        return GateResult(False, "UD-GATE-ERROR", f"gate {gate.name} failed to run: {exc.code}: {exc.message}",
                          exc.remediation or "fix the cause and re-run the check", {"cause": exc.code})
    except Exception as exc:  # a crashing gate is a failed gate, never a pass
        return GateResult(False, "UD-GATE-ERROR", f"gate {gate.name} crashed: {type(exc).__name__}: {exc}",
                          "fix the cause and re-run the check", {"traceback": traceback.format_exc(limit=-5)})


def run_gate(context: Any, platform: Any, unit: Unit, gate: Gate) -> dg.AssetCheckResult:
    stage = gate.spec.stage
    guards = unit.stages[unit.stages.index(stage) + 1]
    ledger = context.resources.ledger.ledger()
    principal = principal_of(context, platform, unit=unit.name, env=guards)
    version, artifact = version_at(context, platform, unit, stage)
    if version is None:
        result = GateResult(False, "UD-GATE-NOTHING", f"{stage} holds no version to check", f"materialize {unit.name}/{stage} first")
    else:
        result = evaluate_gate(platform, unit, gate, version, artifact, principal, ledger, context.log.info, context.run.run_id)
    override = active_override(ledger, unit, version, gate.name, stage, principal=principal,
                               governance=platform.governance) if version and not result.passed else None
    ledger.append("gate", principal=principal, unit=unit.name, env=guards, version=version,
                  payload={"gate": gate.name, "family": gate.family, "stage": stage, **result.to_dict(),
                           "overridden": bool(override), "run_id": context.run.run_id, "team": unit.team, "kind": unit.kind})
    extra = {"overridden_by": override["by"], "justification": override["justification"],
             "override_expires_at": override["expires_at"]} if override else {}
    return dg.AssetCheckResult(
        passed=result.passed or bool(override), severity=dg.AssetCheckSeverity.ERROR, description=result.message,
        metadata={"code": result.code, "family": gate.family, "version": version or "", "message": result.message,
                  "remediation": result.remediation, "overridden": bool(override), **extra,
                  **{k: metadata_value(v) for k, v in result.metadata.items()}})


def gate_results(ledger: Ledger, unit: Unit, gates: list[Gate], stage: str, version: str, *, principal: str,
                 governance: Any) -> dict[str, dict | None]:
    """The newest recorded result of each gate on `stage` for `version` (None: never run). An
    override counts only if it was made for `principal`, whatever the recorded result says."""
    out: dict[str, dict | None] = {}
    for gate in gates:
        if gate.spec.stage != stage:
            continue
        entry = ledger.latest(unit=unit.name, action="gate",
                              predicate=lambda e, g=gate.name: e.version == version and e.payload.get("gate") == g
                              and e.payload.get("stage") == stage)
        payload = dict(entry.payload) if entry else None
        if payload is not None:
            payload["overridden"] = False
        if not (payload and payload["passed"]) and (override := active_override(
                ledger, unit, version, gate.name, stage, principal=principal, governance=governance)):
            payload = {**(payload or {"gate": gate.name, "code": "UD-GATE-NOT-RUN"}), "overridden": True,
                       "override": override}
        out[gate.name] = payload
    return out


def passed_or_overridden(result: dict | None) -> bool:
    return bool(result and (result.get("passed") or result.get("overridden")))


@contextmanager
def _file_lock(path, what: str, timeout_s: float) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as fh:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise UDError("UD-LOCKED", f"another {what} is still running",
                                  "wait for it to finish and try again", exit_code=EXIT_TARGET) from None
                time.sleep(0.2)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def env_lock(home: Home, unit: Unit, env: str, timeout_s: float = 600):
    """Two deploys of one unit and environment never interleave: the second waits, then is refused."""
    return _file_lock(home.locks / f"{unit.name}.{env}.lock", f"promotion of {unit.name} to {env}", timeout_s)


def run_lock(home: Home, unit: str, env: str, timeout_s: float = 1800):
    """A whole run of one unit and environment (build, gates, deploy) at a time, for runs `ud`
    executes; a separate file from env_lock, which the deploy step takes inside it."""
    return _file_lock(home.locks / f"{unit}.{env}.run.lock", f"run of {unit} to {env}", timeout_s)


def promote(context: Any, platform: Any, unit: Unit, env: str) -> dg.MaterializeResult:
    ledger = context.resources.ledger.ledger()
    principal = principal_of(context, platform, unit=unit.name, env=env)
    reason = context.run.tags.get(REASON_TAG, "")
    upstream = unit.previous_stage(env)
    version, artifact = version_at(context, platform, unit, upstream)

    def refuse(exc: UDError) -> dg.Failure:
        ledger.append("refusal", principal=principal, unit=unit.name, env=env, version=version,
                      payload={"code": exc.code, "message": exc.message, "run_id": context.run.run_id})
        return failure(exc)

    if version is None or artifact is None:
        raise refuse(UDError("UD-PROMOTE-NOTHING", f"{unit.name} has no {upstream} version to promote to {env}",
                             f"promote {unit.name} to {upstream} first"))
    for dep, dep_env in platform.translator(unit).env_deps(unit, env, platform.units):
        # An app serving a model's `env` version would start without one and fail its health check.
        if platform.target(platform.units[dep]).status(platform.units[dep], dep_env) is None:
            raise refuse(UDError("UD-PROMOTE-DEPENDENCY", f"{unit.name} needs {dep} in {dep_env}, which has no version yet",
                                 f"promote {dep} to {dep_env} first (ud promote {dep} --to {dep_env})"))
    gates = platform.gates[unit.name]
    # Who acts, quotas, freezes and approvals are decided now, for this run's principal,
    # whatever an earlier run recorded: those gates are re-evaluated here.
    for gate in gates:
        if gate.spec.stage == upstream and gate.family in GOVERNANCE_FAMILIES:
            live = evaluate_gate(platform, unit, gate, version, artifact, principal, ledger, context.log.info, context.run.run_id)
            if not live.passed and not active_override(ledger, unit, version, gate.name, upstream, principal=principal,
                                                       governance=platform.governance):
                exc_type = NotPermitted if gate.family == "policy" else GateRefused
                raise refuse(exc_type(live.code, live.message, live.remediation,
                                      exit_code=4 if gate.family == "policy" else EXIT_GATE))
    results = gate_results(ledger, unit, gates, upstream, version, principal=principal, governance=platform.governance)
    failed = [f"{name} ({r['code']})" if r else f"{name} (not run)" for name, r in results.items()
              if not passed_or_overridden(r) and not any(g.name == name and g.family in GOVERNANCE_FAMILIES for g in gates)]
    if failed:
        raise refuse(GateRefused("UD-GATE-REFUSED", f"{unit.name} {version[:12]} may not go to {env}: gates not passed: "
                                 f"{', '.join(failed)}", f"see `ud gates {unit.name}`; fix and rebuild", exit_code=EXIT_GATE))
    target = platform.target(unit)
    home = Home.current()
    with env_lock(home, unit, env):
        current = target.status(unit, env)
        if current is not None and current.version == version and target.health(unit, env).healthy:
            ledger.append("already-deployed", principal=principal, unit=unit.name, env=env, version=version,
                          payload={"reason": reason, "run_id": context.run.run_id})
            return dg.MaterializeResult(metadata={"version": version, "deployed_at": current.deployed_at,
                                                  "unchanged": True, "principal": principal},
                                        data_version=dg.DataVersion(version))
        started = time.monotonic()
        try:
            with measure() as measured, tracing.span(
                    f"deploy {unit.name} to {env}", run_id=context.run.run_id, unit=unit.name, env=env, version=version,
                    from_version=current.version if current else None, target=type(target).__name__, team=unit.team,
                    kind=unit.kind):
                dep = target.deploy(unit, env, artifact, log=context.log.info)
        except Exception as exc:  # a target's own bug too: recorded with its cause, never a bare run failure
            exc = as_target_error(exc, f"deploying {unit.name} {version[:12]} to {env}")
            ledger.append("deploy-failed", principal=principal, unit=unit.name, env=env, version=version,
                          payload={"code": exc.code, "message": exc.message, "stayed_on": current.version if current else None,
                                   "run_id": context.run.run_id})
            raise failure(exc) from None
        ledger.append("promotion", principal=principal, unit=unit.name, env=env, version=version,
                      payload={"from_version": current.version if current else None, "reason": reason,
                               "digest": artifact.digest, "run_id": context.run.run_id, "team": unit.team,
                               "kind": unit.kind, "deploy_seconds": round(time.monotonic() - started, 3),
                               "change_created_at": artifact.details.get("change_created_at"),
                               "gates": {k: (v or {}).get("code") for k, v in results.items()},
                               "overrides": {k: v["override"] for k, v in results.items() if v and v.get("overridden")},
                               **priced(platform, measured["usage"])})
    return dg.MaterializeResult(
        metadata={"version": version, "previous_version": dep.previous_version or "", "deployed_at": dep.deployed_at,
                  "principal": principal, "gates": metadata_value({k: (v or {}).get("code") for k, v in results.items()}),
                  "gate_summary": gate_summary(results), **stage_metadata(ledger.entries(unit=unit.name), unit.name, env),
                  **{k: metadata_value(v) for k, v in dep.details.items()}},
        data_version=dg.DataVersion(version))


def ran_in(ledger: Ledger, unit: Unit, env: str) -> set[str]:
    """The versions the ledger says `env` ran: promoted or rolled back to."""
    return {e.version for action in ("promotion", "rollback") for e in ledger.entries(unit=unit.name, env=env, action=action)
            if e.version}


def rollback_candidates(ledger: Ledger, platform: Any, unit: Unit, env: str) -> set[str]:
    """The versions a rollback of `env` may go to: what `env` ran before, and what the
    environment before it runs now (which must then pass every gate guarding `env`, as a
    promotion would). Anything else has not been through `env`'s gates and is a promotion."""
    been = ran_in(ledger, unit, env)
    upstream = unit.previous_stage(env)
    if upstream != CANDIDATE and (dep := platform.target(unit).status(unit, upstream)) is not None:
        been.add(dep.version)
    return been


def rollback(context: Any, platform: Any, unit: Unit, env: str, to_version: str | None, reason: str) -> Any:
    ledger = context.resources.ledger.ledger()
    principal = principal_of(context, platform, unit=unit.name, env=env)
    target = platform.target(unit)
    upstream = unit.previous_stage(env)

    def refuse(exc: UDError, version: str | None) -> dg.Failure:
        ledger.append("refusal", principal=principal, unit=unit.name, env=env, version=version,
                      payload={"code": exc.code, "message": exc.message, "action": "rollback", "run_id": context.run.run_id})
        return failure(exc)

    try:  # first, so that nobody without the right learns what the environment could go back to
        platform.governance.authorize(principal, "deploy", env)
    except NotPermitted as exc:
        raise refuse(exc, to_version) from None
    with env_lock(Home.current(), unit, env):
        current = target.status(unit, env)
        wanted = to_version or (current.previous_version if current else None)
        if not wanted:
            raise refuse(TargetError("UD-ROLLBACK-NOTHING", f"{unit.name} in {env} has no previous version to go back to",
                                     f"promote a version to {env} instead"), None)
        if wanted not in rollback_candidates(ledger, platform, unit, env):
            raise refuse(NotPermitted(
                "UD-ROLLBACK-NOT-DEPLOYED", f"{unit.name} {wanted[:12]} never ran in {env}: a rollback only goes back to a "
                f"version {env} ran before, or one {upstream} runs now",
                f"a version {env} never ran goes through its gates: ud promote {unit.name} --to {env}"), wanted)
        # Who acts, quotas and freezes bind a rollback as they bind a promotion; a version new to
        # `env` (what `upstream` runs) needs its approvals and every other gate guarding `env` too.
        new_here = wanted not in ran_in(ledger, unit, env)
        live_families = ("policy", "freeze", "approval") if new_here else ("policy", "freeze")
        for gate in platform.gates[unit.name]:
            if gate.spec.stage != upstream or gate.family not in live_families:
                continue
            live = evaluate_gate(platform, unit, gate, wanted, None, principal, ledger, context.log.info, context.run.run_id)
            if not live.passed and not active_override(ledger, unit, wanted, gate.name, gate.spec.stage,
                                                       principal=principal, governance=platform.governance):
                if gate.family == "policy":
                    raise refuse(NotPermitted("UD-AUTH-FORBIDDEN", live.message, live.remediation), wanted)
                raise refuse(GateRefused(live.code, live.message, live.remediation, exit_code=EXIT_GATE), wanted)
        if new_here:
            results = gate_results(ledger, unit, platform.gates[unit.name], upstream, wanted, principal=principal,
                                   governance=platform.governance)
            failed = [n for n, r in results.items() if not passed_or_overridden(r)
                      and not any(g.name == n and g.family in GOVERNANCE_FAMILIES for g in platform.gates[unit.name])]
            if failed:
                raise refuse(GateRefused("UD-GATE-REFUSED", f"{unit.name} {wanted[:12]} may not go to {env}: gates not "
                                         f"passed: {', '.join(failed)}", f"see `ud gates {unit.name} --env {upstream}`",
                                         exit_code=EXIT_GATE), wanted)
        try:
            with tracing.span(f"rollback {unit.name} in {env}", run_id=context.run.run_id, unit=unit.name, env=env,
                              from_version=current.version if current else None, to_version=wanted,
                              target=type(target).__name__, reason=reason, team=unit.team, kind=unit.kind):
                dep = target.rollback(unit, env, wanted, log=context.log.info)
        except Exception as exc:
            exc = as_target_error(exc, f"rolling {unit.name} back to {wanted[:12]} in {env}")
            ledger.append("rollback-failed", principal=principal, unit=unit.name, env=env, version=wanted,
                          payload={"code": exc.code, "message": exc.message, "reason": reason, "run_id": context.run.run_id})
            raise failure(exc) from None
        ledger.append("rollback", principal=principal, unit=unit.name, env=env, version=dep.version,
                      payload={"from_version": current.version if current else None, "reason": reason,
                               "run_id": context.run.run_id, "team": unit.team, "kind": unit.kind,
                               "consumers": platform.consumers(unit.name)})
    return dep
