"""The learning-rate finder behind ``clf.lr_find``: an exponential sweep of
the learning rate over a short run of training steps, the smoothed loss it
gives, and a suggestion read off that curve (no drawing: see
:func:`imgclf.plot.plot_lr_find`).

The procedure is Leslie Smith's range test as fastai runs it
(``Learner.lr_find``): the rate grows geometrically from ``start_lr`` to
``end_lr``, one step per batch; the loss is smoothed by a debiased
exponential moving average; the sweep stops once the smoothed loss exceeds
``stop_factor`` times its minimum. The suggestion is fastai's "valley":
halfway down the longest descent of the smoothed curve, leaving out the
first tenth of the sweep (the loss has not started to move) and its last
five points (where it blows up).

:func:`find` runs ``clf.lr_find``: it builds a copy of the estimator's
network and its data through the estimator's own ``fit`` steps (so the sweep
trains what ``fit`` would), then :func:`run` takes the steps and reads the
curve.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ._params import check_params, is_int, is_real, numbered
from .exceptions import InputError

#: Weight of the past in the smoothed loss (fastai's ``beta``).
SMOOTHING = 0.98
#: Points left out at the end of the curve before reading the suggestion.
SKIP_END = 5


@dataclass(frozen=True)
class LRFind:
    """What a learning-rate sweep found.

    Attributes
    ----------
    learning_rates : ndarray of shape (n,)
        The rate of each step, growing geometrically.
    losses : ndarray of shape (n,)
        The smoothed training loss after each step.
    raw_losses : ndarray of shape (n,)
        Each step's own loss, as the optimizer saw it.
    suggestion : float
        The suggested ``learning_rate``: fastai's "valley" rule, halfway down
        the longest descent of ``losses``.
    suggestion_index : int
        Where the suggestion lies in ``learning_rates`` and ``losses``.
    stopped_early : bool
        True when the loss blew up (``stop_factor`` times its minimum, or not
        a number) before the sweep reached ``end_lr``.
    """

    learning_rates: np.ndarray
    losses: np.ndarray
    raw_losses: np.ndarray
    suggestion: float
    suggestion_index: int
    stopped_early: bool

    def __repr__(self) -> str:
        return (
            f"LRFind(suggestion={self.suggestion:.3g}, steps={len(self.learning_rates)}, "
            f"range={self.learning_rates[0]:.3g}..{self.learning_rates[-1]:.3g}, "
            f"stopped_early={self.stopped_early})"
        )


def check_sweep(owner: str, start_lr, end_lr, num_steps, stop_factor) -> None:
    """Raise one InputError listing every bad argument of ``lr_find``."""
    problems = []
    for name, value in (("start_lr", start_lr), ("end_lr", end_lr)):
        if not (is_real(value) and math.isfinite(value) and value > 0):
            problems.append(f"{name}={value!r}: expected a number > 0.")
    if not problems and start_lr >= end_lr:
        problems.append(
            f"start_lr={start_lr!r} and end_lr={end_lr!r}: the sweep goes up, so start_lr must "
            "be smaller than end_lr (e.g. 1e-7 and 10)."
        )
    if not is_int(num_steps, 2):
        problems.append(f"num_steps={num_steps!r}: expected an integer >= 2, e.g. 100.")
    if stop_factor is not None and not (
        is_real(stop_factor) and math.isfinite(stop_factor) and stop_factor > 1
    ):
        problems.append(
            f"stop_factor={stop_factor!r}: expected a number > 1 (e.g. 4), or None to sweep "
            "the whole range."
        )
    if problems:
        raise InputError(f"{owner}.lr_find got invalid arguments:\n{numbered(problems)}")


def find(estimator, X, y, *, start_lr, end_lr, num_steps, stop_factor) -> LRFind:
    """``estimator.lr_find(X, y, ...)``: check the arguments, build a copy of
    the estimator's network on one device and its training data as ``fit``
    would (every image, no hold-out), compile it with only its loss and
    sweep the network ``_sweep_stage`` gives. The estimator, its parameters
    and the global random state are left as they were."""
    owner = type(estimator).__name__
    check_sweep(owner, start_lr, end_lr, num_steps, stop_factor)
    probe = type(estimator)(**estimator.get_params(deep=False))
    # The copy trains on one device, without the checkpoint or the user's callbacks.
    probe.set_params(distribute=None, checkpoint=None, callbacks=None, warm_start=False)
    check_params(probe)
    with probe._prepare_fit(X, y) as (network, data):
        network, data = probe._sweep_stage(network, data)
        probe._compile(network, float(start_lr), metrics=())
        return run(
            network,
            data.batches(),
            sweep_rates(float(start_lr), float(end_lr), num_steps),
            stop_factor=stop_factor,
        )


def sweep_rates(start_lr: float, end_lr: float, num_steps: int) -> np.ndarray:
    """``num_steps`` rates from ``start_lr`` to ``end_lr``, evenly spaced in log."""
    return start_lr * (end_lr / start_lr) ** (np.arange(num_steps) / (num_steps - 1))


def run(model, source, rates: np.ndarray, *, stop_factor) -> LRFind:
    """Train ``model`` (compiled, with only its loss) one batch of ``source``
    (``(x, y, weight)``, weight None or per sample) per rate of ``rates`` and
    read the curve."""
    raw, smoothed = [], []
    average, best = 0.0, math.inf
    stopped = False
    for step, (rate, (x, y, weight)) in enumerate(zip(rates, source, strict=False)):
        model.optimizer.learning_rate = float(rate)
        logs = model.train_on_batch(x, y, sample_weight=weight, return_dict=True)
        loss = float(logs["loss"])
        raw.append(loss)
        average = SMOOTHING * average + (1 - SMOOTHING) * loss
        value = average / (1 - SMOOTHING ** (step + 1))
        smoothed.append(value)
        best = min(best, value)
        if not math.isfinite(value) or (stop_factor is not None and value > stop_factor * best):
            stopped = True
            break
    n = len(raw)
    rates = np.asarray(rates[:n], dtype=np.float64)
    losses = np.asarray(smoothed, dtype=np.float64)
    index = suggestion_index(losses)
    return LRFind(
        learning_rates=rates,
        losses=losses,
        raw_losses=np.asarray(raw, dtype=np.float64),
        suggestion=float(rates[index]),
        suggestion_index=index,
        stopped_early=stopped,
    )


def suggestion_index(losses: np.ndarray) -> int:
    """fastai's "valley" on the readable part of the curve: leave out the first
    tenth and the last :data:`SKIP_END` points (and anything from the first
    non-finite one), then take :func:`valley` there."""
    finite = np.isfinite(losses)
    end = len(losses) if finite.all() else int(np.argmin(finite))
    start = len(losses) // 10
    stop = end - SKIP_END
    if stop - start < SKIP_END:  # a short sweep: read all of its finite part
        start, stop = 0, max(end, 1)
    return start + valley(losses[start:stop])


def valley(losses: np.ndarray) -> int:
    """The index halfway down the longest valley of ``losses``.

    The valley ends at the last point of the longest chain of points, left
    to right, each lower than the one before (not necessarily neighbours,
    so noise does not break it), and is as many points long as the chain.
    Its middle is where the loss falls steadily, away from both the flat
    start and the blow-up.
    """
    losses = np.asarray(losses, dtype=np.float64)
    n = len(losses)
    if n == 0:
        return 0
    # chain[i]: the most points of a falling chain that ends at point i.
    chain = np.ones(n, dtype=np.int64)
    for i in range(1, n):
        above = losses[:i] > losses[i]
        if above.any():
            chain[i] = chain[:i][above].max() + 1
    last = int(np.argmax(chain))  # the first of the longest
    first = last - int(chain[last]) + 1
    return first + (last - first) // 2


__all__ = ["LRFind"]
