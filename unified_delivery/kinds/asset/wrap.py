"""The asset kind's front door: a plain Dagster asset, used as written, joined as a unit.

`wrap_asset(my_asset, team=..., checks=[...], resources={...})` declares the unit and
keeps the asset's function as it is. The candidate is the value the asset returns: the
build (translator.py) materializes the asset alone, in this process, on a throwaway Dagster
instance, through an IO manager that writes the value under `<home>/builds/<unit>/<version>/`
(values.py). The version is the value's content digest, so the same value is the same
version. The asset's own `@dg.asset_check`s become gates (gates/asset_check.py) that run, the same
way, against that stored value.

Supported: one unpartitioned asset whose function takes no input from other assets
(`deps=` for lineage is fine) and returns its value. Anything else is refused when the
unit is declared (docs/escape-hatch.md).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import dagster as dg
from pydantic import ValidationError

from ...errors import ConfigError
from ...run_tags import QUIET_LOGS
from ...units import CANDIDATE, Budget, GateSpec, Policy, field_error
from .unit import AssetUnit

JOB = "ud_wrapped_asset"


@dataclass(frozen=True)
class WrappedAsset:
    """An asset unit with what its build and its check gates run: the asset as written,
    its checks and the Dagster resources they need."""

    unit: AssetUnit
    asset: dg.AssetsDefinition
    checks: tuple[dg.AssetChecksDefinition, ...] = ()
    resources: Mapping[str, Any] = field(default_factory=dict)

    def io_manager_keys(self) -> set[str]:
        return {"io_manager", self.asset.get_io_manager_key_for_asset_key(self.asset.key)}

    def check_selection(self, name: str) -> dg.AssetSelection:
        """The check named, with the checks a @multi_asset_check runs together with it."""
        owner = next(d for d in self.checks if any(s.name == name for s in d.check_specs))
        return dg.AssetSelection.checks(*owner.check_keys)

    def execute(
        self, selection: dg.AssetSelection, store: dg.IOManager
    ) -> dg.ExecuteInProcessResult:
        """One run of the asset or of its checks on a throwaway instance; values go through
        `store`."""
        io = dg.IOManagerDefinition.hardcoded_io_manager(store)
        defs = dg.Definitions(
            assets=[self.asset],
            asset_checks=list(self.checks),
            jobs=[dg.define_asset_job(JOB, selection=selection)],
            resources={**self.resources, **dict.fromkeys(self.io_manager_keys(), io)},
        )
        with dg.DagsterInstance.ephemeral() as instance:
            return defs.resolve_job_def(JOB).execute_in_process(
                instance=instance, run_config=QUIET_LOGS, raise_on_error=False
            )


def wrap_asset(
    asset_def: dg.AssetsDefinition,
    *,
    team: str,
    gates: Iterable[GateSpec | dict] = (),
    budget: Budget | dict | None = None,
    policy: Policy | dict | None = None,
    checks: Iterable[dg.AssetChecksDefinition] = (),
    resources: Mapping[str, Any] | None = None,
    name: str | None = None,
    description: str = "",
    depends_on: Iterable[str] = (),
    environments: Iterable[str] | None = None,
) -> WrappedAsset:
    """Join a plain `@dg.asset` to the platform as a unit; each of its `checks` becomes a gate."""
    if not isinstance(asset_def, dg.AssetsDefinition) or isinstance(
        asset_def, dg.AssetChecksDefinition
    ):
        raise ConfigError(
            "UD-CONFIG-ASSET",
            f"wrap_asset: {asset_def!r} is not a Dagster asset",
            "pass the function decorated with @dg.asset",
        )
    if len(asset_def.keys) != 1:
        raise ConfigError(
            "UD-CONFIG-ASSET",
            f"{f'unit {name}' if name else 'wrap_asset'}: field asset: a multi-asset "
            f"({', '.join(sorted(k.to_user_string() for k in asset_def.keys))})",
            "wrap a single @dg.asset; split the multi-asset or wrap each output as its own asset",
        )
    unit_name = name or asset_def.key.path[-1]
    source = f"wrap_asset({asset_def.key.to_user_string()})"
    checks = tuple(checks)
    resources = dict(resources or {})
    decl: dict[str, Any] = {
        "name": unit_name,
        "team": team,
        "gates": list(gates),
        "asset_key": asset_def.key.to_user_string(),
        "description": description or asset_def.descriptions_by_key.get(asset_def.key) or "",
        "depends_on": list(depends_on),
        "checks": [s.name for c in checks for s in _check_specs(c)],
    }
    optional = {
        "budget": budget,
        "policy": policy,
        "environments": None if environments is None else tuple(environments),
    }
    decl.update({k: v for k, v in optional.items() if v is not None})
    try:
        unit = AssetUnit(**decl)
    except ValidationError as exc:
        raise field_error(exc, unit_name, source, AssetUnit) from None
    wrapped = WrappedAsset(unit=unit, asset=asset_def, checks=checks, resources=resources)
    _refuse_what_cannot_run(wrapped)
    covered = {
        g.settings.get("check")
        for g in unit.gates
        if g.type == "asset-check" and g.stage == CANDIDATE
    }
    own = [
        GateSpec(type="asset-check", name=c, settings={"check": c})
        for c in unit.checks
        if c not in covered
    ]
    return WrappedAsset(
        unit=unit.model_copy(update={"gates": [*unit.gates, *own]}),
        asset=asset_def,
        checks=checks,
        resources=resources,
    )


def _check_specs(checks_def: Any) -> list[dg.AssetCheckSpec]:
    return list(checks_def.check_specs) if isinstance(checks_def, dg.AssetChecksDefinition) else []


def _refuse_what_cannot_run(wrapped: WrappedAsset) -> None:
    """What a build on its own could not do, said when the unit is declared."""
    unit, asset = wrapped.unit, wrapped.asset

    def refuse(fieldname: str, problem: str, remediation: str) -> None:
        raise ConfigError(
            "UD-CONFIG-ASSET", f"unit {unit.name}: field {fieldname}: {problem}", remediation
        )

    if asset.partitions_def is not None:
        refuse(
            "asset",
            f"{unit.asset_key} is partitioned",
            "wrap an unpartitioned asset; partitioned assets are not supported",
        )
    if not asset.is_executable:
        refuse(
            "asset",
            f"{unit.asset_key} is an external asset with nothing to run",
            "wrap an @dg.asset function",
        )
    inputs = [i.name for i in asset.node_def.input_defs if not i.dagster_type.is_nothing]
    if inputs:
        refuse(
            "asset",
            f"{unit.asset_key} takes inputs from other assets ({', '.join(inputs)})",
            "wrap an asset that reads what it needs itself (a resource, a file, a warehouse "
            "table); `deps=[...]` without arguments is fine",
        )
    for checks_def in wrapped.checks:
        if not isinstance(checks_def, dg.AssetChecksDefinition):
            refuse(
                "checks",
                f"{checks_def!r} is not a Dagster asset check",
                "pass functions decorated with @dg.asset_check",
            )
        for spec in _check_specs(checks_def):
            if spec.asset_key != asset.key:
                refuse(
                    "checks",
                    f"check {spec.name!r} checks {spec.asset_key.to_user_string()}, not "
                    f"{unit.asset_key}",
                    "pass only the checks of the wrapped asset",
                )
    if len(set(unit.checks)) != len(unit.checks):
        refuse(
            "checks",
            "two checks have the same name",
            "give each check of the asset a distinct name",
        )
    io_keys = wrapped.io_manager_keys()
    given_io = sorted(io_keys & set(wrapped.resources))
    if given_io:
        refuse(
            "resources",
            f"{given_io} name IO managers; ud stores the asset's value itself",
            "leave IO managers out of resources={...}",
        )
    needed = (
        set(asset.required_resource_keys).union(*(c.required_resource_keys for c in wrapped.checks))
        - io_keys
    )
    missing = sorted(needed - set(wrapped.resources))
    if missing:
        refuse(
            "resources",
            f"the asset or its checks need resources {missing} that were not given",
            "pass them: wrap_asset(..., "
            f"resources={{{', '.join(repr(m) + ': ...' for m in missing)}}})",
        )
