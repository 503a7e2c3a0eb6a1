"""TransferClassifier(memory=...): backbone features cached per image across fits.

A tiny network with fixed weights serves as the backbone (one convolution,
any input size), so each fit takes a second or two.
"""

import errno
import multiprocessing
import os
import shutil
import warnings

import joblib
import numpy as np
import pytest
from sklearn.model_selection import GridSearchCV

from imgclf import TransferClassifier
from imgclf import _featcache as featcache
from imgclf._base import BaseImageClassifier
from imgclf._featcache import FeatureCacheWarning, FeatureStore


def _clf(backbone, **params):
    defaults = dict(backbone=backbone, epochs=3, fine_tune_epochs=0, batch_size=32, random_state=0)
    return TransferClassifier(**{**defaults, **params})


def _cache_files(root):
    return [
        os.path.join(d, f) for d, _, files in os.walk(root) for f in files if f.endswith(".f32")
    ]


@pytest.mark.slow
def test_second_fit_reads_every_feature_and_trains_the_same(
    tiny_backbone, small_digits, computed, tmp_path
):
    X, y = small_digits[0][:120], small_digits[1][:120]
    plain = _clf(tiny_backbone, dropout=0.1).fit(X, y)
    assert sum(computed) == 120  # training and validation images, once each
    computed.clear()

    _clf(tiny_backbone, dropout=0.3, memory=str(tmp_path)).fit(X, y)
    assert sum(computed) == 120
    assert len(_cache_files(tmp_path)) == 120
    computed.clear()

    # Another head setting: every feature comes from memory.
    again = _clf(tiny_backbone, dropout=0.1, memory=str(tmp_path)).fit(X, y)
    assert computed == []
    assert again.history_["loss"] == plain.history_["loss"]
    np.testing.assert_array_equal(again.predict_proba(X[:20]), plain.predict_proba(X[:20]))


def _full_network_proba(clf, X):
    """predict_proba through the whole network, whatever memory holds."""
    return BaseImageClassifier._proba(clf, clf._check_predict_images(X), clf._tta_views())


def test_predict_reads_cached_features_never_needs_them(
    tiny_backbone, small_digits, tmp_path, monkeypatch
):
    X, y = small_digits[0][:60], small_digits[1][:60]
    clf = _clf(tiny_backbone, memory=str(tmp_path)).fit(X, y)
    full = _full_network_proba(clf, X)
    unseen = _full_network_proba(clf, small_digits[0][60:65])
    with monkeypatch.context() as m:
        m.setattr(BaseImageClassifier, "_proba", lambda *a: pytest.fail("ran the network"))
        np.testing.assert_allclose(clf.predict_proba(X), full, rtol=1e-5, atol=1e-6)
    # Images memory does not hold, or no memory at all: the whole network.
    np.testing.assert_array_equal(clf.predict_proba(small_digits[0][60:65]), unseen)
    shutil.rmtree(tmp_path)
    np.testing.assert_array_equal(clf.predict_proba(X), full)


def test_predict_ignores_memory_once_the_backbone_changed(tiny_backbone, small_digits, tmp_path):
    X, y = small_digits[0][:60], small_digits[1][:60]
    clf = _clf(tiny_backbone, memory=str(tmp_path)).fit(X, y)
    kernel = clf.model_.get_layer("backbone").weights[0]
    kernel.assign(kernel.numpy() * 3.0)  # as training model_ by hand would
    np.testing.assert_array_equal(clf.predict_proba(X), _full_network_proba(clf, X))


@pytest.fixture(scope="module")
def backbone_file(tiny_backbone, tmp_path_factory):
    path = tmp_path_factory.mktemp("backbone") / "tiny.keras"
    tiny_backbone.save(path)
    return str(path)


@pytest.mark.slow
def test_fits_with_memory_share_one_built_backbone(backbone_file, small_digits, tmp_path):
    X, y = small_digits[0][:60], small_digits[1][:60]
    memory = str(tmp_path)
    plain = _clf(backbone_file, image_size=8).fit(X, y)
    first = _clf(backbone_file, image_size=8, memory=memory).fit(X, y)
    second = _clf(backbone_file, image_size=8, memory=memory, dropout=0.1).fit(X, y)
    shared = first.model_.get_layer("backbone")
    assert second.model_.get_layer("backbone") is shared
    assert plain.model_.get_layer("backbone") is not shared  # without memory: its own
    # Built or shared, the head starts from the same weights and trains the same.
    again = _clf(backbone_file, image_size=8, memory=memory).fit(X, y)
    assert again.history_["loss"] == plain.history_["loss"]

    # Fine-tuning changes the backbone: such a fit builds its own.
    weights = [w.numpy().copy() for w in shared.weights]
    tuned = _clf(backbone_file, image_size=8, memory=memory, fine_tune_epochs=1).fit(X, y)
    assert tuned.model_.get_layer("backbone") is not shared
    second.set_params(warm_start=True, fine_tune_epochs=1).fit(X, y)
    assert second.model_.get_layer("backbone") is not shared
    for before, w in zip(weights, shared.weights, strict=True):
        np.testing.assert_array_equal(w.numpy(), before)

    # A shared backbone changed by hand is never served to a later fit.
    shared.weights[0].assign(shared.weights[0].numpy() + 1.0)
    later = _clf(backbone_file, image_size=8, memory=memory).fit(X, y)
    assert later.model_.get_layer("backbone") is not shared
    assert later.history_["loss"] == plain.history_["loss"]


@pytest.mark.slow
def test_folds_and_candidates_share_features(tiny_backbone, small_digits, computed, tmp_path):
    X, y = small_digits[0][:90], small_digits[1][:90]
    memory = joblib.Memory(str(tmp_path), verbose=0)
    grid = {"dropout": [0.0, 0.2]}
    GridSearchCV(_clf(tiny_backbone, memory=memory), grid, cv=3, refit=False).fit(X, y)
    # Each image ran through the backbone once, whichever folds it fell in.
    assert sum(computed) == 90


@pytest.mark.slow
def test_a_backbone_file_is_one_key_in_a_search(backbone_file, small_digits, computed, tmp_path):
    # The first fit loads the file and freezes what it loaded; the later fits
    # take the shared backbone and load the file only to describe it: both
    # must name the same features (the trainable flags are not in the key).
    X, y = small_digits[0][:90], small_digits[1][:90]
    clf = _clf(backbone_file, image_size=8, memory=str(tmp_path))
    GridSearchCV(clf, {"dropout": [0.0, 0.2]}, cv=3, refit=False).fit(X, y)
    assert sum(computed) == 90
    assert len(os.listdir(tmp_path / "imgclf-features-v1")) == 1


@pytest.mark.slow
def test_search_with_memory_scores_as_without(tiny_backbone, small_digits, tmp_path):
    X, y = small_digits[0][:150], small_digits[1][:150]
    grid = {"dropout": [0.0, 0.3], "learning_rate": [1e-3, 1e-2]}
    searches = [
        GridSearchCV(_clf(tiny_backbone, memory=memory), grid, cv=3).fit(X, y)
        for memory in (None, str(tmp_path), str(tmp_path))  # without, cold, warm
    ]
    plain = searches[0]
    for search in searches[1:]:
        np.testing.assert_allclose(
            search.cv_results_["mean_test_score"], plain.cv_results_["mean_test_score"], atol=1e-6
        )
        assert search.best_params_ == plain.best_params_


@pytest.mark.slow
def test_changed_file_or_size_is_computed_again(tiny_backbone, small_digits, computed, tmp_path):
    from PIL import Image

    X, y = small_digits
    folder = tmp_path / "images"
    folder.mkdir()
    paths = []
    for i in range(30):
        paths.append(str(folder / f"{i}.png"))
        Image.fromarray(X[i, ..., 0]).save(paths[-1])
    memory = str(tmp_path / "memory")
    _clf(tiny_backbone, memory=memory, image_size=8).fit(paths, y[:30])
    assert sum(computed) == 30
    computed.clear()

    # Rewrite one file with another image (same size, new modification time).
    Image.fromarray(X[40, ..., 0]).save(paths[7])
    stat = os.stat(paths[7])
    os.utime(paths[7], ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    cached = _clf(tiny_backbone, memory=memory, image_size=8).fit(paths, y[:30])
    assert computed == [1]
    fresh = _clf(tiny_backbone, image_size=8).fit(paths, y[:30])
    # Stale features would move the head far more than batch-order rounding.
    np.testing.assert_allclose(cached.predict_proba(paths), fresh.predict_proba(paths), atol=1e-6)
    computed.clear()

    _clf(tiny_backbone, memory=memory, image_size=12).fit(paths, y[:30])
    assert sum(computed) == 30


def test_other_weights_are_computed_again(tiny_backbone, small_digits, computed, tmp_path):
    X, y = small_digits[0][:60], small_digits[1][:60]
    for seed in (0, 1):  # weights=None: the seed draws the backbone's weights
        _clf(tiny_backbone, weights=None, random_state=seed, memory=str(tmp_path)).fit(X, y)
    assert sum(computed) == 120
    computed.clear()
    with pytest.warns(FeatureCacheWarning, match="random_state=None"):
        _clf(tiny_backbone, weights=None, random_state=None, memory=str(tmp_path)).fit(X, y)
    assert sum(computed) == 60
    assert len(_cache_files(tmp_path)) == 120  # nothing stored for a one-off backbone


def test_foreign_files_warn_and_are_replaced(tiny_backbone, small_digits, computed, tmp_path):
    X, y = small_digits[0][:60], small_digits[1][:60]
    expected = _clf(tiny_backbone, memory=str(tmp_path)).fit(X, y).predict_proba(X)
    files = _cache_files(tmp_path)
    for i, path in enumerate(files):
        with open(path, "r+b") as f:
            if i % 2:
                f.seek(8)
                f.write((featcache.ENTRY_FORMAT + 1).to_bytes(4, "little"))  # another version
            else:
                f.truncate(30)  # damaged
    computed.clear()
    with pytest.warns(FeatureCacheWarning, match="did not write"):
        clf = _clf(tiny_backbone, memory=str(tmp_path)).fit(X, y)
    assert sum(computed) == 60
    np.testing.assert_array_equal(clf.predict_proba(X), expected)
    computed.clear()
    with warnings.catch_warnings():
        warnings.simplefilter("error", FeatureCacheWarning)
        _clf(tiny_backbone, memory=str(tmp_path)).fit(X, y)  # replaced: all good again
    assert computed == []


def test_unusable_memory_warns_and_fits(tiny_backbone, small_digits, tmp_path, monkeypatch):
    X, y = small_digits[0][:60], small_digits[1][:60]
    expected = _clf(tiny_backbone).fit(X, y).predict_proba(X)
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    with pytest.warns(FeatureCacheWarning, match="cannot hold the feature cache"):
        clf = _clf(tiny_backbone, memory=str(blocker / "memory")).fit(X, y)
    np.testing.assert_array_equal(clf.predict_proba(X), expected)

    def full(*args):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "replace", full)
    with pytest.warns(FeatureCacheWarning, match="No space left"):
        clf = _clf(tiny_backbone, memory=str(tmp_path / "memory")).fit(X, y)
    np.testing.assert_array_equal(clf.predict_proba(X), expected)
    assert _cache_files(tmp_path / "memory") == []  # no temporary file left behind


def test_memory_parameter_values(tiny_backbone, small_digits, tmp_path):
    X, y = small_digits[0][:40], small_digits[1][:40]
    _clf(tiny_backbone, memory=joblib.Memory(None, verbose=0)).fit(X, y)  # no cache
    _clf(tiny_backbone, memory=joblib.Memory(tmp_path, verbose=0)).fit(X, y)
    assert len(_cache_files(tmp_path)) == 40


# ------------------------------------------------------------ the store alone
def _writer(root, network, keys, rows, rounds):
    store = FeatureStore.open(root, network)
    for _ in range(rounds):
        store.put(keys, rows)


def test_concurrent_writers_never_expose_a_partial_file(tmp_path):
    root, network = str(tmp_path), bytes(range(16))
    keys = featcache.array_keys(np.arange(200 * 4, dtype=np.int32).reshape(200, 2, 2, 1))
    rows = np.random.default_rng(0).normal(size=(200, 576)).astype(np.float32)
    context = multiprocessing.get_context("fork")
    workers = [
        context.Process(target=_writer, args=(root, network, keys, rows, 5)) for _ in range(3)
    ]
    for w in workers:
        w.start()
    reader = FeatureStore.open(root, network)
    with warnings.catch_warnings():
        warnings.simplefilter("error", FeatureCacheWarning)  # as a partial file would
        while any(w.is_alive() for w in workers):
            found, _ = reader.get(keys)
            for got, row in zip(found, rows, strict=True):
                assert got is None or np.array_equal(got, row)
    assert all(w.exitcode == 0 for w in workers)
    found, length = reader.get(keys)
    assert length == 576 and all(np.array_equal(g, r) for g, r in zip(found, rows, strict=True))
    assert sorted(os.listdir(reader.folder)) == sorted(k.hex() + ".f32" for k in keys)
    first = os.path.join(reader.folder, keys[0].hex() + ".f32")
    assert os.path.getsize(first) == featcache.bytes_per_image(576)
