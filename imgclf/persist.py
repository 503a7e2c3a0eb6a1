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
refused unless the caller says the file is trusted.
"""

from __future__ import annotations

import io
import json
import os
import re
import tempfile
import warnings
import zipfile
import zlib
from importlib import import_module

import joblib
import numpy as np

from ._backend import get_keras, get_tf
from ._pathargs import check_output_file
from ._values import BadValue, Encoder, UnsafeValue, decoder
from .devices import is_strategy
from .exceptions import InconsistentVersionWarning, ModelFileError, UnsavedParameterWarning

#: Version of the archive layout; files of a later version are refused.
FORMAT_VERSION = 1
FORMAT = "imgclf-estimator"
MANIFEST = "imgclf.json"
NETWORK = "model.keras"
#: The classes :func:`load` rebuilds, by name -> module.
ESTIMATORS = {"CNNClassifier": ".cnn", "TransferClassifier": ".transfer"}
#: Keras releases before this one have published ``safe_mode`` bypasses
#: (CVE-2025-1550, CVE-2025-8747, CVE-2026-1462): :func:`load` refuses an
#: untrusted file with them.
SAFE_KERAS = (3, 14)

# How a pickle or a joblib-compressed pickle starts (protocol 2+; joblib
# writes the highest protocol): zlib, gzip, bz2, lzma, xz, lz4.
_PICKLE_START = tuple(b"\x80" + bytes([p]) for p in range(2, 6))
_COMPRESSED_START = (
    *(b"\x78" + bytes([level]) for level in (0x01, 0x5E, 0x9C, 0xDA)),
    b"\x1f\x8b",
    b"BZh",
    b"\x5d\x00\x00",
    b"\xfd7zXZ",
    b"\x04\x22\x4d\x18",
)
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
        return get_keras().models.load_model(path, safe_mode=safe_mode)
    finally:
        os.unlink(path)


class _Damaged(Exception):
    """The archive is not what :func:`save` writes; the message says where."""


# ------------------------------------------------------------------- save
def _versions() -> dict:
    from . import __version__

    return {
        "imgclf": __version__,
        "keras": get_keras().__version__,
        "tensorflow": get_tf().__version__,
    }


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
        "versions": _versions(),
        "params": params,
        "dropped": sorted(dropped),
        "attributes": attributes,
        "network": model is not None,
    }
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


# ------------------------------------------------------------------- load
def load(path, *, trusted: bool = False):
    """Load an estimator written by ``clf.save(path)``.

    Loading runs no code from the file: the format is JSON, NumPy arrays read
    without pickle and a Keras archive read in Keras's safe mode, and only
    imgclf's own estimator classes are rebuilt. A pickle (a file saved by
    imgclf before this format, or by ``joblib.dump``) can run any code when
    loaded, so it is refused unless ``trusted=True``.

    Parameters
    ----------
    path : str or os.PathLike
        The file to read.
    trusted : bool, default=False
        You trust whoever wrote the file: also load pickles (with
        ``joblib.load``), and imgclf files under a Keras older than
        :data:`SAFE_KERAS`. Load and ``clf.save`` an old file once to convert
        it to the safe format.

    Returns
    -------
    CNNClassifier or TransferClassifier
        The fitted estimator, as saved.

    Raises
    ------
    FileNotFoundError
        If there is no file at ``path``.
    imgclf.exceptions.ModelFileError
        If the file is not a saved imgclf model, is damaged or truncated, was
        written by a later imgclf, or is a pickle and ``trusted`` is False.

    Warns
    -----
    imgclf.exceptions.InconsistentVersionWarning
        If the file was saved with other imgclf, Keras or TensorFlow versions.
    imgclf.exceptions.UnsavedParameterWarning
        If parameters could not be saved and have their defaults.

    Examples
    --------
    >>> import os, tempfile
    >>> import numpy as np
    >>> from sklearn.datasets import load_digits
    >>> import imgclf
    >>> X, y = load_digits(return_X_y=True)
    >>> clf = imgclf.CNNClassifier(epochs=1, filters=4, random_state=0).fit(X[:100], y[:100])
    >>> tmp = tempfile.TemporaryDirectory()
    >>> clf.save(os.path.join(tmp.name, "digits.imgclf"))
    >>> again = imgclf.load(os.path.join(tmp.name, "digits.imgclf"))
    >>> np.allclose(again.predict_proba(X[:5]), clf.predict_proba(X[:5]))
    True
    >>> tmp.cleanup()
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"No saved model at {path!r}.")
    if os.path.isdir(path):
        raise ModelFileError(f"{path!r} is a folder; imgclf.load reads the file clf.save wrote.")
    with open(path, "rb") as f:
        head = f.read(8)
    # By its first bytes: a pickle holds the .keras zip of its network near its
    # end, so a zip reader would find that archive inside an old pickle file.
    if head.startswith(_PICKLE_START + _COMPRESSED_START):
        if trusted:
            return _load_pickle(path)
        kind = "a pickle" if head.startswith(_PICKLE_START) else "compressed (a joblib pickle?)"
        raise ModelFileError(
            f"{path!r} is {kind}, not imgclf's safe format: loading it could run any code it "
            "holds. It may be a model saved by an earlier imgclf or by joblib.dump. If you trust "
            "whoever wrote it, load it with imgclf.load(path, trusted=True), then clf.save(path) "
            "to convert it."
        )
    if head.startswith(b"PK\x03\x04"):
        return _load_archive(path, trusted)
    if trusted:
        return _load_pickle(path)
    raise ModelFileError(
        f"{path!r} is not an imgclf model, or it is damaged: it is neither a file written by "
        "clf.save nor a pickle."
    )


def _load_archive(path: str, trusted: bool):
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError):
        raise ModelFileError(
            f"{path!r} is damaged: it starts like a saved imgclf model but its end is missing "
            "(truncated by an interrupted copy or download?). Copy it again, or save the model "
            "again."
        ) from None
    try:
        with archive as zf:
            names = set(zf.namelist())
            if MANIFEST not in names:
                raise _Damaged(_foreign_zip(names))
            manifest = json.loads(zf.read(MANIFEST))
            _check_format(path, manifest)

            def read_array(name):
                return np.load(io.BytesIO(zf.read(name)), allow_pickle=False)

            decode = decoder(read_array)
            params = {key: decode(v) for key, v in manifest["params"].items()}
            attributes = {key: decode(v) for key, v in manifest["attributes"].items()}
            network = zf.read(NETWORK) if manifest["network"] else None
            name, versions = manifest["estimator"], manifest["versions"]
            dropped = list(manifest["dropped"])
    except ModelFileError:
        raise
    except _Damaged as exc:
        raise ModelFileError(f"{path!r} is not an imgclf model, or it is damaged: {exc}") from None
    except BadValue as exc:
        raise ModelFileError(
            f"{path!r} is not an imgclf model, or it is damaged: {MANIFEST}: {exc}."
        ) from None
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as exc:
        raise ModelFileError(
            f"{path!r} is damaged: {_read_failure(exc)}. Copy it again, or save the model again."
        ) from None
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ModelFileError(
            f"{path!r} is not an imgclf model, or it is damaged: {MANIFEST} or a stored array "
            f"is not as clf.save writes it ({type(exc).__name__})."
        ) from None
    _check_versions(path, versions)
    estimator = _new_estimator(path, name, params, dropped)
    for key, value in attributes.items():
        if _ATTRIBUTE.match(key) and key != "model_":
            setattr(estimator, key, value)
    if network is not None:
        estimator.model_ = _network(path, network, trusted)
    return estimator


def _read_failure(exc: Exception) -> str:
    """What went wrong reading a member, in words (zlib's and the OS's own are codes)."""
    if isinstance(exc, zipfile.BadZipFile) and str(exc):
        return f"a part of it does not read back ({exc})"
    if isinstance(exc, zlib.error):
        return "a compressed part of it is corrupt"
    if isinstance(exc, EOFError):
        return "it ends in the middle of a part"
    return "its parts are not where its index says they are (bytes lost or inserted?)"


def _foreign_zip(names: set) -> str:
    if "config.json" in names and any(n.endswith(".weights.h5") for n in names):
        return (
            "it is a Keras model (.keras), not an imgclf estimator: load it with "
            "keras.models.load_model, or pass it as TransferClassifier(backbone=path)."
        )
    return f"it is a zip archive without {MANIFEST}."


def _check_format(path: str, manifest) -> None:
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise _Damaged(f"{MANIFEST} does not describe an imgclf estimator")
    version = manifest.get("format_version")
    if not isinstance(version, int):
        raise _Damaged(f"{MANIFEST} has no format version")
    if version > FORMAT_VERSION:
        raise ModelFileError(
            f"{path!r} was written by a later imgclf (file format {version}; this imgclf reads "
            f"format {FORMAT_VERSION} and earlier). Upgrade imgclf to load it."
        )


def _check_versions(path: str, saved) -> None:
    """Warn when the file was saved with other versions (scikit-learn's habit)."""
    if not isinstance(saved, dict):
        saved = {}
    now = _versions()
    changed = [
        f"{name} {saved.get(key, 'unknown')} (now {now[key]})"
        for key, name in (("imgclf", "imgclf"), ("keras", "Keras"), ("tensorflow", "TensorFlow"))
        if saved.get(key) != now[key]
    ]
    if changed:
        warnings.warn(
            f"{path!r} was saved with {', '.join(changed)}. It may fail to load or predict "
            "differently: check its predictions, or refit it with these versions.",
            InconsistentVersionWarning,
            stacklevel=4,
        )


def _new_estimator(path: str, name, params: dict, dropped: list):
    if name not in ESTIMATORS:
        raise ModelFileError(
            f"{path!r} holds a {name!r}; imgclf.load rebuilds only {', '.join(ESTIMATORS)}."
        )
    cls = getattr(import_module(ESTIMATORS[name], __package__), name)
    estimator = cls()
    known = estimator.get_params(deep=False)
    unknown = sorted(str(key) for key in params if key not in known)
    if unknown:
        warnings.warn(
            f"{path!r} sets parameters {unknown} that this imgclf's {name} does not have "
            "(saved by another version?); they are ignored.",
            InconsistentVersionWarning,
            stacklevel=4,
        )
    estimator.set_params(**{k: v for k, v in params.items() if k in known})
    if dropped:
        warnings.warn(
            f"{path!r} was saved without the parameters {dropped} (they held objects that "
            "cannot be stored safely); they have their defaults. Set them with set_params "
            "before refitting.",
            UnsavedParameterWarning,
            stacklevel=4,
        )
    return estimator


def _network(path: str, data: bytes, trusted: bool):
    keras_version = get_keras().__version__
    if not trusted and _release(keras_version) < SAFE_KERAS:
        raise ModelFileError(
            f"Keras {keras_version} cannot load {path!r} safely: releases before "
            f"{'.'.join(map(str, SAFE_KERAS))} let a crafted file run code even in safe mode. "
            "Upgrade Keras (pip install -U keras), or pass trusted=True if you trust whoever "
            "wrote the file."
        )
    try:
        return model_from_bytes(data, safe_mode=True)
    except Exception as exc:
        reason = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
        raise ModelFileError(
            f"{path!r} holds a network Keras cannot load in safe mode: {reason}"
        ) from exc


def _release(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", version)[:2])


def _load_pickle(path: str):
    """A pickle written by an earlier imgclf or ``joblib.dump``; runs its code."""
    try:
        obj = joblib.load(path)
    except Exception:
        raise ModelFileError(
            f"{path!r} is not an imgclf model, or it is damaged: it is neither a file written "
            "by clf.save nor a readable pickle."
        ) from None
    if not getattr(obj, "_imgclf_estimator", False):
        raise ModelFileError(f"{path!r} holds a {type(obj).__name__}, not an imgclf classifier.")
    return obj


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
        imgclf, Keras and TensorFlow versions (see :mod:`imgclf.persist`). It
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
            A folder for ``"saved_model"``, a file for ``"tflite"``.
        format : {"saved_model", "tflite"}, default="saved_model"
            The format written.

        Returns
        -------
        str
            The path written.

        Raises
        ------
        imgclf.exceptions.InputError
            For an unknown format or a target that cannot be replaced safely.

        See Also
        --------
        imgclf.export.export : the function behind this method.
        """
        from .export import export

        return export(self, path, format=format)


__all__ = ["FORMAT_VERSION", "load", "model_from_bytes", "model_to_bytes", "save"]
