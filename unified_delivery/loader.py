"""YAML unit declarations, Dagster Components style: `type:` and `attributes:` per file."""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from .errors import ConfigError, UDError
from .units import UNIT_KINDS, Unit

# The Dagster component types (components.py) first, then the older spellings, still accepted.
TYPES = {"unified_delivery.App": "app", "unified_delivery.Data": "data",
         "unified_delivery.app": "app", "unified_delivery.data": "data", "app": "app", "data": "data"}
# A flat file per unit, or a dg component folder per unit (`<name>/defs.yaml`, at any depth as dg
# reads them; see docs/components.md).
UNIT_FILES = ("*.yaml", "*.yml", "*/**/defs.yaml", "*/**/defs.yml")


def field_error(exc: ValidationError, name: str, source: str, model: type | None = None) -> ConfigError:
    """One clear line for the first problem; a misspelt field is named as written, with a guess."""
    errors = sorted(exc.errors(), key=lambda e: e["type"] != "extra_forbidden")
    err = errors[0]
    where = ".".join(str(p) for p in err["loc"]) or "?"
    msg = err["msg"]
    if err["type"] == "extra_forbidden":
        known = list(getattr(model, "model_fields", {})) if len(err["loc"]) == 1 else []
        guess = difflib.get_close_matches(str(err["loc"][-1]), known, n=1)
        msg = "is not a known field" + (f" (did you mean {guess[0]!r}?)" if guess else "")
    return ConfigError("UD-CONFIG-UNIT", f"unit {name} ({source}): field {where}: {msg}",
                       f"fix `{where}` in {source}")


def default_name(source: str) -> str:
    """`recommendation_api.yaml` and `recommendation_api/defs.yaml` both declare recommendation_api."""
    path = Path(source)
    return path.parent.name if path.stem == "defs" and path.parent.name else path.stem


def unit_from_attributes(kind: str, attributes: dict[str, Any], source: str, base_dir: Path) -> Unit:
    name = attributes.get("name", default_name(source))
    attributes = {"name": name, **attributes}
    if kind == "data":
        from .kinds.data import merge_dbt_meta

        try:
            attributes = merge_dbt_meta(attributes, base_dir)
        except UDError as exc:
            raise ConfigError(exc.code, exc.message if name in exc.message else f"unit {name}: {exc.message}", exc.remediation) from None
    if kind == "app":
        from .kinds.app import is_local

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
        raise ConfigError("UD-CONFIG-YAML", f"{path}: not valid YAML: {exc}", "fix the YAML syntax") from None
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
