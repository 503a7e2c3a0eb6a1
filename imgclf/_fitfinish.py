"""The steps of a fit after training (:class:`FinishFitMixin`): the sample
the BatchNorm refresh reads and its judge, the temperature fitted on the
hold-out, multi-label thresholds, the history (extended on a warm start) and
the warning when training collapsed.
"""

from __future__ import annotations

import warnings

import numpy as np

import imgclf._multilabel as multilabel

from ._calibration import fit_temperature, set_temperature, temperature_layer
from ._fitrun import collapse_message
from ._inference import feature_model, tta_views
from ._netparts import CLASSIFIER_LAYER
from ._training import batchnorm_sample_size
from ._trainingdata import TrainingData
from ._validation import Images


class FinishFitMixin:
    """What :class:`~imgclf._base.BaseImageClassifier` does once its network
    is trained.

    The mixin reads of its host the parameters ``calibrate`` and
    ``class_weight``; what the fit set: ``model_``, ``classes_``,
    ``multilabel_``, ``image_size_``, ``n_channels_``; and
    :class:`~imgclf._inference.PredictMixin`'s :meth:`_network_output`,
    :meth:`_proba`, :meth:`_tta_views` and :meth:`_predict_batches`. It sets
    ``thresholds_``, ``history_`` and ``best_epoch_``.
    """

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


__all__ = ["FinishFitMixin"]
