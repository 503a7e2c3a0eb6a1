"""Loading a file written by ``clf.save``: :func:`load` (re-exported by
:mod:`imgclf._persist`, where the format is described).

The file is untrusted. It is read within bounds (:mod:`imgclf._modelfile`),
its manifest is checked against a schema and against the network
(:mod:`imgclf._manifest`), and the estimator it describes never acts on a
path the file names. Nothing is changed when a load fails.
"""

from __future__ import annotations

import json
import os
import re
import struct
import tempfile
import warnings
import zipfile
import zlib
from importlib import import_module

import joblib

from ._backend import get_keras
from ._calibration import custom_objects
from ._manifest import (
    ESTIMATORS,
    FORMAT,
    FORMAT_VERSION,
    MANIFEST,
    NETWORK,
    SAFE_KERAS,
    BadField,
    check_attributes,
    check_card,
    check_network,
    check_top_level,
    check_views,
    path_parameters,
    versions,
)
from ._modelfile import (
    MAX_MANIFEST_BYTES,
    ArrayReader,
    check_index,
    check_members,
    copy_member,
    network_limit,
    open_model_file,
    read_member,
)
from ._params import check_params
from ._values import BadValue, decoder
from .exceptions import (
    InconsistentVersionWarning,
    InputError,
    ModelFileError,
    UnsavedParameterWarning,
)

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


class _Damaged(Exception):
    """The archive is not what ``clf.save`` writes; the message says where."""


# ------------------------------------------------------------------- load
def load(path, *, trusted: bool = False):
    """Load an estimator written by ``clf.save(path)``.

    Loading runs no code from the file: the format is JSON, NumPy arrays read
    without pickle and a Keras archive read in Keras's safe mode, and only
    imgclf's own estimator classes are rebuilt. A pickle (a file saved by
    imgclf before this format, or by ``joblib.dump``) can run any code when
    loaded, so it is refused unless ``trusted=True``.

    The file is read within bounds (see :mod:`imgclf._modelfile`): only a
    regular file is opened, each part's size is checked against a limit
    before it is read and counted while it inflates. The manifest is checked
    against a schema and against the network (one output per class, the
    input shape of ``image_size_`` and ``n_channels_``) before the estimator
    is returned. Parameters that name a file or folder (``checkpoint``,
    ``cache``, ``memory``, and a ``backbone`` or ``weights`` path) are reset
    to their defaults with a warning: a loaded model never writes, deletes
    or reads a path its file names.

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
        If the file is not a saved imgclf model (a folder, a pipe or a
        device, too large, or a part over its limit), is damaged or
        truncated, has a field that ``clf.save`` would not have written (the
        message names it), was written by a later imgclf, or is a pickle and
        ``trusted`` is False.

    Warns
    -----
    imgclf.exceptions.InconsistentVersionWarning
        If the file was saved with other imgclf, Keras or TensorFlow
        versions, or holds parameters or attributes this imgclf does not have
        (they are ignored).
    imgclf.exceptions.UnsavedParameterWarning
        If parameters could not be saved, or named paths, and have their
        defaults.

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
    f, size = open_model_file(path)
    with f:
        head = f.read(8)
        # By its first bytes: a pickle holds the .keras zip of its network near
        # its end, so a zip reader would find that archive inside an old pickle.
        if head.startswith(_PICKLE_START + _COMPRESSED_START):
            if trusted:
                return _load_pickle(path)
            kind = "a pickle" if head.startswith(_PICKLE_START) else "compressed (a joblib pickle?)"
            raise ModelFileError(
                f"{path!r} is {kind}, not imgclf's safe format: loading it could run any code "
                "it holds. It may be a model saved by an earlier imgclf or by joblib.dump. If "
                "you trust whoever wrote it, load it with imgclf.load(path, trusted=True), then "
                "clf.save(path) to convert it."
            )
        if head.startswith(b"PK\x03\x04"):
            return _load_archive(path, f, size, trusted)
    if trusted:
        return _load_pickle(path)
    raise ModelFileError(
        f"{path!r} is not an imgclf model, or it is damaged: it is neither a file written by "
        "clf.save nor a pickle."
    )


#: What a damaged or foreign archive raises while it is read (struct.error and
#: the others come from a mutated zip index or header).
_READ_ERRORS = (zipfile.BadZipFile, zlib.error, EOFError, OSError, struct.error)
_VALUE_ERRORS = (KeyError, TypeError, ValueError, AttributeError, IndexError, OverflowError)


def _load_archive(path: str, f, size: int, trusted: bool):
    try:
        check_index(f, size, path)
        archive = zipfile.ZipFile(f)
    except ModelFileError:
        raise
    except (*_READ_ERRORS, ValueError):
        raise ModelFileError(
            f"{path!r} is damaged: it starts like a saved imgclf model but its end is missing "
            "(truncated by an interrupted copy or download?). Copy it again, or save the model "
            "again."
        ) from None
    network = None
    try:
        with archive as zf:
            check_members(zf, path, size, NETWORK)
            names = set(zf.namelist())
            if MANIFEST not in names:
                raise _Damaged(_foreign_zip(names))
            manifest = json.loads(read_member(zf, MANIFEST, MAX_MANIFEST_BYTES, path))
            _check_format(path, manifest)
            check_top_level(manifest)
            decode = decoder(ArrayReader(zf, path))
            params = {key: decode(v) for key, v in manifest["params"].items()}
            attributes, unknown = check_attributes(
                {key: decode(v) for key, v in manifest["attributes"].items()},
                manifest["network"],
            )
            if manifest["network"]:
                if NETWORK not in names:
                    raise BadField("network", f"true, but the file has no {NETWORK}")
                network = _extract_network(zf, path, size)
            name, versions = manifest["estimator"], manifest["versions"]
            card = manifest.get("card")
            dropped = list(manifest["dropped"])
        _check_versions(path, versions)
        estimator = _new_estimator(path, name, params, dropped)
        if unknown:
            warnings.warn(
                f"{path!r} has fitted attributes {unknown} that this imgclf does not know "
                "(saved by another version?); they are ignored.",
                InconsistentVersionWarning,
                stacklevel=3,
            )
        for key, value in attributes.items():
            setattr(estimator, key, value)
        if network is not None:
            estimator.model_ = _network(path, network, trusted)
            check_network(estimator.model_, attributes)
            check_views(estimator)
            # The model card's facts; a file saved without one has its versions only.
            facts = {"versions": dict(versions)} if card is None else check_card(card, attributes)
            estimator.__dict__["_card_facts"] = facts
        return estimator
    except ModelFileError:
        raise
    except BadField as exc:
        raise ModelFileError(
            f"{path!r} is not an imgclf model, or it is damaged: {MANIFEST} {exc}. Save the "
            "model again with clf.save."
        ) from None
    except _Damaged as exc:
        raise ModelFileError(f"{path!r} is not an imgclf model, or it is damaged: {exc}") from None
    except BadValue as exc:
        raise ModelFileError(
            f"{path!r} is not an imgclf model, or it is damaged: {MANIFEST}: {exc}."
        ) from None
    except RecursionError:
        raise ModelFileError(
            f"{path!r} is not an imgclf model, or it is damaged: {MANIFEST} nests lists or "
            "objects far deeper than clf.save writes them."
        ) from None
    except _READ_ERRORS as exc:
        raise ModelFileError(
            f"{path!r} is damaged: {_read_failure(exc)}. Copy it again, or save the model again."
        ) from None
    except _VALUE_ERRORS as exc:
        raise ModelFileError(
            f"{path!r} is not an imgclf model, or it is damaged: {MANIFEST} or a stored array "
            f"is not as clf.save writes it ({type(exc).__name__})."
        ) from None
    finally:
        if network is not None:
            os.unlink(network)


def _extract_network(zf, path: str, size: int) -> str:
    """The network member, copied within its limit into a temporary file; its path."""
    fd, tmp = tempfile.mkstemp(suffix=".keras", prefix="imgclf-load-")
    try:
        with os.fdopen(fd, "wb") as out:
            copy_member(zf, NETWORK, network_limit(size), out, path)
    except BaseException:
        os.unlink(tmp)
        raise
    return tmp


def _read_failure(exc: Exception) -> str:
    """What went wrong reading a member, in words (zlib's and the OS's own are codes)."""
    if isinstance(exc, zipfile.BadZipFile) and str(exc):
        return f"a part of it does not read back ({exc})"
    if isinstance(exc, zlib.error):
        return "a compressed part of it is corrupt"
    if isinstance(exc, EOFError):
        return "it ends in the middle of a part"
    if isinstance(exc, struct.error):
        return "a header of one of its parts is cut short"
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
    if not isinstance(version, int) or isinstance(version, bool):
        raise _Damaged(f"{MANIFEST} has no format version")
    if version > FORMAT_VERSION:
        raise ModelFileError(
            f"{path!r} was written by a later imgclf (file format {version}; this imgclf reads "
            f"format {FORMAT_VERSION} and earlier). Upgrade imgclf to load it."
        )


def _check_versions(path: str, saved) -> None:
    """Warn when the file was saved with other versions (scikit-learn's habit)."""
    now = versions()
    changed = [
        f"{name} {str(saved.get(key, 'unknown'))[:40]} (now {now[key]})"
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
            f"{path!r} holds a {name[:80]!r}; imgclf.load rebuilds only {', '.join(ESTIMATORS)}."
        )
    cls = getattr(import_module(ESTIMATORS[name], __package__), name)
    estimator = cls()
    defaults = estimator.get_params(deep=False)
    unknown = sorted(str(key) for key in params if key not in defaults)
    if unknown:
        warnings.warn(
            f"{path!r} sets parameters {unknown} that this imgclf's {name} does not have "
            "(saved by another version?); they are ignored.",
            InconsistentVersionWarning,
            stacklevel=4,
        )
    params = {k: v for k, v in params.items() if k in defaults}
    paths = path_parameters(params)
    params.update({key: defaults[key] for key in paths})
    estimator.set_params(**params)
    try:
        check_params(estimator)
    except InputError as exc:
        problems = str(exc).split("\n", 1)[-1]
        raise ModelFileError(
            f"{path!r} is not an imgclf model, or it is damaged: {MANIFEST} has parameters "
            f"clf.save would not have written:\n{problems}"
        ) from None
    if dropped:
        warnings.warn(
            f"{path!r} was saved without the parameters {dropped} (they held objects that "
            "cannot be stored safely); they have their defaults. Set them with set_params "
            "before refitting.",
            UnsavedParameterWarning,
            stacklevel=4,
        )
    if paths:
        listed = ", ".join(f"{key}={str(value)[:200]!r}" for key, value in paths.items())
        warnings.warn(
            f"{path!r} names paths in its parameters ({listed}); the loaded {name} has their "
            f"defaults instead, so that it never writes, deletes or reads a file its model file "
            "points to. It predicts the same; if you trust the paths, set them again with "
            "set_params before refitting.",
            UnsavedParameterWarning,
            stacklevel=4,
        )
    return estimator


def _network(path: str, network_file: str, trusted: bool):
    keras_version = get_keras().__version__
    if not trusted and _release(keras_version) < SAFE_KERAS:
        raise ModelFileError(
            f"Keras {keras_version} cannot load {path!r} safely: releases before "
            f"{'.'.join(map(str, SAFE_KERAS))} let a crafted file run code even in safe mode. "
            "Upgrade Keras (pip install -U keras), or pass trusted=True if you trust whoever "
            "wrote the file."
        )
    try:
        return get_keras().models.load_model(
            network_file, safe_mode=True, custom_objects=custom_objects()
        )
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


__all__ = ["SAFE_KERAS", "load"]
