"""The monitor of a model in soak: drift of what it served since its deploy against its
training hold-out (drift.py), judged against the unit's `monitor:` bounds (soak.py). Called
by the model registry's health (targets/mlflow_alias.py) while the version is in soak."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ...home import Home
from ...soak import Verdict, Window
from .drift import psi, reference, served

if TYPE_CHECKING:
    from ...targets.mlflow_alias import MlflowAliasTarget
    from .unit import ModelUnit


def check(registry: MlflowAliasTarget, unit: ModelUnit, window: Window) -> Verdict:
    spec = unit.monitor
    assert spec is not None  # only a unit with a monitor has a window
    got = served(
        Home.current().root,
        window.env,
        unit.model_name,
        window.version,
        window.started.timestamp(),
    )
    evidence = {
        "soak_until": window.until.isoformat(),
        "samples": len(got.predictions),
        "min_samples": spec.min_samples,
        "logs": got.logs,
    }
    if len(got.predictions) < spec.min_samples:
        return Verdict(
            False,
            f"in soak until {window.until.isoformat(timespec='seconds')}: "
            f"{len(got.predictions)} of {spec.min_samples} served predictions to judge drift on",
            evidence,
        )
    ref = reference(registry, unit, window.version)
    feature_psi = {
        name: psi(values, got.column(name), spec.bins)
        for name, values in ref["features"].items()
        if got.column(name)
    }
    prediction_psi = psi(ref["predictions"], got.predictions, spec.bins)
    evidence.update(
        feature_psi=feature_psi,
        prediction_psi=prediction_psi,
        max_feature_psi=spec.max_feature_psi,
        max_prediction_psi=spec.max_prediction_psi,
        reference_rows=ref["rows"],
    )
    over = []
    if spec.max_feature_psi is not None:
        over += [
            f"{name} PSI {value:.3f} > {spec.max_feature_psi:g}"
            for name, value in sorted(feature_psi.items(), key=lambda kv: -kv[1])
            if value > spec.max_feature_psi
        ]
    if spec.max_prediction_psi is not None and prediction_psi > spec.max_prediction_psi:
        over.append(f"predictions PSI {prediction_psi:.3f} > {spec.max_prediction_psi:g}")
    worst = max(feature_psi.values(), default=0.0)
    if over:
        evidence["breaches"] = over
        return Verdict(
            True,
            f"drift over {len(got.predictions)} served predictions since the deploy: "
            + "; ".join(over),
            evidence,
        )
    return Verdict(
        False,
        f"in soak until {window.until.isoformat(timespec='seconds')}: no drift over "
        f"{len(got.predictions)} served predictions (largest feature PSI {worst:.3f}, "
        f"predictions {prediction_psi:.3f})",
        evidence,
    )
