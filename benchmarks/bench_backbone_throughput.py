"""A backbone's forward throughput against this CPU's float32 limit.

    python benchmarks/bench_backbone_throughput.py [--backbone efficientnet_lite0]
        [--size 224] [--batches 1 16 32 64] [--images 256] [--repeats 3] [--matmul 2048]

Counts the backbone's multiply-adds per image from its Keras layers (``Conv2D``
and ``DepthwiseConv2D`` from their output size, kernel and channels, ``Dense``
from its weights), times the frozen backbone (pooled features, as
``TransferClassifier``'s frozen stage computes them) on ``--images`` random
images per batch size (traced once outside the timing; median of
``--repeats``), and times a ``--matmul`` square float32 matrix product with
``tf.matmul`` (median of 7) as the machine's practical limit in multiply-adds
per second. Prints images per second, the achieved multiply-adds per second
and their share of the limit, for the whole network and the share of its
multiply-adds in depthwise convolutions. Wall and CPU time (``os.times()``,
this process) for each; run ``uptime`` beside it: other jobs on the cores
lower both figures.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np

from imgclf._backend import get_keras, get_tf
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
    limit = n**3 / wall
    print(
        f"matmul {n}x{n} @ {n}x{n} float32: {wall * 1000:.0f} ms wall / {cpu * 1000:.0f} ms "
        f"CPU (median of 7): {limit / 1e9:.1f} G multiply-adds/s (wall), "
        f"{n**3 / max(cpu, 1e-9) / 1e9:.1f} per CPU-second",
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
    images = np.random.default_rng(0).uniform(-1, 1, (args.images, args.size, args.size, 3))
    images = images.astype(np.float32)
    variants = [(batch, False) for batch in args.batches]
    variants += [(batch, True) for batch in args.batches if args.jit]
    for batch, jit in variants:
        step = tf.function(
            lambda x: extractor(x, training=False), reduce_retracing=True, jit_compile=jit
        )
        step(images[:batch])

        def run(step=step, batch=batch):
            for start in range(0, len(images) - batch + 1, batch):
                step(images[start : start + batch]).numpy()

        count = (len(images) // batch) * batch
        wall, cpu = timed(run, args.repeats)
        rate = count / wall
        print(
            f"  batch {batch:3d}{' XLA' if jit else ''}: {count} images in {wall:.2f} s wall / {cpu:.2f} s CPU: "
            f"{rate:.1f} images/s, {rate * total / 1e9:.1f} G multiply-adds/s = "
            f"{100 * rate * total / limit:.0f} % of the matmul rate "
            f"({count / max(cpu, 1e-9):.1f} images per CPU-second)",
            flush=True,
        )
    if args.per_layer:
        per_layer(base, args.per_layer, args.repeats)
    print(f"load average {os.getloadavg()[0]:.2f} (1 min) at the end")


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
