"""Training from image files: speed and memory against the in-memory baseline.

Builds (once) a folder of 64x64 RGB JPEGs from Fashion-MNIST's training set,
one sub-folder per class (Debian package ``dataset-fashion-mnist``), then:

1. ``rate``: images per second of one training epoch from paths vs from the
   same images already decoded in memory (same network, same batch size);
   alternating runs, medians, and their ratio (target >= 0.90).
2. ``memory``: peak resident memory of fitting one epoch on 16,000 files vs
   4,000 files, each fit in its own fresh process (target: difference <= 100 MB).
3. ``iterate``: one pass over the folder through imgclf's pipeline
   (``load_folder`` + scan + decode, cold scan cache every run) vs
   ``keras.utils.image_dataset_from_directory``; medians and ratio (target >= 1).

Usage::

    python benchmarks/bench_paths.py all            # everything (about 15 min on 2 cores)
    python benchmarks/bench_paths.py rate --repeats 3
    python benchmarks/bench_paths.py memory
    python benchmarks/bench_paths.py iterate --repeats 5

``--folder`` chooses where the JPEGs go (default: a folder in the temp dir).

Measured here on 2026-11-24 (2 cores, quiet machine):

- rate, 16,000 files, three invocations (``--repeats 3``, ``4``, ``6``): paths /
  memory = 0.76, 0.90 and 1.12 of medians. The machine flips between two
  states for the same fit (about 64 s and 85 s an epoch here, either side), and
  which runs draw which decides a small-sample median: the first invocation's
  three paths runs all drew the slow state, the third's memory runs all did.
  Pooled, 13 runs each: median 84.6 s from paths, 85.0 s in memory (1.005);
  within the slow state 84.8 against 85.4 s, within the fast one 64.5 against
  64.9 s (medians).
- memory: 1,086 MB peak RSS fitting on 4,000 files, 1,119 MB on 16,000 (+33 MB).
- iterate (``--repeats 8``): 1.32x the speed of ``image_dataset_from_directory``
  (listing, scan and one pass); the pass alone 0.61 s against 1.16 s.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

FASHION_DIR = os.environ.get("FASHION_MNIST_DIR", "/usr/share/datasets/fashion-mnist")
CLASSES = ["tshirt", "trouser", "pullover", "dress", "coat"]
CLASSES += ["sandal", "shirt", "sneaker", "bag", "boot"]
SIDE = 64


def _read_idx(path: str) -> np.ndarray:
    with gzip.open(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def make_folder(folder: str, n: int) -> None:
    """Write ``n`` Fashion-MNIST images as 64x64 RGB JPEGs (quality 90), each
    tinted with a random colour so the files are genuinely RGB."""
    from PIL import Image

    marker = os.path.join(folder, f".complete-{n}")
    if os.path.exists(marker):
        return
    images = _read_idx(os.path.join(FASHION_DIR, "train-images-idx3-ubyte.gz"))[:n]
    labels = _read_idx(os.path.join(FASHION_DIR, "train-labels-idx1-ubyte.gz"))[:n]
    tints = np.random.default_rng(0).uniform(0.4, 1.0, size=(n, 3))
    for name in CLASSES:
        os.makedirs(os.path.join(folder, name), exist_ok=True)
    t0 = time.perf_counter()
    for i, (image, label) in enumerate(zip(images, labels, strict=True)):
        big = np.asarray(Image.fromarray(image).resize((SIDE, SIDE), Image.BILINEAR), np.float32)
        rgb = np.clip(big[..., None] * tints[i], 0, 255).astype(np.uint8)
        Image.fromarray(rgb).save(os.path.join(folder, CLASSES[label], f"{i:05d}.jpg"), quality=90)
    open(marker, "w").close()
    print(f"wrote {n} JPEGs to {folder} in {time.perf_counter() - t0:.0f} s", flush=True)


def _estimator(**extra):
    from imgclf import CNNClassifier

    # One epoch, no hold-out, no early stopping: the rate of plain training.
    return CNNClassifier(
        epochs=1,
        batch_size=64,
        validation_fraction=0.0,
        early_stopping=False,
        random_state=0,
        **extra,
    )


def _decode_in_memory(X) -> np.ndarray:
    from PIL import Image

    return np.stack([np.asarray(Image.open(p).convert("RGB")) for p in X])


def bench_rate(folder: str, n: int, repeats: int) -> dict:
    from imgclf import load_folder

    X, y = load_folder(folder)
    pick = np.linspace(0, len(X) - 1, n).astype(int)  # every class (X is sorted by class)
    X, y = X[pick], y[pick]
    arrays = _decode_in_memory(X)
    print(f"rate: {len(X)} images, in memory {arrays.nbytes / 1e6:.0f} MB", flush=True)
    few = np.linspace(0, len(X) - 1, 256).astype(int)  # every class (X is sorted by class)
    _estimator().fit(arrays[few], y[few])  # warm-up: TF start-up, first graph builds
    _estimator().fit(X[few], y[few])
    times = {"memory": [], "paths": []}
    for r in range(repeats):
        # ABBA order: a load that drifts during the run favours neither side.
        pair = [("memory", arrays), ("paths", X)]
        for mode, data in pair if r % 2 == 0 else pair[::-1]:
            t0 = time.perf_counter()
            _estimator().fit(data, y)
            times[mode].append(time.perf_counter() - t0)
            print(f"  run {r + 1} {mode:6s} {times[mode][-1]:6.1f} s", flush=True)
    med = {k: statistics.median(v) for k, v in times.items()}
    rates = {k: len(X) / v for k, v in med.items()}
    ratio = rates["paths"] / rates["memory"]
    # This machine switches between a fast and a slow state (the same fit
    # measured 16 s and 22 s), so a median of few runs depends on which runs
    # drew which state; the fastest run of each side compares like with like.
    best = min(times["memory"]) / min(times["paths"])
    print(
        f"rate: in memory {rates['memory']:.0f} img/s, from paths {rates['paths']:.0f} img/s "
        f"(medians of {repeats}); paths / memory = {ratio:.3f} of medians, {best:.3f} of the "
        "fastest runs (target >= 0.90)",
        flush=True,
    )
    return {"rates": rates, "ratio": ratio, "ratio_of_fastest": best, "times": times}


def _rss_child(folder: str, n: int) -> None:
    """Runs in a fresh process: fit one epoch on ``n`` files, print peak RSS."""
    import resource

    from imgclf import _scan as scan
    from imgclf import load_folder

    X, y = load_folder(folder)
    # A class-balanced subset: every n-th file of the sorted list.
    pick = np.linspace(0, len(X) - 1, n).astype(int)
    X, y = X[pick].copy(), y[pick].copy()
    scan.clear_scan_cache()  # hold only what fitting on these n files needs
    _estimator().fit(X, y)
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"n": n, "peak_mb": peak_kb / 1024}))


def bench_memory(folder: str, sizes: tuple[int, int], repeats: int) -> dict:
    peaks = {n: [] for n in sizes}
    for r in range(repeats):
        for n in sizes:
            out = subprocess.run(
                [sys.executable, __file__, "_rss", "--folder", folder, "--n", str(n)],
                check=True,
                capture_output=True,
                text=True,
            ).stdout
            peak = json.loads(out.strip().splitlines()[-1])["peak_mb"]
            peaks[n].append(peak)
            print(f"  run {r + 1} fit on {n:5d} files: peak RSS {peak:7.1f} MB", flush=True)
    small, large = sizes
    med = {n: statistics.median(v) for n, v in peaks.items()}
    diff = med[large] - med[small]
    print(
        f"memory: peak RSS {med[small]:.0f} MB ({small} files) vs {med[large]:.0f} MB "
        f"({large} files); difference {diff:.0f} MB (target <= 100 MB)",
        flush=True,
    )
    return {"peaks": peaks, "difference_mb": diff}


def _iterate_imgclf(folder: str) -> tuple[int, float]:
    from imgclf import _pipeline as pipeline
    from imgclf import _scan as scan
    from imgclf import load_folder
    from imgclf._validation import Images

    scan.clear_scan_cache()  # every run pays for the scan, like a new process
    t0 = time.perf_counter()
    X, y = load_folder(folder)
    codes = np.unique(y, return_inverse=True)[1]
    kwargs = pipeline.make_dataset(
        Images(paths=X), codes, size=(SIDE, SIDE), channels=3, batch_size=32, shuffle=True, seed=0
    )
    setup = time.perf_counter() - t0
    count = 0
    for images, _ in kwargs["x"]:
        count += int(images.shape[0])
    return count, setup


def _iterate_keras(folder: str) -> tuple[int, float]:
    import keras

    t0 = time.perf_counter()
    ds = keras.utils.image_dataset_from_directory(
        folder, image_size=(SIDE, SIDE), batch_size=32, shuffle=True, seed=0, verbose=False
    )
    setup = time.perf_counter() - t0
    count = 0
    for images, _ in ds:
        count += int(images.shape[0])
    return count, setup


def bench_iterate(folder: str, repeats: int) -> dict:
    from imgclf._backend import get_tf

    get_tf()  # import TensorFlow outside the timings
    _iterate_imgclf(folder), _iterate_keras(folder)  # warm-up (file cache, graph builds)
    times = {"imgclf": [], "keras": []}
    setups = {"imgclf": [], "keras": []}
    for r in range(repeats):
        pair = [("imgclf", _iterate_imgclf), ("keras", _iterate_keras)]
        for name, fn in pair if r % 2 == 0 else pair[::-1]:
            t0 = time.perf_counter()
            count, setup = fn(folder)
            times[name].append(time.perf_counter() - t0)
            setups[name].append(setup)
            print(
                f"  run {r + 1} {name:6s} {count} images {times[name][-1]:6.2f} s "
                f"(listing{' + scan' if name == 'imgclf' else ''} {setup:.2f} s)",
                flush=True,
            )
    med = {k: statistics.median(v) for k, v in times.items()}
    for name in times:
        iterate = statistics.median(np.subtract(times[name], setups[name]))
        print(
            f"  {name}: median listing/scan {statistics.median(setups[name]):.2f} s, "
            f"median pass over the images {iterate:.2f} s",
            flush=True,
        )
    ratio = med["keras"] / med["imgclf"]
    print(
        f"iterate: imgclf {count / med['imgclf']:.0f} img/s, image_dataset_from_directory "
        f"{count / med['keras']:.0f} img/s (medians of {repeats}); imgclf / keras speed = "
        f"{ratio:.2f} (target >= 1)",
        flush=True,
    )
    return {"times": times, "setups": setups, "ratio": ratio}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=["all", "make", "rate", "memory", "iterate", "_rss"])
    parser.add_argument(
        "--folder", default=os.path.join(tempfile.gettempdir(), "imgclf-bench-fashion64")
    )
    parser.add_argument("--files", type=int, default=16000, help="JPEGs in the folder")
    parser.add_argument("--n", type=int, default=16000, help="images used by rate / _rss")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    if args.what == "_rss":
        _rss_child(args.folder, args.n)
        return
    make_folder(args.folder, args.files)
    if args.what in ("rate", "all"):
        bench_rate(args.folder, args.n, args.repeats)
    if args.what in ("memory", "all"):
        bench_memory(args.folder, (4000, 16000), args.repeats)
    if args.what in ("iterate", "all"):
        bench_iterate(args.folder, max(args.repeats, 3))


if __name__ == "__main__":
    main()
