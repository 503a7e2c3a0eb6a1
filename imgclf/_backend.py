"""Lazy access to TensorFlow and Keras, the process's TensorFlow settings, and seeding.

``import imgclf`` must stay light (the command line answers ``--help`` without
TensorFlow), so every module asks this one for ``keras`` / ``tf`` at the moment
it builds or runs a model. That first import is also the last moment
TensorFlow's thread pools and GPU memory can be configured in a process:
:func:`configure_process` does it there.
"""

from __future__ import annotations

import contextlib
import os
import random

import numpy as np

_MODULES: dict = {}


def _import():
    if not _MODULES:
        environment_defaults()
        import keras
        import tensorflow as tf

        if keras.backend.backend() != "tensorflow":
            raise RuntimeError(
                f"imgclf runs on Keras's TensorFlow backend, but KERAS_BACKEND is "
                f"{keras.backend.backend()!r}. Unset KERAS_BACKEND or set it to 'tensorflow'."
            )
        tf.get_logger().addFilter(_ignore_cross_model_retracing)
        configure_process(tf.config)
        _MODULES["tf"] = tf
        _MODULES["keras"] = keras
    return _MODULES["tf"], _MODULES["keras"]


def environment_defaults(environ=None) -> dict:
    """Set TensorFlow's environment variables that must precede its import,
    each only where the user has not set it; returns what was set.

    * ``TF_CPP_MIN_LOG_LEVEL=2``: TensorFlow's C++ start-up chatter (oneDNN,
      CUDA probing) is noise to a scikit-learn user.
    * ``KERAS_BACKEND=tensorflow``.
    * ``TF_ENABLE_ONEDNN_OPTS=1``: TensorFlow turns its oneDNN CPU kernels on
      by default only on some x86 CPUs. On the AMD EPYC machine the project is
      measured on, they made a training step of CNNClassifier's default
      network on 28x28 images 1.55x cheaper in CPU time (2.0 against 3.2 CPU
      seconds per 1,000 images; docs/training.rst, "Accuracy per CPU-minute").
    """
    environ = os.environ if environ is None else environ
    done = {}
    for name, value in ENVIRONMENT_DEFAULTS.items():
        if name not in environ:
            environ[name] = done[name] = value
    return done


#: What :func:`environment_defaults` sets, unless already set.
ENVIRONMENT_DEFAULTS = {
    "TF_CPP_MIN_LOG_LEVEL": "2",
    "KERAS_BACKEND": "tensorflow",
    "TF_ENABLE_ONEDNN_OPTS": "1",
}


def thread_share(environ=None) -> int | None:
    """Cores this process may use, as its parallel launcher said, or None.

    ``OMP_NUM_THREADS`` is how launchers hand a worker process its share:
    joblib's process backend (loky, ``n_jobs=k``) sets it to
    ``cpu_count() // k`` in each worker unless the parent already set it,
    Dask's nanny to 1 per worker process (``distributed.nanny.pre-spawn-environ``),
    and job schedulers' scripts often to the cores allotted. TensorFlow itself
    ignores it and would start a thread per core in every worker.
    """
    environ = os.environ if environ is None else environ
    try:
        threads = int(environ.get("OMP_NUM_THREADS", ""))
    except ValueError:
        return None
    return threads if threads >= 1 else None


def configure_process(config, environ=None) -> dict:
    """Set TensorFlow's process-wide settings before its runtime starts.

    * Thread pools: intra-op and inter-op parallelism limited to
      :func:`thread_share`, so ``k`` workers on one machine do not each run a
      thread per core (oversubscription makes a search slower than ``n_jobs=1``).
    * GPU memory growth on every visible GPU, so two processes (two search
      workers, or a fit beside a notebook) can share a GPU instead of the
      first one reserving all its memory. ``TF_FORCE_GPU_ALLOW_GROWTH=false``
      in the environment keeps TensorFlow's default.

    ``config`` is ``tf.config`` (a stand-in in tests). Settings TensorFlow
    refuses because its runtime already started in this process (a user's
    own TensorFlow code ran first) are left as they are. Returns what was set.
    """
    environ = os.environ if environ is None else environ
    done: dict = {}
    threads = thread_share(environ)
    if threads is not None:
        try:
            config.threading.set_intra_op_parallelism_threads(threads)
            config.threading.set_inter_op_parallelism_threads(threads)
            done["threads"] = threads
        except RuntimeError:
            pass  # the runtime already started: its pools stay as they are
    if environ.get("TF_FORCE_GPU_ALLOW_GROWTH", "").lower() != "false":
        grown = []
        for gpu in config.list_physical_devices("GPU"):
            try:
                config.experimental.set_memory_growth(gpu, True)
                grown.append(gpu)
            except (RuntimeError, ValueError):
                pass  # already initialised, or split into virtual devices by the user
        done["memory_growth"] = grown
    return done


def _ignore_cross_model_retracing(record) -> bool:
    """Drop TensorFlow's retracing warning when it counts several models as one.

    TensorFlow keys its "N out of the last M calls triggered retracing" counter
    on the Python code object, and every Keras model's train/test/predict step
    shares one (``multi_step_on_iterator``), as does imgclf's direct predict
    call (``imgclf_predict_step``, one per network). Each new model must trace its
    steps once (twice with a smaller last batch), so a grid search over small
    datasets sets the warning off although no model retraces more than that;
    ``tests/test_repeated_fits.py`` checks the per-model trace counts.
    """
    message = record.getMessage()
    shared = "step_on_" in message or "imgclf_predict_step" in message
    return not ("triggered tf.function retracing" in message and shared)


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
