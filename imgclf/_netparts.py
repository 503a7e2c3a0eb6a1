"""The named layers of imgclf's networks, and the one way to look them up.

The estimators build their networks with these names, and the rest of the
library finds the parts by them: ``transform`` reads the pooled features,
the feature cache cuts the network at them, the transfer head is trained
on its own. A saved model keeps the names, so changing one breaks models
saved before; they are defined here once. Nothing here imports TensorFlow
until a function is called.
"""

from __future__ import annotations

from ._backend import get_keras

#: ``TransferClassifier``'s pretrained network (a nested model).
BACKBONE_LAYER = "backbone"
#: The input scaling a named backbone was trained with (or ``TransferClassifier``'s
#: rescaling to 0-255 for the user's own network).
PREPROCESS_LAYER = "preprocess"
#: ``TransferClassifier``'s pooled backbone features: what ``transform``
#: returns and the feature cache stores.
FEATURES_LAYER = "features"
#: ``CNNClassifier``'s globally pooled last stage: what its ``transform`` returns.
POOL_LAYER = "pool"
#: The dropout before the classifier (absent with ``dropout=0``).
DROPOUT_LAYER = "dropout"
#: The classifier's ``Dense`` layer, giving the logits in float32 whatever the precision.
CLASSIFIER_LAYER = "classifier"
#: The temperature dividing the logits (``temperature_``; absent in networks
#: saved before calibration existed).
TEMPERATURE_LAYER = "temperature"
#: The softmax (or, for multi-label targets, sigmoid) after the temperature.
PROBABILITIES_LAYER = "probabilities"


def part(model, name: str):
    """``model``'s layer ``name`` (one of the ``*_LAYER`` constants).

    Raises
    ------
    ValueError
        ``model`` has no such layer (Keras's error).
    """
    return model.get_layer(name)


def has_part(model, name: str) -> bool:
    """Whether ``model`` has a layer ``name``."""
    return any(layer.name == name for layer in model.layers)


def extractor(model):
    """``model`` from its input to its pooled features (sharing its layers)."""
    return get_keras().Model(model.inputs[0], part(model, FEATURES_LAYER).output)


def head_of(model) -> list:
    """``model``'s head layers, in order: dropout (if any), the classifier, and
    the temperature and the activation after it (not in networks saved before
    they existed)."""
    names = (DROPOUT_LAYER, CLASSIFIER_LAYER, TEMPERATURE_LAYER, PROBABILITIES_LAYER)
    return [part(model, n) for n in names if has_part(model, n)]


def apply(layers: list, x):
    """``x`` through ``layers`` in order."""
    for layer in layers:
        x = layer(x)
    return x


def feature_length(model) -> int | None:
    """How many features ``model``'s (or an extractor's) features layer gives
    each image, or None if that is not fixed."""
    try:
        length = part(model, FEATURES_LAYER).output.shape[-1]
    except (ValueError, AttributeError):
        length = model.outputs[0].shape[-1]
    return None if length is None else int(length)


__all__ = [
    "BACKBONE_LAYER",
    "CLASSIFIER_LAYER",
    "DROPOUT_LAYER",
    "FEATURES_LAYER",
    "POOL_LAYER",
    "PREPROCESS_LAYER",
    "PROBABILITIES_LAYER",
    "TEMPERATURE_LAYER",
    "apply",
    "extractor",
    "feature_length",
    "has_part",
    "head_of",
    "part",
]
