"""`ud new model NAME`: a training function with its gates and a test, trained on a sample
file of its own or on a data unit of the platform (`--trains-on DATA --label COL`)."""

from __future__ import annotations

from pathlib import Path

from ... import dbt
from ...errors import ConfigError
from ..scaffolding import SAMPLE_COLUMNS, Filled, NewUnit, sample_rows


def fill(request: NewUnit) -> Filled:
    name, trains_on, label = request.name, request.trains_on, request.label
    values = {"label": label or "label", "features": repr(SAMPLE_COLUMNS)}
    files = {}
    if trains_on:
        if not label:
            raise ConfigError(
                "UD-NEW-LABEL",
                f"a model trained on {trains_on} needs --label",
                f"name the column of {trains_on} to predict",
            )
        comment = "the data unit whose production version it trains on"
        values["source"] = f'trains_on="{trains_on}",  # {comment}'
        values["features"] = repr(_columns_of(request.root, trains_on, label))
    else:
        comment = "a sample: replace with your training rows"
        values["source"] = f'dataset="../data/{name}.csv",  # {comment}'
        files[f"data/{name}.csv"] = sample_rows(name, with_id=False)
    return Filled(values=values, files=files, next_steps=[f"ud promote {name} --to staging"])


def _columns_of(root: Path, data_unit: str, label: str) -> list[str]:
    """The features a model trained on a data unit starts with: its documented columns but ids
    and the label."""
    manifest = dbt.ensure_manifest(root / "dbt_project")
    node = next(
        (
            n
            for n in manifest["nodes"].values()
            if n["resource_type"] == "model" and n["name"] == data_unit
        ),
        None,
    )
    if node is None:
        raise ConfigError(
            "UD-NEW-TRAINS-ON",
            f"{data_unit!r} is not a model of {root / 'dbt_project'}",
            "name a data unit of this platform (ud new data NAME makes one)",
        )
    documented = node.get("columns", {})
    columns = [c for c in documented if c != label and c != "id" and not c.endswith("_id")]
    if label not in documented or not columns:
        raise ConfigError(
            "UD-NEW-TRAINS-ON",
            f"{data_unit} documents no column {label!r} and features besides it",
            "document its columns in dbt (columns: in its .yml) or pick --label from them",
        )
    return columns
