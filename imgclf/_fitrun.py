"""What one ``fit`` call has done so far, so a failure leaves the estimator consistent.

A :class:`FitRun` lives for one ``fit``. Its Keras callback (added to every
training stage by ``BaseImageClassifier._run_stage``) records each epoch's
metrics, keeps the weights the estimator would keep if training stopped now
(the best by the monitored loss with early stopping, as Keras's
``restore_best_weights`` would; else the last epoch's) and stops training with
:class:`~imgclf.exceptions.TrainingError` when the loss is no longer a finite
number. The estimator's state before the fit is held by :func:`snapshot` and
put back by :func:`restore` when a fit fails before its first epoch ends (or
diverges); after that, an interrupted fit keeps the new network, the best
weights so far and the history of the epochs that ran (the skorch and Keras
habit: ``KeyboardInterrupt`` stops training, what was learnt stays).
"""

from __future__ import annotations

import copy
import math

from ._backend import get_keras
from .exceptions import TrainingError

#: A fit whose kept loss is no better than guessing (``log(n_classes)``) after
#: some epoch's training loss exceeded this many times that has diverged:
#: a network guessing uniformly scores ``log(n_classes)``; only confidently
#: wrong answers, what too large a step produces, score several times more.
DIVERGED_LOSS_FACTOR = 3.0


class FitRun:
    """The epochs one ``fit`` has completed, over all its training stages.

    Parameters
    ----------
    keep_best : bool
        Keep the weights of the best epoch by the monitored loss (early
        stopping on); otherwise those of the last completed epoch.
    min_delta : float
        Improvements smaller than this do not count (as for early stopping).
    """

    def __init__(self, *, keep_best: bool, min_delta: float, estimator: str = "fit"):
        self.keep_best = keep_best
        self.min_delta = min_delta
        self.estimator = estimator
        self.history: dict[str, list[float]] = {}
        self.epochs = 0  # epochs completed in this fit, every stage together
        self.stage = 0
        self.best = math.inf
        self.best_epoch = 0
        self.kept = None  # (model, weights) the estimator keeps if training stops now

    def callback(self, model, monitor: str):
        """The Keras callback recording one stage that trains ``model``."""
        self.stage += 1
        if self.kept is not None:
            # An earlier stage ended normally, so ``model`` (the whole network)
            # now holds what that stage chose: that is the fallback until this
            # stage does better.
            self.kept = (model, model.get_weights())
        return _recorder_class()(self, monitor)

    def epoch_ended(self, model, monitor: str, logs: dict) -> None:
        for key, value in logs.items():
            self.history.setdefault(key, []).append(float(value))
        self.history.setdefault("stage", []).append(float(self.stage))
        self.epochs += 1
        broken = [
            f"{key}={float(logs[key])}"
            for key in ("loss", "val_loss")
            if key in logs and not math.isfinite(float(logs[key]))
        ]
        if broken:
            raise TrainingError(
                f"{self.estimator} stopped: the loss is no longer a number at epoch "
                f"{self.epochs} ({', '.join(broken)}); training diverged. The estimator is "
                "left as it was before this fit. Likely fixes: 1. a smaller learning_rate "
                "(e.g. 10 times smaller); 2. images in a usual pixel scale (uint8 0-255 or "
                "floats 0-1), without extreme values."
            )
        value = float(logs.get(monitor, math.nan))
        improved = value < self.best - self.min_delta
        if improved:
            self.best = value
        if self.kept is None or improved or not self.keep_best:
            self.kept = (model, model.get_weights())
            self.best_epoch = self.epochs

    def restore_kept(self) -> None:
        """Put the kept weights back (training stopped mid-epoch)."""
        if self.kept is not None:
            model, weights = self.kept
            model.set_weights(weights)


_RECORDER: list = []


def _recorder_class():
    """The callback class, made on first use so ``import imgclf`` stays light."""
    if not _RECORDER:
        keras = get_keras()

        class EpochRecorder(keras.callbacks.Callback):
            def __init__(self, run: FitRun, monitor: str):
                super().__init__()
                self.run = run
                self.monitor = monitor

            def on_epoch_end(self, epoch, logs=None):
                self.run.epoch_ended(self.model, self.monitor, dict(logs or {}))

        _RECORDER.append(EpochRecorder)
    return _RECORDER[0]


# ------------------------------------------------------------ fitted state
def snapshot(estimator, params) -> dict:
    """Everything ``fit`` may change on ``estimator``: its attributes other
    than the parameters ``params`` (the network object itself, and when a
    warm start will train it in place, its weights too)."""
    state = {k: v for k, v in vars(estimator).items() if k not in params}
    saved = {"state": state, "history": copy.deepcopy(state.get("history_"))}
    model = state.get("model_")
    if model is not None and estimator.warm_start:
        saved["weights"] = model.get_weights()
    return saved


def restore(estimator, saved: dict, params) -> None:
    """Put back a :func:`snapshot`: the estimator is as it was before ``fit``."""
    for key in [k for k in vars(estimator) if k not in params]:
        del estimator.__dict__[key]
    estimator.__dict__.update(saved["state"])
    if saved["history"] is not None:
        estimator.__dict__["history_"] = saved["history"]
    if "weights" in saved:
        estimator.model_.set_weights(saved["weights"])


def collapse_message(history: dict, n_classes: int, monitor: str, keep_best: bool):
    """A warning's text when a finished fit diverged into a useless network,
    else None: its kept loss is no better than guessing while some epoch's
    loss blew far past it (``learning_rate=1e4`` on digits: the loss stays
    finite, in the thousands, and every image gets one class)."""
    values = history.get(monitor) or []
    losses = history.get("loss") or []
    if not values or not losses:
        return None
    kept = min(values) if keep_best else values[-1]
    chance = math.log(n_classes)
    worst = max(losses)
    if kept < chance or worst <= DIVERGED_LOSS_FACTOR * chance:
        return None
    return (
        f"training diverged: the {monitor} of the network kept is {kept:.4g}, no better than "
        f"guessing among {n_classes} classes ({chance:.3g}), and the training loss reached "
        f"{worst:.4g}. Its predictions are not to be trusted. Likely fixes: 1. a smaller "
        "learning_rate (e.g. 10 times smaller); 2. images in a usual pixel scale (uint8 0-255 "
        "or floats 0-1)."
    )
