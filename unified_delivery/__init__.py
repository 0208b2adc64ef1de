"""unified-delivery: one delivery pipeline for app code, ML models and data products.

The public API for platform repositories; kept light (no MLflow, dbt or GX import)."""

from .errors import UDError
from .kinds.model import ModelDefinition, model
from .platform import Platform
from .units import AppUnit, Budget, DataUnit, GateSpec, ModelUnit, Policy


def gate(type: str, *, name: str | None = None, stage: str = "candidate", **settings) -> GateSpec:
    """A gate declaration for Python units: `gate("model-metric", metric="roc_auc", min=0.7)`."""
    return GateSpec(type=type, name=name, stage=stage, settings=settings)


__all__ = ["AppUnit", "Budget", "DataUnit", "GateSpec", "ModelDefinition", "ModelUnit", "Platform", "Policy",
           "UDError", "gate", "model"]
