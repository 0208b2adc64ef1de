"""@@name@@'s training function on rows shaped like its training data: it fits, predicts one
label per row, and learns a pattern that is there. The `model-metric` gate judges the real data."""

import numpy as np
import pandas as pd

from assets.@@name@@ import FEATURES, @@name@@


def rows(n=400, seed=7):
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(rng.normal(size=(n, len(FEATURES))), columns=FEATURES)
    frame["@@label@@"] = (frame[FEATURES[0]] + 0.3 * rng.normal(size=n) > 0).astype(int)
    return frame


def test_trains_and_predicts():
    frame = rows()
    fitted = @@name@@(frame)
    predictions = fitted.predict(frame[FEATURES])
    assert len(predictions) == len(frame)
    assert (predictions == frame["@@label@@"]).mean() > 0.8
