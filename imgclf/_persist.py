"""Saving and loading fitted estimators as one file, atomically, without pickle;
and the network <-> bytes conversion that pickling and copying use.

A saved estimator is a zip archive (format version :data:`FORMAT_VERSION`):

``imgclf.json``
    The estimator's class name, the imgclf, Keras and TensorFlow versions it
    was saved with, its parameters and fitted attributes as JSON (tuples,
    dicts with non-string keys, paths and arrays tagged so they come back as
    they were), and the names of parameters that could not be stored.
``arrays/<n>.npy``
    NumPy arrays (``classes_``, ``feature_names_in_``...), read back with
    ``allow_pickle=False``.
``model.keras``
    The network, read back by Keras with ``safe_mode=True``.

Reading such a file runs no code it holds: JSON, ``.npy`` without pickle, and
a Keras archive in safe mode are data. Only imgclf's own estimator classes are
rebuilt. Pickles (files of imgclf before this format, or ``joblib.dump``) are
refused unless the caller says the file is trusted. :func:`load` lives in
``_loading`` (reading within bounds in ``_modelfile``, the manifest's schema in
``_manifest``) and is re-exported here.
"""

from __future__ import annotations

import io
import json
import os
import re
import tempfile
import warnings
import zipfile

import numpy as np

from ._backend import get_keras
from ._calibration import custom_objects
from ._card import model_card
from ._devices import is_strategy
from ._loading import load
from ._manifest import ESTIMATORS, FORMAT, FORMAT_VERSION, MANIFEST, NETWORK, versions
from ._pathargs import check_output_file
from ._values import Encoder, UnsafeValue
from .exceptions import UnsavedParameterWarning

_ATTRIBUTE = re.compile(r"[a-z][a-z0-9_]*_\Z")


# ------------------------------------------------------------ network bytes
def atomic_write(path, write, prefix: str = ".imgclf-", sync: bool = True) -> None:
    """Write the file at ``path`` with ``write(binary_file)``, atomically: into
    a temporary file beside it, flushed to disk (unless ``sync`` is False, for
    many small files that can be recomputed), then renamed over ``path``
    (``os.replace`` is atomic on one file system), so a crash, a full disk or
    an interrupt leaves any earlier file untouched and no partial one."""
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=prefix, suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            if sync:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def model_to_bytes(model) -> bytes:
    """The ``.keras`` archive of ``model``, as bytes."""
    fd, path = tempfile.mkstemp(suffix=".keras")
    os.close(fd)
    try:
        model.save(path)
        with open(path, "rb") as f:
            return f.read()
    finally:
        os.unlink(path)


def model_from_bytes(data: bytes, *, safe_mode: bool = True):
    """The network held by ``.keras`` archive bytes (from :func:`model_to_bytes`).

    With ``safe_mode`` (the default) Keras refuses layers that would run code
    from the archive (``Lambda``) and classes outside Keras.
    """
    fd, path = tempfile.mkstemp(suffix=".keras")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        return get_keras().models.load_model(
            path, safe_mode=safe_mode, custom_objects=custom_objects()
        )
    finally:
        os.unlink(path)


# ------------------------------------------------------------------- save
def _class_name(estimator) -> str:
    name = type(estimator).__name__
    if ESTIMATORS.get(name) is None or type(estimator).__module__ != f"imgclf{ESTIMATORS[name]}":
        raise TypeError(
            f"clf.save stores imgclf's own estimators ({', '.join(ESTIMATORS)}), not "
            f"{type(estimator).__module__}.{type(estimator).__qualname__}, whose code a file cannot hold safely. Save it with "
            "joblib.dump(clf, path) (a pickle: load it only from a source you trust)."
        )
    return name


def _contents(estimator) -> tuple[dict, dict, bytes | None]:
    """``(manifest, arrays, network bytes)`` for ``estimator``; warns about
    the parameters it cannot store, raises for fitted attributes it cannot."""
    name = _class_name(estimator)
    encode = Encoder()
    params, dropped = {}, {}
    for key, value in estimator.get_params(deep=False).items():
        try:
            params[key] = encode(value)
        except UnsafeValue as exc:
            dropped[key] = str(exc)
    if dropped:
        listed = "; ".join(f"{key} ({what})" for key, what in dropped.items())
        warnings.warn(
            f"{name}.save cannot store {listed} without pickling, which "
            "would let the file run code; the saved estimator has the default instead. It "
            "predicts the same; set them again (set_params) before refitting it.",
            UnsavedParameterWarning,
            stacklevel=4,
        )
    attributes = {}
    for key, value in vars(estimator).items():
        if key == "model_" or not _ATTRIBUTE.match(key):
            continue
        try:
            attributes[key] = encode(value)
        except UnsafeValue as exc:
            fix = (
                "Use labels of one type among str, int, float and bool (y.astype(str) works "
                "for any labels) and refit"
                if key == "classes_"
                else "Pickle it with joblib.dump instead"
            )
            raise TypeError(
                f"{name}.save cannot store the fitted attribute {key} without pickling: it "
                f"holds {exc}. {fix}."
            ) from None
    model = vars(estimator).get("model_")
    manifest = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "estimator": name,
        "versions": versions(),
        "params": params,
        "dropped": sorted(dropped),
        "attributes": attributes,
        "network": model is not None,
    }
    if model is not None:
        manifest["card"] = dict(model_card(estimator))  # read back by _manifest.check_card
    return manifest, encode.arrays, None if model is None else model_to_bytes(model)


def _write(f, manifest: dict, arrays: dict, network: bytes | None) -> None:
    with zipfile.ZipFile(f, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(MANIFEST, json.dumps(manifest, indent=1))
        for name, array in arrays.items():
            buffer = io.BytesIO()
            np.save(buffer, array, allow_pickle=False)
            zf.writestr(name, buffer.getvalue())
        if network is not None:
            # Weights barely compress; storing them keeps saving fast.
            zf.writestr(NETWORK, network, compress_type=zipfile.ZIP_STORED)


def save(estimator, path) -> None:
    """Write ``estimator`` to ``path`` in imgclf's format, through a temporary
    file and a rename.

    ``os.replace`` is atomic on one file system, so a crash or a full disk
    mid-save leaves any earlier file at ``path`` untouched. Parameters that
    hold objects (callbacks, a ``keras.Model`` backbone, custom layers in
    ``augment``) are replaced by their default, with an
    :class:`~imgclf.exceptions.UnsavedParameterWarning` naming them;
    ``augment`` layers of ``keras.layers`` are stored as their Keras config, a
    ``RandomState`` as its state.
    """
    path = check_output_file(path, f"{type(estimator).__name__}.save: path")
    manifest, arrays, network = _contents(estimator)
    atomic_write(path, lambda f: _write(f, manifest, arrays, network))


class PersistMixin:
    """Pickling, :meth:`save` and :meth:`export` of a fitted estimator, which
    ``BaseImageClassifier`` inherits. A pickle carries the network as the
    bytes of a ``.keras`` archive (:func:`model_to_bytes`); a distribution
    strategy, which belongs to this process's devices, is not pickled."""

    def __getstate__(self):
        state = self.__dict__.copy()
        if is_strategy(state.get("distribute")):
            # A strategy belongs to this process's devices and does not pickle;
            # the copy (a saved model, a search's worker) trains on one device.
            state["distribute"] = None
        model = state.pop("model_", None)
        if model is not None:
            state["_model_bytes"] = model_to_bytes(model)
        return state

    def __setstate__(self, state):
        state = dict(state)
        data = state.pop("_model_bytes", None)
        self.__dict__.update(state)
        if data is not None:
            self.model_ = model_from_bytes(data)

    def save(self, path) -> None:
        """Save the estimator to one file, atomically, in a format that loads
        without running code from the file.

        The file is a zip archive of the parameters and fitted attributes as
        JSON and NumPy arrays, the network as a ``.keras`` archive, and the
        imgclf, Keras and TensorFlow versions (see :mod:`imgclf._persist`). It
        is written beside ``path`` under a temporary name and renamed over it
        only once complete, so an interrupted save leaves any previous file
        intact.

        Parameters that hold objects a file cannot describe without code are
        saved as their default, with an
        :class:`~imgclf.exceptions.UnsavedParameterWarning` naming them:
        ``callbacks``, ``augment`` holding layers other than ``keras.layers``'
        own (those are stored as their Keras config), a ``keras.Model`` as
        ``backbone``. A ``RandomState`` is stored as its state. The saved
        network predicts the same; set the dropped parameters again before
        refitting. To keep everything, pickle the estimator instead
        (``joblib.dump``), and load that only from a source you trust.

        Parameters
        ----------
        path : str or os.PathLike
            The file to write.

        Raises
        ------
        OSError
            If the file cannot be written; an earlier file at ``path`` is kept.
        TypeError
            For a subclass of an imgclf estimator (its code cannot be saved),
            or a fitted attribute that cannot be stored, such as labels that
            are arbitrary objects (``y.astype(str)`` works).

        See Also
        --------
        imgclf.load : read it back.
        """
        save(self, path)  # the module's function: this method is PersistMixin.save

    def export(self, path, format: str = "saved_model") -> str:
        """Export the network with its preprocessing, for serving without imgclf.

        The exported model takes raw uint8 images ``(n, h, w, c)`` at
        ``image_size_`` and ``n_channels_`` and returns class probabilities in
        ``classes_`` order. Written atomically.

        Parameters
        ----------
        path : str or os.PathLike
            A folder for ``"saved_model"``, a file for ``"tflite"`` and ``"onnx"``.
        format : {"saved_model", "tflite", "onnx"}, default="saved_model"
            The format written; ``"onnx"`` needs ``pip install "imgclf[onnx]"``.

        Returns
        -------
        str
            The path written.

        Raises
        ------
        imgclf.exceptions.InputError
            For an unknown format, a target that cannot be replaced safely, or
            (ONNX) a missing extra or a model that does not convert faithfully.

        See Also
        --------
        imgclf.export.export : the function behind this method.
        """
        from .export import export

        return export(self, path, format=format)


__all__ = ["FORMAT_VERSION", "atomic_write", "load", "model_from_bytes", "model_to_bytes", "save"]
