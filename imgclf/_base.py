"""The scikit-learn estimator shared by every imgclf classifier.

One place owns the contract. ``fit`` is a short list of named steps: check
the parameters, check the data, encode the labels, decide the input spec,
hold out a validation split, build the network, train it. A subclass says how
to build its network (:meth:`BaseImageClassifier._build_network`) and, if it
trains in several stages, which ones (:meth:`BaseImageClassifier._train`);
every stage of every estimator runs through
:meth:`BaseImageClassifier._run_stage`. Prediction comes from
:class:`imgclf._inference.PredictMixin`, the learning-rate sweep from
:func:`imgclf.lrfind.find`.
"""

from __future__ import annotations

import contextlib
import copy
import numbers
import time
import warnings
from functools import partial

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.model_selection import StratifiedShuffleSplit
from sklearn.utils import TransformerTags
from sklearn.utils.class_weight import compute_class_weight

import imgclf._multilabel as multilabel
import imgclf._pipeline as pipeline

from ._backend import get_keras, released_gradient_functions, resolve_seed, seeded
from ._calibration import fit_temperature, set_temperature, temperature_layer
from ._card import CardMixin, fit_facts, fit_outcome
from ._checkpoint import data_fingerprint, params_fingerprint
from ._devices import (
    PRECISIONS,
    global_batch,
    is_strategy,
    network_scope,
    optimizer,
    resolve_precision,
    resolve_strategy,
    uneven_first_batch_explained,
    warn_slow_float16,
)
from ._fitrun import FitRun, collapse_message, restore, snapshot
from ._inference import PredictMixin, feature_model, tta_views
from ._netparts import CLASSIFIER_LAYER
from ._params import (
    BOOLEAN,
    NONE,
    PATH,
    RANDOM_STATE,
    Instance,
    Integer,
    Number,
    Options,
    Rule,
    check_params,
    did_you_mean,
    is_int,
    param,
)
from ._persist import PersistMixin
from ._scan import ON_BAD_FILE, ON_BAD_FILE_MEANING, naming_bad_files
from ._training import (
    EARLY_STOPPING_MIN_DELTA,
    LR_SCHEDULES,
    batchnorm_sample_size,
    best_epoch,
    collect_garbage,
    count_fitting,
    early_stopping_start,
    holdout_size,
    refresh_batchnorm,
    resolve_batch_size,
    resolve_epochs,
    stage_callbacks,
)
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
from ._vectorfit import fit_vectors, takes_vectors
from .augment import PRESETS, augment_problem, augmentation_layers
from .exceptions import InputError, TrainingError


def _is_callback_list(value) -> bool:
    if not isinstance(value, (list, tuple)):
        return False
    return all(isinstance(cb, get_keras().callbacks.Callback) for cb in value)


#: Rules shared by several estimators' tables.
SIZE = param(
    NONE,
    Integer(1),
    Rule(
        lambda v: isinstance(v, (tuple, list)) and len(v) == 2 and all(is_int(s, 1) for s in v),
        "(height, width)",
    ),
)
DROPOUT = param(Number(0, 1, closed="left"))


class BaseImageClassifier(PredictMixin, ClassifierMixin, PersistMixin, CardMixin, BaseEstimator):
    """Base class: the scikit-learn contract around a Keras network.

    Not meant to be used directly; see :class:`imgclf.CNNClassifier` and
    :class:`imgclf.TransferClassifier`.
    """

    # Size used for file paths when ``image_size`` is None (arrays keep their own).
    _default_path_size = (64, 64)
    # imgclf.load accepts only objects that say they are imgclf estimators.
    _imgclf_estimator = True
    # Whether history_ has a "stage" entry (estimators training in stages).
    _stage_in_history = False
    # Attributes a fit's steps may keep while it runs; every fit removes them at its end.
    _per_fit_state: tuple[str, ...] = ()

    #: What each parameter accepts (see :mod:`imgclf._params`); subclasses
    #: extend it with ``{**BaseImageClassifier._parameter_rules, ...}``.
    _parameter_rules = {
        "epochs": param(Integer(1)),
        "batch_size": param(Options("auto"), Integer(1)),
        "learning_rate": param(Number(0, closed="neither"), expected="a number > 0, e.g. 1e-3"),
        "lr_schedule": param(
            NONE,
            Options(*LR_SCHEDULES),
            expected="'plateau', 'one_cycle', 'cosine' or None (a constant rate)",
            suggest=LR_SCHEDULES,
        ),
        "image_size": SIZE,
        "color_mode": param(
            Options("auto", "grayscale", "rgb"),
            expected="'auto' (follow the data), 'grayscale' or 'rgb'",
            suggest=("auto", "grayscale", "rgb"),
        ),
        "augment": param(
            NONE,
            Options(*PRESETS),
            Instance(dict, list, tuple, text="a dict or a list of Keras layers"),
            check=augment_problem,
            suggest=tuple(PRESETS),
        ),
        "early_stopping": param(BOOLEAN),
        "patience": param(Integer(0)),
        "validation_fraction": param(
            Number(0, 1, closed="left"), expected="a number in [0, 1); 0.0 means no hold-out"
        ),
        "class_weight": param(
            NONE, Options("balanced"), Instance(dict, text="a dict {label: weight}")
        ),
        "random_state": param(RANDOM_STATE),
        "verbose": param(
            Options(0, 1, 2), expected="0 (silent), 1 (progress bar) or 2 (one line per epoch)"
        ),
        "warm_start": param(BOOLEAN),
        "calibrate": param(BOOLEAN),
        "callbacks": param(
            NONE, Rule(_is_callback_list, "a list of keras.callbacks.Callback objects")
        ),
        "checkpoint": param(NONE, PATH, expected="None or a file path"),
        "on_bad_file": param(
            Options(*ON_BAD_FILE), expected=ON_BAD_FILE_MEANING, suggest=ON_BAD_FILE
        ),
        "cache": param(
            NONE,
            Options("memory"),
            PATH,
            expected="None (stream from disk), 'memory' or a folder path",
        ),
        "tta": param(
            Integer(0),
            expected="an integer >= 0: 0 predicts on the images as given, n averages over "
            "them and n - 1 flipped or shifted views",
        ),
        "precision": param(
            Options(*PRECISIONS),
            expected="'auto' (mixed_float16 on GPUs of compute capability >= 7.0, else "
            "float32), 'float32', 'mixed_float16' or 'mixed_bfloat16'",
            suggest=PRECISIONS,
        ),
        "distribute": param(
            NONE,
            Options("auto"),
            Rule(is_strategy, ""),
            expected="None (one device), 'auto' (all visible GPUs when there are 2 or more) "
            "or a tf.distribute.Strategy",
            suggest=("auto",),
        ),
    }

    # ------------------------------------------------------------------ hooks
    def _check_params_together(self) -> list[str]:
        """Problems that involve several parameters (each one valid alone)."""
        return []

    def _network_channels(self, channels: int) -> int:
        """Number of channels the network takes, given the training data's."""
        return channels

    def _default_image_size(self, data_size: tuple[int, int] | None) -> tuple[int, int]:
        """Size the network takes when ``image_size`` is None, given the arrays'
        ``(height, width)`` (``None`` for file paths)."""
        return data_size or tuple(self._default_path_size)

    # ---------------------------------------- what PredictMixin reads of its host
    def _prediction_input(self, images: Images, batch_size: int) -> dict:
        return self._dataset(images, batch_size=batch_size)

    def _reading(self, images: Images, what: str):
        return self._naming_bad_files(images, what)

    def _parameter_problem(self, name: str, value) -> str | None:
        return type(self)._parameter_rules[name].problem(name, value)

    def _build_network(self, inputs, n_classes: int):
        """Return the output tensor (class probabilities) for ``inputs``, a
        Keras tensor of images in 0-1 pixel space after augmentation."""
        raise NotImplementedError

    def _train(self, model, data: TrainingData, run: FitRun) -> tuple[dict, int]:
        """Train ``model`` on ``data`` and
        return its history and the index of the epoch whose weights it kept
        (:meth:`_kept_epoch`). One stage here; subclasses may run several,
        each through :meth:`_run_stage`."""
        history = self._run_stage(
            model, data, run, epochs=self.epochs_, learning_rate=self.learning_rate
        )
        return history, self._kept_epoch(history, self.epochs_)

    def _kept_epoch(self, history: dict, epochs: int) -> int:
        """The epoch of a stage's ``history`` (planned for ``epochs``) whose
        weights :meth:`_run_stage` left in the network: :func:`imgclf._training.best_epoch`
        on the loss early stopping watched."""
        monitor = "val_loss" if "val_loss" in history else "loss"
        return best_epoch(
            history[monitor],
            min_delta=EARLY_STOPPING_MIN_DELTA,
            start=early_stopping_start(self.lr_schedule, epochs),
            keep_best=bool(self.early_stopping),
        )

    def _stage_plan(self) -> list[tuple[int, float]]:
        """Each training stage's ``(epochs, learning_rate)``, as :meth:`_train`
        runs them (a checkpoint is checked against it)."""
        return [(self.epochs_, self.learning_rate)]

    # --------------------------------------------------------------- sklearn
    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.non_deterministic = False
        tags.input_tags.allow_nan = False
        tags.input_tags.string = True  # a 1-D array of strings is a list of file paths
        tags.classifier_tags.multi_label = True  # y may be a 0/1 indicator matrix
        # transform gives float32 features, whatever the input's dtype. The
        # tag is set because the estimator has transform; it is still a
        # classifier, with no fit_transform (a Pipeline calls fit, then transform).
        tags.transformer_tags = TransformerTags(preserves_dtype=[])
        return tags

    def set_params(self, **params):
        """Set parameters, as scikit-learn's ``set_params`` does.

        Parameters
        ----------
        **params : dict
            Parameter names and values (``name__sub`` for nested ones).

        Returns
        -------
        self : object
            The estimator.

        Raises
        ------
        ValueError
            For a name that is not a parameter, with the closest valid one.
        """
        valid = self.get_params(deep=True)
        for key in params:
            if key.split("__")[0] not in valid:
                raise ValueError(
                    f"Invalid parameter {key!r} for estimator {type(self).__name__}"
                    f"{did_you_mean(key, valid)}. Valid parameters are: {sorted(valid)}."
                )
        return super().set_params(**params)

    def __sklearn_is_fitted__(self) -> bool:
        return hasattr(self, "model_")

    # ------------------------------------------------------------------- fit
    def fit(self, X, y, sample_weight=None):
        """Train the network on images ``X`` with labels ``y``.

        Parameters
        ----------
        X : array-like or sequence of paths
            Images ``(n, h, w)`` or ``(n, h, w, c)`` (uint8 0-255 or float 0-1),
            flattened square images ``(n, d)``, or a 1-D list / array / Series
            of image file paths.
        y : array-like of shape (n,) or (n, n_labels)
            Class labels of any type (str, int, bool...), one per image. For
            multi-label targets (any number of labels per image, none
            included): a 0/1 indicator matrix (what scikit-learn's
            ``MultiLabelBinarizer`` gives; ``classes_`` is then
            ``arange(n_labels)``), or a list of label collections (lists,
            tuples or sets; ``classes_`` the sorted labels). Multi-label
            fits train one sigmoid per label on binary cross-entropy and
            tune ``thresholds_`` on the hold-out.
        sample_weight : array-like of shape (n,), optional
            How much each image counts in the loss (finite, >= 0, not all 0),
            multiplied with ``class_weight``. Only their ratios matter: they
            are scaled to average 1 over the training images. An image of
            weight 0 is left out of the fit entirely, as if it were not in
            ``X`` (``classes_`` still lists its label). The hold-out's weights
            weight its loss too (``val_loss``, which early stopping watches),
            so early stopping judges the loss that training minimises;
            ``class_weight`` weights only the training loss, as in Keras.
            Passed by ``GridSearchCV(...).fit(X, y, sample_weight=w)``.

        Returns
        -------
        self : object
            The fitted estimator.

        Raises
        ------
        imgclf.exceptions.InputError
            For invalid parameters (all listed at once), ``X``, ``y`` or
            ``sample_weight``.
        imgclf.exceptions.ImageFileError
            For unreadable image files with ``on_bad_file="error"``, or when
            none can be read.
        imgclf.exceptions.TrainingError
            When the loss stops being a finite number (training diverged).

        See Also
        --------
        predict : labels for new images.
        imgclf.load_folder : ``(paths, labels)`` from a folder per class.

        Notes
        -----
        Whatever stops a fit (an error, ``KeyboardInterrupt``) propagates.
        If it comes before the first epoch has ended, or is a
        :class:`~imgclf.exceptions.TrainingError`, the estimator is left
        exactly as it was before this call. Otherwise it keeps the new
        network with the weights early stopping would have kept so far, its
        ``classes_`` and the ``history_`` of the epochs that ran, sets
        ``interrupted_ = True`` and warns.
        """
        check_params(self)  # first: the fit's run below reads checkpoint
        params = self.get_params(deep=False)
        before = snapshot(self, params)
        run = FitRun(
            keep_best=bool(self.early_stopping),
            min_delta=EARLY_STOPPING_MIN_DELTA,
            estimator=f"{type(self).__name__}.fit",
            checkpoint=self.checkpoint,
        )
        try:
            self._fit(X, y, sample_weight, run)
        except BaseException as exc:
            if run.new_epochs == 0 or isinstance(exc, TrainingError):
                restore(self, before, params)
            else:
                # After an epoch has ended, a stopped fit keeps what it learnt.
                history, message = run.interrupted(exc, keep_stage=self._stage_in_history)
                self._record_history(
                    history,
                    bool(self.warm_start) and "model_" in before["state"],
                    kept=run.best_epoch - 1,
                )
                self.interrupted_ = True
                warnings.warn(message, UserWarning, stacklevel=2)
            raise
        finally:
            # What the fit's steps kept for themselves (e.g. the user's backbone, loaded once).
            for key in self._per_fit_state:
                self.__dict__.pop(key, None)
        run.finished()
        return self

    def _fit(self, X, y, sample_weight, run: FitRun):
        """The steps of :meth:`fit`, in order (after :func:`check_params`):
        :meth:`_prepare_fit`, :meth:`_train`, the BatchNorm refresh."""
        warm = bool(self.warm_start) and hasattr(self, "model_")
        started = time.perf_counter()
        with self._prepare_fit(X, y, sample_weight, run=run) as (model, data):
            self.temperature_ = 1.0
            set_temperature(model, 1.0)  # training is never scaled
            history, kept = self._train(model, data, run)
            seen = data.n_train * max(1, len(history.get("loss", ())))
            refresh_batchnorm(
                self.model_,
                lambda: self._batchnorm_sample(data.images, data.train, data.seed, seen),
                judge=self._holdout_loss(data),
            )
            self.temperature_ = self._calibrate(data)
            self._tune_thresholds(data.images, data.y, data.val)
        count_fitting(time.perf_counter() - started)
        self._record_history(history, warm, kept=kept)
        monitor = "val_loss" if data.val is not None else "loss"
        self.__dict__["_card_facts"]["fit"] = fit_outcome(history, kept + 1, monitor)
        self.interrupted_ = False
        self._warn_if_diverged(history)
        return self

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

    def _calibrate(self, data: TrainingData) -> float:
        """Fit the temperature on the hold-out's logits (weighted by its
        sample weights) and set it in the network (see
        :mod:`imgclf._calibration`); 1.0 with ``calibrate=False``, without a
        hold-out or a temperature layer (a network saved before it), and for
        multi-label targets (their ``thresholds_`` are tuned instead)."""
        if (
            not self.calibrate
            or data.val is None
            or temperature_layer(self.model_) is None
            or getattr(self, "multilabel_", False)
        ):
            return 1.0
        logits = self._holdout_logits(data)
        weights = None if data.sample_weight is None else data.sample_weight[data.val]
        temperature = fit_temperature(logits, data.y[data.val], weights)
        set_temperature(self.model_, temperature)
        return temperature

    def _holdout_logits(self, data: TrainingData) -> np.ndarray:
        """The logits of the hold-out's images, by the fitted network (a
        subclass may answer from what the fit already computed)."""
        return self._network_output(
            feature_model(self.model_, CLASSIFIER_LAYER),
            data.images.subset(data.val),
            tta_views(1, self.image_size_, flip=False),
            "fit",
        )

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

    def _holdout_loss(self, data: TrainingData):
        """A function giving the network's loss on the hold-out, or None without one."""
        if not data.has_holdout:
            return None
        return lambda: data.holdout_loss(self.model_)

    def _batchnorm_sample(self, images: Images, train, seed, images_seen=None) -> list:
        """Batches of network input from a random sample of the training images,
        for :func:`imgclf._training.refresh_batchnorm` (``images_seen``: the
        images the fit's epochs went through)."""
        shape = (*self.image_size_, self.n_channels_)
        size = batchnorm_sample_size(len(train), shape, images_seen)
        rng = np.random.default_rng(seed)
        chosen = np.sort(rng.choice(train, size=size, replace=False))
        return [np.asarray(batch) for batch in self._predict_batches(images.subset(chosen))]

    def _naming_bad_files(self, images: Images, what: str):
        """A file that fails to decode while streaming raises ``ImageFileError``
        naming it, not TensorFlow's error (see :func:`imgclf._scan.naming_bad_files`)."""
        return naming_bad_files(
            images.paths,
            images.infos,
            channels=self.n_channels_,
            size=self.image_size_,
            source=f"{type(self).__name__}.{what}",
        )

    def _dataset(
        self,
        images: Images,
        y=None,
        *,
        seed=None,
        shuffle=False,
        batch_size=None,
        sample_weight=None,
    ) -> dict:
        """``pipeline.make_dataset`` for this network, in batches of
        ``batch_size`` (the training batch ``batch_size_`` by default)."""
        return pipeline.make_dataset(
            images,
            y,
            size=self.image_size_,
            channels=self.n_channels_,
            batch_size=batch_size or self.batch_size_,
            shuffle=shuffle,
            seed=seed,
            cache=self.cache,
            sample_weight=sample_weight,
        )

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

    def _compile(self, model, learning_rate: float, metrics=("accuracy",)) -> None:
        # In the scope of the strategy the model was built in (the default
        # one without), so the optimizer's variables are mirrored like the model's.
        with model.distribute_strategy.scope():
            model.compile(
                optimizer=optimizer(learning_rate, getattr(self, "precision_", "float32")),
                loss=multilabel.loss(self),
                metrics=multilabel.metrics(self, metrics),
            )

    def _run_stage(
        self, model, data: TrainingData, run: FitRun, *, epochs: int, learning_rate: float
    ) -> dict:
        """Compile ``model`` and train it for up to ``epochs`` on ``data`` with
        the learning-rate schedule (each stage its own cycle, peaking at
        ``learning_rate``) and early stopping: one training stage. Returns its
        history as lists of floats."""
        self._compile(model, learning_rate)
        monitor = "val_loss" if data.has_holdout else "loss"
        callbacks = stage_callbacks(
            monitor,
            learning_rate=learning_rate,
            epochs=epochs,
            patience=self.patience,
            early_stopping=self.early_stopping,
            lr_schedule=self.lr_schedule,
        )
        recorder, initial_epoch, earlier = run.start_stage(model, monitor, callbacks)
        if recorder is None:  # completed before, by the fit the checkpoint is from
            return earlier
        # After the schedule's (which logs the learning rate), before the
        # user's (so an epoch one of them interrupts still counts).
        callbacks.append(recorder)
        callbacks.extend(self.callbacks or ())
        # Feature vectors in memory (TransferClassifier's frozen stage) train in
        # imgclf's light loop: model.fit's per-epoch machinery would cost more
        # than the arithmetic.
        fit = partial(fit_vectors, model) if takes_vectors(model, data) else model.fit
        with uneven_first_batch_explained(model, type(self).__name__):
            history = fit(
                epochs=epochs,
                initial_epoch=initial_epoch,
                callbacks=callbacks,
                verbose=self.verbose,
                **data.fit_kwargs(),
            )
        history = {k: [float(v) for v in values] for k, values in history.history.items()}
        return {k: earlier.get(k, []) + history.get(k, []) for k in {**earlier, **history}}

    def _tune_thresholds(self, images: Images, y_enc, val) -> None:
        """Multi-label fits: each label's threshold (``thresholds_``), tuned on
        the hold-out for the best F1 (0.5 without a hold-out)."""
        if not getattr(self, "multilabel_", False):
            self.__dict__.pop("thresholds_", None)
            return
        if val is None:
            self.thresholds_ = multilabel.default_thresholds(y_enc.shape[1])
            return
        proba = self._proba(images.subset(val), self._tta_views())
        self.thresholds_ = multilabel.tune_thresholds(y_enc[val], proba)

    def _warn_if_diverged(self, history: dict) -> None:
        monitor = "val_loss" if "val_loss" in history else "loss"
        offset = len(self.history_["loss"]) - len(history["loss"])  # a warm start's earlier epochs
        message = collapse_message(
            history,
            2 if getattr(self, "multilabel_", False) else len(self.classes_),
            monitor,
            kept=self.best_epoch_ - offset,
            weighted=self.class_weight is not None,
        )
        if message is not None:
            warnings.warn(f"{type(self).__name__}.fit: {message}", UserWarning, stacklevel=4)

    def _record_history(self, history: dict, warm: bool, *, kept: int) -> None:
        """Set ``history_`` (extended on a warm start) and ``best_epoch_``, the
        index in it of the epoch ``kept`` of ``history``."""
        offset = 0
        if warm and hasattr(self, "history_"):
            offset = len(self.history_.get("loss", ()))
            for key, values in history.items():
                self.history_.setdefault(key, []).extend(values)
        else:
            self.history_ = history
        self.best_epoch_ = offset + int(kept)

    # ------------------------------------------------------- learning rate
    def lr_find(
        self,
        X,
        y,
        *,
        start_lr: float = 1e-7,
        end_lr: float = 10.0,
        num_steps: int = 100,
        stop_factor: float | None = 4.0,
    ):
        """Sweep the learning rate on a copy of the network and suggest one.

        A new network is built from this estimator's parameters (as ``fit``
        would build it, on one device) and trained on ``X, y`` for up to
        ``num_steps`` batches, the rate growing geometrically from
        ``start_lr`` to ``end_lr``; the sweep stops once the smoothed loss
        exceeds ``stop_factor`` times its minimum. The estimator itself, its
        parameters (a ``RandomState`` included), its fitted network and the
        global random state are left as they were (``random_state=None``
        draws the sweep's seed from NumPy's global generator, as ``fit``
        does). :class:`TransferClassifier` sweeps its first stage (the head
        on the frozen backbone). See :mod:`imgclf.lrfind`.

        Parameters
        ----------
        X : array-like or sequence of paths
            Training images, in any form :meth:`fit` takes (all of them are
            used: no hold-out).
        y : array-like of shape (n,)
            Class labels.
        start_lr : float, default=1e-7
            The first step's learning rate.
        end_lr : float, default=10.0
            The last step's learning rate.
        num_steps : int, default=100
            Batches in the sweep (the data are passed over as often as needed).
        stop_factor : float or None, default=4.0
            Stop when the smoothed loss exceeds this many times its minimum;
            None sweeps the whole range.

        Returns
        -------
        imgclf.lrfind.LRFind
            The rates, the smoothed losses and ``suggestion``, the rate
            fastai's "valley" rule picks; pass it as ``learning_rate``.

        Raises
        ------
        imgclf.exceptions.InputError
            For invalid parameters or arguments, ``X`` or ``y``.

        See Also
        --------
        imgclf.plot.plot_lr_find : draw the curve and the suggestion.
        fit : train with the suggested rate.

        Examples
        --------
        >>> from sklearn.datasets import load_digits
        >>> from imgclf import CNNClassifier
        >>> X, y = load_digits(return_X_y=True)
        >>> clf = CNNClassifier(random_state=0)
        >>> found = clf.lr_find(X[:256], y[:256], num_steps=30)
        >>> 1e-7 <= found.suggestion <= 10
        True
        >>> clf.set_params(learning_rate=found.suggestion).learning_rate == found.suggestion
        True
        """
        from . import lrfind

        return lrfind.find(
            self,
            X,
            y,
            start_lr=start_lr,
            end_lr=end_lr,
            num_steps=num_steps,
            stop_factor=stop_factor,
        )

    def _sweep_stage(self, model, data: TrainingData):
        """The network ``lr_find`` trains and its data: here the whole network
        on ``data`` as ``_training_data`` made it."""
        return model, data


def _weighted_only(images: Images, y_enc, weight):
    """The samples of weight > 0 (all of them without weights): an image of
    weight 0 is left out of the fit, as if it were not there."""
    if weight is None or weight.all():
        return images, y_enc, weight
    keep = np.flatnonzero(weight)
    return images.subset(keep), y_enc[keep], weight[keep]


__all__ = ["BaseImageClassifier"]
