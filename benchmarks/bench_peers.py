"""imgclf beside SciKeras and plain Keras: the same network, the same data, time and accuracy.

    pip install scikeras   # not an imgclf dependency; this benchmark only
    python benchmarks/bench_peers.py [--data digits fashion] [--runs 3] [--grid digits]

The network is CNNClassifier's default architecture for the data (input
scaling, conv-BatchNorm-ReLU stages, pooling, dropout, softmax), built once by
a reference fit and copied with ``keras.models.clone_model`` (fresh weights)
for SciKeras's ``KerasClassifier`` and for plain Keras, which both compile
it with Adam(1e-3), sparse categorical cross-entropy and accuracy, as imgclf
does. Every side fits the same uint8 arrays with the same batch size and
epochs, with no hold-out, no early stopping and no augmentation (imgclf:
``validation_fraction=0.0, early_stopping=False``, and ``lr_schedule=
"plateau"``, the default when these figures were measured: its callback
stays on).

Fit: the three sides run in turn, ``--runs`` times, the order rotating each
run; each fit is timed from building the network to the end of ``fit``
(wall, and CPU from ``os.times()``: user + system of the whole process), and
its test accuracy is recorded. Prints medians and the ratios to plain Keras.

Data: digits (scikit-learn's 1,797 8x8 images, half for training, stratified,
10 epochs); Fashion-MNIST (the first 10,000 training images, the official
10,000 test images, 2 epochs).

Grid search: ``GridSearchCV`` over 4 learning rates x 3 folds (refit on the
best) through imgclf and SciKeras; for plain Keras, the same 12 fits and the
refit written as a loop over ``StratifiedKFold``. Run once each.

Measured here on 2026-12-01 while other jobs loaded the two cores (load
average 4 to 15, changing during the runs): wall-time ratios swung with the
load (0.76 to 2.0 for the same code), so read the CPU ratios::

    fit            side      wall s  cpu s  wall/keras  cpu/keras  accuracy
    digits x3      imgclf     51.2    8.86    0.757      1.025      0.969
                   scikeras   68.6    8.93    1.014      1.034      0.967
                   keras      67.7    8.64    1.000      1.000      0.968
    fashion x2     imgclf    169.8   70.97    1.380      1.034      0.819
                   scikeras  128.0   65.06    1.040      0.948      0.847
                   keras     123.1   68.64    1.000      1.000      0.838
    grid (digits)  imgclf    903.7   99.5     2.023      1.068      0.977 (lr 1e-3)
                   scikeras  891.1  105.6     1.995      1.133      0.964 (lr 3e-4)
                   keras     446.7   93.2     1.000      1.000      0.967 (lr 1e-3)

``--data --grid fashion`` (2026-12-02, once each; imgclf's side ran beside a
full test run of the project at lower priority, so its wall time is not
comparable and its CPU time is somewhat inflated)::

    grid (fashion) imgclf   1361.7  766.1     2.574      1.129      0.858 (lr 1e-3)
                   scikeras  418.8  650.2     0.792      0.958      0.843 (lr 3e-4)
                   keras     528.9  678.5     1.000      1.000      0.833 (lr 3e-4)
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import keras
import numpy as np
from _datasets import load_fashion_mnist
from sklearn.datasets import load_digits
from sklearn.model_selection import GridSearchCV, StratifiedKFold, train_test_split

from imgclf import CNNClassifier

RATES = [3e-4, 1e-3, 3e-3, 1e-2]


def data(name: str):
    """(X_train, y_train, X_test, y_test, epochs); uint8 images (n, h, w, 1)."""
    if name == "digits":
        d = load_digits()
        X = np.round(d.images / 16 * 255).astype(np.uint8)[..., None]
        X_tr, X_te, y_tr, y_te = train_test_split(
            X, d.target, test_size=0.5, stratify=d.target, random_state=0
        )
        return X_tr, y_tr, X_te, y_te, 10
    X, y, X_te, y_te = load_fashion_mnist()
    return X[:10000, ..., None], y[:10000], X_te[..., None], y_te, 2


def timed(fn):
    t0, c0 = time.perf_counter(), os.times()
    out = fn()
    c1 = os.times()
    return time.perf_counter() - t0, (c1.user - c0.user) + (c1.system - c0.system), out


class Sides:
    """The three ways of fitting one network, sharing a reference architecture."""

    def __init__(self, X, y, epochs):
        self.epochs = epochs
        # One epoch on all the data: the architecture, and the batch size "auto" picks.
        self.reference = CNNClassifier(**{**self.imgclf_params(0), "epochs": 1}).fit(X, y)
        self.batch_size = self.reference.batch_size_

    def imgclf_params(self, seed, learning_rate=1e-3):
        return dict(
            epochs=self.epochs,
            learning_rate=learning_rate,
            lr_schedule="plateau",
            augment=None,
            early_stopping=False,
            validation_fraction=0.0,
            random_state=seed,
        )

    def network(self, learning_rate=1e-3):
        model = keras.models.clone_model(self.reference.model_)
        model.compile(
            optimizer=keras.optimizers.Adam(learning_rate),
            loss="sparse_categorical_crossentropy",
            metrics=["accuracy"],
        )
        return model

    def imgclf(self, seed, learning_rate=1e-3):
        return CNNClassifier(**self.imgclf_params(seed, learning_rate), batch_size=self.batch_size)

    def scikeras(self, seed, learning_rate=1e-3):
        from scikeras.wrappers import KerasClassifier

        return KerasClassifier(
            model=lambda: keras.models.clone_model(self.reference.model_),
            loss="sparse_categorical_crossentropy",
            optimizer="adam",
            optimizer__learning_rate=learning_rate,
            metrics=["accuracy"],
            epochs=self.epochs,
            batch_size=self.batch_size,
            random_state=seed,
            verbose=0,
        )

    def keras_fit(self, X, y, seed, learning_rate=1e-3):
        keras.utils.set_random_seed(seed)
        model = self.network(learning_rate)
        model.fit(X, y, batch_size=self.batch_size, epochs=self.epochs, verbose=0)
        return model

    def keras_score(self, model, X, y):
        proba = model.predict(X, batch_size=self.batch_size, verbose=0)
        return float(np.mean(proba.argmax(1) == y))


def fit_table(name: str, runs: int) -> None:
    X, y, X_te, y_te, epochs = data(name)
    sides = Sides(X, y, epochs)

    def fit(side, seed):
        if side == "keras":
            wall, cpu, model = timed(lambda: sides.keras_fit(X, y, seed))
            return wall, cpu, sides.keras_score(model, X_te, y_te)
        est = sides.imgclf(seed) if side == "imgclf" else sides.scikeras(seed)
        wall, cpu, est = timed(lambda: est.fit(X, y))
        return wall, cpu, est.score(X_te, y_te)

    order = ["imgclf", "scikeras", "keras"]
    for side in order:
        fit(side, 0)  # warm-up: one-off start-up costs are paid by no side
    results = {side: [] for side in order}
    for run in range(runs):
        for side in order[run % 3 :] + order[: run % 3]:
            results[side].append(fit(side, run))
    keras_wall = statistics.median(r[0] for r in results["keras"])
    keras_cpu = statistics.median(r[1] for r in results["keras"])
    print(
        f"\n{name}: {len(X)} training images {X.shape[1:]}, {len(X_te)} test, {epochs} epochs, "
        f"batch {sides.batch_size}, {runs} runs each (medians)"
    )
    print(f"{'side':<9} {'wall s':>7} {'cpu s':>7} {'wall/keras':>11} {'cpu/keras':>10} {'acc':>6}")
    for side, rs in results.items():
        wall = statistics.median(r[0] for r in rs)
        cpu = statistics.median(r[1] for r in rs)
        acc = statistics.median(r[2] for r in rs)
        print(
            f"{side:<9} {wall:7.2f} {cpu:7.2f} {wall / keras_wall:11.3f} "
            f"{cpu / keras_cpu:10.3f} {acc:6.3f}"
        )


def grid_table(name: str) -> None:
    X, y, X_te, y_te, epochs = data(name)
    sides = Sides(X, y, epochs)
    folds = StratifiedKFold(3, shuffle=True, random_state=0)

    def imgclf_grid():
        search = GridSearchCV(sides.imgclf(0), {"learning_rate": RATES}, cv=folds)
        search.fit(X, y)
        return search.best_params_["learning_rate"], search.score(X_te, y_te)

    def scikeras_grid():
        search = GridSearchCV(sides.scikeras(0), {"optimizer__learning_rate": RATES}, cv=folds)
        search.fit(X, y)
        return search.best_params_["optimizer__learning_rate"], search.score(X_te, y_te)

    def keras_grid():
        means = []
        for rate in RATES:
            scores = []
            for train, test in folds.split(np.zeros(len(y)), y):
                model = sides.keras_fit(X[train], y[train], 0, rate)
                scores.append(sides.keras_score(model, X[test], y[test]))
            means.append(np.mean(scores))
        best = RATES[int(np.argmax(means))]
        return best, sides.keras_score(sides.keras_fit(X, y, 0, best), X_te, y_te)

    print(f"\n{name}: GridSearchCV, 4 learning rates x 3 folds + refit, once each")
    print(f"{'side':<9} {'wall s':>7} {'cpu s':>7} {'wall/keras':>11} {'best lr':>8} {'acc':>6}")
    rows = {}
    for side, fn in (("imgclf", imgclf_grid), ("scikeras", scikeras_grid), ("keras", keras_grid)):
        wall, cpu, (best, acc) = timed(fn)
        rows[side] = (wall, cpu, best, acc)
    for side, (wall, cpu, best, acc) in rows.items():
        print(
            f"{side:<9} {wall:7.1f} {cpu:7.1f} {wall / rows['keras'][0]:11.3f} "
            f"{best:8.0e} {acc:6.3f}"
        )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data", nargs="*", choices=("digits", "fashion"), default=["digits", "fashion"]
    )
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--grid", nargs="*", choices=("digits", "fashion"), default=["digits"])
    args = parser.parse_args()
    try:
        import scikeras  # noqa: F401
    except ImportError:
        raise SystemExit("This benchmark needs SciKeras: pip install scikeras") from None
    for name in args.data:
        fit_table(name, args.runs)
    for name in args.grid:
        grid_table(name)


if __name__ == "__main__":
    main()
