"""BatchNorm folded into the convolution before it, for a network whose
weights stay fixed while it runs.

In inference BatchNormalization is a per-channel affine map,
``y = gamma * (x - mean) / sqrt(var + eps) + beta``; after a convolution
``x = W * u + b`` it is the same as one convolution with the kernel scaled
per output channel, ``W' = W * s`` with ``s = gamma / sqrt(var + eps)``, and
the bias ``b' = (b - mean) * s + beta``. :func:`fold_batchnorm` returns a copy
of a Keras network with every such pair made one convolution (the BatchNorm
becomes an ``Identity`` of the same name), everything else copied unchanged:
the same output, less a pass over every convolution's output. EfficientNet-Lite
and MobileNetV2 put a BatchNorm after each of their convolutions, and those
passes, memory-bound, were a third of the frozen backbone's time on a CPU
(``benchmarks/bench_backbone_throughput.py``).

A pair is folded only when the result is exactly the original's:

- the convolution is a ``Conv2D`` (any ``groups``) or a ``DepthwiseConv2D``
  (not a subclass, which may compute something else), with no activation,
  called once in the network; its output goes to nothing but the BatchNorm
  (no other layer, not a model output);
- the BatchNorm (not a subclass) is called once, on that output alone, not with
  ``training=True`` fixed in the graph, and normalises the convolution's
  channel axis;
- both compute in float32 (under mixed precision the BatchNorm computes in
  float32 while the convolution does not, so folding would change the result).

The copy is for inference only: its BatchNorm statistics are gone, so it
must not be trained, and it is not saved. Functional and Sequential models
are walked, nested ones too (a backbone inside an extractor); any other model
is returned as it is, as is one with nothing to fold. The copy shares no
variable with the original: changing one changes nothing in the other.
"""

from __future__ import annotations

import weakref

import numpy as np

from ._backend import get_keras, get_tf
from ._digests import weights_digest


def inference_copy(model):
    """:func:`fold_batchnorm` of ``model`` where it may run in its place: for a
    model on one device (not one built under a ``tf.distribute`` strategy,
    whose variables the copy would not follow). ``model`` itself otherwise,
    and when it cannot be copied (a layer Keras cannot rebuild from its
    config): folding only saves time, so such a network runs unfolded."""
    tf = get_tf()
    if (
        tf.distribute.has_strategy()
        or model.distribute_strategy is not tf.distribute.get_strategy()
    ):
        return model
    try:
        return fold_batchnorm(model)
    except Exception:
        return model


#: Per network: (digest of its weights, its folded copy or None for itself).
_KEPT: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def kept_inference_copy(model):
    """:func:`inference_copy` of ``model``, made once and kept for later calls
    while ``model``'s weights stay as they are (a digest of them is checked on
    every call: trained or edited weights get a new copy), and no longer than
    ``model`` lives."""
    digest = weights_digest(model)
    kept = _KEPT.get(model)
    if kept is not None and kept[0] == digest:
        return model if kept[1] is None else kept[1]
    copy = inference_copy(model)
    _KEPT[model] = (digest, None if copy is model else copy)  # no reference to the key
    return copy


def foldable_pairs(model) -> list[tuple]:
    """The ``(convolution, BatchNormalization)`` layer pairs of ``model``
    (nested models included) that :func:`fold_batchnorm` folds."""
    pairs: list[tuple] = []
    _collect(model, pairs, set())
    return pairs


def fold_batchnorm(model):
    """An inference-only copy of ``model`` with its foldable BatchNorms folded
    into the convolutions before them (see the module's notes), or ``model``
    itself when it has none.

    Raises whatever Keras raises when a layer cannot be copied (a custom layer
    without ``get_config``): the caller may then run ``model`` as it is.
    """
    keras = get_keras()
    pairs = foldable_pairs(model)
    if not pairs:
        return model
    convs = {id(conv): (conv, bn) for conv, bn in pairs}
    bns = {id(bn) for _, bn in pairs}
    copies: list[tuple] = []  # (original layer, its copy)
    standins: set[int] = set()  # the copies of folded BatchNorms

    def clone(layer):
        if id(layer) in bns:
            copy = keras.layers.Identity(name=layer.name, dtype=layer.dtype_policy)
            standins.add(id(copy))
        else:
            config = layer.get_config()
            if id(layer) in convs:
                config = {**config, "use_bias": True, "bias_initializer": "zeros",
                          "bias_regularizer": None, "bias_constraint": None}  # fmt: skip
            copy = layer.__class__.from_config(config)
        copies.append((layer, copy))
        return copy

    def call(layer, *args, **kwargs):
        # A folded BatchNorm's stand-in is left out of a functional graph (its
        # node may carry a mask argument Identity does not take).
        if id(layer) in standins:
            return args[0]
        return layer(*args, **kwargs)

    functional = not isinstance(model, keras.Sequential)  # Sequential takes no call_function
    copy = keras.models.clone_model(
        model, clone_function=clone, call_function=call if functional else None, recursive=True
    )
    for layer, twin in copies:
        if id(layer) in bns:
            continue
        if id(layer) in convs:
            twin.set_weights(folded_weights(*convs[id(layer)]))
        elif getattr(layer, "weights", None):  # not a bare operation, such as x + y
            twin.set_weights(layer.get_weights())
    return copy


def folded_weights(conv, bn) -> list[np.ndarray]:
    """The kernel and bias of ``conv`` followed by ``bn`` in inference, as one
    convolution (computed in float64, returned as float32)."""
    mean = np.asarray(bn.moving_mean.numpy(), dtype=np.float64)
    variance = np.asarray(bn.moving_variance.numpy(), dtype=np.float64)
    gamma = np.asarray(bn.gamma.numpy(), dtype=np.float64) if bn.scale else 1.0
    beta = np.asarray(bn.beta.numpy(), dtype=np.float64) if bn.center else 0.0
    scale = gamma / np.sqrt(variance + bn.epsilon)
    kernel = np.asarray(conv.kernel.numpy(), dtype=np.float64)
    bias = np.asarray(conv.bias.numpy(), dtype=np.float64) if conv.use_bias else 0.0
    if _is_depthwise(conv):
        # (kh, kw, channels, multiplier): output channel c * multiplier + m.
        kernel = kernel * scale.reshape(kernel.shape[2], kernel.shape[3])
    else:  # (kh, kw, channels / groups, filters)
        kernel = kernel * scale
    bias = (bias - mean) * scale + beta
    return [kernel.astype(np.float32), np.broadcast_to(bias, scale.shape).astype(np.float32)]


# ------------------------------------------------------------------ the graph
def _is_depthwise(layer) -> bool:
    return type(layer) is get_keras().layers.DepthwiseConv2D


def _is_conv(layer) -> bool:
    layers = get_keras().layers
    return type(layer) in (layers.Conv2D, layers.DepthwiseConv2D)


def _is_model(layer) -> bool:
    return isinstance(layer, get_keras().Model)


def _collect(model, pairs: list, seen: set) -> None:
    """Add ``model``'s foldable pairs, and its nested models', to ``pairs``."""
    if id(model) in seen:
        return
    seen.add(id(model))
    keras = get_keras()
    if isinstance(model, keras.Sequential):
        layers = model.layers
        for conv, bn in zip(layers[:-1], layers[1:], strict=True):
            if _is_conv(conv) and len(conv._inbound_nodes) <= 1 and _pair_fits(conv, bn):
                pairs.append((conv, bn))
    elif getattr(model, "_nodes_by_depth", None) is not None:  # functional
        pairs.extend(_functional_pairs(model))
    else:  # a subclassed model: what it computes is its own code
        return
    for layer in model.layers:
        if _is_model(layer):
            _collect(layer, pairs, seen)


def _functional_pairs(model) -> list[tuple]:
    nodes = [node for depth in model._nodes_by_depth.values() for node in depth]
    consumers: dict[int, list] = {}
    for node in nodes:
        for tensor in node.arguments.keras_tensors:
            consumers.setdefault(id(tensor), []).append(node)
    outputs = {id(t) for t in model.outputs}
    pairs = []
    for node in nodes:
        conv = node.operation
        if not _is_conv(conv) or len(conv._inbound_nodes) != 1 or len(node.outputs) != 1:
            continue
        out = node.outputs[0]
        users = consumers.get(id(out), [])
        if id(out) in outputs or len(users) != 1:
            continue
        user = users[0]
        bn = user.operation
        arguments = user.arguments
        if (
            len(arguments.keras_tensors) != 1
            or arguments.kwargs.get("training") is True
            or getattr(bn, "_inbound_nodes", None) is None
            or len(bn._inbound_nodes) != 1
        ):
            continue
        if _pair_fits(conv, bn):
            pairs.append((conv, bn))
    return pairs


def _pair_fits(conv, bn) -> bool:
    """Whether ``bn`` after ``conv`` folds into it (their layer types and
    settings; the graph is checked by the caller)."""
    keras = get_keras()
    if type(bn) is not keras.layers.BatchNormalization or not (conv.built and bn.built):
        return False
    if getattr(conv.activation, "__name__", None) != "linear":
        return False
    if len(bn._inbound_nodes) > 1:
        return False
    float32 = all(
        layer.compute_dtype == "float32" and layer.variable_dtype == "float32"
        for layer in (conv, bn)
    )
    if not float32:
        return False
    rank = len(conv.kernel.shape)
    channel_axis = rank - 1 if conv.data_format == "channels_last" else 1
    return int(bn.axis) % rank == channel_axis


__all__ = [
    "fold_batchnorm",
    "foldable_pairs",
    "folded_weights",
    "inference_copy",
    "kept_inference_copy",
]
