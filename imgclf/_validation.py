"""Checks on parameters, ``X`` and ``y``, run at the start of ``fit`` and ``predict``.

Errors are collected and raised once, each naming what was given, what was
expected and the fix (the skorch / SciKeras habit).
"""

from __future__ import annotations

import math
import numbers
import os
from dataclasses import dataclass

import numpy as np
from scipy import sparse
from sklearn.utils import check_array, column_or_1d
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import validate_data

from .exceptions import InputError


@dataclass
class Images:
    """Validated samples: either an array ``(n, h, w, c)`` or a 1-D array of paths."""

    array: np.ndarray | None = None
    paths: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.array if self.array is not None else self.paths)

    def subset(self, index) -> Images:
        if self.array is not None:
            return Images(array=self.array[index])
        return Images(paths=self.paths[index])


def _is_path(value) -> bool:
    return isinstance(value, (str, os.PathLike))


def _as_paths(X) -> np.ndarray | None:
    """Return ``X`` as a 1-D object array of ``str`` if it is a sequence of paths."""
    if _is_path(X):
        raise InputError(
            f"X is a single path ({os.fspath(X)!r}); pass a list of paths, or use "
            "imgclf.load_folder / load_csv / load_filenames to build one."
        )
    if hasattr(X, "dtype") and hasattr(X, "ndim"):
        if X.ndim != 1 or X.dtype.kind not in "OUS":
            return None
        values = list(X.tolist() if hasattr(X, "tolist") else X)
    elif isinstance(X, (list, tuple)):
        if not X or not all(_is_path(v) for v in X):
            return None
        values = list(X)
    else:
        return None
    bad = [i for i, v in enumerate(values) if not _is_path(v)]
    if bad:
        raise InputError(
            f"X looks like a list of image paths but item {bad[0]} is "
            f"{values[bad[0]]!r} ({type(values[bad[0]]).__name__}); every item must be "
            "a str or os.PathLike."
        )
    return np.array([os.fspath(v) for v in values], dtype=object)


def check_images(estimator, X, *, reset: bool) -> Images:
    """Validate ``X`` into :class:`Images`; with ``reset`` (in ``fit``), record
    ``n_features_in_`` / ``feature_names_in_`` for flattened 2-D input."""
    name = type(estimator).__name__
    if X is None:
        raise InputError(
            f"{name} got X=None; pass images, a 2-D array of flattened images or paths."
        )
    paths = _as_paths(X)
    if paths is not None:
        if reset:
            _forget_features(estimator)
        if len(paths) == 0:
            raise InputError(
                f"{name} got an empty list of paths (0 samples); at least 1 is required."
            )
        return Images(paths=paths)

    ndim = getattr(X, "ndim", None)
    if ndim is None and not sparse.issparse(X):
        X = np.asarray(X)
        ndim = X.ndim
    if ndim == 2 or sparse.issparse(X):
        if not reset and not hasattr(estimator, "n_features_in_"):
            X = check_array(X, dtype="numeric", ensure_all_finite=False, input_name="X")
        else:
            X = validate_data(estimator, X, reset=reset, dtype="numeric", ensure_all_finite=False)
        array = _flat_to_images(X)
    elif ndim == 1:
        raise InputError(
            f"{name} got a 1-D array of numbers with shape {np.shape(X)}. Expected 2D array: "
            "images (n, h, w[, c]), flattened images (n, d), or a 1-D list of file paths. "
            "Reshape your data: for one flattened image use X.reshape(1, -1)."
        )
    elif ndim in (3, 4):
        X = check_array(X, dtype="numeric", allow_nd=True, ensure_all_finite=False, input_name="X")
        if reset:
            _forget_features(estimator)
        array = X[..., np.newaxis] if X.ndim == 3 else X
        channels = array.shape[-1]
        if channels not in (1, 3):
            hint = " Drop the alpha channel with X[..., :3]." if channels == 4 else ""
            raise InputError(
                f"{name} got images with {channels} channels (X.shape={X.shape}); it takes "
                f"1 (grayscale) or 3 (RGB) channels in the last axis.{hint}"
            )
    else:
        raise InputError(
            f"{name} got X with {ndim} dimensions (shape {np.shape(X)}); expected (n, h, w), "
            "(n, h, w, c), (n, d) flattened images, or a 1-D list of paths."
        )
    if array.dtype.kind in "fc" and not np.isfinite(array).all():
        first = int(np.flatnonzero(~np.isfinite(array.reshape(len(array), -1)).all(axis=1))[0])
        raise InputError(
            f"X contains NaN or infinite pixel values (first in sample {first}). {name} cannot "
            "learn from them: replace them (e.g. np.nan_to_num) or drop those images."
        )
    return Images(array=array)


def _forget_features(estimator) -> None:
    for attr in ("n_features_in_", "feature_names_in_"):
        if hasattr(estimator, attr):
            delattr(estimator, attr)


def _flat_to_images(X: np.ndarray) -> np.ndarray:
    """Flattened rows become square grayscale images when ``d`` is a square
    (scikit-learn's digits: 64 -> 8x8), else one-pixel-high strips ``(1, d)``."""
    n, d = X.shape
    side = math.isqrt(d)
    if side * side == d:
        return X.reshape(n, side, side, 1)
    return X.reshape(n, 1, d, 1)


def check_targets(estimator, y, n_samples: int) -> np.ndarray:
    """Validate ``y`` as 1-D classification targets of length ``n_samples``."""
    name = type(estimator).__name__
    if y is None:
        raise InputError(
            f"{name} requires y to be passed, but the target y is None. Pass one label per image."
        )
    y = column_or_1d(y, warn=True)
    check_classification_targets(y)
    if len(y) != n_samples:
        raise InputError(
            f"X has {n_samples} samples but y has {len(y)} labels; {name} needs exactly one "
            "label per image."
        )
    return y


def image_size_tuple(image_size) -> tuple[int, int] | None:
    if image_size is None:
        return None
    if isinstance(image_size, numbers.Integral):
        return (int(image_size), int(image_size))
    return tuple(int(v) for v in image_size)


def _is_int(value, low=None) -> bool:
    return (
        isinstance(value, numbers.Integral)
        and not isinstance(value, bool)
        and (low is None or value >= low)
    )


def check_params(estimator) -> None:
    """Check every hyper-parameter of ``estimator`` and raise one error listing all problems."""
    from .augment import PRESETS  # local: keeps the import graph one-way

    p = estimator.get_params(deep=False)
    errors = []
    if "epochs" in p and not _is_int(p["epochs"], 1):
        errors.append(f"epochs={p['epochs']!r}: expected an integer >= 1.")
    if "batch_size" in p and p["batch_size"] != "auto" and not _is_int(p["batch_size"], 1):
        errors.append(f"batch_size={p['batch_size']!r}: expected 'auto' or an integer >= 1.")
    if "patience" in p and not _is_int(p["patience"], 0):
        errors.append(f"patience={p['patience']!r}: expected an integer >= 0.")
    lr = p.get("learning_rate", 1e-3)
    if isinstance(lr, bool) or not isinstance(lr, numbers.Real) or not lr > 0:
        errors.append(f"learning_rate={lr!r}: expected a number > 0, e.g. 1e-3.")
    vf = p.get("validation_fraction", 0.0)
    if isinstance(vf, bool) or not isinstance(vf, numbers.Real) or not 0 <= vf < 1:
        errors.append(
            f"validation_fraction={vf!r}: expected a number in [0, 1); 0.0 means no hold-out."
        )
    size = p.get("image_size")
    if size is not None:
        ok = _is_int(size, 1) or (
            isinstance(size, (tuple, list)) and len(size) == 2 and all(_is_int(v, 1) for v in size)
        )
        if not ok:
            errors.append(f"image_size={size!r}: expected None, an integer or (height, width).")
    aug = p.get("augment")
    if isinstance(aug, str) and aug not in PRESETS:
        errors.append(
            f"augment={aug!r}: unknown preset{_did_you_mean(aug, PRESETS)}; known presets are "
            f"{sorted(PRESETS)}, or pass None, a dict or a list of Keras layers."
        )
    elif aug is not None and not isinstance(aug, (str, dict, list, tuple)):
        errors.append(
            f"augment={aug!r}: expected None, a preset name, a dict or a list of Keras layers."
        )
    if p.get("color_mode", "auto") not in ("auto", "grayscale", "rgb"):
        errors.append(
            f"color_mode={p['color_mode']!r}: expected 'auto' (follow the data), 'grayscale' or 'rgb'."
        )
    cw = p.get("class_weight")
    if cw is not None and cw != "balanced" and not isinstance(cw, dict):
        errors.append(
            f"class_weight={cw!r}: expected None, 'balanced' or a dict {{label: weight}}."
        )
    if p.get("verbose", 0) not in (0, 1, 2):
        errors.append(
            f"verbose={p['verbose']!r}: expected 0 (silent), 1 (progress bar) or 2 (one line per epoch)."
        )
    cbs = p.get("callbacks")
    if cbs is not None and not isinstance(cbs, (list, tuple)):
        errors.append(f"callbacks={cbs!r}: expected None or a list of keras.callbacks.Callback.")
    if p.get("on_bad_file", "skip") not in ("skip", "error"):
        errors.append(
            f"on_bad_file={p['on_bad_file']!r}: expected 'skip' (train without unreadable "
            "files, with a warning naming them) or 'error' (raise, naming them)."
        )
    cache = p.get("cache")
    if cache is not None and cache != "memory" and not isinstance(cache, (str, os.PathLike)):
        errors.append(
            f"cache={cache!r}: expected None (stream from disk), 'memory' or a folder path."
        )
    errors.extend(estimator._check_own_params())
    if errors:
        name = type(estimator).__name__
        lines = "\n".join(f"  {i}. {e}" for i, e in enumerate(errors, 1))
        raise InputError(f"{name} got invalid parameters:\n{lines}")


def _did_you_mean(word: str, choices) -> str:
    import difflib

    close = difflib.get_close_matches(word, list(choices), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""
