"""What a platform offers and who may do what on it, as plain data: its units (kind, team,
environments, gates, dependencies, budget, policy) and a summary of its policy file (roles,
quotas, freezes), with the caller's own rights and what is left of its quotas today."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..platform import Platform


def units(platform: Platform) -> dict[str, Any]:
    """Every unit in dependency order, with the gates that guard each environment."""
    out = []
    for name in platform.order():
        unit = platform.units[name]
        out.append(
            {
                "name": name,
                "kind": unit.kind,
                "team": unit.team,
                "description": unit.description,
                "depends_on": list(unit.depends_on),
                "consumers": platform.consumers(name),
                "environments": list(unit.environments),
                "gates": [
                    {"name": g.name, "family": g.family, "stage": g.spec.stage}
                    for g in platform.gates[name]
                ],
                "budget": unit.budget.model_dump(mode="json", exclude_none=True),
                "policy": unit.policy.model_dump(mode="json"),
            }
        )
    return {"units": out}


def policy_summary(platform: Platform, principal: str) -> dict[str, Any]:
    """The policy's principals with their roles and quotas, its freezes (and which is active),
    and for `principal`: its roles per environment and its quotas with today's use."""
    gov = platform.governance
    envs = sorted({e for u in platform.units.values() for e in u.environments})
    me = gov.principal(principal)
    ledger = platform.ledger.ledger()
    quotas = {
        env: {
            "limit": limit,
            "used": (used := gov.quota_used(principal, env, ledger)),
            "left": max(limit - used, 0),
        }
        for env, limit in me.quotas.promotions_per_day.items()
    }
    active = {}
    for env in envs:
        if (found := gov.active_freeze(env)) is not None:
            freeze, (start, end) = found
            active[env] = {"until": end.isoformat(), "reason": freeze.reason}
    return {
        "source": gov.source,
        "you": {
            "principal": principal,
            "roles": {env: sorted(gov.roles(principal, env)) for env in envs},
            "promotions_per_day": quotas,
            "spend_per_month": me.quotas.spend_per_month,
        },
        "principals": {
            name: {
                "roles": {env: list(roles) for env, roles in p.roles.items()},
                "quotas": p.quotas.model_dump(mode="json", exclude_none=True),
            }
            for name, p in gov.policy.principals.items()
        },
        "freezes": [f.model_dump(mode="json", exclude_none=True) for f in gov.policy.freezes],
        "frozen_now": active,
        "roles": {
            "deploy": "promote into and roll back an environment",
            "approve": "approve a version for an environment (never one's own change)",
            "override": "break-glass past one failed gate (never the policy gate)",
            "admin": "issue tokens",
        },
    }
