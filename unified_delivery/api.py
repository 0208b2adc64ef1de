"""The Python front door: what `ud promote`, `ud rollback` and `ud status` do, from a notebook
or a script, with the same gates, runs and ledger.

    import unified_delivery as ud
    ud.promote("churn_model", to="staging")          # a unit of the platform repository
    ud.promote(my_model, to="staging")               # a @ud.model defined here, in the notebook

Failures raise the command line's exceptions with the same `UD-` codes: `GateRefused`
(a gate said no), `NotPermitted` (policy), `ConfigError` (a declaration), `UDError` (the rest).
The platform is the repository at or above the working directory (or `project=`/$UD_PROJECT);
the principal is the one of `token=` or $UD_TOKEN, else the policy's local principal.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .home import Home
from .kinds.model.decorator import ModelDefinition

if TYPE_CHECKING:
    from .platform import Platform


@dataclass(frozen=True)
class Promotion:
    unit: str
    env: str
    version: str | None
    previous_version: str | None
    run_id: str
    principal: str


def _load(project: str | Path | None):
    from .home import project_root
    from .service import load_platform

    return load_platform(Path(project).resolve() if project else project_root())


def _with(platform: Platform, definition: ModelDefinition) -> tuple[Any, Any]:
    """The platform with this definition in place of (or beside) the unit of the same name: a
    notebook's model goes through the repository's targets, ledger, policy and budgets."""
    from .platform import Platform, declared_unit

    others = [d for d in platform.declarations if declared_unit(d).name != definition.unit.name]
    variant = Platform(
        [*others, definition],
        targets=platform.targets,
        ledger=platform.ledger,
        governance=platform.governance,
        costs=platform.costs,
        notifications=platform.notifications,
        registry=platform.registry,
    )
    return variant, variant.definitions()


def promote(
    unit: str | ModelDefinition,
    *,
    to: str,
    reason: str = "",
    ref: str = "",
    token: str | None = None,
    project: str | Path | None = None,
) -> Promotion:
    """Build (or take from the previous environment), gate and deploy `unit` in `to`, as one Dagster
    run."""
    from . import service

    platform, defs = _load(project)
    if isinstance(unit, ModelDefinition):
        platform, defs = _with(platform, unit)
        unit = unit.unit.name
    home = Home.current()
    principal = service.identity(platform, token, home)
    outcome = service.promote(
        platform,
        defs,
        unit,
        to,
        reason=reason or "promoted from Python",
        ref=ref,
        principal=principal,
        home=home,
    )
    return _outcome(platform, unit, to, outcome, principal)


def rollback(
    unit: str,
    *,
    env: str,
    reason: str,
    to: str = "",
    token: str | None = None,
    project: str | Path | None = None,
) -> Promotion:
    """Return `unit` in `env` to the previous (or the given) version, as one Dagster run."""
    from . import service
    from .errors import UDError

    if not reason.strip():
        raise UDError(
            "UD-USAGE", "a rollback needs a reason", "say why, e.g. reason='errors after deploy'"
        )
    platform, defs = _load(project)
    home = Home.current()
    principal = service.identity(platform, token, home)
    outcome = service.rollback(
        platform, defs, unit, env, to=to, reason=reason, principal=principal, home=home
    )
    return _outcome(platform, unit, env, outcome, principal)


def _outcome(platform: Platform, unit: str, env: str, outcome: Any, principal: str) -> Promotion:
    """What `env` runs after the run, or the run's error raised."""
    if outcome.error:
        raise outcome.error
    declared = platform.unit(unit)
    dep = platform.target(declared, env).status(declared, env)
    return Promotion(
        unit=unit,
        env=env,
        version=dep.version if dep else None,
        previous_version=dep.previous_version if dep else None,
        run_id=outcome.run_id,
        principal=principal,
    )


def status(project: str | Path | None = None) -> dict[str, Any]:
    """Each unit's deployed version per environment: what `ud status --json` prints."""
    from . import service

    platform, _ = _load(project)
    return service.status(platform)
