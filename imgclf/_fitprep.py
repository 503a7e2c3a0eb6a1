"""The steps of a fit before training (:class:`PrepareFitMixin`): check the
data, encode the labels, decide the network's input, seed, hold out a
validation split, build the network and gather what training reads into a
:class:`~imgclf._trainingdata.TrainingData`. Warm starts are decided here
too: the data must match the fitted network, which is then kept.
"""

from __future__ import annotations

import contextlib
import copy
import numbers
import warnings

import numpy as np
from sklearn.model_selection import StratifiedShuffleSplit
from sklearn.utils.class_weight import compute_class_weight

import imgclf._multilabel as multilabel

from ._backend import get_keras, released_gradient_functions, resolve_seed, seeded
from ._card import fit_facts
from ._checkpoint import data_fingerprint, params_fingerprint
from ._devices import (
    global_batch,
    network_scope,
    resolve_precision,
    resolve_strategy,
    warn_slow_float16,
)
from ._fitrun import FitRun
from ._training import collect_garbage, holdout_size, resolve_batch_size, resolve_epochs
from ._training import pixel_range as data_pixel_range
from ._trainingdata import TrainingData
from ._validation import (
    Images,
    check_classes_left,
    check_images,
    check_sample_weight,
    class_index,
    image_size_tuple,
)
from .augment import augmentation_layers
from .exceptions import InputError


class PrepareFitMixin:
    """What :class:`~imgclf._base.BaseImageClassifier` does before it trains:
    :meth:`_prepare_fit` and its steps.

    The mixin reads of its host the parameters ``warm_start``,
    ``random_state``, ``on_bad_file``, ``checkpoint``, ``validation_fraction``,
    ``image_size``, ``color_mode``, ``batch_size``, ``epochs``, ``distribute``,
    ``precision``, ``augment``, ``cache`` and ``class_weight``; and these
    methods, which the host implements: :meth:`_network_channels`,
    :meth:`_default_image_size`, :meth:`_build_network`, :meth:`_stage_plan`,
    :meth:`_naming_bad_files` and :meth:`_dataset`. It sets ``classes_``,
    ``multilabel_`` (and ``thresholds_``), ``image_size_``, ``n_channels_``,
    ``input_range_``, ``batch_size_``, ``precision_``, ``epochs_`` and
    ``model_``.
    """

    @contextlib.contextmanager
    def _prepare_fit(self, X, y, sample_weight=None, *, run: FitRun | None = None):
        """The steps of a fit before training, as a context yielding
        ``(network, data)`` (a :class:`~imgclf._trainingdata.TrainingData`):
        check the data, encode the labels, decide the input spec, seed, hold
        out a validation split, build the network. Training happens inside
        it (seeded, with unreadable files named). Used by :meth:`fit` (with
        its ``run``: checkpoint, warm start, hold-out, the epochs planned) and
        by :func:`imgclf.lrfind.find` (``run=None``: a new network on every
        image, no hold-out; a ``RandomState`` is drawn from as a copy)."""
        if run is not None:
            run.check_path()
        warm = run is not None and bool(self.warm_start) and hasattr(self, "model_")
        images, y, weight = self._check_data(X, y, sample_weight, reset=not warm)
        if run is not None:
            self._open_checkpoint(images, y, weight, run)
        classes, y_enc = self._encode_labels(y, warm)
        given_images, given_weight = images, weight
        images, y_enc, weight = _weighted_only(images, y_enc, weight)
        self._set_input_spec(images, warm)
        random_state = self.random_state
        if run is None and isinstance(random_state, np.random.RandomState):
            random_state = copy.deepcopy(random_state)  # the parameter stays as it was
        seed = resolve_seed(random_state)
        if run is not None:
            # A resumed fit keeps its first seed: the same hold-out, the same weights.
            seed = run.seed_for(seed, fixed=isinstance(self.random_state, numbers.Integral))
            if not warm:
                self._release_network()
        with seeded(seed), released_gradient_functions():
            if run is not None:
                train, val = self._split(y_enc, seed)
                # The model card's facts (clf.card_), of the data as given.
                fingerprint = run.fingerprints.get("data") or data_fingerprint(
                    given_images, y, given_weight
                )
                self.__dict__["_card_facts"] = fit_facts(
                    fingerprint, y_enc, train, val, len(classes)
                )
            else:
                train, val = np.arange(len(y_enc)), None
            self.batch_size_ = resolve_batch_size(self.batch_size, len(train))
            if not warm:
                self.model_ = self._build_model(len(classes), seed)
            if run is not None:
                self.epochs_ = resolve_epochs(self.epochs, len(train), self.batch_size_)
                run.plan = self._stage_plan()
            self.classes_ = classes
            # Also decoding into a cache.
            with self._naming_bad_files(images, "fit" if run is not None else "lr_find"):
                data = self._training_data(images, y_enc, train, val, seed, weight)
                if run is not None:
                    run.network = self.model_
                yield self.model_, data

    def _check_data(self, X, y, sample_weight=None, *, reset: bool):
        """Validate ``X``, ``y`` and ``sample_weight``; leave out (or reject)
        unreadable files. Returns ``(images, y, weight)`` (``weight`` None
        without sample weights)."""
        images = check_images(self, X, reset=reset)
        y = multilabel.check_y(self, y, len(images))
        weight = check_sample_weight(self, sample_weight, len(images))
        given = images
        images, keep = images.screened(
            on_bad_file=self.on_bad_file, source=f"{type(self).__name__}.fit"
        )
        if len(keep) < len(y) and not multilabel.is_multilabel(y):
            check_classes_left(self, given.paths, y, keep)
        return images, y[keep], None if weight is None else weight[keep]

    def _open_checkpoint(self, images: Images, y, weight, run: FitRun) -> None:
        """With ``checkpoint``: resume from the file if it was written for these
        parameters and data; any other file is warned about and replaced."""
        if self.checkpoint is None:
            return
        message = run.open_checkpoint(
            params_fingerprint(self.get_params(deep=False)),
            data_fingerprint(images, y, weight),
        )
        if message is not None:
            warnings.warn(message, UserWarning, stacklevel=4)

    def _encode_labels(self, y, warm: bool) -> tuple[np.ndarray, np.ndarray]:
        """``(classes, y as indices into classes)``; needs two classes or more.
        Multi-label targets give ``(labels, 0/1 matrix)`` (:mod:`imgclf._multilabel`)."""
        if multilabel.is_multilabel(y):
            classes, y_enc = multilabel.encode(self, y, warm)
            self.multilabel_ = True
            if not warm:  # 0.5 until tuned after training (an interrupted fit keeps them)
                self.thresholds_ = multilabel.default_thresholds(len(classes))
            return classes, y_enc
        if warm and getattr(self, "multilabel_", False):
            raise InputError(
                "warm_start=True, but y holds one label per image while the model was fitted "
                "on multi-label targets. Set warm_start=False to fit a single-label model."
            )
        self.multilabel_ = False
        self.__dict__.pop("thresholds_", None)
        classes, y_enc = np.unique(y, return_inverse=True)
        if len(classes) < 2:
            raise InputError(
                f"{type(self).__name__} needs at least 2 classes in y, but got only one class "
                f"({classes[0]!r}). A classifier cannot learn from a single class: add images "
                "of the other classes."
            )
        if warm and not np.array_equal(classes, self.classes_):
            raise InputError(
                f"warm_start=True, but y has classes {list(classes)} while the model was fitted "
                f"on {list(self.classes_)}. Use the same classes, or set warm_start=False."
            )
        return classes, y_enc

    def _set_input_spec(self, images: Images, warm: bool) -> None:
        """Decide the network's input size, channels and pixel range from the data."""
        size = image_size_tuple(self.image_size)
        if images.array is not None:
            array = images.array
            size = size or self._default_image_size(tuple(array.shape[1:3]))
            data_channels = array.shape[-1]
            pixel_range = data_pixel_range(array)
        else:
            size = size or self._default_image_size(None)
            # 1 if every file is grey, else 3 (read off the scan, no file opened).
            data_channels = 3 if any(f.channels == 3 for f in images.infos) else 1
            pixel_range = (0.0, 255.0)
        wanted = {"auto": data_channels, "grayscale": 1, "rgb": 3}[self.color_mode]
        channels = self._network_channels(wanted)
        if warm and (size, channels) != (self.image_size_, self.n_channels_):
            raise InputError(
                f"warm_start=True, but the data give images of size {size} with {channels} "
                f"channels while the model takes {self.image_size_} with {self.n_channels_}. "
                "Pass the same kind of images, or set warm_start=False."
            )
        if not warm:
            self.image_size_, self.n_channels_, self.input_range_ = size, channels, pixel_range

    def _release_network(self) -> None:
        """Free the previous network and Keras's global name state, so many fits
        in a row (a grid search) neither grow memory nor slow down."""
        self.__dict__.pop("model_", None)
        keras = get_keras()
        # clear_session also resets Keras's global dtype policy: that is the
        # user's setting, not this estimator's (``precision`` is per network).
        policy = keras.config.dtype_policy()
        keras.backend.clear_session(free_memory=False)
        keras.config.set_dtype_policy(policy)
        collect_garbage()

    def _split(self, y_enc, seed):
        """``(train, validation)`` positions: a stratified hold-out of
        ``validation_fraction`` (validation is None without one)."""
        n = len(y_enc)
        if y_enc.ndim == 2:  # multi-label: stratified on each image's rarest label
            y_enc = multilabel.strata(y_enc)
        counts = np.bincount(y_enc)
        n_val = holdout_size(self.validation_fraction, counts)
        if n_val == 0:
            return np.arange(n), None
        if counts[counts > 0].min() >= 2:
            splitter = StratifiedShuffleSplit(n_splits=1, test_size=n_val, random_state=seed)
            train, val = next(splitter.split(np.zeros(n), y_enc))
        else:
            # Too few images per class to stratify: a plain random hold-out.
            perm = np.random.default_rng(seed).permutation(n)
            train, val = perm[n_val:], perm[:n_val]
        return np.sort(train), np.sort(val)

    def _build_model(self, n_classes: int, seed: int):
        """The whole network: input scaling, augmentation, then :meth:`_build_network`,
        built in the ``distribute`` strategy's scope under the ``precision`` policy."""
        keras = get_keras()
        owner = type(self).__name__
        strategy = resolve_strategy(self.distribute, owner)
        # Each full batch must split evenly over the replicas.
        self.batch_size_ = global_batch(self.batch_size_, strategy)
        self.precision_ = resolve_precision(self.precision)
        if self.precision_ == "mixed_float16":
            warn_slow_float16(owner)
        with network_scope(strategy, self.precision_):
            inputs = keras.Input(shape=(*self.image_size_, self.n_channels_), name="image")
            low, high = self.input_range_
            span = (high - low) or 1.0
            x = keras.layers.Rescaling(1.0 / span, offset=-low / span, name="to_unit_range")(inputs)
            for layer in augmentation_layers(self.augment, seed=seed):
                x = layer(x)
            outputs = self._build_network(x, n_classes)
            return keras.Model(inputs, outputs, name=owner)

    def _training_data(
        self, images: Images, y_enc, train, val, seed, sample_weight=None
    ) -> TrainingData:
        """The fit's :class:`~imgclf._trainingdata.TrainingData`: its samples,
        split, weights (``sample_weight`` and the class weights) and seed; the
        input pipeline is built when a stage first asks for it."""
        return TrainingData(
            images=images,
            y=y_enc,
            train=train,
            val=val,
            seed=seed,
            batch_size=self.batch_size_,
            dataset=self._training_dataset,
            sample_weight=sample_weight,
            class_weight=self._class_weight(y_enc[train]),
        )

    def _training_dataset(self, images: Images, y, sample_weight, *, shuffle, seed=None) -> dict:
        """Keyword arguments of ``model.fit`` for training or hold-out images."""
        return self._dataset(images, y, seed=seed, shuffle=shuffle, sample_weight=sample_weight)

    def _class_weight(self, y_enc):
        cw = self.class_weight
        if getattr(self, "multilabel_", False):
            multilabel.check_class_weight(self)
        if cw is None:
            return None
        if cw == "balanced":
            present = np.unique(y_enc)
            weights = compute_class_weight("balanced", classes=present, y=y_enc)
            return {int(c): float(w) for c, w in zip(present, weights, strict=True)}
        labels = list(cw)
        index = class_index(self.classes_, labels)
        unknown = [label for label, i in zip(labels, index, strict=True) if i < 0]
        if unknown:
            raise InputError(
                f"class_weight names labels {unknown} that are not in y; the classes are "
                f"{self.classes_.tolist()}."
            )
        weights = {int(i): float(cw[label]) for label, i in zip(labels, index, strict=True)}
        return {i: weights.get(i, 1.0) for i in range(len(self.classes_))}


def _weighted_only(images: Images, y_enc, weight):
    """The samples of weight > 0 (all of them without weights): an image of
    weight 0 is left out of the fit, as if it were not there."""
    if weight is None or weight.all():
        return images, y_enc, weight
    keep = np.flatnonzero(weight)
    return images.subset(keep), y_enc[keep], weight[keep]


__all__ = ["PrepareFitMixin"]
