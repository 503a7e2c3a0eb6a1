"""A grid search over TransferClassifier's head, without and with ``memory``.

    python benchmarks/bench_transfer_search.py [--images 1000] [--size 32] [--repeats 1]

Writes ``--images`` Fashion-MNIST training images as PNG files (upscaled to
``--size``, the backbone's minimum by default) and runs ``GridSearchCV`` over
four head settings (``learning_rate`` x ``dropout``) with ``cv=3`` on the file
paths, three ways:

* without ``memory``: every fit runs the frozen backbone over its images;
* with ``memory`` on an empty folder (cold): each image's features are computed
  by the first fit that meets it and read back by every other fold, candidate
  and the refit;
* with the same folder again (warm): a second search reads every feature.

``mobilenet_v3_small`` with ``weights=None`` (no ImageNet weights here) and a
fixed ``random_state``, so every fit builds the same backbone. Prints wall and
CPU time (``os.times()``, this process) of each search, the ratios, the cache's
size on disk and the time to look up every image in it, and checks that
``best_params_`` and the ``cv_results_`` mean scores (to 1e-6) are the same
with and without ``memory``. A random backbone's features carry little, so the
scores are near chance: the time is what counts here. The bar: the search with
``memory`` at least 4x faster than without.

``--backbone file.keras`` uses a saved network (its own weights and input
size) instead, whose features carry something, so the scores check means more.
The searches pass ``fine_tune_epochs=0`` (a search over the head; fine-tune the
best one after).

Measured here on 2026-12-02, once each, while 3-4 other jobs shared the 2
cores (CPU time is the figure to trust): without 471 s wall / 206 s CPU; cold
memory 72 s / 42 s (4.9x less CPU, 6.6x less wall); warm 43 s / 19 s (10.7x,
11.1x); same ``best_params_`` and mean scores (difference 0; all near chance
with a random backbone, so that check is weak: ``--backbone`` with a saved
network makes it mean more). The cache: 1,000 files of 2,352 B (4.1 MB on
disk). Earlier figures of the same benchmark: 240 / 84 / 65 CPU-s once fits
shared the built backbone and scored from the cache, and 217 / 135 / 114
before; the step from 84 / 65 to 42 / 19 is the head's training moving from
``model.fit`` to imgclf's loop for in-memory features (``_vectorfit.py``).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

import numpy as np
from _datasets import load_fashion_mnist

from imgclf import TransferClassifier
from imgclf import _featcache as featcache


def write_pngs(folder: str, images: np.ndarray, size: int) -> list[str]:
    from PIL import Image

    os.makedirs(folder, exist_ok=True)
    paths = []
    for i, image in enumerate(images):
        path = os.path.join(folder, f"{i:05d}.png")
        if not os.path.exists(path):
            Image.fromarray(image).resize((size, size), Image.BILINEAR).save(path)
        paths.append(path)
    return paths


def search(paths, y, memory, args):
    from sklearn.model_selection import GridSearchCV

    own = args.backbone.endswith(".keras")
    clf = TransferClassifier(
        backbone=args.backbone,
        # A named backbone starts random (no ImageNet weights here); a saved
        # network keeps its weights and takes its own input size.
        weights="imagenet" if own or args.imagenet else None,
        image_size=None if own else args.size,
        fine_tune_epochs=0,  # a search over the head (fine-tune the best one after)
        random_state=0,
        memory=memory,
    )
    grid = {"learning_rate": [1e-3, 1e-2], "dropout": [0.0, 0.3]}
    cpu0, wall0 = os.times(), time.perf_counter()
    result = GridSearchCV(clf, grid, cv=3, n_jobs=args.n_jobs).fit(paths, y)
    cpu1, wall1 = os.times(), time.perf_counter()
    cpu = (cpu1.user - cpu0.user) + (cpu1.system - cpu0.system)
    return result, wall1 - wall0, cpu


def disk_usage(folder: str) -> tuple[int, int, int]:
    """(files, bytes in them, bytes the file system gives them)."""
    files = size = blocks = 0
    for root, _, names in os.walk(folder):
        for name in names:
            st = os.stat(os.path.join(root, name))
            files, size, blocks = files + 1, size + st.st_size, blocks + st.st_blocks * 512
    return files, size, blocks


def lookup_seconds(memory: str, paths) -> float:
    """Time to key and read every image's entry (all stores under ``memory``)."""
    base = os.path.join(memory, f"imgclf-features-v{featcache.FORMAT}")
    start = time.perf_counter()
    keys = featcache.path_keys(paths)
    hits = 0
    for network in os.listdir(base):
        store = featcache.FeatureStore(os.path.join(base, network), bytes.fromhex(network))
        found, _ = store.get(keys)
        hits += sum(f is not None for f in found)
    seconds = time.perf_counter() - start
    print(f"  lookup of {len(paths)} images: {hits} entries read in {seconds * 1000:.0f} ms")
    return seconds


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument(
        "--backbone",
        default="mobilenet_v3_small",
        help="a named backbone (weights=None) or a saved .keras network (its weights)",
    )
    parser.add_argument(
        "--imagenet",
        action="store_true",
        help="a named backbone with its ImageNet weights (efficientnet_lite0 has them "
        "offline) instead of weights=None",
    )
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--n-jobs", type=int, default=1)
    parser.add_argument("--folder", default=None, help="where the PNG files go (default: temp)")
    args = parser.parse_args()

    X, y, _, _ = load_fashion_mnist()
    work = tempfile.TemporaryDirectory(prefix="bench-transfer-search-")
    folder = args.folder or os.path.join(work.name, "images")
    paths = write_pngs(folder, X[: args.images], args.size)
    y = y[: args.images]

    # Import TensorFlow and trace once outside the timings.
    own = args.backbone.endswith(".keras")
    TransferClassifier(
        backbone=args.backbone,
        weights="imagenet" if own or args.imagenet else None,
        image_size=None if own else args.size,
        epochs=1,
        fine_tune_epochs=0,
        random_state=0,
    ).fit(paths[:60], y[:60])

    runs = {"without": [], "cold": [], "warm": []}
    results = {}
    for repeat in range(args.repeats):
        memory = os.path.join(work.name, f"memory-{repeat}")
        for name, mem in (("without", None), ("cold", memory), ("warm", memory)):
            result, wall, cpu = search(paths, y, mem, args)
            runs[name].append((wall, cpu))
            results[name] = result
            print(
                f"repeat {repeat} {name:>7}: wall {wall:7.1f} s  cpu {cpu:7.1f} s  "
                f"best {result.best_params_}",
                flush=True,
            )
        files, size, blocks = disk_usage(memory)
        print(
            f"  cache: {files} files, {size / 1e6:.2f} MB ({size / max(files, 1):.0f} B each), "
            f"{blocks / 1e6:.2f} MB on disk"
        )
        lookup_seconds(memory, paths)

    def median(name, i):
        return statistics.median(r[i] for r in runs[name])

    plain = results["without"]
    print(
        f"\n{args.backbone} ({'its own weights' if own else 'ImageNet weights' if args.imagenet else 'weights=None'}), {len(paths)} PNG files at {args.size}x{args.size}, "
        f"GridSearchCV 4 candidates x cv=3 + refit, n_jobs={args.n_jobs}, "
        f"median of {args.repeats}:"
    )
    for name in runs:
        wall, cpu = median(name, 0), median(name, 1)
        print(
            f"  {name:>7}: wall {wall:7.1f} s  cpu {cpu:7.1f} s   "
            f"speed-up wall {median('without', 0) / wall:4.1f}x  "
            f"cpu {median('without', 1) / cpu:4.1f}x"
        )
    for name in ("cold", "warm"):
        same_params = results[name].best_params_ == plain.best_params_
        diff = np.max(
            np.abs(
                results[name].cv_results_["mean_test_score"] - plain.cv_results_["mean_test_score"]
            )
        )
        print(
            f"  {name} vs without: same best_params_ {same_params}, "
            f"max |mean_test_score difference| {diff:.2g} ({'ok' if diff <= 1e-6 else 'DIFFERENT'})"
        )
    print(f"  mean test scores without memory: {np.round(plain.cv_results_['mean_test_score'], 4)}")
    work.cleanup()


if __name__ == "__main__":
    main()
