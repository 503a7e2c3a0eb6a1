"""What the hold-out costs and buys a ``TransferClassifier`` on small data.

    python benchmarks/bench_transfer_holdout.py [--backbone efficientnet_lite0]
        [--per-class 50] [--seeds 0 1 2] [--test-images 2000] [--memory <folder>]

Fashion-MNIST, all 10 classes, ``--per-class`` training images per class
drawn per seed (as in ``bench_transfer.py --backbone``), scored on the first
``--test-images`` official test images. Per seed, two fits on the same
images, interleaved:

* ``hold-out``: the defaults (a stratified 10 % hold-out for early stopping,
  the fine-tune-or-not decision and the temperature ``temperature_``);
* ``all``: ``validation_fraction=0``, every image trains (no temperature).

and four ways to score them: the hold-out fit with its temperature and
with ``T = 1``, the all-images fit as fitted (``T = 1``), and the
all-images fit with the hold-out fit's temperature carried over (what a
"fit with a hold-out, then refit on everything" rule would ship). Each
line gives accuracy, log loss and the expected calibration error (15
bins), medians over seeds at the end.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np
from _datasets import load_fashion_mnist, per_class
from _scores import proba_scores

from imgclf import TransferClassifier
from imgclf._calibration import set_temperature


def cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system


def scores(clf, temperature: float, X, y) -> tuple[float, float, float]:
    """Accuracy, log loss and ECE of ``clf`` with ``temperature`` set."""
    set_temperature(clf.model_, temperature)
    return proba_scores(clf.predict_proba(X), clf.classes_, y)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="efficientnet_lite0")
    parser.add_argument("--per-class", type=int, default=50)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--test-images", type=int, default=2000)
    parser.add_argument("--memory", default=None)
    args = parser.parse_args()

    X_train, y_train, X_test, y_test = load_fashion_mnist()
    X_eval, y_eval = X_test[: args.test_images], y_test[: args.test_images]
    rows: dict[str, list] = {}
    for seed in args.seeds:
        X, y = per_class(X_train, y_train, range(10), args.per_class, np.random.default_rng(seed))
        fitted = {}
        for name, extra in (("hold-out", {}), ("all", {"validation_fraction": 0.0})):
            clf = TransferClassifier(
                backbone=args.backbone, random_state=seed, memory=args.memory, **extra
            )
            wall, cpu = time.perf_counter(), cpu_seconds()
            clf.fit(X, y)
            print(
                f"seed {seed} {name:8s} fit {time.perf_counter() - wall:6.1f} s wall "
                f"{cpu_seconds() - cpu:6.1f} s CPU, T {clf.temperature_:.3f}",
                flush=True,
            )
            fitted[name] = clf
        held, everything = fitted["hold-out"], fitted["all"]
        carried = held.temperature_
        for label, clf, temperature in (
            ("hold-out, its T", held, held.temperature_),
            ("hold-out, T = 1", held, 1.0),
            ("all images, T = 1", everything, 1.0),
            ("all images, hold-out's T", everything, carried),
        ):
            result = scores(clf, temperature, X_eval, y_eval)
            rows.setdefault(label, []).append(result)
            print(
                f"seed {seed} {label:26s} accuracy {result[0]:.4f}  log loss "
                f"{result[1]:.3f}  ECE {result[2]:.3f}",
                flush=True,
            )
    print(
        f"\n{args.backbone}, Fashion-MNIST, {args.per_class} per class, medians over seeds "
        f"{args.seeds} (first {len(y_eval)} test images):"
    )
    print(f"  {'':26s}  accuracy  log loss    ECE")
    for label, results in rows.items():
        acc, loss, ece = (statistics.median(r[i] for r in results) for i in range(3))
        print(f"  {label:26s}  {acc:.4f}    {loss:.3f}   {ece:.3f}")


if __name__ == "__main__":
    main()
