"""The data kind: a dbt selection (unit.py), declared in YAML as `unified_delivery.Data`
(component.py) or in dbt `meta` alone (meta.py, meta_units.py), its `--ref` dbt vars
(vars.py), written by `ud new data` (scaffold.py, template/), deployed by default with dbt on
DuckDB, write-audit-publish."""

from __future__ import annotations

from importlib import resources
from typing import TYPE_CHECKING

from ..kind import Kind
from ..scaffolding import Scaffold
from .component import Data
from .scaffold import fill
from .translator import DataTranslator

TEMPLATE = resources.files(__name__) / "template"  # what `ud new data NAME` writes

if TYPE_CHECKING:
    from ...targets.dbt_duckdb import DbtDuckDBTarget


def default_target() -> DbtDuckDBTarget:
    from ...targets.dbt_duckdb import DbtDuckDBTarget

    return DbtDuckDBTarget()


KIND = Kind(
    translator=DataTranslator(),
    default_target=default_target,
    component=Data,
    scaffold=Scaffold(template=TEMPLATE, team="analytics", fill=fill),
    dagster_kinds=frozenset({"dbt", "duckdb"}),
    yaml_types=("unified_delivery.Data", "unified_delivery.data", "data"),
)
