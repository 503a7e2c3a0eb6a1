"""Scores of predicted probabilities, as the benchmarks print them."""

from __future__ import annotations

import numpy as np

from imgclf._calibration import expected_calibration_error


def proba_scores(proba, classes, y) -> tuple[float, float, float]:
    """Accuracy, log loss (probabilities clipped at 1e-12) and expected
    calibration error (15 bins) of ``proba``, whose columns are ``classes``
    (sorted), against the labels ``y``."""
    proba = np.asarray(proba)
    columns = np.searchsorted(classes, y)
    picked = np.clip(proba[np.arange(len(columns)), columns], 1e-12, 1.0)
    return (
        float(np.mean(np.argmax(proba, axis=1) == columns)),
        float(-np.mean(np.log(picked))),
        expected_calibration_error(proba, columns),
    )
