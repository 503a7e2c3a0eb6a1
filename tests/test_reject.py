"""imgclf.Abstain and imgclf.threshold_for: refusing below a confidence
threshold, and picking the threshold for a coverage or a precision."""

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.frozen import FrozenEstimator
from sklearn.linear_model import LogisticRegression

from imgclf import Abstain, CNNClassifier, threshold_for
from imgclf.exceptions import InputError


def test_abstain_on_a_fitted_imgclf_estimator(fitted_cnn, small_digits):
    X, y = small_digits
    proba = fitted_cnn.predict_proba(X)
    threshold = float(np.median(proba.max(1)))
    abstain = Abstain(FrozenEstimator(fitted_cnn), threshold=threshold).fit(X, y)
    labels = abstain.predict(X)
    refused = proba.max(1) < threshold
    assert 0 < refused.sum() < len(X)
    # Integer classes and a string unknown: an object array holding both.
    assert labels.dtype == object
    assert (labels[refused] == "unknown").all()
    np.testing.assert_array_equal(labels[~refused], fitted_cnn.predict(X)[~refused])
    np.testing.assert_array_equal(abstain.predict_proba(X), proba)
    np.testing.assert_array_equal(abstain.classes_, fitted_cnn.classes_)
    right = (labels == y) & ~refused
    assert abstain.score(X, y) == pytest.approx(right.mean())
    # An unknown label of the classes' dtype keeps it; threshold 0 never refuses.
    same = abstain.set_params(unknown=-1).predict(X)
    assert same.dtype == fitted_cnn.classes_.dtype and (same[refused] == -1).all()
    np.testing.assert_array_equal(
        abstain.set_params(threshold=0.0).predict(X), fitted_cnn.predict(X)
    )


def test_string_classes_widen_to_hold_the_unknown_label():
    X = np.array([[0.0], [1.0], [2.0], [3.0]])
    y = np.array(["a", "a", "b", "b"])
    abstain = Abstain(LogisticRegression(), threshold=0.99, unknown="not sure").fit(X, y)
    labels = abstain.predict(X)
    assert labels.dtype.kind == "U"
    assert set(labels.tolist()) == {"not sure"}


@pytest.mark.slow
def test_abstain_fits_a_clone_of_an_unfitted_estimator(small_digits):
    X, y = small_digits
    inner = CNNClassifier(epochs=1, filters=4, random_state=0)
    abstain = Abstain(inner, threshold=0.9).fit(X, y)
    assert not hasattr(inner, "model_")
    assert abstain.estimator_.temperature_ > 0
    clone(abstain)  # get_params / set_params as scikit-learn expects


@pytest.mark.parametrize("threshold", [-0.1, 1.5, "high", None, True])
def test_bad_threshold(threshold):
    X, y = np.array([[0.0], [1.0]]), np.array([0, 1])
    with pytest.raises(InputError, match="threshold"):
        Abstain(LogisticRegression(), threshold=threshold).fit(X, y)


def test_estimator_without_predict_proba():
    from sklearn.svm import LinearSVC

    with pytest.raises(InputError, match="predict_proba"):
        Abstain(LinearSVC()).fit(np.array([[0.0], [1.0]]), np.array([0, 1]))


def _random_case(seed=0, n=500):
    rng = np.random.default_rng(seed)
    proba = rng.dirichlet(np.ones(4) * 0.5, n)
    # Right more often when confident, as a calibrated model is.
    right = rng.random(n) < proba.max(1)
    y = np.where(right, proba.argmax(1), (proba.argmax(1) + 1) % 4)
    return proba, y


@pytest.mark.parametrize("coverage", [0.1, 0.5, 0.9, 1.0])
def test_threshold_for_coverage(coverage):
    proba, y = _random_case()
    t = threshold_for(proba, y, coverage=coverage)
    kept = proba.max(1) >= t
    assert kept.mean() == pytest.approx(coverage, abs=1 / len(y))
    assert kept.mean() >= coverage - 1e-9


@pytest.mark.parametrize("precision", [0.8, 0.9, 0.99])
def test_threshold_for_precision_is_the_lowest_that_reaches_it(precision):
    proba, y = _random_case(1)
    t = threshold_for(proba, y, precision=precision)
    kept = proba.max(1) >= t
    right = proba.argmax(1) == y
    assert kept.any() and right[kept].mean() >= precision
    # Any lower threshold among the confidences answers more at a lower precision.
    lower = np.sort(np.unique(proba.max(1)[proba.max(1) < t]))
    for other in lower[-5:]:
        answered = proba.max(1) >= other
        assert right[answered].mean() < precision


def test_threshold_for_with_labels_and_unreachable_precision():
    proba = np.array([[0.9, 0.1], [0.3, 0.7], [0.6, 0.4]])
    labels = np.array(["cat", "dog"])
    y = np.array(["cat", "cat", "cat"])  # right, wrong, right by confidence
    assert threshold_for(proba, y, classes=labels, precision=0.6) == pytest.approx(0.6)
    assert threshold_for(proba, y, classes=labels, precision=0.9) == pytest.approx(0.9)
    wrong = np.array(["dog", "cat", "dog"])
    assert threshold_for(proba, wrong, classes=labels, precision=0.5) > proba.max()
    with pytest.raises(InputError, match="classes"):
        threshold_for(proba, y, precision=0.5)  # labels, no classes=


@pytest.mark.parametrize(
    "kwargs",
    [{}, {"coverage": 0.5, "precision": 0.5}, {"coverage": 0.0}, {"precision": 1.5}],
)
def test_threshold_for_bad_targets(kwargs):
    proba, y = _random_case(n=10)
    with pytest.raises(InputError, match="threshold_for"):
        threshold_for(proba, y, **kwargs)


def test_threshold_for_shape_mismatch():
    proba, y = _random_case(n=10)
    with pytest.raises(InputError, match="proba of shape"):
        threshold_for(proba, y[:5], coverage=0.5)
