"""``fit(X, y, sample_weight=...)``: weight 0 is leaving the image out, the
hold-out's weights weight its loss, the errors name the parameter, and
GridSearchCV and the feature cache (``memory``) carry the weights. Tiny
networks on 8x8 digits."""

import numpy as np
import pytest
from sklearn.model_selection import GridSearchCV

import imgclf._fitprep
from imgclf import CNNClassifier, TransferClassifier
from imgclf._backend import resolve_seed
from imgclf.exceptions import InputError

CNN = dict(epochs=2, filters=4, batch_size=16, random_state=0, validation_fraction=0.2)


@pytest.fixture(scope="module")
def halves(digits):
    """160 digits of classes 0-2, and weights 0 on every other one."""
    _, images, y = digits
    keep = np.flatnonzero(y < 3)[:160]
    X = np.round(images[keep] / 16 * 255).astype(np.uint8)[..., None]
    weight = np.tile([0.0, 1.0], 80)
    return X, y[keep], weight


@pytest.mark.slow
def test_weight_zero_is_leaving_the_images_out(halves):
    X, y, weight = halves
    given = weight.copy()
    weighted = CNNClassifier(**CNN).fit(X, y, sample_weight=weight)
    half = CNNClassifier(**CNN).fit(X[weight > 0], y[weight > 0])
    np.testing.assert_array_equal(weight, given)  # the caller's array is not changed
    assert "val_loss" in half.history_  # a hold-out in both
    np.testing.assert_allclose(weighted.history_["val_loss"], half.history_["val_loss"])
    np.testing.assert_allclose(weighted.predict_proba(X), half.predict_proba(X), atol=1e-6)


@pytest.mark.parametrize(
    "weight, words",
    [
        (np.ones(5), "shape (5,), but X has 160 images"),
        (np.ones((160, 2)), "shape (160, 2)"),
        (np.r_[-1.0, np.ones(159)], "negative at position(s) 0"),
        (np.r_[np.ones(3), np.nan, np.inf, np.ones(155)], "NaN or infinite at position(s) 3, 4"),
        (np.zeros(160), "zero for every image"),
        (["a"] * 160, "must be numbers"),
    ],
)
def test_bad_weights_are_named(halves, weight, words):
    X, y, _ = halves
    with pytest.raises(InputError, match="sample_weight") as info:
        CNNClassifier(**CNN).fit(X, y, sample_weight=weight)
    assert words in str(info.value)
    assert not hasattr(CNNClassifier(**CNN), "model_")


@pytest.fixture(scope="module")
def tiny_transfer(tiny_backbone):
    def make(**params):
        defaults = dict(
            backbone=tiny_backbone,
            image_size=8,
            epochs=3,
            fine_tune_epochs=0,
            batch_size=16,
            validation_fraction=0.2,
            dropout=0.0,
            random_state=0,
        )
        return TransferClassifier(**{**defaults, **params})

    return make


@pytest.mark.slow
def test_holdout_weights_weight_val_loss(halves, tiny_transfer):
    # A hold-out loss computed from the kept network's probabilities, weighted
    # by the hold-out's sample weights, is the recorded val_loss.
    X, y, _ = halves
    weight = np.linspace(0.2, 3.0, len(y))
    # calibrate=False: the kept weights' probabilities, not a temperature on them.
    clf = tiny_transfer(calibrate=False).fit(X, y, sample_weight=weight)
    y_enc = np.searchsorted(clf.classes_, y)
    _, val = clf._split(y_enc, resolve_seed(0))
    proba = clf.predict_proba(X[val])
    losses = -np.log(np.clip(proba[np.arange(len(val)), y_enc[val]], 1e-7, 1))
    recorded = clf.history_["val_loss"][clf.best_epoch_]
    assert recorded == pytest.approx(np.average(losses, weights=weight[val]), rel=1e-4)
    assert recorded != pytest.approx(losses.mean(), rel=1e-4)


@pytest.mark.slow
def test_transfer_with_memory_carries_the_weights(halves, tiny_transfer, computed, tmp_path):
    X, y, weight = halves
    half = tiny_transfer().fit(X[weight > 0], y[weight > 0])
    computed.clear()
    first = tiny_transfer(memory=str(tmp_path)).fit(X, y, sample_weight=weight)
    assert sum(computed) == 80  # weight-0 images are not even run through the backbone
    np.testing.assert_allclose(first.predict_proba(X), half.predict_proba(X), atol=1e-6)
    # From memory, with other weights: no feature computed, and the weights count.
    computed.clear()
    heavy = np.where(y == 0, 5.0, 1.0) * weight
    again = tiny_transfer(memory=str(tmp_path)).fit(X, y, sample_weight=heavy)
    assert computed == []
    assert again.history_["loss"] != first.history_["loss"]


@pytest.mark.slow
def test_grid_search_passes_sample_weight(halves, monkeypatch):
    X, y, weight = halves
    seen = []
    check = imgclf._fitprep.check_sample_weight

    def spy(estimator, sample_weight, n):
        seen.append(None if sample_weight is None else np.asarray(sample_weight).copy())
        return check(estimator, sample_weight, n)

    monkeypatch.setattr(imgclf._fitprep, "check_sample_weight", spy)
    weight = weight + np.arange(len(y)) / 1000  # each weight its own value
    search = GridSearchCV(CNNClassifier(**{**CNN, "epochs": 1}), {"filters": [4]}, cv=2)
    search.fit(X, y, sample_weight=weight)
    assert len(seen) == 3  # two folds and the refit
    folds = np.sort(np.concatenate(seen[:2]))
    np.testing.assert_array_equal(folds, np.sort(weight))
    np.testing.assert_array_equal(seen[2], weight)
