"""unified-delivery: one delivery pipeline for app code, ML models and data products.

The public API for platform repositories; kept light (no MLflow, dbt or GX import)."""

from .api import Promotion, promote, rollback, status
from .errors import ConfigError, GateRefused, NotPermitted, TargetError, UDError

# App and Data are the Dagster component types `unified_delivery.App` and `unified_delivery.Data`.
from .kinds.app.component import App
from .kinds.app.unit import AppUnit
from .kinds.asset.unit import AssetUnit
from .kinds.asset.wrap import WrappedAsset, wrap_asset
from .kinds.data.component import Data
from .kinds.data.unit import DataUnit
from .kinds.model.decorator import ModelDefinition, model
from .kinds.model.unit import ModelUnit
from .platform import Platform
from .units import Budget, GateSpec, Policy


def gate(type: str, *, name: str | None = None, stage: str = "candidate", **settings) -> GateSpec:
    """A gate declaration for Python units: `gate("model-metric", metric="roc_auc", min=0.7)`."""
    return GateSpec(type=type, name=name, stage=stage, settings=settings)


__all__ = [
    "AppUnit",
    "AssetUnit",
    "Budget",
    "DataUnit",
    "GateSpec",
    "ModelDefinition",
    "ModelUnit",
    "Platform",
    "Policy",
    "UDError",
    "gate",
    "model",
    "ConfigError",
    "GateRefused",
    "NotPermitted",
    "Promotion",
    "TargetError",
    "promote",
    "rollback",
    "status",
    "App",
    "Data",
    "WrappedAsset",
    "wrap_asset",
]
