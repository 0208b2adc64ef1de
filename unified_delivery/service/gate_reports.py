"""The latest result of each gate of a unit, for the newest candidate or what an environment
runs."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

from ..errors import UDError
from ..events import Candidate, GateEvaluated
from ..units import CANDIDATE

if TYPE_CHECKING:
    from ..gates import GateResult
    from ..ledger import Ledger
    from ..platform import Platform
    from ..targets.records import Deployment

Live = Callable[[int, str], "GateResult"]  # the unit's i-th gate evaluated now for a version


def gate_report(
    platform: Platform, unit_name: str, env: str = "", version: str = ""
) -> dict[str, Any]:
    """Each gate's newest recorded result for the version (with any override in force);
    approvals still pending are evaluated live, since an approval may have come since. The
    version: `version` (any version built, or the start of one), else what `env` runs, else the
    newest candidate."""
    from ..engine import evaluate_gate

    unit = platform.unit(unit_name)
    _check_env(unit.name, list(unit.environments), env)
    ledger = platform.ledger.ledger()
    gates = platform.gates[unit.name]

    def live(i: int, version: str) -> GateResult:
        return evaluate_gate(platform, unit, gates[i], version, None, "", ledger)

    dep = platform.target(unit, env).status(unit, env) if env and not version else None
    rows = [_row(g.name, g.family, g.spec.stage, g.overridable, g.reported_live) for g in gates]
    return _report(ledger, unit.name, list(unit.environments), env, dep, rows, live, version)


def gate_report_from_record(unit_name: str, env: str = "", version: str = "") -> dict[str, Any]:
    """`gate_report` from the platform's catalog (catalog.py), the ledger and the target's probe,
    without loading the platform: loaded only for what only it can answer (a pending approval
    evaluated live, a target without a probe) or when the catalog is stale. Same answer."""
    from ..targets.probes import NO_PROBE, probe
    from .loading import read_catalog

    catalog = read_catalog()
    if catalog.platform is not None:
        return gate_report(catalog.platform, unit_name, env, version)
    entry = next((u for u in catalog.units if u["name"] == unit_name), None)
    if entry is None:
        raise UDError(
            "UD-UNKNOWN-UNIT",
            f"no unit named {unit_name!r}",
            f"known units: {', '.join(catalog.data['declared'])}",
        )
    _check_env(unit_name, entry["environments"], env)

    def live(i: int, version: str) -> GateResult:
        from ..engine import evaluate_gate

        platform = catalog.loaded()
        unit = platform.unit(unit_name)
        return evaluate_gate(
            platform, unit, platform.gates[unit_name][i], version, None, "", ledger
        )

    ledger = catalog.ledger()
    dep = probe(entry["probes"].get(env), env) if env and not version else None
    if dep is NO_PROBE:
        platform = catalog.loaded()
        unit = platform.unit(unit_name)
        dep = platform.target(unit, env).status(unit, env)
    rows = [_row(**g) for g in entry["gates"]]
    return _report(
        ledger,
        unit_name,
        entry["environments"],
        env,
        cast("Deployment | None", dep),
        rows,
        live,
        version,
    )


def _built(ledger: Ledger, unit_name: str, wanted: str) -> str:
    """The built version `wanted` names (the whole version or its start), else a refusal."""
    versions: list[str] = []
    for e in reversed(ledger.entries(unit=unit_name, action=Candidate.ACTION)):
        if e.version and e.version.startswith(wanted) and e.version not in versions:
            versions.append(e.version)
    if wanted in versions:
        return wanted
    if len(versions) == 1:
        return versions[0]
    raise UDError(
        "UD-UNKNOWN-VERSION",
        f"{unit_name} has no built version {wanted!r}"
        if not versions
        else f"{wanted!r} names {len(versions)} built versions of {unit_name}",
        "give the version as `ud gates UNIT` or `ud status` prints it"
        if not versions
        else "give more of the version",
    )


def _check_env(unit_name: str, environments: list[str], env: str) -> None:
    if env and env not in environments:
        raise UDError(
            "UD-UNKNOWN-ENV",
            f"{unit_name} has no environment {env!r}",
            f"use one of: {', '.join(environments)}",
        )


def _row(name: str, family: str, stage: str, overridable: bool, reported_live: bool) -> dict:
    return {
        "name": name,
        "family": family,
        "stage": stage,
        "overridable": overridable,
        "reported_live": reported_live,
    }


def _report(
    ledger: Ledger,
    unit_name: str,
    environments: list[str],
    env: str,
    dep: Deployment | None,
    gates: list[dict],
    live: Live,
    wanted: str = "",
) -> dict[str, Any]:
    from ..engine.overrides import OverriddenGate, override_in_force

    stages = [CANDIDATE, *environments]
    if wanted:
        version = _built(ledger, unit_name, wanted)
    elif env:
        version = dep.version if dep else None
    else:
        entry = ledger.latest(unit=unit_name, action=Candidate.ACTION)
        version = entry.version if entry else None
    rows = []
    for i, gate in enumerate(gates):
        entry = ledger.latest(
            unit=unit_name,
            action=GateEvaluated.ACTION,
            predicate=lambda e, g=gate: (
                e.payload.get("gate") == g["name"]
                and e.version == version
                and e.payload.get("stage") == g["stage"]
            ),
        )
        p = entry.payload if entry else {}
        named = OverriddenGate(unit_name, gate["name"], gate["stage"], gate["overridable"])
        guards = stages[stages.index(gate["stage"]) + 1]
        override = override_in_force(ledger, named, version, guards=guards) if version else None
        row = {
            "name": gate["name"],
            "family": gate["family"],
            "stage": gate["stage"],
            "passed": p.get("passed"),
            "code": p.get("code"),
            "message": p.get("message", "not run for this version"),
            "remediation": p.get("remediation", ""),
            "overridden": bool(p.get("overridden") or override),
            "at": entry.ts if entry else None,
            "evidence": p.get("metadata", {}),  # what the gate measured and compared
        }
        if override:
            row["override"] = {
                "by": override["by"],
                "justification": override["justification"],
                "expires_at": override["expires_at"],
                "for": override.get("for") or [override["by"]],
            }
        if gate["reported_live"] and version and not p.get("passed"):
            result = live(i, version)
            row.update(
                passed=result.passed,
                code=result.code,
                message=result.message,
                remediation=result.remediation,
            )
        rows.append(row)
    return {"unit": unit_name, "version": version, "env": env or CANDIDATE, "gates": rows}
