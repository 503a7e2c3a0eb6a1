"""What ``TransferClassifier``'s feature cache (``memory``) keys its entries by.

An image's key (:func:`image_keys`) and a feature extractor's
(:func:`extractor_key`: everything the features depend on besides the image,
:func:`extractor_identity`, and every weight), the store for a fit or a
``transform`` (:func:`open_store`, warning when ``memory`` cannot be used),
and the features of a set of images read from it where it holds them
(:func:`features_of`). The store itself, its file format and its checks are
:mod:`imgclf._featcache`'s; this module needs Keras, that one does not.
"""

from __future__ import annotations

import json
import warnings

import numpy as np

import imgclf._featcache as featcache

from . import __version__
from ._backend import get_keras, get_tf
from ._digests import short_digest
from ._netparts import BACKBONE_LAYER
from ._validation import Images


def image_keys(images: Images) -> list:
    """One key per image: of an array row's bytes, or a file's identity."""
    if images.array is not None:
        return featcache.array_keys(images.array)
    return featcache.path_keys(images.paths)


def weight_arrays(model) -> list[np.ndarray]:
    """``model``'s weights as NumPy arrays, in order."""
    return [np.asarray(w.numpy()) for w in model.weights]


def architecture_digest(model) -> str:
    """A digest of ``model``'s configuration without its layers' ``trainable``
    flags: freezing the backbone (as the first fit of a search does to the
    network it loaded) changes no feature, so it must not change the key."""

    def strip(value):
        if isinstance(value, dict):
            return {k: strip(v) for k, v in value.items() if k != "trainable"}
        if isinstance(value, list):
            return [strip(v) for v in value]
        return value

    text = json.dumps(strip(json.loads(model.to_json())), sort_keys=True)
    return short_digest(text.encode()).hex()


def extractor_identity(
    extractor, architecture: str, *, image_size, channels, color_mode, input_range, rounded
) -> dict:
    """Everything ``extractor``'s features depend on besides the image and the
    weights: the backbone's ``architecture`` (a registry name or
    :func:`architecture_digest`), the layers around it (input scaling,
    preprocessing, pooling), the input spec, whether pixels were
    ``rounded`` to uint8 (read from a pixel cache) and the library versions.
    Random flips (augmentation) are left out: they pass images through
    unchanged outside training, so the features are the same with or
    without them (and whatever their seeds)."""
    flip = get_keras().layers.RandomFlip
    kept = [layer for layer in extractor.layers if not isinstance(layer, flip)]
    around = {
        layer.__class__.__name__ + f"#{i}": {
            k: v for k, v in layer.get_config().items() if k != "name"
        }
        for i, layer in enumerate(kept)
        if layer.name != BACKBONE_LAYER
    }
    return {
        "backbone": architecture,
        "layers": around,
        "image_size": list(image_size),
        "channels": channels,
        "color_mode": color_mode,
        "input_range": list(input_range),
        "rounded": rounded,
        "versions": [__version__, get_keras().__version__, get_tf().__version__],
    }


def extractor_key(extractor, identity: dict) -> bytes:
    """The key of ``extractor``'s features, given its :func:`extractor_identity`."""
    return featcache.network_key(identity, weight_arrays(extractor))


def open_store(memory, key, owner: str, *, length=None, transform: bool = False):
    """The ``memory`` store for the extractor whose key ``key()`` computes, or
    None: no ``memory``, or (with a :class:`~imgclf.exceptions.FeatureCacheWarning`)
    a backbone that cannot be described or a folder that cannot be made.
    ``transform``: the store is for ``transform``, not a fit."""
    root = featcache.location(memory)
    if root is None:
        return None
    try:
        network = key()
    except Exception as exc:  # e.g. a custom layer without get_config
        by, then = (
            (" by transform", "Its features are computed in every call.")
            if transform
            else ("", "Features are computed in every fit.")
        )
        warnings.warn(
            f"{owner}(memory={root!r}) is not used{by}: the backbone could not be described "
            f"for the cache ({type(exc).__name__}: {exc}). {then}",
            featcache.FeatureCacheWarning,
            stacklevel=3,
        )
        return None
    return featcache.FeatureStore.open(root, network, length)


def features_of(images: Images, store, compute) -> np.ndarray:
    """Features of ``images`` in order: read from ``store`` where it has them,
    computed (``compute(subset, rows)``, ``rows`` their positions in
    ``images``) and stored where not."""
    if store is None:
        return compute(images, np.arange(len(images)))
    keys = image_keys(images)
    found, _ = store.get(keys)
    missing = [i for i, f in enumerate(found) if f is None]
    if missing:
        part = images.subset(np.asarray(missing))
        computed = compute(part, np.asarray(missing))
        # A file rewritten while it was read keeps its old key out of the
        # store: its features may be of either version.
        after = image_keys(part)
        before = [keys[i] for i in missing]
        store.put([k if k == a else None for k, a in zip(before, after, strict=True)], computed)
        for i, row in zip(missing, computed, strict=True):
            found[i] = row
    return np.stack(found).astype(np.float32, copy=False)


__all__ = [
    "architecture_digest",
    "extractor_identity",
    "extractor_key",
    "features_of",
    "image_keys",
    "open_store",
    "weight_arrays",
]
