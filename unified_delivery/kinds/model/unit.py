"""The model unit: an MLflow registered model, trained by a decorated Python function on a
data unit's production version or on a CSV/Parquet file; or, without a training function,
a registered model whose versions anyone registers (`registered_model` and an
`evaluation_dataset` the gates score each version on)."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field, model_validator

from ...units import Unit


class ModelUnit(Unit):
    kind: ClassVar[str] = "model"
    trains_on: str | None = Field(
        default=None, description="the data unit whose production version is the training data"
    )
    dataset: str | None = Field(
        default=None,
        description="or a CSV/Parquet file (a sample a data scientist has); "
        "versioned by its content",
    )
    table: str | None = Field(
        default=None,
        description="relation in the data unit's published schema (default: the data unit's name)",
    )
    features: list[str] = Field(
        default_factory=list,
        description="the columns the model is trained on (a registered model's default: the "
        "inputs of each version's signature)",
    )
    label: str = Field(description="the column it predicts")
    holdout_fraction: float = Field(
        default=0.25, gt=0, lt=1, description="the share of rows held out for the metric gates"
    )
    seed: int = 0
    registered_model: str | None = Field(
        default=None, description="MLflow name (default: the unit name)"
    )
    extra_columns: list[str] = Field(
        default_factory=list, description="kept in the held-out set too (e.g. for fairness)"
    )
    evaluation_dataset: str | None = Field(
        default=None,
        description="a registered model (no training function): the CSV/Parquet file every "
        "new version, and the production one, is scored on by the model gates",
    )

    @model_validator(mode="after")
    def _one_source(self) -> ModelUnit:
        if self.evaluation_dataset is not None:
            if self.trains_on is not None or self.dataset is not None:
                raise ValueError(
                    "a registered model (evaluation_dataset) is not trained by the platform: "
                    "drop trains_on and dataset"
                )
            if not self.registered_model:
                raise ValueError(
                    "a model unit with an evaluation_dataset names its registered_model"
                )
            return self
        if (self.trains_on is None) == (self.dataset is None):
            raise ValueError(
                "give exactly one of trains_on (a data unit) and dataset (a CSV or Parquet file), "
                "or registered_model and evaluation_dataset for a model registered outside"
            )
        if not self.features:
            raise ValueError("a model the platform trains names its features")
        return self

    @property
    def registered_only(self) -> bool:
        """Its versions are registered outside the platform: nothing here trains it."""
        return self.evaluation_dataset is not None

    @property
    def model_name(self) -> str:
        return self.registered_model or self.name

    def registered_model_name(self) -> str:
        return self.model_name

    def retrains_on(self) -> str | None:
        return self.trains_on
