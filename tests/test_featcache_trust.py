"""The feature cache (``TransferClassifier(memory=...)``) uses no entry it has
not verified: a damaged, foreign, planted or special file at an entry's path
is recomputed and replaced, with one warning per fit naming the folder and
the count, and the fit ends exactly as a fit on a clean cache does.

Some planted entries carry a correct digest (``forge``): the length the
backbone gives and finiteness are checked besides the digest.
"""

from __future__ import annotations

import os
import shutil
import struct
import warnings

import numpy as np
import pytest

from imgclf import TransferClassifier
from imgclf import _featcache as featcache
from imgclf._featcache import FeatureCacheWarning, FeatureStore

HEADER = struct.Struct("<8sII16s16s16s")  # the entry header of featcache (format 2)
N_DAMAGED = 5


def clf(backbone, memory=None):
    return TransferClassifier(
        backbone=backbone,
        epochs=2,
        fine_tune_epochs=0,
        batch_size=16,
        random_state=0,
        memory=memory,
    )


def entries(root) -> list[str]:
    return sorted(
        os.path.join(d, f) for d, _, files in os.walk(root) for f in files if f.endswith(".f32")
    )


@pytest.fixture(scope="module")
def clean(tiny_backbone, small_digits, tmp_path_factory):
    """A cache filled by one fit, and what a fit on it gives."""
    X, y = small_digits[0][:40], small_digits[1][:40]
    root = tmp_path_factory.mktemp("clean")
    clf(tiny_backbone, str(root)).fit(X, y)
    fitted = clf(tiny_backbone, str(root)).fit(X, y)
    return root, X, y, fitted.predict_proba(X), fitted.history_["loss"]


def parse(path):
    data = open(path, "rb").read()
    magic, version, length, network, image, digest = HEADER.unpack_from(data)
    return network, image, np.frombuffer(data[HEADER.size :], "<f4").copy()


def entry_bytes(network, image, payload: bytes, length: int, *, forge: bool, version=2) -> bytes:
    """An entry's bytes; with ``forge`` its digest is made to match."""
    digest = b"\0" * 16
    if forge:
        digest = featcache._entry_digest(length, network, image, payload)
    return HEADER.pack(b"IMGCLFFT", version, length, network, image, digest) + payload


def replace_file(path, data: bytes) -> None:
    os.unlink(path)
    with open(path, "wb") as f:
        f.write(data)


def damage(path, kind: str) -> None:
    """Make the entry at ``path`` unusable in the way ``kind`` names."""
    network, image, row = parse(path)
    raw = open(path, "rb").read()
    if kind == "wrong_length":  # a correct digest, twice the features
        twice = np.concatenate([row, row]).astype("<f4").tobytes()
        replace_file(path, entry_bytes(network, image, twice, 2 * len(row), forge=True))
    elif kind == "wrong_dtype":  # float64 features, header and digest to match
        wide = row.astype("<f8").tobytes()
        replace_file(path, entry_bytes(network, image, wide, 2 * len(row), forge=True))
    elif kind in ("nan", "inf"):
        bad = row.copy()
        bad[len(bad) // 2] = np.nan if kind == "nan" else np.inf
        replace_file(path, entry_bytes(network, image, bad.tobytes(), len(row), forge=True))
    elif kind == "flipped_bit":  # the top exponent bit of one feature
        data = bytearray(raw)
        data[HEADER.size + 4 * (len(row) // 3) + 3] ^= 0x40
        replace_file(path, bytes(data))
    elif kind == "scaled":
        replace_file(path, raw[: HEADER.size] + (row * 1e6).astype("<f4").tobytes())
    elif kind == "old_format":  # format 1: a 48-byte header and no digest
        old = struct.pack("<8sII16s16s", b"IMGCLFFT", 1, len(row), network, image)
        replace_file(path, old + row.tobytes())
    elif kind == "truncated":
        replace_file(path, raw[: len(raw) // 2])
    elif kind == "fifo":
        os.unlink(path)
        os.mkfifo(path)
    elif kind == "dev_zero":
        os.unlink(path)
        os.symlink("/dev/zero", path)
    else:
        raise ValueError(kind)


KINDS = (
    "wrong_length",
    "wrong_dtype",
    "nan",
    "inf",
    "flipped_bit",
    "scaled",
    "old_format",
    "truncated",
    "fifo",
    "dev_zero",
)


def cache_warnings(record) -> list[str]:
    return [str(w.message) for w in record if issubclass(w.category, FeatureCacheWarning)]


# Two kinds in the fast tier; every kind with the slow tests (a second or two
# each alone, several seconds on a loaded machine).
@pytest.mark.parametrize(
    "kind",
    [k if k in ("flipped_bit", "fifo") else pytest.param(k, marks=pytest.mark.slow) for k in KINDS],
)
def test_damaged_entries_are_recomputed_and_replaced(
    kind, tiny_backbone, clean, computed, tmp_path
):
    if kind in ("fifo", "dev_zero") and not hasattr(os, "mkfifo"):
        pytest.skip("POSIX only")
    source, X, y, proba, loss = clean
    root = tmp_path / "memory"
    shutil.copytree(source, root)
    files = entries(root)
    chosen = [files[i] for i in range(0, 5 * N_DAMAGED, 5)]
    for path in chosen:
        damage(path, kind)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        fitted = clf(tiny_backbone, str(root)).fit(X, y)
    messages = cache_warnings(record)
    assert len(messages) == 1, messages  # one a fit, not one an entry
    assert f"held {N_DAMAGED} entries" in messages[0]
    assert f"{N_DAMAGED} of the {N_DAMAGED} replaced" in messages[0]
    assert os.path.dirname(chosen[0]) in messages[0]
    assert sum(computed) == N_DAMAGED  # only the damaged ones
    assert fitted.history_["loss"] == pytest.approx(loss, rel=1e-5)
    np.testing.assert_allclose(fitted.predict_proba(X), proba, atol=1e-6)
    for path in chosen:  # replaced by good entries, as a regular file each
        assert os.path.isfile(path) and not os.path.islink(path)
        _, _, row = parse(path)
        assert np.isfinite(row).all() and len(row) == 8
    computed.clear()
    with warnings.catch_warnings():
        warnings.simplefilter("error", FeatureCacheWarning)
        clf(tiny_backbone, str(root)).fit(X, y)
    assert computed == []


def test_store_checks_length_digest_and_values(tmp_path):
    network = bytes(range(16))
    keys = featcache.array_keys(np.arange(12, dtype=np.uint8).reshape(3, 2, 2, 1))
    rows = np.random.default_rng(0).normal(size=(3, 6)).astype(np.float32)
    FeatureStore.open(str(tmp_path), network).put(keys, rows)
    store = FeatureStore.reader(str(tmp_path), network, length=6)
    found, length = store.get(keys)
    assert length == 6 and all(np.array_equal(f, r) for f, r in zip(found, rows, strict=True))
    # The backbone gives 7 features: entries of 6 are foreign.
    other = FeatureStore.reader(str(tmp_path), network, length=7)
    assert other.get(keys)[0] == [None, None, None]
    with pytest.warns(FeatureCacheWarning, match=r"held 3 entries .* 0 of the 3 replaced"):
        other.report()
    # A row that is not finite is never stored.
    store.put(keys[:1], np.full((1, 6), np.nan, np.float32))
    assert np.array_equal(store.get(keys[:1])[0][0], rows[0])


@pytest.mark.slow
def test_entries_all_of_another_length_are_recomputed(tiny_backbone, clean, computed, tmp_path):
    """Entries agreeing among themselves on the wrong length (a planted set):
    the length the backbone gives decides, not the first entry read."""
    source, X, y, proba, _ = clean
    root = tmp_path / "memory"
    shutil.copytree(source, root)
    files = entries(root)
    for path in files:
        damage(path, "wrong_length")
    with pytest.warns(FeatureCacheWarning, match=rf"held {len(files)} entries"):
        fitted = clf(tiny_backbone, str(root)).fit(X, y)
    assert sum(computed) == len(files)
    np.testing.assert_allclose(fitted.predict_proba(X), proba, atol=1e-6)
