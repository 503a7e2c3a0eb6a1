"""Data augmentation: named presets, dict shorthand, or Keras layers.

The layers become part of the network right after input scaling, so Keras
applies them only in training (``training=True``); prediction, export and the
frozen-feature fast path never see them. They work in 0-1 pixel space.
"""

from __future__ import annotations

import numbers

from ._backend import get_keras
from ._params import did_you_mean
from .exceptions import InputError

#: Preset name -> dict shorthand (see :func:`augmentation_layers`).
PRESETS: dict[str, dict] = {
    # Small shifts and zooms: safe for digits, text and anything orientation-bound.
    "light": {"translation": 0.1, "zoom": 0.1},
    # Adds horizontal flips and a small rotation: photos of objects and scenes.
    "standard": {"flip": "horizontal", "rotation": 0.05, "translation": 0.1, "zoom": 0.1},
    # Adds contrast and brightness jitter: small datasets that overfit quickly.
    "heavy": {
        "flip": "horizontal",
        "rotation": 0.1,
        "translation": 0.15,
        "zoom": 0.2,
        "contrast": 0.2,
        "brightness": 0.2,
    },
}

_SHORTHAND = ("flip", "rotation", "translation", "zoom", "contrast", "brightness")
_FLIPS = ("horizontal", "vertical", "horizontal_and_vertical")


def _is_factor(value) -> bool:
    """A Keras random layer's factor: a number, or a (low, high) pair of numbers."""
    if isinstance(value, (list, tuple)):
        return len(value) == 2 and all(_is_factor(v) for v in value)
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def augment_problem(augment) -> str | None:
    """What is wrong with a dict or list ``augment`` value, or None.

    The ``check`` of the ``augment`` parameter rule, so ``fit`` lists a
    misspelt key with the parameter's other problems, with a hint.
    """
    if isinstance(augment, dict):
        for key, value in augment.items():
            if key not in _SHORTHAND:
                known = ", ".join(repr(k) for k in _SHORTHAND)
                return f"unknown key {key!r}{did_you_mean(key, _SHORTHAND)}; the keys are {known}."
            if key == "flip" and value and value not in _FLIPS:
                return (
                    f"flip={value!r}{did_you_mean(value, _FLIPS)}: expected "
                    "'horizontal', 'vertical' or 'horizontal_and_vertical'."
                )
            if key != "flip" and value is not None and not _is_factor(value):
                return f"{key}={value!r}: expected a number (a factor) or a (low, high) pair."
        return None
    if isinstance(augment, (list, tuple)):
        layer = get_keras().layers.Layer
        for item in augment:
            if not isinstance(item, layer):
                return (
                    f"item {item!r} is not a Keras layer; use e.g. "
                    "[keras.layers.RandomFlip('horizontal')]."
                )
    return None


def augmentation_layers(augment, seed: int | None = None) -> list:
    """Return fresh Keras layers for an ``augment`` parameter value.

    Parameters
    ----------
    augment : None, str, dict or list of keras layers
        ``None`` for none; a key of :data:`PRESETS`; a dict with any of the keys
        ``flip`` (``"horizontal"``, ``"vertical"`` or ``"horizontal_and_vertical"``),
        ``rotation`` (fraction of a full turn), ``translation`` and ``zoom``
        (fraction of the image size), ``contrast`` and ``brightness`` (factor);
        or a list of Keras preprocessing layers, which are copied from their
        config so one estimator can be refitted and cloned safely.
    seed : int, optional
        Seed for the random layers built from a preset or dict.

    Returns
    -------
    list of keras.layers.Layer
        New layers, in the order they are applied.

    Raises
    ------
    imgclf.exceptions.InputError
        For an unknown dict key (with the closest known one), a bad value, or a
        list item that is not a Keras layer.

    Examples
    --------
    >>> from imgclf.augment import augmentation_layers
    >>> [type(layer).__name__ for layer in augmentation_layers("light", seed=0)]
    ['RandomTranslation', 'RandomZoom']
    >>> [type(layer).__name__ for layer in augmentation_layers({"flip": "horizontal"})]
    ['RandomFlip']
    >>> augmentation_layers(None)
    []
    """
    keras = get_keras()
    layers = keras.layers
    if augment is None:
        return []
    if isinstance(augment, str):
        augment = PRESETS[augment]
    problem = augment_problem(augment)
    if problem:
        raise InputError(f"augment: {problem}")
    if isinstance(augment, dict):
        out = []
        if augment.get("flip"):
            out.append(layers.RandomFlip(augment["flip"], seed=seed))
        if augment.get("rotation"):
            out.append(layers.RandomRotation(augment["rotation"], fill_mode="reflect", seed=seed))
        if augment.get("translation"):
            t = augment["translation"]
            out.append(layers.RandomTranslation(t, t, fill_mode="reflect", seed=seed))
        if augment.get("zoom"):
            out.append(layers.RandomZoom(augment["zoom"], fill_mode="reflect", seed=seed))
        if augment.get("contrast"):
            out.append(layers.RandomContrast(augment["contrast"], value_range=(0, 1), seed=seed))
        if augment.get("brightness"):
            out.append(
                layers.RandomBrightness(augment["brightness"], value_range=(0, 1), seed=seed)
            )
        return out
    return [type(layer).from_config(layer.get_config()) for layer in augment]
