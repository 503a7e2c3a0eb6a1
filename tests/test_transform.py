"""transform: the estimators as feature extractors, and prediction's own batch size."""

import os

import numpy as np
import pytest
from PIL import Image
from sklearn.exceptions import NotFittedError
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline

from imgclf import CNNClassifier, TransferClassifier
from imgclf import _inference as inference
from imgclf._backend import get_keras
from imgclf._inference import PredictMixin


def _softmax(z):
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def _head_proba(clf, features):
    """The classifier layer and the fitted temperature applied by hand to ``features``."""
    kernel, bias = clf.model_.get_layer("classifier").get_weights()
    return _softmax((features.astype(np.float64) @ kernel + bias) / clf.temperature_)


def _layer_output(clf, layer, X):
    """The output of ``model_``'s layer ``layer``, computed by Keras directly."""
    keras = get_keras()
    model = keras.Model(clf.model_.inputs[0], clf.model_.get_layer(layer).output)
    return model.predict(clf.network_input(X), verbose=0)


# ------------------------------------------------------------------ CNN
def test_cnn_transform_is_the_penultimate_layer(fitted_cnn, small_digits):
    X, _ = small_digits
    features = fitted_cnn.transform(X[:40])
    width = fitted_cnn.model_.get_layer("classifier").get_weights()[0].shape[0]
    assert features.shape == (40, width)
    assert features.dtype == np.float32
    np.testing.assert_allclose(features, _layer_output(fitted_cnn, "pool", X[:40]), atol=1e-5)
    # The classifier layer on these features gives predict_proba.
    np.testing.assert_allclose(
        _head_proba(fitted_cnn, features), fitted_cnn.predict_proba(X[:40]), atol=1e-5
    )


def test_many_images_and_files_give_the_same_features(
    fitted_cnn, small_digits, tmp_path, monkeypatch
):
    X, _ = small_digits
    few = fitted_cnn.transform(X[:30])
    paths = []
    for i in range(5):
        paths.append(str(tmp_path / f"{i}.png"))
        Image.fromarray(X[i, ..., 0]).save(paths[-1])
    np.testing.assert_allclose(fitted_cnn.transform(paths), few[:5], atol=1e-5)
    monkeypatch.setattr(inference, "DIRECT_CALL_MAX_IMAGES", 10)  # the model.predict path
    np.testing.assert_allclose(fitted_cnn.transform(X[:30]), few, atol=1e-5)


def test_transform_before_fit_raises_not_fitted(small_digits):
    with pytest.raises(NotFittedError):
        CNNClassifier().transform(small_digits[0][:3])
    with pytest.raises(NotFittedError):
        TransferClassifier().transform(small_digits[0][:3])


def test_transform_leaves_the_estimator_alone(fitted_cnn, small_digits):
    before = dict(vars(fitted_cnn))
    fitted_cnn.transform(small_digits[0][:4])
    assert vars(fitted_cnn).keys() == before.keys()


@pytest.mark.slow
def test_pipeline_with_logistic_regression(small_digits):
    X, y = small_digits
    pipe = make_pipeline(
        CNNClassifier(epochs=3, filters=4, random_state=0), LogisticRegression(max_iter=500)
    )
    pipe.fit(X[:240], y[:240])
    cnn, logistic = pipe[0], pipe[-1]
    assert logistic.coef_.shape[1] == cnn.transform(X[:1]).shape[1]
    # The logistic regression was fitted on the fitted CNN's features.
    features = cnn.transform(X[240:])
    np.testing.assert_array_equal(pipe.predict(X[240:]), logistic.predict(features))
    assert pipe.score(X[240:], y[240:]) > 0.6  # 3 classes: chance is 0.33


# ------------------------------------------------------------- transfer
@pytest.fixture
def network_runs(monkeypatch):
    """How many images transform ran a network over, call by call."""
    counts = []
    original = PredictMixin._network_output

    def counting(self, network, images, views, what):
        if what == "transform":
            counts.append(len(images))
        return original(self, network, images, views, what)

    monkeypatch.setattr(PredictMixin, "_network_output", counting)
    return counts


def _transfer(backbone, **params):
    defaults = dict(backbone=backbone, epochs=2, fine_tune_epochs=0, random_state=0)
    return TransferClassifier(**{**defaults, **params})


def _cache_files(root):
    return [f for _, _, files in os.walk(root) for f in files if f.endswith(".f32")]


def test_transfer_transform_is_the_pooled_backbone(
    fitted_mobilenet_transfer, network_runs, monkeypatch
):
    clf, X = fitted_mobilenet_transfer
    features = clf.transform(X[:6])
    assert features.shape == (6, clf.model_.get_layer("features").output.shape[-1])
    assert features.dtype == np.float32
    assert network_runs == [6]
    np.testing.assert_allclose(features, _layer_output(clf, "features", X[:6]), atol=1e-4)
    np.testing.assert_allclose(_head_proba(clf, features), clf.predict_proba(X[:6]), atol=1e-5)
    monkeypatch.setattr(inference, "DIRECT_CALL_MAX_IMAGES", 2)  # the model.predict path
    np.testing.assert_allclose(clf.transform(X[:6]), features, atol=1e-4)


def test_transform_fills_then_reads_memory(tiny_backbone, small_digits, network_runs, tmp_path):
    X, y = small_digits[0][:60], small_digits[1][:60]
    plain = _transfer(tiny_backbone).fit(X, y)
    clf = _transfer(tiny_backbone, memory=str(tmp_path)).fit(X, y)
    fitted = len(_cache_files(tmp_path))
    assert fitted == 60  # the fit's training and validation images

    new = small_digits[0][60:90]
    first = clf.transform(new)
    assert network_runs == [30]
    assert len(_cache_files(tmp_path)) == fitted + 30
    np.testing.assert_allclose(first, plain.transform(new), atol=1e-5)

    network_runs.clear()
    np.testing.assert_array_equal(clf.transform(new), first)
    assert network_runs == []  # every feature read back, no network run
    # The fit's own images too, and a mix runs the network on the new ones only.
    expected = plain.transform(X)
    network_runs.clear()
    np.testing.assert_allclose(clf.transform(X), expected, atol=1e-5)
    assert network_runs == []
    clf.transform(np.concatenate([X[:5], small_digits[0][90:93]]))
    assert network_runs == [3]


def test_transform_memory_follows_the_backbone(tiny_backbone, small_digits, network_runs, tmp_path):
    X, y = small_digits[0][:60], small_digits[1][:60]
    clf = _transfer(tiny_backbone, memory=str(tmp_path)).fit(X, y)
    before = clf.transform(X[:10])
    assert network_runs == []
    kernel = clf.model_.get_layer("backbone").weights[0]
    kernel.assign(kernel.numpy() * 3.0)  # a changed backbone: nothing stale is served
    after = clf.transform(X[:10])
    assert network_runs == [10]
    assert np.abs(after - before).max() > 1e-3
    np.testing.assert_allclose(after, _layer_output(clf, "features", X[:10]), atol=1e-5)


def test_transform_files_with_memory(tiny_backbone, small_digits, network_runs, tmp_path):
    X, y = small_digits[0][:60], small_digits[1][:60]
    clf = _transfer(tiny_backbone, memory=str(tmp_path / "memory")).fit(X, y)
    paths = []
    for i in range(4):
        paths.append(str(tmp_path / f"{i}.png"))
        Image.fromarray(X[i, ..., 0]).save(paths[-1])
    first = clf.transform(paths)
    np.testing.assert_allclose(first, clf.transform(X[:4]), atol=1e-5)
    network_runs.clear()
    np.testing.assert_array_equal(clf.transform(paths), first)
    assert network_runs == []


# ------------------------------------------------------ prediction batch
def test_inference_batch_follows_the_image_size():
    size = inference.inference_batch_size
    assert size((28, 28)) == 512
    assert size((96, 96)) == 32
    assert size((224, 224)) == inference.INFERENCE_BATCH_MIN
    assert size((2, 2)) == inference.INFERENCE_BATCH_MAX
    sizes = [size((s, s)) for s in range(4, 400, 7)]
    assert sizes == sorted(sizes, reverse=True)


def test_many_images_predict_in_the_inference_batch(fitted_cnn, small_digits, monkeypatch):
    X, _ = small_digits
    seen = []
    original = type(fitted_cnn.model_).predict

    def spy(self, *args, **kwargs):
        seen.append(kwargs.get("batch_size"))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(type(fitted_cnn.model_), "predict", spy)
    monkeypatch.setattr(inference, "DIRECT_CALL_MAX_IMAGES", 10)
    fitted_cnn.predict_proba(X[:40])
    fitted_cnn.transform(X[:40])
    expected = inference.inference_batch_size(fitted_cnn.image_size_)
    assert expected != fitted_cnn.batch_size_
    assert seen == [expected, expected]
