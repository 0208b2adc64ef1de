"""YAML units as Dagster Components: `unified_delivery.App` and `unified_delivery.Data`.

A unit folder's `defs.yaml` (`assets/units/<name>/defs.yaml`) names one of these types, so
`dg check yaml`, `dg list components` and editors know its fields. The attribute schema is
derived from the unit declarations of units.py, so it cannot drift from what the loader
accepts; building a unit goes through the loader too (unit_from_attributes).
"""

from __future__ import annotations

import functools
import inspect
import re
from pathlib import Path
from typing import Any, ClassVar

import dagster as dg
from pydantic import BaseModel, ConfigDict, create_model
from pydantic.fields import FieldInfo

from .errors import ConfigError
from .kinds.data import META_FIELDS
from .loader import unit_from_attributes
from .units import AppUnit, DataUnit, Unit

# `    repository: str  # a local path or any URL git can clone`: a field line of a class body.
FIELD_COMMENT = re.compile(r"^    (\w+)\s*:[^#\n]*#\s*(.+)$", re.MULTILINE)


def field_comments(unit_class: type[BaseModel]) -> dict[str, str]:
    """units.py documents fields in trailing comments; the schema shows them as descriptions."""
    comments: dict[str, str] = {}
    for cls in reversed(unit_class.__mro__):
        if issubclass(cls, BaseModel) and cls.__module__ == unit_class.__module__:
            comments.update(FIELD_COMMENT.findall(inspect.getsource(cls)))
    return comments


def attributes_model(unit_class: type[Unit], optional: set[str]) -> type[BaseModel]:
    """The unit's fields, with `optional` ones allowed to be left out of the YAML (the loader fills them)."""
    comments = field_comments(unit_class)
    fields: dict[str, Any] = {}
    for name, info in unit_class.model_fields.items():
        changes: dict[str, Any] = {"description": info.description or comments.get(name)}
        if name in optional and info.is_required():
            changes["default"] = None
        fields[name] = (info.annotation, FieldInfo.merge_field_infos(info, **changes))
    return create_model(f"{unit_class.__name__}Attributes", __config__=ConfigDict(extra="forbid"),
                        __doc__=unit_class.__doc__, **fields)


def unit_slice(defs: dg.Definitions, unit: Unit) -> dg.Definitions:
    """The unit's stage assets, its gate checks and its promotion jobs, with the platform's resources."""
    from .translator import job_name

    def own(key: dg.AssetKey) -> bool:
        return key.path[0] == unit.name

    jobs = {job_name(unit.name, env) for env in unit.environments}
    return dg.Definitions(
        assets=[a for a in defs.assets or [] if isinstance(a, dg.AssetsDefinition) and all(own(k) for k in a.keys)],
        asset_checks=[c for c in defs.asset_checks or [] if all(own(k.asset_key) for k in c.check_keys)],
        jobs=[j for j in defs.jobs or [] if j.name in jobs],
        resources=defs.resources, executor=defs.executor)


class UnitComponent(dg.Component):
    """One delivery unit in a dg defs folder; a subclass per kind says which."""

    kind: ClassVar[str]
    unit_class: ClassVar[type[Unit]]
    optional: ClassVar[frozenset[str]] = frozenset({"name"})  # the name defaults to the unit's folder

    def __init__(self, unit: Unit):
        self.unit = unit

    @classmethod
    @functools.cache
    def get_model_cls(cls) -> type[BaseModel]:
        return attributes_model(cls.unit_class, set(cls.optional))

    @classmethod
    def load(cls, attributes: BaseModel | None, context: dg.ComponentLoadContext) -> "UnitComponent":
        # Only what the YAML says, so that defaults never hide a data unit's dbt meta.
        fields = attributes.model_dump(exclude_unset=True) if attributes else {}
        folder = context.path if context.path.is_dir() else context.path.parent
        return cls(unit_from_attributes(cls.kind, fields, f"{folder.name}/defs.yaml", folder))

    def build_defs(self, context: dg.ComponentLoadContext) -> dg.Definitions:
        """This unit's slice of the platform's Definitions: its stage assets, gate checks and jobs.

        A unit does not stand alone: its assets depend on other units' stages (a Python model
        unit among them), and the cross-unit validation, the rollback job, the scorecard and the
        sensors need every unit at once. So the platform is built in one place, the platform
        repository's `assets/definitions.py` (the code location of `dagster dev`, `dg` and `ud`),
        and a component hands back its part of that, after checking that the platform was built
        from this very declaration. The component thus defines nothing the code location does not
        already define, and `dg list defs --path assets/units/<name>` shows one unit."""
        from .service import load_platform

        platform, defs = load_platform(Path(context.project_root))
        if platform.units.get(self.unit.name) != self.unit:
            raise ConfigError("UD-CONFIG-COMPONENT",
                              f"unit {self.unit.name} ({context.path}): the platform of {context.project_root}/assets/"
                              "definitions.py does not load this declaration",
                              "keep unit folders under the folder that Platform.from_directory reads (assets/units) "
                              "and make `[tool.dg.project] defs_module` name that folder")
        return unit_slice(defs, self.unit)


class App(UnitComponent):
    """An app unit: service code in a Git repository, promoted through its gates.

    Built at a commit, deployed by the platform's app target; stages candidate, then its
    environments (staging, production by default)."""

    kind = "app"
    unit_class = AppUnit


class Data(UnitComponent):
    """A data unit: a dbt selection, built into the warehouse and promoted through its gates.

    Published with write-audit-publish. Team, gates, budget and policy may come from the dbt
    model's `meta.ud` instead of this file."""

    kind = "data"
    unit_class = DataUnit
    optional = frozenset({"name", *META_FIELDS})
