"""Data units declared in dbt alone: the analytics engineer's front door, where a dbt-only
change needs no Python or YAML."""

from __future__ import annotations

from pathlib import Path

from ... import dbt
from .meta import checked_meta
from .translator import DataTranslator
from .unit import DataUnit


def units_from_dbt_meta(project: Path, declared: set[str]) -> list[DataUnit]:
    """A data unit for every dbt model whose `meta` has a `ud` block and no declaration of its
    own. The unit is named after the model and selects it with its parents (`+name`) unless
    `meta.ud.select` says otherwise."""
    project = Path(project).resolve()
    manifest = dbt.ensure_manifest(project)
    translator = DataTranslator()
    units = []
    for node in sorted(manifest["nodes"].values(), key=lambda n: n["unique_id"]):
        if node["resource_type"] != "model" or not dbt.node_meta(node) or node["name"] in declared:
            continue
        meta = checked_meta(node)
        # The same path as a YAML declaration that names only the selection: the rest comes
        # from meta.
        attrs = {
            "name": node["name"],
            "project": str(project),
            "select": meta.get("select", f"+{node['name']}"),
            **({"publish": meta["publish"]} if "publish" in meta else {}),
        }
        source = f"meta.ud of {node.get('original_file_path') or node['unique_id']}"
        unit = translator.unit_from_attributes(attrs, source, project)
        assert isinstance(unit, DataUnit)
        units.append(unit)
    return units
