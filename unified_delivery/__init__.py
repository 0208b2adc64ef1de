"""unified-delivery: one delivery pipeline for app code, ML models and data products.

The public API for platform repositories. Each name is imported when first used (PEP 562),
so `import unified_delivery` (and `ud --help`, whose module lives in this package) loads no
Dagster, MLflow, dbt or Great Expectations; `ud.Platform`, `ud.model` and the rest load what
they need on first access."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .errors import ConfigError, GateRefused, NotPermitted, TargetError, UDError
from .lazy import lazy_names

# name -> the module that defines it. App, Data and Model are the Dagster component types
# `unified_delivery.App`, `unified_delivery.Data` and `unified_delivery.Model`.
_LAZY = {
    "Promotion": ".api",
    "promote": ".api",
    "rollback": ".api",
    "status": ".api",
    "App": ".kinds.app.component",
    "AppUnit": ".kinds.app.unit",
    "AssetUnit": ".kinds.asset.unit",
    "WrappedAsset": ".kinds.asset.wrap",
    "wrap_asset": ".kinds.asset.wrap",
    "Data": ".kinds.data.component",
    "DataUnit": ".kinds.data.unit",
    "Model": ".kinds.model.component",
    "ModelDefinition": ".kinds.model.decorator",
    "model": ".kinds.model.decorator",
    "ModelUnit": ".kinds.model.unit",
    "Platform": ".platform",
    "Budget": ".units",
    "GateSpec": ".units",
    "Policy": ".units",
}

if TYPE_CHECKING:
    from .api import Promotion, promote, rollback, status
    from .kinds.app.component import App
    from .kinds.app.unit import AppUnit
    from .kinds.asset.unit import AssetUnit
    from .kinds.asset.wrap import WrappedAsset, wrap_asset
    from .kinds.data.component import Data
    from .kinds.data.unit import DataUnit
    from .kinds.model.component import Model
    from .kinds.model.decorator import ModelDefinition, model
    from .kinds.model.unit import ModelUnit
    from .platform import Platform
    from .units import Budget, GateSpec, Policy


__getattr__, __dir__ = lazy_names(__name__, _LAZY)


def gate(
    type: str, *, name: str | None = None, stage: str = "candidate", **settings: Any
) -> GateSpec:
    """A gate declaration for Python units: `gate("model-metric", metric="roc_auc", min=0.7)`."""
    from .units import GateSpec

    return GateSpec(type=type, name=name, stage=stage, settings=settings)


__all__ = [
    "App",
    "AppUnit",
    "AssetUnit",
    "Budget",
    "ConfigError",
    "Data",
    "DataUnit",
    "GateRefused",
    "GateSpec",
    "Model",
    "ModelDefinition",
    "ModelUnit",
    "NotPermitted",
    "Platform",
    "Policy",
    "Promotion",
    "TargetError",
    "UDError",
    "WrappedAsset",
    "gate",
    "model",
    "promote",
    "rollback",
    "status",
    "wrap_asset",
]
