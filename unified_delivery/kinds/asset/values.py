"""A wrapped asset's value as one file: written by its build, read back by its checks and by
readers of what an environment publishes."""

from __future__ import annotations

import hashlib
import json
import pickle
import sys
from pathlib import Path
from typing import Any

import dagster as dg

VALUE = "value"  # the stored file is value.<format>


class ValueStore(dg.IOManager):
    """The IO manager of a wrapped asset's runs: writes its value as the candidate file
    (the build) or reads that file back (its checks)."""

    def __init__(self, directory: Path):
        self.directory = directory

    def handle_output(self, context: dg.OutputContext, obj: Any) -> None:
        if obj is not None:  # nothing stored: the build reports that the asset returned no value
            write_value(obj, self.directory)

    def load_input(self, context: dg.InputContext) -> Any:
        return read_value(value_file(self.directory))


def write_value(value: Any, directory: Path) -> Path:
    """The value as one file, in the most readable format that keeps it exactly."""
    pandas = sys.modules.get("pandas")  # a DataFrame can only come from a loaded pandas
    if (
        pandas is not None
        and isinstance(value, pandas.DataFrame)
        and (parquet := _parquet(value, directory))
    ):
        return parquet
    if isinstance(value, bytes):
        path = directory / f"{VALUE}.bin"
        path.write_bytes(value)
    elif isinstance(value, str):
        path = directory / f"{VALUE}.txt"
        path.write_text(value, encoding="utf-8")
    elif (text := _exact_json(value)) is not None:
        path = directory / f"{VALUE}.json"
        path.write_text(text, encoding="utf-8")
    else:
        path = directory / f"{VALUE}.pickle"
        path.write_bytes(pickle.dumps(value, protocol=5))
    return path


def _parquet(frame: Any, directory: Path) -> Path | None:
    """The frame as Parquet, or None when Arrow cannot type a column (mixed objects): then it is
    pickled."""
    path = directory / f"{VALUE}.parquet"
    try:
        frame.to_parquet(path)
    except (
        ValueError,
        TypeError,
        NotImplementedError,
    ):  # pyarrow's ArrowInvalid, ArrowTypeError, ArrowNotImplementedError
        path.unlink(missing_ok=True)
        return None
    return path


def _exact_json(value: Any) -> str | None:
    """Canonical JSON when it reads back as the same value (no tuples, int keys or NaN lost)."""
    try:
        text = json.dumps(value, sort_keys=True, indent=1, allow_nan=False)
    except (TypeError, ValueError):
        return None
    return text if json.loads(text) == value else None


def read_value(path: Path) -> Any:
    suffix = path.suffix
    if suffix == ".parquet":
        import pandas as pd

        return pd.read_parquet(path)
    if suffix == ".bin":
        return path.read_bytes()
    if suffix == ".txt":
        return path.read_text(encoding="utf-8")
    if suffix == ".json":
        return json.loads(path.read_text(encoding="utf-8"))
    return pickle.loads(path.read_bytes())  # only files ud wrote itself, under its home


def value_file(directory: Path) -> Path:
    found = sorted(directory.glob(f"{VALUE}.*"))
    if not found:
        raise FileNotFoundError(f"no stored value in {directory}")
    return found[0]


def file_digest(path: Path) -> str:
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()
