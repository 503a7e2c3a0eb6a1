"""Time CNNClassifier.predict_proba against keras.Model.predict on the same network.

    python benchmarks/bench_predict.py [--data fashion|digits] [--calls 50] [--large-calls 5]

One fitted network (default CNNClassifier architecture, one epoch on 2,000
images: the weights do not matter here, the network's size does). For each
batch size, imgclf's ``predict_proba(X)`` and Keras's ``model_.predict(x)``
(``x = clf.network_input(X)``, already converted: Keras is spared the input
check) are called alternately, ``--calls`` times each (``--large-calls`` for
10,000 images), after a warm-up call of each. Also shown: calling the network
directly (``model_(x, training=False)``, eager), the floor for one image.
Prints the median wall time and the mean CPU time (user + system of the
whole process, from ``os.times()``, so TensorFlow's threads count) per call,
and imgclf's ratio to Keras. Bar (issue 12): 1 image <= 0.3 of Keras, 10,000
images <= 1.0.

Up to ``imgclf.inference.DIRECT_CALL_MAX_IMAGES`` (512) array images take the
traced call; more go through ``model.predict`` with imgclf's input pipeline.

Measured here on 2026-12-01 while five jobs shared the two cores (load
average 10 to 15, so every absolute time is inflated, Keras's per-call
set-up most: 471 ms for one image against 40 ms on a quiet machine; the
ratios of interleaved medians are the figures to read)::

    fashion (28x28, 391,850 parameters)   digits (8x8, 19,754 parameters)
    images  imgclf ms  keras ms  wall  cpu  images  wall   cpu
         1      17.0     471.0  0.036 0.037      1  0.025 0.030
         8      13.9     540.2  0.026 0.078      8  0.010 0.044
        64     125.5    1184.0  0.106 0.263     64  0.024 0.079
       512     700.1    1729.4  0.405 0.711    512  0.084 0.299
     10000   21400.9   21523.4  0.994 0.981  10000  0.969 1.024
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np
from _datasets import load_fashion_mnist
from sklearn.datasets import load_digits

from imgclf import CNNClassifier


def data(name: str):
    if name == "digits":
        d = load_digits()
        X = np.round(d.images / 16 * 255).astype(np.uint8)
        # 10,000 images for the throughput row: digits repeated.
        reps = -(-10000 // len(X))
        return X, d.target, np.tile(X, (reps, 1, 1))[:10000]
    X, y, X_test, _ = load_fashion_mnist()
    return X[:2000], y[:2000], X_test[:10000]


def timed(fn):
    t0, c0 = time.perf_counter(), os.times()
    fn()
    c1 = os.times()
    return time.perf_counter() - t0, (c1.user - c0.user) + (c1.system - c0.system)


def compare(sides: dict, calls: int) -> dict:
    """(median wall, mean CPU) per side, the sides called in turn ``calls``
    times. ``os.times()`` ticks in 10 ms, coarser than one small call, so CPU
    time is the total over the calls divided by their number."""
    for fn in sides.values():
        fn()  # warm-up: tracing and first-call costs are paid by neither side
    times = {name: [] for name in sides}
    for _ in range(calls):
        for name, fn in sides.items():
            times[name].append(timed(fn))
    return {
        name: (statistics.median(t[0] for t in ts), sum(t[1] for t in ts) / len(ts))
        for name, ts in times.items()
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", choices=("fashion", "digits"), default="fashion")
    parser.add_argument("--calls", type=int, default=50)
    parser.add_argument("--large-calls", type=int, default=5)
    args = parser.parse_args()
    X, y, X_many = data(args.data)
    clf = CNNClassifier(epochs=1, random_state=0).fit(X, y)
    model = clf.model_
    print(
        f"{args.data}: input {model.input_shape[1:]}, {model.count_params():,} parameters, "
        f"batch_size_ {clf.batch_size_}; medians of {args.calls} calls "
        f"({args.large_calls} for 10,000 images), interleaved"
    )
    print(
        f"{'images':>7} {'imgclf ms':>10} {'keras ms':>9} {'direct ms':>10} "
        f"{'ratio wall':>11} {'ratio cpu':>10}"
    )
    for n in (1, 8, 64, 512, 10000):
        images = (X_many if n > len(X) else X)[:n]
        x = clf.network_input(images)
        sides = {
            "imgclf": lambda images=images: clf.predict_proba(images),
            "keras": lambda x=x: model.predict(x, batch_size=clf.batch_size_, verbose=0),
        }
        if n == 1:
            sides["direct"] = lambda x=x: model(x, training=False)
        med = compare(sides, args.large_calls if n >= 10000 else args.calls)
        direct = f"{med['direct'][0] * 1e3:10.2f}" if "direct" in med else f"{'':>10}"
        print(
            f"{n:>7} {med['imgclf'][0] * 1e3:10.2f} {med['keras'][0] * 1e3:9.2f} {direct} "
            f"{med['imgclf'][0] / med['keras'][0]:11.3f} "
            f"{med['imgclf'][1] / max(med['keras'][1], 1e-9):10.3f}"
        )


if __name__ == "__main__":
    main()
