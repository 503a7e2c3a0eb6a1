"""One training stage (:class:`RunStageMixin`): compile the network and
train it with the learning-rate schedule, early stopping, the fit's epoch
recorder and the user's callbacks. Every stage of every estimator runs
through :meth:`RunStageMixin._run_stage`.
"""

from __future__ import annotations

from functools import partial

import imgclf._multilabel as multilabel

from ._devices import optimizer, uneven_first_batch_explained
from ._fitrun import FitRun
from ._training import stage_callbacks
from ._trainingdata import TrainingData
from ._vectorfit import fit_vectors, takes_vectors


class RunStageMixin:
    """:meth:`_run_stage` and :meth:`_compile` of
    :class:`~imgclf._base.BaseImageClassifier`.

    The mixin reads of its host the parameters ``patience``,
    ``early_stopping``, ``lr_schedule``, ``callbacks`` and ``verbose``, the
    fitted ``precision_``, and the targets' kind through
    :mod:`imgclf._multilabel` (the loss and the metrics).
    """

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


__all__ = ["RunStageMixin"]
