"""Cost of the file scan (what ``load_folder`` and ``fit`` pay before training).

Writes 2,000 64x64 images from scikit-learn's digits (upscaled, RGB) as JPEG,
PNG and BMP into three folders, then times ``imgclf._scan.scan_files`` over
each with a cold scan cache: wall time and CPU time (``os.times``), medians
of ``--repeats`` runs. To compare two versions of imgclf, run it once with
each on the ``PYTHONPATH``:

    PYTHONPATH=/path/to/old python benchmarks/bench_scan.py
    PYTHONPATH=/path/to/new python benchmarks/bench_scan.py

Measured here on 2026-12-01 (``--repeats 7``, the previous main then the
new one, twice, alternating; CI ran beside it), wall medians: JPEG 42 / 56
-> 44 / 55 ms; PNG 47 / 48 -> 144 / 201 ms (every PNG's data is now inflated
and checked); BMP 236 / 178 -> 521 / 552 ms (every file that is not a plain
JPEG or PNG is now decoded once with Pillow). CPU times agree to 10 ms.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

import numpy as np
from PIL import Image
from sklearn.datasets import load_digits


def make(folder: str, fmt: str, n: int) -> list[str]:
    os.makedirs(folder, exist_ok=True)
    images = load_digits().images
    paths = []
    for i in range(n):
        path = os.path.join(folder, f"{i:05d}.{fmt}")
        if not os.path.exists(path):
            grey = np.round(images[i % len(images)] / 16 * 255).astype(np.uint8)
            Image.fromarray(grey).convert("RGB").resize((64, 64)).save(path)
        paths.append(path)
    return paths


def cpu() -> float:
    t = os.times()
    return t.user + t.system


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--folder", default=os.path.join(tempfile.gettempdir(), "imgclf-scan"))
    args = parser.parse_args()

    import importlib

    import imgclf

    # imgclf before issue 9 kept the scan in imgclf._decode.
    here = os.path.dirname(imgclf.__file__)
    name = "scan" if os.path.exists(os.path.join(here, "scan.py")) else "decode"
    scan = importlib.import_module(f"imgclf.{name}")
    print(f"imgclf from {here} (scan in imgclf.{name})")
    for fmt in ("jpg", "png", "bmp"):
        paths = make(os.path.join(args.folder, fmt), fmt, args.n)
        scan.scan_files(paths)  # imports and the OS file cache
        walls, cpus = [], []
        for _ in range(args.repeats):
            scan.clear_scan_cache()
            t0, c0 = time.perf_counter(), cpu()
            infos = scan.scan_files(paths)
            walls.append(time.perf_counter() - t0)
            cpus.append(cpu() - c0)
        bad = sum(f.problem is not None for f in infos)
        print(
            f"{fmt}: {len(paths)} files ({bad} bad): wall median "
            f"{statistics.median(walls) * 1e3:.0f} ms, CPU median "
            f"{statistics.median(cpus) * 1e3:.0f} ms (medians of {args.repeats})"
        )


if __name__ == "__main__":
    main()
