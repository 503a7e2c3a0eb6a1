"""The light training loop for in-memory feature vectors (imgclf/_vectorfit.py)."""

from __future__ import annotations

import numpy as np
import pytest

from imgclf._backend import get_keras
from imgclf._vectorfit import fit_vectors, takes_vectors


def _blobs(n, seed, dim=12, classes=3):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, classes, n)
    centres = np.random.default_rng(99).normal(scale=3.0, size=(classes, dim))
    x = (centres[y] + rng.normal(size=(n, dim))).astype("float32")
    return x, y


def _model(dim=12, classes=3, seed=0, dropout=0.2):
    keras = get_keras()
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((dim,))
    x = keras.layers.Dropout(dropout, seed=seed)(inputs)
    outputs = keras.layers.Dense(classes, activation="softmax")(x)
    model = keras.Model(inputs, outputs)
    model.compile(
        optimizer=keras.optimizers.Adam(1e-2),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    return model


def _fit(callbacks=(), seed=0, learning_rate=1e-2, **kwargs):
    x, y = _blobs(150, 1)
    validation = _blobs(60, 2)
    model = _model(seed=seed)
    model.optimizer.learning_rate = learning_rate
    np.random.seed(seed)  # the shuffling's source
    options = dict(batch_size=16, epochs=4, validation_data=validation, callbacks=list(callbacks))
    options.update(kwargs)
    history = fit_vectors(model, x=x, y=y, **options)
    return model, history, validation


def _batch_hook_callback():
    keras = get_keras()

    class Counter(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.batches = 0

        def on_train_batch_begin(self, batch, logs=None):
            self.batches += 1

    return Counter()


def test_learns_and_logs_like_model_fit():
    model, history, (xv, yv) = _fit()
    assert set(history.history) == {"loss", "accuracy", "val_loss", "val_accuracy"}
    assert len(history.history["loss"]) == 4
    assert history.history["val_accuracy"][-1] >= 0.95
    # The last epoch's hold-out figures are the fitted model's.
    loss, accuracy = model.evaluate(xv, yv, verbose=0)
    assert history.history["val_loss"][-1] == pytest.approx(loss, rel=1e-5)
    assert history.history["val_accuracy"][-1] == pytest.approx(accuracy, abs=1e-6)


def test_batch_hooks_take_the_per_batch_path_with_the_same_weights():
    plain, plain_history, _ = _fit()
    counter = _batch_hook_callback()
    hooked, hooked_history, _ = _fit([counter])
    assert counter.batches == 4 * 10  # 150 vectors in batches of 16: 10 a epoch
    for a, b in zip(plain.get_weights(), hooked.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(
        plain_history.history["loss"], hooked_history.history["loss"], rtol=1e-5
    )


def test_class_weight_scales_the_loss():
    # Adam is blind to a constant factor on the gradients, so the weights
    # follow the same path and the logged loss doubles.
    _, plain, _ = _fit()
    _, doubled, _ = _fit(class_weight={0: 2.0, 1: 2.0, 2: 2.0})
    ratio = np.array(doubled.history["loss"]) / np.array(plain.history["loss"])
    np.testing.assert_allclose(ratio, 2.0, rtol=1e-3)
    # ...and a class weighted 0 is not learnt from.
    model, _, (xv, yv) = _fit(class_weight={0: 0.0, 1: 1.0, 2: 1.0}, epochs=6)
    predicted = model.predict(xv, verbose=0).argmax(1)
    assert (predicted[yv == 0] == 0).mean() < 0.5 < (predicted[yv != 0] == yv[yv != 0]).mean()


def test_stop_training_and_initial_epoch():
    keras = get_keras()

    class StopAtTwo(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 2:
                self.model.stop_training = True

    _, history, _ = _fit([StopAtTwo()], epochs=10)
    assert history.epoch == [0, 1, 2]
    _, resumed, _ = _fit(initial_epoch=3, epochs=5)
    assert resumed.epoch == [3, 4]


def test_early_stopping_restores_the_best_weights():
    keras = get_keras()
    stopper = keras.callbacks.EarlyStopping(patience=1, restore_best_weights=True)
    # A rate this high makes the hold-out loss jump about: it stops early.
    model, history, (xv, yv) = _fit([stopper], epochs=30, learning_rate=5.0)
    best = int(np.argmin(history.history["val_loss"]))
    assert len(history.history["loss"]) < 30
    loss, _ = model.evaluate(xv, yv, verbose=0)
    assert loss == pytest.approx(history.history["val_loss"][best], rel=1e-5)


def test_verbose_shows_progress(capsys):
    _fit(verbose=1, epochs=1)
    assert "10/10" in capsys.readouterr().out


def test_takes_only_vectors_in_memory():
    from imgclf._trainingdata import TrainingData
    from imgclf._validation import Images

    model = _model()
    x, y = _blobs(20, 0)
    images = Images(array=np.zeros((20, 4, 4, 1), np.uint8))
    data = TrainingData(images, y, np.arange(20), None, 0, 8, dataset=None)
    assert not takes_vectors(model, data)  # images, not vectors
    assert takes_vectors(model, data.with_features(x, None))
    weighted = TrainingData(
        images, y, np.arange(15), np.arange(15, 20), 0, 8, None, sample_weight=np.arange(20.0)
    )
    mapped = weighted.with_features(x[:15], x[15:])
    assert takes_vectors(model, mapped)
    kwargs = mapped.fit_kwargs()
    # The weights travel with the vectors, each part's scaled to average 1.
    np.testing.assert_allclose(kwargs["sample_weight"], np.arange(15) / 7)
    np.testing.assert_allclose(kwargs["validation_data"][2], np.arange(15, 20) / 17)


def test_sample_weight_multiplies_class_weight():
    # Weight 0 for a sample is the same as leaving it out; class_weight multiplies.
    x, y = _blobs(40, 0)
    keep = np.arange(40) % 3 != 0
    options = dict(batch_size=64, epochs=3, shuffle=False)
    a = _model(dropout=0.0)
    fit_vectors(a, x=x, y=y, sample_weight=keep.astype(float), class_weight={0: 2.0}, **options)
    b = _model(dropout=0.0)
    fit_vectors(b, x=x[keep], y=y[keep], class_weight={0: 2.0}, **options)
    for wa, wb in zip(a.get_weights(), b.get_weights(), strict=True):
        np.testing.assert_allclose(wa, wb, rtol=1e-4, atol=1e-6)


def test_transfer_frozen_stage_uses_it(monkeypatch):
    """TransferClassifier's head-on-features stage goes through the loop, with
    the constant-rate callback (no batch hooks, so one traced call an epoch)."""
    import imgclf._stagerun as stagerun
    from imgclf import TransferClassifier

    calls = []

    def spy(model, **kwargs):
        calls.append([type(c).__name__ for c in kwargs["callbacks"]])
        return fit_vectors(model, **kwargs)

    monkeypatch.setattr(stagerun, "fit_vectors", spy)
    rng = np.random.default_rng(0)
    X = rng.random((40, 32, 32, 3), dtype=np.float32)
    y = np.repeat([0, 1], 20)
    X[y == 1, :16] += 0.5
    clf = TransferClassifier(
        backbone="mobilenet_v3_small",
        weights=None,
        epochs=3,
        fine_tune_epochs=0,
        random_state=0,
    ).fit(X, y)
    assert calls == [["ConstantRate", "EarlyStopping", "EpochRecorder"]]
    assert len(clf.history_["loss"]) == 3
    assert clf.history_["learning_rate"] == [pytest.approx(clf.learning_rate)] * 3


@pytest.mark.parametrize("class_weight", [None, {0: 1.0, 1: 3.0, 2: 0.5}])
def test_same_training_as_model_fit_without_shuffling(class_weight):
    """In the same batch order, the loop trains exactly what model.fit does."""
    x, y = _blobs(150, 1)
    validation = _blobs(60, 2)
    options = dict(
        x=x,
        y=y,
        batch_size=16,
        epochs=3,
        shuffle=False,
        validation_data=validation,
        class_weight=class_weight,
        verbose=0,
    )
    ours = _model(dropout=0.3)
    history = fit_vectors(ours, **options)
    keras_model = _model(dropout=0.3)
    expected = keras_model.fit(**options)
    for a, b in zip(ours.get_weights(), keras_model.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
        np.testing.assert_allclose(history.history[key], expected.history[key], rtol=1e-5)
