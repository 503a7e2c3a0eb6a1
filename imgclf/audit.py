"""Finding mislabelled images: out-of-fold probabilities from refits of an
imgclf classifier, read by cleanlab's confident learning.

Each image is judged by a model that never saw it
(:func:`sklearn.model_selection.cross_val_predict`), so a wrong label cannot
be learnt by heart and then agreed with. cleanlab is an optional dependency
(``pip install "imgclf[cleanlab]"``); :func:`find_label_issues` says so before
any refit when it is missing. :func:`imgclf.plot.plot_label_issues` draws the
result.
"""

from __future__ import annotations

import numbers
import os
from dataclasses import dataclass

import numpy as np

import imgclf._multilabel as multilabel

from ._pathargs import check_output_file
from ._validation import class_index
from .exceptions import InputError

# What cleanlab's ``find_label_issues`` accepts (``filter_by``,
# ``return_indices_ranked_by``), checked here so a typo fails before the refits.
FILTERS = (
    "prune_by_noise_rate",
    "prune_by_class",
    "both",
    "confident_learning",
    "predicted_neq_given",
    "low_normalized_margin",
    "low_self_confidence",
)
RANKINGS = ("self_confidence", "normalized_margin", "confidence_weighted_entropy")

INSTALL_HINT = (
    'pip install "imgclf[cleanlab]" (from a clone of imgclf: pip install -e ".[cleanlab]"), '
    "or pip install cleanlab"
)


def _cleanlab():
    """cleanlab's ``filter`` and ``rank`` modules, or an ImportError with the fix."""
    try:
        from cleanlab import filter as cl_filter
        from cleanlab import rank as cl_rank
    except ImportError as exc:
        raise ImportError(
            f"imgclf.find_label_issues needs cleanlab, which is not installed. Install it "
            f"with {INSTALL_HINT}."
        ) from exc
    return cl_filter, cl_rank


@dataclass(frozen=True, repr=False)
class LabelIssues:
    """Images whose given label is suspected to be wrong, worst first.

    The first six attributes have one entry per suspect, in the same order;
    :meth:`rows` and :meth:`to_csv` give them as a table.

    Attributes
    ----------
    index : ndarray of int
        Position of each suspect in ``X`` / ``y``.
    path : ndarray of str or None
        Its file, when ``X`` was a list of paths; None for arrays.
    given_label : ndarray
        The label it has in ``y``.
    suggested_label : ndarray
        The label the out-of-fold model gives it (the most probable class).
    label_quality : ndarray of float
        How much the model believes the given label, in 0-1 (by default the
        out-of-fold probability of the given label): the lower, the likelier
        the label is wrong. Suspects are sorted by it, lowest first.
    suggested_proba : ndarray of float
        The out-of-fold probability of ``suggested_label``.
    pred_probs : ndarray of shape (n_samples, n_classes)
        The out-of-fold probabilities of every image; pass them back as
        ``find_label_issues(None, X, y, pred_probs=...)`` to filter again
        (another ``filter_by``) without refitting.
    classes : ndarray
        The column labels of ``pred_probs``.
    """

    index: np.ndarray
    path: np.ndarray | None
    given_label: np.ndarray
    suggested_label: np.ndarray
    label_quality: np.ndarray
    suggested_proba: np.ndarray
    pred_probs: np.ndarray
    classes: np.ndarray

    def __len__(self) -> int:
        return len(self.index)

    def __repr__(self) -> str:
        n = len(self.pred_probs)
        text = f"LabelIssues({len(self)} of {n} labels suspected"
        if len(self):
            where = self.path[0] if self.path is not None else f"index {self.index[0]}"
            text += (
                f"; worst: {where}, given {_plain(self.given_label[0])!r}, suggested "
                f"{_plain(self.suggested_label[0])!r}, label quality {self.label_quality[0]:.3f}"
            )
        return text + ")"

    def rows(self) -> list[dict]:
        """The suspects as a table, one dict per suspect, worst first.

        Returns
        -------
        list of dict
            Keys ``index``, ``path`` (only when ``X`` was paths),
            ``given_label``, ``suggested_label``, ``label_quality`` and
            ``suggested_proba``, as Python values: ``pandas.DataFrame(rows)``
            makes a data frame.
        """
        rows = []
        for k in range(len(self)):
            row = {"index": int(self.index[k])}
            if self.path is not None:
                row["path"] = str(self.path[k])
            row["given_label"] = _plain(self.given_label[k])
            row["suggested_label"] = _plain(self.suggested_label[k])
            row["label_quality"] = float(self.label_quality[k])
            row["suggested_proba"] = float(self.suggested_proba[k])
            rows.append(row)
        return rows

    def to_csv(self, path) -> str:
        """Write :meth:`rows` to a CSV file with a header line.

        The file is written atomically: an earlier file at ``path`` is
        replaced whole or not at all.

        Parameters
        ----------
        path : str or PathLike
            The CSV file to write; its folder must exist.

        Returns
        -------
        str
            ``path``.
        """
        import csv
        import io

        from ._persist import atomic_write

        path = check_output_file(path, "LabelIssues.to_csv: path", example="suspects.csv")
        fields = ["index", *(["path"] if self.path is not None else [])]
        fields += ["given_label", "suggested_label", "label_quality", "suggested_proba"]
        text = io.StringIO()
        writer = csv.DictWriter(text, fieldnames=fields, lineterminator="\n")
        writer.writeheader()
        for row in self.rows():
            row["label_quality"] = f"{row['label_quality']:.6f}"
            row["suggested_proba"] = f"{row['suggested_proba']:.6f}"
            writer.writerow(row)
        data = text.getvalue().encode("utf-8")
        atomic_write(path, lambda f: f.write(data), prefix=".imgclf-audit-")
        return path


def _plain(value):
    """A NumPy scalar as the Python value (a CSV or JSON writer takes it)."""
    return value.item() if isinstance(value, np.generic) else value


def _paths_of(X) -> np.ndarray | None:
    """``X`` as a 1-D array of ``str`` if it is a sequence of paths, else None."""
    if X is None or getattr(X, "ndim", 1) != 1 or len(X) == 0:
        return None
    values = X.tolist() if hasattr(X, "tolist") else list(X)
    if all(isinstance(v, (str, os.PathLike)) for v in values):
        return np.array([os.fspath(v) for v in values], dtype=object)
    return None


def _check_labels(y, n_samples: int | None) -> np.ndarray:
    if y is None:
        raise InputError("find_label_issues needs y, the labels to check (one per image).")
    if multilabel.is_multilabel(y):
        raise InputError(
            "find_label_issues: y holds multi-label targets (an indicator matrix or label "
            "collections); it checks one label per image. For multi-label targets, compute "
            "out-of-fold probabilities with cross_val_predict(clf, X, Y, cv=KFold(5, "
            "shuffle=True, random_state=0), method='predict_proba') (Y the indicator matrix) "
            "and give them to cleanlab.filter.find_label_issues(labels, pred_probs, "
            "multi_label=True), labels being each image's list of label columns.",
            parameters=("y",),
        )
    y = np.asarray(y)
    if y.ndim != 1:
        raise InputError(
            f"find_label_issues: y should be a 1-D array of labels, got shape {y.shape}; for "
            "one-hot labels pass y.argmax(axis=1)."
        )
    if n_samples is not None and len(y) != n_samples:
        raise InputError(
            f"find_label_issues: X has {n_samples} samples but y has {len(y)} labels; give "
            "one label per image."
        )
    missing = [i for i, v in enumerate(y.tolist()) if v is None or v != v]
    if missing:
        raise InputError(
            f"find_label_issues: y has {len(missing)} missing label(s) (None or NaN), the "
            f"first at position {missing[0]}; drop those images or give them a label."
        )
    return y


def _check_choice(name: str, value, allowed) -> None:
    if value not in allowed:
        raise InputError(
            f"find_label_issues: {name}={value!r} is not one of {', '.join(map(repr, allowed))}."
        )


def _n_splits(cv) -> int | None:
    if isinstance(cv, numbers.Integral) and not isinstance(cv, bool):
        if cv < 2:
            raise InputError(
                f"find_label_issues: cv={cv}; it needs at least 2 folds (5 is usual): each "
                "image is judged by a model fitted on the other folds."
            )
        return int(cv)
    if hasattr(cv, "get_n_splits") or (hasattr(cv, "__iter__") and not isinstance(cv, str)):
        return None
    raise InputError(
        f"find_label_issues: cv={cv!r}; give a number of folds (e.g. 5) or a scikit-learn "
        "splitter such as StratifiedKFold(5, shuffle=True, random_state=0)."
    )


def _check_class_sizes(y, folds: int) -> None:
    """Every refit must see every class: each needs at least ``folds`` images."""
    labels, counts = np.unique(y, return_counts=True)
    few = [(label, int(c)) for label, c in zip(labels.tolist(), counts, strict=True) if c < folds]
    if few:
        shown = ", ".join(f"{label!r} ({c})" for label, c in few[:10])
        raise InputError(
            f"find_label_issues: with cv={folds} every class needs at least {folds} images, "
            f"but {len(few)} class(es) have fewer: {shown}. A class this small is often a "
            "typo in a label: fix or drop those images, or use a smaller cv (at least 2)."
        )
    if len(labels) < 2:
        raise InputError(
            f"find_label_issues: y has a single class ({labels[0]!r}); label errors are "
            "confusions between classes, so at least 2 are needed."
        )


def _check_pred_probs(pred_probs, n_samples: int, classes) -> np.ndarray:
    pred_probs = np.asarray(pred_probs, dtype=float)
    if pred_probs.ndim != 2 or len(pred_probs) != n_samples:
        raise InputError(
            f"find_label_issues: pred_probs has shape {pred_probs.shape}; expected "
            f"({n_samples}, n_classes), one row of out-of-fold probabilities per image "
            "(cross_val_predict(clf, X, y, method='predict_proba'))."
        )
    if pred_probs.shape[1] != len(classes):
        raise InputError(
            f"find_label_issues: pred_probs has {pred_probs.shape[1]} columns but there are "
            f"{len(classes)} classes ({np.asarray(classes).tolist()[:10]}); pass classes= "
            "in the order of the columns (the model's classes_)."
        )
    if not np.isfinite(pred_probs).all() or (pred_probs < 0).any():
        raise InputError(
            "find_label_issues: pred_probs holds negative, NaN or infinite values; give "
            "probabilities (predict_proba's output), not logits."
        )
    return pred_probs


def find_label_issues(
    estimator,
    X,
    y,
    *,
    cv=5,
    groups=None,
    pred_probs=None,
    classes=None,
    filter_by: str = "prune_by_noise_rate",
    rank_by: str = "self_confidence",
) -> LabelIssues:
    """Find images whose label is probably wrong.

    Each image gets out-of-fold probabilities from a clone of ``estimator``
    fitted on the other folds (``cross_val_predict(estimator, X, y, cv=cv,
    method="predict_proba")``: ``cv`` fits); cleanlab's confident learning
    (``cleanlab.filter.find_label_issues``) then flags the labels that
    disagree with them beyond each class's typical confusion.

    Parameters
    ----------
    estimator : imgclf classifier or None
        An unfitted classifier with the settings to use (it is cloned; each
        clone fits ``1 - 1/cv`` of the data). None when ``pred_probs`` is given.
    X : images or paths, or None
        What the estimator's ``fit`` accepts: arrays of images, or a list of
        image files (as :func:`imgclf.load_folder` returns). With paths the
        result names the files. May be None when ``pred_probs`` is given.
    y : array-like of shape (n_samples,)
        The labels to check, one per image (multi-label targets are an
        :class:`~imgclf.exceptions.InputError` whose message shows the way
        with cleanlab's ``multi_label=True``).
    cv : int or cross-validation splitter, default=5
        Folds, as in :func:`sklearn.model_selection.cross_val_predict` (an
        int is a :class:`~sklearn.model_selection.StratifiedKFold`); every
        class needs at least ``cv`` images.
    groups : array-like of shape (n_samples,), optional
        A group per image (the object, patient or source file it shows),
        for a group-aware ``cv`` such as
        :class:`~sklearn.model_selection.StratifiedGroupKFold`: near
        duplicates in other folds would otherwise vouch for a wrong label.
    pred_probs : array-like of shape (n_samples, n_classes), optional
        Out-of-fold probabilities already computed (for example the
        ``pred_probs`` of an earlier result): no model is fitted.
    classes : array-like, optional
        The labels of the columns of ``pred_probs``; by default the sorted
        distinct labels of ``y`` (the column order of every imgclf and
        scikit-learn classifier). Only with ``pred_probs``.
    filter_by : str, default="prune_by_noise_rate"
        cleanlab's rule for flagging: ``"prune_by_noise_rate"``,
        ``"prune_by_class"``, ``"both"``, ``"confident_learning"``,
        ``"predicted_neq_given"`` (every disagreement: more found, less
        precise), ``"low_normalized_margin"`` or ``"low_self_confidence"``.
    rank_by : str, default="self_confidence"
        The label quality score the suspects are sorted by:
        ``"self_confidence"`` (the probability of the given label),
        ``"normalized_margin"`` or ``"confidence_weighted_entropy"``.

    Returns
    -------
    LabelIssues
        The suspects, worst first, with their index (and file), given and
        suggested labels and scores; also the out-of-fold ``pred_probs``.

    Raises
    ------
    ImportError
        If cleanlab is not installed (checked before any fit).
    imgclf.exceptions.InputError
        If ``y`` does not match ``X`` or ``pred_probs``, holds multi-label
        targets, a class has fewer than ``cv`` images, or an option is unknown.

    See Also
    --------
    imgclf.plot.plot_label_issues : draws the suspects.

    Examples
    --------
    >>> import numpy as np
    >>> from imgclf import find_label_issues
    >>> y = np.array(["cat"] * 4 + ["dog"] * 4)
    >>> pred_probs = np.array([[0.9, 0.1]] * 3 + [[0.05, 0.95]] + [[0.1, 0.9]] * 4)
    >>> issues = find_label_issues(None, None, y, pred_probs=pred_probs)
    >>> issues.index, issues.given_label, issues.suggested_label
    (array([3]), array(['cat'], dtype='<U3'), array(['dog'], dtype='<U3'))

    With a model: ``find_label_issues(CNNClassifier(), X, y, cv=5)`` fits
    five CNNs (``X`` images or paths).
    """
    cl_filter, cl_rank = _cleanlab()  # before any fit
    _check_choice("filter_by", filter_by, FILTERS)
    _check_choice("rank_by", rank_by, RANKINGS)
    n_samples = None if X is None else len(X)
    y = _check_labels(y, n_samples)
    paths = _paths_of(X)
    if pred_probs is None:
        if estimator is None or X is None:
            raise InputError(
                "find_label_issues needs an estimator and X to compute out-of-fold "
                "probabilities, or pred_probs= already computed."
            )
        if classes is not None:
            raise InputError(
                "find_label_issues: classes= names the columns of pred_probs=; without "
                "pred_probs the columns are the sorted labels of y."
            )
        if not hasattr(estimator, "predict_proba"):
            raise InputError(
                f"find_label_issues: {type(estimator).__name__} has no predict_proba; give "
                "a classifier such as imgclf.CNNClassifier() or TransferClassifier()."
            )
        folds = _n_splits(cv)
        if folds is not None:
            _check_class_sizes(y, folds)
        from sklearn.model_selection import cross_val_predict

        pred_probs = cross_val_predict(
            estimator, X, y, groups=groups, cv=cv, method="predict_proba"
        )
        classes = np.unique(y)
    else:
        classes = np.unique(y) if classes is None else np.asarray(classes)
    pred_probs = _check_pred_probs(pred_probs, len(y), classes)
    labels = class_index(classes, y)
    if (labels < 0).any():
        first = int(np.flatnonzero(labels < 0)[0])
        raise InputError(
            f"find_label_issues: label {_plain(y[first])!r} (position {first}) is not among the "
            f"classes of pred_probs {classes.tolist()[:10]}."
        )
    index = cl_filter.find_label_issues(
        labels,
        pred_probs,
        filter_by=filter_by,
        return_indices_ranked_by=rank_by,
        n_jobs=1,  # cleanlab's default starts a process per core: too many for its job here
    )
    index = np.asarray(index, dtype=int)
    quality = cl_rank.get_label_quality_scores(labels, pred_probs, method=rank_by)
    suggested = np.argmax(pred_probs, axis=1)
    return LabelIssues(
        index=index,
        path=None if paths is None else paths[index],
        given_label=y[index],
        suggested_label=classes[suggested[index]],
        label_quality=quality[index],
        suggested_proba=pred_probs[index, suggested[index]],
        pred_probs=pred_probs,
        classes=classes,
    )


__all__ = ["LabelIssues", "find_label_issues"]
