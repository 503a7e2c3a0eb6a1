"""Explaining a fitted classifier's predictions: its worst mistakes
(:func:`top_losses`) and where in an image the evidence lies (:func:`grad_cam`).

Computation only: no matplotlib (:mod:`imgclf.plot` draws these), and only
public Keras API. Grad-CAM runs the network's top-level layers one after the
other under a gradient tape, so it reads the feature map of any layer, or of
a layer inside a nested backbone, without taking the model's graph apart;
that needs the top-level layers to form a chain, as every imgclf network's do
(checked on the first batch).
"""

from __future__ import annotations

import numpy as np
from sklearn.utils.validation import check_is_fitted

import imgclf._multilabel as multilabel

from ._backend import get_keras, get_tf
from ._validation import class_index as columns_of
from .exceptions import InputError


# ----------------------------------------------------------------- top losses
def top_losses(estimator, X, y, *, n: int = 16, proba=None):
    """Indices of the ``n`` samples with the highest loss, worst first.

    The loss is the cross-entropy ``-log p(true class)``; a label the model
    was never fitted on counts as probability 0.

    For a multi-label model (``estimator.multilabel_``) the loss of an image
    is its binary cross-entropy averaged over the labels (the mean, as
    Keras's ``binary_crossentropy`` averages; ``p`` clipped to
    ``[1e-12, 1 - 1e-12]``): ``-log p`` for each label the image has and
    ``-log(1 - p)`` for each it has not, ``p`` the label's column of
    ``predict_proba``. The images are ranked by it, so an
    image is high both for a given label the model missed and for a label it
    is sure of that the image lacks. ``y`` is then the image's label set, as
    ``fit`` took it: a 0/1 indicator matrix or a list of label collections.

    Parameters
    ----------
    estimator : fitted imgclf classifier
        The classifier whose mistakes are looked for.
    X : images or paths
        As accepted by ``estimator.predict``.
    y : array-like of shape (n_samples,), or multi-label targets
        True labels; for a multi-label model a 0/1 indicator matrix of shape
        ``(n_samples, n_labels)`` (columns in ``classes_`` order) or a list of
        label collections.
    n : int, default=16
        How many to return.
    proba : array-like of shape (n_samples, n_classes), optional
        ``estimator.predict_proba(X)`` if already computed (saves a pass).

    Returns
    -------
    index : ndarray of int
        Positions in ``X`` / ``y``.
    losses : ndarray of float
        Their losses (multi-label: the mean binary cross-entropy over labels).
    proba : ndarray of shape (len(X), n_classes)
        ``predict_proba(X)`` (the given ``proba`` if passed); for a
        multi-label model each label's probability, so the predicted label
        set of image ``i`` is ``proba[i] >= estimator.thresholds_``.

    Raises
    ------
    imgclf.exceptions.InputError
        If ``X`` (or ``proba``) and ``y`` differ in length, ``y`` holds
        multi-label targets for a single-label model or one label per image
        for a multi-label one, or (multi-label) a label of ``y`` is not
        among ``classes_``.

    See Also
    --------
    imgclf.plot.plot_top_losses : draws them.

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from imgclf import CNNClassifier
    >>> X, y = load_digits(return_X_y=True)
    >>> clf = CNNClassifier(epochs=1, filters=4, random_state=0).fit(X[:100], y[:100])
    >>> from imgclf.explain import top_losses
    >>> index, losses, proba = top_losses(clf, X[100:150], y[100:150], n=5)
    >>> index.shape, proba.shape, bool(losses[0] >= losses[-1])
    ((5,), (50, 10), True)
    """
    check_is_fitted(estimator)
    proba = estimator.predict_proba(X) if proba is None else np.asarray(proba)
    truth = multilabel.tool_targets("top_losses", estimator, y, len(proba))
    if truth is not None:
        if proba.shape != truth.shape:
            raise InputError(
                f"top_losses: proba has shape {proba.shape} but y gives {truth.shape[1]} labels "
                f"for {len(truth)} images; pass proba=estimator.predict_proba(X)."
            )
        losses = multilabel.bce(truth, proba).mean(axis=1)
        order = np.argsort(-losses, kind="stable")[:n]
        return order, losses[order], proba
    y = np.asarray(y)
    if len(proba) != len(y):
        raise InputError(f"X/proba has {len(proba)} samples but y has {len(y)}.")
    column = columns_of(estimator.classes_, y)
    p_true = np.where(column >= 0, proba[np.arange(len(y)), np.maximum(column, 0)], 0.0)
    losses = -np.log(np.maximum(p_true, 1e-12))
    order = np.argsort(-losses, kind="stable")[:n]
    return order, losses[order], proba


# -------------------------------------------------------------------- Grad-CAM
def _is_nested(layer) -> bool:
    return hasattr(layer, "layers") and hasattr(layer, "inputs")


def _is_conv(layer) -> bool:
    return "Conv" in type(layer).__name__ or (
        _is_nested(layer) and any(_is_conv(inner) for inner in layer.layers)
    )


def _rank4(layer) -> bool:
    # A nested model's own output has the shape of its output in the outer model.
    try:
        return len(layer.output.shape) == 4
    except (AttributeError, ValueError):
        return False


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


def _find_target(chain, layer):
    """``(position in chain, inner layer or None)``: the top-level layer whose
    feature map is used, and the layer inside it when it is a nested model (a
    backbone) and the feature map is inside."""
    if isinstance(layer, str):
        for k, outer in enumerate(chain):
            if outer.name == layer:
                return k, None
        for k, outer in enumerate(chain):
            if _is_nested(outer):
                try:
                    return k, outer.get_layer(layer)
                except ValueError:
                    continue
        raise InputError(
            f"Grad-CAM layer {layer!r} is not in the model; its layers are "
            f"{[item.name for item in chain]}."
        )
    # Walking back from the output, the first convolutional block met is the
    # last one: a nested backbone (possibly with its own pooling inside, then
    # the feature map is looked for within it), or a flat layer with a 4-D
    # output that has a convolution at or before it. A frozen 1x1 convolution
    # that only scales pixels before a backbone is never reached first.
    for k in range(len(chain) - 1, -1, -1):
        candidate = chain[k]
        if _is_nested(candidate) and _is_conv(candidate):
            if _rank4(candidate):
                return k, None
            inner = _last_feature_layer(candidate.layers)
            if inner is not None:
                return k, inner
        elif _rank4(candidate) and any(_is_conv(before) for before in chain[: k + 1]):
            return k, None
    raise InputError(
        "Grad-CAM needs a convolutional layer, and the model has none with a 4-D output. "
        "Pass layer='name' to choose one."
    )


def _forward(model, layer):
    """``(run, name)``: ``run(x)`` returns ``(feature map, logits, probabilities)``
    computed layer by layer, so a gradient tape sees the feature map."""
    keras = get_keras()
    chain = [item for item in model.layers if not isinstance(item, keras.layers.InputLayer)]
    k, inner = _find_target(chain, layer)
    target = chain[k]
    last = chain[-1]
    # Scores before the softmax: the gradient of a saturated probability vanishes.
    softmax_dense = (
        isinstance(last, keras.layers.Dense)
        and getattr(last.activation, "__name__", "") == "softmax"
    )
    inside = None
    if inner is not None:
        inside = keras.Model(target.inputs, [inner.output, target.outputs[0]])

    # A separate softmax (after the temperature): its input is the scores.
    softmax_layer = isinstance(last, keras.layers.Softmax)

    def run(x):
        h = x
        feats = None
        for position, item in enumerate(chain):
            if position == len(chain) - 1 and softmax_dense:
                logits = keras.ops.matmul(h, last.kernel) + last.bias
                return feats, logits, keras.ops.softmax(logits)
            if position == len(chain) - 1 and softmax_layer:
                return feats, h, item(h, training=False)
            if position == k and inside is not None:
                feats, h = inside(h, training=False)
            else:
                h = item(h, training=False)
                if position == k:
                    feats = h
        return feats, h, h

    name = target.name if inner is None else f"{target.name}/{inner.name}"
    return run, name


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
        Images per forward and backward pass.

    Returns
    -------
    heatmaps : ndarray of shape (n, height, width)
        Values in 0-1 at ``estimator.image_size_``.
    proba : ndarray of shape (n, n_classes)
        The model's probabilities for the same images.

    Raises
    ------
    imgclf.exceptions.InputError
        If ``layer`` is not in the model, the model has no convolutional
        feature map, or its top-level layers do not form a chain.

    See Also
    --------
    imgclf.plot.plot_grad_cam : draws them over the images.

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from imgclf import CNNClassifier
    >>> X, y = load_digits(return_X_y=True)
    >>> clf = CNNClassifier(epochs=1, filters=4, random_state=0).fit(X[:100], y[:100])
    >>> from imgclf.explain import grad_cam
    >>> heatmaps, proba = grad_cam(clf, X[:3])
    >>> heatmaps.shape, proba.shape
    ((3, 8, 8), (3, 10))
    >>> bool(heatmaps.min() >= 0 and heatmaps.max() <= 1)
    True
    """
    from ._decode import resize

    check_is_fitted(estimator)
    tf = get_tf()
    images = estimator.network_input(X)
    run, _ = _forward(estimator.model_, layer)
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
        if start == 0:
            expected = np.asarray(estimator.model_(x, training=False))
            if not np.allclose(np.asarray(proba), expected, atol=1e-4):
                raise InputError(
                    "Grad-CAM runs the network's top-level layers one after the other, but "
                    "this network's layers do not form a chain (they branch or merge at the "
                    "top level). Wrap the branching part in a nested keras.Model."
                )
        grads = tape.gradient(score, feats)
        weights = tf.reduce_mean(grads, axis=(1, 2), keepdims=True)
        cam = tf.nn.relu(tf.reduce_sum(weights * feats, axis=-1))[..., None]
        cam = resize(tf, cam, estimator.image_size_)[..., 0]
        peak = tf.reduce_max(cam, axis=(1, 2), keepdims=True)
        maps.append((cam / tf.maximum(peak, 1e-12)).numpy())
        probas.append(np.asarray(proba))
    return np.concatenate(maps), np.concatenate(probas).astype(np.float64)


__all__ = ["grad_cam", "top_losses"]
