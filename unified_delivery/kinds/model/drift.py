"""Drift of a served model: the population stability index (PSI) of the features and the
predictions of the requests it served against its training hold-out.

    PSI = sum over bins of (served% - reference%) * ln(served% / reference%)

with the bins the reference's quantiles (10 by default), so each holds about as many
reference rows; a bin with no row counts as 0.01 % (ln 0 is not a number). By the usual
reading, under 0.1 is no shift, 0.1 to 0.25 a moderate one, above 0.25 a large one.

The served requests come from the prediction log, one JSON line per request that the serving
app appends to `UD_PREDICTION_LOG` (`<home>/state/<app>/<env>/predictions.jsonl`, set by the
app target):

    {"ts": 1764750000.1, "model": "churn_model", "model_version": "3",
     "records": [{"tenure_days": 120.0, ...}], "predictions": [0.31],
     "shadow": {"model_version": "4", "predictions": [0.29]}}       # when it scores a shadow

The reference is the hold-out logged with the version's training run in MLflow (artifact
`holdout/`), or a registered model's evaluation dataset, scored once by the version itself;
it is kept per version under `<home>/monitors/<unit>/`.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ...errors import UDError
from ...home import Home

if TYPE_CHECKING:
    from ...targets.mlflow_alias import MlflowAliasTarget
    from .unit import ModelUnit

FLOOR = 1e-4  # the share an empty bin counts as
TAIL_BYTES = 16 << 20  # a monitor reads at most the last 16 MiB of each prediction log
LOG_NAME = "predictions.jsonl"


def edges(reference: Sequence[float], bins: int) -> list[float]:
    """The inner bin edges: the reference's quantiles, each once."""
    ordered = sorted(float(v) for v in reference)
    if not ordered:
        return []
    cuts = []
    for i in range(1, bins):
        pos = i * (len(ordered) - 1) / bins
        lo = int(math.floor(pos))
        hi = min(lo + 1, len(ordered) - 1)
        cuts.append(ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo))
    return sorted(set(cuts))


def shares(values: Iterable[float], cuts: Sequence[float]) -> list[float]:
    """The share of `values` in each bin (value <= cut goes left)."""
    import bisect

    counts = [0] * (len(cuts) + 1)
    n = 0
    for v in values:
        counts[bisect.bisect_left(cuts, float(v))] += 1
        n += 1
    return [c / n if n else 0.0 for c in counts]


def psi(reference: Sequence[float], served: Sequence[float], bins: int = 10) -> float:
    """The population stability index of `served` against `reference`."""
    cuts = edges(reference, bins)
    expected, actual = shares(reference, cuts), shares(served, cuts)
    total = 0.0
    for e, a in zip(expected, actual):
        e, a = max(e, FLOOR), max(a, FLOOR)
        total += (a - e) * math.log(a / e)
    return round(total, 4)


# ---- the prediction log ----------------------------------------------------------------


def log_path(home: Path, app: str, env: str) -> Path:
    """The contract: where the app `app` in `env` logs what it served (UD_PREDICTION_LOG)."""
    return home / "state" / app / env / LOG_NAME


def read_log(path: Path, *, since: float = 0.0) -> Iterator[dict[str, Any]]:
    """The requests logged in `path` at or after the epoch time `since` (its last 16 MiB)."""
    try:
        with open(path, "rb") as handle:
            size = handle.seek(0, 2)
            handle.seek(max(0, size - TAIL_BYTES))
            if size > TAIL_BYTES:
                handle.readline()  # a line cut in the middle
            data = handle.read()
    except FileNotFoundError:
        return
    for line in data.splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue  # a line being written
        if isinstance(entry, dict) and float(entry.get("ts") or 0) >= since:
            yield entry


@dataclass
class Served:
    """What a model version served in an environment: its requests' records and predictions."""

    records: list[dict[str, Any]] = field(default_factory=list)
    predictions: list[float] = field(default_factory=list)
    logs: list[str] = field(default_factory=list)

    def column(self, name: str) -> list[float]:
        out = []
        for r in self.records:
            v = r.get(name)
            if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
                out.append(float(v))
        return out


def served(home: Path, env: str, model: str, version: str, since: float) -> Served:
    """Every request of every app in `env` that `model` `version` answered since `since`."""
    out = Served()
    for path in sorted((home / "state").glob(f"*/{env}/{LOG_NAME}")):
        found = False
        for entry in read_log(path, since=since):
            if entry.get("model") != model or str(entry.get("model_version")) != version:
                continue
            records, predictions = entry.get("records") or [], entry.get("predictions") or []
            if len(records) != len(predictions):
                continue
            out.records += records
            out.predictions += [float(p) for p in predictions]
            found = True
        if found:
            out.logs.append(str(path))
    return out


# ---- the reference: the version's hold-out, scored by the version -----------------------


def scorer(model: Any):
    """records (a DataFrame) -> one score per row, as the serving app scores them: the
    positive class's probability where the model has one, its prediction otherwise."""
    raw = None
    try:
        raw = model.get_raw_model()
    except Exception:  # noqa: BLE001 - a pyfunc of another flavor: its own predict
        raw = None
    if raw is not None and hasattr(raw, "predict_proba"):
        return lambda frame: [float(row[-1]) for row in raw.predict_proba(frame)]
    return lambda frame: [float(p) for p in _flat(model.predict(frame))]


def _flat(output: Any) -> list[Any]:
    """A pyfunc's output (a frame, a series, an array, a list) as one value per row."""
    if hasattr(output, "to_numpy"):
        output = output.to_numpy()
    rows = output.tolist() if hasattr(output, "tolist") else list(output)
    return [row[-1] if isinstance(row, (list, tuple)) else row for row in rows]


def _holdout(registry: MlflowAliasTarget, unit: ModelUnit, version: str):
    """The version's hold-out (logged with its training run), else the unit's evaluation
    dataset."""
    import pandas as pd

    mv = registry.model_version(unit, version)
    if mv.run_id:
        from mlflow.artifacts import download_artifacts

        registry.activate()
        try:
            folder = Path(download_artifacts(run_id=mv.run_id, artifact_path="holdout"))
            files = sorted(folder.glob("*.parquet")) if folder.is_dir() else [folder]
            if files:
                return pd.read_parquet(files[0])
        except Exception:  # noqa: BLE001 - a version registered without one: the dataset
            pass
    if unit.evaluation_dataset:
        from .translator import read_dataset

        return read_dataset(unit.evaluation_dataset)[0]
    raise UDError(
        "UD-MONITOR-NO-REFERENCE",
        f"{unit.model_name} version {version} has no training hold-out in MLflow (artifact "
        "holdout/) and the unit has no evaluation_dataset to compare its served requests with",
        "register versions through the platform (it logs the hold-out), or give the unit an "
        "evaluation_dataset",
    )


def reference(registry: MlflowAliasTarget, unit: ModelUnit, version: str) -> dict[str, Any]:
    """{"features": {name: [values]}, "predictions": [scores]} of the version's hold-out,
    computed once per version and kept in the home."""
    path = Home.current().root / "monitors" / unit.name / f"reference-{version}.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        pass
    import mlflow.pyfunc

    started = time.monotonic()
    holdout = _holdout(registry, unit, version)
    features = [c for c in (unit.features or []) if c in holdout.columns] or [
        c for c in holdout.columns if c != unit.label and c not in unit.extra_columns
    ]
    registry.activate()
    model = mlflow.pyfunc.load_model(f"models:/{unit.model_name}/{version}")
    frame = holdout[features].astype(float)
    data = {
        "version": version,
        "rows": len(holdout),
        "features": {c: [float(v) for v in frame[c]] for c in features},
        "predictions": scorer(model)(frame),
        "seconds": round(time.monotonic() - started, 3),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data))
    tmp.replace(path)
    return data


# ---- shadow scoring: the challenger's predictions beside the served ones ------------------


@dataclass
class Shadowed:
    """The requests of `env` that the champion answered and the challenger scored in shadow."""

    served: list[float] = field(default_factory=list)  # the champion's, as answered
    shadow: list[float] = field(default_factory=list)  # the challenger's, on the same records
    shadow_ms: list[float] = field(default_factory=list)  # the challenger's scoring time a request
    errors: int = 0  # requests the challenger failed to score
    others: dict[str, int] = field(default_factory=dict)  # "champion/challenger" -> requests
    logs: list[str] = field(default_factory=list)


def shadowed(
    home: Path, env: str, model: str, champion: str, challenger: str, since: float = 0.0
) -> Shadowed:
    """Every request in `env`'s prediction logs that `champion` answered and `challenger`
    scored in shadow (since the epoch time `since`); pairs of other versions are counted."""
    out = Shadowed()
    for path in sorted((home / "state").glob(f"*/{env}/{LOG_NAME}")):
        found = False
        for entry in read_log(path, since=since):
            shadow = entry.get("shadow")
            if entry.get("model") != model or not isinstance(shadow, dict):
                continue
            pair = f"{entry.get('model_version')}/{shadow.get('model_version')}"
            if pair != f"{champion}/{challenger}":
                out.others[pair] = out.others.get(pair, 0) + 1
                continue
            found = True
            if shadow.get("error"):
                out.errors += 1
                continue
            served, scored = entry.get("predictions") or [], shadow.get("predictions") or []
            if len(served) != len(scored):
                out.errors += 1
                continue
            out.served += [float(p) for p in served]
            out.shadow += [float(p) for p in scored]
            if isinstance(shadow.get("ms"), (int, float)):
                out.shadow_ms.append(float(shadow["ms"]))
        if found:
            out.logs.append(str(path))
    return out
