"""Data units: a dbt selection in any dbt project.

Owner team, gates, budget and policy come from the `ud` key of the dbt `meta` of the
node named like the unit (or the first selected node that has one), so a dbt-only change
needs no Python; the YAML declaration may set or override any of them.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import yaml

from .. import dbt
from ..errors import UDError
from ..targets.base import Artifact
from ..units import DataUnit, Unit
from .base import BuildContext, KindTranslator

META_FIELDS = ("team", "gates", "budget", "policy", "depends_on", "description", "environments")
META_ONLY = ("select", "publish")  # what only a unit declared in meta alone may say there


def checked_meta(node: dict) -> dict[str, Any]:
    """A node's `meta.ud` block; a key that is not a unit field is refused, never ignored: a
    misspelt `gatess:` would otherwise drop the data-quality and cost gates without a word."""
    meta = dbt.node_meta(node)
    if not isinstance(meta, dict):
        raise UDError("UD-CONFIG-DBT-META", f"meta.ud of {_where(node)} is not a mapping", "write meta: {ud: {team: ...}}")
    unknown = sorted(set(meta) - set(META_FIELDS) - set(META_ONLY))
    if unknown:
        raise UDError("UD-CONFIG-DBT-META", f"meta.ud of {_where(node)}: unknown key(s) {', '.join(map(repr, unknown))}",
                      f"use only: {', '.join((*META_FIELDS, *META_ONLY))}")
    return meta


def _where(node: dict) -> str:
    return node.get("original_file_path") or node.get("unique_id", "?")


def merge_dbt_meta(attributes: dict[str, Any], base_dir: Path) -> dict[str, Any]:
    """Resolve the project path and fill the declaration from dbt meta where the YAML is silent."""
    attrs = dict(attributes)
    project = Path(attrs.get("project", ""))
    if not project.is_absolute():
        project = (base_dir / project).resolve()
    attrs["project"] = str(project)
    if "select" not in attrs:
        return attrs  # pydantic names the missing field
    manifest = dbt.ensure_manifest(project)
    ids = dbt.select(manifest, attrs["select"], project)
    name = attrs.get("name", "?")
    if not ids:
        raise UDError("UD-CONFIG-UNIT", f"unit {name}: field select: {attrs['select']!r} selects nothing in {project}",
                      "name models that exist in the dbt project (dbt ls --select ...)", exit_code=2)
    nodes = [manifest["nodes"][u] for u in ids]
    own = [n for n in nodes if n["name"] == name] + [n for n in nodes if dbt.node_meta(n)]
    meta = checked_meta(own[0]) if own else {}
    for key in META_FIELDS:
        if key not in attrs and key in meta:
            attrs[key] = meta[key]
    if "gates" not in attrs:
        attrs["gates"] = [{"type": "dbt-tests"}]
    return attrs


def units_from_dbt_meta(project: Path, declared: set[str]) -> list[DataUnit]:
    """A data unit for every dbt model whose `meta` has a `ud` block and no declaration of its
    own: the analytics engineer's front door, where a dbt-only change needs no Python or YAML.
    The unit is named after the model and selects it with its parents (`+name`) unless
    `meta.ud.select` says otherwise."""
    from ..loader import unit_from_attributes

    project = Path(project).resolve()
    manifest = dbt.ensure_manifest(project)
    units = []
    for node in sorted(manifest["nodes"].values(), key=lambda n: n["unique_id"]):
        if node["resource_type"] != "model" or not dbt.node_meta(node) or node["name"] in declared:
            continue
        meta = checked_meta(node)
        # The same path as a YAML declaration that names only the selection: the rest comes from meta.
        attrs = {"name": node["name"], "project": str(project), "select": meta.get("select", f"+{node['name']}"),
                 **({"publish": meta["publish"]} if "publish" in meta else {})}
        source = f"meta.ud of {node.get('original_file_path') or node['unique_id']}"
        units.append(unit_from_attributes("data", attrs, source, project))
    return units


class DataTranslator(KindTranslator):
    kind = "data"
    unit_class = DataUnit

    def validate(self, unit: Unit, units: dict[str, Unit]) -> None:
        assert isinstance(unit, DataUnit)
        manifest = dbt.ensure_manifest(unit.project)
        ids = dbt.select(manifest, unit.select, Path(unit.project))
        if not ids:
            self.refuse(unit, "select", f"{unit.select!r} selects nothing in {unit.project}",
                        "name models that exist in the dbt project (dbt ls --select ...)")
        models = {manifest["nodes"][u]["name"] for u in ids if manifest["nodes"][u]["resource_type"] == "model"}
        for name in unit.publish:
            if name not in models:
                self.refuse(unit, "publish", f"{name!r} is not a model of the selection {unit.select!r}",
                            f"publish some of: {', '.join(sorted(models))}")

    def published(self, unit: DataUnit) -> list[dict]:
        """The model nodes readers see: `publish`, or every model of the selection."""
        manifest = dbt.ensure_manifest(unit.project)
        ids = dbt.select(manifest, unit.select, Path(unit.project))
        nodes = [manifest["nodes"][u] for u in ids if manifest["nodes"][u]["resource_type"] == "model"]
        return [n for n in nodes if not unit.publish or n["name"] in unit.publish]

    def build_candidate(self, unit: Unit, ctx: BuildContext) -> Artifact:
        assert isinstance(unit, DataUnit)
        manifest = dbt.ensure_manifest(unit.project)
        ids = dbt.select(manifest, unit.select, Path(unit.project))
        if not ids:
            raise UDError("UD-DATA-EMPTY-SELECTION", f"unit {unit.name}: {unit.select!r} selects nothing",
                          "fix `select`")
        dbt_vars = parse_vars(unit, ctx.config.get("ref") or "")
        version = dbt.selection_digest(manifest, ids)
        if dbt_vars:  # the same code with other vars is another product: another version
            version = hashlib.sha256((version + json.dumps(dbt_vars, sort_keys=True)).encode()).hexdigest()[:12]
        models = [n["name"] for n in self.published(unit)]
        return ctx.target.write(unit, version, models=models, log=ctx.log, dbt_vars=dbt_vars)


def parse_vars(unit: Unit, ref: str) -> dict[str, Any]:
    """A data candidate's `ref` is optional dbt vars, as YAML: `{as_of_date: '2026-11-01'}`."""
    if not ref.strip():
        return {}
    try:
        parsed = yaml.safe_load(ref)
    except yaml.YAMLError:
        parsed = None
    if not isinstance(parsed, dict):
        raise UDError("UD-DATA-BAD-VARS", f"unit {unit.name}: --ref {ref!r} is not a mapping of dbt vars",
                      "give vars as YAML, e.g. --ref \"{as_of_date: '2026-11-01'}\"")
    return parsed
