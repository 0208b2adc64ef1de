"""What a promotion or rollback would do, changing nothing (`--dry-run`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..errors import EXIT_FORBIDDEN, EXIT_GATE, EXIT_OK, EXIT_TARGET, EXIT_USAGE
from ..units import CANDIDATE
from .launch import check_ref, unit_in

if TYPE_CHECKING:
    from ..platform import Platform


def _plan(
    action: str,
    unit: str,
    env: str,
    principal: str,
    before: str | None,
    after: str | None,
    blocked: list[dict],
    **extra: Any,
) -> dict[str, Any]:
    # As kubectl's: a dry run the real command would refuse is not ok, and exits with the code
    # of the first refusal (plan_exit_code).
    return {
        "ok": not blocked,
        "dry_run": True,
        "action": action,
        "unit": unit,
        "env": env,
        "principal": principal,
        "from_version": before,
        "to_version": after,
        **extra,
        "permitted": not blocked,
        "blocked_by": blocked,
        "changes": f"{env} of {unit}: {before or 'nothing'} -> {after or 'nothing'}",
    }


def plan_exit_code(plan: dict[str, Any]) -> int:
    """What the command itself would exit with: 0, or the first refusal's code."""
    blocked = plan["blocked_by"]
    return blocked[0]["exit_code"] if blocked else EXIT_OK


def _governance(platform: Platform, principal: str, env: str) -> list[dict]:
    blocked = []
    if not platform.governance.allowed(principal, "deploy", env):
        blocked.append(
            {
                "code": "UD-AUTH-FORBIDDEN",
                "message": f"{principal} may not deploy in {env}",
                "remediation": f"ask someone with the deploy role in {env} to act; roles change "
                "only through a reviewed change of the platform's policy",
                "exit_code": EXIT_FORBIDDEN,
            }
        )
    if (freeze := platform.governance.active_freeze(env)) is not None:
        blocked.append(
            {
                "code": "UD-GATE-FREEZE-ACTIVE",
                "message": f"{env} is frozen until {freeze[1][1].isoformat()}",
                "remediation": "wait for the freeze to end, or ask for a break-glass override",
                "exit_code": EXIT_GATE,
            }
        )
    return blocked


def promote_plan(
    platform: Platform, unit_name: str, env: str, principal: str, ref: str = ""
) -> dict[str, Any]:
    """The version a promotion would deploy, the gates it runs, and whether policy allows it."""
    unit = unit_in(platform, unit_name, env)
    upstream = unit.previous_stage(env)
    current = platform.target(unit, env).status(unit, env)
    if upstream == CANDIDATE:
        check_ref(platform, unit, ref)
        source = unit.git_source()
        built_from = ref or (source and source.branch) or "the unit source"
        version = f"a new candidate built from {built_from}"
    else:
        dep = platform.target(unit, upstream).status(unit, upstream)
        version = dep.version if dep else None
    gates = [
        {"name": g.name, "family": g.family, "stage": g.spec.stage}
        for g in platform.gates[unit.name]
        if g.spec.stage == upstream
    ]
    blocked = _governance(platform, principal, env)
    if version is None:
        blocked.append(
            {
                "code": "UD-PROMOTE-NOTHING",
                "message": f"{upstream} holds no version",
                "remediation": f"promote it to {upstream} first",
                "exit_code": EXIT_USAGE,
            }
        )
    return _plan(
        "promote",
        unit_name,
        env,
        principal,
        current.version if current else None,
        version,
        blocked,
        gates=gates,
    )


def rollback_plan(
    platform: Platform, unit_name: str, env: str, principal: str, to: str = ""
) -> dict[str, Any]:
    """The version a rollback would go back to, and what would refuse it."""
    from ..engine import rollback_candidates

    unit = unit_in(platform, unit_name, env)
    current = platform.target(unit, env).status(unit, env)
    version = to or (current.previous_version if current else None)
    blocked = _governance(platform, principal, env)
    if version is None:
        blocked.append(
            {
                "code": "UD-ROLLBACK-NOTHING",
                "message": f"{env} has no previous version",
                "remediation": "nothing to roll back to; promote a fixed version instead",
                "exit_code": EXIT_TARGET,
            }
        )
    elif version not in rollback_candidates(platform.ledger.ledger(), platform, unit, env):
        blocked.append(
            {
                "code": "UD-ROLLBACK-NOT-DEPLOYED",
                "message": f"{version[:12]} never ran in {env}",
                "remediation": f"roll back only to a version {env} ran (`ud audit export`)",
                "exit_code": EXIT_FORBIDDEN,
            }
        )
    return _plan(
        "rollback",
        unit_name,
        env,
        principal,
        current.version if current else None,
        version,
        blocked,
        consumers=platform.consumers(unit_name),
    )
