"""Tiny training sets: the two collapses of issue 12 and candidate fixes, over seeds.

    python benchmarks/bench_tiny.py [--seeds 0 1 2 3 4] [--cases fashion50 digits120]

Cases (from issue 12, part 5):

* ``fashion50``: the first 10 training images of each Fashion-MNIST class
  0-4 (50 images), default ``CNNClassifier``; scored on the 5,000 official
  test images of those classes (chance 0.200).
* ``digits120``: 120 digits of classes 0-2 (the first 240 of them, alternate
  halves), ``CNNClassifier(epochs=3)``; scored on the other 120 (chance 0.333).

Since this release the library applies both fixes measured here (no
hold-out below 5 images per class, exact BatchNorm statistics at the end of
fit), so ``default`` is the fixed library. Candidates:

* ``default``: as a new user would call it.
* ``no hold-out``: ``validation_fraction=0.0`` on top.
* ``plateau 30``: the defaults before this release, ``lr_schedule="plateau"``,
  ``learning_rate=1e-3``, ``epochs=30`` (a case's own ``epochs`` wins).

Prints per case and candidate: mean, minimum and maximum test accuracy,
how many seeds collapsed (predicted a single class, or scored within 0.05 of
chance) and the mean training accuracy (the same network on its training
images), with the epochs trained.

Measured before the fix (previous release, seeds 0-4; the candidates were
then applied from outside the library)::

    fashion50                                    digits120 (epochs=3)
    default          0.200 [0.200, 0.200] 5/5 0.200    0.333 [0.333, 0.333] 5/5 0.333
    (a) no hold-out  0.726 [0.707, 0.746] 0/5 1.000    0.393 [0.333, 0.633] 4/5 0.385
    (b) BN refresh   0.547 [0.523, 0.581] 0/5 0.760    0.837 [0.600, 1.000] 0/5 0.820
    (a)+(b)          0.739 [0.722, 0.752] 0/5 1.000    0.993 [0.983, 1.000] 0/5 0.960

With the fix in the library (``--seeds $(seq 0 19) --candidates default``,
2026-12-01)::

    fashion50  default  0.737 [0.676, 0.757]  0/20 collapsed  train 1.000  24.2 epochs
    digits120  default  0.993 [0.950, 1.000]  0/20 collapsed  train 0.965   3.0 epochs

Those were the ``"plateau"`` defaults. With one-cycle at 3e-3 over ``epochs="auto"``
as the default and early stopping watching only the end of the cycle
(``--seeds $(seq 0 19) --candidates default``, 2026-12-02)::

    fashion50  default  0.738 [0.687, 0.763]  0/20 collapsed  train 1.000  25.6 epochs
    digits120  default  0.993 [0.950, 1.000]  0/20 collapsed  train 0.965   3.0 epochs

Earlier, one-cycle against plateau as a candidate, before early stopping waited for
the end of the cycle (``--seeds 0 1 2 3 4``; "default" was then plateau)::

    fashion50  default           0.739 [0.722, 0.752]  0/5  train 1.000  24.8 epochs
    fashion50  one-cycle auto    0.734 [0.707, 0.754]  0/5  train 1.000  25.2 epochs
    digits120  default           0.993 [0.983, 1.000]  0/5  train 0.960   3.0 epochs
    digits120  one-cycle auto    0.983 [0.950, 1.000]  0/5  train 0.963   3.0 epochs
"""

from __future__ import annotations

import argparse
import statistics

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


CANDIDATES = {
    "default": {},
    "no hold-out": {"holdout": False},
    # The defaults before one-cycle over epochs="auto" (issue 12, part 1).
    "plateau 30": {"epochs": 30, "lr_schedule": "plateau", "learning_rate": 1e-3},
}


def run(X, y, X_te, y_te, params, seed, holdout=True, **candidate):
    params = dict(candidate, **params, random_state=seed)  # the case's epochs win
    if not holdout:
        params["validation_fraction"] = 0.0
    clf = CNNClassifier(**params).fit(X, y)
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
