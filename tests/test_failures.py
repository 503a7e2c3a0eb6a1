"""What a failed, interrupted or diverging fit leaves behind, and input errors
in the library's words. Tiny networks on 8x8 digits: each fit takes a second."""

import math
import warnings

import numpy as np
import pytest

from imgclf import CNNClassifier, TransferClassifier
from imgclf._backend import get_keras
from imgclf._fitrun import FitRun
from imgclf.exceptions import InputError, TrainingError

TINY = dict(filters=4, batch_size=32, random_state=0, lr_schedule=None)


def _stopper(*, epoch: int, batch: int = 0, stage: int = 0, exc=KeyboardInterrupt, record=None):
    """A callback raising ``exc`` at ``batch`` of ``epoch`` of training stage
    ``stage`` (the ``stage``-th ``model.fit`` call; all 0-based); with
    ``record`` (a list), it appends ``(weights, logs)`` at every epoch's end."""
    keras = get_keras()

    class Stop(keras.callbacks.Callback):
        stages = -1

        def on_train_begin(self, logs=None):
            self.stages += 1

        def on_epoch_begin(self, e, logs=None):
            self.epoch = e

        def on_train_batch_begin(self, b, logs=None):
            if (self.stages, self.epoch, b) == (stage, epoch, batch):
                raise exc("stopped by the test")

        def on_epoch_end(self, e, logs=None):
            if record is not None:
                record.append((self.model.get_weights(), dict(logs)))

    return Stop()


def _same_weights(a, b) -> bool:
    return len(a) == len(b) and all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))


@pytest.fixture(scope="module")
def ten_and_five(digits):
    _, images, y = digits
    X = np.round(images[:400] / 16 * 255).astype(np.uint8)[..., None]
    y = y[:400]
    five = y < 5
    return X, y, X[five], y[five]


@pytest.fixture(scope="module")
def fitted_ten(ten_and_five):
    X, y, _, _ = ten_and_five
    return CNNClassifier(epochs=2, **TINY).fit(X, y)


# ------------------------------------------------------- failure before epoch 1
def test_failure_before_first_epoch_keeps_previous_state(ten_and_five, fitted_ten):
    X, y, X5, y5 = ten_and_five
    clf = fitted_ten
    proba = clf.predict_proba(X[:50])
    history = {k: list(v) for k, v in clf.history_.items()}
    model = clf.model_
    clf.set_params(callbacks=[_stopper(epoch=0, batch=1)])
    try:
        with pytest.raises(KeyboardInterrupt):
            clf.fit(X5, y5)
    finally:
        clf.set_params(callbacks=None)
    assert clf.classes_.tolist() == list(range(10))
    assert clf.history_ == history
    assert clf.model_ is model
    assert not hasattr(clf, "interrupted_") or clf.interrupted_ is False
    np.testing.assert_array_equal(clf.predict_proba(X[:50]), proba)


def test_invalid_y_on_refit_keeps_previous_state(digits):
    X, _, y = digits
    clf = CNNClassifier(epochs=1, **TINY).fit(X[:200], y[:200])
    proba = clf.predict_proba(X[:20])
    with pytest.raises(InputError):
        clf.fit(X[:200, :16], [None] * 200)  # 16 features: n_features_in_ must not change
    assert clf.n_features_in_ == 64
    np.testing.assert_array_equal(clf.predict_proba(X[:20]), proba)


# -------------------------------------------------------------- interrupts
@pytest.mark.slow
@pytest.mark.parametrize("exc", [KeyboardInterrupt, RuntimeError])
def test_interrupt_keeps_new_network_with_best_weights(ten_and_five, fitted_ten, exc):
    X, y, X5, y5 = ten_and_five
    record = []
    # A 20 % hold-out: 8 images per class (below 5 per class none would be made).
    clf = CNNClassifier(epochs=10, learning_rate=0.03, validation_fraction=0.2, **TINY)
    clf.fit(X, y)  # a previous fit, to be replaced
    clf.set_params(callbacks=[_stopper(epoch=3, batch=2, exc=exc, record=record)])
    with pytest.warns(UserWarning, match=f"stopped by {exc.__name__} after 3 epoch"):
        with pytest.raises(exc):
            clf.fit(X5, y5)
    assert clf.interrupted_ is True
    assert clf.classes_.tolist() == [0, 1, 2, 3, 4]
    assert len(clf.history_["loss"]) == 3 and "stage" not in clf.history_
    val = [logs["val_loss"] for _, logs in record]
    assert clf.history_["val_loss"] == pytest.approx(val)
    # The weights of the best epoch so far, not those reached mid-epoch 4.
    assert _same_weights(clf.model_.get_weights(), record[int(np.argmin(val))][0])
    assert set(clf.predict(X5[:40])) <= set(range(5))
    clf.set_params(callbacks=None)
    clf.fit(X5, y5)
    assert clf.interrupted_ is False


def test_kept_weights_follow_early_stopping_that_starts_late():
    # Under one-cycle, early stopping watches only from the epoch the rate has
    # halved (start_from_epoch). The weights a stopped fit keeps must be those
    # Keras's EarlyStopping would restore: the last epoch's before it starts,
    # then the best of the epochs it watched, even if an earlier one was better.
    keras = get_keras()

    class Net:  # stands for the model: its "weights" are the epoch's number
        stop_training = False
        epoch = 0

        def get_weights(self):
            return [np.array(self.epoch)]

    net = Net()
    stopper = keras.callbacks.EarlyStopping(
        patience=10, min_delta=1e-3, restore_best_weights=True, start_from_epoch=2
    )
    stopper.set_model(net)
    stopper.on_train_begin()
    run = FitRun(keep_best=True, min_delta=1e-3)
    run.start_stage(net, "val_loss", [stopper])
    kept, restored = [], []
    for epoch, loss in enumerate([0.1, 0.5, 0.9, 0.7, 0.8, 0.6995]):
        net.epoch = epoch
        stopper.on_epoch_end(epoch, {"val_loss": loss})
        run.epoch_ended(net, "val_loss", {"val_loss": loss}, [])
        kept.append(int(run.kept[1][0]))
        if stopper.best_weights is not None:
            restored.append(int(stopper.best_weights[0]))
    # 0.6995 is no improvement on 0.7 by min_delta.
    assert kept == [0, 1, 2, 3, 3, 3]
    assert restored == kept[2:]
    assert run.best_epoch == 4  # 1-based, as the interrupt warning counts


def test_warm_start_interrupt_extends_history(ten_and_five):
    _, _, X5, y5 = ten_and_five
    clf = CNNClassifier(epochs=2, warm_start=True, early_stopping=False, **TINY).fit(X5, y5)
    record = []
    clf.set_params(callbacks=[_stopper(epoch=1, batch=1, record=record)])
    with pytest.warns(UserWarning, match="last completed epoch"):
        with pytest.raises(KeyboardInterrupt):
            clf.fit(X5, y5)
    assert len(clf.history_["loss"]) == 3 and clf.interrupted_
    assert _same_weights(clf.model_.get_weights(), record[-1][0])


@pytest.mark.slow
def test_warm_start_failure_before_first_epoch_restores_weights(ten_and_five):
    _, _, X5, y5 = ten_and_five
    clf = CNNClassifier(epochs=1, warm_start=True, **TINY).fit(X5, y5)
    weights = clf.model_.get_weights()
    clf.set_params(callbacks=[_stopper(epoch=0, batch=2)])
    with pytest.raises(KeyboardInterrupt):
        clf.fit(X5, y5)  # two batches trained in place, then undone
    assert _same_weights(clf.model_.get_weights(), weights)
    assert len(clf.history_["loss"]) == 1


def _tiny_backbone():
    keras = get_keras()
    inputs = keras.Input((8, 8, 1))
    x = keras.layers.Conv2D(4, 3, activation="relu", name="conv")(inputs)
    return keras.Model(inputs, x)


def test_transfer_interrupt_in_fine_tune_stage(ten_and_five):
    _, _, X5, y5 = ten_and_five
    clf = TransferClassifier(
        backbone=_tiny_backbone(),
        epochs=2,
        fine_tune_epochs=3,
        fine_tune_layers=1.0,
        batch_size=32,
        random_state=0,
    )
    # The frozen stage (fast path: the head alone) runs 2 epochs; stop in
    # fine-tuning's second epoch.
    clf.set_params(callbacks=[_stopper(stage=1, epoch=1, batch=1)])
    with pytest.warns(UserWarning, match="after 3 epoch"):
        with pytest.raises(KeyboardInterrupt):
            clf.fit(X5, y5)
    assert clf.history_["stage"] == [1.0, 1.0, 2.0]
    assert clf.interrupted_ and clf.classes_.tolist() == [0, 1, 2, 3, 4]
    assert clf.predict_proba(X5[:10]).shape == (10, 5)


# -------------------------------------------------------------- divergence
def _poison(epoch: int):
    """A callback making the weights NaN during ``epoch``: the loss follows."""
    keras = get_keras()

    class Poison(keras.callbacks.Callback):
        def on_epoch_begin(self, e, logs=None):
            self._epoch = e

        def on_train_batch_end(self, b, logs=None):
            if self._epoch == epoch and b == 0:
                self.model.set_weights([w * np.nan for w in self.model.get_weights()])

    return Poison()


def test_non_finite_loss_stops_with_error_and_keeps_previous_state(ten_and_five, fitted_ten):
    X, _, X5, y5 = ten_and_five
    clf = fitted_ten
    proba = clf.predict_proba(X[:50])
    clf.set_params(callbacks=[_poison(epoch=1)], epochs=5)
    try:
        with pytest.raises(TrainingError, match="epoch 2.*learning_rate"):
            clf.fit(X5, y5)
    finally:
        clf.set_params(callbacks=None, epochs=2)
    assert clf.classes_.tolist() == list(range(10))
    np.testing.assert_array_equal(clf.predict_proba(X[:50]), proba)


def test_huge_learning_rate_warns_that_training_diverged(ten_and_five):
    X, y, _, _ = ten_and_five
    clf = CNNClassifier(epochs=3, learning_rate=1e4, **TINY)
    with pytest.warns(UserWarning, match=r"diverged.*no better than guessing among 10"):
        clf.fit(X, y)
    assert clf.interrupted_ is False


def test_ordinary_fit_does_not_warn(ten_and_five):
    X, y, _, _ = ten_and_five
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        clf = CNNClassifier(epochs=1, **TINY).fit(X, y)
    assert clf.interrupted_ is False
    # 400 images of 10 classes: too few for a hold-out, early stopping watches "loss".
    assert min(clf.history_["loss"]) < 3 * math.log(10)


# ------------------------------------------------------------ input errors
def test_refuses_values_beyond_float32_naming_the_sample(digits):
    X, _, y = digits
    X = X[:60].copy()
    X[7, 3] = 1e39
    with pytest.raises(InputError, match=r"beyond what float32 holds.*sample 7"):
        CNNClassifier(epochs=1, **TINY).fit(X, y[:60])


def test_predict_far_outside_training_range_warns_once(digits):
    X, _, y = digits
    clf = CNNClassifier(epochs=1, **TINY).fit(X[:200], y[:200])
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        clf.predict(X[:20] * 1.5)  # a little brighter: no warning
    with pytest.warns(UserWarning, match="far outside the range") as record:
        clf.predict(X[:200] * 1e30)
    assert len([w for w in record if "far outside" in str(w.message)]) == 1


def test_list_mixing_paths_and_arrays(tmp_path):
    path = str(tmp_path / "a.png")
    with pytest.raises(
        InputError, match=r"mixes image paths.*item 1 is an array of shape \(8, 8\)"
    ):
        CNNClassifier().fit([path, np.zeros((8, 8))], [0, 1])


@pytest.mark.parametrize("empty", [[], (), np.array([])])
def test_empty_X(empty):
    with pytest.raises(InputError, match=r"empty X \(0 images\)"):
        CNNClassifier().fit(empty, [])


@pytest.mark.parametrize("missing", [None, np.nan])
def test_missing_labels_are_named(digits, missing):
    X, _, _ = digits
    y = np.array(["a", "b"] * 10, dtype=object)
    y[[3, 11]] = missing
    with pytest.raises(InputError, match=r"2 missing label\(s\).*position\(s\) 3, 11"):
        CNNClassifier().fit(X[:20], y)


def _pngs(folder, n, seed):
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n):
        path = folder / f"{i}.png"
        Image.fromarray(rng.integers(0, 255, (8, 8), dtype=np.uint8)).save(path)
        paths.append(str(path))
    return paths


def test_missing_file_that_leaves_one_class_is_named(tmp_path):
    cats = _pngs(tmp_path / "cat", 4, 0)
    gone = str(tmp_path / "dog" / "gone.png")
    with pytest.warns(UserWarning, match="gone.png"):  # the screen's warning, as for any bad file
        with pytest.raises(InputError, match=r"at least 2 classes(.|\n)*gone.png.*does not exist"):
            CNNClassifier(epochs=1, **TINY).fit([*cats, gone], ["cat"] * 4 + ["dog"])
    with pytest.raises(InputError, match="gone.png"):
        CNNClassifier(epochs=1, on_bad_file="error", **TINY).fit(
            [*cats, gone], ["cat"] * 4 + ["dog"]
        )


@pytest.mark.slow
def test_missing_files_that_empty_a_class_warn(tmp_path):
    cats, dogs = _pngs(tmp_path / "cat", 4, 0), _pngs(tmp_path / "dog", 4, 1)
    gone = str(tmp_path / "fox" / "gone.png")
    with pytest.warns(UserWarning) as record:
        clf = CNNClassifier(epochs=1, **TINY).fit(
            [*cats, *dogs, gone], ["cat"] * 4 + ["dog"] * 4 + ["fox"]
        )
    messages = [str(w.message) for w in record]
    assert any("left out 1 of 9" in m for m in messages)  # the screen's warning
    assert any("classes ['fox'] have no usable image" in m and "gone.png" in m for m in messages)
    assert clf.classes_.tolist() == ["cat", "dog"]


# ------------------------------------------------------------- checkpoints
@pytest.mark.slow
def test_checkpoint_resumes_an_interrupted_fit(ten_and_five, tmp_path):
    _, _, X5, y5 = ten_and_five
    path = tmp_path / "run.ckpt"
    params = dict(epochs=4, early_stopping=False, checkpoint=path, **TINY)
    whole = CNNClassifier(**{**params, "checkpoint": None}).fit(X5, y5)
    clf = CNNClassifier(**params, callbacks=[_stopper(epoch=2, batch=1)])
    with pytest.warns(UserWarning, match="after 2 epoch"), pytest.raises(KeyboardInterrupt):
        clf.fit(X5, y5)
    assert path.exists()
    first = clf.history_

    again = CNNClassifier(**params).fit(X5, y5)  # a new process would do the same
    assert len(again.history_["loss"]) == len(whole.history_["loss"]) == 4
    assert again.history_["loss"][:2] == first["loss"]
    assert again.interrupted_ is False and not path.exists()


def test_checkpoint_for_other_parameters_or_data_starts_afresh(ten_and_five, tmp_path):
    _, _, X5, y5 = ten_and_five
    path = tmp_path / "run.ckpt"
    params = dict(epochs=3, early_stopping=False, checkpoint=path, **TINY)
    with pytest.warns(UserWarning), pytest.raises(KeyboardInterrupt):
        CNNClassifier(**params, callbacks=[_stopper(epoch=1, batch=1)]).fit(X5, y5)
    with pytest.warns(UserWarning, match="other data") as record:
        clf = CNNClassifier(**params).fit(X5[:-1], y5[:-1])
    assert len(clf.history_["loss"]) == 3 and len(record) == 1
    path.write_bytes(b"not a checkpoint")
    with pytest.warns(UserWarning, match="cannot be resumed from: it is not a zip archive"):
        CNNClassifier(**{**params, "epochs": 1}).fit(X5, y5)


def test_stateful_callbacks_are_recognised_by_class_not_by_name():
    """Early stopping's and the plateau schedule's state is checkpointed for
    those callbacks and their subclasses, under the Keras class's name; a
    callback merely named like one has none."""
    from imgclf._fitrun import _stateful_kind

    keras = get_keras()

    class Patient(keras.callbacks.EarlyStopping):
        pass

    class ReduceLROnPlateau(keras.callbacks.Callback):
        pass

    assert _stateful_kind(Patient()) == "EarlyStopping"
    assert _stateful_kind(keras.callbacks.ReduceLROnPlateau()) == "ReduceLROnPlateau"
    assert _stateful_kind(ReduceLROnPlateau()) is None
    assert _stateful_kind(keras.callbacks.History()) is None
