"""TransferClassifier and the backbone registry.

Kept tiny: most tests use a small network pretrained here (a CNNClassifier on
digits 3-9) as the backbone; the registry's networks are built with
``weights=None`` at 32x32. ImageNet weights are never downloaded.
"""

import os
import pickle
import subprocess
import sys
import urllib.error

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV

from imgclf import CNNClassifier, TransferClassifier
from imgclf._backend import get_keras
from imgclf._persist import model_from_bytes, model_to_bytes
from imgclf.backbones import BACKBONES, LiteBackbone, get_backbone
from imgclf.exceptions import InputError

#: The registry's keras.applications networks (EfficientNet-Lite, built by
#: imgclf, has its own tests in test_efficientnet_lite.py).
KERAS_APPLICATIONS = sorted(n for n, b in BACKBONES.items() if not isinstance(b, LiteBackbone))

REQUIRED = [
    "mobilenet_v2",
    "mobilenet_v3_small",
    "mobilenet_v3_large",
    "efficientnet_b0",
    "efficientnet_v2_b0",
    "resnet50",
    "vgg16",
    "convnext_tiny",
]


def _digits_uint8(digits, classes):
    _, images, y = digits
    keep = np.isin(y, classes)
    return np.round(images[keep] / 16 * 255).astype(np.uint8)[..., None], y[keep]


@pytest.fixture(scope="module")
def pretrained(digits):
    """A network trained here on digits 3-9, saved as .keras: a backbone that
    carries knowledge, for transfer to digits 0-2."""
    X, y = _digits_uint8(digits, range(3, 10))
    source = CNNClassifier(
        epochs=10, learning_rate=3e-3, batch_size=32, filters=8, random_state=0
    ).fit(X[:700], y[:700])
    return source.model_


@pytest.fixture(scope="module")
def transferred(pretrained, small_digits, tmp_path_factory):
    X, y = small_digits
    before = [w.copy() for w in pretrained.get_weights()]
    flags = [layer.trainable for layer in pretrained.layers]
    clf = TransferClassifier(
        backbone=pretrained,
        epochs=60,
        learning_rate=1e-2,
        fine_tune_epochs=2,
        fine_tune_layers=4,
        batch_size=32,
        random_state=0,
        refit=False,  # these tests read the fit with its hold-out (test_refit.py: the refit)
    ).fit(X[:240], y[:240])
    return clf, X, y, before, flags


# ------------------------------------------------------------------ registry
def test_registry_has_the_required_backbones():
    keras = get_keras()
    assert set(REQUIRED) <= set(BACKBONES)
    for spec in map(BACKBONES.get, KERAS_APPLICATIONS):
        assert callable(getattr(keras.applications, spec.constructor))
        assert callable(getattr(keras.applications, spec.module).preprocess_input)
        assert spec.min_size <= spec.default_size


@pytest.mark.parametrize("name", KERAS_APPLICATIONS)
def test_preprocess_layer_matches_keras_preprocess_input(name):
    keras = get_keras()
    spec = BACKBONES[name]
    inputs = keras.Input((4, 4, 3))
    model = keras.Model(inputs, spec.preprocess_layers(inputs))
    x = np.random.default_rng(0).uniform(0, 1, size=(2, 4, 4, 3)).astype(np.float32)
    expected = getattr(keras.applications, spec.module).preprocess_input(255.0 * x)
    np.testing.assert_allclose(model.predict(x, verbose=0), expected, rtol=1e-5, atol=1e-3)


def test_unknown_backbone_lists_known_ones_and_suggests():
    with pytest.raises(InputError) as err:
        get_backbone("mobilenetv2")
    message = str(err.value)
    assert "did you mean 'mobilenet_v2'?" in message
    assert all(name in message for name in REQUIRED)
    with pytest.raises(InputError, match="did you mean 'resnet50'"):
        TransferClassifier(backbone="resnet5O").fit(np.zeros((4, 32, 32, 3)), [0, 1, 0, 1])


def test_image_size_below_the_backbone_minimum():
    X, y = np.zeros((4, 80, 80, 3), np.uint8), [0, 1, 0, 1]
    with pytest.raises(InputError, match=r"'mobilenet_v2' takes images of at least 32x32"):
        TransferClassifier(backbone="mobilenet_v2", image_size=16).fit(X, y)
    with pytest.raises(InputError, match=r"image_size=64.*at least 71x71"):
        TransferClassifier(backbone="xception", image_size=64).fit(X, y)


def test_invalid_parameters_are_reported_together():
    clf = TransferClassifier(
        weights=123,
        dropout=1.5,
        fine_tune_epochs=-1,
        fine_tune_layers=0,
        fine_tune_learning_rate=0,
    )
    with pytest.raises(InputError) as err:
        clf.fit(np.zeros((4, 32, 32, 3)), [0, 1, 0, 1])
    message = str(err.value)
    for i, param in enumerate(
        [
            "weights=",
            "dropout=",
            "fine_tune_epochs=",
            "fine_tune_layers=",
            "fine_tune_learning_rate=",
        ],
        start=1,
    ):
        assert f"{i}. {param}" in message


def test_missing_files_are_named(tmp_path):
    X, y = np.zeros((4, 32, 32, 3)), [0, 1, 0, 1]
    missing = str(tmp_path / "nope.keras")
    with pytest.raises(InputError, match="nope.keras'?: no such file"):
        TransferClassifier(backbone=missing).fit(X, y)
    with pytest.raises(InputError, match="nope.h5'?: no such file"):
        TransferClassifier(weights=str(tmp_path / "nope.h5")).fit(X, y)


# ------------------------------------------------------------------- weights
def test_offline_imagenet_says_which_file_to_place_where(monkeypatch, tmp_path):
    from keras.src.backend import config
    from keras.src.utils import file_utils

    def no_network(url, *args, **kwargs):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    # Keras's own download code runs; only the socket is replaced, and the
    # cache folder is empty so nothing is found there.
    monkeypatch.setattr(file_utils, "urlretrieve", no_network)
    monkeypatch.setattr(config, "_KERAS_DIR", str(tmp_path))
    clf = TransferClassifier(backbone="mobilenet_v3_small", weights="imagenet", image_size=32)
    with pytest.raises(InputError) as err:
        clf.fit(np.zeros((4, 32, 32, 3), np.uint8), [0, 1, 0, 1])
    message = str(err.value)
    expected_file = os.path.join(
        tmp_path, "models", "weights_mobilenet_v3_small_224_1.0_float_no_top_v2.h5"
    )
    assert "could not download the ImageNet weights for 'mobilenet_v3_small'" in message
    assert "1. place weights_mobilenet_v3_small_224_1.0_float_no_top_v2.h5" in message
    assert expected_file in message
    assert "2. pass weights='/path/to/weights.h5'" in message
    assert "3. pass weights=None" in message


@pytest.mark.slow
def test_local_weights_file_is_loaded(tmp_path):
    keras = get_keras()
    keras.utils.set_random_seed(123)
    source = keras.applications.MobileNetV3Small(
        include_top=False, weights=None, input_shape=(32, 32, 3)
    )
    path = str(tmp_path / "mnv3.weights.h5")
    source.save_weights(path)
    X = np.random.default_rng(0).integers(0, 255, size=(40, 32, 32, 3), dtype=np.uint8)
    y = np.arange(40) % 2
    clf = TransferClassifier(
        backbone="mobilenet_v3_small",
        weights=path,
        image_size=32,
        epochs=1,
        fine_tune_epochs=0,
        random_state=0,
    ).fit(X, y)
    loaded = clf.model_.get_layer("backbone").get_weights()
    # The frozen stage leaves the backbone as loaded: every array from the file.
    assert len(loaded) == len(source.get_weights())
    for got, want in zip(loaded, source.get_weights(), strict=True):
        np.testing.assert_array_equal(got, want)

    other = str(tmp_path / "other.weights.h5")
    keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)]).save_weights(other)
    with pytest.raises(InputError, match="could not load weights=.*other.weights.h5"):
        TransferClassifier(
            backbone="mobilenet_v3_small", weights=other, image_size=32, epochs=1
        ).fit(X, y)


# ------------------------------------------------------------ a user network
@pytest.mark.slow
def test_transfer_from_own_network_learns(transferred, small_digits):
    clf, X, y, _, _ = transferred
    # Chance is 0.33; the pretrained features make 60 examples per class enough.
    assert clf.score(X[240:], y[240:]) > 0.8


def test_history_marks_both_stages(transferred):
    clf, *_ = transferred
    stages = clf.history_["stage"]
    assert set(stages) == {1.0, 2.0}
    assert stages == sorted(stages)  # all frozen epochs first
    assert 1 <= stages.count(2.0) <= 2
    assert {len(v) for v in clf.history_.values()} == {len(stages)}
    assert {"loss", "accuracy", "val_loss", "val_accuracy"} <= set(clf.history_)


def test_classifier_head_of_own_network_is_cut_off(transferred, pretrained):
    clf, *_ = transferred
    # The source's features are its pooled 32-wide map, not its 7 class scores.
    assert pretrained.output.shape[-1] == 7
    assert (
        clf.model_.get_layer("features").output.shape[-1]
        == pretrained.get_layer("pool").output.shape[-1]
    )
    assert clf.model_.output.shape[-1] == 3


def test_users_network_is_not_changed(transferred, pretrained):
    _, _, _, before, flags = transferred
    for got, want in zip(pretrained.get_weights(), before, strict=True):
        np.testing.assert_array_equal(got, want)
    assert [layer.trainable for layer in pretrained.layers] == flags


def test_fine_tune_keeps_batchnorm_frozen_and_unfreezes_only_the_top(transferred):
    clf, *_ = transferred
    backbone = clf.model_.get_layer("backbone")
    inner = [layer for layer in backbone.layers if layer.weights]
    bn = get_keras().layers.BatchNormalization
    assert all(not layer.trainable for layer in inner if isinstance(layer, bn))
    trainable = [layer.name for layer in inner if layer.trainable]
    assert trainable and len(trainable) <= 3
    assert not inner[0].trainable  # the bottom stayed frozen


def test_batchnorm_statistics_survive_fine_tuning(pretrained, small_digits):
    X, y = small_digits
    clf = TransferClassifier(
        backbone=pretrained,
        epochs=1,
        fine_tune_epochs=2,
        fine_tune_layers=1.0,
        validation_fraction=0.0,
        batch_size=32,
        random_state=0,
    ).fit(X[:120], y[:120])
    bn = get_keras().layers.BatchNormalization
    for layer in clf.model_.get_layer("backbone").layers:
        if isinstance(layer, bn):
            source = pretrained.get_layer(layer.name)
            np.testing.assert_array_equal(layer.moving_mean.numpy(), source.moving_mean.numpy())
            np.testing.assert_array_equal(
                layer.moving_variance.numpy(), source.moving_variance.numpy()
            )
    # Unfrozen conv weights did move.
    conv = next(layer for layer in clf.model_.get_layer("backbone").layers if "conv" in layer.name)
    assert not np.array_equal(
        conv.get_weights()[0], pretrained.get_layer(conv.name).get_weights()[0]
    )


# ---------------------------------------------------------------- fast path
def test_fast_frozen_stage_trains_the_head_as_a_plain_keras_loop(pretrained, small_digits):
    """The frozen stage trains the head on features computed once; Keras's own
    ``model.fit`` of the whole network (backbone frozen, as a Keras tutorial
    does it), from the same weights on the same images, ends in the same place."""
    keras = get_keras()
    X, y = small_digits
    clf = TransferClassifier(
        backbone=pretrained,
        epochs=1,
        fine_tune_epochs=0,
        dropout=0.0,
        batch_size=32,
        validation_fraction=0.0,
        early_stopping=False,
        random_state=0,
    ).fit(X[:200], y[:200])
    plain = model_from_bytes(model_to_bytes(clf.model_))  # the same starting weights
    clf.set_params(warm_start=True, epochs=4).fit(X[:200], y[:200])

    plain.get_layer("backbone").trainable = False
    plain.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy")
    y_enc = np.searchsorted(clf.classes_, y[:200])
    x = clf.network_input(X[:200])
    history = plain.fit(x, y_enc, batch_size=32, epochs=4, shuffle=True, verbose=0).history
    # The same training but for the order of the batches: the fast stage's
    # loop shuffles with NumPy, model.fit with TensorFlow (in the same order
    # the two train exactly alike: tests/test_vectorfit.py).
    np.testing.assert_allclose(clf.history_["loss"][-4:], history["loss"], rtol=1e-2)
    expected = plain.predict(clf.network_input(X[200:]), verbose=0)
    np.testing.assert_allclose(clf.predict_proba(X[200:]), expected, atol=1e-2)
    assert history["loss"][-1] < history["loss"][0]


def test_backbone_runs_once_per_image_without_augmentation(pretrained, small_digits, monkeypatch):
    import imgclf._frozenfeatures as transfer

    calls = []
    original = transfer._features
    monkeypatch.setattr(transfer, "_features", lambda *a, **k: calls.append(1) or original(*a, **k))
    X, y = small_digits
    # 200 images of 3 classes: a 20-image hold-out (fewer than 5 per class get none).
    TransferClassifier(
        backbone=pretrained, epochs=3, fine_tune_epochs=0, random_state=0, refit=False
    ).fit(X[:200], y[:200])
    assert len(calls) == 2  # training and validation features, once each
    calls.clear()
    TransferClassifier(
        backbone=pretrained, epochs=1, fine_tune_epochs=0, augment="light", random_state=0
    ).fit(X[:100], y[:100])
    assert calls == []  # augmentation changes the images every epoch: no cache


# --------------------------------------------------- what comes from the base
@pytest.mark.slow
def test_pickle_and_fresh_process_load(transferred, tmp_path):
    clf, X, *_ = transferred
    expected = clf.predict_proba(X[:10])
    again = pickle.loads(pickle.dumps(clf))
    np.testing.assert_allclose(again.predict_proba(X[:10]), expected, rtol=1e-5, atol=1e-6)

    path = tmp_path / "clf.joblib"
    clf.save(path)
    np.save(tmp_path / "X.npy", X[:10])
    code = (
        "import numpy as np, imgclf\n"
        f"clf = imgclf.load({str(path)!r})\n"
        f"print(repr(clf.predict_proba(np.load({str(tmp_path / 'X.npy')!r})).tolist()))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=300
    )
    got = np.array(eval(out.stdout.strip().splitlines()[-1]))
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_backbone_from_a_keras_file_and_grid_search(pretrained, small_digits, tmp_path):
    path = str(tmp_path / "digits39.keras")
    pretrained.save(path)
    X, y = small_digits
    est = TransferClassifier(
        backbone=path,
        epochs=12,
        fine_tune_epochs=0,
        learning_rate=3e-2,
        batch_size=32,
        random_state=0,
    )
    assert clone(est).get_params()["backbone"] == path
    search = GridSearchCV(est, {"dropout": [0.0, 0.3]}, cv=2).fit(X[:160], y[:160])
    assert search.best_score_ > 0.5  # chance: 0.33
    # The refitted network carries the file's (frozen) backbone weights.
    backbone = search.best_estimator_.model_.get_layer("backbone")
    conv = next(layer for layer in backbone.layers if layer.get_weights())
    np.testing.assert_allclose(
        conv.get_weights()[0], pretrained.get_layer(conv.name).get_weights()[0]
    )


def test_image_paths_as_samples(pretrained, small_digits, tmp_path):
    from PIL import Image

    X, y = small_digits
    paths = []
    for i in range(60):
        path = tmp_path / f"{i}.png"
        Image.fromarray(X[i, ..., 0]).resize((16, 16)).save(path)
        paths.append(str(path))
    keras = get_keras()
    # Any-size network (no fixed input size) so the file images' size is used.
    inputs = keras.Input((None, None, 1))
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu")(inputs)
    own = keras.Model(inputs, x)
    clf = TransferClassifier(
        backbone=own, weights=None, image_size=16, epochs=2, fine_tune_epochs=0, random_state=0
    )
    clf.fit(paths, y[:60])
    assert clf.image_size_ == (16, 16) and clf.n_channels_ == 1
    assert clf.predict(paths[:5]).shape == (5,)


@pytest.mark.slow
def test_named_backbone_with_grayscale_arrays_and_class_weight(small_digits):
    X, y = small_digits
    clf = TransferClassifier(
        backbone="mobilenet_v3_small",
        weights=None,
        image_size=32,
        epochs=1,
        fine_tune_epochs=0,
        class_weight="balanced",
        random_state=0,
    ).fit(X[:64], y[:64])
    assert clf.n_channels_ == 3 and clf.image_size_ == (32, 32)
    assert clf.predict_proba(X[:4]).shape == (4, 3)


def test_default_image_size_is_the_backbones():
    clf = TransferClassifier(backbone="xception")
    assert clf._default_image_size((8, 8)) == (299, 299)
    assert TransferClassifier(backbone="vgg16")._default_image_size(None) == (224, 224)


@pytest.mark.benchmark
@pytest.mark.parametrize("name", sorted(BACKBONES))
def test_every_backbone_builds_saves_and_loads(name, tmp_path):
    """Each registry network at its minimum size round-trips through .keras
    with no custom objects (slow: builds ResNet50, VGG16, ConvNeXt...)."""
    keras = get_keras()
    spec = BACKBONES[name]
    clf = TransferClassifier(
        backbone=name, weights=None, image_size=spec.min_size, epochs=1, fine_tune_epochs=0
    )
    X = np.random.default_rng(0).integers(0, 255, (8, spec.min_size, spec.min_size, 3), np.uint8)
    clf.fit(X, np.arange(8) % 2)
    path = str(tmp_path / "m.keras")
    clf.model_.save(path)
    again = keras.models.load_model(path)
    np.testing.assert_allclose(again.predict(X, verbose=0), clf.predict_proba(X), atol=1e-5)
