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
from ...errors import ConfigError, UDError
from ...targets.base import Artifact
from ...targets.roles import Warehouse
from ...units import Unit
from ..base import BuildContext, KindTranslator
from .meta import merge_dbt_meta
from .source import is_git_ref, source
from .unit import DataUnit
from .vars import parse_vars


class DataTranslator(KindTranslator):
    unit_class = DataUnit
    needs = (Warehouse,)

    def prepare_attributes(self, attributes: dict[str, Any], base_dir: Path) -> dict[str, Any]:
        return merge_dbt_meta(attributes, base_dir)

    def check_ref(self, unit: Unit, ref: str) -> None:
        # Refused before any run exists, when the unit does not declare them (the build checks
        # again: a run may come from elsewhere). A Git unit's ref may be a commit or branch.
        assert isinstance(unit, DataUnit)
        if ref and not (unit.repository and is_git_ref(ref)):
            parse_vars(unit, ref)

    def validate(self, unit: Unit, units: dict[str, Unit]) -> None:
        assert isinstance(unit, DataUnit)
        if unit.repository:  # read at the commit a build checks out (meta._git_attributes)
            return
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

    def published(self, unit: DataUnit, project: Path | None = None) -> list[dict]:
        """The model nodes readers see: `publish`, or every model of the selection."""
        project = Path(project or unit.project)
        manifest = dbt.ensure_manifest(project)
        ids = dbt.select(manifest, unit.select, project)
        nodes = [
            manifest["nodes"][u] for u in ids if manifest["nodes"][u]["resource_type"] == "model"
        ]
        return [n for n in nodes if not unit.publish or n["name"] in unit.publish]

    def build_candidate(self, unit: Unit, ctx: BuildContext) -> Artifact:
        assert isinstance(unit, DataUnit)
        ref = ctx.config.get("ref") or ""
        git_ref = bool(unit.repository) and is_git_ref(ref)
        # first: a refused var never reaches dbt
        dbt_vars = parse_vars(unit, "" if git_ref else ref)
        src = source(unit, ctx.home, ref if git_ref else "")
        try:
            manifest = dbt.ensure_manifest(src.project)
        except ConfigError as exc:  # a commit that does not parse: the build's refusal
            raise UDError(
                "UD-DATA-COMPILE-ERROR",
                f"unit {unit.name}: {exc.message}",
                exc.remediation,
                exit_code=5,
            ) from None
        ids = dbt.select(manifest, unit.select, src.project)
        if not ids:
            raise UDError(
                "UD-DATA-EMPTY-SELECTION",
                f"unit {unit.name}: {unit.select!r} selects nothing"
                + (f" at {src.sha[:12]}" if src.sha else ""),
                "fix `select`",
            )
        models = {
            manifest["nodes"][u]["name"]
            for u in ids
            if manifest["nodes"][u]["resource_type"] == "model"
        }
        missing = [m for m in unit.publish if m not in models]
        if missing:
            raise UDError(
                "UD-DATA-EMPTY-SELECTION",
                f"unit {unit.name}: {missing[0]!r} is not a model of the selection {unit.select!r}",
                f"publish some of: {', '.join(sorted(models))}",
            )
        version = dbt.selection_digest(manifest, ids)
        if dbt_vars:  # the same code with other vars is another product: another version
            version = hashlib.sha256(
                (version + json.dumps(dbt_vars, sort_keys=True)).encode()
            ).hexdigest()[:12]
        published = [n["name"] for n in self.published(unit, src.project)]
        warehouse = ctx.targets.role(unit, Warehouse)
        artifact = warehouse.write(
            unit, version, models=published, log=ctx.log, dbt_vars=dbt_vars, project=src.project
        )
        if src.sha:
            ctx.log(f"built {unit.name} at {src.sha[:12]} ({src.subject})")
            artifact.details.update(
                repository=ctx.home.expand(unit.repository or ""),
                commit=src.sha,
                subject=src.subject,
                change_created_at=src.committed_at,
            )
        return artifact
