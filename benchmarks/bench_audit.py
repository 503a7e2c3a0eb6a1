"""Finding mislabelled images: find_label_issues on digits with 5 % of the labels flipped.

    python benchmarks/bench_audit.py [--seeds 0 1 2] [--epochs auto] [--cv 5] [--noise 0.05]

scikit-learn's digits (1,797 images, 8x8, as uint8 images). For each seed,
``--noise`` of the labels (chosen with ``numpy.random.default_rng(seed)``)
are changed to another class drawn uniformly; then
``find_label_issues(CNNClassifier(epochs=..., random_state=seed), X, y_noisy,
cv=...)`` fits ``cv`` CNNs for the out-of-fold probabilities. Printed per
seed: the flagged count, recall (flipped images flagged / flipped images),
precision (flipped among the flagged), the out-of-fold accuracy against the
true labels, and the wall and CPU seconds (``os.times()``, user + system, this
process with TensorFlow's threads) of the whole call. The other filters
are then applied to the same ``pred_probs`` (no refits, ``pred_probs=``),
with the seconds they take; medians over seeds at the end.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np
from sklearn.datasets import load_digits

from imgclf import CNNClassifier, find_label_issues

OTHER_FILTERS = ("prune_by_class", "both", "confident_learning", "predicted_neq_given")


def _cpu() -> float:
    t = os.times()
    return t.user + t.system


def flip_labels(y: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``y`` with ``fraction`` of its labels changed to another class (uniform
    among the others), and the sorted positions changed."""
    rng = np.random.default_rng(seed)
    classes = np.unique(y)
    flipped = np.sort(rng.choice(len(y), size=round(fraction * len(y)), replace=False))
    noisy = y.copy()
    for i in flipped:
        noisy[i] = rng.choice(classes[classes != y[i]])
    return noisy, flipped


def scores(found: np.ndarray, flipped: np.ndarray) -> tuple[float, float]:
    """(recall, precision) of the flagged positions ``found``."""
    hits = len(np.intersect1d(found, flipped))
    return hits / len(flipped), hits / max(len(found), 1)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", default="auto", help="CNNClassifier epochs (default auto)")
    parser.add_argument("--cv", type=int, default=5)
    parser.add_argument("--noise", type=float, default=0.05, help="fraction of labels flipped")
    args = parser.parse_args()
    epochs = args.epochs if args.epochs == "auto" else int(args.epochs)
    data = load_digits()
    X = np.round(data.images / 16 * 255).astype(np.uint8)[..., None]
    y = data.target
    rows: dict[str, list] = {}
    for seed in args.seeds:
        noisy, flipped = flip_labels(y, args.noise, seed)
        clf = CNNClassifier(epochs=epochs, random_state=seed, verbose=0)
        wall, cpu = time.perf_counter(), _cpu()
        issues = find_label_issues(clf, X, noisy, cv=args.cv)
        wall, cpu = time.perf_counter() - wall, _cpu() - cpu
        recall, precision = scores(issues.index, flipped)
        accuracy = float(np.mean(issues.classes[issues.pred_probs.argmax(1)] == y))
        rows.setdefault("prune_by_noise_rate (default)", []).append(
            (len(issues), recall, precision, wall, cpu)
        )
        print(
            f"seed {seed}: {len(flipped)} flipped, {len(issues)} flagged, recall {recall:.3f}, "
            f"precision {precision:.3f}, out-of-fold accuracy {accuracy:.4f}, "
            f"{wall:.1f} s wall {cpu:.1f} s CPU",
            flush=True,
        )
        for name in OTHER_FILTERS:
            wall, cpu = time.perf_counter(), _cpu()
            again = find_label_issues(None, X, noisy, pred_probs=issues.pred_probs, filter_by=name)
            wall, cpu = time.perf_counter() - wall, _cpu() - cpu
            recall, precision = scores(again.index, flipped)
            rows.setdefault(name, []).append((len(again), recall, precision, wall, cpu))
            print(
                f"  {name:<22} {len(again):4d} flagged, recall {recall:.3f}, "
                f"precision {precision:.3f}, {wall:.2f} s wall",
                flush=True,
            )
    print(f"\nmedians over seeds {args.seeds} (epochs={epochs}, cv={args.cv}):")
    print(f"{'filter_by':<30} flagged  recall  precision  wall s   CPU s")
    for name, values in rows.items():
        n, recall, precision, wall, cpu = (statistics.median(v) for v in zip(*values, strict=True))
        print(f"{name:<30} {n:7.0f}  {recall:6.3f}  {precision:9.3f}  {wall:6.1f}  {cpu:6.1f}")


if __name__ == "__main__":
    main()
