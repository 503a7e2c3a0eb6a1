"""The data one fit trains on: :class:`TrainingData`.

Every training stage, the light loop for feature vectors
(:mod:`imgclf._vectorfit`), the learning-rate sweep (:mod:`imgclf.lrfind`)
and the hold-out loss read their data from one object of this type, through
its operations (:meth:`TrainingData.fit_kwargs`, :meth:`~TrainingData.batches`,
:meth:`~TrainingData.holdout_loss`, :meth:`~TrainingData.with_features`); only
this module looks at what the arrays or datasets inside it are.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np

from ._validation import Images


@dataclasses.dataclass(frozen=True)
class TrainingData:
    """The samples of one fit: its training part and its hold-out.

    Parameters
    ----------
    images : Images
        Every sample of the fit (the training part and the hold-out).
    y : ndarray of shape (n,) or (n, k)
        Encoded targets of every sample: class indices, or rows of a 0/1
        indicator matrix.
    train : ndarray of int
        Positions of the training part in ``images`` and ``y``.
    val : ndarray of int or None
        Positions of the hold-out; None without one.
    seed : int
        The fit's seed (the training part's shuffling).
    batch_size : int
        The training batch.
    dataset : callable
        ``dataset(images, y, sample_weight, *, shuffle, seed)``: keyword
        arguments of ``model.fit`` for images (the estimator's input pipeline,
        :func:`imgclf._pipeline.make_dataset`).
    sample_weight : ndarray of shape (n,) or None
        Every sample's weight (None: all 1), as the user gave them.
    class_weight : dict or None
        Weight of each class index in the training loss (the hold-out's loss
        is not class-weighted, as in Keras).
    features : (ndarray, ndarray or None) or None
        Once mapped (:meth:`with_features`): the training part's and the
        hold-out's feature vectors, which then stand in for their images.
    views : int
        Once mapped: how many views of each training image its features hold,
        stacked (all the training part's first view, then all its second...);
        each view trains with its image's target and weight. 1 for the
        images alone.
    """

    images: Images
    y: np.ndarray
    train: np.ndarray
    val: np.ndarray | None
    seed: int
    batch_size: int
    dataset: Callable
    sample_weight: np.ndarray | None = None
    class_weight: dict | None = None
    features: tuple | None = None
    views: int = 1
    # model.fit's keyword arguments, built once (a pixel cache decodes every file).
    _built: dict = dataclasses.field(default_factory=dict, repr=False, compare=False)

    # ------------------------------------------------------------- parts
    @property
    def has_holdout(self) -> bool:
        """Whether a hold-out was made (its loss is the one early stopping watches)."""
        return self.val is not None

    @property
    def is_vectors(self) -> bool:
        """Whether the data are feature vectors in memory (:meth:`with_features`)."""
        return self.features is not None

    @property
    def n_train(self) -> int:
        return len(self.train)

    def train_weight(self) -> np.ndarray | None:
        """The training part's per-sample weights: ``sample_weight`` times
        ``class_weight``, scaled to average 1 (only their ratios matter: the
        learning rate means the same with or without them); None when both
        are None."""
        if self.sample_weight is None and self.class_weight is None:
            return None
        weight = np.ones(len(self.train)) if self.sample_weight is None else self.sample_weight
        weight = np.asarray(weight, dtype=np.float64)
        if self.sample_weight is not None:
            weight = weight[self.train]
        if self.class_weight is not None and self.y.ndim == 1:
            labels = self.y[self.train]
            weight = weight * np.array([self.class_weight.get(int(c), 1.0) for c in labels])
        return _mean_one(weight)

    def holdout_weight(self) -> np.ndarray | None:
        """The hold-out's per-sample weights (``sample_weight`` only, scaled to
        average 1: the hold-out loss is a weighted mean in the units of the
        unweighted one); None without weights or hold-out."""
        if self.sample_weight is None or self.val is None:
            return None
        return _mean_one(np.asarray(self.sample_weight, dtype=np.float64)[self.val])

    def with_features(
        self, train_x: np.ndarray, val_x: np.ndarray | None, *, views: int = 1
    ) -> TrainingData:
        """These samples with their feature vectors (the training part's and the
        hold-out's, in order) standing in for their images. ``views``: the
        training part's rows are that many views of each training image,
        stacked (``views * n_train`` rows); the hold-out's are one per image."""
        if (val_x is None) != (self.val is None):
            raise ValueError(
                "with_features needs the hold-out's features exactly when there is one."
            )
        if len(train_x) != views * len(self.train):
            raise ValueError(
                f"with_features: {len(train_x)} training rows for {views} view(s) of "
                f"{len(self.train)} images."
            )
        return dataclasses.replace(self, features=(train_x, val_x), views=views, _built={})

    # ------------------------------------------------------------ views
    def fit_kwargs(self) -> dict:
        """Keyword arguments of ``model.fit`` (or of
        :func:`imgclf._vectorfit.fit_vectors` for feature vectors): the
        training data, its weights and the hold-out as ``validation_data``."""
        if not self._built:
            self._built.update(self._vector_kwargs() if self.is_vectors else self._image_kwargs())
        return dict(self._built)

    def _vector_kwargs(self) -> dict:
        x, val_x = self.features
        weight = self.train_weight()
        kwargs = {
            "x": x,
            "y": np.concatenate([self.y[self.train]] * self.views),
            "batch_size": self.batch_size,
            "shuffle": True,
            "sample_weight": None if weight is None else np.concatenate([weight] * self.views),
            "validation_data": None,
        }
        if self.val is not None:
            held = (val_x, self.y[self.val])
            weight = self.holdout_weight()
            kwargs["validation_data"] = held if weight is None else (*held, weight)
        return kwargs

    def _image_kwargs(self) -> dict:
        kwargs = self.dataset(
            self.images.subset(self.train),
            self.y[self.train],
            self.train_weight(),
            shuffle=True,
            seed=self.seed,
        )
        kwargs["validation_data"] = None
        if self.val is not None:
            held = self.dataset(
                self.images.subset(self.val), self.y[self.val], self.holdout_weight(), shuffle=False
            )
            kwargs["validation_data"] = _validation_data(held)
        return kwargs

    def holdout_loss(self, model) -> float:
        """``model``'s (compiled) loss on the hold-out, weighted as ``val_loss`` is."""
        held = self.fit_kwargs()["validation_data"]
        if held is None:
            raise ValueError("holdout_loss needs a hold-out.")
        if isinstance(held, tuple):
            x, y, *weight = held
            result = model.evaluate(
                x,
                y,
                sample_weight=weight[0] if weight else None,
                batch_size=self.batch_size,
                verbose=0,
                return_dict=True,
            )
        else:  # a dataset yields its batches whole
            result = model.evaluate(held, verbose=0, return_dict=True)
        return float(result["loss"])

    def batches(self):
        """Endless ``(x, y, weight)`` training batches (``weight`` None without
        weights): arrays reshuffled every pass, datasets (already shuffled)
        read again. What the learning-rate sweep trains on."""
        data = self.fit_kwargs()
        x, y, weight = data["x"], data.get("y"), data.get("sample_weight")
        if isinstance(x, np.ndarray):
            rng = np.random.default_rng(self.seed)
            size = int(data["batch_size"])
            while True:
                order = rng.permutation(len(x))
                for start in range(0, len(x), size):
                    take = np.sort(order[start : start + size])
                    yield x[take], y[take], None if weight is None else weight[take]
        while True:
            for batch in x:
                yield batch[0], batch[1], batch[2] if len(batch) > 2 else None


def _mean_one(weight: np.ndarray) -> np.ndarray | None:
    """``weight`` as float32 scaled to average 1, or None when all are the same
    (so equal weights train exactly as no weights do)."""
    if len(weight) == 0 or np.all(weight == weight[0]):
        return None
    return (weight / float(weight.mean())).astype(np.float32)


def _validation_data(held: dict):
    """The hold-out's pipeline output as ``model.fit``'s ``validation_data``:
    a dataset as it is, arrays as ``(x, y)`` or ``(x, y, weight)``."""
    if "y" not in held:
        return held["x"]
    weight = held.get("sample_weight")
    return (held["x"], held["y"]) if weight is None else (held["x"], held["y"], weight)


__all__ = ["TrainingData"]
