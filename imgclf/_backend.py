"""Lazy access to TensorFlow and Keras, and seeding.

``import imgclf`` must stay light (the command line answers ``--help`` without
TensorFlow), so every module asks this one for ``keras`` / ``tf`` at the moment
it builds or runs a model.
"""

from __future__ import annotations

import contextlib
import os
import random

import numpy as np

_MODULES: dict = {}


def _import():
    if not _MODULES:
        # TensorFlow's C++ start-up chatter (oneDNN, CUDA probing) is noise to a
        # scikit-learn user; a user who set the variable keeps their choice.
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        os.environ.setdefault("KERAS_BACKEND", "tensorflow")
        import keras
        import tensorflow as tf

        if keras.backend.backend() != "tensorflow":
            raise RuntimeError(
                f"imgclf runs on Keras's TensorFlow backend, but KERAS_BACKEND is "
                f"{keras.backend.backend()!r}. Unset KERAS_BACKEND or set it to 'tensorflow'."
            )
        tf.get_logger().addFilter(_ignore_cross_model_retracing)
        _MODULES["tf"] = tf
        _MODULES["keras"] = keras
    return _MODULES["tf"], _MODULES["keras"]


def _ignore_cross_model_retracing(record) -> bool:
    """Drop TensorFlow's retracing warning when it counts several models as one.

    TensorFlow keys its "N out of the last M calls triggered retracing" counter
    on the Python code object, and every Keras model's train/test/predict step
    shares one (``multi_step_on_iterator``). Each new model must trace its
    steps once (twice with a smaller last batch), so a grid search over small
    datasets sets the warning off although no model retraces more than that;
    ``tests/test_repeated_fits.py`` checks the per-model trace counts.
    """
    message = record.getMessage()
    return not ("triggered tf.function retracing" in message and "step_on_" in message)


def get_tf():
    """Return the ``tensorflow`` module, importing it on first use."""
    return _import()[0]


def get_keras():
    """Return the ``keras`` module (Keras 3 on TensorFlow), importing it on first use."""
    return _import()[1]


def resolve_seed(random_state) -> int:
    """Turn a scikit-learn ``random_state`` into one integer seed.

    ``None`` draws a fresh seed from NumPy's global generator, so unseeded fits
    differ while ``np.random.seed(...)`` in a user's script still makes them
    repeatable, as in scikit-learn.
    """
    from sklearn.utils import check_random_state

    return int(check_random_state(random_state).randint(0, 2**31 - 1))


@contextlib.contextmanager
def seeded(seed: int):
    """Seed Python, NumPy and TensorFlow/Keras for the block, then restore
    Python's and NumPy's generators so a fit does not disturb the caller's
    random streams."""
    keras = get_keras()
    py_state = random.getstate()
    np_state = np.random.get_state()
    try:
        keras.utils.set_random_seed(seed)
        yield
    finally:
        random.setstate(py_state)
        np.random.set_state(np_state)


@contextlib.contextmanager
def released_gradient_functions():
    """Drop the gradient functions TensorFlow registered globally during the block.

    Keras's TensorFlow optimizer all-reduces gradients through
    ``tf.custom_gradient``, which registers one gradient function per traced
    train step in TensorFlow's process-wide gradient registry and never removes
    it; that function holds the whole traced graph, about 7 MB per fit, so a
    grid search grows without bound (reproducible with plain Keras). The
    registry is only read while a step is being traced, so once training is
    over the entries added for it can go.
    """
    get_tf()
    try:
        from tensorflow.python.framework import ops

        registry = ops._gradient_registry._registry
        before = set(registry)
    except (AttributeError, ImportError, TypeError):  # internals moved: do nothing
        yield
        return
    try:
        yield
    finally:
        for key in set(registry) - before:
            if isinstance(key, str) and key.startswith("CustomGradient-"):
                registry.pop(key, None)
