"""The model kind: an MLflow registered model (unit.py) trained by a decorated Python function
(decorator.py, translator.py), or registered outside the platform and declared in YAML as
`unified_delivery.Model` (component.py: a registered model and its evaluation dataset), read
by the metric gates (evaluation.py), written by `ud new model` (scaffold.py, template/),
deployed by default as registry aliases named after the environment."""

from __future__ import annotations

from importlib import resources
from typing import TYPE_CHECKING

from ..kind import Kind
from ..scaffolding import Scaffold
from .component import Model
from .scaffold import fill
from .translator import ModelTranslator

TEMPLATE = resources.files(__name__) / "template"  # what `ud new model NAME` writes

if TYPE_CHECKING:
    from ...targets.mlflow_alias import MlflowAliasTarget


def default_target() -> MlflowAliasTarget:
    from ...targets.mlflow_alias import MlflowAliasTarget

    return MlflowAliasTarget()


KIND = Kind(
    translator=ModelTranslator(),
    default_target=default_target,
    component=Model,
    scaffold=Scaffold(template=TEMPLATE, team="ml", fill=fill),
    dagster_kinds=frozenset({"mlflow", "scikitlearn"}),
    yaml_types=("unified_delivery.Model", "unified_delivery.model", "model"),
)
