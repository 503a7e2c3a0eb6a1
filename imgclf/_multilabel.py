"""Multi-label targets: each image carries any number of labels (none included).

What ``y`` may be, as scikit-learn reads it:

- a 2-D 0/1 indicator matrix ``(n, n_labels)`` (what
  :class:`sklearn.preprocessing.MultiLabelBinarizer` gives; scikit-learn's
  ``type_of_target(y) == "multilabel-indicator"``): ``classes_`` is
  ``arange(n_labels)``, the column numbers, as scikit-learn's own
  multi-label classifiers have it;
- a list (or 1-D object array, or Series) of label collections (lists,
  tuples, sets): encoded with ``MultiLabelBinarizer``'s semantics,
  ``classes_`` the sorted labels.

Either way the network ends in one sigmoid per label and trains on binary
cross-entropy; ``predict`` returns the 0/1 indicator matrix (columns in
``classes_`` order) and ``predict_proba`` the ``(n, n_labels)`` array of
per-label probabilities. Each label's threshold (``thresholds_``) is tuned
on the hold-out for the best F1, ties going to the threshold nearest 0.5;
without a hold-out every threshold is 0.5.

The hold-out is stratified on each image's rarest label (the label of the
image with the fewest images in ``y``; images with no label form a group of
their own), groups of one image pooled: a simpler rule than iterative
stratification that keeps rare labels in both parts.
"""

from __future__ import annotations

import numpy as np
from scipy import sparse
from sklearn.metrics import accuracy_score
from sklearn.utils.multiclass import type_of_target

from ._pathargs import short_repr
from ._validation import check_targets, label_kind
from .exceptions import InputError

#: What a collection of labels may be (one item of a list-of-collections ``y``).
COLLECTIONS = (list, tuple, set, frozenset)
#: The threshold without a hold-out, and the one ties go toward.
DEFAULT_THRESHOLD = 0.5


def _is_collection(value) -> bool:
    return isinstance(value, COLLECTIONS) or (
        isinstance(value, np.ndarray) and value.ndim == 1 and value.dtype == object
    )


def is_multilabel(y) -> bool:
    """Whether ``y`` holds multi-label targets: a 2-D array of two columns or
    more, or a sequence of label collections."""
    if y is None or isinstance(y, (str, bytes)):
        return False
    if sparse.issparse(y):
        return len(y.shape) == 2 and y.shape[1] >= 2
    shape = getattr(y, "shape", None)
    if shape is not None and len(shape) == 2:
        return shape[1] >= 2
    if isinstance(y, (list, tuple)) or (shape is not None and len(shape) == 1):
        values = list(y)
        if len(values) > 0 and any(_is_collection(v) for v in values):
            return True
        return len(values) > 0 and all(_is_row(v) for v in values) and _indicator(values)
    return False


def _is_row(value) -> bool:
    return isinstance(value, np.ndarray) and value.ndim == 1


def _indicator(values) -> bool:
    """Whether rows ``values`` make a multi-label indicator matrix, as
    scikit-learn's ``type_of_target`` says."""
    try:
        return type_of_target(values) == "multilabel-indicator"
    except ValueError:  # ragged rows: label collections
        return False


def check_y(estimator, y, n_samples: int) -> np.ndarray:
    """``y`` checked: for multi-label targets a 2-D 0/1 ``uint8`` matrix or a
    1-D object array of sorted label tuples; otherwise what
    :func:`imgclf._validation.check_targets` returns."""
    if not is_multilabel(y):
        return check_targets(estimator, y, n_samples)
    name = type(estimator).__name__
    if sparse.issparse(y):
        y = y.toarray()
    if isinstance(y, (list, tuple)) or getattr(y, "ndim", 2) == 1:
        values = list(y)
        if all(isinstance(v, (list, tuple)) or _is_row(v) for v in values) and _indicator(values):
            return _check_indicator(name, np.asarray(values), n_samples)
        return _check_collections(name, values, n_samples)
    return _check_indicator(name, np.asarray(y), n_samples)


def _check_indicator(name: str, y: np.ndarray, n_samples: int) -> np.ndarray:
    if y.dtype.kind not in "biuf" or not np.isin(y, (0, 1)).all():
        bad = y.ravel()[:1000]
        odd = [v for v in bad.tolist() if v not in (0, 1)][:3] if bad.dtype.kind in "biuf" else []
        seen = f" (e.g. {short_repr(odd, 60)})" if odd else f" of dtype {y.dtype}"
        raise InputError(
            f"y is a 2-D array of shape {y.shape}, which {name} reads as multi-label targets: a "
            f"0/1 indicator matrix, one column per label. It holds values other than 0 and 1"
            f"{seen}. Give 0/1 (MultiLabelBinarizer().fit_transform(label_lists) makes "
            "them), a list of label lists, or one label per image as a 1-D array."
        )
    if len(y) != n_samples:
        raise InputError(
            f"X has {n_samples} samples but y has {len(y)} rows; {name} needs exactly one "
            "row of labels per image."
        )
    return y.astype(np.uint8)


def _check_collections(name: str, values: list, n_samples: int) -> np.ndarray:
    out, kinds = np.empty(len(values), dtype=object), {}
    for i, value in enumerate(values):
        if not _is_collection(value):
            raise InputError(
                f"y mixes label collections and single labels: position {i} holds "
                f"{short_repr(value, 40)}. For multi-label targets give every image a list "
                "(or tuple, or set) of labels, [] for none, e.g. [['cat'], ['cat', 'dog'], []]."
            )
        labels = list(value.tolist() if isinstance(value, np.ndarray) else value)
        for label in labels:
            kind = label_kind(label)
            if kind is None:
                raise InputError(
                    f"y[{i}] holds a missing label (None or NaN); {name} needs real labels "
                    "in each collection: drop it (an empty collection means no label)."
                )
            if kind not in ("str", "number"):
                raise InputError(
                    f"y[{i}] holds {short_repr(label, 40)} of type {kind}; labels are str, "
                    "int, float or bool."
                )
            kinds.setdefault(kind, (i, label))
        if len(kinds) > 1:
            (a, (j, u)), (b, (k, v)) = list(kinds.items())[:2]
            raise InputError(
                f"y mixes label types: {a} (e.g. {short_repr(u, 40)} in y[{j}]) and {b} (e.g. "
                f"{short_repr(v, 40)} in y[{k}]). {name} needs labels of one type: convert "
                "them, e.g. [[str(label) for label in labels] for labels in y]."
            )
        out[i] = tuple(sorted(set(labels)))
    if len(out) != n_samples:
        raise InputError(
            f"X has {n_samples} samples but y has {len(out)} label collections; {name} needs "
            "exactly one collection of labels per image."
        )
    return out


def encode(estimator, y: np.ndarray, warm: bool) -> tuple[np.ndarray, np.ndarray]:
    """``(classes, Y)``: the labels and the float32 0/1 matrix, one column per
    label, of checked multi-label ``y``. A warm start keeps ``classes_``."""
    name = type(estimator).__name__
    check_class_weight(estimator)
    if warm and not getattr(estimator, "multilabel_", False):
        raise InputError(
            "warm_start=True, but y holds multi-label targets while the model was fitted on "
            "one label per image. Set warm_start=False to fit a multi-label model."
        )
    if y.ndim == 2:
        classes = np.arange(y.shape[1])
        if warm and not np.array_equal(classes, estimator.classes_):
            raise InputError(
                f"warm_start=True, but y has {y.shape[1]} label columns while the model was "
                f"fitted on {len(estimator.classes_)}. Use the same labels, or set "
                "warm_start=False."
            )
        return classes, y.astype(np.float32)
    flat = [label for labels in y.tolist() for label in labels]
    classes = estimator.classes_ if warm else np.unique(np.asarray(flat))
    if len(classes) < 2:
        raise InputError(
            f"{name} needs at least 2 distinct labels in y for multi-label targets, got "
            f"{short_repr(classes.tolist(), 60)}. For one yes/no label give one label per "
            "image (a binary classifier)."
        )
    position = {label: j for j, label in enumerate(classes.tolist())}
    unknown = sorted({str(label) for label in flat if label not in position})
    if unknown:
        raise InputError(
            f"warm_start=True, but y has labels {unknown[:10]} the model was not fitted on "
            f"(its classes are {short_repr(classes.tolist(), 120)}). Use the same labels, or "
            "set warm_start=False."
        )
    matrix = np.zeros((len(y), len(classes)), np.float32)
    for i, labels in enumerate(y.tolist()):
        matrix[i, [position[label] for label in labels]] = 1.0
    return np.asarray(classes), matrix


def check_class_weight(estimator) -> None:
    """``class_weight`` is refused for multi-label targets (per-label weights
    of positives and negatives are not what Keras's class weights give)."""
    if estimator.class_weight is not None:
        raise InputError(
            f"{type(estimator).__name__}: class_weight={short_repr(estimator.class_weight, 60)} "
            "is not supported with multi-label targets (Keras weighs a sample by one class, "
            "and an image here has several). Pass class_weight=None; the per-label "
            "thresholds tuned on the hold-out (thresholds_) already adapt to rare labels."
        )


def output_activation(estimator) -> str:
    """The classifier layer's activation: one sigmoid per label, or the softmax."""
    return "sigmoid" if getattr(estimator, "multilabel_", False) else "softmax"


def loss(estimator) -> str:
    """The training loss: binary cross-entropy per label, or the categorical one."""
    if getattr(estimator, "multilabel_", False):
        return "binary_crossentropy"
    return "sparse_categorical_crossentropy"


def metrics(estimator, names) -> list:
    """``names`` for ``compile``; multi-label ``"accuracy"`` is the fraction of
    correct label decisions at 0.5 (Keras's binary accuracy), logged as ``accuracy``."""
    if not getattr(estimator, "multilabel_", False):
        return list(names)
    from ._backend import get_keras

    keras = get_keras()
    return [keras.metrics.BinaryAccuracy(name="accuracy") if m == "accuracy" else m for m in names]


def strata(Y: np.ndarray) -> np.ndarray:
    """One integer per image for a stratified hold-out: its rarest label (the
    one with the fewest images in ``Y``), images with no label a group of
    their own, and groups of one image pooled into one group."""
    counts = Y.sum(axis=0)
    rank = np.where(Y > 0, counts[None, :], np.inf)
    group = np.where(np.isfinite(rank.min(axis=1)), rank.argmin(axis=1), Y.shape[1])
    values, sizes = np.unique(group, return_counts=True)
    group[np.isin(group, values[sizes < 2])] = Y.shape[1] + 1
    return np.unique(group, return_inverse=True)[1].astype(np.int64)


def best_threshold(truth: np.ndarray, proba: np.ndarray) -> float:
    """The threshold (``proba >= t`` predicts the label) with the best F1 on
    one label's hold-out; among equally good ones the nearest to 0.5, and
    0.5 when the hold-out has no image of the label."""
    truth = truth.astype(bool)
    positives = int(truth.sum())
    if positives == 0:
        return DEFAULT_THRESHOLD
    order = np.argsort(-proba, kind="stable")
    p, t = proba[order], truth[order]
    tp = np.cumsum(t)
    predicted = np.arange(1, len(p) + 1)
    # The last of equal probabilities: a threshold keeps all of them or none.
    last = np.append(p[1:] != p[:-1], True)
    f1 = 2 * tp / (predicted + positives)
    f1, high = f1[last], p[last]
    low = np.append(high[1:], -np.inf)  # thresholds in (low, high] predict the same
    best = f1.max()
    choices = []
    for hi, lo in zip(high[f1 >= best - 1e-12], low[f1 >= best - 1e-12], strict=True):
        if lo < DEFAULT_THRESHOLD <= hi:
            choices.append(DEFAULT_THRESHOLD)
        elif hi < DEFAULT_THRESHOLD:
            choices.append(float(hi))
        else:
            choices.append(float((lo + hi) / 2))
    return min(choices, key=lambda c: (abs(c - DEFAULT_THRESHOLD), c))


def tune_thresholds(Y: np.ndarray, proba: np.ndarray) -> np.ndarray:
    """Each label's :func:`best_threshold` on the hold-out ``(Y, proba)``."""
    return np.array(
        [best_threshold(Y[:, j], proba[:, j]) for j in range(Y.shape[1])], dtype=np.float64
    )


def default_thresholds(n_labels: int) -> np.ndarray:
    """0.5 for every label (no hold-out to tune on)."""
    return np.full(n_labels, DEFAULT_THRESHOLD)


def predict(estimator, proba: np.ndarray) -> np.ndarray:
    """The 0/1 indicator matrix (int64) of ``proba`` against ``thresholds_``."""
    thresholds = getattr(estimator, "thresholds_", None)
    if thresholds is None:
        thresholds = default_thresholds(proba.shape[1])
    return (proba >= np.asarray(thresholds)[None, :]).astype(np.int64)


def indicator(estimator, y, n_samples: int) -> np.ndarray:
    """Multi-label ``y`` given to ``score`` as the 0/1 matrix in ``classes_``
    order (labels the model does not know are an error)."""
    name = type(estimator).__name__
    if not is_multilabel(y):
        raise InputError(
            f"{name} was fitted on multi-label targets: give y as a 0/1 indicator matrix of "
            f"{len(estimator.classes_)} columns or as a list of label collections, got "
            f"{short_repr(y, 60)}."
        )
    checked = check_y(estimator, y, n_samples)
    if checked.ndim == 2 and checked.shape[1] != len(estimator.classes_):
        raise InputError(
            f"y has {checked.shape[1]} label columns but {name} was fitted on "
            f"{len(estimator.classes_)} labels ({short_repr(estimator.classes_.tolist(), 80)})."
        )
    if checked.ndim == 2:
        return checked.astype(np.int64)
    position = {label: j for j, label in enumerate(estimator.classes_.tolist())}
    out = np.zeros((len(checked), len(position)), np.int64)
    for i, labels in enumerate(checked.tolist()):
        unknown = [label for label in labels if label not in position]
        if unknown:
            raise InputError(
                f"y[{i}] holds labels {short_repr(unknown, 60)} {name} was not fitted on; its "
                f"labels are {short_repr(estimator.classes_.tolist(), 120)}."
            )
        out[i, [position[label] for label in labels]] = 1
    return out


def tool_targets(where: str, estimator, y, n_samples: int) -> np.ndarray | None:
    """``y`` given to a tool that takes ``(estimator, X, y)`` (``where`` is its
    name): for a multi-label ``estimator`` the 0/1 matrix in ``classes_``
    order (int64), for a single-label one None (the tool reads ``y`` as one
    label per image). Multi-label ``y`` for a single-label model, or the
    reverse, is an :class:`~imgclf.exceptions.InputError` naming ``y``."""
    name = type(estimator).__name__
    if getattr(estimator, "multilabel_", False):
        try:
            return indicator(estimator, y, n_samples)
        except InputError as exc:
            raise InputError(f"{where}: {exc}", parameters=("y",)) from exc
    if is_multilabel(y) and not hasattr(estimator, "multilabel_"):
        raise InputError(
            f"{where}: y holds multi-label targets ({_shape_of(y)}), which it reads for "
            f"imgclf's multi-label models (multilabel_ True) only, and {name} is not an imgclf "
            "classifier. Give y as one label per image, or use an imgclf classifier fitted "
            "on the multi-label targets.",
            parameters=("y",),
        )
    if is_multilabel(y):
        raise InputError(
            f"{where}: y holds multi-label targets ({_shape_of(y)}), but {name} was fitted on "
            "one label per image. Give y as one label per image (what the model was fitted "
            "on), or fit the model on the multi-label targets first.",
            parameters=("y",),
        )
    return None


def _shape_of(y) -> str:
    shape = getattr(y, "shape", None)
    if shape is not None and len(shape) == 2:
        return f"a 2-D array of shape {tuple(shape)}"
    return f"{len(y)} label collections"


def bce(truth: np.ndarray, proba: np.ndarray) -> np.ndarray:
    """Binary cross-entropy of each (image, label): ``-log p`` where the label
    is given, ``-log(1 - p)`` where not (probabilities clipped at 1e-12)."""
    p = np.clip(np.asarray(proba, dtype=np.float64), 1e-12, 1 - 1e-12)
    return -np.where(np.asarray(truth) > 0, np.log(p), np.log1p(-p))


def label_set(classes, row) -> str:
    """The labels of one indicator row, comma-joined; ``(none)`` for none."""
    text = ", ".join(str(label) for label, on in zip(classes, row, strict=True) if on)
    return text or "(none)"


def score(estimator, y, pred: np.ndarray, sample_weight=None) -> float:
    """Subset accuracy: the fraction of images whose every label is right
    (what scikit-learn's ``ClassifierMixin.score`` gives for multi-label)."""
    truth = indicator(estimator, y, len(pred))
    return float(accuracy_score(truth, pred, sample_weight=sample_weight))


def parse_tags(text: str, sep: str) -> tuple:
    """The labels of one CSV cell of tags separated by ``sep`` (blanks dropped)."""
    return tuple(sorted({part.strip() for part in str(text).split(sep) if part.strip()}))


def join_tags(classes, row, sep: str) -> str:
    """The labels of one indicator row, joined by ``sep``."""
    return sep.join(str(label) for label, on in zip(classes, row, strict=True) if on)


__all__ = [
    "COLLECTIONS",
    "DEFAULT_THRESHOLD",
    "bce",
    "best_threshold",
    "check_class_weight",
    "check_y",
    "default_thresholds",
    "encode",
    "indicator",
    "is_multilabel",
    "join_tags",
    "label_set",
    "loss",
    "metrics",
    "output_activation",
    "parse_tags",
    "predict",
    "score",
    "strata",
    "tool_targets",
    "tune_thresholds",
]
