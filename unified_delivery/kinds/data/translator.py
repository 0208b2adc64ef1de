"""The data kind's translator: a data unit is a dbt selection in any dbt project, declared
in YAML or in dbt `meta` (meta.py), validated against the dbt manifest and built by its
target into an audit schema. A candidate's `--ref` is dbt vars (vars.py).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from ... import dbt
from ...errors import UDError
from ...targets.base import Artifact
from ...targets.roles import Warehouse
from ...units import Unit
from ..base import BuildContext, KindTranslator
from .meta import merge_dbt_meta
from .unit import DataUnit
from .vars import parse_vars


class DataTranslator(KindTranslator):
    unit_class = DataUnit
    needs = (Warehouse,)

    def prepare_attributes(self, attributes: dict[str, Any], base_dir: Path) -> dict[str, Any]:
        return merge_dbt_meta(attributes, base_dir)

    def check_ref(self, unit: Unit, ref: str) -> None:
        # Refused before any run exists, when the unit does not declare them (the build checks
        # again: a run may come from elsewhere).
        if ref:
            parse_vars(unit, ref)

    def validate(self, unit: Unit, units: dict[str, Unit]) -> None:
        assert isinstance(unit, DataUnit)
        manifest = dbt.ensure_manifest(unit.project)
        ids = dbt.select(manifest, unit.select, Path(unit.project))
        if not ids:
            self.refuse(
                unit,
                "select",
                f"{unit.select!r} selects nothing in {unit.project}",
                "name models that exist in the dbt project (dbt ls --select ...)",
            )
        models = {
            manifest["nodes"][u]["name"]
            for u in ids
            if manifest["nodes"][u]["resource_type"] == "model"
        }
        for name in unit.publish:
            if name not in models:
                self.refuse(
                    unit,
                    "publish",
                    f"{name!r} is not a model of the selection {unit.select!r}",
                    f"publish some of: {', '.join(sorted(models))}",
                )

    def published(self, unit: DataUnit) -> list[dict]:
        """The model nodes readers see: `publish`, or every model of the selection."""
        manifest = dbt.ensure_manifest(unit.project)
        ids = dbt.select(manifest, unit.select, Path(unit.project))
        nodes = [
            manifest["nodes"][u] for u in ids if manifest["nodes"][u]["resource_type"] == "model"
        ]
        return [n for n in nodes if not unit.publish or n["name"] in unit.publish]

    def build_candidate(self, unit: Unit, ctx: BuildContext) -> Artifact:
        assert isinstance(unit, DataUnit)
        dbt_vars = parse_vars(
            unit, ctx.config.get("ref") or ""
        )  # first: a refused var never reaches dbt
        manifest = dbt.ensure_manifest(unit.project)
        ids = dbt.select(manifest, unit.select, Path(unit.project))
        if not ids:
            raise UDError(
                "UD-DATA-EMPTY-SELECTION",
                f"unit {unit.name}: {unit.select!r} selects nothing",
                "fix `select`",
            )
        version = dbt.selection_digest(manifest, ids)
        if dbt_vars:  # the same code with other vars is another product: another version
            version = hashlib.sha256(
                (version + json.dumps(dbt_vars, sort_keys=True)).encode()
            ).hexdigest()[:12]
        models = [n["name"] for n in self.published(unit)]
        warehouse = ctx.targets.role(unit, Warehouse)
        return warehouse.write(unit, version, models=models, log=ctx.log, dbt_vars=dbt_vars)
