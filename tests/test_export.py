"""clf.export: SavedModel and TFLite artefacts that take raw uint8 images."""

import os
import warnings

import numpy as np
import pytest

from imgclf import CNNClassifier
from imgclf.exceptions import InputError


def _tflite_run(path, images):
    import tensorflow as tf

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tf.lite.Interpreter's deprecation notice
        interpreter = tf.lite.Interpreter(model_path=path)
    runner = interpreter.get_signature_runner("serving_default")
    return runner(image=images)["probabilities"]


def test_saved_model_agrees_with_predict_proba(fitted_cnn, small_digits, tmp_path):
    import tensorflow as tf

    clf, X = fitted_cnn, small_digits[0]
    out = clf.export(tmp_path / "sm")
    assert out == os.fspath(tmp_path / "sm")
    loaded = tf.saved_model.load(str(tmp_path / "sm"))
    serve = loaded.signatures["serving_default"]
    proba = serve(image=tf.constant(X[:20]))["probabilities"].numpy()
    np.testing.assert_allclose(proba, clf.predict_proba(X[:20]), atol=1e-5)
    labels = (tmp_path / "sm" / "assets" / "labels.txt").read_text().split()
    assert labels == [str(c) for c in clf.classes_]
    # Only the export is left behind, no temporary folder.
    assert [p.name for p in tmp_path.iterdir()] == ["sm"]


def test_tflite_agrees_with_predict_proba(fitted_cnn, small_digits, tmp_path):
    clf, X = fitted_cnn, small_digits[0]
    clf.export(tmp_path / "m.tflite", format="tflite")
    proba = _tflite_run(str(tmp_path / "m.tflite"), X[:20])
    np.testing.assert_allclose(proba, clf.predict_proba(X[:20]), atol=1e-5)
    assert (tmp_path / "m.labels.txt").read_text().split() == [str(c) for c in clf.classes_]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.labels.txt", "m.tflite"]


def test_float_training_range_is_mapped_from_uint8(tmp_path, digits):
    """Fitted on digits' 0-16 floats, the export takes 0-255 uint8 images."""
    X, images, y = digits
    keep = np.flatnonzero(y < 3)[:120]
    clf = CNNClassifier(epochs=1, filters=4, random_state=0).fit(images[keep], y[keep])
    assert clf.input_range_ == (0.0, 16.0)
    uint8 = np.round(images[keep][:10] / 16 * 255).astype(np.uint8)[..., None]
    clf.export(tmp_path / "m.tflite", format="tflite")
    proba = _tflite_run(str(tmp_path / "m.tflite"), uint8)
    expected = clf.predict_proba(uint8.astype(np.float64)[..., 0] / 255 * 16)
    np.testing.assert_allclose(proba, expected, atol=1e-4)


def test_reexport_replaces_previous_saved_model(fitted_cnn, tmp_path):
    clf = fitted_cnn
    clf.export(tmp_path / "sm")
    (tmp_path / "sm" / "stale.txt").write_text("from an earlier export")
    clf.export(tmp_path / "sm")
    assert not (tmp_path / "sm" / "stale.txt").exists()
    assert (tmp_path / "sm" / "saved_model.pb").exists()


def test_refuses_to_replace_a_folder_that_is_not_an_export(fitted_cnn, tmp_path):
    clf = fitted_cnn
    data = tmp_path / "photos"
    data.mkdir()
    (data / "a.png").write_bytes(b"not really")
    with pytest.raises(InputError, match="not a SavedModel"):
        clf.export(data)
    assert (data / "a.png").exists()


def test_bad_format_and_missing_folder(fitted_cnn, tmp_path):
    clf = fitted_cnn
    with pytest.raises(InputError, match="'coreml'.*'saved_model'.*'tflite'.*'onnx'"):
        clf.export(tmp_path / "m", format="coreml")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        clf.export(tmp_path / "nope" / "m.tflite", format="tflite")


def test_failed_export_keeps_previous_file(fitted_cnn, tmp_path, monkeypatch):
    from imgclf import export as export_module

    clf = fitted_cnn
    target = tmp_path / "m.tflite"
    target.write_bytes(b"previous good model")

    def broken(_):
        raise RuntimeError("converter crashed")

    monkeypatch.setattr(export_module, "_to_tflite", broken)
    with pytest.raises(RuntimeError, match="converter crashed"):
        clf.export(target, format="tflite")
    assert target.read_bytes() == b"previous good model"
    assert [p.name for p in tmp_path.iterdir()] == ["m.tflite"]


def test_unfitted_estimator_raises(tmp_path):
    from sklearn.exceptions import NotFittedError

    with pytest.raises(NotFittedError):
        CNNClassifier().export(tmp_path / "m")


@pytest.mark.slow
def test_transfer_classifier_exports_with_its_preprocessing(fitted_mobilenet_transfer, tmp_path):
    """The nested backbone and its preprocess layer survive conversion to a
    TFLite graph (no Python layers left), and the answers stay the same."""
    clf, X = fitted_mobilenet_transfer
    clf.export(tmp_path / "m.tflite", format="tflite")
    proba = _tflite_run(str(tmp_path / "m.tflite"), X[:8])
    np.testing.assert_allclose(proba, clf.predict_proba(X[:8]), atol=1e-4)
