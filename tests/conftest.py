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


def pytest_collection_modifyitems(config, items):
    """``benchmark`` tests run only when asked for (``-m benchmark``): CI and
    both tiers leave them out."""
    if "benchmark" in (config.option.markexpr or ""):
        return
    skip = pytest.mark.skip(reason="a benchmark test: run with pytest -m benchmark")
    for item in items:
        if "benchmark" in item.keywords:
            item.add_marker(skip)
