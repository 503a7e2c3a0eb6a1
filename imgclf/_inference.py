"""Prediction: the estimators' ``predict``, ``predict_proba`` and
``network_input`` (:class:`PredictMixin`), a traced network call in place of
``model.predict`` for a few images, and test-time augmentation.

``keras.Model.predict`` builds a dataset, an iterator and a step loop on every
call: about 35 ms here, eight times what calling a small network on one image
costs. A few images are better served by one traced call of the network
(:func:`traced_predictor`), a ``tf.function`` with a relaxed batch dimension
so that every batch size reuses the same graph. It is built on first use,
once per network and set of views, and kept in a table keyed weakly by the
network: it goes away with the network (each fit builds a new one), and never
sits on the estimator, so pickling and ``sklearn.base.clone`` never see it.

Prediction runs in its own batch size (:func:`inference_batch_size`), not
the training one: a forward pass keeps no activations for a backward one, so
larger batches fit the CPU's caches, and up to a point each costs less per
image. ``transform`` (:meth:`PredictMixin.transform`) runs the same way, on
the network up to its feature layer (:func:`feature_model`).

Test-time augmentation (fastai's ``tta``) averages the class probabilities
over the image as given and a few fixed views of it (:func:`tta_views`):
horizontal flips when the training augmentation flipped, then shifts by a
few pixels (reflected at the border) in the four directions and the four
diagonals.
"""

from __future__ import annotations

import weakref
from typing import NamedTuple

import numpy as np
from sklearn.metrics import accuracy_score
from sklearn.utils.validation import check_is_fitted

import imgclf._decode as decode
import imgclf._multilabel as multilabel

from ._backend import get_keras, get_tf
from ._netparts import FEATURES_LAYER, part
from ._pathargs import short_repr
from ._validation import Images, check_images, check_predict_range, check_targets, label_kind
from .exceptions import InputError

#: Array inputs of up to this many images take the traced call instead of
#: ``model.predict``; larger ones, and file paths, keep the tf.data pipeline.
DIRECT_CALL_MAX_IMAGES = 512

#: Prediction batches hold about this many pixels (height x width): measured with ``model.predict`` on 10,000 images (CPU
#: time, medians of 3, loaded machine), the default CNN at 28x28 was fastest
#: at 512 images (2.81 s; 128: 2.99 s, 32: 4.43 s, 2048: 2.88 s) and
#: MobileNetV2 at 96x96 at 32 (7.96 s per 2,048 images; 16: 8.79 s, 128:
#: 9.70 s, 512: 9.79 s): the best batch shrinks as the images grow, about
#: as this budget says (``benchmarks/bench_predict.py --scan``).
INFERENCE_PIXELS = 2**19
#: Bounds of the prediction batch.
INFERENCE_BATCH_MIN, INFERENCE_BATCH_MAX = 8, 512

#: Shift directions of the TTA views, in the order they are added.
_DIRECTIONS = ((0, 1), (0, -1), (1, 0), (-1, 0), (1, 1), (1, -1), (-1, 1), (-1, -1))


def inference_batch_size(image_size: tuple[int, int]) -> int:
    """Images per batch in prediction for inputs of ``image_size``: the largest
    power of two whose batch holds at most :data:`INFERENCE_PIXELS` pixels,
    from :data:`INFERENCE_BATCH_MIN` to :data:`INFERENCE_BATCH_MAX`.

    Examples
    --------
    >>> from imgclf._inference import inference_batch_size
    >>> inference_batch_size((28, 28)), inference_batch_size((96, 96)), inference_batch_size((224, 224))
    (512, 32, 8)
    """
    pixels = max(1, int(image_size[0]) * int(image_size[1]))
    batch = INFERENCE_BATCH_MIN
    while batch < INFERENCE_BATCH_MAX and 2 * batch * pixels <= INFERENCE_PIXELS:
        batch *= 2
    return batch


class View(NamedTuple):
    """One deterministic view: shift by ``(dy, dx)`` pixels, then flip left-right."""

    dy: int = 0
    dx: int = 0
    flip: bool = False


def flips_in(augment) -> bool:
    """Whether an ``augment`` parameter value flips images left-right in training."""
    from .augment import PRESETS

    if augment is None:
        return False
    if isinstance(augment, str):
        augment = PRESETS.get(augment, {})
    if isinstance(augment, dict):
        return "horizontal" in str(augment.get("flip") or "")
    flip = get_keras().layers.RandomFlip
    modes = [
        str(layer.get_config().get("mode", "")) for layer in augment if isinstance(layer, flip)
    ]
    return any("horizontal" in mode for mode in modes)


def flips_only(augment) -> bool:
    """Whether an ``augment`` parameter value does nothing but flip images
    left-right: then the features of each image and of its mirror image are
    all the views training can see (``TransferClassifier``'s frozen stage
    trains on both, from its feature cache)."""
    from .augment import PRESETS

    if not augment:
        return False
    if isinstance(augment, str):
        augment = PRESETS.get(augment, {})
    if isinstance(augment, dict):
        others = any(value for key, value in augment.items() if key != "flip")
        return augment.get("flip") == "horizontal" and not others
    flip = get_keras().layers.RandomFlip
    return all(
        isinstance(layer, flip) and layer.get_config().get("mode") == "horizontal"
        for layer in augment
    )


def shift_pixels(size: tuple[int, int]) -> int:
    """Pixels a TTA shift moves: a sixteenth of the smaller side (2 px at 28 px,
    14 px at 224), at least 1, and 0 for images too small to shift."""
    side = min(size)
    return min(max(1, round(side / 16)), side - 1)


def max_views(size: tuple[int, int], flip: bool) -> int:
    """How many distinct views :func:`tta_views` can give."""
    shifts = 1 + (len(_DIRECTIONS) if shift_pixels(size) > 0 else 0)
    return shifts * (2 if flip else 1)


def tta_views(n: int, size: tuple[int, int], flip: bool) -> list[View]:
    """The first ``max(n, 1)`` views: the image as given, its mirror image
    (with ``flip``), then each shift (and its mirror image).

    Examples
    --------
    >>> from imgclf._inference import tta_views
    >>> tta_views(3, (28, 28), flip=False)
    [View(dy=0, dx=0, flip=False), View(dy=0, dx=2, flip=False), View(dy=0, dx=-2, flip=False)]
    >>> [v.flip for v in tta_views(4, (28, 28), flip=True)]
    [False, True, False, True]
    """
    d = shift_pixels(size)
    offsets = [(0, 0)] + ([(dy * d, dx * d) for dy, dx in _DIRECTIONS] if d else [])
    views = [View(dy, dx, f) for dy, dx in offsets for f in ((False, True) if flip else (False,))]
    if n > len(views):
        raise ValueError(f"{n} views asked for, {len(views)} available")
    return views[: max(n, 1)]


def apply_view(tf, x, view: View):
    """``view`` of a batch ``(b, h, w, c)``: shifted with the border reflected, then flipped."""
    if view.dy or view.dx:
        h, w = x.shape[1], x.shape[2]
        pad = max(abs(view.dy), abs(view.dx))
        x = tf.pad(x, [[0, 0], [pad, pad], [pad, pad], [0, 0]], mode="REFLECT")
        # Content moves by (dy, dx): the window starts that far before the original.
        top, left = pad - view.dy, pad - view.dx
        x = x[:, top : top + h, left : left + w, :]
    if view.flip:
        x = tf.reverse(x, axis=[2])
    return x


_PREDICTORS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_EXTRACTORS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def feature_model(model, layer: str):
    """``model`` from its input to the output of its layer ``layer``, sharing
    its layers (and so its weights): built once per model and layer, and
    kept no longer than ``model`` (it holds no reference to it)."""
    per_model = _EXTRACTORS.setdefault(model, {})
    if layer not in per_model:
        keras = get_keras()
        per_model[layer] = keras.Model(
            model.inputs[0], part(model, layer).output, name=f"{model.name}_{layer}"
        )
    return per_model[layer]


def traced_predictor(model, input_shape: tuple[int, int, int], views: list[View]):
    """A ``tf.function`` mapping a float32 batch ``(b, *input_shape)`` to
    ``model``'s class probabilities averaged over ``views``, in inference mode.

    Built once per ``(model, views)`` and traced on its first call; any batch
    size reuses the trace. The function holds the model only weakly, so the
    table entry dies with the model.
    """
    per_model = _PREDICTORS.setdefault(model, {})
    key = (tuple(input_shape), tuple(views))
    if key not in per_model:
        per_model[key] = _trace(weakref.ref(model), input_shape, views)
    return per_model[key]


def _trace(model_ref, input_shape, views):
    tf = get_tf()
    spec = tf.TensorSpec((None, *input_shape), tf.float32)

    # The name marks it for _backend's filter of TensorFlow's cross-model
    # retracing warning: each network's function traces once, but they share
    # this code object, which is what TensorFlow counts.
    def imgclf_predict_step(x):
        model = model_ref()
        outputs = [model(apply_view(tf, x, view), training=False) for view in views]
        return outputs[0] if len(outputs) == 1 else tf.add_n(outputs) / len(outputs)

    return tf.function(imgclf_predict_step, input_signature=[spec], autograph=False)


class PredictMixin:
    """``predict``, ``predict_proba``, ``transform`` and ``network_input`` of
    :class:`~imgclf._base.BaseImageClassifier`.

    The mixin reads nothing of its host but this interface:

    - what a fit leaves: ``model_``, ``classes_``, ``image_size_``,
      ``n_channels_`` (and ``input_range_``, ``n_features_in_`` through the
      checks of :mod:`imgclf._validation`); the parameters ``augment``,
      ``color_mode`` and ``tta``;
    - :meth:`_prediction_input`, :meth:`_reading` and
      :meth:`_parameter_problem`, which the host implements;
    - :attr:`_features_layer`, the layer ``transform`` returns.

    A subclass may override :meth:`_proba` and :meth:`_transform`
    (``TransferClassifier`` answers from its feature memory), and
    :meth:`_transform_network` (``TransferClassifier`` runs a copy with
    BatchNorm folded).
    """

    #: The layer whose output ``transform`` returns.
    _features_layer = FEATURES_LAYER

    # ------------------------------------------- provided by the host class
    def _prediction_input(self, images: Images, batch_size: int) -> dict:
        """``model.predict``'s keyword arguments for ``images`` in order, in
        batches of ``batch_size``: ``"x"``, an array or a ``tf.data`` dataset."""
        raise NotImplementedError

    def _reading(self, images: Images, what: str):
        """A context in which a file failing while streamed raises
        ``ImageFileError`` naming it and ``what``."""
        raise NotImplementedError

    def _parameter_problem(self, name: str, value) -> str | None:
        """What is wrong with ``value`` for the parameter ``name``, or None."""
        raise NotImplementedError

    def _check_predict_images(self, X) -> Images:
        """Validate ``X`` for a fitted network; every file must be readable."""
        images = check_images(self, X, reset=False)
        if images.array is not None:
            channels = images.array.shape[-1]
            convertible = channels == 1 or self.color_mode != "auto"
            if channels != self.n_channels_ and not convertible:
                raise InputError(
                    f"{type(self).__name__} was fitted on {self.n_channels_}-channel images but X "
                    f"has {channels} channels. Convert the images (e.g. to grayscale with "
                    "skimage.color.rgb2gray), refit on RGB images, or fit with color_mode='grayscale' "
                    "to have imgclf convert them."
                )
            check_predict_range(self, images.array)
            return images
        images, _ = images.screened(
            on_bad_file="error", source=f"{type(self).__name__}.predict", can_skip=False
        )
        return images

    def network_input(self, X) -> np.ndarray:
        """``X`` as the network takes it: what ``model_`` is called on.

        Images are decoded, converted to ``n_channels_`` and resized to
        ``image_size_``, in the training data's pixel units (0-255 for uint8
        images and files; see ``input_range_``). Meant for a few images (to
        draw them, explain them or call ``model_`` yourself): the result is
        held in memory, while ``predict_proba`` streams.

        Parameters
        ----------
        X : array-like or sequence of paths
            As accepted by :meth:`predict`.

        Returns
        -------
        ndarray of shape (n, height, width, channels), dtype float32

        Raises
        ------
        sklearn.exceptions.NotFittedError
            If the estimator is not fitted.
        imgclf.exceptions.ImageFileError
            If a file cannot be read.

        See Also
        --------
        predict_proba : the network's output for the same images.
        """
        check_is_fitted(self)
        images = self._check_predict_images(X)
        x = self._prediction_input(images, self._inference_batch())["x"]
        if isinstance(x, np.ndarray):
            return x.astype(np.float32)
        with self._reading(images, "network_input"):
            return np.concatenate([batch[0].numpy() for batch in x]).astype(np.float32)

    def predict_proba(self, X) -> np.ndarray:
        """Class probabilities.

        Parameters
        ----------
        X : array-like or sequence of paths
            Images in any form :meth:`fit` takes; every file must be readable.

        Returns
        -------
        ndarray of shape (n, n_classes)
            Columns in ``classes_`` order; rows sum to 1. Multi-label models
            give each label's own probability (rows need not sum to 1): one
            2-D array, as scikit-learn's ``MLPClassifier`` does, rather than
            the list of ``(n, 2)`` arrays some of its multi-label
            estimators return, so ``proba >= thresholds_`` is ``predict``.

        Raises
        ------
        sklearn.exceptions.NotFittedError
            If the estimator is not fitted.
        imgclf.exceptions.ImageFileError
            If a file cannot be read (one answer is owed per sample).

        See Also
        --------
        predict : the most probable class of each image.
        """
        check_is_fitted(self)
        views = self._tta_views()
        return self._proba(self._check_predict_images(X), views)

    def _proba(self, images: Images, views: list) -> np.ndarray:
        """``predict_proba`` of checked ``images``, averaged over ``views``."""
        return self._network_output(self.model_, images, views, "predict").astype(np.float64)

    def _network_output(self, network, images: Images, views: list, what: str) -> np.ndarray:
        """``network``'s output for checked ``images`` (averaged over ``views``),
        in prediction batches (:func:`inference_batch_size`). ``network`` takes
        what ``model_`` takes; ``what`` names the caller in errors."""
        shape = (*self.image_size_, self.n_channels_)
        if len(views) == 1 and (images.array is None or len(images) > DIRECT_CALL_MAX_IMAGES):
            # Many images or files: the tf.data pipeline reads ahead while the network runs.
            data = self._prediction_input(images, self._inference_batch())
            with self._reading(images, what):
                return np.asarray(network.predict(verbose=0, **data))
        call = traced_predictor(network, shape, views)
        with self._reading(images, what):
            parts = [call(batch).numpy() for batch in self._predict_batches(images)]
        return np.concatenate(parts)

    def _inference_batch(self) -> int:
        """Images per batch in prediction (see :func:`inference_batch_size`)."""
        return inference_batch_size(self.image_size_)

    def _predict_batches(self, images: Images):
        """float32 batches of network input for the traced call: arrays sliced
        and converted here, anything else read through the pipeline."""
        tf = get_tf()
        batch_size = self._inference_batch()
        if images.array is None or len(images) > DIRECT_CALL_MAX_IMAGES:
            data = self._prediction_input(images, batch_size)["x"]
            if not isinstance(data, np.ndarray):
                yield from (tf.cast(batch[0], tf.float32) for batch in data)
                return
            images = Images(array=data)
        for start in range(0, len(images), batch_size):
            batch = tf.constant(images.array[start : start + batch_size])
            yield decode.convert(tf, tf.cast(batch, tf.float32), self.image_size_, self.n_channels_)

    def _tta_views(self) -> list:
        """The views ``predict_proba`` averages over (one: the images as given)."""
        tta = getattr(self, "tta", 0)
        found = self._parameter_problem("tta", tta)
        flip = flips_in(self.augment)
        most = max_views(self.image_size_, flip)
        if found is None and tta > most:
            found = (
                f"tta={tta}: {most} views exist for {self.image_size_[0]}x"
                f"{self.image_size_[1]} images ({'with' if flip else 'without'} flips, which "
                f"follow the training augmentation). Pass tta <= {most}, or 0 to turn it off."
            )
        if found:
            raise InputError(f"{type(self).__name__} got an invalid parameter: {found}")
        return tta_views(tta, self.image_size_, flip)

    def score(self, X, y, sample_weight=None) -> float:
        """Accuracy: the fraction of images in ``X`` predicted as their ``y``.

        For multi-label models the subset accuracy, as scikit-learn's
        ``ClassifierMixin.score`` gives it: the fraction of images whose
        every label is predicted right (``y`` as ``fit`` takes it).

        Parameters
        ----------
        X : array-like or sequence of paths
            Images in any form :meth:`fit` takes; every file must be readable.
        y : array-like of shape (n,)
            The true labels, of the type of ``classes_``.
        sample_weight : array-like of shape (n,), optional
            Weights of the images in the mean.

        Returns
        -------
        float

        Raises
        ------
        sklearn.exceptions.NotFittedError
            If the estimator is not fitted.
        imgclf.exceptions.InputError
            For ``y`` of another length than ``X``, not one label per image,
            of mixed types or of another type than ``classes_`` (strings
            against numbers), or ``sample_weight`` of another length.
        """
        check_is_fitted(self)
        name = type(self).__name__
        images = self._check_predict_images(X)
        if getattr(self, "multilabel_", False):
            pred = multilabel.predict(self, self._proba(images, self._tta_views()))
            return multilabel.score(self, y, pred, sample_weight)
        y = check_targets(self, y, len(images))
        given, fitted = label_kind(y[0]), label_kind(self.classes_[0])
        if "str" in (given, fitted) and given != fitted:
            raise InputError(
                f"{name}.score: y holds {given} labels (e.g. {y[0]!r}) but the classes "
                f"the model was fitted on are {fitted} ({short_repr(self.classes_.tolist(), 60)}); "
                "every image would count as wrong. Give y in the classes' type, e.g. "
                f"y.astype({self.classes_.dtype.name!r})."
            )
        if sample_weight is not None and np.shape(sample_weight) != (len(y),):
            raise InputError(
                f"{name}.score: sample_weight has shape {np.shape(sample_weight)}, but X has "
                f"{len(y)} images; give one weight per image."
            )
        pred = self.classes_[np.argmax(self._proba(images, self._tta_views()), axis=1)]
        try:
            return float(accuracy_score(y, pred, sample_weight=sample_weight))
        except (TypeError, ValueError) as exc:
            raise InputError(f"{name}.score: {short_repr(str(exc), 300)}") from None

    def predict(self, X) -> np.ndarray:
        """Predicted class labels.

        Parameters
        ----------
        X : array-like or sequence of paths
            Images in any form :meth:`fit` takes.

        Returns
        -------
        ndarray of shape (n,) or (n, n_labels)
            Labels taken from ``classes_``. Multi-label models return the
            0/1 indicator matrix (int64, columns in ``classes_`` order) of
            ``predict_proba(X) >= thresholds_``, also when fitted on label
            collections: ``MultiLabelBinarizer(classes=clf.classes_)``'s
            ``inverse_transform`` turns it into label tuples.

        Raises
        ------
        sklearn.exceptions.NotFittedError
            If the estimator is not fitted.

        See Also
        --------
        predict_proba : the probabilities behind the labels.
        """
        proba = self.predict_proba(X)
        if getattr(self, "multilabel_", False):
            return multilabel.predict(self, proba)
        return self.classes_[np.argmax(proba, axis=1)]

    def transform(self, X) -> np.ndarray:
        """The network's features of each image: what its classifier layer sees.

        For :class:`~imgclf.CNNClassifier` the globally pooled last stage
        (layer ``"pool"``, the penultimate layer: dropout passes it unchanged
        in prediction), for :class:`~imgclf.TransferClassifier` the pooled
        backbone features (layer ``"features"``); ``TransferClassifier``
        with ``memory`` reads and stores them there.
        So a fitted estimator serves as a feature extractor, e.g. before a
        ``LogisticRegression`` in a ``Pipeline`` (which calls ``fit``, then
        ``transform``) or for ``TSNE``. Computed like :meth:`predict_proba`,
        in prediction batches, without test-time augmentation. There is no
        ``fit_transform``: the estimator is a classifier that can also
        transform, not a transformer.

        Parameters
        ----------
        X : array-like or sequence of paths
            Images in any form :meth:`fit` takes; every file must be readable.

        Returns
        -------
        ndarray of shape (n, n_features), dtype float32

        Raises
        ------
        sklearn.exceptions.NotFittedError
            If the estimator is not fitted.
        imgclf.exceptions.ImageFileError
            If a file cannot be read (one row is owed per sample).

        See Also
        --------
        predict_proba : the classifier layer's output for the same images.
        """
        check_is_fitted(self)
        return self._transform(self._check_predict_images(X))

    def _transform(self, images: Images) -> np.ndarray:
        """``transform`` of checked ``images``."""
        network = self._transform_network(images)
        return self._network_output(network, images, [View()], "transform").astype(np.float32)

    def _transform_network(self, images: Images):
        """The network ``transform`` runs over ``images``: ``model_`` up to
        :attr:`_features_layer`, or one computing the same features."""
        return feature_model(self.model_, self._features_layer)


__all__ = [
    "DIRECT_CALL_MAX_IMAGES",
    "INFERENCE_BATCH_MAX",
    "INFERENCE_BATCH_MIN",
    "INFERENCE_PIXELS",
    "PredictMixin",
    "View",
    "apply_view",
    "feature_model",
    "flips_in",
    "flips_only",
    "inference_batch_size",
    "max_views",
    "shift_pixels",
    "traced_predictor",
    "tta_views",
]
