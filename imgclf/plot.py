"""Pictures of a fitted classifier: learning curves, confusion matrix,
reliability diagram, the worst mistakes, Grad-CAM heat maps, and the images
whose label looks wrong. Drawing only: what is drawn is computed in
:mod:`imgclf.explain` (whose :func:`top_losses` and :func:`grad_cam` are also
importable from here).

matplotlib is an optional dependency (``pip install "imgclf[plot]"``). Every
function builds a :class:`matplotlib.figure.Figure` without pyplot, draws it
with the Agg canvas, writes it to ``path`` when given, and returns it, so it
works the same in a script, on a headless server and in a notebook.
"""

from __future__ import annotations

import math
import os

import numpy as np
from sklearn.utils import _safe_indexing
from sklearn.utils.validation import check_is_fitted

import imgclf._multilabel as multilabel

from ._validation import class_index
from .exceptions import InputError
from .explain import grad_cam, top_losses

# History keys that are not per-epoch metrics to draw as curves.
_NOT_CURVES = {"stage", "learning_rate", "lr"}


def _figure(width: float, height: float):
    """A pyplot-free figure on the Agg canvas (no display, no global state)."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise ImportError(
            "imgclf.plot needs matplotlib, which is not installed. Install it with "
            "pip install 'imgclf[plot]' (or pip install matplotlib)."
        ) from exc
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path, dpi: int = 120):
    if path is not None:
        path = os.fspath(path)
        folder = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(folder):
            raise FileNotFoundError(
                f"Cannot save the picture to {path!r}: the folder {folder!r} does not exist."
            )
        fig.savefig(path, dpi=dpi)
    return fig


def _short(label, width: int = 18) -> str:
    text = str(label)
    return text if len(text) <= width else text[: width - 1] + "…"


# ------------------------------------------------------------ learning curves
def plot_learning_curves(history, *, best_epoch=None, path=None):
    """Plot training and validation curves, one panel per metric.

    Parameters
    ----------
    history : fitted estimator or dict
        An imgclf classifier (its ``history_`` is used) or a dict of metric
        name to per-epoch values, as in ``clf.history_``. A ``"stage"`` entry
        (one value per epoch, as recorded by a multi-stage fit such as
        :class:`imgclf.TransferClassifier`'s fine-tuning) draws a line where
        each new stage starts.
    best_epoch : int, optional
        The epoch to mark with a star on the validation curves, as an index
        into the history's lists. By default, for a fitted classifier, its
        ``best_epoch_`` (the epoch whose weights it kept); a dict alone says
        nothing about which weights were kept, so no epoch is marked.
    path : str or PathLike, optional
        Also write the figure there (PNG, SVG or PDF by the suffix).

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> from imgclf.plot import plot_learning_curves
    >>> history = {"loss": [0.9, 0.5, 0.4], "val_loss": [1.0, 0.6, 0.7],
    ...            "accuracy": [0.6, 0.8, 0.9], "val_accuracy": [0.5, 0.7, 0.7]}
    >>> fig = plot_learning_curves(history)  # or plot_learning_curves(clf, path="curves.png")
    >>> [ax.get_title() for ax in fig.axes]
    ['loss', 'accuracy']
    """
    if hasattr(history, "history_") or hasattr(history, "fit"):
        check_is_fitted(history, "history_")
        if best_epoch is None:
            best_epoch = getattr(history, "best_epoch_", None)
        history = history.history_
    if not isinstance(history, dict) or not history:
        raise InputError(
            f"plot_learning_curves needs a fitted imgclf classifier or a history dict, "
            f"got {type(history).__name__}."
        )
    metrics = [k for k in history if not k.startswith("val_") and k not in _NOT_CURVES]
    if not metrics:
        raise InputError(f"The history has no training metrics to plot (keys: {sorted(history)}).")
    fig = _figure(5.0 * len(metrics), 3.8)
    axes = fig.subplots(1, len(metrics), squeeze=False)[0]
    n_epochs = len(history[metrics[0]])
    epochs = np.arange(1, n_epochs + 1)
    boundaries = _stage_starts(history.get("stage"), n_epochs)
    best = None
    if best_epoch is not None and 0 <= best_epoch < n_epochs:
        best = int(best_epoch) + 1
    for ax, metric in zip(axes, metrics, strict=True):
        ax.plot(epochs, history[metric], marker="o", ms=3, label="training")
        val = history.get(f"val_{metric}")
        if val is not None and len(val) == n_epochs:
            ax.plot(epochs, val, marker="o", ms=3, label="validation")
            if best is not None:
                ax.plot([best], [val[best - 1]], "k*", ms=12, label=f"best (epoch {best})")
        for epoch, stage in boundaries:
            ax.axvline(epoch - 0.5, color="grey", ls="--", lw=1)
            ax.text(epoch - 0.4, 0.02, str(stage), transform=ax.get_xaxis_transform(), color="grey")
        ax.set_xlabel("epoch")
        ax.set_title(metric.replace("_", " "))
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
        if n_epochs < 15:
            ax.set_xticks(epochs)
    return _save(fig, path)


# ------------------------------------------------------------ lr_find
def plot_lr_find(result, ax=None, *, path=None):
    """Plot a learning-rate sweep: the smoothed loss against the rate (log
    scale), with the suggested rate marked.

    Parameters
    ----------
    result : imgclf.lrfind.LRFind
        What ``clf.lr_find(X, y)`` returned.
    ax : matplotlib.axes.Axes, optional
        Draw there; by default on a new figure.
    path : str or PathLike, optional
        Also write the figure there (PNG, SVG or PDF by the suffix).

    Returns
    -------
    matplotlib.figure.Figure
        The figure drawn on (``ax``'s when given).

    Examples
    --------
    >>> import numpy as np
    >>> from imgclf.lrfind import LRFind
    >>> from imgclf.plot import plot_lr_find
    >>> rates = np.geomspace(1e-5, 1, 5)
    >>> losses = np.array([2.3, 2.2, 1.5, 1.0, 4.0])
    >>> found = LRFind(rates, losses, losses, 1e-3, 2, True)  # or clf.lr_find(X, y)
    >>> fig = plot_lr_find(found)  # or plot_lr_find(found, path="lr.png")
    >>> fig.axes[0].get_xscale()
    'log'
    """
    from .lrfind import LRFind

    if not isinstance(result, LRFind):
        raise InputError(
            "plot_lr_find draws what clf.lr_find(X, y) returns (an imgclf.lrfind.LRFind), "
            f"got {type(result).__name__}."
        )
    if ax is None:
        fig = _figure(5.5, 3.8)
        ax = fig.add_subplot()
    else:
        fig = ax.figure
    ax.plot(result.learning_rates, result.losses, label="smoothed training loss")
    i = result.suggestion_index
    ax.plot(
        [result.suggestion],
        [result.losses[i]],
        "o",
        color="tab:red",
        ms=8,
        label=f"suggestion (valley): {result.suggestion:.2g}",
    )
    ax.set_xscale("log")
    ax.set_xlabel("learning rate")
    ax.set_ylabel("loss")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize="small")
    return _save(fig, path)


def plot_calibration(estimator, X, y, *, n_bins: int = 15, ax=None, path=None):
    """Reliability diagram: accuracy against confidence on ``X, y``.

    The test images are put in ``n_bins`` equal-width bins of confidence
    (their largest probability); each bin's bar is the share of its images
    predicted right, drawn against the diagonal a calibrated classifier
    follows. The title gives the expected calibration error (the bins' gaps
    weighted by their share of the images) and the estimator's
    ``temperature_`` when it has one.

    For a multi-label model (``estimator.multilabel_``) the diagram is
    pooled over all ``n_images x n_labels`` (image, label) pairs, each a
    yes/no prediction: its confidence is ``max(p, 1 - p)`` for the label's
    probability ``p``, and it is right when the answer at 0.5 (yes for
    ``p > 0.5``) matches whether the image has the label. The bars and the
    ECE are those of a binary classifier given the pairs, so one label
    dominating the pairs (usually "no") dominates the figure; the decision
    rule is 0.5, not ``thresholds_``, because the diagram judges the
    probabilities. For one curve per label, use
    ``sklearn.calibration.calibration_curve(Y[:, j], proba[:, j])``.

    Parameters
    ----------
    estimator : fitted classifier with ``predict_proba`` and ``classes_``
        An imgclf classifier, or any scikit-learn one.
    X : images or paths
        As ``estimator.predict_proba`` takes them (held-out images).
    y : array-like of shape (n,), or multi-label targets
        Their true labels; for a multi-label model a 0/1 indicator matrix
        (columns in ``classes_`` order) or a list of label collections.
    n_bins : int, default=15
        Number of confidence bins.
    ax : matplotlib.axes.Axes, optional
        Draw there; by default on a new figure.
    path : str or PathLike, optional
        Also write the figure there (PNG, SVG or PDF by the suffix).

    Returns
    -------
    matplotlib.figure.Figure
        The figure drawn on (``ax``'s when given).

    Raises
    ------
    imgclf.exceptions.InputError
        If a label of ``y`` is not among ``estimator.classes_``, ``y`` is
        multi-label for a single-label model (or the reverse), or
        ``n_bins`` is not an integer >= 1.
    """
    check_is_fitted(estimator)
    if isinstance(n_bins, bool) or not isinstance(n_bins, (int, np.integer)) or n_bins < 1:
        raise InputError(f"plot_calibration: n_bins={n_bins!r}; expected an integer >= 1.")
    truth = multilabel.tool_targets("plot_calibration", estimator, y, _length(X, y))
    if truth is not None:
        return _pooled_calibration(estimator, X, truth, n_bins, ax, path)
    y = np.asarray(y)
    columns = class_index(estimator.classes_, y)
    if (columns < 0).any():
        unknown = sorted({str(v) for v in y[columns < 0].tolist()})[:5]
        raise InputError(
            f"plot_calibration: labels {unknown} of y are not among the estimator's classes "
            f"{estimator.classes_.tolist()[:10]}."
        )
    proba = np.asarray(estimator.predict_proba(X))
    return _reliability_axes(
        estimator,
        ax,
        proba,
        columns,
        n_bins,
        path,
        xlabel="confidence (largest probability)",
        counted=f"{len(y)} images",
    )


def _length(X, y) -> int:
    """The number of images in ``X`` (of labels in ``y`` if ``X`` has no length)."""
    try:
        return len(X)
    except TypeError:
        return len(y)


def _pooled_calibration(estimator, X, truth, n_bins, ax, path):
    """The reliability diagram of a multi-label model: every (image, label)
    pair a yes/no prediction, the two probabilities ``1 - p`` and ``p``."""
    proba = np.asarray(estimator.predict_proba(X), dtype=np.float64)
    if proba.shape != truth.shape:
        raise InputError(
            f"plot_calibration: predict_proba gave shape {proba.shape} but y gives "
            f"{truth.shape[1]} labels for {len(truth)} images."
        )
    p = proba.ravel()
    pairs = np.stack([1 - p, p], axis=1)
    return _reliability_axes(
        estimator,
        ax,
        pairs,
        truth.ravel(),
        n_bins,
        path,
        xlabel="confidence (probability of the yes/no answer)",
        counted=f"{truth.shape[0]} images x {truth.shape[1]} labels, pooled",
    )


def _reliability_axes(estimator, ax, proba, columns, n_bins, path, *, xlabel, counted):
    """Draw the bars of :func:`plot_calibration`; ``columns`` the true column
    of each row of ``proba``."""
    from ._calibration import expected_calibration_error, reliability

    conf, acc, counts = reliability(proba, columns, n_bins)
    ece = expected_calibration_error(proba, columns, n_bins)
    if ax is None:
        fig = _figure(4.8, 4.8)
        ax = fig.add_subplot()
    else:
        fig = ax.figure
    edges = np.linspace(0, 1, n_bins + 1)
    filled = counts > 0
    ax.bar(
        edges[:-1][filled],
        acc[filled],
        width=1 / n_bins,
        align="edge",
        edgecolor="black",
        color="tab:blue",
        label="accuracy",
    )
    ax.plot(conf[filled], acc[filled], "o", color="tab:red", ms=4, label="mean confidence")
    ax.plot([0, 1], [0, 1], "--", color="gray", label="calibrated")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("accuracy")
    temperature = getattr(estimator, "temperature_", None)
    title = f"ECE {ece:.3f} ({counted}, {n_bins} bins)"
    if temperature is not None:
        title += f", T = {temperature:.2f}"
    ax.set_title(title, fontsize="medium")
    ax.legend(fontsize="small", loc="upper left")
    return _save(fig, path)


# TransferClassifier records its stages as 1.0 and 2.0 in history_["stage"].
_STAGE_NAMES = {1: "frozen backbone", 2: "fine-tune"}


def _stage_starts(stages, n_epochs: int) -> list[tuple[int, str]]:
    """(first epoch, stage name) for every stage after the first."""
    if stages is None or len(stages) != n_epochs:
        return []
    return [
        (i + 1, _STAGE_NAMES.get(stages[i], str(stages[i])))
        for i in range(1, n_epochs)
        if stages[i] != stages[i - 1]
    ]


# ----------------------------------------------------------- confusion matrix
def plot_confusion_matrix(y_true, y_pred, *, labels=None, normalize=None, path=None):
    """Plot a confusion matrix with scikit-learn's ``ConfusionMatrixDisplay``.

    Parameters
    ----------
    y_true, y_pred : array-like of shape (n,)
        True and predicted labels, e.g. ``y_test`` and ``clf.predict(X_test)``.
    labels : array-like, optional
        Row/column order, e.g. ``clf.classes_``; by default the sorted labels seen.
    normalize : {None, "true", "pred", "all"}, default=None
        As in :func:`sklearn.metrics.confusion_matrix`: ``"true"`` shows each
        row as fractions (per-class recall on the diagonal).
    path : str or PathLike, optional
        Also write the figure there.

    Returns
    -------
    matplotlib.figure.Figure

    Raises
    ------
    imgclf.exceptions.InputError
        If ``y_true`` or ``y_pred`` holds multi-label targets (a 0/1
        indicator matrix or label collections): a multi-label model has one
        2x2 matrix per label, which
        :func:`sklearn.metrics.multilabel_confusion_matrix` computes.

    Examples
    --------
    >>> from imgclf.plot import plot_confusion_matrix
    >>> fig = plot_confusion_matrix(["cat", "dog", "dog"], ["cat", "cat", "dog"])
    >>> fig.axes[0].get_title()
    'confusion matrix'
    """
    from sklearn.metrics import ConfusionMatrixDisplay

    for name, value in (("y_true", y_true), ("y_pred", y_pred)):
        if multilabel.is_multilabel(value):
            raise InputError(
                f"plot_confusion_matrix: {name} holds multi-label targets (an indicator "
                "matrix or label collections), and a confusion matrix needs one label per "
                "image. For a multi-label model use sklearn.metrics.multilabel_confusion_"
                "matrix(Y_true, Y_pred) (one 2x2 matrix per label, indicator matrices in "
                "classes_ order) or sklearn.metrics.classification_report(Y_true, Y_pred).",
                parameters=(name,),
            )
    if labels is None:
        labels = np.unique(np.concatenate([np.asarray(y_true), np.asarray(y_pred)]))
    n = len(labels)
    side = min(max(4.5, 0.45 * n + 3), 30)
    fig = _figure(side + 1, side)
    ax = fig.add_subplot()
    ConfusionMatrixDisplay.from_predictions(
        y_true,
        y_pred,
        labels=labels,
        display_labels=[_short(label) for label in labels],
        normalize=normalize,
        ax=ax,
        include_values=n <= 30,
        values_format=".2f" if normalize else "d",
        xticks_rotation="vertical" if n > 6 else "horizontal",
        colorbar=True,
    )
    ax.set_title("confusion matrix" + (f" (normalised by {normalize})" if normalize else ""))
    return _save(fig, path)


# ----------------------------------------------------------------- top losses
def _for_display(estimator, images: np.ndarray) -> np.ndarray:
    """Raw pixel units to 0-1, channel axis dropped for greyscale."""
    low, high = estimator.input_range_
    shown = np.clip((images - low) / ((high - low) or 1.0), 0, 1)
    return shown[..., 0] if shown.shape[-1] == 1 else shown


def _grid(n: int, ncols: int | None):
    """A figure with a grid of ``n`` image cells (about square unless
    ``ncols`` is given), each 2.3 x 2.6 inches to leave room for a
    three-line title; returns ``(figure, flat array of axes)``."""
    ncols = ncols or max(1, math.ceil(math.sqrt(n)))
    nrows = max(1, math.ceil(n / ncols))
    fig = _figure(2.3 * ncols, 2.6 * nrows)
    return fig, fig.subplots(nrows, ncols, squeeze=False).ravel()


def plot_top_losses(
    estimator, X, y, *, n: int = 16, proba=None, ncols: int | None = None, path=None
):
    """A grid of the worst mistakes: each image with its true and predicted
    label, their probabilities and the loss (wrong predictions titled in red).

    For a multi-label model the images are those with the largest binary
    cross-entropy averaged over labels (see
    :func:`imgclf.explain.top_losses`), each titled with three lines: the
    given label set, the predicted one (each label's probability against
    ``estimator.thresholds_``; ``(none)`` for an empty set), and the loss
    followed by the probability of the image's worst-explained label (the
    one with the largest loss), as in ``loss 0.91, p(dog) 0.07``: low for a
    given label missed, high for one the image lacks. A title is red when
    the two sets differ.

    Parameters
    ----------
    estimator : fitted imgclf classifier
        The classifier whose mistakes are drawn.
    X : images or paths
        As accepted by ``estimator.predict``.
    y : array-like of shape (n,), or multi-label targets
        True labels; for a multi-label model a 0/1 indicator matrix
        (columns in ``classes_`` order) or a list of label collections.
    n : int, default=16
        Number of images shown.
    proba : array-like, optional
        ``estimator.predict_proba(X)`` if already computed (saves a pass).
    ncols : int, optional
        Columns of the grid (about square by default).
    path : str or PathLike, optional
        Also write the figure there.

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from imgclf import CNNClassifier
    >>> X, y = load_digits(return_X_y=True)
    >>> clf = CNNClassifier(epochs=1, filters=4, random_state=0).fit(X[:100], y[:100])
    >>> from imgclf.plot import plot_top_losses
    >>> fig = plot_top_losses(clf, X[100:150], y[100:150], n=4)
    >>> len(fig.axes)
    4
    """
    index, losses, proba = top_losses(estimator, X, y, n=n, proba=proba)
    images = _for_display(estimator, estimator.network_input(_safe_indexing(X, index)))
    fig, axes = _grid(len(index), ncols)
    if getattr(estimator, "multilabel_", False):
        truth = multilabel.indicator(estimator, y, len(proba))
        _title_label_sets(estimator, axes, index, losses, images, truth, proba)
        for ax in axes:
            ax.axis("off")
        fig.suptitle(f"top {len(index)} losses (worst first, mean binary cross-entropy)")
        return _save(fig, path)
    y = np.asarray(y)
    classes = estimator.classes_.tolist()
    true_columns = class_index(estimator.classes_, y[index])
    for ax, i, column, loss, image in zip(axes, index, true_columns, losses, images, strict=False):
        pred = int(np.argmax(proba[i]))
        true_label = y[i]
        p_true = proba[i, column] if column >= 0 else 0.0
        ax.imshow(image, cmap="gray" if image.ndim == 2 else None, vmin=0, vmax=1)
        wrong = classes[pred] != true_label
        ax.set_title(
            f"true {_short(true_label, 12)} ({p_true:.2f})\n"
            f"pred {_short(classes[pred], 12)} ({proba[i, pred]:.2f})\nloss {loss:.2f}",
            fontsize="small",
            color="tab:red" if wrong else "black",
        )
    for ax in axes:
        ax.axis("off")
    fig.suptitle(f"top {len(index)} losses (worst first)")
    return _save(fig, path)


def _title_label_sets(estimator, axes, index, losses, images, truth, proba) -> None:
    """Multi-label top losses: each image titled with its given and predicted
    label sets and the label whose loss is the largest, with its probability."""
    classes = estimator.classes_.tolist()
    pred = multilabel.predict(estimator, proba)
    per_label = multilabel.bce(truth, proba)
    for ax, i, loss, image in zip(axes, index, losses, images, strict=False):
        worst = int(np.argmax(per_label[i]))
        ax.imshow(image, cmap="gray" if image.ndim == 2 else None, vmin=0, vmax=1)
        ax.set_title(
            f"given {_short(multilabel.label_set(classes, truth[i]), 16)}\n"
            f"pred {_short(multilabel.label_set(classes, pred[i]), 17)}\n"
            f"loss {loss:.2f}, p({_short(classes[worst], 8)}) {proba[i, worst]:.2f}",
            fontsize="small",
            color="tab:red" if (pred[i] != truth[i]).any() else "black",
        )


# --------------------------------------------------------------- label issues
def _pixels(X, index, paths) -> list[np.ndarray]:
    """The images at ``index`` in 0-1 for ``imshow``: decoded from ``paths``
    when given, else taken from the array ``X`` (flattened square rows
    reshaped; uint8 divided by 255, other types stretched over the range of
    the images shown); greyscale as 2-D, alpha dropped."""
    if paths is not None:
        from ._decode import pillow_pixels

        images = [pillow_pixels(p)[..., :3] / 255.0 for p in paths]
    else:
        shown = np.asarray(_safe_indexing(X, index))
        if shown.ndim == 2:  # flattened: square greyscale (digits' 64 -> 8x8) or a strip
            side = math.isqrt(shown.shape[1])
            shape = (side, side) if side * side == shown.shape[1] else (1, shown.shape[1])
            shown = shown.reshape(len(shown), *shape)
        if shown.dtype == np.uint8:
            shown = shown / 255.0
        elif shown.size:
            low, high = float(np.min(shown)), float(np.max(shown))
            shown = (shown - low) / ((high - low) or 1.0)
        images = list(shown[..., :3] if shown.ndim == 4 else shown)
    return [
        np.clip(im[..., 0] if im.ndim == 3 and im.shape[-1] == 1 else im, 0, 1) for im in images
    ]


def plot_label_issues(issues, X=None, *, n: int = 16, ncols: int | None = None, path=None):
    """A grid of the images whose label is suspected wrong, worst first, each
    titled with its given label, the suggested one (with its out-of-fold
    probability) and the label quality score.

    Parameters
    ----------
    issues : imgclf.audit.LabelIssues
        What :func:`imgclf.find_label_issues` returned.
    X : images or paths, optional
        The ``X`` given to :func:`~imgclf.find_label_issues`. Needed for
        arrays; with paths the result names the files, which are read again.
    n : int, default=16
        Number of images shown (the ``n`` worst).
    ncols : int, optional
        Columns of the grid (about square by default).
    path : str or PathLike, optional
        Also write the figure there.

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> import numpy as np
    >>> from imgclf import find_label_issues
    >>> from imgclf.plot import plot_label_issues
    >>> X = np.zeros((8, 4, 4), dtype=np.uint8)
    >>> y = np.array(["cat"] * 4 + ["dog"] * 4)
    >>> pred_probs = np.array([[0.9, 0.1]] * 3 + [[0.05, 0.95]] + [[0.1, 0.9]] * 4)
    >>> issues = find_label_issues(None, X, y, pred_probs=pred_probs)
    >>> fig = plot_label_issues(issues, X)  # or path="suspects.png"
    >>> fig.axes[0].get_title().splitlines()
    ['given cat', 'suggested dog (0.95)', 'quality 0.05']
    """
    from .audit import LabelIssues

    if not isinstance(issues, LabelIssues):
        raise InputError(
            "plot_label_issues draws what imgclf.find_label_issues returns (a LabelIssues), "
            f"got {type(issues).__name__}."
        )
    if issues.path is None:
        if X is None:
            raise InputError(
                "plot_label_issues needs X, the images given to find_label_issues (the "
                "result names files only when X was a list of paths)."
            )
        if len(X) != len(issues.pred_probs):
            raise InputError(
                f"plot_label_issues: X has {len(X)} images but the labels checked were "
                f"{len(issues.pred_probs)}; give the X given to find_label_issues."
            )
    shown = min(n, len(issues))
    fig, axes = _grid(max(shown, 1), ncols)
    paths = None if issues.path is None else issues.path[:shown]
    images = _pixels(X, issues.index[:shown], paths)
    for k, (ax, image) in enumerate(zip(axes, images, strict=False)):
        ax.imshow(image, cmap="gray" if image.ndim == 2 else None, vmin=0, vmax=1)
        given, suggested = issues.given_label[k], issues.suggested_label[k]
        ax.set_title(
            f"given {_short(given, 12)}\nsuggested {_short(suggested, 12)} "
            f"({issues.suggested_proba[k]:.2f})\nquality {issues.label_quality[k]:.2f}",
            fontsize="small",
            color="tab:red" if given != suggested else "black",
        )
    for ax in axes:
        ax.axis("off")
    if not shown:
        axes[0].text(0.5, 0.5, "no label issues found", ha="center", va="center")
    title = f"{shown} of {len(issues)} suspected label errors (worst first)"
    fig.suptitle(title if len(issues) else "no suspected label errors")
    return _save(fig, path)


# -------------------------------------------------------------------- Grad-CAM
def plot_grad_cam(estimator, X, *, layer=None, alpha: float = 0.45, ncols=None, path=None):
    """Each image beside its Grad-CAM heat map overlay, titled with the prediction.

    Parameters
    ----------
    estimator : fitted imgclf classifier
        The classifier to explain.
    X : images or paths
        A handful of images (each takes one cell pair).
    layer : str, optional
        See :func:`imgclf.explain.grad_cam`.
    alpha : float, default=0.45
        Opacity of the heat map over the image.
    ncols : int, optional
        Image pairs per row.
    path : str or PathLike, optional
        Also write the figure there.

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from imgclf import CNNClassifier
    >>> X, y = load_digits(return_X_y=True)
    >>> clf = CNNClassifier(epochs=1, filters=4, random_state=0).fit(X[:100], y[:100])
    >>> from imgclf.plot import plot_grad_cam
    >>> fig = plot_grad_cam(clf, X[:2])  # two images, each beside its heat map
    >>> len(fig.axes)
    4
    """
    heat, proba = grad_cam(estimator, X, layer=layer)
    images = _for_display(estimator, estimator.network_input(X))
    ncols = ncols or min(4, len(images))
    nrows = max(1, math.ceil(len(images) / ncols))
    fig = _figure(4.2 * ncols, 2.3 * nrows)
    axes = fig.subplots(nrows, 2 * ncols, squeeze=False)
    classes = estimator.classes_
    for k, (image, cam, p) in enumerate(zip(images, heat, proba, strict=True)):
        left, right = axes[k // ncols, 2 * (k % ncols)], axes[k // ncols, 2 * (k % ncols) + 1]
        cmap = "gray" if image.ndim == 2 else None
        left.imshow(image, cmap=cmap, vmin=0, vmax=1)
        right.imshow(image, cmap=cmap, vmin=0, vmax=1)
        right.imshow(cam, cmap="jet", alpha=alpha, vmin=0, vmax=1, interpolation="bilinear")
        pred = int(np.argmax(p))
        left.set_title(f"pred {_short(classes[pred], 14)} ({p[pred]:.2f})", fontsize="small")
        # An all-zero map: nothing in the feature map argues for the class
        # (often an untrained network, or a 1x1 feature map at a small size).
        right.set_title("Grad-CAM" if cam.max() > 0 else "Grad-CAM (no signal)", fontsize="small")
    for ax in axes.ravel():
        ax.axis("off")
    return _save(fig, path)


__all__ = [
    "grad_cam",
    "plot_calibration",
    "plot_confusion_matrix",
    "plot_grad_cam",
    "plot_label_issues",
    "plot_learning_curves",
    "plot_top_losses",
    "top_losses",
]
