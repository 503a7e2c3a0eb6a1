"""Tiny training sets: the two collapses of issue 12 and candidate fixes, over seeds.

    python benchmarks/bench_tiny.py [--seeds 0 1 2 3 4] [--cases fashion50 digits120]

Cases (from issue 12, part 5):

* ``fashion50``: the first 10 training images of each Fashion-MNIST class
  0-4 (50 images), default ``CNNClassifier``; scored on the 5,000 official
  test images of those classes (chance 0.200).
* ``digits120``: 120 digits of classes 0-2 (the first 240 of them, alternate
  halves), ``CNNClassifier(epochs=3)``; scored on the other 120 (chance 0.333).

Candidate fixes, none of them in the library (this script applies them from
outside, to measure them):

* ``default``: as a new user would call it.
* ``(a) no hold-out``: ``validation_fraction=0.0``, so early stopping watches
  the training loss: what the library would do when the hold-out would hold
  fewer than 5 images per class (both cases: 1 and 4 per class).
* ``(b) BN refresh``: after ``fit``, every BatchNorm layer's moving mean and
  variance are replaced by the exact mean and (biased) variance of its input
  over the training images, layer after layer in network order, each
  computed with the layers before it already refreshed. One inference pass
  per BatchNorm layer over the training data.
* ``(a)+(b)``: both.

Not measured: a lower BatchNorm momentum. Set from outside by a callback
(``on_train_begin``) it changed no figure at all, to the last digit, so it
was probably never applied; it needs the network built with it.

Prints per case and candidate: mean, minimum and maximum test accuracy,
how many seeds collapsed (predicted a single class, or scored within 0.05 of
chance) and the mean training accuracy (the same network on its training
images), with the epochs trained.

Measured here on 2026-12-01, seeds 0-4 (test accuracy mean [min, max],
collapsed seeds, training accuracy)::

    fashion50                                    digits120 (epochs=3)
    default          0.200 [0.200, 0.200] 5/5 0.200    0.333 [0.333, 0.333] 5/5 0.333
    (a) no hold-out  0.726 [0.707, 0.746] 0/5 1.000    0.393 [0.333, 0.633] 4/5 0.385
    (b) BN refresh   0.547 [0.523, 0.581] 0/5 0.760    0.837 [0.600, 1.000] 0/5 0.820
    (a)+(b)          0.739 [0.722, 0.752] 0/5 1.000    0.993 [0.983, 1.000] 0/5 0.960

fashion50 trains 6 epochs by default (early stopping on the 5-image
hold-out) and 24.8 on average without the hold-out.
"""

from __future__ import annotations

import argparse
import statistics

import keras
import numpy as np
from _datasets import load_fashion_mnist
from sklearn.datasets import load_digits

from imgclf import CNNClassifier


def case_data(name: str):
    """(X_train, y_train, X_test, y_test, params)."""
    if name == "fashion50":
        X, y, X_te, y_te = load_fashion_mnist()
        train = np.concatenate([np.flatnonzero(y == c)[:10] for c in range(5)])
        test = np.flatnonzero(y_te < 5)
        return X[train], y[train], X_te[test], y_te[test], {}
    d = load_digits()
    keep = np.flatnonzero(d.target < 3)[:240]
    X = np.round(d.images[keep] / 16 * 255).astype(np.uint8)
    y = d.target[keep]
    return X[0::2], y[0::2], X[1::2], y[1::2], {"epochs": 3}


def refresh_batchnorm(clf, X) -> None:
    """Exact BatchNorm statistics over ``X``, layer after layer."""
    model = clf.model_
    x = clf.network_input(X)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            inputs = keras.Model(model.inputs, layer.input).predict(x, verbose=0)
            axes = tuple(range(inputs.ndim - 1))
            layer.moving_mean.assign(inputs.mean(axes))
            layer.moving_variance.assign(inputs.var(axes))


CANDIDATES = {
    "default": {},
    "(a) no hold-out": {"holdout": False},
    "(b) BN refresh": {"refresh": True},
    "(a)+(b)": {"holdout": False, "refresh": True},
}


def run(X, y, X_te, y_te, params, seed, holdout=True, refresh=False):
    params = dict(params, random_state=seed)
    if not holdout:
        params["validation_fraction"] = 0.0
    clf = CNNClassifier(**params).fit(X, y)
    if refresh:
        refresh_batchnorm(clf, X)
    predicted = clf.predict(X_te)
    return {
        "test": float(np.mean(predicted == y_te)),
        "classes": len(np.unique(predicted)),
        "train": clf.score(X, y),
        "epochs": len(clf.history_["loss"]),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--cases", nargs="+", default=["fashion50", "digits120"])
    parser.add_argument("--candidates", nargs="+", default=list(CANDIDATES))
    args = parser.parse_args()
    for case in args.cases:
        X, y, X_te, y_te, params = case_data(case)
        chance = 1 / len(np.unique(y))
        print(
            f"\n{case}: {len(X)} training images, {len(X_te)} test, params {params}, "
            f"seeds {args.seeds} (chance {chance:.3f})"
        )
        print(
            f"{'candidate':<21} {'mean':>6} {'min':>6} {'max':>6} {'collapsed':>9} "
            f"{'train':>6} {'epochs':>6}"
        )
        for name in args.candidates:
            rs = [run(X, y, X_te, y_te, params, s, **CANDIDATES[name]) for s in args.seeds]
            tests = [r["test"] for r in rs]
            collapsed = sum(r["classes"] == 1 or r["test"] <= chance + 0.05 for r in rs)
            print(
                f"{name:<21} {statistics.mean(tests):6.3f} {min(tests):6.3f} {max(tests):6.3f} "
                f"{collapsed:>5}/{len(rs):<3} {statistics.mean(r['train'] for r in rs):6.3f} "
                f"{statistics.mean(r['epochs'] for r in rs):6.1f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
