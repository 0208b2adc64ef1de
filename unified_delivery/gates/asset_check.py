"""A wrapped Dagster asset's own `@dg.asset_check`, run as written against the stored
value of the version under review (not a recomputation), on a throwaway instance.

`ud.wrap_asset(..., checks=[...])` adds one such gate per check, named after it. A check
that fails with WARN severity passes the gate (as it would not block in Dagster) unless
`fail_on_warn` is set; a check that raises is a gate that could not run, never a pass.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import ConfigError, UDError
from ..kinds.asset.unit import AssetUnit
from ..units import Unit
from .base import Gate, GateContext, GateResult, GateSettings


class AssetCheckSettings(GateSettings):
    check: str  # the name of a check passed to wrap_asset(checks=[...])
    fail_on_warn: bool = False


class AssetCheckGate(Gate[AssetCheckSettings]):
    type = "asset-check"
    family = "tests"
    kinds = ("asset",)
    Settings = AssetCheckSettings

    def validate_for(self, unit: Unit) -> None:
        assert isinstance(unit, AssetUnit)  # the registry builds it for asset units only
        if self.settings.check not in unit.checks:
            raise ConfigError(
                "UD-CONFIG-GATE",
                f"unit {unit.name}: gate {self.name!r} field settings.check: "
                f"{self.settings.check!r} is not a check wrapped with {unit.asset_key}",
                "pass the @dg.asset_check in wrap_asset(checks=[...]); wrapped: "
                f"{', '.join(unit.checks) or 'none'}",
            )

    def evaluate(self, ctx: GateContext) -> GateResult:
        from ..kinds.asset.translator import run_error
        from ..kinds.asset.values import ValueStore
        from ..kinds.asset.wrap import WrappedAsset

        unit = ctx.unit
        assert isinstance(unit, AssetUnit)  # the registry builds it for asset units only
        wrapped = ctx.whole_platform().trainers.get(unit.name)
        if not isinstance(wrapped, WrappedAsset):
            raise UDError(
                "UD-ASSET-NOT-WRAPPED",
                f"unit {ctx.unit.name}: no Dagster asset was wrapped for it",
                "declare it with ud.wrap_asset(my_asset, ...)",
            )
        if ctx.artifact is None or not Path(ctx.artifact.location).is_file():
            return GateResult(
                False,
                "UD-GATE-ERROR",
                f"no stored value of {ctx.version} to check",
                f"build the candidate again: ud promote {ctx.unit.name} --to "
                f"{ctx.unit.environments[0]}",
            )
        name = self.settings.check
        result = wrapped.execute(
            wrapped.check_selection(name), ValueStore(Path(ctx.artifact.location).parent)
        )
        evaluation = next(
            (e for e in result.get_asset_check_evaluations() if e.check_name == name), None
        )
        if evaluation is None:
            raise UDError(
                "UD-GATE-ASSET-CHECK-ERROR",
                f"check {name} of {unit.asset_key} did not run: {run_error(result)}",
                "fix the check so that it returns an AssetCheckResult",
            )
        severity = evaluation.severity.value
        meta = {
            **{k: _plain(v.value) for k, v in evaluation.metadata.items()},
            "check": name,
            "asset": unit.asset_key,
            "severity": severity,
            "value": ctx.artifact.location,
        }
        said = f": {evaluation.description}" if evaluation.description else ""
        if evaluation.passed:
            return GateResult(
                True,
                "UD-GATE-ASSET-CHECK-PASSED",
                f"check {name} passed on {ctx.version[:12]}{said}",
                "",
                meta,
            )
        if severity == "WARN" and not self.settings.fail_on_warn:
            return GateResult(
                True,
                "UD-GATE-ASSET-CHECK-WARNED",
                f"check {name} warned on {ctx.version[:12]}{said}",
                "look at the warning; set fail_on_warn to make it block",
                meta,
            )
        return GateResult(
            False,
            "UD-GATE-ASSET-CHECK-FAILED",
            f"check {name} failed on {ctx.version[:12]}{said}",
            f"fix the data or the asset so that {name} passes, then build a new candidate",
            meta,
        )


def _plain(value: Any) -> Any:
    """Check metadata as the ledger can hold it: JSON scalars, everything else as text."""
    return value if isinstance(value, (str, int, float, bool)) or value is None else str(value)
