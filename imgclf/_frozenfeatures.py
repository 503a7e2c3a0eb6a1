"""The frozen backbone's features (:class:`FrozenFeaturesMixin`): what
:class:`~imgclf.TransferClassifier` computes once per fit for its frozen
stage, keeps in ``memory`` for later fits, reads back in ``predict`` and
returns from ``transform``.
"""

from __future__ import annotations

import warnings

import numpy as np

import imgclf._featcache as featcache

from ._backend import get_keras, get_tf
from ._featkeys import (
    architecture_digest,
    extractor_identity,
    extractor_key,
    features_of,
    image_keys,
    open_store,
)
from ._fold import inference_copy, kept_inference_copy
from ._inference import feature_model
from ._netparts import CLASSIFIER_LAYER, feature_length, head_of
from ._netparts import extractor as _extractor
from ._trainingdata import TrainingData
from ._validation import Images

#: The frozen stage, and ``transform``, run a copy of the network with
#: BatchNorm folded (:mod:`imgclf._fold`) when the images to compute hold
#: this many pixels (height x width) or more; on fewer the copy would cost
#: more than it saves. Folding ``efficientnet_lite0`` costs 0.23 CPU s, what
#: it saves on about 30 images at 224x224 (7.8 ms each); 2**21 pixels are 42
#: such images, 228 at 96x96, 2,048 at 32x32.
FOLD_MIN_PIXELS = 2**21


class FrozenFeaturesMixin:
    """The pooled features of a frozen backbone, for
    :class:`~imgclf.TransferClassifier`.

    The mixin reads of its host the parameters ``memory``, ``weights``,
    ``random_state`` and ``cache``; what the fit set: ``model_``,
    ``image_size_``, ``n_channels_``, ``input_range_``, ``batch_size_``;
    and its methods ``_feature_views``, ``_named``, ``_source``,
    ``_dataset`` and ``_features_layer``. It overrides the base's
    ``_holdout_logits``, ``_proba``, ``_transform`` and
    ``_transform_network`` and calls them through ``super()`` where it
    cannot answer itself.
    """

    def _feature_data(self, model, data: TrainingData) -> TrainingData:
        """``data`` for the head: the frozen backbone's pooled features of the
        training and validation images stand in for them (the targets and
        weights stay). Without augmentation they never change, so they are
        computed once per fit, or read from ``memory`` when an earlier fit
        stored them, and each epoch of the frozen stage is a pass over small
        vectors."""
        extractor = _extractor(model)
        images, y_enc, train, val = data.images, data.y, data.train, data.val
        views = self._feature_views() or (False,)
        store = self._feature_store(extractor, images)
        stores = {False: store}
        if store is not None:
            # predict may read these features while the backbone stays as it is.
            self.__dict__["_memory_key"] = store.network
            if True in views:
                # The mirror images' features, under their own network key.
                stores[True] = open_store(
                    self.memory,
                    lambda: self._network_key(extractor, images, mirrored=True),
                    type(self).__name__,
                    length=feature_length(extractor),
                )
        extractors = {False: extractor, True: _mirrored(extractor) if True in views else None}

        # The features are computed by a copy with BatchNorm folded into the
        # convolutions: the backbone is frozen here, so the copy computes the
        # same features with fewer passes over memory. It is made (or not:
        # FOLD_MIN_PIXELS) for the first images the store does not hold, and
        # serves the hold-out's and the mirror images' too. The stores' keys
        # are the original's.
        fast: dict = {}

        def features(part: np.ndarray, mirrored: bool = False) -> np.ndarray:
            def compute(subset: Images, rows: np.ndarray) -> np.ndarray:
                if False not in fast:
                    worth = self._worth_folding(len(subset))
                    fast[False] = inference_copy(extractor) if worth else extractor
                if mirrored and True not in fast:
                    folded = fast[False] is not extractor
                    fast[True] = _mirrored(fast[False]) if folded else extractors[True]
                return self._computed_features(fast[mirrored], subset, y_enc[part[rows]])

            return self._features_of(images.subset(part), stores.get(mirrored), compute)

        train_x = np.concatenate([features(train, mirrored) for mirrored in views])
        # The hold-out is judged on the images as given, as predict sees them.
        val_x = None if val is None else features(val)
        mapped = data.with_features(train_x, val_x, views=len(views))
        for used in stores.values():
            if used is not None:
                used.report()  # one warning a fit for the entries replaced
        return mapped

    def _features_of(self, images: Images, store, compute) -> np.ndarray:
        """Features of ``images``, from ``store`` where it has them (see
        :func:`imgclf._featkeys.features_of`)."""
        return features_of(images, store, compute)

    def _computed_features(self, extractor, images: Images, y) -> np.ndarray:
        data = self._dataset(images, y)  # in order: no shuffling
        return _features(extractor, data["x"], data.get("y"), self.batch_size_)[0]

    def _feature_store(self, extractor, images: Images):
        """The ``memory`` store for this fit's extractor, or None."""
        root = featcache.location(self.memory)
        if root is not None and self.weights is None and self.random_state is None:
            warnings.warn(
                f"{type(self).__name__}(memory={root!r}) is not used: with weights=None and "
                "random_state=None every fit draws a new random backbone, whose features no "
                "later fit could reuse. Pass random_state=<int> to share them across fits.",
                featcache.FeatureCacheWarning,
                stacklevel=2,
            )
            return None
        return open_store(
            self.memory,
            lambda: self._network_key(extractor, images),
            type(self).__name__,
            length=feature_length(extractor),
        )

    def _network_key(
        self, extractor, images: Images, *, rounded=None, mirrored: bool = False
    ) -> bytes:
        """The key of ``extractor``'s features of images like ``images``;
        ``rounded``: whether files are read from a pixel cache (by default,
        as ``fit`` reads them: with ``cache`` set); ``mirrored``: the key of
        its features of the images' mirror images (flipped left-right)."""
        if rounded is None:
            rounded = images.paths is not None and self.cache is not None
        named = self._named()
        identity = extractor_identity(
            extractor,
            named.name if named is not None else architecture_digest(self._source()),
            image_size=self.image_size_,
            channels=self.n_channels_,
            color_mode=self.color_mode,
            input_range=self.input_range_,
            rounded=rounded,
        )
        if mirrored:
            identity["view"] = "mirrored"
        return extractor_key(extractor, identity)

    def _holdout_logits(self, data: TrainingData) -> np.ndarray:
        """The hold-out's logits from the frozen backbone's features that the
        frozen stage computed, when the kept network still has that backbone
        (no fine-tuning, or its weights were not kept): only the head runs.
        Otherwise the whole network, as for any estimator."""
        features = self.__dict__.get("_holdout_features")
        if features is None or len(features) != len(data.val):
            return super()._holdout_logits(data)
        return self._head_output(features, through=CLASSIFIER_LAYER)

    def _head_output(self, features, *, through: str | None = None) -> np.ndarray:
        """``model_``'s head on pooled ``features``, in inference mode, up to
        and including the layer named ``through`` (the whole head, to the
        probabilities, by default)."""
        x = np.asarray(features, dtype=np.float32)
        for layer in head_of(self.model_):
            x = layer(x, training=False)
            if layer.name == through:
                break
        return np.asarray(get_keras().ops.convert_to_numpy(x), dtype=np.float64)

    # ------------------------------------------------------------- predict
    def _proba(self, images: Images, views: list) -> np.ndarray:
        if len(views) == 1:
            proba = self._proba_from_memory(images)
            if proba is not None:
                return proba
        return super()._proba(images, views)

    def _proba_from_memory(self, images: Images) -> np.ndarray | None:
        """Probabilities from the features ``memory`` holds for every one of
        ``images``, when ``model_``'s backbone is still exactly the one they
        were computed with (its weights are hashed again to make sure: a
        fine-tuned or hand-trained backbone does not match); None otherwise,
        and ``predict`` runs the whole network. In a grid search the test
        fold's images were training images of the other folds, so scoring
        needs only the head."""
        key = self.__dict__.get("_memory_key")
        root = featcache.location(self.memory)
        if key is None or root is None:
            return None
        store = featcache.FeatureStore.reader(root, key, feature_length(self.model_))
        found, _ = store.get(image_keys(images))
        store.report()
        if any(f is None for f in found):
            return None
        try:
            if self._network_key(_extractor(self.model_), images) != key:
                return None
        except Exception:  # e.g. a backbone that cannot be described: run it
            return None
        return self._head_output(np.stack(found))

    # ----------------------------------------------------------- transform
    def _transform(self, images: Images) -> np.ndarray:
        """The pooled features: with ``memory``, read from it where it holds
        them for ``model_``'s backbone as it is now, the rest computed and
        stored there for the next call (or fit)."""
        store = self._transform_store(images)
        if store is None:
            return super()._transform(images)
        base = super()._transform
        return features_of(images, store, lambda subset, _: base(subset))

    def _transform_network(self, images: Images):
        """``model_`` to its features, with BatchNorm folded (see
        :mod:`imgclf._fold`) when the images hold :data:`FOLD_MIN_PIXELS` or more: the
        copy is made once per ``model_`` and kept while its weights stay as
        they are."""
        network = super()._transform_network(images)
        if not self._worth_folding(len(images)):
            return network
        return kept_inference_copy(network)

    def _worth_folding(self, count: int) -> bool:
        """Whether ``count`` images hold :data:`FOLD_MIN_PIXELS` pixels."""
        height, width = self.image_size_
        return count * height * width >= FOLD_MIN_PIXELS

    def _transform_store(self, images: Images):
        """The ``memory`` store of ``model_``'s features as ``transform``
        computes them (files streamed, never from a pixel cache), or None."""
        if featcache.location(self.memory) is None:
            return None
        extractor = feature_model(self.model_, self._features_layer)
        return open_store(
            self.memory,
            lambda: self._network_key(extractor, images, rounded=False),
            type(self).__name__,
            transform=True,
        )


# ------------------------------------------------------------------ helpers
def _mirrored(extractor):
    """``extractor`` on the mirror image of its input (flipped left-right):
    its features of the mirror images of the images it is given."""
    keras = get_keras()
    given = extractor.inputs[0]
    inputs = keras.Input(batch_shape=given.shape, dtype=given.dtype)
    return keras.Model(inputs, extractor(keras.ops.flip(inputs, axis=2)))


def _features(extractor, x, y, batch_size: int):
    """Features and labels of ``x`` (an array, or a ``tf.data`` dataset of
    ``(images, labels)`` read once so both stay in the same order)."""
    tf = get_tf()
    if isinstance(x, tf.data.Dataset):
        features, labels = [], []
        for batch in x:
            features.append(np.asarray(extractor.predict_on_batch(batch[0])))
            labels.append(np.asarray(batch[1]))
        return np.concatenate(features), np.concatenate(labels)
    return extractor.predict(x, batch_size=batch_size, verbose=0), y


__all__ = ["FOLD_MIN_PIXELS", "FrozenFeaturesMixin"]
