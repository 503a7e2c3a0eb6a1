"""CNNClassifier: fitting, predicting, inputs, parameters and errors."""

import numpy as np
import pytest
from sklearn.exceptions import NotFittedError

from imgclf import CNNClassifier
from imgclf.exceptions import InputError

FAST = dict(epochs=2, batch_size=32, filters=8, random_state=0)


@pytest.fixture(scope="module")
def fitted(small_digits):
    """Fitted on the first 240 of the 300 images; the last 60 are never seen."""
    X, y = small_digits
    labels = np.array(["zero", "one", "two"])[y]
    return (
        CNNClassifier(epochs=8, batch_size=32, filters=8, random_state=0).fit(
            X[:240], labels[:240]
        ),
        X,
        labels,
    )


def test_predict_proba_and_labels(fitted):
    clf, X, y = fitted
    proba = clf.predict_proba(X[:20])
    assert proba.shape == (20, 3)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-5)
    assert list(clf.classes_) == ["one", "two", "zero"]
    pred = clf.predict(X[:20])
    assert pred.dtype == clf.classes_.dtype
    np.testing.assert_array_equal(pred, clf.classes_[proba.argmax(axis=1)])


def test_learns_the_task(fitted):
    clf, X, y = fitted
    # 3 well-separated digit classes: a real network gets far above chance
    # (0.33) on images it was not fitted on.
    assert clf.score(X[240:], y[240:]) > 0.9


def test_history_records_every_epoch(fitted):
    clf, _, _ = fitted
    assert set(clf.history_) == {"loss", "accuracy", "val_loss", "val_accuracy", "learning_rate"}
    lengths = {len(v) for v in clf.history_.values()}
    assert len(lengths) == 1 and 1 <= lengths.pop() <= 8
    assert all(isinstance(v, float) for v in clf.history_["loss"])


def test_fitted_attributes(fitted):
    clf, _, _ = fitted
    assert clf.image_size_ == (8, 8)
    assert clf.n_channels_ == 1
    assert clf.input_range_ == (0.0, 255.0)
    assert not hasattr(clf, "n_features_in_")


@pytest.mark.parametrize("kind", ["int", "bool", "str"])
def test_any_label_type(small_digits, kind):
    X, y = small_digits
    X, y = X[:120], y[:120]
    labels = {"int": y * 10 + 7, "bool": y == 1, "str": np.array(["a", "b", "c"])[y]}[kind]
    clf = CNNClassifier(**FAST).fit(X, labels)
    assert set(clf.predict(X)) <= set(labels.tolist())
    assert clf.classes_.dtype == labels.dtype


def test_input_forms_agree(digits):
    """Flattened 0-16 floats, (n, 8, 8) images and their 0-1 rescaling are one dataset."""
    X, images, y = digits
    X, images, y = X[:200], images[:200], y[:200]
    a = CNNClassifier(**FAST).fit(X, y)
    b = CNNClassifier(**FAST).fit(images, y)
    c = CNNClassifier(**FAST).fit(images[..., None] / 16.0, y)
    assert a.n_features_in_ == 64
    assert a.image_size_ == b.image_size_ == (8, 8)
    assert a.input_range_ == b.input_range_ == (0.0, 16.0)
    assert c.input_range_ == (0.0, 1.0)
    pa = a.predict_proba(X)
    np.testing.assert_allclose(pa, b.predict_proba(images), atol=1e-5)
    np.testing.assert_allclose(pa, c.predict_proba(images / 16.0), atol=1e-4)


def test_image_size_resizes_inputs(small_digits):
    X, y = small_digits
    clf = CNNClassifier(image_size=16, **FAST).fit(X, y)
    assert clf.image_size_ == (16, 16)
    assert clf.model_.input_shape == (None, 16, 16, 1)
    # Any input size is resized to the network's.
    bigger = np.kron(X[:10], np.ones((1, 3, 3, 1), dtype=np.uint8))
    assert clf.predict_proba(bigger).shape == (10, 3)


def test_rgb_model_takes_grayscale(small_digits):
    X, y = small_digits
    rgb = np.repeat(X, 3, axis=-1)
    clf = CNNClassifier(**FAST).fit(rgb, y)
    assert clf.n_channels_ == 3
    np.testing.assert_allclose(clf.predict_proba(X[:10]), clf.predict_proba(rgb[:10]), atol=1e-6)


def test_same_seed_same_predictions(small_digits):
    X, y = small_digits
    p1 = CNNClassifier(**FAST).fit(X, y).predict_proba(X)
    p2 = CNNClassifier(**FAST).fit(X, y).predict_proba(X)
    p3 = CNNClassifier(**{**FAST, "random_state": 1}).fit(X, y).predict_proba(X)
    np.testing.assert_array_equal(p1, p2)
    assert not np.allclose(p1, p3)


def test_fit_leaves_global_random_state_alone(small_digits):
    X, y = small_digits
    np.random.seed(42)
    expected = np.random.rand()
    np.random.seed(42)
    CNNClassifier(**FAST).fit(X[:60], y[:60])
    assert np.random.rand() == expected


@pytest.mark.parametrize("schedule", ["plateau", pytest.param("one_cycle", marks=pytest.mark.slow)])
def test_early_stopping_restores_best_weights(small_digits, schedule):
    import keras

    class Recorder(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            self.weights = []

        def on_epoch_end(self, epoch, logs=None):
            # Trainable weights only: fit ends by recomputing BatchNorm's moving
            # statistics (tests/test_tiny.py), which early stopping restored too.
            self.weights.append([w.numpy().copy() for w in self.model.trainable_weights])

    X, y = small_digits
    rec = Recorder()
    # A learning rate this high makes the validation loss jump around, so the
    # best epoch is usually not the last one.
    clf = CNNClassifier(
        epochs=12,
        patience=3,
        learning_rate=0.05,
        batch_size=16,
        filters=8,
        callbacks=[rec],
        random_state=0,
        lr_schedule=schedule,
    ).fit(X, y)
    ran = len(clf.history_["val_loss"])
    # Keras's rule: an epoch is the new best only if it beats the best by min_delta.
    best, best_loss = 0, np.inf
    for epoch, loss in enumerate(clf.history_["val_loss"]):
        if loss < best_loss - 1e-3:
            best, best_loss = epoch, loss
    assert len(rec.weights) == ran
    for got, want in zip(clf.model_.trainable_weights, rec.weights[best], strict=True):
        np.testing.assert_array_equal(got.numpy(), want)
    if ran < 12:  # stopped early: exactly `patience` epochs after the best one
        assert ran == best + 1 + 3


def test_learning_rate_reduced_on_plateau(small_digits):
    X, y = small_digits
    # A rate this high stalls the loss quickly, so the schedule must step in.
    clf = CNNClassifier(
        epochs=10,
        patience=2,
        learning_rate=0.2,
        lr_schedule="plateau",
        early_stopping=False,
        batch_size=16,
        filters=8,
        random_state=0,
    ).fit(X, y)
    rates = clf.history_["learning_rate"]
    assert rates[0] == pytest.approx(0.2)
    assert min(rates) < 0.2 and all(b <= a for a, b in zip(rates, rates[1:], strict=False))
    assert min(rates) >= 0.2 / 100 - 1e-9
    off = CNNClassifier(lr_schedule=None, **FAST).fit(X, y)
    assert off.history_["learning_rate"] == [pytest.approx(off.learning_rate)] * 2  # constant


def test_no_validation_no_early_stopping(small_digits):
    X, y = small_digits
    clf = CNNClassifier(validation_fraction=0.0, early_stopping=False, **{**FAST, "epochs": 3})
    clf.fit(X, y)
    assert set(clf.history_) == {"loss", "accuracy", "learning_rate"}
    assert len(clf.history_["loss"]) == 3


def test_warm_start_continues(small_digits):
    X, y = small_digits
    clf = CNNClassifier(warm_start=True, early_stopping=False, **FAST).fit(X, y)
    model = clf.model_
    before = [w.copy() for w in model.get_weights()]
    clf.fit(X, y)
    assert clf.model_ is model
    assert len(clf.history_["loss"]) == 4
    assert any(not np.array_equal(a, b) for a, b in zip(before, model.get_weights(), strict=True))
    with pytest.raises(InputError, match="warm_start"):
        clf.fit(X, np.where(y == 2, 5, y))


def test_cold_start_rebuilds(small_digits):
    X, y = small_digits
    clf = CNNClassifier(**FAST).fit(X, y)
    first = clf.model_
    clf.fit(X, y)
    assert clf.model_ is not first
    assert len(clf.history_["loss"]) == 2


@pytest.mark.parametrize("cw", ["balanced", {0: 1.0, 1: 5.0}])
def test_class_weight(small_digits, cw):
    X, y = small_digits
    clf = CNNClassifier(class_weight=cw, **FAST).fit(X, y)
    assert clf.predict(X).shape == y.shape


@pytest.mark.slow
def test_class_weight_moves_predictions(small_digits):
    X, y = small_digits
    params = {**FAST, "epochs": 6, "early_stopping": False}
    plain = CNNClassifier(**params).fit(X, y)
    heavy = CNNClassifier(class_weight={0: 1000.0, 1: 1e-4, 2: 1e-4}, **params).fit(X, y)
    zeros_plain = np.mean(plain.predict(X) == 0)
    zeros_heavy = np.mean(heavy.predict(X) == 0)
    assert zeros_heavy > zeros_plain + 0.2


def test_class_weight_unknown_label(small_digits):
    X, y = small_digits
    with pytest.raises(InputError, match=r"class_weight names labels \[7\]"):
        CNNClassifier(class_weight={7: 2.0}, **FAST).fit(X, y)


@pytest.mark.parametrize(
    "augment", ["light", "standard", "heavy", {"flip": "horizontal", "zoom": 0.2}]
)
def test_augmentation_only_in_training(small_digits, augment):
    import keras

    from imgclf.augment import augmentation_layers

    X, y = small_digits
    clf = CNNClassifier(augment=augment, **FAST).fit(X, y)
    model = clf.model_
    # The network's layers after input scaling are the augmentation's.
    want = [type(layer) for layer in augmentation_layers(augment)]
    scaled = model.layers.index(model.get_layer("to_unit_range"))
    assert want and [type(x) for x in model.layers[scaled + 1 : scaled + 1 + len(want)]] == want
    unit = keras.Model(model.inputs, model.layers[scaled].output)
    augmented = keras.Model(model.inputs, model.layers[scaled + len(want)].output)
    x = X[:32].astype(np.float32)
    # In training the images the network learns from change; at prediction
    # they are the scaled images, and predictions repeat.
    assert not np.allclose(augmented(x, training=True), unit(x), atol=1e-3)
    np.testing.assert_allclose(augmented(x, training=False), unit(x), atol=1e-6)
    np.testing.assert_array_equal(clf.predict_proba(X[:30]), clf.predict_proba(X[:30]))


def test_augment_keras_layers_are_copied(small_digits):
    import keras

    X, y = small_digits
    flip = keras.layers.RandomFlip("horizontal")
    clf = CNNClassifier(augment=[flip], **FAST).fit(X, y)
    assert flip not in clf.model_.layers
    assert any(isinstance(layer, keras.layers.RandomFlip) for layer in clf.model_.layers)


def test_callbacks_are_called(small_digits):
    import keras

    X, y = small_digits
    seen = []
    cb = keras.callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: seen.append(epoch))
    CNNClassifier(callbacks=[cb], early_stopping=False, **FAST).fit(X, y)
    assert seen == [0, 1]


def test_verbose_shows_progress(small_digits, capsys):
    X, y = small_digits
    CNNClassifier(**FAST).fit(X, y)
    assert "Epoch" not in capsys.readouterr().out
    CNNClassifier(verbose=1, **FAST).fit(X, y)
    out = capsys.readouterr().out
    assert "Epoch 1/2" in out and "Epoch 2/2" in out


# ----------------------------------------------------------------- bad input
def test_predict_before_fit():
    with pytest.raises(NotFittedError):
        CNNClassifier().predict(np.zeros((2, 8, 8), dtype=np.uint8))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_pixels(small_digits, bad):
    X, y = small_digits
    X = X.astype(np.float32) / 255
    X[5, 2, 3, 0] = bad
    with pytest.raises(InputError, match=r"NaN or infinite pixel values \(first in sample 5\)"):
        CNNClassifier(**FAST).fit(X, y)


def test_non_finite_at_predict(fitted):
    clf, X, _ = fitted
    Xf = X[:4].astype(np.float32)
    Xf[1, 0, 0, 0] = np.nan
    with pytest.raises(InputError, match="sample 1"):
        clf.predict(Xf)


def test_length_mismatch(small_digits):
    X, y = small_digits
    with pytest.raises(InputError, match="X has 300 samples but y has 299 labels"):
        CNNClassifier(**FAST).fit(X, y[:-1])


def test_single_class(small_digits):
    X, y = small_digits
    with pytest.raises(InputError, match="only one class"):
        CNNClassifier(**FAST).fit(X[:10], np.zeros(10))


def test_y_none(small_digits):
    X, _ = small_digits
    with pytest.raises(InputError, match="requires y"):
        CNNClassifier(**FAST).fit(X, None)


def test_continuous_targets(small_digits):
    X, _ = small_digits
    with pytest.raises(ValueError, match="Unknown label type"):
        CNNClassifier(**FAST).fit(X, np.linspace(0, 1, len(X)))


def test_channel_count_the_model_cannot_take(fitted):
    clf, X, _ = fitted
    rgb = np.repeat(X[:5], 3, axis=-1)
    with pytest.raises(InputError, match="fitted on 1-channel images but X has 3 channels"):
        clf.predict(rgb)


def test_rgba_rejected_with_fix(small_digits):
    X, y = small_digits
    rgba = np.repeat(X, 4, axis=-1)
    with pytest.raises(InputError, match=r"4 channels.*X\[\.\.\., :3\]"):
        CNNClassifier(**FAST).fit(rgba, y)


def test_one_dimensional_numbers(fitted):
    clf, _, _ = fitted
    with pytest.raises(InputError, match="Reshape your data"):
        clf.predict(np.arange(64.0))


def test_wrong_number_of_features(digits):
    X, _, y = digits
    clf = CNNClassifier(**FAST).fit(X[:100], y[:100])
    with pytest.raises(ValueError, match="X has 63 features, but CNNClassifier is expecting 64"):
        clf.predict(X[:5, :63])


def test_invalid_params_listed_once(small_digits):
    X, y = small_digits
    clf = CNNClassifier(epochs=0, learning_rate=-1, validation_fraction=1.5, augment="ligth")
    with pytest.raises(InputError) as err:
        clf.fit(X, y)
    msg = str(err.value)
    # Numbered in the order of the signature.
    assert "1. epochs=0" in msg
    assert "2. learning_rate=-1" in msg
    assert "3. augment='ligth' (did you mean 'light'?)" in msg
    assert "4. validation_fraction=1.5" in msg


def test_init_stores_only_and_set_params_hints():
    clf = CNNClassifier(epochs="many")  # validated in fit, not here
    assert clf.epochs == "many"
    with pytest.raises(ValueError, match="did you mean 'epochs'"):
        clf.set_params(epoch=3)
