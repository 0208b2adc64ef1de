"""The asset kind's translator: the candidate of a wrapped asset (wrap.py) is the value it
returns, materialized in this process on a throwaway instance and stored as one file
(values.py) under `<home>/builds/<unit>/<version>/`; the version is its content digest."""

from __future__ import annotations

import shutil
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import dagster as dg

from ...errors import EXIT_TARGET, UDError
from ...targets.base import Artifact
from ...units import Unit
from ..base import BuildContext, KindTranslator
from .unit import AssetUnit
from .values import ValueStore, file_digest, value_file
from .wrap import WrappedAsset


def run_error(result: dg.ExecuteInProcessResult) -> str:
    """The first step failure of a run, as its innermost cause says it (the user's exception)."""
    for event in result.all_events:
        if event.event_type == dg.DagsterEventType.STEP_FAILURE:
            err = event.step_failure_data.error
            if err is None:
                return "a step failed without an error"
            while err.cause is not None:
                err = err.cause
            return err.message.strip()
    return "the run failed without a step failure"


class AssetTranslator(KindTranslator):
    unit_class = AssetUnit

    def build_candidate(self, unit: Unit, ctx: BuildContext) -> Artifact:
        assert isinstance(unit, AssetUnit)
        wrapped = ctx.trainer
        if not isinstance(wrapped, WrappedAsset):
            raise UDError(
                "UD-ASSET-NOT-WRAPPED",
                f"unit {unit.name}: no Dagster asset was wrapped for it",
                "declare it with ud.wrap_asset(my_asset, ...) in the platform's units",
            )
        root = ctx.home.builds / unit.name
        root.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix=".tmp-", dir=root))
        try:
            result = wrapped.execute(
                dg.AssetSelection.assets(wrapped.asset.key).without_checks(), ValueStore(work)
            )
            if not result.success:
                raise UDError(
                    "UD-ASSET-BUILD-FAILED",
                    f"unit {unit.name}: materializing {unit.asset_key} failed: {run_error(result)}",
                    "fix the asset (run it with dg.materialize to see the traceback); "
                    "nothing was deployed",
                    exit_code=EXIT_TARGET,
                )
            try:
                stored = value_file(work)
            except FileNotFoundError:
                raise UDError(
                    "UD-ASSET-NO-VALUE",
                    f"unit {unit.name}: {unit.asset_key} returned no value to deploy",
                    "wrap an asset that returns its value (not None or a MaterializeResult)",
                    exit_code=EXIT_TARGET,
                ) from None
            digest = file_digest(stored)
            version = digest[:12]
            out = root / version
            try:
                work.rename(out)
            except OSError:  # this value was built before: same content, same version
                pass
        finally:
            shutil.rmtree(work, ignore_errors=True)
        path = value_file(out)
        details: dict[str, Any] = {
            "asset_key": unit.asset_key,
            "format": path.suffix.lstrip("."),
            "bytes": path.stat().st_size,
            "change_created_at": datetime.now(UTC).isoformat(),
        }
        ctx.log(f"built {unit.name}: {unit.asset_key} -> {path} ({details['bytes']} bytes)")
        return Artifact(
            unit=unit.name,
            kind="asset",
            version=version,
            digest=f"sha256:{digest}",
            location=str(path),
            details=details,
        )
