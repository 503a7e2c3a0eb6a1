"""How training runs, apart from any one estimator: the callbacks of a stage
(early stopping, plateau reductions) and their constants, the batch size,
the pixel range, and the amortised garbage collection between fits."""

from __future__ import annotations

import gc
import time

import numpy as np

from ._backend import get_keras, get_tf

#: Early stopping ignores improvements of the monitored loss smaller than
#: this: once the learning rate is low the loss creeps down by 1e-4 an epoch
#: for many epochs, and that is not progress.
EARLY_STOPPING_MIN_DELTA = 1e-3
#: ``reduce_lr_on_plateau`` multiplies the learning rate by this factor after
#: ``max(1, patience // 2)`` epochs without improvement...
PLATEAU_FACTOR = 0.2
#: ...down to ``learning_rate * PLATEAU_MIN_RATIO``.
PLATEAU_MIN_RATIO = 0.01


def stage_callbacks(
    monitor: str,
    *,
    learning_rate: float,
    patience: int,
    early_stopping: bool,
    reduce_lr_on_plateau: bool,
) -> list:
    """The callbacks every training stage runs: plateau reductions (when asked
    for) then early stopping that restores the best weights (when on)."""
    keras = get_keras()
    callbacks = []
    if reduce_lr_on_plateau:
        callbacks.append(
            keras.callbacks.ReduceLROnPlateau(
                monitor=monitor,
                factor=PLATEAU_FACTOR,
                patience=max(1, patience // 2),
                min_lr=learning_rate * PLATEAU_MIN_RATIO,
            )
        )
    if early_stopping:
        callbacks.append(
            keras.callbacks.EarlyStopping(
                monitor=monitor,
                patience=patience,
                min_delta=EARLY_STOPPING_MIN_DELTA,
                restore_best_weights=True,
            )
        )
    return callbacks


# Seconds spent fitting since the last collection, and what that collection took.
GARBAGE = {"fit_seconds": 0.0, "collect_seconds": 0.0}
GARBAGE_SHARE = 0.02


def collect_garbage() -> None:
    """Collect the reference cycles of networks dropped by earlier fits, amortised.

    A Keras model is a web of cycles that only ``gc.collect`` frees. A full
    collection walks every object TensorFlow created (~0.2 s here), which was
    the whole of imgclf's overhead over plain Keras on small fits. So it runs
    only once fitting since the last one has taken ``1 / GARBAGE_SHARE``
    times as long as that collection did: after every fit of a large network,
    every few fits of a small one (whose networks weigh little meanwhile).
    With a GPU it always runs: device memory is freed only with the Python
    objects, and Python's own collector does not see it filling up.
    """
    state = GARBAGE
    due = state["collect_seconds"] <= GARBAGE_SHARE * state["fit_seconds"]
    if not (due or gpu_visible()):
        return
    start = time.perf_counter()
    gc.collect()
    state["collect_seconds"] = time.perf_counter() - start
    state["fit_seconds"] = 0.0


def count_fitting(seconds: float) -> None:
    """Add a fit's duration to the time the next collection is weighed against."""
    GARBAGE["fit_seconds"] += seconds


def gpu_visible() -> bool:
    return bool(get_tf().config.list_physical_devices("GPU"))


def resolve_batch_size(batch_size, n_train: int) -> int:
    """``"auto"``: a power of two giving about 50 steps per epoch, from 16 to 128.

    Small datasets need many small steps: with a few large ones per epoch,
    BatchNorm's running statistics lag the weights, the validation loss looks
    worse than it is and early stopping fires on a good model.
    """
    if batch_size != "auto":
        return int(batch_size)
    steps_target = 50
    size = 16
    while size < 128 and n_train / (size * 2) >= steps_target:
        size *= 2
    return size


def pixel_range(array: np.ndarray) -> tuple[float, float]:
    """Pixel units of the training data, mapped to 0-1 by the network's first layer.

    uint8 (and bool) are 0-255 (0-1); floats already in 0-1 stay as they are;
    anything else (e.g. digits' 0-16) is min-max scaled by the range seen in fit.
    """
    if array.dtype == np.uint8:
        return (0.0, 255.0)
    if array.dtype == np.uint16:
        return (0.0, 65535.0)
    if array.dtype == np.bool_:
        return (0.0, 1.0)
    low, high = float(array.min()), float(array.max())
    if low >= 0 and high <= 1:
        return (0.0, 1.0)
    return (low, high)
