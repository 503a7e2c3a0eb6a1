"""Temperature scaling: the network's layer and the fit of its one number.

Every imgclf network ends ``Dense`` (logits, no activation) ->
``Temperature`` (logits divided by ``T``, a non-trainable weight) ->
``Softmax``. Training runs with ``T = 1``, so the network trains exactly as
a ``Dense(activation="softmax")`` would; after ``fit``,
:func:`fit_temperature` picks the ``T`` that minimises the negative
log-likelihood of the hold-out's logits (Guo et al., 2017, "On calibration
of modern neural networks") and :func:`set_temperature` writes it into the
layer. Being inside the network, the temperature travels with it: saving,
pickling, export, test-time augmentation, Grad-CAM and the transfer head
run on cached features all see it. Dividing by ``T > 0`` keeps each row's
order, so ``predict`` is unchanged. The layer acts on logits and so works
before a sigmoid as well.

The layer class is defined on first use (``import imgclf`` does not import
Keras) and registered with Keras as ``imgclf>Temperature``;
:func:`custom_objects` gives it to ``load_model``.
"""

from __future__ import annotations

import math

import numpy as np

from ._backend import get_keras
from ._netparts import PROBABILITIES_LAYER, TEMPERATURE_LAYER

#: Name of the layer in every imgclf network, and of the softmax after it.
LAYER_NAME = TEMPERATURE_LAYER
OUTPUT_NAME = PROBABILITIES_LAYER
OUTPUT_LAYERS = (LAYER_NAME, OUTPUT_NAME)
#: Bounds of the search for ``T`` (a wider ``T`` would mean a broken fit).
T_MIN, T_MAX = 0.05, 20.0

_CLASS: dict = {}


def temperature_class():
    """The ``Temperature`` Keras layer class (defined and registered once)."""
    if "cls" in _CLASS:
        return _CLASS["cls"]
    keras = get_keras()

    @keras.saving.register_keras_serializable(package="imgclf", name="Temperature")
    class Temperature(keras.layers.Layer):
        """Divides its input (logits) by a non-trainable scalar ``temperature``."""

        def build(self, input_shape):
            self.temperature = self.add_weight(
                name="temperature",
                shape=(),
                initializer="ones",
                trainable=False,
                dtype="float32",
            )

        def call(self, inputs):
            return inputs / keras.ops.cast(self.temperature, inputs.dtype)

        def compute_output_shape(self, input_shape):
            return input_shape

    Temperature.__module__ = __name__
    _CLASS["cls"] = Temperature
    return Temperature


def custom_objects() -> dict:
    """What ``keras.models.load_model`` needs to rebuild an imgclf network."""
    return {"imgclf>Temperature": temperature_class()}


def output_layers(activation: str = "softmax") -> list:
    """The layers after the classifier's ``Dense`` (which has no activation):
    the temperature, then ``activation`` ("softmax" or "sigmoid"), both float32."""
    keras = get_keras()
    temperature = temperature_class()(name=LAYER_NAME, dtype="float32")
    if activation == "softmax":
        final = keras.layers.Softmax(name=OUTPUT_NAME, dtype="float32")
    else:
        final = keras.layers.Activation(activation, name=OUTPUT_NAME, dtype="float32")
    return [temperature, final]


def temperature_layer(model):
    """``model``'s temperature layer, or None (a network saved before it existed)."""
    for layer in model.layers:
        if is_temperature(layer):
            return layer
    return None


def is_temperature(layer) -> bool:
    return "cls" in _CLASS and isinstance(layer, _CLASS["cls"])


def set_temperature(model, value: float) -> bool:
    """Write ``value`` into ``model``'s temperature layer; False if it has none."""
    layer = temperature_layer(model)
    if layer is None:
        return False
    layer.temperature.assign(float(value))
    return True


def get_temperature(model) -> float:
    """``model``'s temperature (1.0 without a temperature layer)."""
    layer = temperature_layer(model)
    return 1.0 if layer is None else float(np.asarray(layer.temperature.numpy()))


def logits_model(model):
    """``model`` from its input to the logits (the input of its temperature
    layer), sharing its layers; None without a temperature layer."""
    layer = temperature_layer(model)
    if layer is None:
        return None
    return get_keras().Model(model.inputs[0], layer.input, name=f"{model.name}_logits")


def log_softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def nll(logits, y, temperature: float = 1.0, sample_weight=None) -> float:
    """Mean negative log-likelihood of column indices ``y`` under
    ``softmax(logits / temperature)`` (weighted by ``sample_weight``)."""
    logits = np.asarray(logits, dtype=np.float64)
    y = np.asarray(y, dtype=np.int64)
    picked = log_softmax(logits / temperature)[np.arange(len(y)), y]
    return float(-np.average(picked, weights=sample_weight))


def fit_temperature(logits, y, sample_weight=None) -> float:
    """The temperature minimising :func:`nll` on ``(logits, y)``.

    Parameters
    ----------
    logits : ndarray of shape (n, n_classes)
        The network's scores before the softmax.
    y : ndarray of shape (n,)
        Column index of each sample's class.
    sample_weight : ndarray of shape (n,), optional
        Weights of the samples in the likelihood.

    Returns
    -------
    float
        ``T`` in ``(T_MIN, T_MAX]``, searched over ``log T``; 1.0 when the
        likelihood keeps falling down to ``T_MIN`` (a hold-out with no
        mistake: sharpening always lowers its loss), the logits are not
        finite, or no sample has weight.
    """
    from scipy.optimize import minimize_scalar

    logits = np.asarray(logits, dtype=np.float64)
    y = np.asarray(y, dtype=np.int64)
    if sample_weight is not None:
        sample_weight = np.asarray(sample_weight, dtype=np.float64)
        if not sample_weight.sum() > 0:
            return 1.0
    if len(y) == 0 or not np.isfinite(logits).all():
        return 1.0
    counted = np.ones(len(y), bool) if sample_weight is None else sample_weight > 0
    if (logits.argmax(axis=1) == y)[counted].all():
        # Every hold-out image right: sharpening always lowers the loss, down
        # to T -> 0 (every answer certain), and the search would stop wherever
        # the loss is flat in floating point. The hold-out does not tell T.
        return 1.0
    found = minimize_scalar(
        lambda log_t: nll(logits, y, math.exp(log_t), sample_weight),
        bounds=(math.log(T_MIN), math.log(T_MAX)),
        method="bounded",
        options={"xatol": 1e-4},
    )
    if found.x - math.log(T_MIN) < 1e-2:
        # No optimum above the lower bound: the hold-out does not tell T
        # (when every one of its images is right, sharpening always lowers
        # its loss, down to T -> 0, which would make every answer certain).
        # At the upper bound the network is no better than chance on the
        # hold-out, and near-uniform probabilities are the honest answer.
        return 1.0
    value = math.exp(float(found.x))
    # Keep T = 1 unless the search found a strictly better likelihood.
    if not nll(logits, y, value, sample_weight) < nll(logits, y, 1.0, sample_weight):
        return 1.0
    return value


def expected_calibration_error(proba, y, n_bins: int = 15) -> float:
    """Expected calibration error of ``proba`` on column indices ``y``: the
    gap between confidence (the largest probability) and accuracy, averaged
    over ``n_bins`` equal-width bins of confidence weighted by their share."""
    proba = np.asarray(proba, dtype=np.float64)
    y = np.asarray(y)
    confidence = proba.max(axis=1)
    correct = proba.argmax(axis=1) == y
    bins = np.minimum((confidence * n_bins).astype(int), n_bins - 1)
    total = 0.0
    for b in range(n_bins):
        inside = bins == b
        if inside.any():
            total += inside.mean() * abs(correct[inside].mean() - confidence[inside].mean())
    return float(total)


def reliability(proba, y, n_bins: int = 15) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per equal-width confidence bin: ``(mean confidence, accuracy, count)``
    (NaN for empty bins)."""
    proba = np.asarray(proba, dtype=np.float64)
    confidence = proba.max(axis=1)
    correct = proba.argmax(axis=1) == np.asarray(y)
    bins = np.minimum((confidence * n_bins).astype(int), n_bins - 1)
    counts = np.bincount(bins, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        conf = np.bincount(bins, confidence, minlength=n_bins) / counts
        acc = np.bincount(bins, correct.astype(float), minlength=n_bins) / counts
    return conf, acc, counts


__all__ = [
    "LAYER_NAME",
    "OUTPUT_LAYERS",
    "OUTPUT_NAME",
    "custom_objects",
    "expected_calibration_error",
    "fit_temperature",
    "get_temperature",
    "is_temperature",
    "log_softmax",
    "logits_model",
    "nll",
    "output_layers",
    "reliability",
    "set_temperature",
    "temperature_class",
]
