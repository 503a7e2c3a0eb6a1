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
import warnings

import numpy as np

from ._backend import get_keras
from ._checkpoint import (
    Unusable,
    check_meta,
    check_seed,
    path_problem,
    read_arrays,
    read_meta,
    remove_if_same,
    set_aside,
)
from ._checkpoint import write as write_checkpoint
from ._training import best_epoch
from .exceptions import InputError, TrainingError

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
        self.stage_values: list[float] = []  # the stage's monitored loss, an epoch each
        self.best = math.inf
        self.best_epoch = 0
        self.kept = None  # (model, weights) the estimator keeps if training stops now
        self.network = None  # the whole network (a stage may train only its head)
        self.start = None  # the network's weights when the current stage began
        self.fingerprints: dict = {}
        # (meta, identity) of the checkpoint this fit may resume from, then
        # (meta, arrays) once checked whole by the first stage.
        self.resume = None
        self.plan: list[tuple[int, float]] = []  # each stage's (epochs, learning_rate)
        self.written = None  # the identity of the file the fit wrote or resumed from
        self.written_path = self.path

    # ----------------------------------------------------------- checkpoint
    def check_path(self) -> None:
        """Refuse, before anything else, a ``checkpoint`` that cannot be a file."""
        if self.path is None:
            return
        problem = path_problem(self.path)
        if problem is not None:
            example = os.path.join(self.path, "fit.ckpt") if os.path.isdir(self.path) else None
            fix = f"e.g. checkpoint={example!r}" if example else "one that is not there yet"
            raise InputError(
                f"{self.estimator}: checkpoint={self.path!r} cannot be used: {problem}. "
                f"checkpoint is the file a fit saves its progress to: pass a file path ({fix})."
            )

    def open_checkpoint(self, params_fingerprint: str, data_fingerprint: str) -> str | None:
        """Decide whether to resume from the checkpoint file; returns a warning's
        text when a file is there but cannot be resumed from. Only its header
        is read here; the whole file is checked against the network before
        the first stage (:meth:`start_stage`)."""
        if self.path is None:
            return None
        self.fingerprints = {"params": params_fingerprint, "data": data_fingerprint}
        if not os.path.lexists(self.path):
            return None
        try:
            meta, identity = read_meta(self.path)
        except Unusable as exc:
            return self._discard(str(exc))
        if meta.get("params") != params_fingerprint:
            reason = "it was written by a fit with other parameters"
        elif meta.get("data") != data_fingerprint:
            reason = "it was written by a fit on other data (X or y differ)"
        else:
            self.resume = (meta, identity)
            return None
        # An imgclf checkpoint of another fit: the library's own file, replaced.
        return (
            f"{self.estimator}: not resuming from checkpoint={self.path!r}: {reason}. "
            "Training from the start; the file is replaced at the end of the first epoch."
        )

    def _discard(self, reason: str) -> str:
        """Set aside an unusable checkpoint file (never deleted: it may not be
        the library's) and forget it; returns the warning's text."""
        self.resume, self.written = None, None
        self.history, self.epochs = {}, 0
        try:
            moved = f"it was renamed to {set_aside(self.path)!r}"
            then = "the new one is written at the end of the first epoch"
        except OSError as exc:
            moved = f"it could not be renamed ({type(exc).__name__}: {exc}) and is left as it is"
            then = "this fit writes no checkpoint"
            self.path = None
        return (
            f"{self.estimator}: checkpoint={self.written_path!r} cannot be resumed from: "
            f"{reason}. {moved[0].upper()}{moved[1:]}; training from the start ({then})."
        )

    def seed_for(self, seed: int, *, fixed: bool = False) -> int:
        """The fit's seed: the checkpoint's when resuming, else ``seed``; with
        ``fixed`` (an integer ``random_state``) they must be the same."""
        if self.resume is not None:
            try:
                found = check_seed(self.resume[0])
                if fixed and found != seed:
                    raise Unusable(f"its seed is not random_state's ({seed})")
                seed = found
            except Unusable as exc:
                warnings.warn(self._discard(str(exc)), UserWarning, stacklevel=3)
        self.fingerprints["seed"] = seed
        return seed

    def _load_resume(self, model, callbacks: list) -> None:
        """Check the whole checkpoint against this fit (its stages, callbacks
        and network) and load its weights, or set it aside and start afresh."""
        meta, identity = self.resume
        # Some fields are made by the callback's on_train_begin, yet to run.
        states = {
            _stateful_kind(cb): set(_CALLBACK_FIELDS)
            for cb in callbacks
            if _stateful_kind(cb) is not None
        }
        try:
            check_meta(meta, self.plan, states)
            whole = _shapes(self.network)
            shapes = {"latest": whole, "kept": whole if meta["stage"] > 1 else _shapes(model)}
            if meta["stage"] > 1:
                shapes["start"] = whole
            arrays = read_arrays(self.path, identity, shapes)
        except (Unusable, TypeError, ValueError, KeyError, IndexError) as exc:
            # check_meta raises Unusable; the others are a safety net that
            # still names what was wrong.
            reason = str(exc) if isinstance(exc, Unusable) else f"{type(exc).__name__}: {exc}"
            warnings.warn(self._discard(reason), UserWarning, stacklevel=2)
            return
        self.resume = (meta, arrays)
        self.written = identity
        self.history = {k: list(v) for k, v in meta["history"].items()}
        self.epochs = meta["epochs"]

    def _write(self, model, callbacks, *, complete: bool) -> None:
        if self.path is None:
            return
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
        try:
            self.written = write_checkpoint(self.path, meta, arrays)
        except OSError as exc:
            # Training goes on: losing the fit to a full disk would be worse.
            warnings.warn(
                f"{self.estimator}: checkpoint={self.path!r} could not be written "
                f"({type(exc).__name__}: {exc}); training goes on without it.",
                UserWarning,
                stacklevel=2,
            )
            self.path = None

    def finished(self) -> None:
        """The fit ended normally: its checkpoint has served (as Keras's
        ``BackupAndRestore`` does, the file goes, if it is still the one this
        fit wrote or resumed from)."""
        if self.written is not None:
            remove_if_same(self.written_path, self.written)

    # --------------------------------------------------------------- stages
    def start_stage(self, model, monitor: str, callbacks: list):
        """Begin a training stage of ``model``: returns ``(recorder, initial_epoch,
        earlier)``, where ``recorder`` is None when the checkpoint says the
        stage was completed before (the network then holds its result) and
        ``earlier`` is the stage's history from the checkpoint."""
        self.stage += 1
        self.stage_epochs = 0
        self.stage_values = []
        self.watch_from = next(
            (cb.start_from_epoch for cb in callbacks if _stateful_kind(cb) == "EarlyStopping"), 0
        )
        if self.kept is not None:
            # An earlier stage ended normally, so ``model`` (the whole network)
            # now holds what that stage chose: that is the fallback until this
            # stage does better.
            self.kept = (model, model.get_weights())
        if self.path is not None and self.stage > 1:
            self.start = self.network.get_weights()
        recorder = _recorder_class()(self, monitor, callbacks)
        if self.resume is not None and self.stage == 1:
            self._load_resume(model, callbacks)
        if self.resume is None:
            return recorder, 0, {}
        meta, arrays = self.resume
        earlier = _stage_history(meta["history"], self.stage)
        self.stage_values = list(earlier.get(monitor, []))
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
        self.stage_values.append(value)
        # The one rule (imgclf._training.best_epoch): before the epoch early
        # stopping starts to watch, the last epoch's weights stand.
        kept = best_epoch(
            self.stage_values,
            min_delta=self.min_delta,
            start=self.watch_from,
            keep_best=self.keep_best,
        )
        if self.kept is None or kept == len(self.stage_values) - 1:
            self.kept = (model, model.get_weights())
            self.best_epoch = self.epochs
            self.best = value
        self._write(model, callbacks, complete=False)

    def stage_ended(self, model, callbacks: list) -> None:
        """The stage is over: its network takes the kept epoch's weights
        (early stopping's restore), then the checkpoint records it done."""
        self.restore_kept()
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
_STATEFUL = ("EarlyStopping", "ReduceLROnPlateau")


def _stateful_kind(cb) -> str | None:
    """Which of :data:`_STATEFUL` ``cb`` is (a Keras ``EarlyStopping`` or
    ``ReduceLROnPlateau``, or a subclass): the name its state is kept under
    in the checkpoint; None for any other callback."""
    callbacks = get_keras().callbacks
    for name in _STATEFUL:
        if isinstance(cb, getattr(callbacks, name)):
            return name
    return None


_CALLBACK_FIELDS = ("wait", "best", "best_epoch", "cooldown_counter")


def _shapes(model) -> list[tuple[tuple, np.dtype]]:
    return [(tuple(w.shape), np.dtype(w.dtype)) for w in model.get_weights()]


def _number(value) -> float | None:
    """A callback field as a finite float, or None for "not set yet": Keras
    starts ``best`` at None (early stopping keeps it so until the first epoch
    it watches, ``start_from_epoch``), older versions at an infinity."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _callback_state(callbacks: list, model) -> dict:
    state = {}
    for cb in callbacks:
        name = _stateful_kind(cb)
        if name is not None:
            state[name] = {k: _number(getattr(cb, k)) for k in _CALLBACK_FIELDS if hasattr(cb, k)}
    state["learning_rate"] = float(np.asarray(model.optimizer.learning_rate))
    return state


def _restore_callback_state(callbacks: list, model, state: dict, kept) -> None:
    for cb in callbacks:
        kind = _stateful_kind(cb)
        fields = None if kind is None else state.get(kind)
        if fields is None:
            continue
        for key, value in fields.items():
            # "Not set yet" leaves the value the callback's own on_train_begin gave it.
            if value is not None:
                setattr(cb, key, float(value) if key == "best" else int(value))
        if kind == "EarlyStopping" and kept is not None:
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
    history: dict, n_classes: int, monitor: str, kept: int, weighted: bool = False
):
    """A warning's text when a finished fit diverged into a useless network,
    else None: its kept loss is no better than guessing while some epoch's
    loss blew far past it (``learning_rate=1e4`` on digits: the loss stays
    finite, in the thousands, and every image gets one class). With class
    weights (``weighted``) the training loss is scaled by them, so only the
    hold-out's loss, which Keras leaves unweighted, is compared. ``kept``:
    the index of the epoch whose weights the network holds (``best_epoch_``)."""
    values = history.get(monitor) or []
    losses = history.get("val_loss" if weighted else "loss") or []
    if not values or not losses:
        return None
    kept = values[kept]
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
