"""Where and in what precision a network trains.

The estimators' ``distribute`` and ``precision`` parameters resolve here to
TensorFlow's and Keras's own machinery: a ``tf.distribute.Strategy`` whose
scope the network is built and compiled in, and a Keras dtype policy
(``keras.config.set_dtype_policy``) that is set only while this estimator's
network is built and always put back, so it never reaches the user's own
models or the next fit. The classifier layer of every network computes in
float32 whatever the policy (TensorFlow's mixed-precision guidance: a
softmax in float16 loses probability mass), so probabilities stay float32.
"""

from __future__ import annotations

import contextlib
import warnings

from ._backend import get_keras, get_tf
from .exceptions import InputError

#: Accepted ``precision`` values.
PRECISIONS = ("auto", "float32", "mixed_float16", "mixed_bfloat16")

#: ``precision="auto"`` picks float16 on GPUs of at least this compute
#: capability (Volta and newer have Tensor Cores; older ones gain nothing).
MIN_FLOAT16_CAPABILITY = (7, 0)

# Warnings given once per process.
_WARNED: set[str] = set()


# ------------------------------------------------------------- precision
def resolve_precision(precision: str, gpus=None) -> str:
    """The Keras dtype policy name ``precision`` stands for.

    ``"auto"`` is ``"mixed_float16"`` when there are GPUs and all of them have
    compute capability 7.0 or more, ``"float32"`` otherwise. ``gpus`` defaults
    to the visible physical GPUs; the compute capability is read from
    ``tf.config.experimental.get_device_details``.
    """
    if precision != "auto":
        return precision
    tf = get_tf()
    if gpus is None:
        gpus = tf.config.list_physical_devices("GPU")
    if not gpus:
        return "float32"
    for gpu in gpus:
        capability = tf.config.experimental.get_device_details(gpu).get("compute_capability")
        if capability is None or tuple(capability) < MIN_FLOAT16_CAPABILITY:
            return "float32"
    return "mixed_float16"


def warn_slow_float16(owner: str) -> None:
    """Say once per process that float16 on a CPU is slow (it works: Keras
    computes it, but CPUs have no fast float16 arithmetic)."""
    if "float16" in _WARNED or get_tf().config.list_physical_devices("GPU"):
        return
    _WARNED.add("float16")
    warnings.warn(
        f"{owner}(precision='mixed_float16') on a machine without a GPU: it works, but "
        "CPUs have no fast float16 arithmetic, so training is slower than in float32. "
        "Use precision='auto' or 'float32' on a CPU ('mixed_bfloat16' on CPUs with AMX or "
        "AVX512-BF16).",
        UserWarning,
        stacklevel=4,
    )


def optimizer(learning_rate: float, policy: str):
    """Adam, wrapped in Keras's dynamic ``LossScaleOptimizer`` for float16
    (whose small range underflows gradients without loss scaling; bfloat16
    has float32's range and needs none)."""
    keras = get_keras()
    adam = keras.optimizers.Adam(learning_rate)
    if policy == "mixed_float16":
        return keras.optimizers.LossScaleOptimizer(adam)
    return adam


# ------------------------------------------------------------ distribute
def is_strategy(value) -> bool:
    """A ``tf.distribute.Strategy`` (checked by module first, so a parameter
    check on anything else never imports TensorFlow)."""
    if type(value).__module__.split(".")[0] != "tensorflow":
        return False
    return isinstance(value, get_tf().distribute.Strategy)


def resolve_strategy(distribute, owner: str):
    """The strategy ``distribute`` stands for, or None for one device.

    ``"auto"``: a ``MirroredStrategy`` over the visible GPUs when there are
    two or more, else None (quietly: one device is what most machines have).
    A strategy object is checked against this process's devices, so one made
    for devices that do not exist fails here, naming them, rather than deep
    inside Keras.
    """
    if distribute is None:
        return None
    tf = get_tf()
    if isinstance(distribute, str):  # "auto", the only string the rules accept
        gpus = tf.config.list_logical_devices("GPU")
        if len(gpus) < 2:
            return None
        return tf.distribute.MirroredStrategy([gpu.name for gpu in gpus])
    missing = _missing_devices(tf, distribute)
    if missing:
        present = [d.name for d in tf.config.list_logical_devices()]
        raise InputError(
            f"{owner}(distribute=...) got a {type(distribute).__name__} over devices "
            f"{missing} that this process does not have (it has {present}). Either "
            "1. create the strategy with devices from tf.config.list_logical_devices() in "
            "the process that fits, or 2. pass distribute='auto' (all visible GPUs), or "
            "3. pass distribute=None (one device)."
        )
    return distribute


def _missing_devices(tf, strategy) -> list[str]:
    try:
        devices = strategy.extended.worker_devices
    except (AttributeError, RuntimeError, NotImplementedError):
        return []  # a strategy that does not list its devices: let TensorFlow judge
    local = {
        (spec.device_type, spec.device_index or 0)
        for spec in (tf.DeviceSpec.from_string(d.name) for d in tf.config.list_logical_devices())
    }
    missing = []
    for name in devices:
        spec = tf.DeviceSpec.from_string(name)
        if spec.device_type and (spec.device_type, spec.device_index or 0) not in local:
            missing.append(name)
    return missing


def replicas(strategy) -> int:
    """Replicas a global batch is split over (1 without a strategy)."""
    return 1 if strategy is None else int(strategy.num_replicas_in_sync)


def global_batch(batch_size: int, strategy) -> int:
    """``batch_size`` rounded down to a multiple of the replicas (at least one
    image each), so every full batch splits evenly."""
    r = replicas(strategy)
    return max(r, batch_size // r * r)


@contextlib.contextmanager
def uneven_first_batch_explained(model, owner: str):
    """Turn Keras's failure on a first batch that does not split evenly over
    the replicas into an error that says what to change.

    Keras (3.x, TensorFlow backend) averages the first batch's per-replica
    parts to build the model and metrics, which fails when a dataset smaller
    than one global batch has a size that is not a multiple of the replicas
    (e.g. a hold-out of 21 images over 2 replicas with ``batch_size=64``).
    """
    tf = get_tf()
    try:
        yield
    except tf.errors.InvalidArgumentError as exc:
        r = model.distribute_strategy.num_replicas_in_sync
        if r < 2 or "AddN" not in str(exc):
            raise
        raise InputError(
            f"{owner} trains over {r} replicas, and a training set or validation hold-out "
            f"smaller than one batch has a size that is not a multiple of {r}: Keras cannot "
            "start on a first batch that does not split evenly over the replicas. Either "
            "1. pass a batch_size no larger than the hold-out (validation_fraction times the "
            f"number of images), or 2. use a number of images that makes both splits "
            f"multiples of {r}, or 3. pass distribute=None."
        ) from exc


# ----------------------------------------------------------------- scope
@contextlib.contextmanager
def network_scope(strategy, policy: str):
    """Build a network inside ``strategy``'s scope (if any) with Keras's dtype
    policy set to ``policy``; the previous policy is restored on exit, even
    on error. Keras keeps the policy per thread, so concurrent threads are
    not affected either."""
    keras = get_keras()
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(policy)
    try:
        with strategy.scope() if strategy is not None else contextlib.nullcontext():
            yield
    finally:
        keras.config.set_dtype_policy(previous)


# ---------------------------------------------------------------- export
def plain_model(model):
    """``model`` as a float32 network on one device, for export.

    Mixed-precision layers become float32 ones (TFLite has no bfloat16
    kernels, and float32 is what every serving runtime takes); a model built
    under a strategy becomes one built outside it. The weights are the same
    float32 variables' values (mixed precision keeps weights in float32). A
    model that is already plain is returned as it is.
    """
    tf = get_tf()
    mixed = any(layer.dtype_policy.name.startswith("mixed_") for layer in _all_layers(model))
    distributed = model.distribute_strategy is not tf.distribute.get_strategy()
    if not (mixed or distributed):
        return model
    config = _float32_config(model.get_config())
    with network_scope(None, "float32"):
        copy = model.__class__.from_config(config)
    copy.set_weights(model.get_weights())
    return copy


def _all_layers(model):
    for layer in model.layers:
        yield layer
        if hasattr(layer, "layers"):
            yield from _all_layers(layer)


def _float32_config(config):
    """A Keras config with every mixed dtype policy replaced by float32."""
    if isinstance(config, dict):
        if config.get("class_name") == "DTypePolicy" and isinstance(config.get("config"), dict):
            name = config["config"].get("name", "")
            if name.startswith("mixed_"):
                return {**config, "config": {**config["config"], "name": "float32"}}
        return {key: _float32_config(value) for key, value in config.items()}
    if isinstance(config, list):
        return [_float32_config(value) for value in config]
    if isinstance(config, str) and config.startswith("mixed_"):
        return "float32"
    return config


__all__ = [
    "PRECISIONS",
    "global_batch",
    "plain_model",
    "uneven_first_batch_explained",
    "is_strategy",
    "network_scope",
    "optimizer",
    "replicas",
    "resolve_precision",
    "resolve_strategy",
    "warn_slow_float16",
]
