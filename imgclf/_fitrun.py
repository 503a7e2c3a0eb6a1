"""What one ``fit`` call has done so far, so a failure leaves the estimator consistent.

A :class:`FitRun` lives for one ``fit``. Its Keras callback (added to every
training stage by ``BaseImageClassifier._run_stage``) records each epoch's
metrics, keeps the weights the estimator would keep if training stopped now
(the best by the monitored loss with early stopping, as Keras's
``restore_best_weights`` would, among the epochs it watches; else the last
epoch's) and stops training with
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
import os

import numpy as np

from ._backend import get_keras
from ._checkpoint import read as read_checkpoint
from ._checkpoint import remove as remove_checkpoint
from ._checkpoint import write as write_checkpoint
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
    estimator : str
        How messages name the fit, e.g. ``"CNNClassifier.fit"``.
    checkpoint : str, optional
        The file the run writes at the end of every epoch (see
        :mod:`imgclf._checkpoint`) and may resume from.
    """

    def __init__(
        self, *, keep_best: bool, min_delta: float, estimator: str = "fit", checkpoint=None
    ):
        self.keep_best = keep_best
        self.min_delta = min_delta
        self.estimator = estimator
        self.path = None if checkpoint is None else os.fspath(checkpoint)
        self.history: dict[str, list[float]] = {}
        self.epochs = 0  # epochs in this fit's history (resumed ones included)
        self.new_epochs = 0  # epochs this call has completed itself
        self.stage = 0
        self.stage_epochs = 0
        self.watch_from = 0  # the stage's first epoch (0-based) early stopping watches
        self.best = math.inf
        self.best_epoch = 0
        self.kept = None  # (model, weights) the estimator keeps if training stops now
        self.network = None  # the whole network (a stage may train only its head)
        self.start = None  # the network's weights when the current stage began
        self.fingerprints: dict = {}
        self.resume = None  # (meta, arrays) of the checkpoint this fit resumes from

    # ----------------------------------------------------------- checkpoint
    def open_checkpoint(self, params_fingerprint: str, data_fingerprint: str) -> str | None:
        """Decide whether to resume from the checkpoint file; returns a warning's
        text when a file is there but cannot be resumed from."""
        if self.path is None:
            return None
        self.fingerprints = {"params": params_fingerprint, "data": data_fingerprint}
        if not os.path.exists(self.path):
            return None
        found = read_checkpoint(self.path)
        if isinstance(found, str):
            reason = found
        elif found[0].get("params") != params_fingerprint:
            reason = "it was written by a fit with other parameters"
        elif found[0].get("data") != data_fingerprint:
            reason = "it was written by a fit on other data (X or y differ)"
        else:
            self.resume = found
            meta = found[0]
            self.history = {k: list(v) for k, v in meta["history"].items()}
            self.epochs = meta["epochs"]
            return None
        return (
            f"{self.estimator}: not resuming from checkpoint={self.path!r}: {reason}. "
            "Training from the start; the file is replaced at the end of the first epoch."
        )

    def seed_for(self, seed: int) -> int:
        """The fit's seed: the checkpoint's when resuming, else ``seed``."""
        if self.resume is not None:
            seed = int(self.resume[0]["seed"])
        self.fingerprints["seed"] = seed
        return seed

    def _write(self, model, callbacks, *, complete: bool) -> None:
        meta = {
            **self.fingerprints,
            "stage": self.stage,
            "stage_epochs": self.stage_epochs,
            "complete": complete,
            "epochs": self.epochs,
            "history": self.history,
            "best": self.best if math.isfinite(self.best) else None,
            "best_epoch": self.best_epoch,
            "callbacks": _callback_state(callbacks, model),
        }
        arrays = {"latest": self.network.get_weights()}
        if self.kept is not None:
            arrays["kept"] = self.kept[1]
        if self.start is not None:
            arrays["start"] = self.start
        write_checkpoint(self.path, meta, arrays)

    def finished(self) -> None:
        """The fit ended normally: its checkpoint has served (as Keras's
        ``BackupAndRestore`` does, the file goes)."""
        if self.path is not None:
            remove_checkpoint(self.path)

    # --------------------------------------------------------------- stages
    def start_stage(self, model, monitor: str, callbacks: list):
        """Begin a training stage of ``model``: returns ``(recorder, initial_epoch,
        earlier)``, where ``recorder`` is None when the checkpoint says the
        stage was completed before (the network then holds its result) and
        ``earlier`` is the stage's history from the checkpoint."""
        self.stage += 1
        self.stage_epochs = 0
        self.watch_from = next(
            (cb.start_from_epoch for cb in callbacks if type(cb).__name__ == "EarlyStopping"), 0
        )
        if self.kept is not None:
            # An earlier stage ended normally, so ``model`` (the whole network)
            # now holds what that stage chose: that is the fallback until this
            # stage does better.
            self.kept = (model, model.get_weights())
        if self.path is not None and self.stage > 1:
            self.start = self.network.get_weights()
        recorder = _recorder_class()(self, monitor, callbacks)
        if self.resume is None:
            return recorder, 0, {}
        meta, arrays = self.resume
        earlier = _stage_history(meta["history"], self.stage)
        if self.stage < meta["stage"] or meta["complete"]:
            if self.stage == meta["stage"] - 1:
                self.network.set_weights(arrays["start"])
            elif self.stage == meta["stage"]:
                self.network.set_weights(arrays["latest"])
                self.resume = None
            self.kept = (model, model.get_weights())
            return None, 0, earlier
        self.network.set_weights(arrays["latest"])
        if "kept" in arrays:
            self.kept = (model, arrays["kept"])
        self.best = math.inf if meta["best"] is None else meta["best"]
        self.best_epoch = meta["best_epoch"]
        self.stage_epochs = meta["stage_epochs"]
        recorder.resumed = meta["callbacks"]
        self.resume = None
        return recorder, self.stage_epochs, earlier

    def epoch_ended(self, model, monitor: str, logs: dict, callbacks: list) -> None:
        for key, value in logs.items():
            self.history.setdefault(key, []).append(float(value))
        self.history.setdefault("stage", []).append(float(self.stage))
        self.epochs += 1
        self.new_epochs += 1
        self.stage_epochs += 1
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
        # Before the epoch early stopping starts to watch, it keeps nothing:
        # the last epoch's weights stand, and the best is counted from there.
        watched = self.stage_epochs > self.watch_from
        if not watched:
            self.best = math.inf
        improved = watched and value < self.best - self.min_delta
        if improved:
            self.best = value
        if self.kept is None or improved or not (self.keep_best and watched):
            self.kept = (model, model.get_weights())
            self.best_epoch = self.epochs
        if self.path is not None:
            self._write(model, callbacks, complete=False)

    def stage_ended(self, model, callbacks: list) -> None:
        if self.path is not None:
            self._write(model, callbacks, complete=True)

    def restore_kept(self) -> None:
        """Put the kept weights back (training stopped mid-epoch)."""
        if self.kept is not None:
            model, weights = self.kept
            model.set_weights(weights)

    def interrupted(self, exc: BaseException, *, keep_stage: bool) -> tuple[dict, str]:
        """A fit stopped by ``exc`` after an epoch has ended keeps what it
        learnt: put back the weights early stopping would have kept so far and
        return ``(history, warning)``: the history of the epochs that ran (its
        "stage" entry only with ``keep_stage``) and the warning's text."""
        self.restore_kept()
        history = dict(self.history)
        if not keep_stage:
            history.pop("stage", None)
        kept = "best" if self.keep_best else "last completed"
        return history, (
            f"{self.estimator} was stopped by {type(exc).__name__} after "
            f"{self.epochs} epoch(s). The estimator keeps the new network with the weights of "
            f"its {kept} epoch (epoch {self.best_epoch}), its classes_ and the history_ of the "
            "epochs that ran; interrupted_ is True. Call fit again to train to the end."
        )


def _stage_history(history: dict, stage: int) -> dict:
    """The epochs of one stage in a whole-fit history, without its "stage" entry."""
    stages = history.get("stage", [])
    rows = [i for i, s in enumerate(stages) if s == stage]
    return {k: [v[i] for i in rows] for k, v in history.items() if k != "stage" and rows}


# The state of the schedule and early-stopping callbacks a resumed stage carries on.
_CALLBACK_FIELDS = ("wait", "best", "best_epoch", "cooldown_counter")


def _callback_state(callbacks: list, model) -> dict:
    state = {}
    for cb in callbacks:
        name = type(cb).__name__
        if name in ("EarlyStopping", "ReduceLROnPlateau"):
            fields = {k: float(getattr(cb, k)) for k in _CALLBACK_FIELDS if hasattr(cb, k)}
            state[name] = {k: (v if math.isfinite(v) else None) for k, v in fields.items()}
    state["learning_rate"] = float(np.asarray(model.optimizer.learning_rate))
    return state


def _restore_callback_state(callbacks: list, model, state: dict, kept) -> None:
    for cb in callbacks:
        fields = state.get(type(cb).__name__)
        if fields is None:
            continue
        for key, value in fields.items():
            if value is None:
                value = math.inf if key == "best" else 0
            setattr(cb, key, value if key == "best" else int(value))
        if type(cb).__name__ == "EarlyStopping" and kept is not None:
            cb.best_weights = kept
    model.optimizer.learning_rate = state["learning_rate"]


_RECORDER: list = []


def _recorder_class():
    """The callback class, made on first use so ``import imgclf`` stays light."""
    if not _RECORDER:
        keras = get_keras()

        class EpochRecorder(keras.callbacks.Callback):
            def __init__(self, run: FitRun, monitor: str, callbacks: list):
                super().__init__()
                self.run = run
                self.monitor = monitor
                self.callbacks = callbacks  # the stage's, for their state
                self.resumed = None

            def on_train_begin(self, logs=None):
                # After early stopping's and the schedule's own (which reset them).
                if self.resumed is not None:
                    kept = self.run.kept[1] if self.run.kept is not None else None
                    _restore_callback_state(self.callbacks, self.model, self.resumed, kept)

            def on_epoch_end(self, epoch, logs=None):
                self.run.epoch_ended(self.model, self.monitor, dict(logs or {}), self.callbacks)

            def on_train_end(self, logs=None):
                self.run.stage_ended(self.model, self.callbacks)

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


def collapse_message(
    history: dict, n_classes: int, monitor: str, keep_best: bool, weighted: bool = False
):
    """A warning's text when a finished fit diverged into a useless network,
    else None: its kept loss is no better than guessing while some epoch's
    loss blew far past it (``learning_rate=1e4`` on digits: the loss stays
    finite, in the thousands, and every image gets one class). With class
    weights (``weighted``) the training loss is scaled by them, so only the
    hold-out's loss, which Keras leaves unweighted, is compared."""
    values = history.get(monitor) or []
    losses = history.get("val_loss" if weighted else "loss") or []
    if not values or not losses:
        return None
    kept = min(values) if keep_best else values[-1]
    chance = math.log(n_classes)
    worst = max(losses)
    if kept < chance or worst <= DIVERGED_LOSS_FACTOR * chance:
        return None
    which = "hold-out" if weighted else "training"
    return (
        f"training diverged: the {monitor} of the network kept is {kept:.4g}, no better than "
        f"guessing among {n_classes} classes ({chance:.3g}), and the {which} loss reached "
        f"{worst:.4g}. Its predictions are not to be trusted. Likely fixes: 1. a smaller "
        "learning_rate (e.g. 10 times smaller); 2. images in a usual pixel scale (uint8 0-255 "
        "or floats 0-1)."
    )
