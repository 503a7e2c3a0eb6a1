"""Searches across processes, and mixed precision, on this machine.

    python benchmarks/bench_scale.py [--epochs 5] [--runs 3] [--skip-search] [--skip-precision]

1. A ``GridSearchCV`` of 8 candidates x 3 folds (24 fits and a refit) of
   ``CNNClassifier`` on scikit-learn's digits (1,797 8x8 images), three
   ways: ``n_jobs=1``, ``n_jobs=2`` (joblib's loky worker processes) and
   ``joblib.parallel_backend("dask")`` on a ``LocalCluster(n_workers=2,
   threads_per_worker=1, processes=True)``. Each runs in a fresh Python
   process, so each pays TensorFlow's start-up once per process it uses.
   Reported: wall time; CPU time (``os.times()``: user + system of the
   process and its ended children, i.e. the workers); CPU / wall (how many
   cores were busy on average); peak memory of the whole process tree (RSS
   summed over the process and its descendants, sampled every 0.2 s).
2. ``precision="float32"`` against ``"mixed_bfloat16"``: one fit on digits,
   ``--runs`` times each, interleaved; minimum and median seconds.

The figures depend on the machine's cores and load; on a GPU or several
machines the gains are elsewhere (see docs/scaling.rst).

Measured here on 2026-12-01 with ``--epochs 1 --runs 2``, 2 cores shared
with other agents' jobs (load average about 4 before and after), so to be
rerun on a quiet machine: wall / CPU / peak memory n_jobs=1 98.7 s / 93.0 s
/ 817 MB, n_jobs=2 112.4 s / 134.3 s / 2,368 MB, Dask 229.1 s / 204.6 s /
2,812 MB; float32 4.71 s (min) vs mixed_bfloat16 8.65 s. Two cores already
busy with other work leave a second worker process nothing to gain: each
worker pays its own TensorFlow start-up and tracing (more CPU, not less),
the Dask run adds a scheduler and two nannies, and this CPU has no bfloat16
arithmetic (Keras emulates it through casts).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time

GRID = {"filters": [4, 8], "learning_rate": [1e-3, 3e-3], "dropout": [0.0, 0.3]}


def digits():
    import numpy as np
    from sklearn.datasets import load_digits

    d = load_digits()
    return np.round(d.images / 16 * 255).astype(np.uint8)[..., None], d.target


class PeakMemory:
    """Largest RSS summed over this process and its descendants, sampled."""

    def __init__(self, every: float = 0.2):
        import psutil

        self._me = psutil.Process()
        self._every = every
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> int:
        import psutil

        total = 0
        for proc in [self._me, *self._me.children(recursive=True)]:
            try:
                total += proc.memory_info().rss
            except psutil.Error:
                pass  # ended between listing and reading
        return total

    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, self._sample())
            self._stop.wait(self._every)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def run_search(mode: str, epochs: int) -> dict:
    """One search in this (fresh) process; returns its figures."""
    import joblib
    from sklearn.model_selection import GridSearchCV

    from imgclf import CNNClassifier

    X, y = digits()
    estimator = CNNClassifier(epochs=epochs, early_stopping=False, random_state=0)
    search = GridSearchCV(estimator, GRID, cv=3, n_jobs=2 if mode == "n_jobs=2" else None)
    with PeakMemory() as memory:
        wall, cpu = time.perf_counter(), cpu_seconds()
        if mode == "dask":
            from dask.distributed import Client, LocalCluster

            with (
                LocalCluster(
                    n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
                ) as cluster,
                Client(cluster),
                joblib.parallel_backend("dask"),
            ):
                search.fit(X, y)
        else:
            search.fit(X, y)
            if mode == "n_jobs=2":
                # End the workers so their CPU time is counted (children's
                # times count once they have been waited for).
                from joblib.externals.loky import get_reusable_executor

                get_reusable_executor().shutdown(wait=True)
        wall, cpu = time.perf_counter() - wall, cpu_seconds() - cpu
    return {
        "mode": mode,
        "wall": wall,
        "cpu": cpu,
        "peak_mb": memory.peak / 2**20,
        "best_score": float(search.best_score_),
    }


def run_precision(runs: int) -> dict:
    from imgclf import CNNClassifier

    X, y = digits()
    times = {"float32": [], "mixed_bfloat16": []}
    CNNClassifier(epochs=1, random_state=0).fit(X[:200], y[:200])  # TensorFlow start-up
    for i in range(runs):
        order = list(times) if i % 2 == 0 else list(times)[::-1]
        for precision in order:
            clf = CNNClassifier(epochs=3, early_stopping=False, precision=precision, random_state=0)
            start = time.perf_counter()
            clf.fit(X, y)
            times[precision].append(time.perf_counter() - start)
    return times


def child(args: list[str]) -> dict:
    """Run this script's ``--child`` mode in a fresh process; its last line is JSON."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    out = subprocess.run(
        [sys.executable, __file__, "--child", *args], capture_output=True, text=True, env=env
    )
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-3000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=5, help="epochs per search fit")
    parser.add_argument("--runs", type=int, default=3, help="fits per precision")
    parser.add_argument("--skip-search", action="store_true")
    parser.add_argument("--skip-precision", action="store_true")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind, value = args.child
        result = run_search(value, args.epochs) if kind == "search" else run_precision(int(value))
        print(json.dumps(result))
        return

    print(f"{os.cpu_count()} cores; load average before: {os.getloadavg()[0]:.1f}")
    if not args.skip_search:
        n_fits = 8 * 3 + 1
        print(
            f"\nGridSearchCV: 8 candidates x 3 folds + refit = {n_fits} fits of "
            f"{args.epochs} epochs on digits"
        )
        print(f"{'mode':>9} {'wall s':>8} {'CPU s':>8} {'CPU/wall':>9} {'peak MB':>8} {'best':>6}")
        for mode in ("n_jobs=1", "n_jobs=2", "dask"):
            r = child(["search", mode, "--epochs", str(args.epochs)])
            print(
                f"{r['mode']:>9} {r['wall']:8.1f} {r['cpu']:8.1f} {r['cpu'] / r['wall']:9.2f} "
                f"{r['peak_mb']:8.0f} {r['best_score']:6.3f}"
            )
    if not args.skip_precision:
        times = child(["precision", str(args.runs)])
        print(f"\nOne fit on digits (3 epochs), {args.runs} runs each, interleaved")
        for name, values in times.items():
            print(
                f"{name:>15}: min {min(values):6.2f} s, median {statistics.median(values):6.2f} s"
            )
    print(f"\nload average after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
