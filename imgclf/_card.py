"""The model card of a fitted estimator: ``clf.card_``.

A card says what a model is and how it came about, for whoever receives the
file: its classes and the training and hold-out images of each, the images it
takes, its parameters, what the fit recorded on the hold-out at the epoch it
kept, the softmax temperature when it has been calibrated (``temperature_``),
the library versions it was trained with, a fingerprint of the training data
and the date. ``fit`` records the facts only it knows (counts, fingerprint,
date, versions, the kept epoch's metrics); the rest is read off the estimator
each time, so the card follows ``set_params`` and a later calibration.
``clf.save`` stores the card in the file (``imgclf.json``'s ``card``, checked
on load by :func:`imgclf._manifest.check_card`), ``imgclf info MODEL`` prints
it and ``imgclf serve`` shows it.

A model saved without a card (by an earlier imgclf) still loads: its card
has what the file holds and ``None`` for the facts only a fit knows.
"""

from __future__ import annotations

import datetime
import math
import numbers
import platform

import numpy as np
from sklearn.exceptions import NotFittedError

from ._manifest import CARD_TEXT, CARD_VERSION, versions

#: The history entries the card reports at the kept epoch.
METRICS = ("loss", "accuracy", "val_loss", "val_accuracy")


def readable(value):
    """``value`` as a JSON scalar or a short list of them, else its ``repr``
    (cut to :data:`imgclf._manifest.CARD_TEXT` characters): parameters and
    labels as a reader of the card sees them."""
    if isinstance(value, np.generic):
        value = value.item()
    if value is None or isinstance(value, (bool, str)):
        return value if not isinstance(value, str) else value[:CARD_TEXT]
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real) and math.isfinite(value):
        return float(value)
    if isinstance(value, (list, tuple)) and len(value) <= 16:
        items = [readable(v) for v in value]
        if all(v is None or isinstance(v, (bool, int, float)) for v in items):
            return items
    return repr(value)[:CARD_TEXT]


def library_versions() -> dict:
    """imgclf, Keras, TensorFlow, NumPy and Python versions, now."""
    return {**versions(), "numpy": np.__version__, "python": platform.python_version()}


def fit_facts(fingerprint: str, y_enc, train, val, n_classes: int) -> dict:
    """What only the fit knows, recorded once its hold-out is drawn: images
    per class (per label, for multi-label targets) in training and in the hold-out, the data's ``fingerprint``
    (``_checkpoint.data_fingerprint``), the library versions and the date (UTC)."""

    def counts(part):
        if part is None:  # no hold-out
            return [0] * n_classes
        labels = np.asarray(y_enc)[part]
        if labels.ndim == 2:  # multi-label: images carrying each label
            return labels.sum(axis=0).astype(int).tolist()
        return np.bincount(labels, minlength=n_classes).astype(int).tolist()

    return {
        "train_per_class": counts(train),
        "holdout_per_class": counts(val),
        "data_fingerprint": fingerprint,
        "versions": library_versions(),
        "trained_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


def fit_outcome(history: dict, epoch_kept: int, monitor: str) -> dict:
    """The ``fit`` entry of a card: the epochs this fit ran, the one whose
    weights it kept (1-based) and its :data:`METRICS`."""
    epochs = len(history.get("loss", ()))
    outcome = {"epochs_run": epochs, "epoch_kept": int(epoch_kept), "monitor": monitor}
    if 1 <= epoch_kept <= epochs:
        for key in METRICS:
            values = history.get(key)
            if values and len(values) >= epoch_kept and math.isfinite(values[epoch_kept - 1]):
                outcome[key] = float(values[epoch_kept - 1])
    return outcome


class ModelCard(dict):
    """A model card: a ``dict`` of JSON values (see :mod:`imgclf._card` for
    the fields), with :meth:`to_markdown` and :meth:`to_text`.

    Keys: ``card_version``, ``estimator``, ``classes``, ``train_per_class``,
    ``holdout_per_class`` (lists in ``classes`` order; zeros without a
    hold-out, None when unknown), ``image_size`` ``[height, width]``, ``n_channels``,
    ``params``, ``fit`` (``epochs_run``, ``epoch_kept``, ``monitor`` and the
    loss and accuracy on the training data and the hold-out at the kept
    epoch), ``interrupted``, ``temperature`` (None unless calibrated),
    ``versions``, ``data_fingerprint`` (SHA-256 of the training pixels, or of
    the files' paths, sizes and times, and of the labels) and ``trained_at``
    (ISO 8601, UTC).
    """

    def _rows(self):
        classes = self.get("classes") or []
        train = self.get("train_per_class") or [None] * len(classes)
        held = self.get("holdout_per_class") or [None] * len(classes)
        return list(zip(classes, train, held, strict=False))

    def _summary(self) -> list[str]:
        size = self.get("image_size") or ["?", "?"]
        channels = self.get("n_channels")
        kind = {1: "1 channel (grey)", 3: "3 channels (RGB)"}.get(channels, f"{channels} channels")
        lines = [f"Input: {size[0]} x {size[1]} pixels, {kind}."]
        fit = self.get("fit")
        if fit:
            scores = ", ".join(f"{k} {fit[k]:.4g}" for k in METRICS if k in fit)
            lines.append(
                f"Fit: kept epoch {fit.get('epoch_kept')} of {fit.get('epochs_run')} "
                f"(by {fit.get('monitor')}): {scores or 'no metrics recorded'}."
            )
            if fit.get("refit_after_holdout_of") is not None:
                lines.append(_refit_line(fit))
        else:
            lines.append("Fit: not recorded (saved without a card).")
        if self.get("interrupted"):
            lines.append("The fit was interrupted before its end.")
        temperature = self.get("temperature")
        lines.append(
            "Temperature: not calibrated."
            if temperature is None
            else f"Temperature: {temperature:.4g} (probabilities are calibrated)."
        )
        saved = self.get("versions") or {}
        lines.append(
            "Versions: " + (", ".join(f"{k} {v}" for k, v in saved.items()) or "unknown") + "."
        )
        lines.append(f"Data fingerprint: {self.get('data_fingerprint') or 'unknown'}.")
        lines.append(f"Trained: {self.get('trained_at') or 'unknown'}.")
        return lines

    def to_text(self) -> str:
        """The card as plain text (what ``imgclf info`` prints)."""
        out = [f"{self.get('estimator', 'model')} model card", ""]
        rows = self._rows()
        width = max([len(str(c)) for c, _, _ in rows] + [5])
        out.append(f"{'class':<{width}}  {'train':>7}  {'hold-out':>8}")
        for label, train, held in rows:
            out.append(f"{label!s:<{width}}  {_count(train):>7}  {_count(held):>8}")
        out += ["", *self._summary(), "", "Parameters:"]
        out += [f"  {k} = {v!r}" for k, v in sorted((self.get("params") or {}).items())]
        return "\n".join(out) + "\n"

    def to_markdown(self) -> str:
        """The card as a Markdown document (a ``MODEL_CARD.md`` beside the file)."""
        out = [f"# Model card: {self.get('estimator', 'model')}", ""]
        out += [
            "## Classes",
            "",
            "| class | training images | hold-out images |",
            "| --- | ---: | ---: |",
        ]
        out += [f"| {_cell(c)} | {_count(t)} | {_count(h)} |" for c, t, h in self._rows()]
        out += ["", "## Model", ""]
        out += [f"- {line}" for line in self._summary()]
        out += ["", "## Parameters", "", "| parameter | value |", "| --- | --- |"]
        out += [
            f"| {_cell(k)} | {_cell(repr(v))} |"
            for k, v in sorted((self.get("params") or {}).items())
        ]
        return "\n".join(out) + "\n"


def _refit_line(fit: dict) -> str:
    """What the card says of a refit (``TransferClassifier(refit=...)``)."""
    judged = ", ".join(
        f"{key} {fit[f'holdout_fit_{key}']:.4g}"
        for key in ("val_loss", "val_accuracy")
        if isinstance(fit.get(f"holdout_fit_{key}"), (int, float))
    )
    return (
        f"Refitted on every image (refit), after a fit that held out "
        f"{fit['refit_after_holdout_of']} images chose its epochs, whether to fine-tune and "
        f"the temperature; that fit's kept epoch {fit.get('holdout_fit_epoch_kept', '?')}: "
        f"{judged or 'no hold-out metrics recorded'}."
    )


def _count(value) -> str:
    return "?" if value is None else str(value)


def _cell(value) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def model_card(estimator) -> ModelCard:
    """The card of a fitted ``estimator`` (see :class:`ModelCard`)."""
    if not hasattr(estimator, "model_"):
        raise NotFittedError(
            f"This {type(estimator).__name__} is not fitted yet, so it has no model card: call "
            "fit first."
        )
    facts = estimator.__dict__.get("_card_facts") or {}
    temperature = getattr(estimator, "temperature_", None)  # set by calibration, when there
    return ModelCard(
        card_version=CARD_VERSION,
        estimator=type(estimator).__name__,
        classes=estimator.classes_.tolist(),
        train_per_class=facts.get("train_per_class"),
        holdout_per_class=facts.get("holdout_per_class"),
        image_size=[int(s) for s in estimator.image_size_],
        n_channels=int(estimator.n_channels_),
        params={k: readable(v) for k, v in estimator.get_params(deep=False).items()},
        fit=facts.get("fit"),
        interrupted=bool(getattr(estimator, "interrupted_", False)),
        temperature=None if temperature is None else float(temperature),
        versions=facts.get("versions"),
        data_fingerprint=facts.get("data_fingerprint"),
        trained_at=facts.get("trained_at"),
    )


class CardMixin:
    """``card_``, inherited by ``BaseImageClassifier``."""

    @property
    def card_(self) -> ModelCard:
        """The model card (a :class:`~imgclf._card.ModelCard`): built from the
        fitted estimator and what its fit recorded; stored by ``save``."""
        return model_card(self)


__all__ = ["METRICS", "CardMixin", "ModelCard", "fit_facts", "fit_outcome", "model_card"]
