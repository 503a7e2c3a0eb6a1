"""Real datasets for the benchmarks, read from what ships on this machine."""

from __future__ import annotations

import gzip
import os

import numpy as np

FASHION_DIR = os.environ.get("FASHION_MNIST_DIR", "/usr/share/datasets/fashion-mnist")


def _read_idx(path: str) -> np.ndarray:
    with gzip.open(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def load_fashion_mnist():
    """Fashion-MNIST's official split as uint8 ``(n, 28, 28)`` images and labels.

    From the Debian package ``dataset-fashion-mnist`` (``apt-get install
    dataset-fashion-mnist``), or the folder in ``FASHION_MNIST_DIR``.
    """
    files = {
        "X_train": "train-images-idx3-ubyte.gz",
        "y_train": "train-labels-idx1-ubyte.gz",
        "X_test": "t10k-images-idx3-ubyte.gz",
        "y_test": "t10k-labels-idx1-ubyte.gz",
    }
    missing = [f for f in files.values() if not os.path.exists(os.path.join(FASHION_DIR, f))]
    if missing:
        raise SystemExit(
            f"Fashion-MNIST not found in {FASHION_DIR} (missing {missing}). Install it with "
            "`apt-get install dataset-fashion-mnist` or set FASHION_MNIST_DIR."
        )
    out = {k: _read_idx(os.path.join(FASHION_DIR, f)) for k, f in files.items()}
    return out["X_train"], out["y_train"], out["X_test"], out["y_test"]


def load_split(name: str):
    """``(X_train, y_train, X_test, y_test)`` as uint8 images: Fashion-MNIST's
    official split (``"fashion"``), or scikit-learn's 8x8 digits scaled to
    0-255 and split in half, stratified, with ``random_state=0`` (``"digits"``)."""
    if name == "fashion":
        return load_fashion_mnist()
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    X, y = load_digits(return_X_y=True)
    X = np.round(X.reshape(-1, 8, 8) * 255 / 16).astype(np.uint8)
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=0.5, stratify=y, random_state=0
    )
    return X_train, y_train, X_test, y_test


def per_class(X, y, classes, n: int, rng):
    """``n`` images of each of ``classes`` drawn without replacement by ``rng``
    (a NumPy Generator), in class order: the benchmarks' training draws."""
    index = np.concatenate([rng.choice(np.flatnonzero(y == c), n, replace=False) for c in classes])
    return X[index], y[index]
