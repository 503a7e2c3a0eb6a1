"""A backbone's forward throughput against this CPU's float32 limit, with and
without BatchNorm folded into its convolutions.

    python benchmarks/bench_backbone_throughput.py [--backbone efficientnet_lite0]
        [--size 224] [--batches 1 16 32 64] [--images 256] [--repeats 3] [--matmul 2048]
        [--fold] [--jit] [--ops] [--per-layer BATCH] [--fit IMAGES] [--transform IMAGES]
        [--fit-repeats 3]

Counts the backbone's multiply-adds per image from its Keras layers (``Conv2D``
and ``DepthwiseConv2D`` from their output size, kernel and channels, ``Dense``
from its weights), times the frozen backbone (pooled features, as
``TransferClassifier``'s frozen stage computes them) on ``--images`` random
images per batch size (traced once outside the timing), and times a
``--matmul`` square float32 matrix product with ``tf.matmul`` (median of 7)
as the machine's practical limit in multiply-adds per second. ``--fold``
also times the copy with BatchNorm folded (``imgclf._fold.fold_batchnorm``,
as the frozen stage and ``transform`` run it), ``--jit`` each network
compiled with XLA. The variants are interleaved: each of ``--repeats``
rounds times every one once, and the medians are printed. Prints images per
second, the achieved multiply-adds per second and their share of the limit,
by wall time and per CPU second (``os.times()``, this process: the figure a
loaded machine still gives; run ``uptime`` beside it).

``--ops`` prints the kernels one call of each network runs, read from a
TensorFlow profile, so the graph rewrites' fusions show.
``--per-layer BATCH`` times each layer alone. ``--fit N`` times
``TransferClassifier(fine_tune_epochs=0, random_state=0).fit`` on the first
``N`` Fashion-MNIST images with the frozen stage's features computed folded
and unfolded, alternating, ``--fit-repeats`` of each; ``--transform N`` times
a fitted estimator's ``transform`` of ``N`` images the same way.

Measured on this 2-core machine, shared (see "The backbone's speed against
this CPU's limit" in docs/benchmarks.rst): ``efficientnet_lite0`` at 224 px
ran at 25-29 % of the matmul's rate per CPU second at batches of 32 and 64
unfolded, 46-51 % folded; 1-2 % compiled with XLA (its CPU depthwise
convolution is about 65 times slower). A 500-image fit took 12.4 CPU s
unfolded, 9.2 folded (medians of 3; 11.7 and 8.1 in a second run).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import numpy as np

from imgclf._backend import get_keras, get_tf
from imgclf._fold import fold_batchnorm, foldable_pairs
from imgclf.backbones import get_backbone


def cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system


def layers_of(model):
    for layer in model.layers:
        if hasattr(layer, "layers"):
            yield from layers_of(layer)
        else:
            yield layer


def multiply_adds(model) -> dict[str, int]:
    """Multiply-adds of one image, per kind of layer."""
    keras = get_keras()
    counts = {"Conv2D": 0, "DepthwiseConv2D": 0, "Dense": 0}
    for layer in layers_of(model):
        if isinstance(layer, keras.layers.DepthwiseConv2D):
            _, h, w, c = layer.output.shape
            kh, kw = layer.kernel_size
            counts["DepthwiseConv2D"] += h * w * c * kh * kw
        elif isinstance(layer, keras.layers.Conv2D):
            _, h, w, c = layer.output.shape
            kh, kw = layer.kernel_size
            cin = layer.input.shape[-1] // layer.groups
            counts["Conv2D"] += h * w * c * kh * kw * cin
        elif isinstance(layer, keras.layers.Dense):
            counts["Dense"] += int(np.prod(layer.kernel.shape))
    return counts


def timed(fn, repeats: int) -> tuple[float, float]:
    """Median wall and CPU seconds of ``fn()`` over ``repeats`` calls."""
    walls, cpus = [], []
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), cpu_seconds()
        fn()
        walls.append(time.perf_counter() - wall)
        cpus.append(cpu_seconds() - cpu)
    return statistics.median(walls), statistics.median(cpus)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="efficientnet_lite0")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 16, 32, 64])
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--matmul", type=int, default=2048)
    parser.add_argument(
        "--jit", action="store_true", help="also time the backbone compiled with XLA"
    )
    parser.add_argument(
        "--fold",
        action="store_true",
        help="also time the backbone with BatchNorm folded into its convolutions",
    )
    parser.add_argument(
        "--fit",
        type=int,
        metavar="IMAGES",
        help="also time TransferClassifier(fine_tune_epochs=0) fits on this many Fashion-MNIST "
        "images with the frozen stage's features computed folded and unfolded",
    )
    parser.add_argument("--fit-repeats", type=int, default=3)
    parser.add_argument(
        "--transform",
        type=int,
        metavar="IMAGES",
        help="also time a fitted TransferClassifier's transform of this many Fashion-MNIST "
        "images, folded and unfolded (--fit-repeats calls of each, alternating, after a first "
        "call of each that traces the network and makes the folded copy)",
    )
    parser.add_argument(
        "--ops",
        action="store_true",
        help="print the kernels one traced call runs (after TensorFlow's graph rewrites), "
        "counted by kind, for each network timed",
    )
    parser.add_argument(
        "--per-layer",
        type=int,
        metavar="BATCH",
        help="also time each layer alone on a batch of this size and sum the time per kind "
        "of layer (an upper bound: no fusion between layers)",
    )
    args = parser.parse_args()
    tf, keras = get_tf(), get_keras()
    print(
        f"TensorFlow {tf.__version__}, {os.cpu_count()} CPUs, intra-op threads "
        f"{tf.config.threading.get_intra_op_parallelism_threads() or 'default'}; "
        f"load average {os.getloadavg()[0]:.2f}",
        flush=True,
    )

    n = args.matmul
    a = tf.random.normal((n, n), dtype=tf.float32)
    b = tf.random.normal((n, n), dtype=tf.float32)
    matmul = tf.function(lambda: tf.reduce_sum(tf.matmul(a, b)))
    matmul()
    wall, cpu = timed(lambda: matmul().numpy(), 7)
    limit, limit_cpu = n**3 / wall, n**3 / max(cpu, 1e-9)
    print(
        f"matmul {n}x{n} @ {n}x{n} float32: {wall * 1000:.0f} ms wall / {cpu * 1000:.0f} ms "
        f"CPU (median of 7): {limit / 1e9:.1f} G multiply-adds/s (wall), "
        f"{limit_cpu / 1e9:.1f} per CPU-second",
        flush=True,
    )

    base = get_backbone(args.backbone).build((args.size, args.size, 3), "imagenet")
    pooled = keras.layers.GlobalAveragePooling2D()(base.output)
    extractor = keras.Model(base.inputs, pooled)
    counts = multiply_adds(base)
    total = sum(counts.values())
    print(
        f"{args.backbone} at {args.size} px: {total / 1e6:.0f} M multiply-adds per image "
        + ", ".join(f"{k} {v / 1e6:.0f} M ({100 * v / total:.0f} %)" for k, v in counts.items()),
        flush=True,
    )
    networks = {"unfolded": extractor}
    if args.fold:
        wall, cpu = time.perf_counter(), cpu_seconds()
        networks["folded"] = fold_batchnorm(extractor)
        print(
            f"folded {len(foldable_pairs(extractor))} BatchNorms into their convolutions in "
            f"{time.perf_counter() - wall:.2f} s wall / {cpu_seconds() - cpu:.2f} s CPU",
            flush=True,
        )
    images = np.random.default_rng(0).uniform(-1, 1, (args.images, args.size, args.size, 3))
    images = images.astype(np.float32)
    if args.fold:
        a, b = (networks[k](images[:8], training=False).numpy() for k in ("unfolded", "folded"))
        print(
            f"largest difference folded - unfolded: {np.abs(a - b).max() / np.abs(a).max():.1e} of the largest feature"
        )
    if args.ops:
        for name, network in networks.items():
            print(f"kernels of one call, {name}: {executed_ops(network, images[:1])}", flush=True)
    variants = [
        (batch, name, jit)
        for jit in ([False, True] if args.jit else [False])
        for batch in args.batches
        for name in networks
    ]
    runs = {}
    for batch, name, jit in variants:
        network = networks[name]
        step = tf.function(
            lambda x, network=network: network(x, training=False),
            reduce_retracing=True,
            jit_compile=jit,
        )
        step(images[:batch])  # traced (and compiled) outside the timing

        def run(step=step, batch=batch):
            for start in range(0, len(images) - batch + 1, batch):
                step(images[start : start + batch]).numpy()

        runs[(batch, name, jit)] = run
    # Interleaved: each round times every variant once, so the load on the
    # shared cores falls on all of them alike.
    times = {variant: ([], []) for variant in variants}
    for _ in range(args.repeats):
        for variant in variants:
            wall, cpu = timed(runs[variant], 1)
            times[variant][0].append(wall)
            times[variant][1].append(cpu)
    for batch, name, jit in variants:
        walls, cpus = times[(batch, name, jit)]
        wall, cpu = statistics.median(walls), statistics.median(cpus)
        count = (len(images) // batch) * batch
        rate, per_cpu = count / wall, count / max(cpu, 1e-9)
        label = f"{name}{' XLA' if jit else ''}"
        print(
            f"  batch {batch:3d} {label:13s}: {count} images in {wall:.2f} s wall / {cpu:.2f} s "
            f"CPU: {rate:.1f} images/s, {rate * total / 1e9:.1f} G multiply-adds/s = "
            f"{100 * rate * total / limit:.0f} % of the matmul rate; "
            f"{per_cpu:.1f} images per CPU-second = {100 * per_cpu * total / limit_cpu:.0f} % of "
            "the matmul's rate per CPU-second",
            flush=True,
        )
    if args.per_layer:
        per_layer(base, args.per_layer, args.repeats)
    if args.fit:
        fits(args.backbone, args.fit, args.fit_repeats)
    if args.transform:
        transforms(args.backbone, args.transform, args.fit_repeats)
    print(f"load average {os.getloadavg()[0]:.2f} (1 min) at the end")


def executed_ops(network, x) -> str:
    """The kernels one traced call of ``network`` runs, by kind, most first:
    read from a profile of the call (TensorFlow's trace names each kernel
    ``node name:kernel``), so grappler's fusions show (``_MklNativeFusedConv2D``
    is a convolution with its bias and activation)."""
    import collections
    import glob
    import tempfile

    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    tf = get_tf()
    step = tf.function(lambda x: network(x, training=False))
    step(x)
    with tempfile.TemporaryDirectory() as logdir:
        tf.profiler.experimental.start(logdir)
        step(x).numpy()
        tf.profiler.experimental.stop()
        (path,) = glob.glob(os.path.join(logdir, "plugins", "profile", "*", "*.xplane.pb"))
        space = xplane_pb2.XSpace()
        with open(path, "rb") as f:
            space.ParseFromString(f.read())
    kinds = collections.Counter()
    for plane in space.planes:
        for line in plane.lines:
            for event in line.events:
                name = plane.event_metadata[event.metadata_id].name
                if ":" in name.replace("::", "") and not name.startswith("EagerLocalExecute"):
                    kinds[name.rsplit(":", 1)[1]] += 1
    kinds.pop("ReadVariableOp", None)
    return ", ".join(f"{kind} {n}" for kind, n in kinds.most_common())


def transforms(backbone: str, count: int, repeats: int) -> None:
    """Wall and CPU seconds of ``transform`` of ``count`` images, folded and
    unfolded (``FOLD_MIN_PIXELS`` raised above theirs), alternating;
    the first call of each side (tracing, and the copy) is reported apart."""
    import imgclf._frozenfeatures as transfer
    from imgclf import TransferClassifier

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from _datasets import load_fashion_mnist

    X, y, X_test, _ = load_fashion_mnist()
    clf = TransferClassifier(backbone=backbone, fine_tune_epochs=0, epochs=1, random_state=0)
    clf.fit(X[:100], y[:100])
    images = X_test[:count]
    threshold = transfer.FOLD_MIN_PIXELS
    times = {"unfolded": ([], []), "folded": ([], [])}
    for r in range(repeats + 1):
        for name in ("unfolded", "folded") if r % 2 == 0 else ("folded", "unfolded"):
            transfer.FOLD_MIN_PIXELS = threshold if name == "folded" else 2**62
            wall, cpu = time.perf_counter(), cpu_seconds()
            clf.transform(images)
            wall, cpu = time.perf_counter() - wall, cpu_seconds() - cpu
            if r == 0:
                print(f"    first transform, {name}: {wall:.2f} s wall / {cpu:.2f} s CPU")
            else:
                times[name][0].append(wall)
                times[name][1].append(cpu)
    transfer.FOLD_MIN_PIXELS = threshold
    print(f"  transform of {count} Fashion-MNIST images at {clf.image_size_[0]} px, later calls:")
    for name, (walls, cpus) in times.items():
        print(
            f"    {name:9s}: median {statistics.median(walls):.2f} s wall / "
            f"{statistics.median(cpus):.2f} s CPU (of {len(walls)}), "
            f"{count / statistics.median(cpus):.1f} images per CPU-second"
        )


def fits(backbone: str, count: int, repeats: int) -> None:
    """Wall and CPU seconds of whole fits whose frozen stage computes its
    features folded, and unfolded (``inference_copy`` made the identity),
    alternating; medians of ``repeats`` of each."""
    import imgclf._frozenfeatures as transfer
    from imgclf import TransferClassifier

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from _datasets import load_fashion_mnist

    X, y, _, _ = load_fashion_mnist()
    X, y = X[:count], y[:count]
    folding = transfer.inference_copy
    times = {"unfolded": ([], []), "folded": ([], [])}
    for r in range(repeats):
        for name in ("unfolded", "folded") if r % 2 == 0 else ("folded", "unfolded"):
            transfer.inference_copy = folding if name == "folded" else (lambda model: model)
            clf = TransferClassifier(backbone=backbone, fine_tune_epochs=0, random_state=0)
            wall, cpu = time.perf_counter(), cpu_seconds()
            clf.fit(X, y)
            times[name][0].append(time.perf_counter() - wall)
            times[name][1].append(cpu_seconds() - cpu)
            print(
                f"    fit {r + 1} {name}: {times[name][0][-1]:.1f} s wall / "
                f"{times[name][1][-1]:.1f} s CPU, {len(clf.history_['loss'])} epochs, "
                f"load average {os.getloadavg()[0]:.2f}",
                flush=True,
            )
    transfer.inference_copy = folding
    print(
        f"  TransferClassifier({backbone!r}, fine_tune_epochs=0).fit on {count} Fashion-MNIST images:"
    )
    for name, (walls, cpus) in times.items():
        print(
            f"    {name:9s}: median {statistics.median(walls):.1f} s wall / "
            f"{statistics.median(cpus):.1f} s CPU (of {len(walls)})"
        )


def per_layer(model, batch: int, repeats: int) -> None:
    """CPU seconds of each kind of layer, each layer run alone on random input."""
    tf = get_tf()
    totals: dict[str, float] = {}
    for layer in layers_of(model):
        inputs = layer.input
        shapes = [t.shape for t in (inputs if isinstance(inputs, list) else [inputs])]
        if not shapes or any(None in tuple(s)[1:] for s in shapes):
            continue
        xs = [tf.random.normal((batch, *tuple(s)[1:])) for s in shapes]
        if type(layer).__name__ == "InputLayer":
            continue
        call = tf.function(lambda *x, layer=layer: layer(x if len(x) > 1 else x[0]))
        call(*xs)
        _, cpu = timed(lambda call=call, xs=xs: call(*xs).numpy(), repeats)
        kind = type(layer).__name__
        totals[kind] = totals.get(kind, 0.0) + cpu
    total = sum(totals.values())
    print(f"  each layer alone on a batch of {batch} (CPU s, median of {repeats}):")
    for kind, cpu in sorted(totals.items(), key=lambda kv: -kv[1]):
        print(f"    {kind:24s} {cpu:7.3f} s  {100 * cpu / total:4.0f} %")


if __name__ == "__main__":
    main()
