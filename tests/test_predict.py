"""Prediction: the traced call for few images, the pipeline for many, test-time augmentation."""

import gc
import pickle
import weakref

import numpy as np
import pytest
from PIL import Image

from imgclf import CNNClassifier
from imgclf import _inference as inference
from imgclf.exceptions import InputError

FAST = dict(epochs=1, filters=4, random_state=0)


def keras_proba(clf, X):
    """What ``model_.predict`` gives on the network input: the reference."""
    return clf.model_.predict(clf.network_input(X), verbose=0).astype(np.float64)


def test_few_images_match_model_predict(fitted_cnn, small_digits):
    X, _ = small_digits
    for n in (1, 3, 50):
        np.testing.assert_allclose(
            fitted_cnn.predict_proba(X[:n]), keras_proba(fitted_cnn, X[:n]), atol=1e-6
        )


def test_many_images_take_the_pipeline_and_agree(fitted_cnn, small_digits, monkeypatch):
    X, _ = small_digits
    direct = fitted_cnn.predict_proba(X[:40])
    monkeypatch.setattr(inference, "DIRECT_CALL_MAX_IMAGES", 10)
    called = []
    original = type(fitted_cnn.model_).predict

    def spy(self, *args, **kwargs):
        called.append(True)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(type(fitted_cnn.model_), "predict", spy)
    piped = fitted_cnn.predict_proba(X[:40])
    assert called, "more than DIRECT_CALL_MAX_IMAGES images must go through model.predict"
    called.clear()
    fitted_cnn.predict_proba(X[:5])
    assert not called, "a few images must not go through model.predict"
    np.testing.assert_allclose(direct, piped, atol=1e-6)


def test_float_input_in_other_units_matches(small_digits):
    X, y = small_digits
    X = X.astype(np.float64) / 255 * 16  # digits' own 0-16 units
    clf = CNNClassifier(**FAST).fit(X, y)
    np.testing.assert_allclose(clf.predict_proba(X[:7]), keras_proba(clf, X[:7]), atol=1e-6)


@pytest.mark.parametrize("kind", ["resize", "channels"])
def test_converted_arrays_match_the_pipeline(small_digits, kind):
    X, y = small_digits
    params = {"image_size": 12} if kind == "resize" else {"color_mode": "rgb"}
    clf = CNNClassifier(**FAST, **params).fit(X, y)
    assert clf.model_.input_shape[1:] == ((12, 12, 1) if kind == "resize" else (8, 8, 3))
    np.testing.assert_allclose(clf.predict_proba(X[:9]), keras_proba(clf, X[:9]), atol=1e-5)


def test_batch_sizes_share_one_trace(fitted_cnn, small_digits):
    X, _ = small_digits
    for n in (1, 2, 7, 1, 33):
        fitted_cnn.predict_proba(X[:n])
    call = inference.traced_predictor(fitted_cnn.model_, (8, 8, 1), [inference.View()])
    assert call.experimental_get_tracing_count() == 1


def test_predict_leaves_the_estimator_alone_and_pickles(fitted_cnn, small_digits):
    X, _ = small_digits
    before = dict(vars(fitted_cnn))
    expected = fitted_cnn.predict_proba(X[:4])
    assert vars(fitted_cnn).keys() == before.keys()
    loaded = pickle.loads(pickle.dumps(fitted_cnn))
    np.testing.assert_allclose(loaded.predict_proba(X[:4]), expected, atol=1e-6)


def test_refit_is_not_served_by_the_old_network(small_digits):
    X, y = small_digits
    clf = CNNClassifier(**FAST).fit(X, y)
    clf.predict_proba(X[:3])
    old = weakref.ref(clf.model_)
    clf.set_params(random_state=1, filters=6).fit(X, y)
    np.testing.assert_allclose(clf.predict_proba(X[:3]), keras_proba(clf, X[:3]), atol=1e-6)
    gc.collect()
    assert old() is None, "the traced call must not keep the dropped network alive"


@pytest.mark.slow
def test_warm_start_sees_the_new_weights(small_digits):
    X, y = small_digits
    clf = CNNClassifier(**FAST, warm_start=True).fit(X, y)
    first = clf.predict_proba(X[:3])
    clf.fit(X, y)
    after = clf.predict_proba(X[:3])
    assert np.abs(after - first).max() > 1e-4
    np.testing.assert_allclose(after, keras_proba(clf, X[:3]), atol=1e-6)


def test_file_paths_predict_through_the_pipeline(fitted_cnn, small_digits, tmp_path):
    X, _ = small_digits
    paths = []
    for i in range(5):
        paths.append(str(tmp_path / f"{i}.png"))
        Image.fromarray(X[i, ..., 0]).save(paths[-1])
    np.testing.assert_allclose(
        fitted_cnn.predict_proba(paths), fitted_cnn.predict_proba(X[:5]), atol=1e-6
    )
    fitted_cnn.set_params(tta=3)
    try:
        np.testing.assert_allclose(
            fitted_cnn.predict_proba(paths), fitted_cnn.predict_proba(X[:5]), atol=1e-6
        )
    finally:
        fitted_cnn.set_params(tta=0)


# ----------------------------------------------------------------- TTA
def test_views_move_and_mirror_the_image():
    tf = pytest.importorskip("tensorflow")
    x = np.zeros((1, 8, 8, 1), np.float32)
    x[0, 3, 4, 0] = 1  # far enough from the border that no reflection copies it
    for view, (row, col) in [
        (inference.View(), (3, 4)),
        (inference.View(dy=1, dx=2), (4, 6)),
        (inference.View(dy=-1, dx=0), (2, 4)),
        (inference.View(flip=True), (3, 3)),
    ]:
        out = inference.apply_view(tf, tf.constant(x), view).numpy()
        assert out.shape == x.shape and out.sum() == 1
        assert np.unravel_index(out.argmax(), out.shape)[1:3] == (row, col), view


def test_view_order_and_limits():
    views = inference.tta_views(18, (28, 28), flip=True)
    assert len(set(views)) == 18 and views[0] == inference.View()
    assert views[1] == inference.View(flip=True)
    assert {abs(v.dy) + abs(v.dx) for v in views} == {0, 2, 4}
    assert inference.max_views((28, 28), flip=False) == 9
    assert inference.max_views((1, 1), flip=True) == 2
    assert inference.tta_views(0, (8, 8), flip=False) == [inference.View()]


@pytest.mark.parametrize(
    "augment, flips",
    [
        (None, False),
        ("light", False),
        ("standard", True),
        ({"flip": "vertical"}, False),
        ({"flip": "horizontal_and_vertical"}, True),
    ],
)
def test_flips_follow_the_training_augmentation(augment, flips):
    assert inference.flips_in(augment) is flips


def test_flips_from_keras_layers():
    keras = pytest.importorskip("keras")
    assert inference.flips_in([keras.layers.RandomFlip("horizontal")])
    assert not inference.flips_in([keras.layers.RandomFlip("vertical")])


def test_flips_are_recognised_by_class_not_by_name():
    keras = pytest.importorskip("keras")

    class Mirror(keras.layers.RandomFlip):  # a RandomFlip under another name
        pass

    class RandomFlip(keras.layers.Layer):  # the name, but no flip
        def get_config(self):
            return {**super().get_config(), "mode": "horizontal"}

    assert inference.flips_in([Mirror("horizontal")])
    assert not inference.flips_in([RandomFlip()])


def test_tta_averages_the_views(fitted_cnn, small_digits):
    tf = pytest.importorskip("tensorflow")
    X, _ = small_digits
    x = tf.constant(fitted_cnn.network_input(X[:6]))
    views = inference.tta_views(4, (8, 8), flip=False)
    expected = np.mean(
        [fitted_cnn.model_(inference.apply_view(tf, x, v), training=False).numpy() for v in views],
        axis=0,
    )
    plain = fitted_cnn.predict_proba(X[:6])
    fitted_cnn.set_params(tta=4)
    try:
        averaged = fitted_cnn.predict_proba(X[:6])
        labels = fitted_cnn.predict(X[:6])
    finally:
        fitted_cnn.set_params(tta=0)
    np.testing.assert_allclose(averaged, expected, atol=1e-6)
    assert np.abs(averaged - plain).max() > 1e-4
    np.testing.assert_array_equal(labels, fitted_cnn.classes_[averaged.argmax(1)])
    np.testing.assert_allclose(averaged.sum(1), 1, atol=1e-6)


def test_tta_too_many_views_names_the_limit(fitted_cnn, small_digits):
    X, _ = small_digits
    fitted_cnn.set_params(tta=10)
    try:
        with pytest.raises(InputError, match=r"tta=10: 9 views exist for 8x8 images.*tta <= 9"):
            fitted_cnn.predict(X[:2])
    finally:
        fitted_cnn.set_params(tta=0)


@pytest.mark.parametrize("bad", [-1, 1.5, "flip", True])
def test_invalid_tta_is_rejected_in_predict(fitted_cnn, small_digits, bad):
    # In fit: tests/test_param_rules.py.
    X, _ = small_digits
    fitted_cnn.set_params(tta=bad)
    try:
        with pytest.raises(InputError, match=r"tta="):
            fitted_cnn.predict_proba(X[:2])
    finally:
        fitted_cnn.set_params(tta=0)


def test_tta_survives_save_and_load(fitted_cnn, small_digits, tmp_path):
    import imgclf

    X, _ = small_digits
    fitted_cnn.set_params(tta=3)
    try:
        expected = fitted_cnn.predict_proba(X[:4])
        fitted_cnn.save(tmp_path / "model.imgclf")
    finally:
        fitted_cnn.set_params(tta=0)
    loaded = imgclf.load(tmp_path / "model.imgclf")
    assert loaded.tta == 3
    np.testing.assert_allclose(loaded.predict_proba(X[:4]), expected, atol=1e-6)


def test_predict_mixin_reads_only_its_declared_interface():
    """Every private name PredictMixin reads on ``self`` is one it defines
    itself: its own helpers and the interface its host implements
    (``_prediction_input``, ``_reading``, ``_parameter_problem``)."""
    import ast
    import inspect

    tree = ast.parse(inspect.getsource(inference.PredictMixin))
    defined = {node.name for node in ast.walk(tree) if isinstance(node, ast.FunctionDef)}
    defined |= {
        target.id
        for node in ast.walk(tree)
        if isinstance(node, ast.Assign)
        for target in node.targets
        if isinstance(target, ast.Name)
    }
    read = {
        node.attr
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute)
        and isinstance(node.value, ast.Name)
        and node.value.id == "self"
        and node.attr.startswith("_")
    }
    read |= {
        node.args[1].value
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and getattr(node.func, "id", None) in ("getattr", "hasattr")
        and isinstance(node.args[1], ast.Constant)
        and str(node.args[1].value).startswith("_")
    }
    assert read and read <= defined, sorted(read - defined)
