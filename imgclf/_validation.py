"""Checks on ``X`` and ``y``, run at the start of ``fit`` and ``predict``.

Each error names what was given, what was expected and the fix (the skorch /
SciKeras habit). Parameters are checked by :mod:`imgclf._params`.
"""

from __future__ import annotations

import math
import numbers
import os
import warnings
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
from scipy import sparse
from sklearn.utils import check_array, column_or_1d
from sklearn.utils.multiclass import check_classification_targets, type_of_target
from sklearn.utils.validation import validate_data

from ._pathargs import short_repr
from .exceptions import InputError, InputTypeError


@dataclass
class Images:
    """Validated samples: either an array ``(n, h, w, c)`` or a 1-D array of
    paths, with their scan results (:class:`imgclf._scan.FileInfo`) once
    screened, so no later step scans a file again."""

    array: np.ndarray | None = None
    paths: np.ndarray | None = None
    infos: list | None = None

    def __len__(self) -> int:
        return len(self.array if self.array is not None else self.paths)

    def subset(self, index) -> Images:
        if self.array is not None:
            return Images(array=self.array[index])
        infos = None if self.infos is None else [self.infos[i] for i in index]
        return Images(paths=self.paths[index], infos=infos)

    def screened(self, *, on_bad_file: str, source: str, can_skip: bool = True):
        """These images without bad files (see :func:`imgclf._scan.screen`),
        and the positions kept; arrays are returned as they are."""
        if self.paths is None:
            return self, np.arange(len(self))
        from ._scan import screen

        found = screen(self.paths, on_bad_file=on_bad_file, source=source, can_skip=can_skip)
        return Images(paths=found.paths, infos=found.infos), found.keep


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
        if not any(_is_path(v) for v in X):
            return None
        values = list(X)
    else:
        return None
    bad = [i for i, v in enumerate(values) if not _is_path(v)]
    if bad:
        first = values[bad[0]]
        if hasattr(first, "shape"):
            shown = f"an array of shape {np.shape(first)}"
        else:
            shown = f"{short_repr(first, 60)} ({type(first).__name__})"
        raise InputError(
            f"X mixes image paths with other items: item {bad[0]} is {shown}"
            f"{f' ({len(bad)} such items)' if len(bad) > 1 else ''}. Pass either a list of "
            "paths (every item a str or os.PathLike) or an array of images, not both: to "
            "combine them, save the arrays as image files, or read the files into an array."
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
    if (isinstance(X, (list, tuple)) or getattr(X, "ndim", None) == 1) and len(X) == 0:
        raise InputError(
            f"{name} got an empty X (0 images); pass at least one image, file path or "
            "flattened image. (A folder with no image files in it gives an empty list: check "
            "the path and the file extensions.)"
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
        X = _as_array(name, X)
        ndim = X.ndim
    if ndim in (2, 3, 4) or sparse.issparse(X):
        _check_dtype_and_shape(name, X)
    if ndim == 2 or sparse.issparse(X):
        with _in_library_words(name):
            if not reset and not hasattr(estimator, "n_features_in_"):
                X = check_array(X, dtype="numeric", ensure_all_finite=False, input_name="X")
            else:
                X = validate_data(
                    estimator, X, reset=reset, dtype="numeric", ensure_all_finite=False
                )
        array = _flat_to_images(X)
    elif ndim == 1 and X.dtype.kind in "OSV" and len(X):
        raise InputTypeError(
            f"{name} got X as a 1-D sequence of {type(X[0]).__name__} items (e.g. "
            f"{short_repr(X[0], 60)}); expected images (n, h, w[, c]), flattened images "
            "(n, d), or a 1-D list of file paths (str or os.PathLike)."
        )
    elif ndim == 1:
        raise InputError(
            f"{name} got a 1-D array of numbers with shape {np.shape(X)}. Expected 2D array: "
            "images (n, h, w[, c]), flattened images (n, d), or a 1-D list of file paths. "
            "Reshape your data: for one flattened image use X.reshape(1, -1)."
        )
    elif ndim in (3, 4):
        with _in_library_words(name):
            X = check_array(
                X, dtype="numeric", allow_nd=True, ensure_all_finite=False, input_name="X"
            )
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
    if array.dtype.kind == "f" and array.dtype.itemsize > 4 and array.size:
        _check_float32_range(name, array)
    return Images(array=array)


def _as_array(name: str, X) -> np.ndarray:
    """``np.asarray(X)``, with the library's error for a list of images of
    different sizes (NumPy's "inhomogeneous shape")."""
    try:
        return np.asarray(X)
    except (ValueError, TypeError) as exc:
        shapes = []
        if isinstance(X, (list, tuple)):
            for item in X:
                try:
                    shapes.append(np.shape(item))
                except (ValueError, TypeError):
                    shapes.append(None)
        odd = [i for i, shape in enumerate(shapes) if shape != shapes[0]]
        if not odd:
            raise InputError(
                f"{name} cannot read X as an array of numbers: {short_repr(str(exc), 200)}. "
                "Pass images as one NumPy array (n, h, w[, c]), or a 1-D list of file paths."
            ) from None
        first = odd[0]
        raise InputError(
            f"X is a list of images of different sizes: item 0 has shape {shapes[0]}, item "
            f"{first} has shape {shapes[first]} ({len(odd)} of {len(shapes)} items differ from "
            f"item 0). {name} takes images of one size as an array: resize them first (e.g. "
            "with PIL.Image.resize or skimage.transform.resize), or save them as image files "
            "and pass the paths, which are resized to image_size."
        ) from None


def _check_dtype_and_shape(name: str, X) -> None:
    """Refuse, before scikit-learn's checks print the array, complex, date or
    string pixels and arrays with no image or no pixel in them."""
    # A DataFrame has a dtype per column; other array types may lack .kind.
    dtypes = [X.dtype] if hasattr(X, "dtype") else list(getattr(X, "dtypes", []))
    kinds = {getattr(dtype, "kind", "") for dtype in dtypes}
    shape = tuple(X.shape)
    shown = ", ".join(sorted({str(dtype) for dtype in dtypes}))
    if "c" in kinds:
        raise InputError(
            f"Complex data not supported: X has complex pixel values (dtype {shown}, shape "
            f"{shape}). {name} takes real numbers: pass the magnitude np.abs(X) or the real "
            "part X.real."
        )
    if kinds & set("mMV"):
        raise InputTypeError(
            f"X has dtype {shown} (shape {shape}), not numbers; {name} takes pixel values "
            "as numbers (uint8 0-255 or floats 0-1), or a 1-D list of file paths."
        )
    if kinds & set("US"):
        raise InputError(
            f"X is a {len(shape)}-D array of strings (dtype {shown}, shape {shape}); "
            f"{name} takes pixel values as numbers, or a 1-D list of file paths. Convert it "
            "with X.astype(float) if the strings hold numbers."
        )
    if shape[0] == 0:
        raise InputError(f"{name} got X with 0 images (shape={shape}); pass at least one image.")
    if len(shape) == 2 and shape[1] == 0:
        raise InputError(
            f"X has 0 feature(s) (shape={shape}) while a minimum of 1 is required: {name} "
            "got flattened images of no pixels. Check how X was built."
        )
    if len(shape) in (3, 4) and 0 in shape[1:3]:
        raise InputError(
            f"{name} got images of zero height or width (X.shape={shape}); an image needs "
            "at least 1x1 pixels. Check how X was built (an empty crop or slice?)."
        )


@contextmanager
def _in_library_words(name: str):
    """Re-raise scikit-learn's errors about ``X`` as :class:`InputError` (a
    ``TypeError`` also as :class:`InputTypeError`), their text capped."""
    try:
        yield
    except InputError:
        raise
    except TypeError as exc:
        raise InputTypeError(
            f"X holds items that are not numbers ({short_repr(str(exc), 200)}); {name} takes "
            "images as arrays of numbers, or a 1-D list of file paths."
        ) from None
    except ValueError as exc:
        text = str(exc)
        if "is expecting" in text and "features" in text:
            raise InputError(
                f"{text} Pass images flattened as in fit (the same image size), or images "
                "(n, h, w[, c]), which are resized to the network's input size."
            ) from None
        raise InputError(f"{name} cannot use X: {short_repr(text, 300)}") from None


#: The largest float32; imgclf's networks compute in float32.
FLOAT32_MAX = float(np.finfo(np.float32).max)


def _check_float32_range(name: str, array: np.ndarray) -> None:
    """Refuse pixel values that become infinite in float32 (the network's type)."""
    low, high = float(array.min()), float(array.max())
    if max(-low, high) <= FLOAT32_MAX:
        return
    flat = np.abs(array.reshape(len(array), -1))
    first = int(np.flatnonzero((flat > FLOAT32_MAX).any(axis=1))[0])
    raise InputError(
        f"X has pixel values beyond what float32 holds (|value| up to {max(-low, high):.3g}, "
        f"first in sample {first}; float32 stops at {FLOAT32_MAX:.3g}). {name} computes in "
        "float32, where they become infinite and training breaks. Rescale the images, e.g. "
        "X / np.abs(X).max() for values in [-1, 1], or to the usual 0-255 or 0-1."
    )


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
    _check_label_types(name, y)
    try:
        y = column_or_1d(y, warn=True)
    except ValueError:
        raise InputError(
            f"y should be a 1-D array of labels, got one of shape {_safe_shape(y)}; {name} "
            "takes one label per image. For one-hot labels pass y.argmax(axis=1); for a "
            "column, y.ravel()."
        ) from None
    if y.dtype == object:
        missing = [i for i, v in enumerate(y.tolist()) if _is_missing(v)]
        if missing:
            rows = ", ".join(str(i) for i in missing[:10]) + (" ..." if len(missing) > 10 else "")
            raise InputError(
                f"y has {len(missing)} missing label(s) (None or NaN) at position(s) {rows}; "
                f"{name} needs one label per image. Drop the unlabelled images (and their "
                "labels), or give them a label."
            )
    try:
        check_classification_targets(y)
    except ValueError:
        raise InputError(_label_type_problem(name, y)) from None
    if len(y) != n_samples:
        raise InputError(
            f"X has {n_samples} samples but y has {len(y)} labels; {name} needs exactly one "
            "label per image."
        )
    return y


def check_sample_weight(estimator, sample_weight, n_samples: int) -> np.ndarray | None:
    """Validate ``fit``'s ``sample_weight``: None, or one finite number >= 0 per
    image, not all 0 (scikit-learn's ``_check_sample_weight`` rules, in the
    library's words). Returns a new float64 array (the caller's is never
    changed), or None."""
    if sample_weight is None:
        return None
    name = type(estimator).__name__
    fix = (
        f"Pass sample_weight=None (every image counts once) or one number >= 0 per image, "
        f"e.g. np.ones({n_samples})."
    )
    try:
        weight = np.array(sample_weight, dtype=np.float64)  # a copy
    except (TypeError, ValueError):
        raise InputError(
            f"{name}.fit: sample_weight must be numbers, got {type(sample_weight).__name__} "
            f"that cannot be read as numbers. {fix}"
        ) from None
    if weight.ndim == 0:
        weight = np.full(n_samples, float(weight))
    if weight.ndim != 1 or len(weight) != n_samples:
        raise InputError(
            f"{name}.fit: sample_weight has shape {weight.shape}, but X has {n_samples} images: "
            f"it needs one weight per image, shape ({n_samples},). {fix}"
        )
    bad = np.flatnonzero(~np.isfinite(weight))
    if len(bad):
        raise InputError(
            f"{name}.fit: sample_weight is NaN or infinite at position(s) {_positions(bad)}. "
            f"Every weight must be a finite number >= 0. {fix}"
        )
    bad = np.flatnonzero(weight < 0)
    if len(bad):
        raise InputError(
            f"{name}.fit: sample_weight is negative at position(s) {_positions(bad)}. Every "
            f"weight must be >= 0 (0 leaves the image out). {fix}"
        )
    if not weight.any():
        raise InputError(
            f"{name}.fit: sample_weight is zero for every image, so there is nothing to learn "
            "from. Give the "
            "images to train on a weight > 0."
        )
    return weight


def _positions(index: np.ndarray) -> str:
    return ", ".join(str(i) for i in index[:10]) + (" ..." if len(index) > 10 else "")


def _safe_shape(value) -> tuple | str:
    try:
        return np.shape(value)
    except (ValueError, TypeError):
        return "ragged (its items have different lengths)"


def label_kind(label) -> str | None:
    """``"str"``, ``"number"`` (``bool`` included) or the type's name of one
    label; ``None`` for a missing one."""
    if _is_missing(label):
        return None
    if isinstance(label, (str, np.str_)):
        return "str"
    if isinstance(label, (numbers.Number, np.number, np.bool_)):
        return "number"
    return type(label).__name__


def _check_label_types(name: str, y) -> None:
    """Refuse labels of several types (``[1, "a"]``): NumPy would turn them
    all into strings, and an object array cannot be sorted."""
    if isinstance(y, (list, tuple)):
        values = y
    elif getattr(getattr(y, "dtype", None), "kind", "") == "O":
        values = np.asarray(y).ravel().tolist()
    else:
        return  # an array of one dtype holds one type
    seen = {}
    for position, label in enumerate(values):
        kind = label_kind(label)
        if kind is not None and kind not in seen:
            seen[kind] = (position, label)
            if len(seen) == 2:
                break
    if len(seen) < 2:
        return
    (a, (i, u)), (b, (j, v)) = seen.items()
    raise InputError(
        f"y mixes label types: {a} (e.g. {short_repr(u, 40)} at position {i}) and {b} (e.g. "
        f"{short_repr(v, 40)} at position {j}). {name} needs labels of one type, to sort them "
        "and to predict labels of that type: convert them, e.g. [str(label) for label in y] "
        "or y.astype(str)."
    )


def _label_type_problem(name: str, y: np.ndarray) -> str:
    """The message for targets scikit-learn finds of an unknown type."""
    kind = type_of_target(y)
    if kind == "continuous":
        values = np.asarray(y, dtype=float)
        example = values[np.flatnonzero(values != np.round(values))[0]]
        return (
            f"Unknown label type: continuous. y holds numbers that are not whole (e.g. "
            f"{example:g}); {name} is a classifier and needs a class label per image. If they "
            "are class codes stored as floats, pass y.astype(int); to predict a quantity, "
            "use a regressor."
        )
    example = y[0] if len(y) else None
    return (
        f"Unknown label type: {kind}. y holds {type(example).__name__} items (e.g. "
        f"{short_repr(example, 40)}); {name} takes labels that are str, int or bool, one per "
        "image."
    )


def _is_missing(label) -> bool:
    """None, NaN (a pandas column's missing value) or pandas's ``NA``."""
    if label is None or type(label).__name__ == "NAType":
        return True
    return isinstance(label, float) and math.isnan(label)


def image_size_tuple(image_size) -> tuple[int, int] | None:
    if image_size is None:
        return None
    if isinstance(image_size, numbers.Integral):
        return (int(image_size), int(image_size))
    return tuple(int(v) for v in image_size)


def class_index(classes, labels) -> np.ndarray:
    """Column of each of ``labels`` in ``classes`` (``predict_proba``'s column
    order), -1 for a label not among them: the one label -> index map."""
    position = {label: i for i, label in enumerate(np.asarray(classes).tolist())}
    return np.array([position.get(label, -1) for label in np.asarray(labels).tolist()], dtype=int)


def check_classes_left(estimator, paths, y, keep) -> None:
    """After bad files were left out of ``fit`` (only ``keep`` remain), say
    which files took whole classes with them: an error when fewer than 2
    classes are left, else a warning."""
    from ._scan import describe_bad, scan_files

    name = type(estimator).__name__
    before = np.unique(y)
    after = set(np.unique(y[keep]).tolist())
    lost = [label for label in before.tolist() if label not in after]
    if not lost:
        return
    left_out = np.setdiff1d(np.arange(len(y)), keep)
    infos = scan_files(paths[left_out])  # cached: no file is read again
    bad = [
        (int(i), str(paths[i]), info.problem)
        for i, info in zip(left_out, infos, strict=True)
        if y[i] in lost
    ]
    files = f"the files left out:\n{describe_bad(bad)}"
    if len(after) < 2:
        raise InputError(
            f"{name} needs at least 2 classes in y, but after leaving out image files that "
            f"cannot be used only {sorted(after)} remain(s) of {before.tolist()}; {files}\n"
            "Fix or replace those files (check the paths), or remove their classes from y."
        )
    warnings.warn(
        f"{name}.fit: classes {lost} have no usable image left and are not learnt "
        f"(classes_ lacks them); {files}",
        UserWarning,
        stacklevel=4,
    )


def check_predict_range(estimator, array: np.ndarray) -> None:
    """Warn, once per call, when pixels lie far (more than the training range's
    width) outside the range seen in ``fit``: the network has never seen such
    values and its answers mean little."""
    low, high = getattr(estimator, "input_range_", (None, None))
    if low is None or not array.size:
        return
    span = (high - low) or 1.0
    seen_low, seen_high = float(array.min()), float(array.max())
    if seen_low >= low - span and seen_high <= high + span:
        return
    warnings.warn(
        f"{type(estimator).__name__}.predict: X has pixel values from {seen_low:.4g} to "
        f"{seen_high:.4g}, far outside the range the network was trained on ({low:.4g} to "
        f"{high:.4g}, input_range_); its predictions for them mean little. Scale X as the "
        "training images were (e.g. uint8 0-255, or floats 0-1).",
        UserWarning,
        stacklevel=5,
    )
