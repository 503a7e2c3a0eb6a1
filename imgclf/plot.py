"""Pictures of a fitted classifier: learning curves, confusion matrix, the worst
mistakes, and Grad-CAM heat maps.

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

from .exceptions import InputError

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
def plot_learning_curves(history, *, path=None):
    """Plot training and validation curves, one panel per metric.

    Parameters
    ----------
    history : fitted estimator or dict
        An imgclf classifier (its ``history_`` is used) or a dict of metric
        name to per-epoch values, as in ``clf.history_``. A ``"stage"`` entry
        (one value per epoch, as recorded by a multi-stage fit such as
        :class:`imgclf.TransferClassifier`'s fine-tuning) draws a line where
        each new stage starts.
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
    if "val_loss" in history and len(history["val_loss"]) == n_epochs:
        best = int(np.nanargmin(history["val_loss"])) + 1
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

    Examples
    --------
    >>> from imgclf.plot import plot_confusion_matrix
    >>> fig = plot_confusion_matrix(["cat", "dog", "dog"], ["cat", "cat", "dog"])
    >>> fig.axes[0].get_title()
    'confusion matrix'
    """
    from sklearn.metrics import ConfusionMatrixDisplay

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
def _model_inputs(estimator, X) -> np.ndarray:
    """``X`` as the network sees it: float32 ``(n, h, w, c)`` in raw pixel units."""
    from ._validation import check_images

    images = check_images(estimator, X, reset=False)
    kwargs = estimator._inputs(images)
    x = kwargs["x"]
    if isinstance(x, np.ndarray):
        return x.astype(np.float32)
    return np.concatenate([batch[0].numpy() for batch in x]).astype(np.float32)


def _for_display(estimator, images: np.ndarray) -> np.ndarray:
    """Raw pixel units to 0-1, channel axis dropped for greyscale."""
    low, high = estimator.input_range_
    shown = np.clip((images - low) / ((high - low) or 1.0), 0, 1)
    return shown[..., 0] if shown.shape[-1] == 1 else shown


def top_losses(estimator, X, y, *, n: int = 16, proba=None):
    """Indices of the ``n`` samples with the highest loss, worst first.

    The loss is the cross-entropy ``-log p(true class)``; a label the model
    was never fitted on counts as probability 0.

    Returns
    -------
    index : ndarray of int
        Positions in ``X`` / ``y``.
    losses : ndarray of float
        Their losses.
    proba : ndarray of shape (len(X), n_classes)
        ``predict_proba(X)`` (the given ``proba`` if passed).

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from imgclf import CNNClassifier
    >>> X, y = load_digits(return_X_y=True)
    >>> clf = CNNClassifier(epochs=1, filters=4, random_state=0).fit(X[:100], y[:100])
    >>> from imgclf.plot import top_losses
    >>> index, losses, proba = top_losses(clf, X[100:150], y[100:150], n=5)
    >>> index.shape, proba.shape, bool(losses[0] >= losses[-1])
    ((5,), (50, 10), True)
    """
    check_is_fitted(estimator)
    y = np.asarray(y)
    proba = estimator.predict_proba(X) if proba is None else np.asarray(proba)
    if len(proba) != len(y):
        raise InputError(f"X/proba has {len(proba)} samples but y has {len(y)}.")
    position = {label: i for i, label in enumerate(estimator.classes_.tolist())}
    true_idx = np.array([position.get(label, -1) for label in y.tolist()])
    p_true = np.where(true_idx >= 0, proba[np.arange(len(y)), np.maximum(true_idx, 0)], 0.0)
    losses = -np.log(np.maximum(p_true, 1e-12))
    order = np.argsort(-losses, kind="stable")[:n]
    return order, losses[order], proba


def plot_top_losses(
    estimator, X, y, *, n: int = 16, proba=None, ncols: int | None = None, path=None
):
    """A grid of the worst mistakes: each image with its true and predicted
    label, their probabilities and the loss (wrong predictions titled in red).

    Parameters
    ----------
    estimator : fitted imgclf classifier
    X : images or paths
        As accepted by ``estimator.predict``.
    y : array-like of shape (n,)
        True labels.
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
    y = np.asarray(y)
    images = _for_display(estimator, _model_inputs(estimator, _safe_indexing(X, index)))
    ncols = ncols or max(1, math.ceil(math.sqrt(len(index))))
    nrows = max(1, math.ceil(len(index) / ncols))
    fig = _figure(2.3 * ncols, 2.6 * nrows)
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    classes = estimator.classes_.tolist()
    for ax, i, loss, image in zip(axes, index, losses, images, strict=False):
        pred = int(np.argmax(proba[i]))
        true_label = y[i]
        p_true = proba[i, classes.index(true_label)] if true_label in classes else 0.0
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


# -------------------------------------------------------------------- Grad-CAM
def _outer_output(layer):
    """The tensor a layer produced in the model that contains it. For a nested
    model, ``layer.output`` is its own inner output, not the outer graph's."""
    return layer._inbound_nodes[0].output_tensors[0]


def _outer_input(layer):
    return layer._inbound_nodes[0].input_tensors[0]


def _is_nested(layer) -> bool:
    return hasattr(layer, "layers") and hasattr(layer, "inputs")


def _is_conv(layer) -> bool:
    return "Conv" in type(layer).__name__ or (
        _is_nested(layer) and any(_is_conv(inner) for inner in layer.layers)
    )


def _rank4(layer, nested_outer: bool = True) -> bool:
    try:
        tensor = _outer_output(layer) if nested_outer and _is_nested(layer) else layer.output
    except (AttributeError, IndexError, ValueError):
        return False
    return len(tensor.shape) == 4


def _last_feature_layer(layers):
    """The last layer with a 4-D output after a convolution (so not the input
    scaling or augmentation): the last conv block's activated output, where
    Grad-CAM is usually taken."""
    seen_conv = [i for i, layer in enumerate(layers) if _is_conv(layer)]
    if not seen_conv:
        return None
    for layer in reversed(layers[seen_conv[0] :]):
        if _rank4(layer):
            return layer
    return None


def _find_target(model, layer):
    """Return ``(outer, inner)``: the top-level layer, and the layer inside it
    when it is a nested model (a backbone) and the feature map is inside."""
    if isinstance(layer, str):
        for outer in model.layers:
            if outer.name == layer:
                return outer, None
        for outer in model.layers:
            if _is_nested(outer):
                try:
                    return outer, outer.get_layer(layer)
                except ValueError:
                    continue
        raise InputError(
            f"Grad-CAM layer {layer!r} is not in the model; its layers are "
            f"{[item.name for item in model.layers]}."
        )
    # Walking back from the output, the first convolutional block met is the
    # last one: a nested backbone (possibly with its own pooling inside, then
    # the feature map is looked for within it), or a flat layer with a 4-D
    # output that has a convolution at or before it. A frozen 1x1 convolution
    # that only scales pixels before a backbone is never reached first.
    layers = model.layers
    for k in range(len(layers) - 1, -1, -1):
        candidate = layers[k]
        if _is_nested(candidate) and _is_conv(candidate):
            if _rank4(candidate):
                return candidate, None
            inner = _last_feature_layer(candidate.layers)
            if inner is not None:
                return candidate, inner
        elif _rank4(candidate) and any(_is_conv(before) for before in layers[: k + 1]):
            return candidate, None
    raise InputError(
        "Grad-CAM needs a convolutional layer, and the model has none with a 4-D output. "
        "Pass layer='name' to choose one."
    )


def _gradcam_parts(model, layer):
    """Functions ``x -> (feature map, class scores)`` the tape can watch."""
    from ._backend import get_keras

    keras = get_keras()
    outer, inner = _find_target(model, layer)
    last = model.layers[-1]
    softmax_dense = (
        isinstance(last, keras.layers.Dense)
        and getattr(last.activation, "__name__", "") == "softmax"
    )
    # Scores before the softmax: the gradient of a saturated probability vanishes.
    head = last.input if softmax_dense else model.outputs[0]

    def scores(h):
        # (logits, probabilities)
        if softmax_dense:
            logits = h @ last.kernel + last.bias
            return logits, keras.ops.softmax(logits)
        return h, h

    if inner is None:
        feature = _outer_output(outer) if _is_nested(outer) else outer.output
        both = keras.Model(model.inputs, [feature, head])

        def run(x):
            feats, h = both(x, training=False)
            return (feats, *scores(h))

        return run, outer.name

    before = keras.Model(model.inputs, _outer_input(outer))
    inside = keras.Model(outer.inputs, [inner.output, outer.outputs[0]])
    between = _outer_output(outer)
    # The backbone may feed the classifier directly (its own pooling inside).
    after = (lambda t, training: t) if between is head else keras.Model(between, head)

    def run(x):
        feats, out = inside(before(x, training=False), training=False)
        return (feats, *scores(after(out, training=False)))

    return run, f"{outer.name}/{inner.name}"


def grad_cam(estimator, X, *, layer=None, class_index=None, batch_size: int = 32):
    """Grad-CAM heat maps: where in each image the evidence for a class lies.

    Parameters
    ----------
    estimator : fitted imgclf classifier
        A :class:`imgclf.CNNClassifier` or :class:`imgclf.TransferClassifier`
        (whose backbone is a model nested in ``model_``).
    X : images or paths
        As accepted by ``estimator.predict``.
    layer : str, optional
        Name of the layer whose feature map is used, at the top level of
        ``estimator.model_`` or inside its backbone. By default the last
        convolutional feature map.
    class_index : int or array of int, optional
        Column of ``classes_`` to explain per image; by default the predicted class.
    batch_size : int, default=32

    Returns
    -------
    heatmaps : ndarray of shape (n, height, width)
        Values in 0-1 at ``estimator.image_size_``.
    proba : ndarray of shape (n, n_classes)
        The model's probabilities for the same images.

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from imgclf import CNNClassifier
    >>> X, y = load_digits(return_X_y=True)
    >>> clf = CNNClassifier(epochs=1, filters=4, random_state=0).fit(X[:100], y[:100])
    >>> from imgclf.plot import grad_cam
    >>> heatmaps, proba = grad_cam(clf, X[:3])
    >>> heatmaps.shape, proba.shape
    ((3, 8, 8), (3, 10))
    >>> bool(heatmaps.min() >= 0 and heatmaps.max() <= 1)
    True
    """
    check_is_fitted(estimator)
    from ._backend import get_tf

    tf = get_tf()
    images = _model_inputs(estimator, X)
    run, _ = _gradcam_parts(estimator.model_, layer)
    maps, probas = [], []
    for start in range(0, len(images), batch_size):
        x = tf.constant(images[start : start + batch_size])
        with tf.GradientTape() as tape:
            feats, logits, proba = run(x)
            chosen = (
                tf.argmax(logits, axis=1)
                if class_index is None
                else tf.constant(
                    np.broadcast_to(class_index, len(images))[start : start + len(x)],
                    tf.int64,
                )
            )
            score = tf.gather(logits, chosen, axis=1, batch_dims=1)
        grads = tape.gradient(score, feats)
        weights = tf.reduce_mean(grads, axis=(1, 2), keepdims=True)
        cam = tf.nn.relu(tf.reduce_sum(weights * feats, axis=-1))[..., None]
        cam = tf.image.resize(cam, estimator.image_size_, method="bilinear")[..., 0]
        peak = tf.reduce_max(cam, axis=(1, 2), keepdims=True)
        maps.append((cam / tf.maximum(peak, 1e-12)).numpy())
        probas.append(np.asarray(proba))
    return np.concatenate(maps), np.concatenate(probas).astype(np.float64)


def plot_grad_cam(estimator, X, *, layer=None, alpha: float = 0.45, ncols=None, path=None):
    """Each image beside its Grad-CAM heat map overlay, titled with the prediction.

    Parameters
    ----------
    estimator : fitted imgclf classifier
    X : images or paths
        A handful of images (each takes one cell pair).
    layer : str, optional
        See :func:`grad_cam`.
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
    images = _for_display(estimator, _model_inputs(estimator, X))
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
    "plot_confusion_matrix",
    "plot_grad_cam",
    "plot_learning_curves",
    "plot_top_losses",
    "top_losses",
]
