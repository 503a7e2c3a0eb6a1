"""Learning-rate tools: the ``lr_schedule`` parameter (its curves, per batch,
through checkpoints, two stages, mixed precision and a strategy) and
``lr_find`` (its suggestion, the
estimator it leaves untouched, its errors, its picture)."""

import math
import warnings

import numpy as np
import pytest
from sklearn.model_selection import train_test_split

from imgclf import CNNClassifier, TransferClassifier, _training, lrfind
from imgclf._backend import get_keras, get_tf
from imgclf._training import (
    AUTO_EPOCHS_MAX,
    AUTO_EPOCHS_MIN,
    EARLY_STOPPING_WATCH_RATE,
    ONE_CYCLE_DIV,
    ONE_CYCLE_FINAL_DIV,
    ONE_CYCLE_WARMUP,
    early_stopping_start,
    resolve_epochs,
    scheduled_lr,
    stage_callbacks,
)
from imgclf.exceptions import InputError

TINY = dict(filters=4, batch_size=32, random_state=0, early_stopping=False)
TINY_TRANSFER = dict(batch_size=32, random_state=0, early_stopping=False)


def _rates_seen():
    """A callback recording the optimizer's rate at every batch (user callbacks
    run after the schedule's, so they see the rate the batch trains with)."""
    keras = get_keras()

    class Seen(keras.callbacks.Callback):
        rates: list = []

        def on_train_batch_begin(self, batch, logs=None):
            self.rates.append(float(np.asarray(self.model.optimizer.learning_rate)))

    seen = Seen()
    seen.rates = []
    return seen


# ------------------------------------------------------------ the curves
def test_one_cycle_warms_up_to_the_peak_then_anneals_to_near_zero():
    lr, total = 0.01, 200
    curve = np.array([scheduled_lr("one_cycle", lr, s, total) for s in range(total)])
    peak = int(np.argmax(curve))
    assert curve[0] == pytest.approx(lr / ONE_CYCLE_DIV)
    assert curve[peak] == pytest.approx(lr, rel=1e-3)
    assert abs(peak - ONE_CYCLE_WARMUP * (total - 1)) <= 1
    assert np.all(np.diff(curve[: peak + 1]) >= 0) and np.all(np.diff(curve[peak:]) <= 0)
    assert curve[-1] == pytest.approx(lr / ONE_CYCLE_FINAL_DIV)
    # Past the plan (a batch more than counted) it stays at the end.
    assert scheduled_lr("one_cycle", lr, total + 5, total) == pytest.approx(curve[-1])


def test_cosine_anneals_from_the_rate_to_zero_and_the_rest_are_constant():
    lr, total = 0.01, 50
    curve = np.array([scheduled_lr("cosine", lr, s, total) for s in range(total)])
    assert curve[0] == pytest.approx(lr) and curve[-1] == pytest.approx(0.0, abs=1e-12)
    assert np.all(np.diff(curve) < 0)
    assert curve[total // 2] == pytest.approx(lr / 2, rel=0.05)
    for other in (None, "plateau"):
        assert {scheduled_lr(other, lr, s, total) for s in range(total)} == {lr}


@pytest.mark.parametrize("schedule", ["one_cycle", "cosine", None])
def test_each_batch_trains_at_the_scheduled_rate(small_digits, schedule):
    X, y = small_digits[0][:192], small_digits[1][:192]
    seen = _rates_seen()
    clf = CNNClassifier(
        epochs=3, learning_rate=0.01, lr_schedule=schedule, callbacks=[seen], **TINY
    ).fit(X, y)
    steps = math.ceil((192 - 19) / 32)  # 192 images less a hold-out of 19
    assert len(seen.rates) == 3 * steps
    want = [scheduled_lr(schedule, 0.01, s, 3 * steps) for s in range(3 * steps)]
    np.testing.assert_allclose(seen.rates, want, rtol=1e-5)
    # history_ keeps one rate per epoch: the rate of its last batch.
    np.testing.assert_allclose(clf.history_["learning_rate"], seen.rates[steps - 1 :: steps])
    if schedule is not None:
        assert max(seen.rates) <= 0.01 * (1 + 1e-6)
        assert clf.history_["learning_rate"][-1] < 0.01 / 1000


@pytest.mark.parametrize("schedule", ["one_cycle", "cosine"])
@pytest.mark.parametrize("epochs", [1, 3, 4, 10, 23, 30])
def test_early_stopping_watches_from_the_epoch_the_rate_has_halved(schedule, epochs):
    start = early_stopping_start(schedule, epochs)

    def end_of(epoch):  # the rate of an epoch's last batch, 100 batches an epoch
        return scheduled_lr(schedule, 1.0, (epoch + 1) * 100 - 1, epochs * 100)

    assert 0 <= start < epochs
    assert end_of(start) <= EARLY_STOPPING_WATCH_RATE + 1e-3
    if start > 0:
        assert end_of(start - 1) > EARLY_STOPPING_WATCH_RATE - 1e-3
    # From there on the rate only falls (the warm-up's low rates come before).
    assert all(end_of(e) <= end_of(start) + 1e-9 for e in range(start, epochs))
    (stopper,) = [
        cb
        for cb in stage_callbacks(
            "val_loss",
            learning_rate=1e-3,
            epochs=epochs,
            patience=2,
            early_stopping=True,
            lr_schedule=schedule,
        )
        if type(cb).__name__ == "EarlyStopping"
    ]
    assert stopper.start_from_epoch == start


def test_early_stopping_watches_every_epoch_of_the_other_schedules():
    assert early_stopping_start("one_cycle", 23) == 14  # the figure in the docs
    assert early_stopping_start("one_cycle", 4) == 2
    for schedule in ("plateau", None):
        assert early_stopping_start(schedule, 30) == 0


def test_one_cycle_is_the_cnn_default_and_transfer_keeps_a_constant_rate():
    # Measured against plateau at 1e-3 over 30 epochs: the training guide's
    # "Accuracy per CPU-minute".
    cnn = CNNClassifier()
    assert (cnn.lr_schedule, cnn.learning_rate, cnn.epochs) == ("one_cycle", 3e-3, "auto")
    assert TransferClassifier().lr_schedule is None


def test_auto_epochs_plan_a_fixed_number_of_steps_within_bounds():
    # Fashion-MNIST after the hold-out (54,000 images, batch 128): 422 steps an epoch.
    assert resolve_epochs("auto", 54_000, 128) == 4
    assert resolve_epochs("auto", 1_212, 16) == 21  # digits after the hold-out
    assert resolve_epochs("auto", 50, 16) == AUTO_EPOCHS_MAX  # 4 steps an epoch
    assert resolve_epochs("auto", 10_000_000, 128) == AUTO_EPOCHS_MIN
    assert resolve_epochs(7, 50, 16) == 7  # an integer is kept
    # Within the bounds, the plan is the nearest whole number of epochs.
    for n in (8_000, 20_000, 54_000):
        per_epoch = math.ceil(n / 128)
        planned = per_epoch * resolve_epochs("auto", n, 128)
        assert abs(planned - _training.AUTO_EPOCHS_STEPS) <= per_epoch / 2


def test_fit_resolves_auto_epochs_and_the_cycle_spans_them(small_digits, monkeypatch):
    X, y = small_digits[0][:192], small_digits[1][:192]
    # 173 training images in batches of 32: 6 steps an epoch; 20 steps -> 3 epochs.
    monkeypatch.setattr(_training, "AUTO_EPOCHS_STEPS", 20)
    seen = _rates_seen()
    clf = CNNClassifier(
        epochs="auto", lr_schedule="one_cycle", learning_rate=3e-3, callbacks=[seen], **TINY
    ).fit(X, y)
    assert clf.epochs_ == 3 and len(clf.history_["loss"]) == 3
    want = [scheduled_lr("one_cycle", 3e-3, s, 18) for s in range(18)]
    np.testing.assert_allclose(seen.rates, want, rtol=1e-5)
    assert CNNClassifier(epochs=2, **TINY).fit(X, y).epochs_ == 2
    with pytest.raises(InputError, match="epochs='auto'"):
        TransferClassifier(epochs="auto").fit(X, y)


@pytest.mark.slow
def test_each_transfer_stage_runs_its_own_cycle(small_digits):
    X, y = small_digits[0][:160], small_digits[1][:160]
    keras = get_keras()
    inputs = keras.Input((None, None, 1))
    x = keras.layers.Rescaling(1 / 255)(inputs)  # a backbone receives 0-255 pixels
    own = keras.Model(inputs, keras.layers.Conv2D(4, 3, padding="same", activation="relu")(x))
    clf = TransferClassifier(
        backbone=own,
        weights=None,
        epochs=3,
        fine_tune_epochs=2,
        fine_tune_layers=1.0,
        learning_rate=1e-3,
        fine_tune_learning_rate=2e-4,
        lr_schedule="one_cycle",
        **TINY_TRANSFER,
    ).fit(X, y)
    stages = np.array(clf.history_["stage"])
    rates = np.array(clf.history_["learning_rate"])
    assert list(stages) == [1.0] * 3 + [2.0] * 2
    # Each stage ends its own cycle near 0, from its own peak.
    assert rates[2] == pytest.approx(1e-3 / ONE_CYCLE_FINAL_DIV, rel=1e-3)
    assert rates[4] == pytest.approx(2e-4 / ONE_CYCLE_FINAL_DIV, rel=1e-3)
    assert 2e-4 / ONE_CYCLE_DIV < rates[3] <= 2e-4


@pytest.mark.slow
def test_one_cycle_in_float16_and_under_a_strategy(small_digits):
    X, y = small_digits[0][:96], small_digits[1][:96]
    tf = get_tf()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # float16 without a GPU is slow
        mixed = CNNClassifier(
            epochs=2, precision="mixed_float16", lr_schedule="one_cycle", learning_rate=1e-3, **TINY
        )
        mixed.fit(X, y)
    assert isinstance(mixed.model_.optimizer, get_keras().optimizers.LossScaleOptimizer)
    strategy = tf.distribute.OneDeviceStrategy("/cpu:0")
    spread = CNNClassifier(
        epochs=2, distribute=strategy, lr_schedule="one_cycle", learning_rate=1e-3, **TINY
    )
    spread.fit(X, y)
    for clf in (mixed, spread):
        assert clf.history_["learning_rate"][-1] == pytest.approx(1e-3 / ONE_CYCLE_FINAL_DIV)
        assert clf.history_["learning_rate"][0] > 1e-3 / ONE_CYCLE_DIV


@pytest.mark.slow
def test_a_resumed_fit_picks_the_cycle_up_where_it_was(small_digits, tmp_path):
    X, y = small_digits[0][:192], small_digits[1][:192]
    keras = get_keras()

    class Stop(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            if epoch == 2:
                raise KeyboardInterrupt

    params = dict(epochs=4, lr_schedule="one_cycle", checkpoint=tmp_path / "run.ckpt", **TINY)
    params["learning_rate"] = 1e-3
    whole = CNNClassifier(**{**params, "checkpoint": None}).fit(X, y)
    with pytest.warns(UserWarning, match="after 2 epoch"), pytest.raises(KeyboardInterrupt):
        CNNClassifier(**params, callbacks=[Stop()]).fit(X, y)
    seen = _rates_seen()
    again = CNNClassifier(**params, callbacks=[seen]).fit(X, y)
    np.testing.assert_allclose(again.history_["learning_rate"], whole.history_["learning_rate"])
    steps = len(seen.rates) // 2
    total = 4 * steps
    np.testing.assert_allclose(
        seen.rates, [scheduled_lr("one_cycle", 1e-3, s, total) for s in range(2 * steps, total)]
    )


# ------------------------------------------------------------ deprecation
def test_no_warning_when_the_deprecated_parameter_is_left_alone(small_digits):
    X, y = small_digits[0][:64], small_digits[1][:64]
    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)
        CNNClassifier(epochs=1, **TINY).fit(X, y)


# ------------------------------------------------------------ the valley
def test_valley_is_halfway_down_the_longest_descent():
    flat = np.full(20, 2.0) + np.random.default_rng(0).normal(0, 0.01, 20)
    falling = np.linspace(2.0, 0.5, 40)
    rising = np.linspace(0.5, 8.0, 20)
    curve = np.concatenate([flat, falling, rising])
    index = lrfind.valley(curve)
    assert 30 <= index <= 50  # in the middle of the fall (20-59), not on its edges
    assert lrfind.valley(np.array([1.0])) == 0


def test_the_sweep_stops_when_the_smoothed_loss_blows_up():
    class Fake:
        """A network whose loss falls until the rate reaches 1e-2, then soars."""

        class optimizer:  # noqa: N801
            learning_rate = 0.0

        def train_on_batch(self, x, y, sample_weight=None, return_dict=True):
            rate = self.optimizer.learning_rate
            loss = 2.0 - 0.2 * math.log10(rate / 1e-7) if rate < 1e-2 else 1e3 * rate
            return {"loss": loss}

    rates = lrfind.sweep_rates(1e-7, 10, 100)
    source = iter(lambda: (None, None, None), 0)
    found = lrfind.run(Fake(), source, rates, stop_factor=4.0)
    assert found.stopped_early and len(found.learning_rates) < 100
    assert found.learning_rates[-1] > 1e-2
    assert 1e-6 < found.suggestion < 1e-2
    whole = lrfind.run(Fake(), iter(lambda: (None, None, None), 0), rates, stop_factor=None)
    assert not whole.stopped_early and len(whole.losses) == 100


# ------------------------------------------------------------ lr_find
@pytest.fixture(scope="module")
def digits_split(digits):
    _, images, y = digits
    X = np.round(images / 16 * 255).astype(np.uint8)[..., None]
    return train_test_split(X, y, test_size=0.25, stratify=y, random_state=0)


def test_lr_find_suggests_a_finite_rate_in_the_range(small_digits):
    X, y = small_digits
    found = CNNClassifier(filters=4, random_state=0).lr_find(X, y, start_lr=1e-6, end_lr=1.0)
    n = len(found.learning_rates)
    assert 10 <= n <= 100 and found.losses.shape == found.raw_losses.shape == (n,)
    assert np.all(np.diff(found.learning_rates) > 0)
    assert found.learning_rates[0] == pytest.approx(1e-6)
    assert math.isfinite(found.suggestion) and 1e-6 <= found.suggestion <= 1.0
    assert found.suggestion == found.learning_rates[found.suggestion_index]
    assert "suggestion=" in repr(found)


def test_lr_find_leaves_an_unfitted_estimator_untouched(small_digits):
    X, y = small_digits
    clf = CNNClassifier(filters=4, random_state=0, lr_schedule="one_cycle")
    params, attributes = clf.get_params(), dict(vars(clf))
    state = np.random.get_state()
    clf.lr_find(X, y, num_steps=20)
    assert clf.get_params() == params and vars(clf) == attributes
    assert not hasattr(clf, "model_")
    np.testing.assert_array_equal(np.random.get_state()[1], state[1])
    assert np.random.get_state()[2] == state[2]
    # A RandomState parameter is not drawn from.
    rng = np.random.RandomState(5)
    before = rng.get_state()
    CNNClassifier(filters=4, random_state=rng).lr_find(X, y, num_steps=10)
    after = rng.get_state()
    np.testing.assert_array_equal(after[1], before[1])
    assert after[2] == before[2]  # the position: nothing drawn


@pytest.mark.slow
def test_lr_find_leaves_a_fitted_estimator_untouched(small_digits):
    X, y = small_digits
    clf = CNNClassifier(epochs=2, **{**TINY, "filters": 8}).fit(X, y)
    params, attributes = clf.get_params(), dict(vars(clf))
    weights = [w.copy() for w in clf.model_.get_weights()]
    optimizer_rate = float(np.asarray(clf.model_.optimizer.learning_rate))
    proba = clf.predict_proba(X)
    clf.lr_find(X, y, num_steps=20)
    assert clf.get_params() == params and vars(clf) == attributes
    for before, after in zip(weights, clf.model_.get_weights(), strict=True):
        np.testing.assert_array_equal(before, after)
    assert float(np.asarray(clf.model_.optimizer.learning_rate)) == optimizer_rate
    np.testing.assert_array_equal(clf.predict_proba(X), proba)


@pytest.mark.slow
def test_lr_find_is_repeatable_with_a_random_state(small_digits):
    X, y = small_digits
    clf = CNNClassifier(filters=4, random_state=3)
    first, second = clf.lr_find(X, y, num_steps=15), clf.lr_find(X, y, num_steps=15)
    np.testing.assert_allclose(first.raw_losses, second.raw_losses, rtol=1e-5)


def test_lr_find_bad_input_is_an_input_error(small_digits):
    X, y = small_digits
    clf = CNNClassifier()
    with pytest.raises(InputError, match="y has"):
        clf.lr_find(X, y[:-1])
    with pytest.raises(InputError) as err:
        clf.lr_find(X, y, start_lr=1.0, end_lr=1e-3, num_steps=1, stop_factor=0.5)
    message = str(err.value)
    assert "1. start_lr=1.0 and end_lr=0.001" in message
    assert "2. num_steps=1" in message and "3. stop_factor=0.5" in message
    with pytest.raises(InputError, match="1. learning_rate=-1"):
        CNNClassifier(learning_rate=-1).lr_find(X, y)


def test_lr_find_on_a_transfer_classifier_sweeps_its_head(small_digits):
    X, y = small_digits[0][:96], small_digits[1][:96]
    keras = get_keras()
    inputs = keras.Input((None, None, 1))
    x = keras.layers.Rescaling(1 / 255)(inputs)  # a backbone receives 0-255 pixels
    own = keras.Model(inputs, keras.layers.Conv2D(4, 3, padding="same", activation="relu")(x))
    clf = TransferClassifier(backbone=own, weights=None, random_state=0)
    before = [w.copy() for w in own.get_weights()]
    found = clf.lr_find(X, y, num_steps=30)
    assert math.isfinite(found.suggestion) and 1e-7 <= found.suggestion <= 10
    assert not hasattr(clf, "model_")
    for a, b in zip(before, own.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)  # the user's backbone is not trained


@pytest.mark.slow
def test_the_suggestion_trains_digits_to_095_in_5_epochs(digits_split):
    """The issue's bar: fastai's valley on digits, then 5 epochs at that rate."""
    X_tr, X_te, y_tr, y_te = digits_split
    clf = CNNClassifier(epochs=5, random_state=0)
    found = clf.lr_find(X_tr, y_tr)
    clf.set_params(learning_rate=found.suggestion).fit(X_tr, y_tr)
    assert clf.score(X_te, y_te) >= 0.95, found


def test_plot_lr_find_draws_the_curve_and_the_suggestion(tmp_path):
    pytest.importorskip("matplotlib")
    from imgclf import plot

    rates = lrfind.sweep_rates(1e-7, 10, 60)
    losses = np.concatenate([np.full(20, 2.3), np.linspace(2.3, 0.6, 30), np.linspace(0.6, 5, 10)])
    index = lrfind.suggestion_index(losses)
    found = lrfind.LRFind(rates, losses, losses, float(rates[index]), index, True)
    fig = plot.plot_lr_find(found, path=tmp_path / "lr.png")
    assert (tmp_path / "lr.png").stat().st_size > 5_000
    (ax,) = fig.axes
    assert ax.get_xscale() == "log"
    curve, marker = ax.lines[:2]
    assert len(curve.get_xdata()) == 60
    assert marker.get_xdata()[0] == pytest.approx(found.suggestion)
    assert f"{found.suggestion:.2g}" in ax.get_legend().get_texts()[-1].get_text()
    # Onto the caller's axes.
    other = plot._figure(4, 3).add_subplot()
    assert plot.plot_lr_find(found, ax=other) is other.figure
    with pytest.raises(InputError, match="an imgclf.lrfind.LRFind"):
        plot.plot_lr_find({"suggestion": 1e-3})
