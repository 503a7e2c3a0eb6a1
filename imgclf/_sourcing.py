"""Where ``TransferClassifier``'s backbone comes from, and when fits share one.

A backbone is a name from :data:`imgclf.backbones.BACKBONES` (built here,
with ImageNet, random or a file's weights) or the user's own network (a
``keras.Model`` or a saved ``.keras`` file, copied, never changed, its
trailing classifier cut off). Fits that read their features from
``memory`` and never change the backbone's weights take the one an earlier
fit of this process built for the same recipe
(:data:`imgclf.backbones.shared_backbones`); :func:`shared_key` says which
recipe that is. Plain functions of the estimator's parameters and fitted
input spec.
"""

from __future__ import annotations

import os
import random

import imgclf._featcache as featcache

from ._backend import get_keras, get_tf
from ._calibration import custom_objects
from ._digests import short_digest
from ._files import file_identity, special_problem
from ._netparts import BACKBONE_LAYER
from ._persist import model_from_bytes, model_to_bytes
from .backbones import (
    BACKBONES,
    Backbone,
    download_failure,
    feature_tensor,
    input_shape,
    load_weights,
    shared_backbones,
    unknown_backbone_message,
)
from .exceptions import InputError


def looks_like_path(value: str) -> bool:
    """Whether a ``backbone`` string names a file rather than a registry entry."""
    return value.endswith((".keras", ".h5")) or os.sep in value or "/" in value


def is_keras_model(value) -> bool:
    """Whether ``value`` is a ``keras.Model``."""
    # Checked by name first so a parameter check never imports TensorFlow.
    if type(value).__module__.split(".")[0] != "keras":
        return False
    return isinstance(value, get_keras().Model)


def backbone_problem(value: str) -> str | None:
    """What is wrong with a ``backbone`` string (a name or a path), or None."""
    if looks_like_path(value):
        if not os.path.isfile(value):
            return "no such file. Pass an existing .keras file."
        if not value.endswith(".keras"):
            return (
                "expected a model saved with model.save('....keras'); for a weights file of a "
                "named backbone use weights=... instead."
            )
        return None
    if BACKBONES.get(value.lower().replace("-", "_")) is None:
        return unknown_backbone_message(value)
    return None


def named_entry(backbone) -> Backbone | None:
    """The registry entry ``backbone`` names, or None for the user's network."""
    if isinstance(backbone, str) and not looks_like_path(backbone):
        return BACKBONES.get(backbone.lower().replace("-", "_"))
    return None


def load_source(backbone, owner: str):
    """The user's network ``backbone`` as given (a model, or loaded from its
    file), checked to take one image input."""
    if is_keras_model(backbone):
        model = backbone
    else:
        path = os.fspath(backbone)
        problem = special_problem(path)  # Keras opens it by name: a FIFO would block
        if problem is not None:
            raise InputError(f"{owner}: backbone={path!r} {problem}; pass a .keras file.")
        try:
            model = get_keras().models.load_model(
                path, compile=False, custom_objects=custom_objects()
            )
        except Exception as exc:
            raise InputError(
                f"{owner} could not load backbone={path!r} as a Keras "
                f"model: {exc}. Save it with model.save('name.keras')."
            ) from exc
    shape = input_shape(model)
    if shape is None or len(shape) != 4 or shape[-1] not in (1, 3):
        raise InputError(
            f"backbone {getattr(model, 'name', model)!r} takes input of shape {shape}; "
            "TransferClassifier needs a model with one image input (None, h, w, 1 or 3), "
            "e.g. built from keras.Input((h, w, 3))."
        )
    return model


def named_backbone(named: Backbone, image_size, weights, owner: str):
    """The registry's network ``named`` at ``image_size`` with ``weights``
    (``"imagenet"``, None or a weights file), as the backbone layer."""
    keras = get_keras()
    shape = (*image_size, 3)
    if weights == "imagenet":
        try:
            net = named.build(shape, "imagenet")
        except Exception as exc:
            offline = download_failure(exc, named, owner)
            if offline is not None:
                raise offline from exc
            raise
    else:
        net = named.build(shape, None)
        if weights is not None:
            load_weights(net, weights, f"backbone {named.name!r}", owner)
    return keras.Model(net.inputs[0], net.outputs[0], name=BACKBONE_LAYER)


def own_backbone(source, weights, image_size, *, given, private: bool, owner: str):
    """The user's network ``source`` as the backbone layer: re-initialised
    (``weights=None``), with a weights file's weights or its own, its
    classifier cut off. ``given``: the ``image_size`` parameter, for the
    error; ``private``: whether ``source`` was loaded for this fit (else it
    is the user's object, which is copied, never trained)."""
    keras = get_keras()
    expected = tuple(input_shape(source)[1:3])
    if None not in expected and expected != tuple(image_size):
        raise InputError(
            f"backbone takes {expected[0]}x{expected[1]} images but image_size is "
            f"{given!r}. Pass image_size=None (or {expected})."
        )
    if weights is None:
        net = keras.models.clone_model(source)  # same architecture, fresh weights
    elif not private:
        net = model_from_bytes(model_to_bytes(source))  # never train the user's object
    else:
        net = source  # loaded from the file for this fit: already a private copy
    if weights not in (None, "imagenet"):
        load_weights(net, weights, "backbone", owner)
    return keras.Model(net.inputs[0], feature_tensor(net), name=BACKBONE_LAYER)


def shared_key(params: dict, named: Backbone | None, image_size, channels: int):
    """Everything a backbone built now depends on, when a fit with ``params``
    (``get_params()``) may share it: it reads features from ``memory`` and
    never changes the backbone's weights. None otherwise. Call it before
    building: a random backbone's key includes Python's random state."""
    if (
        featcache.location(params["memory"]) is None
        or params["augment"]
        or params["fine_tune_epochs"]
        or params["warm_start"]
        or is_keras_model(params["backbone"])
        or get_tf().distribute.has_strategy()
    ):
        return None
    weights = params["weights"]
    state = None
    if weights is None:
        if params["random_state"] is None:
            return None
        # A random backbone's weights follow from Python's random state
        # (Keras draws its initializers' seeds there).
        state = short_digest(repr(random.getstate()).encode()).hex()
    return (
        named.name if named is not None else file_identity(params["backbone"]),
        weights if weights in (None, "imagenet") else file_identity(weights),
        state,
        tuple(image_size),
        channels,
        get_keras().config.dtype_policy().name,
    )


def shared_or_built(key, build):
    """The backbone shared under ``key`` (None: never shared), or ``build()``
    and shared under ``key``."""
    backbone = None if key is None else shared_backbones.get(key)
    if backbone is None:
        backbone = build()
        if key is not None:
            shared_backbones.put(key, backbone)
    return backbone


__all__ = [
    "backbone_problem",
    "is_keras_model",
    "load_source",
    "looks_like_path",
    "named_backbone",
    "named_entry",
    "own_backbone",
    "shared_key",
    "shared_or_built",
]
