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


def test_a_clone_refits_to_the_same_network_and_leaves_the_original(fitted_cnn, small_digits):
    # fitted_cnn: CNNClassifier(epochs=2, filters=4, random_state=0) on small_digits.
    X, y = small_digits
    proba = fitted_cnn.predict_proba(X[:20])
    twin = clone(fitted_cnn).fit(X, y)
    # Everything a fit depends on is a parameter: the clone learns the same network...
    np.testing.assert_allclose(twin.predict_proba(X[:20]), proba, atol=1e-5)
    # ...in a network of its own: fitting it did not touch the original's.
    assert twin.model_ is not fitted_cnn.model_
    np.testing.assert_array_equal(fitted_cnn.predict_proba(X[:20]), proba)


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
    clf = CNNClassifier(**{**FAST, "epochs": 4}).fit(X[:240], labels[:240])
    predicted = clf.predict(X[240:])
    report = classification_report(labels[240:], predicted, output_dict=True, zero_division=0)
    # predict answers with the labels fitted on (no rows for other values) ...
    assert set(report) == {"zero", "one", "two", "accuracy", "macro avg", "weighted avg"}
    assert report["accuracy"] == pytest.approx(clf.score(X[240:], labels[240:]))
    # ... each the right one: every class is mostly recognised on unseen images.
    assert min(report[name]["recall"] for name in ("zero", "one", "two")) > 0.6


@pytest.mark.parametrize("method", ["predict", "predict_proba", "score"])
def test_methods_accept_lists(small_digits, method):
    X, y = small_digits
    clf = CNNClassifier(**FAST).fit(X[:90].tolist(), y[:90].tolist())
    args = (X[:5].tolist(), y[:5].tolist()) if method == "score" else (X[:5].tolist(),)
    expected = getattr(clf, method)(*(np.asarray(a) for a in args))
    np.testing.assert_array_equal(getattr(clf, method)(*args), expected)
