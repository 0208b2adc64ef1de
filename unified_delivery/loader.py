"""Unit declarations that are not Python: YAML files, Dagster Components style (`type:` and
`attributes:` per file). A file's `type` names its kind (each kind lists its YAML types in
the kinds registry); the kind's translator makes the unit from the attributes. Data units
declared in dbt `meta` alone are the data kind's (kinds/data/meta_units.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from .errors import ConfigError, one_line
from .kinds.registry import kinds, yaml_types
from .units import Unit

# A flat file per unit, or a dg component folder per unit (`<name>/defs.yaml`, at any depth as dg
# reads them; see docs/components.md).
UNIT_FILES = ("*.yaml", "*.yml", "*/**/defs.yaml", "*/**/defs.yml")


def unit_from_attributes(
    kind: str, attributes: dict[str, Any], source: str, base_dir: Path
) -> Unit:
    """The unit of kind `kind` that `attributes` (read from `source`, in `base_dir`) declare."""
    return kinds()[kind].translator.unit_from_attributes(attributes, source, base_dir)


def load_yaml_unit(path: Path) -> Unit:
    try:
        doc = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(
            "UD-CONFIG-YAML", f"{path}: not valid YAML: {one_line(exc)}", "fix the YAML syntax"
        ) from None
    if not isinstance(doc, dict):
        raise ConfigError(
            "UD-CONFIG-YAML",
            f"{path}: expected a mapping with `type` and `attributes`",
            "see docs/units.md",
        )
    extra = set(doc) - {"type", "attributes"}
    if extra:
        raise ConfigError(
            "UD-CONFIG-YAML",
            f"{path}: unknown top-level keys {sorted(extra)}",
            "a unit file has only `type` and `attributes`",
        )
    types = yaml_types()
    kind = types.get(str(doc.get("type")))
    if kind is None:
        raise ConfigError(
            "UD-CONFIG-YAML",
            f"{path}: field type: {doc.get('type')!r} is not a unit type",
            f"use one of: {', '.join(sorted(k for k in types if '.' in k))}",
        )
    attributes = doc.get("attributes")
    if not isinstance(attributes, dict):
        raise ConfigError(
            "UD-CONFIG-YAML",
            f"{path}: field attributes: expected a mapping",
            "put the unit's fields under `attributes:`",
        )
    source = f"{path.parent.name}/{path.name}" if path.stem == "defs" else path.name
    return unit_from_attributes(kind, attributes, source, path.parent)


def load_yaml_units(directory: Path) -> list[Unit]:
    return [
        load_yaml_unit(p) for pattern in UNIT_FILES for p in sorted(Path(directory).glob(pattern))
    ]
