"""One rule for the epoch whose weights a fit keeps (``best_epoch_``), read by
early stopping's restore, the fit's record, the transfer stage choice, the
plot and the command line. Tiny networks on 8x8 digits."""

import numpy as np
import pytest

from imgclf import CNNClassifier, TransferClassifier, plot
from imgclf._backend import get_keras, resolve_seed
from imgclf._fitrun import FitRun
from imgclf._training import EARLY_STOPPING_MIN_DELTA, best_epoch, early_stopping_start
from imgclf._validation import Images

# The raw minimum (0.1) comes before the first watched epoch (2), and 0.6995
# improves on 0.7 by less than min_delta: the kept epoch is 3.
LOSSES = [0.1, 0.5, 0.9, 0.7, 0.8, 0.6995]


def test_rule_ignores_epochs_before_the_watch_and_tiny_gains():
    assert best_epoch(LOSSES, start=2) == 3
    assert best_epoch(LOSSES, start=0) == 0
    assert best_epoch(LOSSES, start=2, keep_best=False) == 5
    assert best_epoch(LOSSES[:2], start=2) == 1  # nothing watched yet: the last epoch
    assert best_epoch([1.0, 0.9995, 0.999], min_delta=1e-3) == 0
    assert best_epoch([1.0, 0.9995, 0.998], min_delta=1e-3) == 2


@pytest.mark.parametrize("start", [0, 1, 3])
def test_rule_is_keras_early_stoppings(start):
    # Keras's EarlyStopping decides when to stop with the same comparison:
    # the epoch it would restore is the rule's, on random loss sequences.
    keras = get_keras()
    rng = np.random.default_rng(start)

    class Net:
        stop_training = False

        def get_weights(self):
            return []

    for _ in range(20):
        values = (1 + np.cumsum(rng.normal(0, 0.002, 12))).tolist()
        stopper = keras.callbacks.EarlyStopping(
            patience=100,
            min_delta=EARLY_STOPPING_MIN_DELTA,
            restore_best_weights=True,
            start_from_epoch=start,
        )
        stopper.set_model(Net())
        stopper.on_train_begin()
        for epoch, value in enumerate(values):
            stopper.on_epoch_end(epoch, {"val_loss": value})
        assert best_epoch(values, start=start) == stopper.best_epoch


def _faked(history, best):
    clf = CNNClassifier()
    clf.history_, clf.best_epoch_, clf.model_ = history, best, object()
    return clf


def test_plot_marks_the_kept_epoch_not_the_raw_minimum():
    history = {"loss": [1.0] * 6, "val_loss": LOSSES}
    fig = plot.plot_learning_curves(_faked(history, best_epoch(LOSSES, start=2)))
    (star,) = [line for line in fig.axes[0].lines if line.get_marker() == "*"]
    assert star.get_xdata().tolist() == [4] and star.get_ydata().tolist() == [0.7]
    # A dict does not say which weights were kept: no star unless told.
    fig = plot.plot_learning_curves(history)
    assert not [line for line in fig.axes[0].lines if line.get_marker() == "*"]
    fig = plot.plot_learning_curves(history, best_epoch=5)
    (star,) = [line for line in fig.axes[0].lines if line.get_marker() == "*"]
    assert star.get_xdata().tolist() == [6]


def test_cli_reports_the_kept_epoch(tmp_path, monkeypatch, capsys):
    from test_cli import _write_images

    import imgclf.cnn
    from imgclf.cli import main

    original = CNNClassifier.fit

    def fit(self, X, y):
        original(self.set_params(epochs=1, filters=2), X, y)
        self.history_ = {"loss": [1.0] * 6, "val_loss": LOSSES, "val_accuracy": [0.9] + [0.5] * 5}
        self.best_epoch_ = 3
        return self

    monkeypatch.setattr(imgclf.cnn.CNNClassifier, "fit", fit)
    data = _write_images(tmp_path / "data")
    argv = ["train", str(data), "--image-size", "12", "--out", str(tmp_path / "m.imgclf")]
    assert main(argv + ["--quiet", "--validation-fraction", "0.5"]) == 0
    out = capsys.readouterr().out
    assert "validation accuracy 0.500 (epoch 4, the weights kept)" in out


@pytest.fixture(scope="module")
def one_cycle_transfer(digits, tiny_backbone):
    _, images, y = digits
    keep = np.flatnonzero(y < 3)[:300]
    X = np.round(images[keep] / 16 * 255).astype(np.uint8)[..., None]
    clf = TransferClassifier(
        backbone=tiny_backbone,
        image_size=8,
        epochs=6,
        fine_tune_epochs=3,
        fine_tune_layers=1.0,
        lr_schedule="one_cycle",
        learning_rate=0.01,
        validation_fraction=0.3,
        calibrate=False,  # the kept weights' probabilities, not a temperature on them
        random_state=0,
    )
    return clf.fit(X, y[keep]), X, y[keep]


@pytest.mark.slow
def test_transfer_keeps_the_weights_of_best_epoch_(one_cycle_transfer):
    clf, X, y = one_cycle_transfer
    history = clf.history_
    stage = np.asarray(history["stage"])
    frozen = [v for v, s in zip(history["val_loss"], stage, strict=True) if s == 1]
    tuned = [v for v, s in zip(history["val_loss"], stage, strict=True) if s == 2]
    kept_frozen = best_epoch(frozen, start=early_stopping_start("one_cycle", 6))
    kept_tuned = len(frozen) + best_epoch(tuned, start=early_stopping_start("one_cycle", 3))
    assert clf.best_epoch_ in (kept_frozen, kept_tuned)
    # The network holds that epoch's weights: its hold-out loss, recomputed.
    y_enc = np.searchsorted(clf.classes_, y)
    _, val = clf._split(y_enc, resolve_seed(0))
    loss = clf.model_.evaluate(X[val], y_enc[val], verbose=0, return_dict=True)["loss"]
    assert loss == pytest.approx(history["val_loss"][clf.best_epoch_], rel=1e-4)


@pytest.mark.slow
def test_transfer_stage_choice_uses_the_rule(one_cycle_transfer, monkeypatch):
    # The frozen stage's raw minimum (0.1) comes before early stopping watches:
    # its kept epoch has 0.7, which fine-tuning's 0.6 beats.
    clf, X, y = one_cycle_transfer
    stages = iter(
        [
            {"loss": [1.0] * 6, "val_loss": LOSSES},
            {"loss": [1.0] * 3, "val_loss": [0.8, 0.6, 0.65]},
        ]
    )

    def fake_stage(self, model, data, run, *, epochs, learning_rate):
        bias = model.get_layer("classifier").bias
        bias.assign(bias.numpy() + 1.0)  # what a stage's training changes
        return dict(next(stages))

    monkeypatch.setattr(TransferClassifier, "_run_stage", fake_stage)
    bias_before = clf.model_.get_layer("classifier").bias.numpy()
    y_enc = np.searchsorted(clf.classes_, y)
    train, val = clf._split(y_enc, resolve_seed(0))
    samples = clf._training_data(Images(array=X), y_enc, train, val, 0)
    history, kept = clf._train(clf.model_, samples, FitRun(keep_best=True, min_delta=1e-3))
    assert kept == 6 + 1  # fine-tune's epoch 1, after the frozen stage's 6
    # Fine-tuning's weights stand (two stages' changes to the bias).
    after = clf.model_.get_layer("classifier").bias.numpy()
    np.testing.assert_allclose(after, bias_before + 2.0)
