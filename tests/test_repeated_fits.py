"""TensorFlow state must not leak between fits (a grid search fits many times)."""

import gc
import logging

import numpy as np
import psutil
import pytest

from imgclf import CNNClassifier


class _Collect(logging.Handler):
    def __init__(self):
        super().__init__(logging.WARNING)
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


def _tracing_counts(keras_function):
    """Trace counts of the tf.functions inside a Keras train/predict function."""
    if hasattr(keras_function, "experimental_get_tracing_count"):
        return [keras_function.experimental_get_tracing_count()]
    cells = [c.cell_contents for c in keras_function.__closure__ or ()]
    counts = [
        f.experimental_get_tracing_count()
        for f in cells
        if hasattr(f, "experimental_get_tracing_count")
    ]
    assert counts, "Keras no longer wraps its step in a tf.function closure; update this test"
    return counts


@pytest.mark.slow
def test_twenty_fits_do_not_grow_memory_or_retrace(small_digits, monkeypatch):
    import tensorflow as tf

    from imgclf import _inference as inference

    # 120 images take model.predict's pipeline, 7 the direct traced call.
    monkeypatch.setattr(inference, "DIRECT_CALL_MAX_IMAGES", 10)
    X, y = small_digits
    X, y = X[:120], y[:120]
    handler = _Collect()
    tf.get_logger().addHandler(handler)
    logging.getLogger().addHandler(handler)
    rss, traces = [], []
    try:
        for seed in range(20):
            clf = CNNClassifier(epochs=1, filters=4, random_state=seed).fit(X, y)
            for _ in range(3):
                clf.predict(X)
                clf.predict_proba(X[:7])  # a different batch shape, as in cross-validation
            model = clf.model_
            # Each model traces each step at most twice (full batches, then a
            # relaxed shape for a smaller last batch), however often it is called.
            direct = inference.traced_predictor(model, model.input_shape[1:], [inference.View()])
            traces.append(
                max(
                    _tracing_counts(model.train_function)
                    + _tracing_counts(model.predict_function)
                    + [direct.experimental_get_tracing_count()]
                )
            )
            del clf, model
            gc.collect()
            rss.append(psutil.Process().memory_info().rss)
    finally:
        tf.get_logger().removeHandler(handler)
        logging.getLogger().removeHandler(handler)
    assert not [m for m in handler.messages if "retracing" in m]
    assert max(traces) <= 2, traces
    # Before the fix each fit kept its traced graph alive: ~9 MB a fit, so
    # ~135 MB over fits 5..20. Allow allocator noise, not a steady climb.
    growth_mb = (rss[-1] - rss[4]) / 2**20
    assert growth_mb < 30, np.round(np.array(rss) / 2**20)


def test_garbage_collection_is_amortised_over_fitting_time(monkeypatch):
    """A full gc.collect costs ~0.2 s with TensorFlow loaded: it runs once fitting
    has taken 1 / GARBAGE_SHARE (100) times as long as the last one did, not
    before every fit."""
    import imgclf._training as base

    calls = []
    monkeypatch.setattr(base.gc, "collect", lambda *a: calls.append(a) or 0)
    monkeypatch.setattr(base, "gpu_visible", lambda: False)  # as on a CPU, also on a GPU machine
    monkeypatch.setattr(base, "GARBAGE", {"fit_seconds": 1.0, "collect_seconds": 0.2})
    base.collect_garbage()
    assert calls == []  # 1 s of fitting does not pay for a 0.2 s collection
    base.GARBAGE["fit_seconds"] = 19.5
    base.collect_garbage()
    assert calls == []  # nor do 19.5 s
    base.GARBAGE["fit_seconds"] = 20.5
    base.collect_garbage()
    assert len(calls) == 1 and base.GARBAGE["fit_seconds"] == 0.0

    X, y = np.zeros((20, 8, 8), np.uint8), np.arange(20) % 2
    X[y == 1] = 255
    base.GARBAGE.update(fit_seconds=0.0, collect_seconds=1e9)
    CNNClassifier(epochs=1, filters=2, random_state=0).fit(X, y)
    assert len(calls) == 1 and base.GARBAGE["fit_seconds"] > 0  # fitting time is counted


def test_garbage_is_always_collected_with_a_gpu(monkeypatch):
    """Device memory is freed only with the Python objects: with a GPU visible
    every fit collects, however little fitting time has passed."""
    import imgclf._training as base

    calls = []
    monkeypatch.setattr(base.gc, "collect", lambda *a: calls.append(a) or 0)
    monkeypatch.setattr(base, "gpu_visible", lambda: True)
    monkeypatch.setattr(base, "GARBAGE", {"fit_seconds": 0.0, "collect_seconds": 1e9})
    base.collect_garbage()
    base.collect_garbage()
    assert len(calls) == 2
