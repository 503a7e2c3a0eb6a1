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
        tf.get_logger().setLevel("ERROR")
        _MODULES["tf"] = tf
        _MODULES["keras"] = keras
    return _MODULES["tf"], _MODULES["keras"]


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
