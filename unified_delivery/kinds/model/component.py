"""The model kind's YAML front door: the Dagster component type `unified_delivery.Model`, for a
registered model whose versions are registered outside the platform (a model the platform
trains is Python: `@ud.model` on its training function)."""

from __future__ import annotations

from ...components import UnitComponent
from .translator import ModelTranslator


class Model(UnitComponent):
    """A registered model: each new version in the MLflow registry, whoever registered it and
    in whatever flavor loads as pyfunc, is gated on the unit's evaluation dataset (metrics
    against the production version, fairness, schema) and promoted through its environments
    as MLflow aliases."""

    translator = ModelTranslator()
