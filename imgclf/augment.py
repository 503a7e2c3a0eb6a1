"""Data augmentation: named presets, dict shorthand, or Keras layers.

The layers become part of the network right after input scaling, so Keras
applies them only in training (``training=True``); prediction, export and the
frozen-feature fast path never see them. They work in 0-1 pixel space.
"""

from __future__ import annotations

from ._backend import get_keras

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
    if isinstance(augment, dict):
        unknown = sorted(set(augment) - set(_SHORTHAND))
        if unknown:
            raise ValueError(
                f"augment has unknown key(s) {unknown}; known keys are {list(_SHORTHAND)}."
            )
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
    out = []
    for layer in augment:
        if not isinstance(layer, layers.Layer):
            raise ValueError(
                f"augment list items must be Keras layers, got {layer!r}; use e.g. "
                "[keras.layers.RandomFlip('horizontal')]."
            )
        out.append(type(layer).from_config(layer.get_config()))
    return out
