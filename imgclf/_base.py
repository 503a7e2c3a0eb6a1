"""The scikit-learn estimator shared by every imgclf classifier.

One place owns the contract. ``fit`` is a short list of named steps: check
the parameters, check the data, encode the labels, decide the input spec,
hold out a validation split, build the network, train it. A subclass says how
to build its network (:meth:`BaseImageClassifier._build_network`) and, if it
trains in several stages, which ones (:meth:`BaseImageClassifier._train`);
every stage of every estimator runs through
:meth:`BaseImageClassifier._run_stage`.

This module is the outline: the hooks a subclass overrides, scikit-learn's
methods, ``fit`` and its steps in order, and the input pipeline prediction
and training share. The steps themselves come from mixins, one module each:
:class:`imgclf._fitprep.PrepareFitMixin` (everything before training, warm
starts included), :class:`imgclf._stagerun.RunStageMixin` (a training stage),
:class:`imgclf._fitfinish.FinishFitMixin` (everything after it). What each
parameter accepts is in :mod:`imgclf._baseparams`. Prediction comes from
:class:`imgclf._inference.PredictMixin`, saving and pickling from
:class:`imgclf._persist.PersistMixin`, the model card from
:class:`imgclf._card.CardMixin`, the learning-rate sweep from
:func:`imgclf.lrfind.find`.
"""

from __future__ import annotations

import time
import warnings

from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils import TransformerTags

import imgclf._baseparams as baseparams
import imgclf._fitfinish as fitfinish
import imgclf._fitprep as fitprep
import imgclf._pipeline as pipeline
import imgclf._stagerun as stagerun

from ._calibration import set_temperature
from ._card import CardMixin, fit_outcome
from ._fitrun import FitRun, restore, snapshot
from ._inference import PredictMixin
from ._params import check_params, did_you_mean
from ._persist import PersistMixin
from ._scan import naming_bad_files
from ._training import (
    EARLY_STOPPING_MIN_DELTA,
    best_epoch,
    count_fitting,
    early_stopping_start,
    refresh_batchnorm,
)
from ._trainingdata import TrainingData
from ._validation import Images
from .exceptions import TrainingError

#: The dropout rule the estimators' tables share (kept here: their modules
#: import it with the base class).
DROPOUT = baseparams.DROPOUT


class BaseImageClassifier(
    fitprep.PrepareFitMixin,
    stagerun.RunStageMixin,
    fitfinish.FinishFitMixin,
    PredictMixin,
    ClassifierMixin,
    PersistMixin,
    CardMixin,
    BaseEstimator,
):
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

    #: What each parameter accepts (the table is in :mod:`imgclf._baseparams`,
    #: the rules' machinery in :mod:`imgclf._params`); subclasses extend it
    #: with ``{**BaseImageClassifier._parameter_rules, ...}``.
    _parameter_rules = baseparams.PARAMETER_RULES

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
        :meth:`_prepare_fit`, :meth:`_train`, the BatchNorm refresh, then the
        steps of :class:`~imgclf._fitfinish.FinishFitMixin`."""
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

    # --------------------------------- the input pipeline (training and prediction)
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


__all__ = ["BaseImageClassifier"]
