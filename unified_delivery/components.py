"""YAML units as Dagster Components: what every kind's component type shares (a kind with a
YAML front door subclasses UnitComponent in its folder: `unified_delivery.App` in
kinds/app/component.py, `unified_delivery.Data` in kinds/data/component.py).

A unit folder's `defs.yaml` (`assets/units/<name>/defs.yaml`) names one of these types, so
`dg check yaml`, `dg list components` and editors know its fields. The attribute schema is
derived from the kind's unit model, descriptions included (`Field(description=...)`), so it
cannot drift from what the loader accepts; building a unit goes through the kind's
translator, as the loader does (KindTranslator.unit_from_attributes).
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any, ClassVar

import dagster as dg
from pydantic import BaseModel, ConfigDict, create_model
from pydantic.fields import FieldInfo

from .errors import ConfigError
from .kinds.base import KindTranslator
from .units import Unit


def attributes_model(unit_class: type[Unit], optional: set[str]) -> type[BaseModel]:
    """The unit's fields, with `optional` ones allowed to be left out of the YAML (the loader fills
    them)."""
    fields: dict[str, Any] = {}
    for name, info in unit_class.model_fields.items():
        leave_out = name in optional and info.is_required()
        changes: dict[str, Any] = {"default": None} if leave_out else {}
        fields[name] = (info.annotation, FieldInfo.merge_field_infos(info, **changes))
    return create_model(
        f"{unit_class.__name__}Attributes",
        __config__=ConfigDict(extra="forbid"),
        __doc__=unit_class.__doc__,
        **fields,
    )


def unit_slice(defs: dg.Definitions, unit: Unit) -> dg.Definitions:
    """The unit's stage assets and its gate checks, with the platform's resources. Its
    promotions are runs of the platform's jobs, one per environment for every unit, which the
    code location defines, as it does the sensors (promotions.py)."""

    def own(key: dg.AssetKey) -> bool:
        return key.path[0] == unit.name

    return dg.Definitions(
        assets=[
            a
            for a in defs.assets or []
            if isinstance(a, dg.AssetsDefinition) and all(own(k) for k in a.keys)
        ],
        asset_checks=[
            c for c in defs.asset_checks or [] if all(own(k.asset_key) for k in c.check_keys)
        ],
        resources=defs.resources,
        executor=defs.executor,
    )


class UnitComponent(dg.Component):
    """One delivery unit in a dg defs folder; a subclass per kind says which (its translator)."""

    translator: ClassVar[KindTranslator]
    optional: ClassVar[frozenset[str]] = frozenset(
        {"name"}
    )  # the name defaults to the unit's folder

    def __init__(self, unit: Unit):
        self.unit = unit

    @classmethod
    @functools.cache
    def get_model_cls(cls) -> type[BaseModel]:
        return attributes_model(cls.translator.unit_class, set(cls.optional))

    @classmethod
    def load(cls, attributes: BaseModel | None, context: dg.ComponentLoadContext) -> UnitComponent:
        # Only what the YAML says, so that defaults never hide a data unit's dbt meta.
        fields = attributes.model_dump(exclude_unset=True) if attributes else {}
        folder = context.path if context.path.is_dir() else context.path.parent
        return cls(cls.translator.unit_from_attributes(fields, f"{folder.name}/defs.yaml", folder))

    def build_defs(self, context: dg.ComponentLoadContext) -> dg.Definitions:
        """This unit's slice of the platform's Definitions: its stage assets, gate checks and jobs.

        A unit does not stand alone: its assets depend on other units' stages (a Python model
        unit among them), and the cross-unit validation, the rollback job, the scorecard and the
        sensors need every unit at once. So the platform is built in one place, the platform
        repository's `assets/definitions.py` (the code location of `dagster dev`, `dg` and `ud`),
        and a component hands back its part of that, after checking that the platform was built
        from this very declaration. The component thus defines nothing the code location does not
        already define, and `dg list defs --path assets/units/<name>` shows one unit."""
        from .service.loading import load_platform

        platform, defs = load_platform(Path(context.project_root))
        if platform.units.get(self.unit.name) != self.unit:
            raise ConfigError(
                "UD-CONFIG-COMPONENT",
                f"unit {self.unit.name} ({context.path}): the platform of "
                f"{context.project_root}/assets/definitions.py does not load this declaration",
                "keep unit folders under the folder that Platform.from_directory reads "
                "(assets/units) and make `[tool.dg.project] defs_module` name that folder",
            )
        return unit_slice(defs, self.unit)
