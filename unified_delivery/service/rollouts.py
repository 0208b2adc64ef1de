"""A unit's canary rollout in an environment, as `ud rollout status` tells it: the step it is
at, the weights, and each step's analysis so far (targets/rollout.py writes the record), read
from the catalog and the release folder without loading the platform."""

from __future__ import annotations

from typing import Any

from ..errors import UDError


def rollout_status(unit_name: str, env: str) -> dict[str, Any]:
    from ..targets.probes import release_paths
    from ..targets.rollout import read_record
    from .loading import read_catalog

    catalog = read_catalog()
    entry = next((u for u in catalog.units if u["name"] == unit_name), None)
    if entry is None:
        raise UDError(
            "UD-UNKNOWN-UNIT",
            f"no unit named {unit_name!r}",
            f"known units: {', '.join(catalog.data['declared'])}",
        )
    if env not in entry["environments"]:
        raise UDError(
            "UD-UNKNOWN-ENV",
            f"{unit_name} has no environment {env!r}",
            f"use one of: {', '.join(entry['environments'])}",
        )
    spec = (entry.get("probes") or {}).get(env) or {}
    if spec.get("probe") != "local_release":
        raise UDError(
            "UD-USAGE",
            f"{unit_name} in {env} is not deployed by the embedded app target, whose rollouts "
            "this command reads",
            "on Kubernetes a rollout is an Argo Rollout: kubectl argo rollouts get rollout "
            f"{unit_name} -n {env}",
        )
    record = read_record(release_paths(spec.get("home", ""), unit_name, env))
    if record is None:
        return {"unit": unit_name, "env": env, "status": "none", "analysis": []}
    return {"unit": unit_name, **{k: v for k, v in record.items() if k != "unit"}}
