"""The frozen stage's fast path against the plain approach, measured in one run.

    python benchmarks/bench_transfer_speed.py [--images 600] [--size 96] [--epochs 10] [--repeats 3]

With augmentation off, a frozen backbone maps each training image to the same
features every epoch. ``TransferClassifier`` computes them once and trains the
head on them; the plain approach (``model.fit`` on the whole network, as a
Keras tutorial does, written here by hand: the same backbone frozen, pooling,
dropout and a softmax layer, resizing and grayscale-to-RGB as layers) runs the
backbone over every image every epoch. Both fit the same data in batches of
32 without a hold-out (early stopping off, so both run every epoch); the runs
alternate so machine noise hits both alike. Prints the median wall and CPU
time of each fit, their ratio, and the test accuracy of both (close: the two
train the same architecture, from other initial heads). ImageNet weights cannot be downloaded here,
so the backbone is randomly initialised: the time is what counts; a frozen
random network's accuracy is near chance.

Measured here (2 shared cores): ``--images 500 --size 128 --epochs 15`` gave a
median of 46.3 s plain against 21.6 s fast, 2.1x (measured when the plain side
was imgclf's own frozen stage run on the whole network).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np
from _datasets import load_fashion_mnist

from imgclf import TransferClassifier
from imgclf.backbones import get_backbone


class PlainKeras:
    """The tutorial approach, by hand: ``model.fit`` of the whole network
    (backbone frozen) on the images, every epoch."""

    def __init__(self, backbone: str, size: int, epochs: int, seed: int = 0):
        self.backbone, self.size, self.epochs, self.seed = backbone, size, epochs, seed

    def fit(self, X, y):
        import keras

        keras.utils.set_random_seed(self.seed)
        named = get_backbone(self.backbone)
        self.classes_ = np.unique(y)
        inputs = keras.Input(X.shape[1:3] + (1,))
        x = keras.layers.Resizing(self.size, self.size)(inputs)
        x = keras.layers.Concatenate()([x, x, x])
        x = named.preprocess_layers(keras.layers.Rescaling(1 / 255)(x))
        net = named.build((self.size, self.size, 3), None)
        net.trainable = False
        x = keras.layers.GlobalAveragePooling2D()(net(x, training=False))
        x = keras.layers.Dropout(0.2)(x)
        outputs = keras.layers.Dense(len(self.classes_), activation="softmax")(x)
        self.model_ = keras.Model(inputs, outputs)
        self.model_.compile(keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy")
        y_enc = np.searchsorted(self.classes_, y)
        self.model_.fit(X[..., None], y_enc, batch_size=32, epochs=self.epochs, verbose=0)
        return self

    def score(self, X, y):
        proba = self.model_.predict(X[..., None], batch_size=256, verbose=0)
        return float(np.mean(self.classes_[np.argmax(proba, axis=1)] == y))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=600)
    parser.add_argument("--size", type=int, default=96)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--backbone", default="mobilenet_v3_small")
    args = parser.parse_args()

    X_train, y_train, X_test, y_test = load_fashion_mnist()
    rng = np.random.default_rng(0)
    train = rng.choice(len(X_train), args.images, replace=False)
    test = rng.choice(len(X_test), 1000, replace=False)
    params = dict(
        backbone=args.backbone,
        # No download here: random weights cost the same time as ImageNet ones.
        weights=None,
        image_size=args.size,
        epochs=args.epochs,
        batch_size=32,
        validation_fraction=0.0,
        early_stopping=False,
        fine_tune_epochs=0,
        random_state=0,
    )
    makers = {
        "fast": lambda: TransferClassifier(**params),
        "plain": lambda: PlainKeras(args.backbone, args.size, args.epochs),
    }
    times = {"fast": [], "plain": []}
    cpu = {"fast": [], "plain": []}
    scores = {}
    for repeat in range(args.repeats):
        for name, make in makers.items():
            clf = make()
            start, start_cpu = time.perf_counter(), _cpu()
            clf.fit(X_train[train], y_train[train])
            times[name].append(time.perf_counter() - start)
            cpu[name].append(_cpu() - start_cpu)
            scores[name] = clf.score(X_test[test], y_test[test])
            print(
                f"repeat {repeat} {name:>5}: fit {times[name][-1]:6.1f} s "
                f"(CPU {cpu[name][-1]:6.1f} s)",
                flush=True,
            )
    fast, plain = statistics.median(times["fast"]), statistics.median(times["plain"])
    fast_cpu, plain_cpu = statistics.median(cpu["fast"]), statistics.median(cpu["plain"])
    print(
        f"\n{args.backbone}, {args.images} Fashion-MNIST images at {args.size}x{args.size}, "
        f"{args.epochs} frozen epochs, median of {args.repeats}:\n"
        f"  plain Keras (backbone every epoch): {plain:6.1f} s (CPU {plain_cpu:6.1f} s)   "
        f"test accuracy {scores['plain']:.4f}\n"
        f"  imgclf (features once):             {fast:6.1f} s (CPU {fast_cpu:6.1f} s)   "
        f"test accuracy {scores['fast']:.4f}\n"
        f"  speed-up: {plain / fast:.1f}x wall, {plain_cpu / fast_cpu:.1f}x CPU"
    )


def _cpu() -> float:
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


if __name__ == "__main__":
    main()
