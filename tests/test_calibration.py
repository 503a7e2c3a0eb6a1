"""Temperature scaling: the fit of T, the layer inside the network, and that
every path to the probabilities (predict_proba, TTA, save/load, pickle,
export, Grad-CAM, the transfer head on cached features) carries it."""

import pickle
import warnings

import numpy as np
import pytest

from imgclf import CNNClassifier, TransferClassifier, load
from imgclf._backend import get_keras
from imgclf._calibration import (
    expected_calibration_error,
    fit_temperature,
    get_temperature,
    log_softmax,
    nll,
    output_layers,
    set_temperature,
)
from imgclf.exceptions import ModelFileError


def _softmax(z):
    return np.exp(log_softmax(np.asarray(z, np.float64)))


def _logits(clf, X):
    keras = get_keras()
    net = keras.Model(clf.model_.inputs[0], clf.model_.get_layer("classifier").output)
    return np.asarray(net(clf.network_input(X), training=False), np.float64)


# ----------------------------------------------------------------- fitting T
@pytest.mark.parametrize("true_t", [0.5, 1.0, 2.5])
def test_fit_temperature_recovers_the_temperature_labels_were_drawn_at(true_t):
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 3, (4000, 5))
    p = _softmax(logits / true_t)
    y = np.array([rng.choice(5, p=row) for row in p])
    assert fit_temperature(logits, y) == pytest.approx(true_t, rel=0.1)


def test_fit_temperature_uses_sample_weights():
    rng = np.random.default_rng(1)
    logits = rng.normal(0, 3, (3000, 4))
    hot = np.array([rng.choice(4, p=row) for row in _softmax(logits / 0.5)])
    cold = np.array([rng.choice(4, p=row) for row in _softmax(logits / 3.0)])
    both_logits = np.concatenate([logits, logits])
    both_y = np.concatenate([hot, cold])
    weights = np.r_[np.ones(3000), np.zeros(3000)]
    weighted = fit_temperature(both_logits, both_y, weights)
    assert weighted == pytest.approx(fit_temperature(logits, hot), rel=1e-3)
    assert weighted != pytest.approx(fit_temperature(both_logits, both_y), rel=0.1)
    assert fit_temperature(logits, hot, np.zeros(3000)) == 1.0


def test_fit_temperature_never_worsens_the_likelihood_and_survives_bad_logits():
    rng = np.random.default_rng(2)
    logits = rng.normal(0, 1, (50, 3))
    y = rng.integers(0, 3, 50)
    t = fit_temperature(logits, y)
    assert nll(logits, y, t) <= nll(logits, y, 1.0)
    logits[0, 0] = np.nan
    assert fit_temperature(logits, y) == 1.0


def test_a_holdout_without_mistakes_does_not_tell_the_temperature():
    logits = np.array([[3.0, 0.0], [0.0, 2.0], [1.0, 0.0]])
    y = np.array([0, 1, 0])
    assert nll(logits, y, 0.1) < nll(logits, y, 1.0)  # sharper is always "better"
    assert fit_temperature(logits, y) == 1.0
    # Wide margins: the loss is flat in floating point long before T_MIN, where
    # a bounded search stops (at T ~ 0.08 for margin 5, ~ 0.2 for margin 10).
    rng = np.random.default_rng(0)
    for margin in (5.0, 10.0):
        y = rng.integers(0, 3, 24)
        logits = rng.normal(0, 0.3, (24, 3))
        logits[np.arange(24), y] += margin
        assert fit_temperature(logits, y) == 1.0
        weight = np.ones(24)
        logits[0] = np.roll(logits[0], 1)  # one mistake, weighted 0: still none counted
        weight[0] = 0.0
        assert fit_temperature(logits, y, weight) == 1.0


def test_expected_calibration_error_by_hand():
    # Two bins used: confidence 0.95 (2 images, 1 right) and 0.65 (2 images, both right).
    proba = np.array([[0.95, 0.05], [0.95, 0.05], [0.65, 0.35], [0.35, 0.65]])
    y = np.array([0, 1, 0, 1])
    expected = 0.5 * abs(0.5 - 0.95) + 0.5 * abs(1.0 - 0.65)
    assert expected_calibration_error(proba, y, n_bins=15) == pytest.approx(expected)


def test_the_layer_acts_on_logits_before_a_sigmoid_too():
    keras = get_keras()
    inputs = keras.Input((3,))
    x = inputs
    for layer in output_layers("sigmoid"):
        x = layer(x)
    model = keras.Model(inputs, x)
    set_temperature(model, 2.0)
    z = np.array([[-2.0, 0.5, 4.0]], np.float32)
    np.testing.assert_allclose(np.asarray(model(z)), 1 / (1 + np.exp(-z / 2)), rtol=1e-6)


# ------------------------------------------------------------ in the network
@pytest.fixture(scope="module")
def calibrated(small_digits):
    X, y = small_digits
    clf = CNNClassifier(epochs=2, filters=4, random_state=0).fit(X, y)
    return clf, X, y


def test_fit_sets_a_temperature_that_lowers_the_holdout_loss(calibrated):
    clf, X, y = calibrated
    assert clf.temperature_ != 1.0
    assert get_temperature(clf.model_) == pytest.approx(clf.temperature_)
    logits = _logits(clf, X)
    np.testing.assert_allclose(
        clf.predict_proba(X), _softmax(logits / clf.temperature_), rtol=1e-4, atol=1e-6
    )
    # The argmax is unchanged: predict is what the uncalibrated network gives.
    np.testing.assert_array_equal(clf.predict(X), clf.classes_[logits.argmax(1)])
    y_idx = np.searchsorted(clf.classes_, y)
    assert nll(logits, y_idx, clf.temperature_) < nll(logits, y_idx, 1.0)


def test_calibrate_false_and_no_holdout_leave_temperature_one(small_digits):
    X, y = small_digits[0][:120], small_digits[1][:120]
    for params in ({"calibrate": False}, {"validation_fraction": 0.0}):
        clf = CNNClassifier(epochs=1, filters=4, random_state=0, **params).fit(X, y)
        assert clf.temperature_ == 1.0
        assert get_temperature(clf.model_) == 1.0


def test_training_runs_at_temperature_one_even_on_a_warm_start(small_digits):
    keras = get_keras()
    seen = []

    class Watch(keras.callbacks.Callback):
        def on_train_batch_begin(self, batch, logs=None):
            seen.append(get_temperature(self.model))

    X, y = small_digits
    clf = CNNClassifier(epochs=1, filters=4, random_state=0, callbacks=[Watch()]).fit(X, y)
    first = clf.temperature_
    assert first != 1.0
    clf.set_params(warm_start=True).fit(X, y)
    assert set(seen) == {1.0}
    assert clf.temperature_ != 1.0


def test_tta_and_grad_cam_carry_the_temperature(calibrated):
    from imgclf.explain import grad_cam

    clf, X, _ = calibrated
    maps, proba = grad_cam(clf, X[:5])
    np.testing.assert_allclose(proba, clf.predict_proba(X[:5]), rtol=1e-4, atol=1e-6)
    # Grad-CAM explains the scores before the softmax: dividing them by T
    # scales every gradient alike, and the maps (each scaled to its peak) stay.
    set_temperature(clf.model_, 1.0)
    try:
        plain_maps, _ = grad_cam(clf, X[:5])
    finally:
        set_temperature(clf.model_, clf.temperature_)
    np.testing.assert_allclose(maps, plain_maps, atol=1e-4)
    clf.set_params(tta=3)
    try:
        scaled = clf.predict_proba(X[:10])
        set_temperature(clf.model_, 1.0)
        plain = clf.predict_proba(X[:10])
    finally:
        set_temperature(clf.model_, clf.temperature_)
        clf.set_params(tta=0)
    assert np.abs(scaled - plain).max() > 1e-3
    np.testing.assert_allclose(scaled.sum(1), 1, rtol=1e-5)


def test_save_load_and_pickle_keep_the_temperature(calibrated, tmp_path):
    clf, X, _ = calibrated
    clf.save(tmp_path / "m.imgclf")
    for other in (load(tmp_path / "m.imgclf"), pickle.loads(pickle.dumps(clf))):
        assert other.temperature_ == clf.temperature_
        assert get_temperature(other.model_) == pytest.approx(clf.temperature_)
        np.testing.assert_allclose(other.predict_proba(X[:10]), clf.predict_proba(X[:10]))


def test_a_temperature_that_disagrees_with_the_network_is_refused(calibrated, tmp_path):
    clf, _, _ = calibrated
    original = clf.temperature_
    clf.temperature_ = original * 2
    try:
        clf.save(tmp_path / "m.imgclf")
    finally:
        clf.temperature_ = original
    with pytest.raises(ModelFileError, match="temperature_"):
        load(tmp_path / "m.imgclf")


def test_a_model_saved_before_temperature_existed_loads(calibrated, tmp_path):
    """A network ending in Dense(activation="softmax"), no temperature_ in the file."""
    keras = get_keras()
    clf, X, y = calibrated
    copy = pickle.loads(pickle.dumps(clf))
    dense = copy.model_.get_layer("classifier")
    old_head = keras.layers.Dense(dense.units, activation="softmax", name="classifier")
    outputs = old_head(copy.model_.get_layer("dropout").output)
    old_head.set_weights(dense.get_weights())
    copy.model_ = keras.Model(copy.model_.inputs[0], outputs)
    del copy.temperature_
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        copy.save(tmp_path / "old.imgclf")
        old = load(tmp_path / "old.imgclf")
    assert not [w for w in caught if issubclass(w.category, UserWarning)]
    assert old.temperature_ == 1.0
    np.testing.assert_allclose(
        old.predict_proba(X[:10]), _softmax(_logits(clf, X[:10])), rtol=1e-4, atol=1e-6
    )
    # A warm start on it trains and keeps T = 1 (nowhere to put another).
    old.set_params(warm_start=True, epochs=1).fit(X, y)
    assert old.temperature_ == 1.0


@pytest.mark.slow
def test_saved_model_export_carries_the_temperature(calibrated, tmp_path):
    tf = pytest.importorskip("tensorflow")
    clf, X, _ = calibrated
    out = clf.export(tmp_path / "sm")
    serve = tf.saved_model.load(out).signatures["serving_default"]
    got = serve(image=tf.constant(X[:8]))["probabilities"].numpy()
    np.testing.assert_allclose(got, clf.predict_proba(X[:8]), rtol=1e-4, atol=1e-5)
    assert np.abs(got - _softmax(_logits(clf, X[:8]))).max() > 1e-3


# ------------------------------------------------------------------ transfer
def test_transfer_head_on_cached_features_carries_the_temperature(
    tiny_backbone, small_digits, tmp_path, monkeypatch
):
    from imgclf._base import BaseImageClassifier

    X, y = small_digits[0][:200], small_digits[1][:200]  # 20 held out: 6 a class or more
    clf = TransferClassifier(
        backbone=tiny_backbone,
        epochs=5,
        learning_rate=1e-2,
        fine_tune_epochs=0,
        batch_size=32,
        random_state=0,
        memory=str(tmp_path),
    ).fit(X, y)
    assert clf.temperature_ != 1.0
    full = BaseImageClassifier._proba(clf, clf._check_predict_images(X), clf._tta_views())
    with monkeypatch.context() as m:
        m.setattr(BaseImageClassifier, "_proba", lambda *a: pytest.fail("ran the network"))
        cached = clf.predict_proba(X)
    np.testing.assert_allclose(cached, full, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(full, _softmax(_logits(clf, X) / clf.temperature_), rtol=1e-4)


# ------------------------------------------------------------- scikit-learn
@pytest.mark.slow
def test_works_inside_calibrated_classifier_cv(calibrated, fitted_mobilenet_transfer):
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.frozen import FrozenEstimator

    clf, X, y = calibrated
    cal = CalibratedClassifierCV(FrozenEstimator(clf), method="temperature").fit(X, y)
    proba = cal.predict_proba(X[:10])
    assert proba.shape == (10, len(clf.classes_))
    np.testing.assert_allclose(proba.sum(1), 1, rtol=1e-6)
    np.testing.assert_array_equal(cal.predict(X), clf.predict(X))

    transfer, images = fitted_mobilenet_transfer
    labels = np.repeat(["a", "b"], 20)  # the fixture's labels
    cal = CalibratedClassifierCV(FrozenEstimator(transfer), method="temperature")
    cal.fit(images, labels)
    assert cal.predict_proba(images[:4]).shape == (4, 2)


def test_transfer_calibrates_from_the_frozen_stage_features(
    tiny_backbone, small_digits, monkeypatch
):
    # The frozen stage computed the hold-out's features: the temperature is
    # fitted from them (only the head runs), and equals the one the whole
    # network's logits give. Once fine-tuning changed the backbone, the
    # network runs.
    from imgclf._base import BaseImageClassifier

    X, y = small_digits[0][:200], small_digits[1][:200]
    params = dict(backbone=tiny_backbone, epochs=5, learning_rate=1e-2, batch_size=32)
    whole = []

    def counted(self, data):
        whole.append(len(data.val))
        return network_logits(self, data)

    network_logits = BaseImageClassifier._holdout_logits
    monkeypatch.setattr(BaseImageClassifier, "_holdout_logits", counted)
    clf = TransferClassifier(fine_tune_epochs=0, random_state=0, **params).fit(X, y)
    assert whole == [] and clf.temperature_ != 1.0
    assert "_holdout_features" not in clf.__dict__
    monkeypatch.setattr(TransferClassifier, "_holdout_logits", counted)
    reference = TransferClassifier(fine_tune_epochs=0, random_state=0, **params).fit(X, y)
    assert whole == [20]
    np.testing.assert_allclose(clf.temperature_, reference.temperature_, rtol=1e-4)
    monkeypatch.undo()
    monkeypatch.setattr(BaseImageClassifier, "_holdout_logits", counted)
    tuned = TransferClassifier(
        fine_tune_epochs=2, fine_tune_layers=1.0, early_stopping=False, random_state=0, **params
    ).fit(X, y)
    assert tuned.history_["stage"][-1] == 2.0 and whole == [20, 20]
