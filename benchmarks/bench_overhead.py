"""Time CNNClassifier.fit against plain Keras fitting the very same network.

    python benchmarks/bench_overhead.py [--data fashion|digits] [--runs 5]
    python benchmarks/bench_overhead.py --images 8000 --epochs 2 --schedule one_cycle --runs 9

Both sides are timed from building the network to the end of ``fit``, in one
process, runs interleaved. The plain side builds
``keras.models.clone_model(clf.model_)``, compiles it with the same optimizer,
loss and metrics, and fits the same uint8 arrays with the same batch size and
epochs. imgclf runs with ``augment=None, early_stopping=False,
validation_fraction=0.0``, ``lr_schedule="plateau", learning_rate=1e-3``
(the defaults when the figures below were measured) and its other defaults
(so it also validates the input, encodes labels, seeds, frees the previous
session and runs its learning-rate callback). Prints the ratio of the minimum times (the machine is
noisy; minimums are stable) and of the medians. Bar (issue 2): <= 1.05.

``--images``, ``--epochs`` and ``--schedule`` (``one_cycle``, ``plateau``,
``none``) set the work and imgclf's schedule (the plain side keeps a
constant rate: a schedule's callback costs nothing measurable); each run's
CPU time (``os.times()``, all threads) is printed beside its wall time, with
the ratio of the median CPU times, the figure issue 20 asks for (bar 1.02).

Measured here on 2026-11-24: digits 0.991 of minimums, 0.962 of medians.
Fashion-MNIST: this machine flips between a fast and a slow state for the
same fit (about 12 s or 17 s here, either side), so minimums were not stable:
two invocations of ``--runs 5`` and ``--runs 9`` gave 1.135 and 0.707 of
minimums, as imgclf or Keras happened to draw the fast state; pooled, 14
runs each: 0.979 of medians; within the fast state 12.6 s against 12.1 s.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import keras
import numpy as np
from _datasets import load_fashion_mnist
from sklearn.datasets import load_digits

from imgclf import CNNClassifier


def data(name: str):
    if name == "digits":
        d = load_digits()
        return np.round(d.images / 16 * 255).astype(np.uint8), d.target, 10
    X, y, _, _ = load_fashion_mnist()
    return X[:10000], y[:10000], 2


def cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", choices=("fashion", "digits"), default="fashion")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--images", type=int, default=None)
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--schedule", choices=("plateau", "one_cycle", "none"), default="plateau")
    args = parser.parse_args()
    X, y, epochs = data(args.data)
    X, y = X[: args.images], y[: args.images]
    epochs = args.epochs or epochs
    schedule = None if args.schedule == "none" else args.schedule
    params = dict(
        epochs=epochs,
        lr_schedule=schedule,
        learning_rate=1e-3 if schedule == "plateau" else 3e-3,
        augment=None,
        early_stopping=False,
        validation_fraction=0.0,
        random_state=0,
    )

    def run_imgclf():
        start = time.perf_counter()
        clf = CNNClassifier(**params).fit(X, y)
        return time.perf_counter() - start, clf

    # Warm-up: TensorFlow's one-off start-up is paid by neither side.
    _, reference = run_imgclf()
    batch_size = reference.batch_size_
    y_enc = np.searchsorted(reference.classes_, y)

    def run_keras():
        start = time.perf_counter()
        model = keras.models.clone_model(reference.model_)
        model.compile(
            optimizer=keras.optimizers.Adam(reference.learning_rate),
            loss="sparse_categorical_crossentropy",
            metrics=["accuracy"],
        )
        model.fit(X, y_enc, batch_size=batch_size, epochs=epochs, verbose=0)
        return time.perf_counter() - start

    times = {"imgclf": [], "keras": []}
    cpu = {"imgclf": [], "keras": []}
    for i in range(args.runs):
        order = ("imgclf", "keras") if i % 2 == 0 else ("keras", "imgclf")
        for side in order:
            before = cpu_seconds()
            seconds = run_imgclf()[0] if side == "imgclf" else run_keras()
            cpu[side].append(cpu_seconds() - before)
            times[side].append(seconds)
            print(
                f"run {i + 1} {side:>6}: {seconds:6.2f} s  cpu {cpu[side][-1]:6.2f} s", flush=True
            )
    print(
        f"\n{args.data}: {len(X)} images {X.shape[1:]}, {epochs} epochs, batch {batch_size}, "
        f"schedule {schedule}, {args.runs} runs each"
    )
    for side, values in times.items():
        print(f"{side:>6}: min {min(values):6.2f} s  median {statistics.median(values):6.2f} s")
    print(f"ratio imgclf/keras of minimums: {min(times['imgclf']) / min(times['keras']):.3f}")
    print(
        "ratio imgclf/keras of medians:  "
        f"{statistics.median(times['imgclf']) / statistics.median(times['keras']):.3f}"
    )
    for side, values in cpu.items():
        print(f"{side:>6} cpu: median {statistics.median(values):6.2f} s")
    print(
        "ratio imgclf/keras of median CPU times: "
        f"{statistics.median(cpu['imgclf']) / statistics.median(cpu['keras']):.3f}"
    )
    # Each run's two sides ran back to back, so their ratio shares the
    # machine's state; the median of those ratios is the steadiest figure.
    paired = [a / b for a, b in zip(cpu["imgclf"], cpu["keras"], strict=True)]
    print(f"median of each run's CPU ratio imgclf/keras: {statistics.median(paired):.3f}")


if __name__ == "__main__":
    main()
