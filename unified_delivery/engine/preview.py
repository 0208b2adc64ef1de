"""A branch's preview: build its candidate at the pushed commit, run the gates of the unit's
first environment on it, deploy it to `preview-<slug>` through that environment's target, and
say the verdict where a developer looks (the ledger, `ud previews`, a Git note on the commit).

The preview's build is not the unit's candidate: nothing is recorded as a `candidate` or a
`gate` entry, so a branch's commit never becomes what the first environment is promoted from.
Everything a preview did is in its one `preview` entry (events.PreviewDeployed).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Callable

import dagster as dg

from ..cost import measure
from ..errors import UDError
from ..events import PreviewDeployed, PreviewTornDown, record
from ..home import Home
from ..kinds.base import BuildContext
from ..previews import DEFAULT_TTL_HOURS, Verdict, env_for, expiry, is_live, write_note
from ..targets.roles import Removable
from ..units import CANDIDATE
from .build import priced
from .gating import evaluate_gate
from .locks import env_lock
from .steps import as_target_error, failure, principal_of, unit_named

if TYPE_CHECKING:
    from ..ledger import Ledger
    from ..platform import Platform
    from ..targets.base import Artifact, Deployment
    from ..units import Unit


BUILD_DETAILS = ("commit", "subject", "built", "reused", "deferred", "slim", "state")


class PreviewConfig(dg.Config):
    unit: str
    branch: str
    sha: str


class TeardownConfig(dg.Config):
    unit: str
    branch: str
    why: str = "manual"


@dataclass
class Outcome:
    verdict: Verdict
    seconds: float
    note: str


def run_preview(
    platform: Platform,
    unit: Unit,
    branch: str,
    sha: str,
    *,
    ledger: Ledger,
    principal: str,
    run_id: str = "",
    log: Callable[[str], None] = print,
) -> Outcome:
    """Build, gate and deploy `unit` at commit `sha` of `branch` into its preview environment;
    record the verdict and write it as the commit's Git note. A refusal (the build, a gate, the
    deploy) is a verdict too, never an exception; UDError only for a request that names no
    preview (the unit's own branch, a unit not built from Git) or another branch's."""
    source = unit.git_source()
    if source is None:
        raise UDError(
            "UD-PREVIEW-NOT-GIT",
            f"{unit.name} is not built from a Git repository: it has no branch previews",
            "previews are for app and data units with a `repository`",
        )
    if branch == source.branch:
        raise UDError(
            "UD-PREVIEW-OWN-BRANCH",
            f"{branch} is {unit.name}'s own branch: its pushes go to {unit.environments[0]}",
            "push another branch for a preview",
        )
    env = env_for(branch)
    taken = _taken_by(ledger, unit, env, branch)
    if taken:
        raise UDError(
            "UD-PREVIEW-SLUG-TAKEN",
            f"{unit.name}'s preview environment {env} is the live preview of branch {taken!r}, "
            f"not of {branch!r}",
            f"rename one of the branches, or delete {taken!r} (its preview goes with it)",
        )
    home = Home.current()
    first = unit.environments[0]
    target = platform.target(unit, first)
    started = time.monotonic()
    version, where, code, message = sha, "", "", ""
    gates: dict[str, Any] = {}
    build: dict[str, Any] = {}
    deployment: Deployment | None = None
    alias = ""
    with measure() as measured:
        try:
            artifact = _build(platform, unit, sha, home, principal, run_id, log)
            version = artifact.version
            build = {k: artifact.details[k] for k in BUILD_DETAILS if k in artifact.details}
            code, message = _gate(platform, unit, artifact, principal, ledger, run_id, log, gates)
            if not code:
                with env_lock(home, unit, env):
                    try:
                        alias = _serve_model(platform, unit, env, log)
                        deployment = target.deploy(unit, env, artifact, log=log)
                    except Exception as exc:  # a target's own bug too: a refused preview
                        raise as_target_error(exc, f"deploying {unit.name} {sha[:12]} to {env}")
        except UDError as exc:
            code, message = exc.code, exc.message
    passed = deployment is not None
    serving = deployment
    if serving is None:  # refused: an earlier push of the branch may still serve there
        try:
            serving = target.status(unit, env)
        except Exception:  # what serves is a detail of a refusal, never a second failure
            serving = None
    if deployment is not None:
        details = deployment.details
        schema = details.get("schema")
        where = str(details.get("url") or (f"schema {schema}" if schema else ""))
    seconds = round(time.monotonic() - started, 3)
    now = datetime.now(UTC)
    verdict = Verdict(
        unit=unit.name,
        branch=branch,
        env=env,
        sha=sha,
        version=version,
        passed=passed,
        code=code,
        message=message,
        where=where,
        gates=gates,
        at=now.isoformat(timespec="seconds"),
        expires_at=expiry(_ttl(unit), now),
    )
    repository = home.expand(source.repository)
    note = write_note(home.builds / unit.name / "mirror.git", repository, verdict)
    log(f"preview {unit.name} {branch} ({env}): {'passed' if passed else 'refused'}; note: {note}")
    details = serving.details if serving is not None else {}
    record(
        ledger,
        PreviewDeployed(
            branch=branch,
            sha=sha,
            repository=repository,
            passed=passed,
            code=code,
            message=message,
            url=str(details.get("url") or ""),
            schema=str(details.get("schema") or ""),
            alias=alias,
            serving=serving.version if serving is not None else "",
            gates=gates,
            build=build,
            expires_at=verdict.expires_at,
            seconds=seconds,
            note=note,
            run_id=run_id,
            team=unit.team,
            kind=unit.kind,
            **priced(platform, measured["usage"]),
        ),
        principal=principal,
        unit=unit.name,
        env=env,
        version=version,
    )
    return Outcome(verdict, seconds, note)


def _taken_by(ledger: Ledger, unit: Unit, env: str, branch: str) -> str:
    """The other branch whose live preview holds `env`, or "" (slugs of distinct branches
    differ by construction, previews.slug; a branch named like another's hashed slug does not)."""
    newest = ledger.latest(
        unit=unit.name, env=env, action=(PreviewDeployed.ACTION, PreviewTornDown.ACTION)
    )
    if newest is None or newest.action != PreviewDeployed.ACTION:
        return ""
    other = PreviewDeployed.read(newest).branch
    return other if other != branch else ""


def _ttl(unit: Unit) -> float:
    return float(unit.previews.ttl_hours or DEFAULT_TTL_HOURS)


def _build(
    platform: Platform,
    unit: Unit,
    sha: str,
    home: Home,
    principal: str,
    run_id: str,
    log: Callable[[str], None],
) -> Artifact:
    ctx = BuildContext(
        home=home,
        target=platform.target(unit, unit.environments[0]),
        targets=platform.targets,
        units=platform.units,
        config={"ref": sha},
        trainer=platform.trainers.get(unit.name),
        log=log,
        principal=principal,
        run_id=run_id,
    )
    return platform.translator(unit).build_candidate(unit, ctx)


def _gate(
    platform: Platform,
    unit: Unit,
    artifact: Artifact,
    principal: str,
    ledger: Ledger,
    run_id: str,
    log: Callable[[str], None],
    codes: dict[str, Any],
) -> tuple[str, str]:
    """The gates that guard the unit's first environment, on the preview's build: ('', '') when
    all passed, else the first refusal's code and message. Every gate runs (the note lists
    them all)."""
    refused = ("", "")
    for gate in platform.gates[unit.name]:
        if gate.spec.stage != CANDIDATE:
            continue
        result = evaluate_gate(
            platform, unit, gate, artifact.version, artifact, principal, ledger, log, run_id
        )
        codes[gate.name] = result.code
        if not result.passed and not refused[0]:
            refused = (result.code, f"gate {gate.name}: {result.message}")
    return refused


def preview_step(context: Any, platform: Platform, config: PreviewConfig) -> dict[str, Any]:
    """The preview job's one step (translator.preview_job)."""
    unit = unit_named(context, platform, config.unit)
    env = env_for(config.branch)
    principal = principal_of(context, platform, unit=unit.name, env=env)
    try:
        done = run_preview(
            platform,
            unit,
            config.branch,
            config.sha,
            ledger=context.resources.ledger.ledger(),
            principal=principal,
            run_id=context.run.run_id,
            log=context.log.info,
        )
    except UDError as exc:
        raise failure(exc, context) from None
    v = done.verdict
    metadata = {
        "unit": v.unit,
        "branch": v.branch,
        "env": v.env,
        "version": v.version,
        "verdict": "passed" if v.passed else "refused",
        "where": v.where,
        "code": v.code,
        "note": done.note,
        "seconds": done.seconds,
    }
    if not v.passed:
        refused = UDError(v.code or "UD-PREVIEW-REFUSED", v.message, "see the commit's Git note")
        raise failure(refused, context)
    return metadata


def tear_down(
    platform: Platform,
    unit: Unit,
    branch: str,
    why: str,
    *,
    ledger: Ledger,
    principal: str,
    run_id: str = "",
    log: Callable[[str], None] = print,
) -> list[str] | None:
    """Remove `branch`'s preview of `unit` through its target and record it; None when there is
    no live preview to remove (torn down already: a deleted branch that was merged first)."""
    env = env_for(branch)
    if not is_live(ledger, unit.name, env):
        log(f"{unit.name} has no live preview {env}: nothing to tear down")
        return None
    removed: list[str] = []
    with env_lock(Home.current(), unit, env):
        target = platform.target(unit, unit.environments[0])
        if not isinstance(target, Removable):
            raise UDError(
                "UD-PREVIEW-TEARDOWN",
                f"{unit.name}'s target {type(target).__name__} cannot remove an environment",
                "give the unit's first environment a target with `remove` (roles.Removable), "
                "or turn its previews off (`previews: {enabled: false}`)",
            )
        removed += target.remove(unit, env, log)
        removed += _remove_served_model(platform, unit, env, log)
    record(
        ledger,
        PreviewTornDown(branch=branch, why=why, removed=removed, run_id=run_id),
        principal=principal,
        unit=unit.name,
        env=env,
    )
    return removed


def _serve_model(platform: Platform, unit: Unit, env: str, log: Callable[[str], None]) -> str:
    """An app that serves a model reads the model's version of its own environment: a preview
    environment gets the alias `preview-<slug>` on the version the model has in the app's
    first environment. Returns the model URI it set ("" for an app that serves none)."""
    from ..targets.base import Artifact

    uris = []
    for dep, _ in platform.translator(unit).env_deps(unit, env, platform.units):
        model = platform.units[dep]
        first = unit.environments[0]
        target = platform.target(model, model.environments[0])
        current = platform.target(model, first).status(model, first)
        if current is None:
            raise UDError(
                "UD-PROMOTE-DEPENDENCY",
                f"{unit.name} serves {dep}, which has no {first} version for its preview",
                f"promote {dep} to {first} first (ud promote {dep} --to {first})",
            )
        done = target.deploy(model, env, Artifact(dep, model.kind, current.version), log=log)
        uris.append(str(done.details.get("model_uri") or f"{dep}@{env}"))
    return ", ".join(uris)


def _remove_served_model(
    platform: Platform, unit: Unit, env: str, log: Callable[[str], None]
) -> list[str]:
    """The model alias a preview of an app that serves a model set (`_serve_model`)."""
    served = platform.translator(unit).env_deps(unit, env, platform.units)
    removed = []
    for dep, dep_env in served:
        model = platform.units[dep]
        target = platform.target(model, model.environments[0])
        if isinstance(target, Removable):
            removed += target.remove(model, dep_env, log)
    return removed


def teardown_step(context: Any, platform: Platform, config: TeardownConfig) -> dict[str, Any]:
    """The preview teardown job's one step (translator.preview_teardown_job)."""
    unit = unit_named(context, platform, config.unit)
    env = env_for(config.branch)
    principal = principal_of(context, platform, unit=unit.name, env=env)
    try:
        removed = tear_down(
            platform,
            unit,
            config.branch,
            config.why,
            ledger=context.resources.ledger.ledger(),
            principal=principal,
            run_id=context.run.run_id,
            log=context.log.info,
        )
    except UDError as exc:
        raise failure(exc, context) from None
    return {"unit": unit.name, "env": env, "why": config.why, "removed": removed or []}


def prune(
    platform: Platform,
    principal: str,
    *,
    now: datetime | None = None,
    log: Callable[[str], None] = print,
) -> list[dict[str, Any]]:
    """Tear down every live preview whose time to live is over (`ud previews --prune`; the Git
    sensor does the same at each tick). The principal needs deploy where the unit's previews
    come from (its first environment)."""
    from ..previews import live

    ledger = platform.ledger.ledger()
    done = []
    for row in live(ledger, now=now):
        unit = platform.units.get(row["unit"])
        if not row["expired"] or unit is None:
            continue
        platform.governance.authorize(principal, "deploy", unit.environments[0])
        removed = tear_down(
            platform, unit, row["branch"], "expired", ledger=ledger, principal=principal, log=log
        )
        done.append({**row, "removed": removed or []})
    return done
