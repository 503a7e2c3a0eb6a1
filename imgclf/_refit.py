"""Refitting on every image after a fit with a small hold-out (``refit``).

A hold-out of a few images per class is what early stopping, the
fine-tune-or-not decision and the temperature (``temperature_``) are judged
on; on little data those same images are also worth most as training data.
``TransferClassifier(refit="auto")`` therefore keeps the small hold-out for
the decisions and then fits once more on every image, with them: the same
settings without a hold-out, fine-tuning only if the first fit kept it,
and the first fit's temperature (and multi-label ``thresholds_``).
"""

from __future__ import annotations

import warnings

import numpy as np

import imgclf._multilabel as multilabel

from ._calibration import set_temperature
from ._fitrun import restore, snapshot

#: ``refit="auto"`` refits when the hold-out held at most this many images
#: per class (up to 100 training images per class at the default
#: ``validation_fraction=0.1``): where it was measured. On ImageNet features
#: (``efficientnet_lite0``, Fashion-MNIST, seeds 0-2,
#: ``benchmarks/bench_transfer.py``) the refit gained 1.35 points of accuracy
#: at 50 images per class and 0.5 at 100 (every seed at 100), at the same
#: calibration (see "When to refit" in the models guide); beyond 100 the gain
#: shrinks while the cost grows with the data.
REFIT_MAX_PER_CLASS = 10


def holdout_per_class(y_enc: np.ndarray, n_val: int) -> float:
    """Images per class (present in ``y_enc``) in a hold-out of ``n_val``."""
    if y_enc.ndim == 2:
        y_enc = multilabel.strata(y_enc)
    present = int(np.count_nonzero(np.bincount(y_enc)))
    return n_val / max(present, 1)


def refit_due(setting, per_class: float | None) -> bool:
    """Whether a fit whose hold-out held ``per_class`` images per class
    (None: no hold-out) is refitted on every image under ``refit=setting``."""
    if per_class is None:
        return False
    if isinstance(setting, str):  # "auto"
        return per_class <= REFIT_MAX_PER_CLASS
    return bool(setting)  # True or False, NumPy's too


def fine_tuning_kept(estimator) -> bool:
    """Whether the fitted network is the fine-tune stage's (not the frozen stage's)."""
    stages = estimator.history_.get("stage", ())
    return bool(stages) and stages[estimator.best_epoch_] == 2.0


def refit_on_every_image(estimator, fit, X, y, sample_weight, kept: tuple, held_out: int) -> None:
    """Fit ``estimator`` again (``fit(X, y, sample_weight)``: the class's own
    fit) on every image, as its fit with a hold-out decided, and carry that
    fit's temperature and thresholds over.

    ``kept``: the epochs of each stage the first fit kept (the frozen
    stage's, then the fine-tune stage's, 0 when its weights were not kept);
    ``held_out``: the hold-out's size. The refit runs exactly those epochs,
    without early stopping, so that it repeats the training the temperature
    was fitted for, on more images (at the default constant learning rate;
    a per-epoch or per-batch schedule spans the refit's fewer epochs). Its
    parameters are set for the refit only and always restored. If the refit
    raises, the estimator is put back as the first fit left it (a complete,
    calibrated model), a warning says so, and the error propagates."""
    decided = {
        "temperature": float(estimator.temperature_),
        "thresholds": getattr(estimator, "thresholds_", None),
    }
    overrides = {
        "validation_fraction": 0.0,
        "checkpoint": None,
        "warm_start": False,
        "early_stopping": False,
        "epochs": int(kept[0]),
        "fine_tune_epochs": int(kept[1]),
    }
    judged = _judged_by(estimator.__dict__.get("_card_facts") or {}, held_out)
    params = estimator.get_params(deep=False)
    before = snapshot(estimator, params)
    given = {name: params[name] for name in overrides}
    try:
        estimator.set_params(**overrides)
        with warnings.catch_warnings():
            # A refit that stops is undone below: not the base's "keeps the new network".
            warnings.filterwarnings("ignore", message=r".*was stopped by .* The estimator keeps")
            fit(X, y, sample_weight)
    except BaseException:
        restore(estimator, before, params)
        warnings.warn(
            f"{type(estimator).__name__}.fit: the refit on every image (refit="
            f"{params['refit']!r}) did not finish; the estimator keeps the network of the "
            "fit with the hold-out, which had finished. Pass refit=False to skip the refit.",
            UserWarning,
            stacklevel=3,
        )
        raise
    finally:
        estimator.set_params(**given)
    set_temperature(estimator.model_, decided["temperature"])
    estimator.temperature_ = decided["temperature"]
    if decided["thresholds"] is not None:
        estimator.thresholds_ = decided["thresholds"]
    estimator.refitted_ = True
    fit_entry = estimator.__dict__.get("_card_facts", {}).get("fit")
    if fit_entry is not None:
        fit_entry.update(judged)


def _judged_by(facts: dict, held_out: int) -> dict:
    """The model card's record of the fit with the hold-out, kept in the
    refit's ``fit`` entry: the hold-out's size (images), the epoch that fit
    kept and its hold-out loss and accuracy there."""
    first = facts.get("fit") or {}
    judged = {"refit_after_holdout_of": int(held_out)}
    for key in ("epoch_kept", "val_loss", "val_accuracy"):
        if key in first:
            judged[f"holdout_fit_{key}"] = first[key]
    return judged


__all__ = [
    "REFIT_MAX_PER_CLASS",
    "fine_tuning_kept",
    "holdout_per_class",
    "refit_due",
    "refit_on_every_image",
]
