"""Refusing to answer: an "unknown" label below a confidence threshold.

:class:`Abstain` wraps any fitted or unfitted classifier with
``predict_proba`` (an imgclf estimator, whose probabilities are calibrated
by default, a scikit-learn ``CalibratedClassifierCV``...) and answers
``unknown`` for each sample whose largest probability is below
``threshold``. :func:`threshold_for` picks that threshold on held-out data
for a target coverage (the share of samples answered) or a target
precision (the accuracy on the answered ones).

A meta-estimator rather than parameters of the estimators: the estimators'
``predict`` keeps returning labels of ``classes_`` only, as scikit-learn's
metrics, searches and checks expect, the threshold can be changed without
refitting anything, and the same wrapper works on any classifier.
"""

from __future__ import annotations

import numbers

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, MetaEstimatorMixin, clone
from sklearn.utils.validation import check_is_fitted

import imgclf._multilabel as multilabel

from .exceptions import InputError

_MULTILABEL_ADVICE = (
    "A multi-label model answers each label yes or no against its own threshold "
    "(thresholds_, tuned on the hold-out): to answer fewer labels, raise those thresholds, "
    "e.g. clf.thresholds_ = np.maximum(clf.thresholds_, 0.8)."
)


class Abstain(MetaEstimatorMixin, ClassifierMixin, BaseEstimator):
    """A classifier that answers ``unknown`` when it is not confident enough.

    Parameters
    ----------
    estimator : classifier with ``predict_proba``
        The classifier to wrap. :meth:`fit` fits a clone of it; to use an
        estimator that is already fitted, wrap it in
        ``sklearn.frozen.FrozenEstimator`` (whose ``fit`` does nothing).
    threshold : float, default=0.5
        Samples whose largest probability is below it get ``unknown``
        (at or above it, the most probable class). ``0.0`` never refuses.
        :func:`threshold_for` picks one for a coverage or a precision.
    unknown : object, default="unknown"
        The label answered when refusing. If it is not of the classes'
        dtype (a string with integer classes), :meth:`predict` returns an
        array of dtype object holding both.

    Attributes
    ----------
    estimator_ : classifier
        The fitted classifier (the clone of ``estimator``).
    classes_ : ndarray of shape (n_classes,)
        The classifier's classes (``unknown`` is not one of them).

    See Also
    --------
    threshold_for : the threshold for a target coverage or precision.

    Notes
    -----
    :meth:`score` is the accuracy of :meth:`predict`, where ``unknown``
    counts as a mistake; use :func:`threshold_for`'s figures, or
    ``predict`` and the mask of answers, to judge coverage and precision.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.frozen import FrozenEstimator
    >>> from sklearn.linear_model import LogisticRegression
    >>> from imgclf import Abstain
    >>> X = np.array([[0.0], [1.0], [2.0], [3.0]])
    >>> y = np.array([0, 0, 1, 1])
    >>> clf = LogisticRegression().fit(X, y)
    >>> abstain = Abstain(FrozenEstimator(clf), threshold=0.6, unknown=-1).fit(X, y)
    >>> abstain.predict(np.array([[0.0], [1.5], [3.0]])).tolist()
    [0, -1, 1]
    """

    def __init__(self, estimator, *, threshold: float = 0.5, unknown="unknown"):
        self.estimator = estimator
        self.threshold = threshold
        self.unknown = unknown

    def _check_threshold(self) -> None:
        value = self.threshold
        if (
            not isinstance(value, numbers.Real)
            or isinstance(value, bool)
            or not 0.0 <= float(value) <= 1.0
        ):
            raise InputError(
                f"Abstain(threshold={value!r}): expected a number in [0, 1], e.g. 0.5, or one "
                "from imgclf.threshold_for(proba, y, coverage=0.9)."
            )

    def fit(self, X, y, **fit_params):
        """Fit a clone of ``estimator`` on ``X, y``.

        Parameters
        ----------
        X : array-like or sequence of paths
            Training samples, as ``estimator.fit`` takes them.
        y : array-like of shape (n,)
            Class labels, one per image (multi-label targets, or a wrapped
            multi-label model, are an :class:`~imgclf.exceptions.InputError`).
        **fit_params : dict
            Passed to ``estimator.fit``.

        Returns
        -------
        self : Abstain
            The fitted meta-estimator.
        """
        self._check_threshold()
        if not hasattr(self.estimator, "predict_proba"):
            raise InputError(
                f"Abstain needs a classifier with predict_proba; "
                f"{type(self.estimator).__name__} has none."
            )
        if multilabel.is_multilabel(y):
            raise InputError(
                "Abstain: y holds multi-label targets, but Abstain answers one label per "
                f"image or {self.unknown!r}. {_MULTILABEL_ADVICE}",
                parameters=("y",),
            )
        self.estimator_ = clone(self.estimator).fit(X, y, **fit_params)
        if getattr(self.estimator_, "multilabel_", False):
            raise InputError(
                f"Abstain: the wrapped {type(self.estimator_).__name__} is a multi-label "
                f"model, but Abstain answers one label per image or {self.unknown!r}. "
                f"{_MULTILABEL_ADVICE}",
                parameters=("estimator",),
            )
        self.classes_ = self.estimator_.classes_
        return self

    def predict_proba(self, X) -> np.ndarray:
        """The wrapped classifier's class probabilities (no ``unknown`` column).

        Parameters
        ----------
        X : array-like or sequence of paths
            Samples, as the wrapped classifier takes them.

        Returns
        -------
        ndarray of shape (n, n_classes)
            Columns in ``classes_`` order.
        """
        check_is_fitted(self, "estimator_")
        return self.estimator_.predict_proba(X)

    def predict(self, X) -> np.ndarray:
        """The most probable class, or ``unknown`` below ``threshold``.

        Parameters
        ----------
        X : array-like or sequence of paths
            Samples, as the wrapped classifier takes them.

        Returns
        -------
        ndarray of shape (n,)
            Labels of ``classes_`` and ``unknown``; of dtype object when
            ``unknown`` does not fit the classes' dtype.
        """
        self._check_threshold()
        proba = self.predict_proba(X)
        return abstained(proba, self.classes_, self.threshold, self.unknown)

    def score(self, X, y, sample_weight=None) -> float:
        """Accuracy of :meth:`predict`, where ``unknown`` counts as a mistake.

        Parameters
        ----------
        X : array-like or sequence of paths
            Samples, as the wrapped classifier takes them.
        y : array-like of shape (n,)
            Their true labels.
        sample_weight : array-like of shape (n,), optional
            Weights of the samples.

        Returns
        -------
        float
            The (weighted) share of samples answered with their true label.
        """
        if multilabel.is_multilabel(y):
            raise InputError(
                "Abstain.score: y holds multi-label targets, but Abstain answers one label per "
                f"image or {self.unknown!r}. {_MULTILABEL_ADVICE}",
                parameters=("y",),
            )
        right = self.predict(X) == np.asarray(y, dtype=object)
        return float(np.average(right, weights=sample_weight))


def abstained(proba, classes, threshold: float, unknown) -> np.ndarray:
    """``classes[argmax]`` per row of ``proba``, ``unknown`` where the row's
    largest probability is below ``threshold``.

    Parameters
    ----------
    proba : ndarray of shape (n, n_classes)
        Class probabilities.
    classes : ndarray of shape (n_classes,)
        The label of each column.
    threshold : float
        The smallest largest-probability answered.
    unknown : object
        The label of refused rows.

    Returns
    -------
    ndarray of shape (n,)
        Of the classes' dtype when ``unknown`` fits it unchanged (a string
        with string classes: widened to hold it), else object.

    Examples
    --------
    >>> import numpy as np
    >>> from imgclf.reject import abstained
    >>> abstained(np.array([[0.9, 0.1], [0.55, 0.45]]), np.array([3, 7]), 0.6, "?").tolist()
    [3, '?']
    """
    proba = np.asarray(proba)
    classes = np.asarray(classes)
    labels = classes[proba.argmax(axis=1)]
    refused = proba.max(axis=1) < threshold
    if not refused.any():
        return labels
    if classes.dtype.kind == "U" and isinstance(unknown, str):
        out = labels.astype(np.result_type(classes.dtype, np.array([unknown]).dtype))
    elif _fits(unknown, classes.dtype):
        out = labels.copy()
    else:
        out = labels.astype(object)
    out[refused] = unknown
    return out


def _fits(value, dtype) -> bool:
    """Whether ``value`` is stored in an array of ``dtype`` unchanged."""
    try:
        stored = np.array([value]).astype(dtype, casting="same_kind")
    except (TypeError, ValueError):
        return False
    if dtype.kind == "O":
        return True
    try:
        return bool(stored[0] == value) and np.array([value]).dtype.kind == dtype.kind
    except (TypeError, ValueError):
        return False


def threshold_for(proba, y, *, classes=None, coverage=None, precision=None) -> float:
    """The confidence threshold meeting a target on held-out data.

    Samples are ranked by their largest probability. With ``coverage``, the
    threshold answers (at least) that share of the samples; with
    ``precision``, it is the lowest threshold whose answered samples are
    right at least that often (the most samples answered at that precision).

    Parameters
    ----------
    proba : ndarray of shape (n, n_classes)
        Class probabilities of held-out samples (``clf.predict_proba``).
    y : array-like of shape (n,)
        Their true labels.
    classes : array-like of shape (n_classes,), optional
        The label of each column (``clf.classes_``); by default the column
        indices ``0 .. n_classes - 1``.
    coverage : float in (0, 1], optional
        The share of samples to answer.
    precision : float in (0, 1], optional
        The accuracy wanted on the answered samples.

    Returns
    -------
    float
        A threshold for :class:`Abstain` (``predict`` answers the samples
        whose largest probability is at or above it). When no threshold
        reaches ``precision``, one just above every probability in
        ``proba``: nothing is answered.

    Raises
    ------
    imgclf.exceptions.InputError
        When not exactly one of ``coverage`` and ``precision`` is given, it
        is outside (0, 1], ``proba`` and ``y`` disagree in length, a label
        of ``y`` is not among ``classes``, or ``y`` holds multi-label
        targets (a multi-label model's per-label ``thresholds_`` play this
        part).

    Examples
    --------
    >>> import numpy as np
    >>> from imgclf import threshold_for
    >>> proba = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.45, 0.55]])
    >>> y = np.array([0, 1, 1, 1])
    >>> threshold_for(proba, y, coverage=0.5)
    0.8
    >>> threshold_for(proba, y, precision=1.0)
    0.8
    """
    if (coverage is None) == (precision is None):
        raise InputError("threshold_for: pass exactly one of coverage=... and precision=....")
    name, target = ("coverage", coverage) if coverage is not None else ("precision", precision)
    if (
        not isinstance(target, numbers.Real)
        or isinstance(target, bool)
        or not 0.0 < float(target) <= 1.0
    ):
        raise InputError(f"threshold_for: {name}={target!r}; expected a number in (0, 1].")
    if multilabel.is_multilabel(y):
        raise InputError(
            "threshold_for: y holds multi-label targets (an indicator matrix or label "
            "collections), but the threshold is on each image's largest probability, for "
            f"Abstain's one answer per image. {_MULTILABEL_ADVICE}",
            parameters=("y",),
        )
    proba = np.asarray(proba, dtype=np.float64)
    y = np.asarray(y)
    if proba.ndim != 2 or len(proba) != len(y) or len(y) == 0:
        raise InputError(
            f"threshold_for: proba of shape {proba.shape} and y of length {len(y)}; expected "
            "(n, n_classes) probabilities and n labels, n >= 1."
        )
    confidence = proba.max(axis=1)
    order = np.argsort(-confidence, kind="stable")
    sorted_conf = confidence[order]
    if coverage is not None:
        k = int(np.ceil(float(coverage) * len(y) - 1e-9))
        return float(sorted_conf[max(k, 1) - 1])
    classes = np.arange(proba.shape[1]) if classes is None else np.asarray(classes)
    index = {label: i for i, label in enumerate(classes.tolist())}
    missing = sorted({label for label in y.tolist() if label not in index}, key=str)
    if missing:
        raise InputError(
            f"threshold_for: labels {missing[:5]} of y are not among classes "
            f"{classes.tolist()[:10]}; pass classes=clf.classes_."
        )
    truth = np.array([index[label] for label in y.tolist()])
    correct = (proba.argmax(axis=1) == truth)[order].astype(np.float64)
    running = np.cumsum(correct) / np.arange(1, len(y) + 1)
    # Only cut where the confidence changes: tied samples are answered together.
    last_of_tie = np.r_[sorted_conf[1:] < sorted_conf[:-1], True]
    good = np.flatnonzero(last_of_tie & (running >= float(precision) - 1e-12))
    if len(good) == 0:
        return float(np.nextafter(sorted_conf[0], np.inf))
    return float(sorted_conf[good[-1]])


__all__ = ["Abstain", "abstained", "threshold_for"]
