"""Exporting a fitted classifier for serving: TensorFlow SavedModel, TFLite and ONNX.

The exported model holds the preprocessing, so a phone app, TF Serving or
ONNX Runtime feeds it raw ``uint8`` images of shape ``(n, height, width,
channels)`` at the model's size (``clf.image_size_``, ``clf.n_channels_``) and
gets class probabilities back, columns in ``clf.classes_`` order (a
multi-label model gives each label's own probability: compare them with
``clf.thresholds_``, which the exported model does not apply).
Augmentation layers are part of ``model_`` but run in inference mode, so they
do nothing there.

ONNX goes through tf2onnx's ``from_function`` on the same serving function the
SavedModel holds (not Keras's ``model.export(format="onnx")``, which sets
``np.object`` on NumPy for the whole process, patches two tf2onnx functions
and names the output ``Identity:0``). The ONNX file is checked against the
Keras network with ONNX Runtime before it replaces anything.

Every format is written under a temporary name beside the target and renamed
into place only when complete, so an interrupted export never leaves a half
written model where a good one was.
"""

from __future__ import annotations

import importlib
import os
import shutil
import tempfile

import numpy as np
from sklearn.utils.validation import check_is_fitted

from ._backend import get_keras, get_tf
from ._devices import plain_model
from ._pathargs import as_path
from .exceptions import InputError, PathNotFoundError

#: Accepted ``format`` values, with the file name each is usually given.
FORMATS = {
    "saved_model": "a folder, e.g. 'model/'",
    "tflite": "a file, e.g. 'model.tflite'",
    "onnx": "a file, e.g. 'model.onnx'",
}

#: The ONNX operator set an ONNX export uses: tf2onnx's default, pinned so a
#: newer converter does not change the file (ONNX Runtime 1.10 and newer run it).
ONNX_OPSET = 15

#: The largest difference in a probability allowed between the ONNX model and
#: the Keras network on the check images before an ONNX export is refused.
ONNX_TOLERANCE = 1e-3

# What the ONNX export imports, and the distribution each comes from.
_ONNX_PACKAGES = {"onnx": "onnx", "tf2onnx": "tf2onnx", "onnxruntime": "onnxruntime"}

# The exported signature's input and output names (what a serving client uses).
INPUT_NAME = "image"
OUTPUT_NAME = "probabilities"


def export(estimator, path, format: str = "saved_model") -> str:
    """Export a fitted imgclf classifier with its preprocessing inside.

    Parameters
    ----------
    estimator : BaseImageClassifier
        A fitted :class:`imgclf.CNNClassifier` or :class:`imgclf.TransferClassifier`.
    path : str or PathLike
        Where to write: a folder for ``"saved_model"``, a file for ``"tflite"``
        and ``"onnx"``.
        An earlier export at ``path`` is replaced only once the new one is complete.
    format : {"saved_model", "tflite", "onnx"}, default="saved_model"
        ``"saved_model"``: a TensorFlow SavedModel whose ``serving_default``
        signature takes ``image`` (uint8) and returns ``probabilities``; the
        class labels are in its ``assets/labels.txt``, one per line.
        ``"tflite"``: a TensorFlow Lite flat buffer with the same signature;
        the labels go to a ``<path without suffix>.labels.txt`` file beside it.
        ``"onnx"``: an ONNX model (opset :data:`ONNX_OPSET`) whose input
        ``image`` is uint8 ``(batch, height, width, channels)``, any batch
        size, and whose output ``probabilities`` is float32 ``(batch,
        n_classes)``; the labels go beside it as for TFLite and into the
        model's metadata (``labels``, one per line). Needs the ``onnx`` extra
        (``pip install "imgclf[onnx]"``).

    Returns
    -------
    str
        The path written.

    Raises
    ------
    imgclf.exceptions.InputError
        For an unknown format, a target that cannot be replaced safely, the
        ``onnx`` extra missing, or an ONNX model that disagrees with the
        network by more than :data:`ONNX_TOLERANCE` (a layer the converter
        does not translate faithfully); nothing is written then.

    Notes
    -----
    uint8 pixel values 0-255 are mapped onto the pixel range the model was
    trained on (``estimator.input_range_``), so a model fitted on floats in
    0-1 or on scikit-learn's 0-16 digits takes 0-255 images once exported.

    Examples
    --------
    >>> import os, tempfile
    >>> from sklearn.datasets import load_digits
    >>> from imgclf import CNNClassifier
    >>> X, y = load_digits(return_X_y=True)
    >>> clf = CNNClassifier(epochs=1, filters=4, random_state=0).fit(X[:100], y[:100])
    >>> tmp = tempfile.TemporaryDirectory()
    >>> path = clf.export(os.path.join(tmp.name, "digits.tflite"), format="tflite")
    >>> sorted(os.listdir(tmp.name))
    ['digits.labels.txt', 'digits.tflite']
    >>> tmp.cleanup()
    """
    check_is_fitted(estimator)
    if format not in FORMATS:
        raise InputError(
            f"export format={format!r} is not supported; use one of "
            + ", ".join(f"{name!r} ({where})" for name, where in FORMATS.items())
            + "."
        )
    path = as_path(path, "export: path")
    target = os.path.abspath(path)
    folder = os.path.dirname(target) or "."
    if not os.path.isdir(folder):
        raise PathNotFoundError(
            f"Cannot export to {path!r}: the folder {folder!r} does not exist. Create it first."
        )
    if format in ("tflite", "onnx") and os.path.isdir(target):
        kind = {"tflite": "TFLite", "onnx": "ONNX"}[format]
        raise InputError(
            f"Cannot export {kind} to {path!r}: it is a folder. Give a file name such as "
            f"{os.path.join(path, 'model.' + format)!r}."
        )
    if format == "onnx":
        _onnx_modules()  # a missing extra fails before any work
    if format == "saved_model" and os.path.isfile(target):
        raise InputError(
            f"Cannot export a SavedModel to {path!r}: a file of that name exists and a "
            "SavedModel is a folder. Choose another name or remove the file."
        )
    if (
        format == "saved_model"
        and os.path.isdir(target)
        and os.listdir(target)
        and not os.path.exists(os.path.join(target, "saved_model.pb"))
    ):
        # Replacing a folder deletes it: never do that to one that is not an export.
        raise InputError(
            f"Cannot export a SavedModel to {path!r}: that folder exists and is not a "
            "SavedModel, and exporting would replace it. Give a new folder name."
        )

    labels = "".join(f"{label}\n" for label in estimator.classes_)
    work = tempfile.mkdtemp(prefix=".imgclf-export-", dir=folder)
    try:
        saved = os.path.join(work, "saved_model")
        if format == "saved_model":
            _write_saved_model(estimator, saved)
            os.makedirs(os.path.join(saved, "assets"), exist_ok=True)
            with open(os.path.join(saved, "assets", "labels.txt"), "w", encoding="utf-8") as f:
                f.write(labels)
            _replace_folder(saved, target, work)
        else:
            written = os.path.join(work, "model." + format)
            if format == "tflite":
                _write_saved_model(estimator, saved)
                data = _to_tflite(saved)
            else:
                data = _to_onnx(estimator, labels)
            with open(written, "wb") as f:
                f.write(data)
            labels_path = os.path.splitext(target)[0] + ".labels.txt"
            labels_tmp = os.path.join(work, "labels.txt")
            with open(labels_tmp, "w", encoding="utf-8") as f:
                f.write(labels)
            os.replace(written, target)
            os.replace(labels_tmp, labels_path)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return path


def _serving_function(estimator, model):
    """A function from uint8 images to probabilities, for the model's input size."""
    tf = get_tf()
    low, high = (float(v) for v in estimator.input_range_)
    scale = (high - low) / 255.0

    def serve(images):
        # uint8 0-255 onto the pixel units model_ was trained on; model_'s own
        # first layer then maps those to 0-1.
        x = tf.cast(images, tf.float32) * scale + low
        return {OUTPUT_NAME: model(x, training=False)}

    spec = tf.TensorSpec(
        [None, *estimator.image_size_, estimator.n_channels_], tf.uint8, name=INPUT_NAME
    )
    return serve, spec


def _write_saved_model(estimator, folder: str) -> None:
    keras = get_keras()
    # float32 on one device, whatever precision and strategy it trained with.
    model = plain_model(estimator.model_)
    serve, spec = _serving_function(estimator, model)
    archive = keras.export.ExportArchive()
    archive.track(model)
    # Named "serve", Keras also makes it the "serving_default" signature.
    archive.add_endpoint("serve", serve, input_signature=[spec])
    archive.write_out(folder, verbose=False)


def _to_tflite(saved_model: str) -> bytes:
    tf = get_tf()
    converter = tf.lite.TFLiteConverter.from_saved_model(saved_model)
    return converter.convert()


def _onnx_modules():
    """``(onnx, tf2onnx, onnxruntime)``, or the error naming the extra that
    installs them."""
    modules, missing = [], []
    for name, distribution in _ONNX_PACKAGES.items():
        try:
            modules.append(importlib.import_module(name))
        except ImportError:
            missing.append(distribution)
    if missing:
        raise InputError(
            f"export(format='onnx') needs {', '.join(missing)}, which "
            f"{'is' if len(missing) == 1 else 'are'} not installed. Install the onnx extra: "
            'pip install "imgclf[onnx]" (in a source checkout: pip install -e ".[onnx]").'
        )
    return tuple(modules)


def _to_onnx(estimator, labels: str) -> bytes:
    """The ONNX model's bytes: tf2onnx's conversion of the serving function,
    labels in its metadata, checked against the network."""
    onnx, tf2onnx, _ = _onnx_modules()
    tf = get_tf()
    model = plain_model(estimator.model_)
    serve, spec = _serving_function(estimator, model)
    # tf2onnx 1.17 runs on NumPy 2 as it is: its one removed NumPy name
    # (np.product) is on the path for models over 2 GB (large_model), unused here.
    proto, _ = tf2onnx.convert.from_function(
        tf.function(serve), input_signature=[spec], opset=ONNX_OPSET
    )
    onnx.helper.set_model_props(proto, {"labels": labels})
    data = proto.SerializeToString()
    _check_onnx(estimator, serve, data)
    return data


def _check_onnx(estimator, serve, data: bytes) -> None:
    """Run the ONNX model and the serving function on the same images (random
    pixels, one batch of 4) and refuse a model whose answers differ."""
    onnxruntime = _onnx_modules()[2]
    tf = get_tf()
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (4, *estimator.image_size_, estimator.n_channels_), np.uint8)
    session = onnxruntime.InferenceSession(data, providers=["CPUExecutionProvider"])
    got = session.run([OUTPUT_NAME], {INPUT_NAME: images})[0]
    expected = serve(tf.constant(images))[OUTPUT_NAME].numpy()
    gap = float(np.max(np.abs(got - expected)))
    if not gap <= ONNX_TOLERANCE:
        raise InputError(
            f"export(format='onnx'): the converted model's probabilities differ from the "
            f"network's by up to {gap:.3g} (allowed {ONNX_TOLERANCE:g}), so a layer of "
            "model_ does not convert faithfully (for example Resizing with "
            "interpolation='area' in a backbone). Nothing was written. Export with "
            "format='saved_model' or 'tflite', or replace that layer."
        )


def _replace_folder(new: str, target: str, work: str) -> None:
    """Move folder ``new`` to ``target``; an existing ``target`` is moved aside
    first and deleted only after the new one is in place."""
    if not os.path.exists(target):
        os.replace(new, target)
        return
    old = os.path.join(work, "previous")
    os.replace(target, old)
    try:
        os.replace(new, target)
    except BaseException:
        os.replace(old, target)  # put the earlier export back
        raise


__all__ = ["export", "FORMATS", "ONNX_OPSET", "ONNX_TOLERANCE"]
