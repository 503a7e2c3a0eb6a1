"""Saving and loading fitted estimators as one file, atomically, and the
network <-> bytes conversion that pickling and copying use."""

from __future__ import annotations

import os
import tempfile

import joblib

from ._backend import get_keras


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


def model_from_bytes(data: bytes):
    """The network held by ``.keras`` archive bytes (from :func:`model_to_bytes`)."""
    fd, path = tempfile.mkstemp(suffix=".keras")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        return get_keras().models.load_model(path)
    finally:
        os.unlink(path)


def save(estimator, path) -> None:
    """Write ``estimator`` to ``path`` through a temporary file and a rename.

    ``os.replace`` is atomic on one file system, so a crash or a full disk
    mid-save leaves any earlier file at ``path`` untouched.
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".imgclf-", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            joblib.dump(estimator, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def load(path):
    """Load an estimator written by ``clf.save(path)`` (or ``joblib.dump``).

    Only load files you trust: like every pickle, the file can run code.

    Parameters
    ----------
    path : str or os.PathLike
        The file written by ``clf.save``.

    Returns
    -------
    BaseImageClassifier
        The fitted estimator.

    Raises
    ------
    FileNotFoundError
        If there is no file at ``path``.
    ValueError
        If the file is not an imgclf model or is damaged.

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
    try:
        obj = joblib.load(path)
    except Exception as exc:
        raise ValueError(
            f"{path!r} is not a model saved by imgclf (or it is damaged): {exc}"
        ) from exc
    if not getattr(obj, "_imgclf_estimator", False):
        raise ValueError(f"{path!r} holds a {type(obj).__name__}, not an imgclf classifier.")
    return obj
