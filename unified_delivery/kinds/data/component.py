"""The data kind's YAML front door: the Dagster component type `unified_delivery.Data`."""

from __future__ import annotations

from ...components import UnitComponent
from .meta import META_FIELDS
from .translator import DataTranslator


class Data(UnitComponent):
    """A data unit: a dbt selection, built into the warehouse and promoted through its gates.

    Published with write-audit-publish. Team, gates, budget and policy may come from the dbt
    model's `meta.ud` instead of this file."""

    translator = DataTranslator()
    optional = frozenset({"name", *META_FIELDS})
