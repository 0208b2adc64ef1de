"""The model kind: an MLflow registered model (unit.py) trained by a decorated Python function
(decorator.py, translator.py), read by the metric gates (evaluation.py), written by `ud new
model` (scaffold.py, template/), deployed by default as registry aliases named after the
environment. It has no YAML front door: a model is Python."""

from __future__ import annotations

from importlib import resources
from typing import TYPE_CHECKING

from ..kind import Kind
from ..scaffolding import Scaffold
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
    scaffold=Scaffold(template=TEMPLATE, team="ml", fill=fill),
    dagster_kinds=frozenset({"mlflow", "scikitlearn"}),
)
