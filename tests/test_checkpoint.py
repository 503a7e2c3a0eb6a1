"""The ``checkpoint`` file: every schedule and early-stopping setting of both
estimators resumes an interrupted fit, and a damaged, forged or stale file is
set aside (never deleted) with a warning while the fit starts afresh."""

import warnings

import numpy as np
import pytest

from imgclf import CNNClassifier, TransferClassifier
from imgclf._backend import get_keras

SCHEDULES = [None, "plateau", "one_cycle", "cosine"]


@pytest.fixture(scope="module")
def data(digits):
    """60 digits of classes 0-2 as uint8 (8, 8, 1) images: a fit epoch is a few batches."""
    _, images, y = digits
    keep = np.flatnonzero(y < 3)[:60]
    return np.round(images[keep] / 16 * 255).astype(np.uint8)[..., None], y[keep]


def _stop_after(n: int):
    """A callback raising ``KeyboardInterrupt`` once ``n`` epochs of this fit
    call have ended (at the start of the next one)."""
    keras = get_keras()

    class Stop(keras.callbacks.Callback):
        ended = 0

        def on_epoch_begin(self, epoch, logs=None):
            if self.ended == n:
                raise KeyboardInterrupt("stopped by the test")

        def on_epoch_end(self, epoch, logs=None):
            self.ended += 1

    return Stop()


def _tiny_backbone():
    """A backbone of two small layers, so a two-stage TransferClassifier fit
    takes a second."""
    keras = get_keras()
    inputs = keras.Input((8, 8, 1), name="pixels")
    x = keras.layers.Rescaling(1 / 255, name="scale")(inputs)
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="c1")(x)
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="c2")(x)
    # Named throughout: the parameters' fingerprint (which resuming needs to
    # match) holds the backbone's configuration, names included.
    return keras.Model(inputs, x, name="tiny")


def _estimator(kind: str, path, schedule, early_stopping: bool, **extra):
    common = dict(
        batch_size=16,
        random_state=0,
        lr_schedule=schedule,
        early_stopping=early_stopping,
        checkpoint=path,
        **extra,
    )
    if kind == "cnn":
        return CNNClassifier(filters=2, epochs=4, **common)
    return TransferClassifier(
        backbone=_tiny_backbone(),
        weights=None,
        image_size=8,
        epochs=2,
        fine_tune_epochs=2,
        fine_tune_layers=1,
        **common,
    )


def _quiet_fit(clf, X, y):
    """Fit, failing on any warning (a resumed fit has nothing to warn about)."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        return clf.fit(X, y)


def test_the_default_settings_write_a_checkpoint(data, tmp_path):
    """One-cycle with early stopping, which watches from the second of two
    epochs: the first epoch's checkpoint holds early stopping's "no best
    yet" (it once failed there)."""
    X, y = data
    path = tmp_path / "run.ckpt"
    keras = get_keras()
    seen = []

    class Look(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            seen.append(path.is_file())

    clf = CNNClassifier(filters=2, epochs=2, random_state=0, checkpoint=path, callbacks=[Look()])
    _quiet_fit(clf, X, y)
    assert seen == [True, True] and clf.interrupted_ is False and not path.exists()


MATRIX = [
    pytest.param(kind, schedule, early, id=f"{kind}-{schedule}-{'es' if early else 'no_es'}")
    for kind in ("cnn", "transfer")
    for schedule in SCHEDULES
    for early in (True, False)
]


@pytest.mark.slow
@pytest.mark.parametrize(("kind", "schedule", "early"), MATRIX)
def test_every_setting_is_interrupted_and_resumed(data, tmp_path, kind, schedule, early):
    """Stopped after the first epoch (early stopping not yet watching under a
    per-batch schedule), resumed and stopped after the third (for the
    transfer estimator: in its fine-tune stage), resumed to the end."""
    X, y = data
    path = tmp_path / "run.ckpt"
    first = _estimator(kind, path, schedule, early, callbacks=[_stop_after(1)])
    with pytest.warns(UserWarning, match="after 1 epoch"), pytest.raises(KeyboardInterrupt):
        first.fit(X, y)
    assert first.interrupted_ is True and path.is_file()

    second = _estimator(kind, path, schedule, early, callbacks=[_stop_after(2)])
    with pytest.warns(UserWarning, match="after 3 epoch"), pytest.raises(KeyboardInterrupt):
        second.fit(X, y)
    assert second.interrupted_ is True and path.is_file()
    assert second.history_["loss"][:1] == first.history_["loss"]

    last = _quiet_fit(_estimator(kind, path, schedule, early), X, y)
    assert last.interrupted_ is False and not path.exists()
    assert last.history_["loss"][:3] == second.history_["loss"]
    if not early:  # nothing stops it early: every planned epoch ran
        assert len(last.history_["loss"]) == 4
    if kind == "transfer":
        assert last.history_["stage"][:3] == [1.0, 1.0, 2.0]
    assert last.predict(X[:5]).shape == (5,)


# ------------------------------------------------ damaged, forged, stale files
PARAMS = dict(filters=2, batch_size=16, epochs=3, random_state=0, lr_schedule="one_cycle")


class _Probe(Exception):
    """Raised by :func:`_probe` once the fit has decided how to start."""


def _probe(clf, seen: dict):
    """A callback that records, when the first epoch begins (the checkpoint
    is then read and checked, or set aside), how many epochs the fit resumes
    from (the first epoch's number: one stage), and stops the fit there: a
    fit's whole path up to training, cheaply."""
    keras = get_keras()

    class Probe(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            seen["epochs"] = epoch
            raise _Probe

    return Probe()


@pytest.fixture(scope="module")
def genuine(data, tmp_path_factory):
    """The bytes of a checkpoint written after epoch 1 of 3 (``PARAMS`` on ``data``)."""
    X, y = data
    path = tmp_path_factory.mktemp("genuine") / "run.ckpt"
    clf = CNNClassifier(checkpoint=path, callbacks=[_stop_after(1)], **PARAMS)
    with pytest.warns(UserWarning, match="after 1 epoch"), pytest.raises(KeyboardInterrupt):
        clf.fit(X, y)
    return path.read_bytes()


def _members(blob: bytes) -> dict:
    import io

    with np.load(io.BytesIO(blob), allow_pickle=False) as npz:
        return {key: npz[key] for key in npz.files}


def _pack(members: dict) -> bytes:
    import io

    buffer = io.BytesIO()
    np.savez(buffer, **members)
    return buffer.getvalue()


def _edit_meta(blob: bytes, edit) -> bytes:
    """``blob`` with its JSON header passed through ``edit`` (which changes it in place)."""
    import json

    members = _members(blob)
    meta = json.loads(members["meta"].tobytes())
    edit(meta)
    members["meta"] = np.frombuffer(json.dumps(meta).encode(), np.uint8)
    return _pack(members)


def _outcome(path, blob: bytes, data) -> tuple[str, list[str]]:
    """Put ``blob`` at ``path`` and start a fit from it: ``("resumed", [])``
    or ``("fresh", warnings)``; any other exception propagates."""
    X, y = data
    path.write_bytes(blob)
    seen: dict = {}
    clf = CNNClassifier(checkpoint=path, **PARAMS)
    clf.set_params(callbacks=[_probe(clf, seen)])
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        with pytest.raises(_Probe):
            clf.fit(X, y)
    messages = [str(w.message) for w in record if issubclass(w.category, UserWarning)]
    return ("resumed" if seen["epochs"] == 1 else "fresh"), messages


def _set(key, value):
    def edit(meta):
        meta[key] = value

    return edit


def _set_in(outer, key, value):
    def edit(meta):
        meta[outer][key] = value

    return edit


def _delete(key):
    def edit(meta):
        del meta[key]

    return edit


FORGED_META = {
    "stage_epochs": _set("stage_epochs", 1000),
    "stage": _set("stage", 2),
    "epochs": _set("epochs", "1"),
    "complete": _set("complete", "no"),
    "best": _set("best", "inf"),
    "best_epoch": _set("best_epoch", -3),
    "seed": _set("seed", 12345),
    "history": _delete("history"),
    "history.loss": _set_in("history", "loss", [None]),
    "history.stage": _set_in("history", "stage", [7.0]),
    "callbacks": _set("callbacks", []),
    "callbacks.learning_rate": _set_in("callbacks", "learning_rate", 1e9),
    "callbacks.EarlyStopping": _set_in("callbacks", "EarlyStopping", {"wait": "x"}),
    "unknown": _set("extra", 1),
}


def test_the_genuine_checkpoint_is_resumed(genuine, data, tmp_path):
    assert _outcome(tmp_path / "run.ckpt", genuine, data) == ("resumed", [])


@pytest.mark.parametrize("field", sorted(FORGED_META))
def test_a_forged_header_field_is_set_aside(genuine, data, tmp_path, field):
    path = tmp_path / "run.ckpt"
    blob = _edit_meta(genuine, FORGED_META[field])
    outcome, messages = _outcome(path, blob, data)
    assert outcome == "fresh" and len(messages) == 1
    assert "run.ckpt" in messages[0] and "cannot be resumed from" in messages[0]
    assert field.split(".")[-1] in messages[0] or field == "unknown"
    assert (tmp_path / "run.ckpt.bad-1").read_bytes() == blob  # set aside, untouched
    assert not path.exists()


def _replace_member(name, value):
    def edit(members):
        members[name] = value(members[name]) if callable(value) else value

    return edit


FORGED_MEMBERS = {
    "shape": _replace_member("latest_0", np.zeros((1, 2), np.float32)),
    "dtype": _replace_member("latest_0", lambda a: a.astype(np.float64)),
    "nan": _replace_member("kept_1", lambda a: np.full_like(a, np.nan)),
    "missing": lambda members: members.pop("kept_0"),
    "extra": _replace_member("latest_99", np.zeros(3, np.float32)),
    "meta_not_text": _replace_member("meta", np.zeros(3, np.float32)),
    "meta_not_json": _replace_member("meta", np.frombuffer(b"{not json", np.uint8)),
    "meta_deep": _replace_member("meta", np.frombuffer(b"[" * 100_000, np.uint8)),
    "meta_not_object": _replace_member("meta", np.frombuffer(b"[1, 2]", np.uint8)),
}


@pytest.mark.parametrize("kind", sorted(FORGED_MEMBERS))
def test_a_forged_member_is_set_aside(genuine, data, tmp_path, kind):
    members = _members(genuine)
    FORGED_MEMBERS[kind](members)
    blob = _pack(members)
    outcome, messages = _outcome(tmp_path / "run.ckpt", blob, data)
    assert outcome == "fresh" and len(messages) == 1 and "cannot be resumed from" in messages[0]
    assert (tmp_path / "run.ckpt.bad-1").read_bytes() == blob


def test_a_set_aside_file_never_overwrites_another(genuine, data, tmp_path):
    (tmp_path / "run.ckpt.bad-1").write_bytes(b"an earlier one")
    outcome, messages = _outcome(tmp_path / "run.ckpt", b"the user's notes", data)
    assert outcome == "fresh" and "run.ckpt.bad-2" in messages[0]
    assert (tmp_path / "run.ckpt.bad-1").read_bytes() == b"an earlier one"
    assert (tmp_path / "run.ckpt.bad-2").read_bytes() == b"the user's notes"


@pytest.mark.slow
def test_stage_epochs_out_of_range_trains_afresh_to_the_end(genuine, data, tmp_path):
    """The forged file once made the fit stop silently after the epochs it held."""
    X, y = data
    path = tmp_path / "run.ckpt"
    path.write_bytes(_edit_meta(genuine, _set("stage_epochs", 1000)))
    with pytest.warns(UserWarning, match="'stage_epochs' is not an integer from 0 to 3"):
        clf = CNNClassifier(checkpoint=path, **PARAMS).fit(X, y)
    assert len(clf.history_["loss"]) == 3 and clf.interrupted_ is False
    assert not path.exists() and (tmp_path / "run.ckpt.bad-1").exists()


# ------------------------------------------------------------ special files
@pytest.fixture
def alarm():
    """Fail a test that takes more than 30 s (a read that hangs) instead of hanging."""
    import signal

    def ring(signum, frame):
        raise TimeoutError("the checkpoint was read without bound")

    previous = signal.signal(signal.SIGALRM, ring)
    signal.alarm(30)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


def test_a_directory_is_refused_at_the_start(data, tmp_path):
    X, y = data
    from imgclf.exceptions import InputError

    clf = CNNClassifier(checkpoint=tmp_path, **PARAMS)
    clf.set_params(callbacks=[_probe(clf, {})])  # no training may start
    with pytest.raises(InputError, match=r"checkpoint=.* is a directory.*fit\.ckpt"):
        clf.fit(X, y)
    assert not hasattr(clf, "model_")


@pytest.mark.parametrize("kind", ["fifo", "dev_zero"])
def test_a_special_file_is_refused_without_reading_it(data, tmp_path, alarm, kind):
    import os

    from imgclf import _checkpoint
    from imgclf.exceptions import InputError

    X, y = data
    path = tmp_path / "run.ckpt"
    if kind == "fifo":
        os.mkfifo(path)
    else:
        os.symlink("/dev/zero", path)
    clf = CNNClassifier(checkpoint=path, **PARAMS)
    clf.set_params(callbacks=[_probe(clf, {})])
    with pytest.raises(InputError, match="not a regular file"):
        clf.fit(X, y)
    # Read directly (as if it had become one after the check), it is not opened for reading.
    with pytest.raises(_checkpoint.Unusable, match="not a regular file"):
        _checkpoint.read_meta(str(path))


def test_a_file_replaced_during_the_fit_is_not_deleted(data, tmp_path):
    """The file is removed at the end only if it is still the one the fit wrote."""
    X, y = data
    path = tmp_path / "run.ckpt"
    keras = get_keras()

    class Replace(keras.callbacks.Callback):
        def on_train_end(self, logs=None):  # after the fit's own last write
            path.write_bytes(b"someone else's file")

    params = {**PARAMS, "epochs": 1}
    _quiet_fit(CNNClassifier(checkpoint=path, callbacks=[Replace()], **params), X, y)
    assert path.read_bytes() == b"someone else's file"


# ----------------------------------------------------------------------- fuzz
_JUNK = [None, -1, 0, 1, 2, 3, 1000, 2.5, 1e308, "x", "", [], {}, True, [1.0], {"a": 1}]


def _mutant(blob: bytes, rng) -> bytes:
    """``blob`` with random bytes flipped, cut short, padded, or a member edited."""
    import json

    kind = rng.choice(["flip", "truncate", "insert", "meta", "member"])
    if kind == "flip":
        data = bytearray(blob)
        for _ in range(rng.integers(1, 5)):
            data[rng.integers(len(data))] ^= 1 << int(rng.integers(8))
        return bytes(data)
    if kind == "truncate":
        return blob[: rng.integers(len(blob))]
    if kind == "insert":
        at = rng.integers(len(blob) + 1)
        return blob[:at] + rng.bytes(int(rng.integers(1, 64))) + blob[at:]
    members = _members(blob)
    if kind == "meta":
        meta = json.loads(members["meta"].tobytes())
        target = meta
        key = str(rng.choice(sorted(meta)))
        if isinstance(meta[key], dict) and meta[key] and rng.random() < 0.5:
            target, key = meta[key], str(rng.choice(sorted(meta[key])))
        target[key] = _JUNK[rng.integers(len(_JUNK))]
        members["meta"] = np.frombuffer(json.dumps(meta).encode(), np.uint8)
    else:
        name = str(rng.choice(sorted(k for k in members if k != "meta")))
        change = rng.integers(4)
        if change == 0:
            del members[name]
        elif change == 1:
            members[name] = members[name].reshape(-1)[:-1] if members[name].size else np.ones(1)
        elif change == 2:
            members[name] = members[name].astype(np.float16)
        else:
            members[name.rpartition("_")[0] + "_77"] = members[name]  # one too many
    return _pack(members)


def _fuzz(genuine, data, folder, n: int, seed: int) -> dict:
    """Start ``n`` fits from mutated checkpoints, each in its own folder, with
    a 60 s deadline: a count of each outcome; fails on anything else."""
    import signal

    def ring(signum, frame):
        raise TimeoutError("a checkpoint read did not end")

    rng = np.random.default_rng(seed)
    counts = {"resumed": 0, "set aside": 0, "replaced": 0}
    previous = signal.signal(signal.SIGALRM, ring)
    try:
        for case in range(n):
            where = folder / str(case)
            where.mkdir()
            blob = _mutant(genuine, rng)
            signal.alarm(60)
            outcome, messages = _outcome(where / "run.ckpt", blob, data)
            signal.alarm(0)
            left = sorted(p.name for p in where.iterdir())
            if outcome == "resumed":
                assert messages == [] and left == ["run.ckpt"], (case, messages, left)
                counts["resumed"] += 1
            elif "not resuming from" in messages[0]:  # an imgclf checkpoint of another fit
                assert len(messages) == 1 and left == ["run.ckpt"], (case, messages, left)
                counts["replaced"] += 1
            else:
                assert len(messages) == 1 and "cannot be resumed from" in messages[0], messages
                assert left == ["run.ckpt.bad-1"], (case, left)
                assert (where / "run.ckpt.bad-1").read_bytes() == blob
                counts["set aside"] += 1
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    return counts


@pytest.mark.slow
def test_mutated_checkpoints_resume_or_start_afresh(genuine, data, tmp_path):
    counts = _fuzz(genuine, data, tmp_path, n=50, seed=0)  # 2 resumed, 45 set aside, 3 replaced
    print(counts)
    assert sum(counts.values()) == 50 and counts["set aside"] >= 25, counts


@pytest.mark.benchmark
def test_many_mutated_checkpoints_resume_or_start_afresh(genuine, data, tmp_path):
    # Seed 1 gave 55 resumed, 1,875 set aside, 70 replaced (a fingerprint
    # edited): 0 raw errors, 0 hangs, in 1,462 s wall on a loaded machine.
    counts = _fuzz(genuine, data, tmp_path, n=2000, seed=1)
    print(counts)
    assert sum(counts.values()) == 2000


def test_a_checkpoint_that_cannot_be_written_warns_and_training_goes_on(data, tmp_path):
    X, y = data
    folder = tmp_path / "runs"
    keras = get_keras()

    class Block(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):  # a file where its folder would go
            if not folder.exists():
                folder.write_bytes(b"")

    params = {**PARAMS, "epochs": 2}
    clf = CNNClassifier(checkpoint=folder / "run.ckpt", callbacks=[Block()], **params)
    with pytest.warns(UserWarning, match="could not be written") as record:
        clf.fit(X, y)
    assert len(record) == 1 and clf.interrupted_ is False
    assert len(clf.history_["loss"]) == 2
