"""scikit-learn tools on CNNClassifier: clone, search, pipelines, CV, reports."""

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.metrics import classification_report
from sklearn.model_selection import GridSearchCV, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer

from imgclf import CNNClassifier

FAST = dict(epochs=2, filters=4, random_state=0)


def test_clone_copies_params_not_state(small_digits):
    X, y = small_digits
    clf = CNNClassifier(augment="light", class_weight="balanced", **FAST).fit(X, y)
    twin = clone(clf)
    assert twin.get_params() == clf.get_params()
    assert not hasattr(twin, "model_") and not hasattr(twin, "classes_")


@pytest.mark.slow
def test_grid_search(small_digits):
    X, y = small_digits
    search = GridSearchCV(CNNClassifier(**FAST), {"learning_rate": [1e-3, 1e-2]}, cv=2)
    search.fit(X, y)
    scores = search.cv_results_["mean_test_score"]
    assert scores.shape == (2,)
    # The candidate with the best mean score is the one refitted and used.
    assert search.best_params_ == search.cv_results_["params"][int(np.argmax(scores))]
    assert search.best_estimator_.learning_rate == search.best_params_["learning_rate"]
    np.testing.assert_array_equal(search.predict(X), search.best_estimator_.predict(X))


def test_pipeline_with_transformer_in_front(digits):
    X, _, y = digits
    X, y = X[:240], y[:240]
    # A transformer that turns flattened 0-16 digits into uint8 (n, 8, 8) images.
    to_images = FunctionTransformer(lambda a: np.round(a.reshape(-1, 8, 8) * 15.9).astype(np.uint8))
    pipe = make_pipeline(to_images, CNNClassifier(**FAST)).fit(X, y)
    clf = pipe[-1]
    assert clf.input_range_ == (0.0, 255.0) and clf.image_size_ == (8, 8)
    assert pipe.predict(X).shape == (240,)
    assert pipe.score(X, y) == np.mean(pipe.predict(X) == y)
    # Parameters route through the pipeline's double-underscore names.
    pipe.set_params(cnnclassifier__epochs=1)
    assert pipe[-1].epochs == 1


@pytest.mark.slow
def test_cross_val_score(small_digits):
    X, y = small_digits
    scores = cross_val_score(CNNClassifier(**{**FAST, "epochs": 4}), X, y, cv=3)
    assert scores.shape == (3,)
    # Three clearly different digit classes: well above chance on held-out folds.
    assert scores.mean() > 0.5


def test_classification_report(small_digits):
    X, y = small_digits
    labels = np.array(["zero", "one", "two"])[y]
    clf = CNNClassifier(**FAST).fit(X, labels)
    report = classification_report(labels, clf.predict(X), output_dict=True, zero_division=0)
    assert {"zero", "one", "two", "accuracy"} <= set(report)


@pytest.mark.parametrize("method", ["predict", "predict_proba", "score"])
def test_methods_accept_lists(small_digits, method):
    X, y = small_digits
    clf = CNNClassifier(**FAST).fit(X[:90].tolist(), y[:90].tolist())
    args = (X[:5].tolist(), y[:5].tolist()) if method == "score" else (X[:5].tolist(),)
    expected = getattr(clf, method)(*(np.asarray(a) for a in args))
    np.testing.assert_array_equal(getattr(clf, method)(*args), expected)
