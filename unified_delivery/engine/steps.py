"""What every step shares: who the run acts for, how a refusal becomes a step failure, and
which version a stage holds."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import dagster as dg

from ..errors import NotPermitted, TargetError, UDError
from ..events import Candidate, Forgery, Refusal, record
from ..governance import grants, tokens
from ..home import Home
from ..redaction import redact_text
from ..run_tags import ENV_TAG, OUTCOME_TAG, PRINCIPAL_TAG, RUN_KEY_TAG, UNIT_TAG
from ..targets.base import Artifact
from ..units import CANDIDATE
from .locks import hold_for_run

if TYPE_CHECKING:
    from ..ledger import Ledger
    from ..platform import Platform
    from ..units import Unit


def principal_of(
    context: Any, platform: Platform, unit: str | None = None, env: str | None = None
) -> str:
    """Who a run acts for: the principal of the grant recorded for this very run (its id, or
    the run key a sensor requested it under, with the same job, config, unit and environment),
    or the UI's least-privileged principal when none was. A grant that does not fit the run,
    or a principal tag without a grant, is a forgery: refused, and recorded."""
    run = context.run
    tags = run.tags
    claimed = tags.get(PRINCIPAL_TAG)
    ledger = context.resources.ledger.ledger()
    hold_run_lock(context, ledger)  # every step of a run starts here
    try:
        principal = grants.principal_for(
            ledger.engine,
            tokens.signing_key(),
            run_id=run.run_id,
            run_key=tags.get(RUN_KEY_TAG),
            job=run.job_name,
            run_config=run.run_config,
            unit=unit,
            env=env,
        )
        if principal is None and claimed:
            raise NotPermitted(
                "UD-AUTH-FORGED-TAG",
                f"the run claims to act for {claimed} without a grant",
                "a tag grants nothing: start promotions with `ud` and a token",
            )
        if principal is not None and claimed and claimed != principal:
            raise NotPermitted(
                "UD-AUTH-FORGED-TAG",
                f"the run claims {claimed} but its grant names {principal}",
                "start promotions with `ud` and your own token",
            )
    except NotPermitted as exc:
        record(
            ledger,
            Forgery(
                code=exc.code,
                message=exc.message,
                claimed=claimed or "",
                run_id=run.run_id,
                job=run.job_name,
            ),
            principal=platform.governance.ui_principal,
            unit=tags.get(UNIT_TAG),
            env=tags.get(ENV_TAG),
        )
        raise failure(exc) from None
    return principal or platform.governance.ui_principal


def hold_run_lock(context: Any, ledger: Ledger) -> None:
    """One run of a unit and environment at a time, wherever the run launcher started it: the
    first step takes the lock (locks.hold_for_run), the deploy or rollback step lets it go."""
    tags = context.run.tags
    if tags.get(UNIT_TAG) and tags.get(ENV_TAG):
        hold_for_run(
            Home.current(),
            tags[UNIT_TAG],
            tags[ENV_TAG],
            context.run.run_id,
            engine=ledger.engine,
            log=context.log.info,
        )


def mark_outcome(context: Any, code: str) -> None:
    """The run's first refusal or failure code as its `ud/outcome` tag: the run list in the UI
    says why a run failed without opening it. Never the step's failure if it cannot be set."""
    run_id = context.run.run_id
    try:
        run = context.instance.get_run_by_id(run_id)
        if run is not None and OUTCOME_TAG not in run.tags:
            context.instance.add_run_tags(run_id, {OUTCOME_TAG: code})
    except Exception as exc:  # the tag is for people; the ledger has the refusal
        context.log.warning(f"could not tag the run with its outcome {code}: {exc}")


def unit_named(context: Any, platform: Platform, name: str) -> Unit:
    """The unit a job's config names (rollback, preview, teardown), or the step's failure."""
    unit = platform.units.get(name)
    if unit is None:
        raise failure(
            UDError(
                "UD-UNKNOWN-UNIT", f"no unit named {name!r}", f"known: {', '.join(platform.units)}"
            ),
            context,
        )
    return unit


def failure(exc: UDError, context: Any = None) -> dg.Failure:
    """A step failure that carries the UD code, so `ud` can report it without parsing text; with
    the step's `context`, the run is tagged with the code too (mark_outcome)."""
    if context is not None:
        mark_outcome(context, exc.code)
    message, remediation = (
        redact_text(exc.message),
        redact_text(exc.remediation),
    )  # the event log is shown in the UI
    return dg.Failure(
        description=f"{exc.code}: {message}",
        allow_retries=False,
        metadata={
            "ud_code": exc.code,
            "ud_message": message,
            "remediation": remediation,
            "exit_code": exc.exit_code,
        },
    )


def refusal(
    ledger: Ledger,
    exc: UDError,
    *,
    principal: str,
    unit: str,
    env: str,
    version: str | None,
    run_id: str,
    refused: str = "",
    context: Any = None,
) -> dg.Failure:
    """Record a refusal and give back the step failure to raise (tagging the run of `context`
    with its code)."""
    record(
        ledger,
        Refusal(code=exc.code, message=exc.message, refused=refused, run_id=run_id),
        principal=principal,
        unit=unit,
        env=env,
        version=version,
    )
    return failure(exc, context)


def as_target_error(exc: Exception, doing: str) -> TargetError:
    """A target's failure as the TargetError the caller records; an exception that is not one
    (a bug, a full disk) keeps its type and message as the cause."""
    if isinstance(exc, TargetError):
        return exc
    if isinstance(exc, UDError):
        return TargetError(exc.code, exc.message, exc.remediation)
    return TargetError(
        "UD-TARGET-FAILED",
        f"{doing} failed: {type(exc).__name__}: {redact_text(str(exc))}",
        "the environment kept its previous version; fix the cause and promote again",
    )


def metadata_value(value: Any) -> Any:
    if isinstance(value, (str, int, float, bool)) or value is None:
        return (
            value
            if not (isinstance(value, str) and "\n" in value)
            else dg.MetadataValue.md(f"```\n{value}\n```")
        )
    return dg.MetadataValue.json(value)


def artifact_for(ledger: Ledger, unit: Unit, version: str) -> Artifact | None:
    entry = ledger.latest(
        unit=unit.name, action=Candidate.ACTION, predicate=lambda e: e.version == version
    )
    return Artifact(**Candidate.read(entry).artifact) if entry else None


def version_at(
    context: Any, platform: Platform, unit: Unit, stage: str
) -> tuple[str | None, Artifact | None]:
    """The version a stage holds now: the candidate this run built (or else the newest one
    built), or what an environment runs."""
    ledger = context.resources.ledger.ledger()
    if stage == CANDIDATE:
        # Another run of the same unit may have built a newer candidate meanwhile; its gates
        # ran there, not here.
        own = ledger.latest(
            unit=unit.name,
            action=Candidate.ACTION,
            predicate=lambda e: e.payload.get("run_id") == context.run.run_id,
        )
        if own is not None:
            return own.version, Artifact(**Candidate.read(own).artifact)
        event = context.instance.get_latest_materialization_event(
            dg.AssetKey([unit.name, CANDIDATE])
        )
        if event is None or event.asset_materialization is None:
            return None, None
        version = event.asset_materialization.metadata["version"].value
    else:
        dep = platform.target(unit, stage).status(unit, stage)
        if dep is None:
            return None, None
        version = dep.version
    return version, artifact_for(ledger, unit, version)
