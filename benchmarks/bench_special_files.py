"""What the streaming pipeline's regular-file check costs (issue 24).

    python benchmarks/bench_special_files.py [--files 2000] [--runs 5]

TensorFlow opens image files by name, so each streamed batch stats its files
first (``imgclf._decode.check_regular``), which keeps a file swapped for a FIFO
after the scan from blocking the fit. This streams ``--files`` random 16x16
RGB PNGs (small files: the check's share is largest) three times per run,
with the check and with it replaced by a no-op (the ``tf.numpy_function``
call stays), sides interleaved, and prints the median wall and CPU time
(``os.times()``, user + system, all threads) of each side.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import numpy as np
from PIL import Image

from imgclf import _decode as decode
from imgclf import _pipeline as pipeline
from imgclf import _scan as scan
from imgclf._validation import Images


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    root = tempfile.mkdtemp()
    rng = np.random.default_rng(0)
    paths = []
    for i in range(args.files):
        paths.append(os.path.join(root, f"{i}.png"))
        pixels = rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(paths[-1])
    images = Images(paths=np.asarray(paths, dtype=object), infos=scan.scan_files(paths))
    check = decode.check_regular

    def run() -> tuple[float, float]:
        ds = pipeline.make_dataset(images, None, size=(16, 16), channels=3, batch_size=32)["x"]
        wall, cpu = time.perf_counter(), os.times()
        for _ in range(3):
            for _batch in ds:
                pass
        end = os.times()
        used = (end.user + end.system) - (cpu.user + cpu.system)
        return time.perf_counter() - wall, used

    run()  # warm-up
    results: dict[str, list] = {"check": [], "no check": []}
    for r in range(args.runs):
        for side in ("check", "no check") if r % 2 == 0 else ("no check", "check"):
            decode.check_regular = check if side == "check" else (lambda names, index: index)
            results[side].append(run())
    decode.check_regular = check
    for side, runs in results.items():
        wall = np.median([w for w, _ in runs])
        cpu = np.median([c for _, c in runs])
        print(
            f"{side:>8}: median of {args.runs} runs (3 passes over {args.files} files each): "
            f"{wall:.3f} s wall, {cpu:.3f} s CPU"
        )


if __name__ == "__main__":
    main()
