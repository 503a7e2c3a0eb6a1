"""Fashion-MNIST from its Debian package: arrays in, scikit-learn report out.

A common tutorial trains a Keras CNN on Fashion-MNIST, then fights
overfitting with augmentation and dropout. ``CNNClassifier`` has dropout and
early stopping on a stratified hold-out by default, takes the uint8 arrays as
they are, and adds augmentation with one parameter (this script passes
``augment="light"``; the default is none).

The data come from the Debian package ``dataset-fashion-mnist``
(``apt-get install dataset-fashion-mnist``), four IDX files in
``/usr/share/datasets/fashion-mnist``; pass ``--data-dir`` (or set
``FASHION_MNIST_DIR``) for another folder. Without them the script says so
and exits with status 0 (there is nothing to run).

Run it::

    python examples/fashion_mnist.py          # 8,000 training images, a few minutes
    python examples/fashion_mnist.py --fast   # 500 images, one epoch
"""

from __future__ import annotations

import argparse
import gzip
import os
import sys
import time

import numpy as np
from sklearn.metrics import classification_report

from imgclf import CNNClassifier

DEFAULT_DIR = os.environ.get("FASHION_MNIST_DIR", "/usr/share/datasets/fashion-mnist")
FILES = {
    "X_train": "train-images-idx3-ubyte.gz",
    "y_train": "train-labels-idx1-ubyte.gz",
    "X_test": "t10k-images-idx3-ubyte.gz",
    "y_test": "t10k-labels-idx1-ubyte.gz",
}
LABELS = np.array(
    ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
     "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
)  # fmt: skip


def read_idx(path: str) -> np.ndarray:
    """Read a gzipped IDX file (the MNIST format) of unsigned bytes."""
    with gzip.open(path, "rb") as f:
        data = f.read()
    if data[:3] != b"\x00\x00\x08":
        raise ValueError(f"{path} is not an IDX file of unsigned bytes (magic {data[:4]!r}).")
    ndim = data[3]
    shape = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fast", action="store_true", help="a tiny smoke-test run")
    parser.add_argument(
        "--data-dir", default=DEFAULT_DIR, help="folder with the four IDX .gz files"
    )
    parser.add_argument("--n-train", type=int, default=8_000, help="training images to use")
    args = parser.parse_args(argv)

    missing = [f for f in FILES.values() if not os.path.exists(os.path.join(args.data_dir, f))]
    if missing:
        print(
            f"Fashion-MNIST is not in {args.data_dir} (missing {', '.join(missing)}). "
            "Install it with `sudo apt-get install dataset-fashion-mnist`, or pass "
            "--data-dir DIR holding the four IDX .gz files. Nothing to run.",
            file=sys.stderr,
        )
        return 0
    data = {key: read_idx(os.path.join(args.data_dir, f)) for key, f in FILES.items()}
    n_train = 500 if args.fast else args.n_train
    n_test = 500 if args.fast else len(data["y_test"])
    # Readable labels: any label type works, and the report shows the names.
    X_train, y_train = data["X_train"][:n_train], LABELS[data["y_train"][:n_train]]
    X_test, y_test = data["X_test"][:n_test], LABELS[data["y_test"][:n_test]]
    print(
        f"Training on {len(X_train)} images {X_train.shape[1:]} ({X_train.dtype}), "
        f"testing on {len(X_test)}"
    )

    clf = CNNClassifier(
        epochs=1 if args.fast else 10,
        filters=8 if args.fast else 32,
        augment="light",
        random_state=0,
        verbose=0 if args.fast else 2,
    )
    start = time.perf_counter()
    clf.fit(X_train, y_train)
    minutes = (time.perf_counter() - start) / 60
    print(f"Trained {len(clf.history_['loss'])} epochs in {minutes:.1f} min")
    print(classification_report(y_test, clf.predict(X_test), digits=3, zero_division=0))
    print(f"Test accuracy: {clf.score(X_test, y_test):.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
