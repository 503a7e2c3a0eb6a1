"""Learning-rate tools on digits: lr_find's suggestion against the default rate, and the schedules.

    python benchmarks/bench_lr.py [--seeds 0 1 2] [--short 5] [--long 10]

Digits (8x8, 1,797 images) split 75/25, stratified (``random_state=0``), as
in ``tests/test_lr.py``. For each seed:

1. ``lr_find`` on the training part (its cost in wall and CPU seconds), then
   ``--short`` epochs at ``learning_rate=1e-3`` and at the suggestion
   (``lr_schedule="plateau"``; both were the defaults when this was written,
   and are passed explicitly), interleaved;
2. ``--long`` epochs with each ``lr_schedule`` at 1e-3, and
   ``"one_cycle"`` peaking at the suggestion, interleaved.

``--overhead N`` instead fits all of digits for 8 epochs without early
stopping, ``N`` interleaved rounds of ``"one_cycle"``, ``None`` and
``"plateau"``: the cost of setting the rate every batch.

Prints test accuracy, wall and CPU seconds (``os.times()``, user + system,
this process: TensorFlow's threads included) per fit, medians over seeds.

Measured here on 2026-12-01, seeds 0 1 2, the machine shared with three
other jobs (wall times inflated and noisy; CPU seconds steadier)::

    run                                  accuracy  wall s   CPU s epochs  accuracy per seed
    lr_find (100 steps)                  0.004863    20.2     5.1    100  0.004863 0.002783 0.007055
    5 ep, plateau, lr=1e-3 (default)       0.9667    35.1     8.5      5  0.9667 0.9733 0.9644
    5 ep, plateau, lr=suggestion           0.9756    27.9     8.0      5  0.9756 0.9756 0.9867
    10 ep, plateau, lr=1e-3                0.9867    41.1    13.6     10  0.9889 0.98 0.9867
    10 ep, one_cycle, lr=1e-3              0.9756    40.1    12.9     10  0.9844 0.9756 0.9733
    10 ep, cosine, lr=1e-3                 0.9778    59.0    13.7     10  0.9778 0.9756 0.9822
    10 ep, None, lr=1e-3                   0.9867    48.7    12.1     10  0.9889 0.98 0.9867
    10 ep, one_cycle, lr=suggestion        0.9956    48.5    13.1     10  0.9956 0.9778 0.9978

The lr_find row's first column is the suggestion, not an accuracy; seed 0's
sweep took 13.3 CPU s, TensorFlow's first graph building in the process.

``--overhead 3``, the same day and load (each run 8.8-10.8 CPU s; setting the
rate costs ~0.5 ms CPU a batch, ~0.2 s of these fits)::

    one_cycle  median   45.2 s wall   10.8 s CPU
    None       median   40.3 s wall    9.2 s CPU
    plateau    median   49.2 s wall    9.9 s CPU
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from imgclf import CNNClassifier


def _cpu() -> float:
    t = os.times()
    return t.user + t.system


def timed(fn):
    wall, cpu = time.perf_counter(), _cpu()
    out = fn()
    return out, time.perf_counter() - wall, _cpu() - cpu


def overhead(X, y, rounds: int) -> None:
    """Fit time per schedule, interleaved, all epochs run."""
    CNNClassifier(epochs=1, random_state=0).fit(X, y)  # TensorFlow's first-fit costs
    times: dict[str, list] = {}
    for seed in range(rounds):
        for schedule in ("one_cycle", None, "plateau"):
            clf = CNNClassifier(
                epochs=8,
                lr_schedule=schedule,
                learning_rate=1e-3,
                early_stopping=False,
                random_state=seed,
            )
            _, wall, cpu = timed(lambda clf=clf: clf.fit(X, y))
            times.setdefault(str(schedule), []).append((wall, cpu))
            print(f"  {schedule!s:<10} {wall:6.1f} s wall {cpu:6.1f} s CPU", flush=True)
    for name, values in times.items():
        wall, cpu = zip(*values, strict=True)
        print(
            f"{name:<10} median {statistics.median(wall):6.1f} s wall {statistics.median(cpu):6.1f} s CPU"
        )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--short", type=int, default=5, help="epochs of part 1")
    parser.add_argument("--long", type=int, default=10, help="epochs of part 2")
    parser.add_argument("--overhead", type=int, metavar="N", help="only the overhead rounds")
    args = parser.parse_args()
    data = load_digits()
    X = np.round(data.images / 16 * 255).astype(np.uint8)[..., None]
    if args.overhead:
        overhead(X, data.target, args.overhead)
        return
    X_tr, X_te, y_tr, y_te = train_test_split(
        X, data.target, test_size=0.25, stratify=data.target, random_state=0
    )
    rows: dict[str, list] = {}

    def fit(name, **params):
        clf = CNNClassifier(**params)
        _, wall, cpu = timed(lambda: clf.fit(X_tr, y_tr))
        score = clf.score(X_te, y_te)
        rows.setdefault(name, []).append((score, wall, cpu, len(clf.history_["loss"])))
        print(f"  {name:<34} acc {score:.4f}  {wall:6.1f} s wall {cpu:6.1f} s CPU", flush=True)

    for seed in args.seeds:
        print(f"seed {seed}")
        found, wall, cpu = timed(
            lambda seed=seed: CNNClassifier(random_state=seed).lr_find(X_tr, y_tr)
        )
        lr = found.suggestion
        rows.setdefault("lr_find (100 steps)", []).append((lr, wall, cpu, len(found.losses)))
        print(f"  lr_find: suggestion {lr:.3g}  {wall:6.1f} s wall {cpu:6.1f} s CPU", flush=True)
        short = dict(epochs=args.short, lr_schedule="plateau", random_state=seed)
        fit(f"{args.short} ep, plateau, lr=1e-3 (default)", learning_rate=1e-3, **short)
        fit(f"{args.short} ep, plateau, lr=suggestion", learning_rate=lr, **short)
        long = dict(epochs=args.long, random_state=seed)
        for schedule in ("plateau", "one_cycle", "cosine", None):
            fit(
                f"{args.long} ep, {schedule}, lr=1e-3",
                lr_schedule=schedule,
                learning_rate=1e-3,
                **long,
            )
        fit(
            f"{args.long} ep, one_cycle, lr=suggestion",
            lr_schedule="one_cycle",
            learning_rate=lr,
            **long,
        )

    print(f"\nmedians over seeds {args.seeds}")
    print(
        f"{'run':<36} {'accuracy':>8} {'wall s':>7} {'CPU s':>7} {'epochs':>6}  accuracy per seed"
    )
    for name, values in rows.items():
        first, wall, cpu, epochs = zip(*values, strict=True)
        each = " ".join(f"{v:.4g}" for v in first)
        print(
            f"{name:<36} {statistics.median(first):8.4g} {statistics.median(wall):7.1f} "
            f"{statistics.median(cpu):7.1f} {statistics.median(epochs):6.0f}  {each}"
        )


if __name__ == "__main__":
    main()
