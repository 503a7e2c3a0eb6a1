"""Time to accuracy of CNNClassifier with default parameters.

    python benchmarks/bench_accuracy.py [--only digits|fashion] [--seeds 0 1 2]
        [--budget 900] [--clock cpu|wall] [--n-train N] [--params JSON] [--one-cycle LR]

Fashion-MNIST: the official 60,000 / 10,000 split (Debian package
``dataset-fashion-mnist``). After every epoch a callback scores the official
test set and records it against the wall time and the process CPU time
(``os.times()``, user + system, all threads) since ``fit`` was called, minus
the callback's own scoring time, which is reported separately. ``--budget``
stops the fit once that many seconds of the chosen ``--clock`` have passed
(checked after every batch). Per seed it prints the curve and the first
times at which the test accuracy reached 0.92 and 0.94; then the medians
over the seeds. Bars (issue 12): >= 0.920 within 5 minutes and >= 0.940
within 15 minutes of fitting on this 2-core machine, medians of 3 seeds.

Digits: scikit-learn's 1,797 8x8 digits, stratified 75/25 split
(``random_state=0``); bar >= 0.98, scored at the end of the fit.

``--params`` passes CNNClassifier parameters (a JSON object) and ``--n-train``
takes the first N training images, for screening levers; ``--one-cycle LR`` is
short for ``lr_schedule="one_cycle"`` peaking at ``learning_rate=LR`` over the
planned ``epochs``. (The figures in the training guide were measured with a
per-batch callback of the same schedule, before ``lr_schedule`` existed.)
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import time

import numpy as np
from _datasets import load_fashion_mnist
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from imgclf import CNNClassifier
from imgclf._backend import get_keras

THRESHOLDS = (0.92, 0.94)


def cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system


class Clock:
    """Wall and CPU seconds since ``start()``, less the time put aside."""

    def start(self):
        self.wall0, self.cpu0 = time.perf_counter(), cpu_seconds()
        self.aside_wall = self.aside_cpu = 0.0

    def now(self):
        return (
            time.perf_counter() - self.wall0 - self.aside_wall,
            cpu_seconds() - self.cpu0 - self.aside_cpu,
        )


def time_to_accuracy(clock, X_test, y_test, budget=None, by="cpu"):
    """A Keras callback: the test accuracy after every epoch against ``clock``;
    stops the fit once ``budget`` seconds of ``by`` ("cpu" or "wall") passed."""
    keras = get_keras()

    class TimeToAccuracy(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.curve = []  # (epoch, wall, cpu, accuracy)
            self.eval_wall = self.eval_cpu = 0.0

        # Before each batch: a batch-end hook would make Keras wait for every
        # batch to finish before dispatching the next.
        def on_train_batch_begin(self, batch, logs=None):
            if budget is not None:
                wall, cpu = clock.now()
                if (cpu if by == "cpu" else wall) >= budget:
                    self.model.stop_training = True

        def on_epoch_end(self, epoch, logs=None):
            wall, cpu = clock.now()
            w0, c0 = time.perf_counter(), cpu_seconds()
            proba = self.model.predict(X_test, batch_size=1000, verbose=0)
            accuracy = float(np.mean(np.argmax(proba, axis=1) == y_test))
            spent_wall, spent_cpu = time.perf_counter() - w0, cpu_seconds() - c0
            clock.aside_wall += spent_wall
            clock.aside_cpu += spent_cpu
            self.eval_wall += spent_wall
            self.eval_cpu += spent_cpu
            self.curve.append((epoch + 1, wall, cpu, accuracy))
            lr = logs.get("learning_rate") if logs else None
            lr = f" lr {float(lr):.2e}" if lr is not None else ""
            print(
                f"  epoch {epoch + 1:3d}  wall {wall:7.1f} s  cpu {cpu:7.1f} s  "
                f"test {accuracy:.4f}  (loss {logs.get('loss', float('nan')):.4f}"
                f" val_loss {logs.get('val_loss', float('nan')):.4f}{lr})",
                flush=True,
            )

    return TimeToAccuracy()


def first_reached(curve, threshold):
    for _, wall, cpu, accuracy in curve:
        if accuracy >= threshold:
            return wall, cpu
    return None


def fashion(args):
    X_train, y_train, X_test, y_test = load_fashion_mnist()
    if args.n_train:
        X_train, y_train = X_train[: args.n_train], y_train[: args.n_train]
    # The network's input as fit gives it: float32 in 0-255, one channel.
    X_eval = X_test[..., None].astype(np.float32)
    params = json.loads(args.params or "{}")
    results = []
    for seed in args.seeds:
        clock = Clock()
        tta = time_to_accuracy(clock, X_eval, y_test, args.budget, args.clock)
        if args.one_cycle:
            params.update(lr_schedule="one_cycle", learning_rate=args.one_cycle)
        clf = CNNClassifier(random_state=seed, verbose=0, callbacks=[tta], **params)
        print(f"seed {seed}: CNNClassifier({params}), {len(X_train)} training images", flush=True)
        clock.start()
        clf.fit(X_train, y_train)
        wall, cpu = clock.now()
        final = clf.score(X_test, y_test)
        reached = {t: first_reached(tta.curve, t) for t in THRESHOLDS}
        print(
            f"seed {seed}: fit {wall:.1f} s wall, {cpu:.1f} s CPU (scoring put aside: "
            f"{tta.eval_wall:.1f} s wall, {tta.eval_cpu:.1f} s CPU), {len(tta.curve)} epochs, "
            f"batch {clf.batch_size_}; final test accuracy {final:.4f}; best per epoch "
            f"{max(a for *_, a in tta.curve):.4f}",
            flush=True,
        )
        for t, r in reached.items():
            text = "not reached" if r is None else f"wall {r[0]:.1f} s, CPU {r[1]:.1f} s"
            print(f"seed {seed}: first >= {t:.2f}: {text}", flush=True)
        results.append((final, reached, wall, cpu))
    if len(results) > 1:
        print(f"median over {len(results)} seeds:")
        print(f"  final test accuracy {statistics.median(r[0] for r in results):.4f}")
        for t in THRESHOLDS:
            times = [r[1][t] for r in results]
            walls = [math.inf if x is None else x[0] for x in times]
            cpus = [math.inf if x is None else x[1] for x in times]
            wall, cpu = statistics.median(walls), statistics.median(cpus)
            text = "not reached" if math.isinf(cpu) else f"wall {wall:.1f} s, CPU {cpu:.1f} s"
            print(f"  first >= {t:.2f}: {text}")


def digits(args):
    X, y = load_digits(return_X_y=True)
    X_tr, X_te, y_tr, y_te = train_test_split(X, y, test_size=0.25, stratify=y, random_state=0)
    params = json.loads(args.params or "{}")
    for seed in args.seeds:
        clf = CNNClassifier(random_state=seed, **params)
        w0, c0 = time.perf_counter(), cpu_seconds()
        clf.fit(X_tr, y_tr)
        wall, cpu = time.perf_counter() - w0, cpu_seconds() - c0
        print(
            f"digits seed {seed}: test accuracy {clf.score(X_te, y_te):.4f}  fit {wall:.1f} s "
            f"wall, {cpu:.1f} s CPU ({len(clf.history_['loss'])} epochs, batch "
            f"{clf.batch_size_})",
            flush=True,
        )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=("digits", "fashion"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--budget", type=float, help="seconds of --clock before stopping")
    parser.add_argument("--clock", choices=("cpu", "wall"), default="wall")
    parser.add_argument("--n-train", type=int, help="first N training images only")
    parser.add_argument("--params", help='CNNClassifier parameters as JSON, e.g. {"epochs": 5}')
    parser.add_argument("--one-cycle", type=float, metavar="LR", help="one-cycle peak LR")
    args = parser.parse_args()
    if args.only in (None, "digits"):
        digits(args)
    if args.only in (None, "fashion"):
        fashion(args)


if __name__ == "__main__":
    main()
