import random

import numpy as np
import pytest
from sklearn.datasets import load_digits


@pytest.fixture(autouse=True)
def _seed():
    """Every test starts from the same global random state."""
    random.seed(0)
    np.random.seed(0)


@pytest.fixture(scope="session")
def digits():
    """scikit-learn's digits as (X flattened 0-16 floats, images (n, 8, 8), y)."""
    data = load_digits()
    return data.data, data.images, data.target


@pytest.fixture(scope="session")
def small_digits(digits):
    """300 digits of classes 0-2 as uint8 images (n, 8, 8, 1): a fast 3-class problem."""
    X, images, y = digits
    keep = np.flatnonzero(y < 3)[:300]
    imgs = np.round(images[keep] / 16 * 255).astype(np.uint8)[..., None]
    return imgs, y[keep]


@pytest.fixture(scope="session")
def fitted_cnn(small_digits):
    """A CNNClassifier fitted once on ``small_digits`` (2 epochs, 4 filters) for
    the tests that only read it (predict, export, plot); a test that sets a
    parameter on it sets it back."""
    from imgclf import CNNClassifier

    X, y = small_digits
    return CNNClassifier(epochs=2, filters=4, random_state=0).fit(X, y)


@pytest.fixture(scope="session")
def fitted_mobilenet_transfer():
    """A TransferClassifier on ``mobilenet_v3_small`` (``weights=None``, 32x32,
    one epoch) fitted once on 40 random colour images of two classes, with its
    images: the real nested-backbone case for the tests that only read it
    (export, Grad-CAM)."""
    from imgclf import TransferClassifier

    rng = np.random.default_rng(0)
    X = rng.integers(0, 256, (40, 32, 32, 3), dtype=np.uint8)
    y = np.repeat(["a", "b"], 20)
    X[y == "a", :16] //= 4  # something to learn
    clf = TransferClassifier(
        backbone="mobilenet_v3_small",
        weights=None,
        image_size=32,
        epochs=1,
        fine_tune_epochs=0,
        random_state=0,
    ).fit(X, y)
    return clf, X


def pytest_collection_modifyitems(config, items):
    """``benchmark`` tests run only when asked for (``-m benchmark``): CI and
    both tiers leave them out."""
    if "benchmark" in (config.option.markexpr or ""):
        return
    skip = pytest.mark.skip(reason="a benchmark test: run with pytest -m benchmark")
    for item in items:
        if "benchmark" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="module")
def tiny_backbone():
    """A one-convolution backbone for TransferClassifier tests (a new one a module)."""
    from imgclf._backend import get_keras

    keras = get_keras()
    keras.utils.set_random_seed(0)
    inputs = keras.Input((None, None, 1))
    x = keras.layers.Rescaling(1 / 255)(inputs)  # a backbone takes pixels in 0-255
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu")(x)
    return keras.Model(inputs, x)


@pytest.fixture
def computed(monkeypatch):
    """How many images TransferClassifier's backbone ran over, call by call."""
    from imgclf import TransferClassifier

    counts = []
    original = TransferClassifier._computed_features

    def counting(self, extractor, images, y):
        counts.append(len(images))
        return original(self, extractor, images, y)

    monkeypatch.setattr(TransferClassifier, "_computed_features", counting)
    return counts
