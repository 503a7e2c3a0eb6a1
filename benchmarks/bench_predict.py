"""Time CNNClassifier.predict_proba against keras.Model.predict on the same network.

    python benchmarks/bench_predict.py [--data fashion|digits] [--calls 50] [--large-calls 5]
    python benchmarks/bench_predict.py --throughput [--runs 5]

``--throughput`` measures prediction on many images (issue 20): see
:func:`throughput` below for what it does and the figures it printed.

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

Up to ``imgclf._inference.DIRECT_CALL_MAX_IMAGES`` (512) array images take the
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


SCAN = (32, 64, 128, 256, 512, 1024, 2048)


def medians(sides: dict, runs: int) -> dict:
    """(median wall, median CPU) of each side over ``runs`` interleaved rounds,
    the order of the sides turned round every other round."""
    for fn in sides.values():
        fn()  # warm-up
    times = {name: [] for name in sides}
    names = list(sides)
    for i in range(runs):
        for name in names if i % 2 == 0 else names[::-1]:
            times[name].append(timed(sides[name]))
    return {
        name: (statistics.median(t[0] for t in ts), statistics.median(t[1] for t in ts))
        for name, ts in times.items()
    }


def fastest_batch(network, x, runs: int) -> int:
    """The batch size at which ``network.predict(x)`` takes the least CPU time."""
    sides = {b: (lambda b=b: network.predict(x, batch_size=b, verbose=0)) for b in SCAN}
    found = medians(sides, runs)
    for b, (wall, cpu) in found.items():
        print(f"    model.predict batch {b:>5}: wall {wall:7.3f} s  cpu {cpu:7.3f} s", flush=True)
    return min(found, key=lambda b: found[b][1])


def versus_keras(label: str, clf, X, runs: int) -> None:
    """imgclf's predict_proba and transform against model.predict at its fastest
    batch size, on the network and its feature extractor."""
    from imgclf._inference import feature_model, inference_batch_size

    x = clf.network_input(X)
    extractor = feature_model(clf.model_, clf._features_layer)
    print(
        f"{label}: {len(X)} images {x.shape[1:]}, training batch {clf.batch_size_}, "
        f"imgclf's prediction batch {inference_batch_size(clf.image_size_)}",
        flush=True,
    )
    best = fastest_batch(clf.model_, x, 3)
    sides = {
        "predict_proba": lambda: clf.predict_proba(X),
        "model.predict": lambda: clf.model_.predict(x, batch_size=best, verbose=0),
        "transform": lambda: clf.transform(X),
        "extractor.predict": lambda: extractor.predict(x, batch_size=best, verbose=0),
    }
    found = medians(sides, runs)
    for name, (wall, cpu) in found.items():
        print(f"  {name:>17}: wall {wall:7.3f} s  cpu {cpu:7.3f} s", flush=True)
    for ours, theirs in (("predict_proba", "model.predict"), ("transform", "extractor.predict")):
        print(
            f"  {ours} / {theirs} at batch {best}: wall "
            f"{found[ours][0] / found[theirs][0]:.3f}  cpu {found[ours][1] / found[theirs][1]:.3f}"
        )


def paths_old_and_new(clf, X, runs: int) -> None:
    """predict_proba on PNG files in the prediction batch against the training
    batch (what it used before)."""
    import tempfile

    from PIL import Image

    from imgclf._inference import inference_batch_size

    with tempfile.TemporaryDirectory() as folder:
        paths = []
        for i, image in enumerate(X):
            paths.append(os.path.join(folder, f"{i}.png"))
            Image.fromarray(image).save(paths[-1])
        old = type(clf)(**clf.get_params())
        old.__dict__.update({k: v for k, v in vars(clf).items() if k.endswith("_")})
        old._inference_batch = lambda: clf.batch_size_  # noqa: SLF001 (the old behaviour)
        found = medians(
            {"new": lambda: clf.predict_proba(paths), "old": lambda: old.predict_proba(paths)},
            runs,
        )
    print(
        f"paths: {len(paths)} PNG files, batch {inference_batch_size(clf.image_size_)} (new) "
        f"against {clf.batch_size_} (old, the training batch)"
    )
    for name, (wall, cpu) in found.items():
        print(f"  {name}: wall {wall:7.3f} s  cpu {cpu:7.3f} s")
    print(
        f"  new / old: wall {found['new'][0] / found['old'][0]:.3f}  "
        f"cpu {found['new'][1] / found['old'][1]:.3f}"
    )


def throughput(runs: int) -> None:
    """Prediction on many images at the hardware's pace.

    1. The default CNNClassifier on Fashion-MNIST (28x28, one epoch on 2,000
       images, so a training batch of 32): ``model.predict`` on the 10,000 test
       images at each batch size in ``SCAN`` (medians of 3), then imgclf's
       ``predict_proba`` and ``transform`` against ``model.predict`` at the
       fastest batch (CPU time) on the network and on its feature extractor,
       interleaved, medians of ``runs``.
    2. The same for a TransferClassifier on MobileNetV2 (random weights: the
       speed is the architecture's) at 96x96, on 1,024 test images.
    3. ``predict_proba`` on 2,000 PNG files, in the prediction batch against
       the training batch.

    Measured here on 2026-12-03 (``--runs 3``) while six other jobs shared the
    two cores (load average about 12: wall times are two to eight times the
    CPU times and swing between runs; the CPU times are the figures to
    read). Default CNN, 10,000 images, ``model.predict`` CPU s by batch:
    32: 3.77, 64: 3.16, 128: 2.76, 256: 2.65, 512: 2.57, 1024: 2.74, 2048:
    2.93 (imgclf's prediction batch: 512). Against ``model.predict`` at 512:
    ``predict_proba`` 2.49 against 2.62 CPU s (0.950), ``transform``
    2.83 against 2.76 for the feature extractor (1.025). Before, the same
    ``predict_proba`` ran in the training batch, 32 here: 3.77 CPU s, 1.47
    times the fastest batch. MobileNetV2 at 96 px, 1,024 images, CPU s by
    batch: 32: 5.61, 64: 5.62, 128: 5.09, 256: 5.11, 512: 5.01, 1024: 4.76,
    2048: 4.93 (imgclf's batch: 32; an earlier scan of 2,048 images at a
    lower load found 32 fastest: 7.96 against 9.24-9.81 from 256 up, so
    the batch matters little there and the load decides). Against
    ``model.predict`` at 1,024: ``predict_proba`` 5.56 against 5.39 CPU s
    (1.032), ``transform`` 5.51 against 5.37 (1.026). 2,000 PNG files:
    ``predict_proba`` in the prediction batch (512) 0.92 CPU s, 4.09 s wall,
    against 1.29 CPU s, 4.13 s wall in the training batch (0.713 CPU).
    """
    from imgclf import TransferClassifier

    X, y, X_test, _ = load_fashion_mnist()
    cnn = CNNClassifier(epochs=1, random_state=0).fit(X[:2000], y[:2000])
    versus_keras("CNNClassifier", cnn, X_test[:10000], runs)
    transfer = TransferClassifier(
        backbone="mobilenet_v2",
        weights=None,
        image_size=96,
        epochs=1,
        fine_tune_epochs=0,
        random_state=0,
    ).fit(X[:300], y[:300])
    versus_keras("TransferClassifier(mobilenet_v2, 96 px)", transfer, X_test[:1024], runs)
    paths_old_and_new(cnn, X_test[:2000], runs)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", choices=("fashion", "digits"), default="fashion")
    parser.add_argument("--calls", type=int, default=50)
    parser.add_argument("--large-calls", type=int, default=5)
    parser.add_argument("--throughput", action="store_true")
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    if args.throughput:
        throughput(args.runs)
        return
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
