"""TransferClassifier with augment that only flips left-right: the frozen stage
trains its head on the cached features of each image and of its mirror image.

A one-convolution backbone (the ``tiny_backbone`` fixture) at 8x8 px keeps
each fit to a second or two.
"""

import os

import numpy as np
import pytest

from imgclf import TransferClassifier
from imgclf._backend import get_keras
from imgclf._inference import flips_only


def _clf(backbone, **params):
    defaults = dict(
        backbone=backbone,
        epochs=3,
        fine_tune_epochs=0,
        batch_size=16,
        validation_fraction=0.0,
        random_state=0,
    )
    return TransferClassifier(**{**defaults, **params})


def _cache_files(root):
    return sorted(
        os.path.join(d, f) for d, _, files in os.walk(root) for f in files if f.endswith(".f32")
    )


def _mirror(X):
    return np.ascontiguousarray(X[:, :, ::-1])


def test_which_augment_values_only_flip():
    layers = get_keras().layers
    assert flips_only({"flip": "horizontal"})
    assert flips_only({"flip": "horizontal", "zoom": 0, "rotation": None})
    assert flips_only([layers.RandomFlip("horizontal")])
    for augment in (
        None,
        {},
        [],
        "light",
        "standard",
        {"flip": "vertical"},
        {"flip": "horizontal_and_vertical"},
        {"flip": "horizontal", "zoom": 0.1},
        [layers.RandomFlip("vertical")],
        [layers.RandomFlip("horizontal"), layers.RandomZoom(0.1)],
    ):
        assert not flips_only(augment), augment


def test_flips_train_as_the_images_and_their_mirrors_would(tiny_backbone, small_digits, computed):
    X, y = small_digits[0][:60], small_digits[1][:60]
    flipped = _clf(tiny_backbone, augment={"flip": "horizontal"}).fit(X, y)
    # The backbone ran over the images, then their mirror images; never per epoch.
    assert computed == [60, 60]
    computed.clear()
    # The same rows by hand: the images, then their mirrors, with the same labels.
    by_hand = _clf(tiny_backbone).fit(np.concatenate([X, _mirror(X)]), np.concatenate([y, y]))
    assert computed == [120]
    np.testing.assert_allclose(flipped.history_["loss"], by_hand.history_["loss"], rtol=1e-4)
    np.testing.assert_allclose(
        flipped.predict_proba(X), by_hand.predict_proba(X), rtol=1e-4, atol=1e-5
    )
    # Not the same as training on the images alone.
    alone = _clf(tiny_backbone).fit(X, y)
    assert not np.allclose(alone.predict_proba(X), flipped.predict_proba(X), atol=1e-4)


def test_mirror_features_have_their_own_cache_entries(
    tiny_backbone, small_digits, computed, tmp_path
):
    X, y = small_digits[0][:60], small_digits[1][:60]
    memory = str(tmp_path)
    first = _clf(tiny_backbone, augment={"flip": "horizontal"}, memory=memory).fit(X, y)
    assert computed == [60, 60]
    assert len(_cache_files(tmp_path)) == 120  # two network keys, 60 images each
    computed.clear()

    # The images' own features are the ones a fit without augment reads (the
    # random flip layer is not part of the key), and a flip fit with another
    # seed reads both.
    _clf(tiny_backbone, memory=memory).fit(X, y)
    again = _clf(tiny_backbone, augment={"flip": "horizontal"}, memory=memory).fit(X, y)
    other_seed = _clf(
        tiny_backbone, augment={"flip": "horizontal"}, memory=memory, random_state=1
    ).fit(X, y)
    assert computed == []
    assert len(_cache_files(tmp_path)) == 120
    assert again.history_["loss"] == first.history_["loss"]
    assert other_seed.history_["loss"] != first.history_["loss"]


def test_hold_out_is_judged_on_the_images_as_given(tiny_backbone, small_digits, computed):
    X, y = small_digits
    clf = _clf(tiny_backbone, augment={"flip": "horizontal"}, validation_fraction=0.2).fit(X, y)
    # The training images, their mirrors, then the hold-out (no mirrors).
    n_train = computed[0]
    assert computed == [n_train, n_train, len(X) - n_train]
    assert 0 < len(X) - n_train < n_train
    assert "val_loss" in clf.history_


@pytest.mark.parametrize(
    "augment", [{"flip": "horizontal", "zoom": 0.1}, {"flip": "vertical"}, "light"]
)
def test_other_augmentation_runs_the_network_every_epoch(
    tiny_backbone, small_digits, computed, augment
):
    X, y = small_digits[0][:40], small_digits[1][:40]
    _clf(tiny_backbone, augment=augment, epochs=1).fit(X, y)
    assert computed == []  # no features computed up front: the whole network trained
