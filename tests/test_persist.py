"""Pickling, save/load in the safe format, refusing pickles, atomic saves."""

import contextlib
import io
import json
import os
import pickle
import re
import signal
import struct
import subprocess
import sys
import tempfile
import tracemalloc
import warnings
import zipfile
from pathlib import Path

import joblib
import numpy as np
import pytest

import imgclf
from imgclf import CNNClassifier, TransferClassifier
from imgclf._backend import get_keras
from imgclf.exceptions import (
    InconsistentVersionWarning,
    ModelFileError,
    UnsavedParameterWarning,
)


@pytest.fixture(scope="module")
def fitted(small_digits):
    X, y = small_digits
    labels = np.array(["a", "b", "c"])[y]
    clf = CNNClassifier(epochs=2, filters=4, augment="light", random_state=0).fit(X, labels)
    return clf, X


@pytest.fixture(scope="module")
def saved(fitted, tmp_path_factory):
    """``fitted`` saved once: the bytes of a good file, to tamper with."""
    clf, _ = fitted
    path = tmp_path_factory.mktemp("saved") / "model.imgclf"
    clf.save(path)
    return path


def _rewrite(source, target, change):
    """Copy the zip ``source`` to ``target`` with ``change(members)`` applied
    to its ``{name: bytes}``."""
    with zipfile.ZipFile(source) as zf:
        members = {name: zf.read(name) for name in zf.namelist()}
    change(members)
    with zipfile.ZipFile(target, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)


def _edit_manifest(source, target, edit):
    def change(members):
        manifest = json.loads(members["imgclf.json"])
        edit(manifest)
        members["imgclf.json"] = json.dumps(manifest).encode()

    _rewrite(source, target, change)


# ---------------------------------------------------------------- pickling
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


# --------------------------------------------------------- the safe format
def test_saved_file_holds_json_npy_and_keras_only(saved, fitted):
    clf, _ = fitted
    with zipfile.ZipFile(saved) as zf:
        names = zf.namelist()
        manifest = json.loads(zf.read("imgclf.json"))
        arrays = [
            np.load(io.BytesIO(zf.read(n)), allow_pickle=False) for n in names if n.endswith(".npy")
        ]
    assert names[0] == "imgclf.json" and "model.keras" in names
    assert set(names) - {"imgclf.json", "model.keras"} == {n for n in names if n.endswith(".npy")}
    assert manifest["estimator"] == "CNNClassifier"
    assert set(manifest["versions"]) == {"imgclf", "keras", "tensorflow"}
    assert manifest["versions"]["imgclf"] == imgclf.__version__
    assert any(a.tolist() == ["a", "b", "c"] for a in arrays)  # classes_, no pickle needed
    assert manifest["params"]["augment"] == "light"
    stored = set(manifest["attributes"])
    expected = {k for k in vars(clf) if k.endswith("_") and not k.startswith("_")} - {"model_"}
    assert stored == expected


@pytest.mark.slow
def test_save_and_load_in_a_fresh_process(fitted, saved, tmp_path):
    clf, X = fitted
    np.save(tmp_path / "X.npy", X[:20])
    code = (
        "import sys, numpy as np, imgclf\n"
        "clf = imgclf.load(sys.argv[1])\n"
        "np.save(sys.argv[3], clf.predict_proba(np.load(sys.argv[2])))\n"
    )
    out = tmp_path / "proba.npy"
    subprocess.run(
        [sys.executable, "-c", code, str(saved), str(tmp_path / "X.npy"), str(out)],
        check=True,
        capture_output=True,
    )
    # To 1 ulp, not exactly: the fresh process turns TensorFlow's oneDNN kernels
    # on (imgclf's environment default), while this one may have had TensorFlow
    # imported by another test module first (a 6e-8 difference was seen in CI).
    np.testing.assert_allclose(np.load(out), clf.predict_proba(X[:20]), rtol=1e-6, atol=1e-7)


def test_load_restores_parameters_and_attributes(fitted, saved, small_digits):
    clf, X = fitted
    back = imgclf.load(saved)
    assert type(back) is CNNClassifier
    assert back.get_params() == clf.get_params()
    assert back.history_ == clf.history_
    assert (back.image_size_, back.n_channels_, back.input_range_, back.batch_size_) == (
        clf.image_size_,
        clf.n_channels_,
        clf.input_range_,
        clf.batch_size_,
    )
    np.testing.assert_array_equal(back.predict_proba(X), clf.predict_proba(X))
    back.set_params(warm_start=True, epochs=1)
    _, y = small_digits
    back.fit(X, np.array(["a", "b", "c"])[y])  # compiled network: training goes on
    assert len(back.history_["loss"]) == len(clf.history_["loss"]) + 1


@pytest.mark.parametrize(
    "labels",
    [
        np.array([3, 7]),
        np.array([True, False]),
        np.array(["cat", "dog"], dtype=object),
    ],
    ids=["int", "bool", "object-str"],  # fitted above has str labels
)
def test_round_trip_keeps_labels_of_any_type(labels, small_digits, tmp_path):
    X, y = small_digits
    keep = y < 2
    y2 = labels[y[keep][:40]]
    clf = CNNClassifier(epochs=1, filters=2, validation_fraction=0.0, random_state=0)
    clf.fit(X[keep][:40], y2)
    clf.save(tmp_path / "m.imgclf")
    back = imgclf.load(tmp_path / "m.imgclf")
    assert back.classes_.dtype == clf.classes_.dtype
    assert back.classes_.tolist() == clf.classes_.tolist()
    assert [type(v) for v in back.classes_.tolist()] == [type(v) for v in clf.classes_.tolist()]
    np.testing.assert_array_equal(back.predict(X[:10]), clf.predict(X[:10]))


def test_flattened_dataframe_keeps_feature_names(small_digits, tmp_path):
    pd = pytest.importorskip("pandas")
    X, y = small_digits
    frame = pd.DataFrame(X[:60].reshape(60, -1), columns=[f"px{i}" for i in range(64)])
    clf = CNNClassifier(epochs=1, filters=2, random_state=0).fit(frame, y[:60])
    clf.save(tmp_path / "m.imgclf")
    back = imgclf.load(tmp_path / "m.imgclf")
    assert back.n_features_in_ == 64
    assert back.feature_names_in_.dtype == object
    assert back.feature_names_in_.tolist() == clf.feature_names_in_.tolist()
    np.testing.assert_array_equal(back.predict_proba(frame[:5]), clf.predict_proba(frame[:5]))


def test_transfer_round_trip_drops_the_backbone_model_with_a_warning(small_digits, tmp_path):
    keras = get_keras()
    X, y = small_digits
    inputs = keras.Input((8, 8, 1))
    features = keras.layers.Conv2D(4, 3, padding="same", activation="relu")(inputs)
    backbone = keras.Model(inputs, keras.layers.GlobalAveragePooling2D()(features))
    clf = TransferClassifier(
        backbone=backbone, epochs=2, fine_tune_epochs=1, batch_size=32, random_state=0
    ).fit(X[:120], y[:120])
    with pytest.warns(UnsavedParameterWarning, match=r"backbone \(a keras\..*Functional\)"):
        clf.save(tmp_path / "t.imgclf")
    with pytest.warns(UnsavedParameterWarning, match=r"without the parameters \['backbone'\]"):
        back = imgclf.load(tmp_path / "t.imgclf")
    assert type(back) is TransferClassifier
    assert back.backbone == "mobilenet_v2"  # the default
    assert back.history_["stage"] == clf.history_["stage"]
    np.testing.assert_array_equal(back.predict_proba(X[:20]), clf.predict_proba(X[:20]))


def test_parameters_stored_as_config_or_dropped(tmp_path):
    keras = get_keras()

    class Shout(keras.layers.Layer):  # a user's layer: its code is not in the file
        def call(self, x):
            return x

    clf = CNNClassifier(
        augment=[keras.layers.RandomFlip("horizontal"), keras.layers.RandomZoom(0.1)],
        random_state=np.random.RandomState(5),
        class_weight={1: 2.0, 2: 0.5},
        image_size=(12, 10),
        cache=tmp_path,
    )
    clf.save(tmp_path / "a.imgclf")  # everything storable: no warning expected
    # ... but a loaded model acts on no path its file names: cache is reset.
    with pytest.warns(UnsavedParameterWarning, match=r"names paths .*cache="):
        back = imgclf.load(tmp_path / "a.imgclf")
    assert [type(layer).__name__ for layer in back.augment] == ["RandomFlip", "RandomZoom"]
    assert back.augment[1].get_config() == clf.augment[1].get_config()
    assert back.random_state.randint(1000) == np.random.RandomState(5).randint(1000)
    assert back.class_weight == {1: 2.0, 2: 0.5}
    assert back.image_size == (12, 10) and back.cache is None

    clf.set_params(augment=[Shout()], callbacks=[keras.callbacks.TerminateOnNaN()])
    with pytest.warns(UnsavedParameterWarning) as record:
        clf.save(tmp_path / "b.imgclf")
    message = str(record[0].message)
    assert "augment (a " in message and "Shout" in message
    assert "callbacks (a keras.src.callbacks" in message
    with pytest.warns(UnsavedParameterWarning, match=r"\['augment', 'callbacks'\]"):
        back = imgclf.load(tmp_path / "b.imgclf")
    assert back.augment is None and back.callbacks is None


def test_unsavable_estimators_and_attributes_are_refused(tmp_path):
    class MyCNN(CNNClassifier):
        pass

    with pytest.raises(TypeError, match="joblib.dump"):
        MyCNN().save(tmp_path / "sub.imgclf")
    clf = CNNClassifier()
    clf.classes_ = np.array([object(), object()], dtype=object)
    with pytest.raises(
        TypeError, match=r"fitted attribute classes_ .*object array holding object.*y.astype\(str\)"
    ):
        clf.save(tmp_path / "obj.imgclf")
    assert not os.listdir(tmp_path)  # nothing written


# ------------------------------------------------------------------ refusing
class _Payload:
    """A pickle that creates ``marker`` when unpickled, as hostile code would."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.mark.parametrize("how", ["pickle", "joblib", "joblib-compressed"])
def test_a_pickle_runs_nothing_unless_trusted(how, tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.imgclf"
    if how == "pickle":
        path.write_bytes(pickle.dumps(_Payload(marker)))
    else:
        joblib.dump(_Payload(marker), path, compress=3 if how == "joblib-compressed" else 0)
    with pytest.raises(ModelFileError, match=r"could run any code.*trusted=True"):
        imgclf.load(path)
    assert not marker.exists()
    # The caller vouches for the file: it is unpickled, and its code runs.
    with pytest.raises(ModelFileError, match="not an imgclf classifier"):
        imgclf.load(path, trusted=True)
    assert marker.exists()


def test_cli_names_the_pickle_and_the_fix(tmp_path, capsys):
    from imgclf.cli import main

    marker = tmp_path / "pwned"
    joblib.dump(_Payload(marker), tmp_path / "evil.imgclf")
    assert main(["predict", str(tmp_path / "evil.imgclf"), str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("imgclf: error: ") and "trusted=True" in err
    assert not marker.exists()


def test_old_joblib_files_load_when_trusted(fitted, tmp_path):
    clf, X = fitted
    path = tmp_path / "old.imgclf"
    joblib.dump(clf, path)  # what clf.save wrote before the safe format
    with pytest.raises(ModelFileError, match="is a pickle"):
        imgclf.load(path)
    back = imgclf.load(path, trusted=True)
    np.testing.assert_array_equal(back.predict_proba(X[:10]), clf.predict_proba(X[:10]))
    back.save(path)  # converted
    np.testing.assert_array_equal(
        imgclf.load(path).predict_proba(X[:10]), back.predict_proba(X[:10])
    )


def test_a_lambda_layer_in_the_network_is_refused(saved, tmp_path):
    keras = get_keras()
    inputs = keras.Input((8, 8, 1))
    hostile = keras.Model(inputs, keras.layers.Lambda(lambda x: x * 2)(inputs))
    hostile.save(tmp_path / "lambda.keras")
    network = (tmp_path / "lambda.keras").read_bytes()

    def swap(members):
        members["model.keras"] = network

    _rewrite(saved, tmp_path / "swapped.imgclf", swap)
    with pytest.raises(ModelFileError, match="cannot load in safe mode"):
        imgclf.load(tmp_path / "swapped.imgclf")


def test_only_imgclf_classes_are_rebuilt(saved, tmp_path):
    _edit_manifest(saved, tmp_path / "x.imgclf", lambda m: m.update(estimator="Popen"))
    with pytest.raises(ModelFileError, match="holds a 'Popen'; imgclf.load rebuilds only"):
        imgclf.load(tmp_path / "x.imgclf")


def test_an_old_keras_is_refused_unless_trusted(saved, monkeypatch):
    monkeypatch.setattr(get_keras(), "__version__", "3.8.0")
    with pytest.raises(ModelFileError, match=r"Keras 3.8.0 cannot load .* safely"):
        with pytest.warns(InconsistentVersionWarning, match="saved with Keras"):
            imgclf.load(saved)
    with pytest.warns(InconsistentVersionWarning):
        assert imgclf.load(saved, trusted=True).model_ is not None


# ------------------------------------------------------ damaged and foreign
def _assert_plain_damage_message(err):
    message = str(err.value)
    assert "not an imgclf model, or it is damaged" in message or "is damaged" in message
    assert not re.search(r": \d+\.?$", message)  # no bare cause such as ': 197'


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="No saved model"):
        imgclf.load(tmp_path / "missing.imgclf")
    with pytest.raises(ModelFileError, match="is a folder"):
        imgclf.load(tmp_path)


@pytest.mark.parametrize("seed", range(6))
def test_random_bytes_are_not_a_model(seed, tmp_path):
    rng = np.random.default_rng(seed)
    data = rng.integers(0, 256, size=int(rng.integers(1, 3000)), dtype=np.uint8).tobytes()
    if seed == 0:
        data = b"not a model"
    elif seed == 1:
        data = b"PK\x03\x04" + data  # starts like a zip
    path = tmp_path / "junk.imgclf"
    path.write_bytes(data)
    for trusted in (False, True):
        with pytest.raises(ModelFileError) as err:
            imgclf.load(path, trusted=trusted)
        _assert_plain_damage_message(err)


@pytest.mark.parametrize("fraction", [0.0005, 0.3, 0.9, 0.9999])
def test_truncated_file_is_damaged(saved, fraction, tmp_path):
    data = saved.read_bytes()
    path = tmp_path / "cut.imgclf"
    path.write_bytes(data[: max(1, int(len(data) * fraction))])
    with pytest.raises(ModelFileError, match="damaged") as err:
        imgclf.load(path)
    _assert_plain_damage_message(err)


def test_flipped_bytes_and_a_bad_manifest_are_damage(saved, tmp_path):
    data = bytearray(saved.read_bytes())
    with zipfile.ZipFile(saved) as zf:
        info = zf.getinfo("model.keras")
    data[info.header_offset + 200] ^= 0xFF  # inside the network: CRC check fails
    (tmp_path / "flip.imgclf").write_bytes(bytes(data))
    with pytest.raises(ModelFileError, match="damaged") as err:
        imgclf.load(tmp_path / "flip.imgclf")
    _assert_plain_damage_message(err)

    _edit_manifest(saved, tmp_path / "bad.imgclf", lambda m: m.update(params=["x"]))
    with pytest.raises(ModelFileError, match="damaged"):
        imgclf.load(tmp_path / "bad.imgclf")
    _edit_manifest(saved, tmp_path / "new.imgclf", lambda m: m.update(format_version=99))
    with pytest.raises(ModelFileError, match="later imgclf.*Upgrade imgclf"):
        imgclf.load(tmp_path / "new.imgclf")


def test_mutated_files_give_the_library_error(saved, tmp_path):
    """Seeded mutations of a good file (flips, cuts, cut-out spans): each loads
    or raises ModelFileError, never a raw zipfile / zlib / OS error."""
    data = saved.read_bytes()
    rng = np.random.default_rng(0)
    path = tmp_path / "mutant.imgclf"
    messages = set()
    for case in range(60):
        b = bytearray(data)
        if case % 3 == 0:
            for _ in range(rng.integers(1, 6)):
                b[rng.integers(len(b))] ^= int(rng.integers(1, 256))
        elif case % 3 == 1:
            b = b[: rng.integers(1, len(b))]
        else:
            start = int(rng.integers(len(b)))
            del b[start : start + int(rng.integers(1, 500))]
        path.write_bytes(bytes(b))
        try:
            imgclf.load(path)
        except ModelFileError as exc:
            messages.add(str(exc).split(": ", 1)[0])
            assert not re.search(r"\(\)|: \d+\.?$|Errno", str(exc)), str(exc)
    assert messages  # the mutations were noticed


def test_a_keras_file_is_told_apart(fitted, tmp_path):
    clf, _ = fitted
    clf.model_.save(tmp_path / "net.keras")
    with pytest.raises(ModelFileError, match="is a Keras model .*keras.models.load_model"):
        imgclf.load(tmp_path / "net.keras")


def test_version_mismatch_warns(fitted, saved, tmp_path):
    clf, X = fitted

    def older(manifest):
        manifest["versions"].update(imgclf="0.0.1", keras="3.3.0")

    _edit_manifest(saved, tmp_path / "old.imgclf", older)
    with pytest.warns(InconsistentVersionWarning) as record:
        back = imgclf.load(tmp_path / "old.imgclf")
    assert len(record) == 1
    message = str(record[0].message)
    assert "imgclf 0.0.1 (now" in message and "Keras 3.3.0 (now" in message
    assert "TensorFlow" not in message  # only what changed
    np.testing.assert_array_equal(back.predict_proba(X[:5]), clf.predict_proba(X[:5]))


def test_same_versions_load_silently(saved):
    with warnings.catch_warnings():
        warnings.simplefilter("error", InconsistentVersionWarning)
        warnings.simplefilter("error", UnsavedParameterWarning)
        imgclf.load(saved)


# ------------------------------------------------------------------ atomic
def test_interrupted_save_keeps_previous_file(fitted, saved, tmp_path, monkeypatch):
    clf, _ = fitted
    path = tmp_path / "model.imgclf"
    path.write_bytes(saved.read_bytes())
    before = path.read_bytes()
    real = zipfile.ZipFile.writestr

    def crash(self, name, data, *args, **kwargs):
        real(self, name, data, *args, **kwargs)
        if name == "model.keras":
            raise KeyboardInterrupt  # after the network's bytes reach the file

    monkeypatch.setattr(zipfile.ZipFile, "writestr", crash)
    with pytest.raises(KeyboardInterrupt):
        clf.save(path)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["model.imgclf"]  # no temporary file left behind


def test_import_does_not_load_tensorflow():
    code = "import sys, imgclf; imgclf.CNNClassifier(); print('tensorflow' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# ------------------------------------------------- untrusted files, bounded
@contextlib.contextmanager
def _deadline(seconds: float):
    """Fail (TimeoutError) instead of hanging: SIGALRM interrupts a blocking
    open or read in the main thread."""

    def expire(signum, frame):
        raise TimeoutError(f"still running after {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@contextlib.contextmanager
def _peak_memory(limit: int):
    """Fail if Python and NumPy allocate more than ``limit`` bytes at once inside."""
    tracemalloc.start()
    try:
        yield
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < limit, f"peak {peak:,} bytes"


def _members(source) -> dict:
    with zipfile.ZipFile(source) as zf:
        return {name: zf.read(name) for name in zf.namelist()}


def _zip(target, members: dict, compression=zipfile.ZIP_DEFLATED):
    with zipfile.ZipFile(target, "w", compression=compression) as zf:
        for name, data in members.items():
            zf.writestr(name, data)


def _zip_streamed(target, members: dict, name: str, chunk: bytes, times: int):
    """``members`` zipped (deflated), plus member ``name`` holding ``chunk``
    ``times`` over, written as a stream (a bomb when ``chunk`` is zeros)."""
    _zip(target, members)
    with zipfile.ZipFile(target, "a", compression=zipfile.ZIP_DEFLATED) as zf:
        with zf.open(name, "w") as out:
            for _ in range(times):
                out.write(chunk)


def _patch_header(path, name: str, local: int, central: int, fmt: str, value):
    """Set a field of member ``name``'s local header (at byte ``local``) and
    index entry (at ``central``) to ``value``."""
    data = bytearray(Path(path).read_bytes())
    with zipfile.ZipFile(path) as zf:
        start = zf.getinfo(name).header_offset
    packed = struct.pack(fmt, value)
    data[start + local : start + local + len(packed)] = packed
    at = data.index(b"PK\x01\x02")
    while True:
        name_len, extra_len, comment_len = struct.unpack("<HHH", data[at + 28 : at + 34])
        if data[at + 46 : at + 46 + name_len] == name.encode():
            data[at + central : at + central + len(packed)] = packed
            break
        at += 46 + name_len + extra_len + comment_len
    Path(path).write_bytes(bytes(data))


def test_a_manifest_bomb_is_refused_before_it_inflates(saved, tmp_path):
    members = _members(saved)
    manifest = members.pop("imgclf.json")
    path = tmp_path / "bomb.imgclf"
    # Valid JSON followed by 8 MiB of spaces: it deflates to a few KiB.
    _zip_streamed(path, members, "imgclf.json", manifest + b" " * (1 << 20), 8)
    assert path.stat().st_size < 100_000
    with _peak_memory(4 << 20), pytest.raises(ModelFileError) as err:
        imgclf.load(path)
    assert re.search(r"'imgclf.json' declares 8\.\d+ MiB .*decompression bomb", str(err.value))


def test_a_network_bomb_is_refused_without_a_temporary_file(saved, tmp_path, monkeypatch):
    members = _members(saved)
    del members["model.keras"]
    path = tmp_path / "bomb.imgclf"
    _zip_streamed(path, members, "model.keras", bytes(1 << 20), 100)  # 100 MiB of zeros
    assert path.stat().st_size < 200_000
    spool = tmp_path / "spool"
    spool.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(spool))
    with _peak_memory(4 << 20), pytest.raises(ModelFileError) as err:
        imgclf.load(path)
    assert re.search(r"'model.keras' declares 100 MiB .*decompression bomb", str(err.value))
    assert not os.listdir(spool)


def test_a_member_lying_about_its_size_is_not_believed(saved, tmp_path):
    members = _members(saved)
    manifest = members.pop("imgclf.json")
    path = tmp_path / "liar.imgclf"
    _zip_streamed(path, members, "imgclf.json", manifest + b" " * (1 << 20), 8)
    _patch_header(path, "imgclf.json", 22, 24, "<I", len(manifest))  # claims to be small
    with _peak_memory(4 << 20), pytest.raises(ModelFileError, match="damaged"):
        imgclf.load(path)


def test_inflating_is_counted_against_the_limit(saved, tmp_path):
    from imgclf._modelfile import copy_member

    with zipfile.ZipFile(saved) as zf, pytest.raises(ModelFileError, match="more than 1 KiB"):
        copy_member(zf, "model.keras", 1024, io.BytesIO(), str(saved))


def test_an_npy_header_declaring_a_huge_array_is_refused(saved, tmp_path):
    members = _members(saved)
    header = {"descr": "<f8", "fortran_order": False, "shape": (10**11,)}
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, header)
    members["arrays/0.npy"] = buffer.getvalue() + bytes(64)
    _zip(tmp_path / "npy.imgclf", members)
    with _peak_memory(4 << 20), pytest.raises(ModelFileError, match=r"arrays/0.npy: its header"):
        imgclf.load(tmp_path / "npy.imgclf")


def test_arrays_named_many_times_count_against_one_budget(saved, tmp_path):
    members = _members(saved)
    buffer = io.BytesIO()
    np.save(buffer, np.zeros(1 << 17))  # 1 MiB
    members["arrays/9.npy"] = buffer.getvalue()
    manifest = json.loads(members["imgclf.json"])
    manifest["params"]["junk"] = [{"array": {"file": "arrays/9.npy"}}] * 100
    members["imgclf.json"] = json.dumps(manifest).encode()
    _zip(tmp_path / "many.imgclf", members)
    with pytest.raises(ModelFileError, match=r"'arrays/9.npy' inflates to more than"):
        imgclf.load(tmp_path / "many.imgclf")


def test_a_zip_index_of_many_members_is_refused(saved, tmp_path):
    members = _members(saved)
    members.update({f"pad/{i}": b"" for i in range(1200)})
    _zip(tmp_path / "wide.imgclf", members)
    with pytest.raises(ModelFileError, match=r"index declares 1,203 members"):
        imgclf.load(tmp_path / "wide.imgclf")


@pytest.mark.parametrize(
    "how, message",
    [
        ("method 99", r"'imgclf.json' uses compression method 99"),
        ("lzma", r"'imgclf.json' uses compression method 14"),
        ("encrypted", r"'imgclf.json' is encrypted"),
    ],
)
def test_other_compression_and_encryption_are_refused(saved, tmp_path, how, message):
    path = tmp_path / "odd.imgclf"
    if how == "lzma":
        _zip(path, _members(saved), compression=zipfile.ZIP_LZMA)
    else:
        _zip(path, _members(saved))
        if how == "encrypted":
            _patch_header(path, "imgclf.json", 6, 8, "<H", 0x1)
        else:
            _patch_header(path, "imgclf.json", 8, 10, "<H", 99)
    with pytest.raises(ModelFileError, match=message):
        imgclf.load(path)


@pytest.mark.parametrize("size", [0, 1, 5_000])
def test_the_file_size_is_checked_before_reading(saved, tmp_path, monkeypatch, size):
    from imgclf import _modelfile

    path = tmp_path / "m.imgclf"
    path.write_bytes(saved.read_bytes()[:size])
    if size == 5_000:
        monkeypatch.setattr(_modelfile, "MAX_FILE_BYTES", 4_000)
        match = r"is 4.88 KiB, more than the 3.91 KiB"
    else:
        match = "empty" if size == 0 else "neither a file written by clf.save nor a pickle"
    with pytest.raises(ModelFileError, match=match):
        imgclf.load(path)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs named pipes (POSIX)")
@pytest.mark.parametrize("kind", ["fifo", "symlink to a fifo", "/dev/zero", "/dev/null"])
def test_a_special_file_is_refused_at_once(tmp_path, kind):
    path = tmp_path / "model.imgclf"
    if "fifo" in kind:
        os.mkfifo(tmp_path / "pipe")
        if kind == "fifo":
            path = tmp_path / "pipe"
        else:
            path.symlink_to(tmp_path / "pipe")
    else:
        if not os.path.exists(kind):
            pytest.skip(f"no {kind}")
        path.symlink_to(kind)
    with _deadline(10), pytest.raises(ModelFileError, match="not a regular file"):
        imgclf.load(path)
    with _deadline(10), pytest.raises(ModelFileError, match="not a regular file"):
        imgclf.load(path, trusted=True)


# ------------------------------------------- the manifest's schema, by field
TUPLE = "tuple"


@pytest.mark.parametrize(
    "field, value",
    [
        ("image_size_", {TUPLE: [8]}),
        ("image_size_", {TUPLE: [0, 8]}),
        ("image_size_", {TUPLE: [8, 8.5]}),
        ("image_size_", "8x8"),
        ("image_size_", {TUPLE: [10**9, 10**9]}),
        ("n_channels_", 2),
        ("n_channels_", "1"),
        ("n_channels_", True),
        ("batch_size_", 0),
        ("batch_size_", -16),
        ("batch_size_", "16"),
        ("batch_size_", 2**40),
        ("input_range_", {TUPLE: [16.0, 0.0]}),
        ("input_range_", {TUPLE: [0.0, "16"]}),
        ("input_range_", [0.0, 16.0]),
        ("input_range_", {TUPLE: [0.0, float("inf")]}),
        ("input_range_", {TUPLE: [float("nan"), 1.0]}),
        ("precision_", "float64"),
        ("interrupted_", 1),
        ("epochs_", -1),
        ("history_", {"dict": {"loss": ["low"]}}),
        ("history_", [1.0]),
        ("n_features_in_", 0),
        ("classes_", ["a", "b", "c"]),
        ("classes_", None),
    ],
)
def test_a_bad_fitted_attribute_is_named(saved, tmp_path, field, value):
    _edit_manifest(saved, tmp_path / "bad.imgclf", lambda m: m["attributes"].update({field: value}))
    with pytest.raises(ModelFileError, match=rf"imgclf.json attributes\.{field}: expected"):
        imgclf.load(tmp_path / "bad.imgclf")


@pytest.mark.parametrize(
    "field, value, match",
    [
        ("network", "yes", "network: expected true or false"),
        ("params", [], "not as clf.save writes it|params: expected"),
        ("attributes", None, "attributes: expected"),
        ("dropped", [3], "dropped: expected parameter names"),
        ("versions", {"keras": 3}, "versions: expected version strings"),
        ("estimator", 5, "estimator: expected a class name"),
        ("format_version", True, "no format version"),
    ],
)
def test_a_bad_top_level_field_is_named(saved, tmp_path, field, value, match):
    _edit_manifest(saved, tmp_path / "bad.imgclf", lambda m: m.update({field: value}))
    with pytest.raises(ModelFileError, match=match):
        imgclf.load(tmp_path / "bad.imgclf")


@pytest.mark.parametrize(
    "param, value", [("tta", -1), ("epochs", "many"), ("learning_rate", 0), ("verbose", 7)]
)
def test_a_bad_parameter_is_named(saved, tmp_path, param, value):
    _edit_manifest(saved, tmp_path / "bad.imgclf", lambda m: m["params"].update({param: value}))
    with pytest.raises(ModelFileError, match=rf"parameters clf.save would not .*\n.*{param}="):
        imgclf.load(tmp_path / "bad.imgclf")


def test_a_missing_attribute_and_attributes_without_a_network(saved, tmp_path):
    _edit_manifest(saved, tmp_path / "a.imgclf", lambda m: m["attributes"].pop("image_size_"))
    with pytest.raises(ModelFileError, match=r"attributes.image_size_: missing"):
        imgclf.load(tmp_path / "a.imgclf")
    _edit_manifest(saved, tmp_path / "b.imgclf", lambda m: m.update(network=False))
    with pytest.raises(ModelFileError, match=r"network: false, but the file has fitted"):
        imgclf.load(tmp_path / "b.imgclf")


def test_an_unknown_attribute_is_ignored_with_a_warning(fitted, saved, tmp_path):
    clf, X = fitted
    _edit_manifest(saved, tmp_path / "a.imgclf", lambda m: m["attributes"].update(shiny_=1))
    with pytest.warns(InconsistentVersionWarning, match=r"attributes \['shiny_'\].*ignored"):
        back = imgclf.load(tmp_path / "a.imgclf")
    assert not hasattr(back, "shiny_")
    np.testing.assert_array_equal(back.predict(X[:5]), clf.predict(X[:5]))


@pytest.mark.parametrize("n_classes", [2, 4, 12])
def test_classes_must_match_the_network_outputs(saved, tmp_path, n_classes):
    members = _members(saved)
    buffer = io.BytesIO()
    np.save(buffer, np.array([f"c{i:02d}" for i in range(n_classes)]))
    members["arrays/0.npy"] = buffer.getvalue()
    _zip(tmp_path / "classes.imgclf", members)
    with pytest.raises(
        ModelFileError,
        match=rf"attributes.classes_: {n_classes} classes for a network of output shape \(3,\)",
    ):
        imgclf.load(tmp_path / "classes.imgclf")


def test_duplicate_classes_are_refused(saved, tmp_path):
    members = _members(saved)
    buffer = io.BytesIO()
    np.save(buffer, np.array(["a", "b", "a"]))
    members["arrays/0.npy"] = buffer.getvalue()
    _zip(tmp_path / "dup.imgclf", members)
    with pytest.raises(ModelFileError, match=r"attributes.classes_: expected each label once"):
        imgclf.load(tmp_path / "dup.imgclf")


@pytest.mark.parametrize("field, value", [("image_size_", {TUPLE: [9, 9]}), ("n_channels_", 3)])
def test_the_input_shape_must_match_the_network(saved, tmp_path, field, value):
    _edit_manifest(
        saved, tmp_path / "shape.imgclf", lambda m: m["attributes"].update({field: value})
    )
    with pytest.raises(
        ModelFileError, match=rf"attributes.{field}: the network takes images of shape \(8, 8, 1\)"
    ):
        imgclf.load(tmp_path / "shape.imgclf")


@pytest.mark.parametrize("depth", [40, 1_000, 100_000])
def test_deeply_nested_json_is_refused(saved, tmp_path, depth):
    members = _members(saved)
    text = members["imgclf.json"].decode()
    nested = "[" * depth + "]" * depth
    members["imgclf.json"] = text.replace('"dropped": []', f'"dropped": {nested}').encode()
    assert members["imgclf.json"] != text.encode()
    _zip(tmp_path / "deep.imgclf", members)
    with pytest.raises(ModelFileError, match=r"nest"):
        imgclf.load(tmp_path / "deep.imgclf")


# ------------------------------------------------------- paths in the file
def test_every_path_parameter_of_the_rules_tables_is_reset():
    from imgclf._manifest import PATH_PARAMETERS
    from imgclf._params import PATH

    for cls in (CNNClassifier, TransferClassifier):
        for name, rule in cls._parameter_rules.items():
            if PATH in rule.rules:
                assert name in PATH_PARAMETERS, name
    assert set(PATH_PARAMETERS) - {"backbone"} <= set(TransferClassifier._parameter_rules)


def test_a_checkpoint_path_in_the_file_is_never_acted_on(fitted, saved, tmp_path, small_digits):
    clf, X = fitted
    victim = tmp_path / "precious.txt"
    victim.write_text("keep me")
    _edit_manifest(
        saved, tmp_path / "m.imgclf", lambda m: m["params"].update(checkpoint=str(victim))
    )
    with pytest.warns(UnsavedParameterWarning, match=r"names paths .*checkpoint='.*precious.txt'"):
        back = imgclf.load(tmp_path / "m.imgclf")
    assert back.checkpoint is None
    np.testing.assert_array_equal(back.predict(X[:5]), clf.predict(X[:5]))
    _, y = small_digits
    back.set_params(epochs=1, warm_start=True).fit(X[:60], np.array(["a", "b", "c"])[y[:60]])
    assert victim.read_text() == "keep me"
    assert sorted(os.listdir(tmp_path)) == ["m.imgclf", "precious.txt"]


def test_transfer_path_parameters_are_reset(fitted_mobilenet_transfer, tmp_path):
    clf, X = fitted_mobilenet_transfer
    clf.save(tmp_path / "t.imgclf")
    weights = tmp_path / "w.weights.h5"
    weights.write_bytes(b"not weights")

    def edit(manifest):
        manifest["params"].update(
            memory={"path": str(tmp_path / "features")},
            weights=str(weights),
            backbone=str(tmp_path / "net.keras"),
            cache=str(tmp_path / "cache"),
        )

    _edit_manifest(tmp_path / "t.imgclf", tmp_path / "edited.imgclf", edit)
    with pytest.warns(UnsavedParameterWarning, match="names paths") as record:
        back = imgclf.load(tmp_path / "edited.imgclf")
    message = str(record[-1].message)
    for name in ("memory", "weights", "backbone", "cache"):
        assert f"{name}=" in message
    assert (back.memory, back.weights, back.backbone, back.cache) == (
        None,
        "imagenet",
        "mobilenet_v2",
        None,
    )
    np.testing.assert_array_equal(back.predict_proba(X[:4]), clf.predict_proba(X[:4]))
    assert sorted(os.listdir(tmp_path)) == ["edited.imgclf", "t.imgclf", "w.weights.h5"]


def test_pyproject_requires_the_keras_load_accepts():
    import tomllib

    from imgclf._manifest import SAFE_KERAS

    pyproject = Path(__file__).resolve().parents[1] / "pyproject.toml"
    if not pyproject.exists():
        pytest.skip("not run from a source tree")
    dependencies = tomllib.loads(pyproject.read_text())["project"]["dependencies"]
    (keras,) = [d for d in dependencies if re.match(r"keras\b", d)]
    floor = tuple(int(p) for p in re.search(r">=\s*([\d.]+)", keras).group(1).split(".")[:2])
    assert floor >= SAFE_KERAS


def test_a_network_that_gives_no_probabilities_is_refused(saved, tmp_path):
    keras = get_keras()
    inputs = keras.Input((8, 8, 1))
    logits = keras.layers.Dense(3)(keras.layers.Flatten()(inputs))  # no softmax
    keras.Model(inputs, logits).save(tmp_path / "logits.keras")
    members = _members(saved)
    members["model.keras"] = (tmp_path / "logits.keras").read_bytes()
    _zip(tmp_path / "logits.imgclf", members)
    with pytest.raises(ModelFileError, match=r"model.keras: the network gives .* not 3 class prob"):
        imgclf.load(tmp_path / "logits.imgclf")
