"""Finding a platform's Python units: every module beside its definitions.py is imported
and each unit declaration at its top level (an `@ud.model` function, a wrapped asset, a
Unit) is taken, so adding a unit is adding a file."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from .kinds.asset.wrap import WrappedAsset
from .kinds.model.decorator import ModelDefinition
from .units import Unit


def is_declaration(value: Any) -> bool:
    return isinstance(value, (Unit, ModelDefinition, WrappedAsset))


def python_units(folder: Path, package: str) -> list[Any]:
    """Declarations in the modules of `folder` (imported as `package.<module>`), in file order."""
    found: list[Any] = []
    for path in sorted(Path(folder).glob("*.py")):
        if path.stem in ("__init__", "definitions") or path.stem.startswith("_"):
            continue
        module = importlib.import_module(f"{package}.{path.stem}")
        found += [v for k, v in vars(module).items() if not k.startswith("_") and is_declaration(v)]
    return list({id(v): v for v in found}.values())
