"""What every unit runs in every environment: the platform's record beside the target's."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

from .. import soak
from ..soak import soak_until

if TYPE_CHECKING:
    from ..engine.desired import EnvState
    from ..platform import Platform
    from ..targets.records import Deployment


def status(platform: Platform) -> dict[str, Any]:
    """Each unit's version per environment, in dependency order: what `ud status --json`
    prints. `version` is what the platform deployed there (the ledger's last promotion or
    rollback); `actual_version` what the target runs; `in_sync` whether they agree. A version
    that reached an environment outside the platform is never `version`. A deploy whose run
    died before it recorded its outcome is completed first (engine/recovery.py)."""
    from ..engine.desired import EnvState, recorded_changes
    from ..engine.recovery import recover_all

    ledger = platform.ledger.ledger()
    recover_all(ledger, platform)
    recorded = recorded_changes(ledger)
    units = []
    for name in platform.order():
        unit = platform.units[name]
        envs: dict[str, Any] = {}
        monitored = soak.monitored_env(unit)
        soak_s = unit.monitor.soak_s if unit.monitor else None
        for env in unit.environments:
            state = EnvState(
                recorded.get((name, env)), platform.target(unit, env).status(unit, env)
            )
            envs[env] = _env(state, soak_s if env == monitored else None)
        units.append({"name": name, "kind": unit.kind, "team": unit.team, "environments": envs})
    return {"units": units}


def status_from_record() -> dict[str, Any]:
    """`status` of the platform repository `ud` runs in, without loading it where it can: from
    its catalog (catalog.py: written by the last load, current while the definitions' files are
    unchanged), the ledger and each target's probe (targets/probes.py), importing neither
    Dagster nor MLflow. The platform is loaded, and `status` asked, when the catalog is missing
    or stale, or a deploy that died is to be completed first (rare); a target without a probe
    is asked itself, on the platform loaded for it. Same answer as `status`."""
    from ..engine.desired import EnvState, recorded_changes
    from ..engine.recovery import to_recover
    from ..targets.probes import NO_PROBE, Probing, probe
    from .loading import read_catalog

    catalog = read_catalog()
    ledger = catalog.ledger()
    if catalog.platform is not None or to_recover(ledger, (u["name"] for u in catalog.units)):
        return status(catalog.loaded())
    recorded = recorded_changes(ledger)
    units = []
    with Probing() as session:
        for entry in catalog.units:
            name = entry["name"]
            monitor = entry.get("monitor") or {}
            envs: dict[str, Any] = {}
            for env in entry["environments"]:
                actual = probe(entry["probes"].get(env), env, session)
                if actual is NO_PROBE:  # only the target can say: on the platform, loaded once
                    platform = catalog.loaded()
                    unit = platform.unit(name)
                    actual = platform.target(unit, env).status(unit, env)
                state = EnvState(recorded.get((name, env)), cast("Deployment | None", actual))
                envs[env] = _env(
                    state, monitor.get("soak_s") if env == monitor.get("env") else None
                )
            units.append(
                {"name": name, "kind": entry["kind"], "team": entry["team"], "environments": envs}
            )
    return {"units": units}


def _env(state: EnvState, soak_s: float | None = None) -> dict[str, Any] | None:
    if state.recorded is None and state.actual is None:
        return None
    actual = state.actual
    if state.in_sync and actual is not None:
        deployed_at = actual.deployed_at
    else:
        deployed_at = state.recorded.ts if state.recorded else None
    # a deploy soaks, not a rollback to the version that ran before it
    soaking = state.recorded is not None and state.recorded.action == "promotion"
    return {
        "version": state.recorded_version,
        "deployed_at": deployed_at,
        # where it answers, for an app with state the folder its state lives in, and for an
        # app release whether it runs as a process or a container of its image
        **{
            k: actual.details[k]
            for k in ("url", "state_dir", "runtime", "image")
            if actual and k in actual.details
        },
        "actual_version": state.actual_version,
        "in_sync": state.in_sync,
        # a monitored environment after its deploy (soak.py): until when its monitor runs
        **(
            {"soak_until": until}
            if soak_s and soaking and (until := soak_until(deployed_at, soak_s))
            else {}
        ),
    }
