"""Unit declarations that are not Python: YAML files, Dagster Components style (`type:` and
`attributes:` per file), and dbt models that declare themselves in their `meta.ud` block."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from . import dbt
from .errors import ConfigError, UDError, one_line
from .kinds.app import is_local
from .kinds.data import checked_meta, merge_dbt_meta
from .units import UNIT_KINDS, DataUnit, Unit, field_error

# The Dagster component types (components.py) first, then the older spellings, still accepted.
TYPES = {"unified_delivery.App": "app", "unified_delivery.Data": "data",
         "unified_delivery.app": "app", "unified_delivery.data": "data", "app": "app", "data": "data"}
# A flat file per unit, or a dg component folder per unit (`<name>/defs.yaml`, at any depth as dg
# reads them; see docs/components.md).
UNIT_FILES = ("*.yaml", "*.yml", "*/**/defs.yaml", "*/**/defs.yml")


def default_name(source: str) -> str:
    """`recommendation_api.yaml` and `recommendation_api/defs.yaml` both declare recommendation_api."""
    path = Path(source)
    return path.parent.name if path.stem == "defs" and path.parent.name else path.stem


def unit_from_attributes(kind: str, attributes: dict[str, Any], source: str, base_dir: Path) -> Unit:
    name = attributes.get("name", default_name(source))
    attributes = {"name": name, **attributes}
    if kind == "data":
        try:
            attributes = merge_dbt_meta(attributes, base_dir)
        except UDError as exc:
            raise ConfigError(exc.code, exc.message if name in exc.message else f"unit {name}: {exc.message}", exc.remediation) from None
    if kind == "app":
        repo = attributes.get("repository")
        if isinstance(repo, str) and is_local(repo) and "{home}" not in repo and not Path(repo).is_absolute():
            attributes["repository"] = str((base_dir / repo).resolve())  # relative to the unit's file, like dbt `project`
    try:
        return UNIT_KINDS[kind](**attributes)
    except ValidationError as exc:
        raise field_error(exc, name, source, UNIT_KINDS[kind]) from None


def load_yaml_unit(path: Path) -> Unit:
    try:
        doc = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError("UD-CONFIG-YAML", f"{path}: not valid YAML: {one_line(exc)}", "fix the YAML syntax") from None
    if not isinstance(doc, dict):
        raise ConfigError("UD-CONFIG-YAML", f"{path}: expected a mapping with `type` and `attributes`", "see docs/units.md")
    extra = set(doc) - {"type", "attributes"}
    if extra:
        raise ConfigError("UD-CONFIG-YAML", f"{path}: unknown top-level keys {sorted(extra)}",
                          "a unit file has only `type` and `attributes`")
    kind = TYPES.get(str(doc.get("type")))
    if kind is None:
        raise ConfigError("UD-CONFIG-YAML", f"{path}: field type: {doc.get('type')!r} is not a unit type",
                          f"use one of: {', '.join(sorted(k for k in TYPES if '.' in k))}")
    attributes = doc.get("attributes")
    if not isinstance(attributes, dict):
        raise ConfigError("UD-CONFIG-YAML", f"{path}: field attributes: expected a mapping", "put the unit's fields under `attributes:`")
    source = f"{path.parent.name}/{path.name}" if path.stem == "defs" else path.name
    return unit_from_attributes(kind, attributes, source, path.parent)


def load_yaml_units(directory: Path) -> list[Unit]:
    return [load_yaml_unit(p) for pattern in UNIT_FILES for p in sorted(Path(directory).glob(pattern))]


def units_from_dbt_meta(project: Path, declared: set[str]) -> list[DataUnit]:
    """A data unit for every dbt model whose `meta` has a `ud` block and no declaration of its
    own: the analytics engineer's front door, where a dbt-only change needs no Python or YAML.
    The unit is named after the model and selects it with its parents (`+name`) unless
    `meta.ud.select` says otherwise."""
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
