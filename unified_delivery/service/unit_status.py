"""What every unit runs in every environment."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..platform import Platform


def status(platform: Platform) -> dict[str, Any]:
    """Each unit's deployed version, time (and URL, for a service) per environment, in
    dependency order: what `ud status --json` prints. A deploy whose run died before it
    recorded its outcome is completed first (engine/recovery.py)."""
    from ..engine.recovery import recover_all

    recover_all(platform.ledger.ledger(), platform)
    units = []
    for name in platform.order():
        unit = platform.units[name]
        envs: dict[str, Any] = {}
        for env in unit.environments:
            dep = platform.target(unit, env).status(unit, env)
            envs[env] = (
                None
                if dep is None
                else {
                    "version": dep.version,
                    "deployed_at": dep.deployed_at,
                    **({"url": dep.details["url"]} if "url" in dep.details else {}),
                }
            )
        units.append({"name": name, "kind": unit.kind, "team": unit.team, "environments": envs})
    return {"units": units}
