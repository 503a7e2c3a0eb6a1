"""Heads on efficientnet_lite0's frozen features of several views of each image.

    python benchmarks/bench_transfer_views.py --memory <folder> [--per-class 10]
        [--seeds 0 1 2] [--train-views none flip shift flip+shift]
        [--heads lr keras] [--size 224] [--second-size 288] [--dataset fashion|digits]

Fashion-MNIST, all 10 classes, ``--per-class`` training images drawn per
seed (as ``bench_transfer.py --backbone`` draws them), the first 2,000 test
images (``--dataset digits``: scikit-learn's 8x8 digits, the half
``bench_transfer.py`` tests on). Every feature comes from
``TransferClassifier(backbone="efficientnet_lite0").transform`` of a view of
the images made in NumPy on the small images before the network resizes
them: ``flip``, the mirror image (left-right); ``shift``, the image moved by
2 px (at 28 px; 1 px at 8) up, down, left and right, the border reflected,
as ``tta`` shifts. ``--base pad4`` first adds 4 black pixels on each side
(the item fills less of the frame, as objects in ImageNet photos do);
``--base invert`` first inverts the pixels (dark items on white). With ``--memory`` each view's features are computed once
and read back by every later run (and seed).

Training sets (``--train-views``): ``none`` the images only; ``flip`` the
images and their mirrors (each mirror with its image's label); ``shift``
the images and their 4 shifts; ``flip+shift`` all 10 (5 positions, each
and its mirror). Heads: ``lr``, scikit-learn's ``LogisticRegression`` with
``C`` in 0.1, 1, 10 (fitted to convergence, ``C`` the L2 strength: the
ceiling of a linear head); ``keras``, the head ``TransferClassifier``'s
frozen stage trains (dropout 0.2, a softmax layer, Adam, batches of 16 as
its ``"auto"`` gives for up to 1,600 images, early stopping on the training
loss with patience 5, as with no hold-out) at several epochs and rates.
Test: ``plain`` the images as given; ``tta`` the mean of the probabilities
of the image and its mirror; ``ftta`` the head on the mean of the two
feature vectors. ``--second-size``: also the features at that input size,
concatenated to the first size's (``cat``), as a two-scale head.

Prints one line per seed and setting, then the medians over seeds with the
head's CPU seconds (``os.times()``, this process; the features are read
from ``--memory`` after the first run).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections import defaultdict

import numpy as np
from _datasets import load_split, per_class

from imgclf import TransferClassifier

VIEWS = {
    "none": ["id"],
    "flip": ["id", "flip"],
    "shift": ["id", "up", "down", "left", "right"],
    "flip+shift": [
        "id",
        "flip",
        *[f"{s}{m}" for s in ("up", "down", "left", "right") for m in ("", "+flip")],
    ],
}


def cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system


def view(X: np.ndarray, name: str, base: str = "") -> np.ndarray:
    """``name``'s view of uint8 images ``(n, h, w)``, after ``base``
    (``"pad<k>"``: ``k`` black pixels added on each side, so the item fills
    less of the frame; ``"invert"``: 255 minus each pixel)."""
    if base.startswith("pad"):
        k = int(base[3:])
        X = np.pad(X, ((0, 0), (k, k), (k, k)))
    elif base == "invert":
        X = 255 - X
    d = max(1, round(min(X.shape[1:3]) / 14))  # 2 px at 28, 1 at 8
    shift, _, flip = name.partition("+")
    if shift == "flip":
        shift, flip = "id", "flip"
    if shift != "id":
        dy, dx = {"up": (-d, 0), "down": (d, 0), "left": (0, -d), "right": (0, d)}[shift]
        padded = np.pad(X, ((0, 0), (d, d), (d, d)), mode="reflect")
        h, w = X.shape[1:3]
        X = padded[:, d - dy : d - dy + h, d - dx : d - dx + w]
    if flip:
        X = X[:, :, ::-1]
    return np.ascontiguousarray(X)


class Features:
    """Features of views of images at one input size, through ``transform``
    (stored in and read from ``memory``)."""

    def __init__(self, size, memory, X, y, base=""):
        self.base = base
        self.clf = TransferClassifier(
            backbone="efficientnet_lite0",
            image_size=size,
            epochs=1,
            fine_tune_epochs=0,
            memory=memory,
            random_state=0,
        ).fit(X[:20], y[:20])

    def __call__(self, X, name):
        return self.clf.transform(view(X, name, self.base))


def keras_head(F, y, F_tests, *, epochs, rate, dropout=0.2, seed=0, early=True):
    """TransferClassifier's frozen-stage head, in plain Keras: probabilities
    of each of ``F_tests``."""
    import keras

    keras.utils.set_random_seed(seed)
    model = keras.Sequential(
        [
            keras.Input((F.shape[1],)),
            keras.layers.Dropout(dropout),
            keras.layers.Dense(10, activation="softmax"),
        ]
    )
    model.compile(keras.optimizers.Adam(rate), "sparse_categorical_crossentropy")
    callbacks = (
        [
            keras.callbacks.EarlyStopping(
                "loss", min_delta=1e-3, patience=5, restore_best_weights=True
            )
        ]
        if early
        else []
    )
    model.fit(F, y, batch_size=16, epochs=epochs, verbose=0, callbacks=callbacks)
    return [model.predict(f, batch_size=512, verbose=0) for f in F_tests]


def lr_head(F, y, F_tests, *, C):
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression(C=C, max_iter=5000).fit(F, y)
    out = []
    for f in F_tests:
        proba = np.zeros((len(f), 10))
        proba[:, model.classes_] = model.predict_proba(f)
        out.append(proba)
    return out


HEADS = {
    "lr": [
        ("C=0.1", lr_head, {"C": 0.1}),
        ("C=1", lr_head, {"C": 1.0}),
        ("C=10", lr_head, {"C": 10.0}),
    ],
    "keras": [
        ("20ep@1e-3", keras_head, {"epochs": 20, "rate": 1e-3}),
        ("50ep@1e-3", keras_head, {"epochs": 50, "rate": 1e-3}),
        ("50ep@3e-3", keras_head, {"epochs": 50, "rate": 3e-3}),
        ("200ep@1e-3 noES", keras_head, {"epochs": 200, "rate": 1e-3, "early": False}),
    ],
}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-class", type=int, default=10)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--memory")
    parser.add_argument("--dataset", choices=["fashion", "digits"], default="fashion")
    parser.add_argument("--test-images", type=int, default=2000)
    parser.add_argument("--train-views", nargs="+", default=list(VIEWS), choices=list(VIEWS))
    parser.add_argument("--heads", nargs="+", default=list(HEADS), choices=list(HEADS))
    parser.add_argument("--only", nargs="*", help="head names to run (default: all of --heads)")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--second-size", type=int)
    parser.add_argument(
        "--base", default="", help="pad<k> or invert: applied to every image before its views"
    )
    args = parser.parse_args()
    X_train, y_train, X_test, y_test = load_split(args.dataset)
    X_eval, y_eval = X_test[: args.test_images], y_test[: args.test_images]
    sizes = [args.size] + ([args.second_size] if args.second_size else [])
    extractors = {s: Features(s, args.memory, X_train, y_train, args.base) for s in sizes}

    def features(X, name, scales):
        parts = [extractors[s](X, name) for s in scales]
        return np.concatenate(parts, axis=1)

    scale_sets = [("", [args.size])]
    if args.second_size:
        scale_sets.append((f"cat{args.size}+{args.second_size} ", sizes))
    for size in sizes:
        wall, cpu = time.perf_counter(), cpu_seconds()
        for name in ("id", "flip"):
            extractors[size](X_eval, name)
        print(
            f"test features at {size} px: {time.perf_counter() - wall:.0f} s wall / "
            f"{cpu_seconds() - cpu:.0f} s CPU",
            flush=True,
        )
    results = defaultdict(list)
    for seed in args.seeds:
        X, y = per_class(X_train, y_train, range(10), args.per_class, np.random.default_rng(seed))
        for tag, scales in scale_sets:
            tests = [features(X_eval, "id", scales), features(X_eval, "flip", scales)]
            tests.append((tests[0] + tests[1]) / 2)
            for train_views in args.train_views:
                wall, cpu = time.perf_counter(), cpu_seconds()
                F = np.concatenate([features(X, v, scales) for v in VIEWS[train_views]])
                Y = np.tile(y, len(VIEWS[train_views]))
                feature_cpu = cpu_seconds() - cpu
                for kind in args.heads:
                    for head, fn, kwargs in HEADS[kind]:
                        if args.only and head not in args.only:
                            continue
                        cpu = cpu_seconds()
                        extra = {"seed": seed} if fn is keras_head else {}
                        plain, mirror, ftta = fn(F, Y, tests, **kwargs, **extra)
                        cpu = cpu_seconds() - cpu
                        scores = {
                            "plain": np.mean(plain.argmax(1) == y_eval),
                            "tta": np.mean((plain + mirror).argmax(1) == y_eval),
                            "ftta": np.mean(ftta.argmax(1) == y_eval),
                        }
                        key = f"{args.base + ' ' if args.base else ''}{tag}train={train_views} {kind} {head}"
                        results[key].append((scores, cpu))
                        print(
                            f"{args.per_class}/class seed {seed} {key}: "
                            + " ".join(f"{k} {v:.4f}" for k, v in scores.items())
                            + f"  head {cpu:.1f} s CPU (features {feature_cpu:.1f} s CPU, "
                            f"{time.perf_counter() - wall:.0f} s wall since)",
                            flush=True,
                        )
    print(
        f"\n{args.dataset}, {args.per_class}/class, seeds {args.seeds}: medians "
        "(plain / flip-TTA of probabilities / of features; per seed plain/TTA) and head CPU s"
    )
    for key, rows in results.items():
        med = {k: statistics.median(r[0][k] for r in rows) for k in ("plain", "tta", "ftta")}
        seeds = " ".join(f"{r[0]['plain']:.4f}/{r[0]['tta']:.4f}" for r in rows)
        print(
            f"  {key:40s} {med['plain']:.4f} / {med['tta']:.4f} / {med['ftta']:.4f}  "
            f"[{seeds}]  {statistics.median(r[1] for r in rows):6.1f}"
        )


if __name__ == "__main__":
    main()
