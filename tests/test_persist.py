"""Pickling, save/load and atomic saves."""

import os
import pickle
import subprocess
import sys

import joblib
import numpy as np
import pytest

import imgclf
from imgclf import CNNClassifier


@pytest.fixture(scope="module")
def fitted(small_digits):
    X, y = small_digits
    labels = np.array(["a", "b", "c"])[y]
    clf = CNNClassifier(epochs=2, filters=4, augment="light", random_state=0).fit(X, labels)
    return clf, X


def test_joblib_round_trip(fitted, tmp_path):
    clf, X = fitted
    joblib.dump(clf, tmp_path / "clf.joblib")
    back = joblib.load(tmp_path / "clf.joblib")
    np.testing.assert_array_equal(back.predict_proba(X), clf.predict_proba(X))
    assert back.history_ == clf.history_
    assert list(back.classes_) == list(clf.classes_)


def test_pickle_keeps_training_able(fitted, small_digits):
    clf, X = fitted
    back = pickle.loads(pickle.dumps(clf))
    back.set_params(warm_start=True)
    _, y = small_digits
    back.fit(X, np.array(["a", "b", "c"])[y])  # optimizer state restored with the model
    assert len(back.history_["loss"]) == len(clf.history_["loss"]) + 2


def test_save_and_load_in_a_fresh_process(fitted, tmp_path):
    clf, X = fitted
    path = tmp_path / "model.imgclf"
    clf.save(path)
    np.save(tmp_path / "X.npy", X[:20])
    code = (
        "import sys, numpy as np, imgclf\n"
        "clf = imgclf.load(sys.argv[1])\n"
        "np.save(sys.argv[3], clf.predict_proba(np.load(sys.argv[2])))\n"
    )
    out = tmp_path / "proba.npy"
    subprocess.run(
        [sys.executable, "-c", code, str(path), str(tmp_path / "X.npy"), str(out)],
        check=True,
        capture_output=True,
    )
    np.testing.assert_array_equal(np.load(out), clf.predict_proba(X[:20]))


def test_interrupted_save_keeps_previous_file(fitted, tmp_path, monkeypatch):
    clf, _ = fitted
    path = tmp_path / "model.imgclf"
    clf.save(path)
    before = path.read_bytes()

    def crash(obj, f, *args, **kwargs):
        f.write(b"half a model")
        raise KeyboardInterrupt

    monkeypatch.setattr("imgclf.persist.joblib.dump", crash)
    with pytest.raises(KeyboardInterrupt):
        clf.save(path)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["model.imgclf"]  # no temporary file left behind


def test_load_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="No saved model"):
        imgclf.load(tmp_path / "missing.imgclf")
    junk = tmp_path / "junk.imgclf"
    junk.write_bytes(b"not a model")
    with pytest.raises(ValueError, match="not a model saved by imgclf"):
        imgclf.load(junk)
    joblib.dump({"a": 1}, tmp_path / "dict.joblib")
    with pytest.raises(ValueError, match="holds a dict"):
        imgclf.load(tmp_path / "dict.joblib")


def test_import_does_not_load_tensorflow():
    code = "import sys, imgclf; imgclf.CNNClassifier(); print('tensorflow' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
