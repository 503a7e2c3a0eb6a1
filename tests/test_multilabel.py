"""Multi-label targets: indicator matrices and label collections, sigmoid
outputs, per-label thresholds, scikit-learn's tools, save / load, the CLI."""

import csv
import io

import numpy as np
import pytest
from _images import NAMES, as_lists, quadrants
from PIL import Image
from sklearn.metrics import classification_report
from sklearn.model_selection import GridSearchCV, KFold, cross_val_score

import imgclf
from imgclf import CNNClassifier, TransferClassifier
from imgclf._multilabel import best_threshold, check_y, is_multilabel, strata
from imgclf.exceptions import InputError, ModelFileError


@pytest.fixture(scope="module")
def data():
    return quadrants(240, seed=0), quadrants(60, seed=1)


@pytest.fixture(scope="module")
def fitted(data):
    (X, Y), _ = data
    return CNNClassifier(epochs=3, filters=4, random_state=0).fit(X, Y)


# ------------------------------------------------------------- targets
def test_detection_follows_scikit_learn():
    assert is_multilabel(np.eye(3, dtype=int))
    assert is_multilabel([["a"], ["a", "b"], []])
    assert is_multilabel([{"a"}, set()])
    assert not is_multilabel(np.array([0, 1, 2]))
    assert not is_multilabel(["a", "b"])
    assert not is_multilabel(np.zeros((3, 1)))  # a column: one label per image


def test_indicator_values_other_than_0_1_are_refused():
    with pytest.raises(InputError, match="values other than 0 and 1"):
        check_y(CNNClassifier(), np.array([[0, 2], [1, 0]]), 2)
    X, Y = quadrants(20)
    with pytest.raises(InputError, match="values other than 0 and 1"):
        CNNClassifier(epochs=1).fit(X, Y * 3)


def test_collections_checked():
    clf = CNNClassifier()
    y = check_y(clf, [["b", "a", "a"], (), {"c"}], 3)
    assert y.tolist() == [("a", "b"), (), ("c",)]
    with pytest.raises(InputError, match="mixes label collections and single labels"):
        check_y(clf, [["a"], "b"], 2)
    with pytest.raises(InputError, match="mixes label types"):
        check_y(clf, [["a"], [1]], 2)
    with pytest.raises(InputError, match="X has 3 samples"):
        check_y(clf, [["a"], ["b"]], 3)


def test_class_weight_refused():
    X, Y = quadrants(30)
    with pytest.raises(InputError, match="class_weight.*multi-label"):
        CNNClassifier(epochs=1, filters=4, class_weight="balanced").fit(X, Y)


def test_strata_keep_rare_labels_and_unlabelled():
    Y = np.array([[1, 0, 0]] * 6 + [[1, 1, 0]] * 2 + [[0, 0, 0]] * 3 + [[0, 0, 1]])
    groups = strata(Y)
    # The two images with the rare label 1 share a group; no-label images have theirs.
    assert groups[6] == groups[7] != groups[0]
    assert len(set(groups[8:11])) == 1 and groups[8] not in (groups[0], groups[6])


# -------------------------------------------------------------- thresholds
def test_best_threshold_ties_toward_half():
    truth = np.array([0, 0, 1, 1])
    # Any threshold in (0.2, 0.7] separates them: 0.5 is chosen.
    assert best_threshold(truth, np.array([0.1, 0.2, 0.7, 0.9])) == 0.5
    # Separable only below 0.5: the highest such threshold.
    assert best_threshold(truth, np.array([0.05, 0.1, 0.3, 0.4])) == pytest.approx(0.3)
    # Only above: the middle of the gap.
    assert best_threshold(truth, np.array([0.6, 0.7, 0.8, 0.9])) == pytest.approx(0.75)
    # No positive in the hold-out: nothing to tune.
    assert best_threshold(np.zeros(4), np.array([0.1, 0.6, 0.7, 0.9])) == 0.5


# ------------------------------------------------------------ the estimator
def test_predict_shapes_and_dtypes(fitted, data):
    _, (X_test, Y_test) = data
    proba = fitted.predict_proba(X_test)
    pred = fitted.predict(X_test)
    assert proba.shape == (60, 4) and proba.dtype == np.float64
    assert ((proba >= 0) & (proba <= 1)).all()
    assert not np.allclose(proba.sum(axis=1), 1)  # sigmoids, not a softmax
    assert pred.shape == (60, 4) and pred.dtype == np.int64
    assert set(np.unique(pred)) <= {0, 1}
    assert fitted.multilabel_ is True
    assert fitted.classes_.tolist() == [0, 1, 2, 3]
    assert fitted.thresholds_.shape == (4,)
    assert fitted.model_.loss == "binary_crossentropy"
    # It learnt the quadrants; score is the subset accuracy.
    assert fitted.score(X_test, Y_test) == pytest.approx(np.mean((pred == Y_test).all(axis=1)))
    assert fitted.score(X_test, Y_test) > 0.5
    # zero_division=1: an image with no label, rightly given none, scores 1.
    report = classification_report(Y_test, pred, output_dict=True, zero_division=1)
    assert report["samples avg"]["f1-score"] > 0.7


def test_thresholds_decide_predict(fitted, data):
    _, (X_test, _) = data
    proba = fitted.predict_proba(X_test)
    assert np.array_equal(fitted.predict(X_test), (proba >= fitted.thresholds_).astype(int))
    saved = fitted.thresholds_.copy()
    try:
        fitted.thresholds_ = np.array([0.0, 1.01, 0.5, 0.5])
        pred = fitted.predict(X_test)
        assert pred[:, 0].all() and not pred[:, 1].any()
    finally:
        fitted.thresholds_ = saved


@pytest.mark.slow
def test_thresholds_tuned_on_the_holdout(data, monkeypatch):
    (X, Y), _ = data
    seen = []
    real = imgclf._multilabel.tune_thresholds

    def spy(truth, proba):
        seen.append((truth.copy(), proba.copy()))
        return real(truth, proba)

    monkeypatch.setattr(imgclf._multilabel, "tune_thresholds", spy)
    clf = CNNClassifier(epochs=1, filters=4, validation_fraction=0.25, random_state=0)
    clf.fit(X, Y)
    ((truth, proba),) = seen
    assert len(truth) == round(0.25 * len(X)) and proba.shape == truth.shape
    assert np.array_equal(clf.thresholds_, real(truth, proba))
    bare = CNNClassifier(epochs=1, filters=4, validation_fraction=0.0, random_state=0).fit(X, Y)
    assert bare.thresholds_.tolist() == [0.5] * 4


@pytest.mark.slow
def test_label_lists_give_sorted_classes(data):
    (X, Y), (X_test, Y_test) = data
    Y[:5] = 0  # images with no label are allowed
    clf = CNNClassifier(epochs=2, filters=4, random_state=0).fit(X, as_lists(Y))
    assert clf.classes_.tolist() == sorted(NAMES)
    pred = clf.predict(X_test)
    assert pred.shape == (60, 4) and set(np.unique(pred)) <= {0, 1}
    # score takes label lists too, in classes_ order.
    order = [NAMES.index(name) for name in clf.classes_]
    expected = np.mean((pred == Y_test[:, order]).all(axis=1))
    assert clf.score(X_test, as_lists(Y_test)) == pytest.approx(expected)
    with pytest.raises(InputError, match="not fitted on"):
        clf.score(X_test[:1], [["zz"]])


@pytest.mark.slow
def test_all_zero_column_is_fine():
    X, Y = quadrants(60)
    Y[:, 3] = 0
    clf = CNNClassifier(epochs=1, filters=4, random_state=0).fit(X, Y)
    assert clf.predict(X[:4]).shape == (4, 4)


@pytest.mark.slow
def test_warm_start_keeps_the_kind(data):
    (X, Y), _ = data
    clf = CNNClassifier(epochs=1, filters=4, warm_start=True, random_state=0).fit(X, Y)
    clf.fit(X, Y)  # same labels: fine
    with pytest.raises(InputError, match="one label per image"):
        clf.fit(X, Y.argmax(axis=1))


@pytest.mark.slow
def test_transfer_head_on_cached_features(tiny_backbone, data, monkeypatch):
    import imgclf._stagerun

    (X, Y), (X_test, _) = data
    light_loops = []
    fit_vectors = imgclf._stagerun.fit_vectors
    monkeypatch.setattr(
        imgclf._stagerun,
        "fit_vectors",
        lambda *a, **k: light_loops.append(1) or fit_vectors(*a, **k),
    )
    clf = TransferClassifier(
        backbone=tiny_backbone,
        weights=None,
        epochs=3,
        fine_tune_epochs=0,
        random_state=0,
    ).fit(X, as_lists(Y))
    assert light_loops  # the head trained by the light loop on cached features
    proba = clf.predict_proba(X_test)
    assert proba.shape == (60, 4) and clf.predict(X_test).dtype == np.int64
    assert clf.model_.get_layer("probabilities").get_config()["activation"] == "sigmoid"
    assert 0 <= clf.history_["accuracy"][-1] <= 1  # the share of right label decisions


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::sklearn.exceptions.UndefinedMetricWarning")
def test_grid_search_f1_samples_and_cross_val_score(data):
    (X, Y), _ = data
    search = GridSearchCV(
        CNNClassifier(epochs=1, filters=4, random_state=0),
        {"learning_rate": [3e-3, 1e-2]},
        scoring="f1_samples",
        cv=2,
    ).fit(X[:120], Y[:120])
    assert 0 <= search.best_score_ <= 1
    assert search.predict(X[:3]).shape == (3, 4)
    scores = cross_val_score(
        CNNClassifier(epochs=1, filters=4, random_state=0), X[:120], Y[:120], cv=KFold(2)
    )
    assert scores.shape == (2,)


def test_save_load_round_trip(fitted, data, tmp_path):
    _, (X_test, _) = data
    fitted.thresholds_ = fitted.thresholds_ + np.array([0.0, 0.1, -0.1, 0.0])
    try:
        path = tmp_path / "ml.imgclf"
        fitted.save(path)
        loaded = imgclf.load(path)
        assert loaded.multilabel_ is True
        np.testing.assert_array_equal(loaded.thresholds_, fitted.thresholds_)
        # No temperature is fitted for sigmoid outputs; the card counts images per label.
        assert fitted.temperature_ == loaded.temperature_ == 1.0
        _, Y = quadrants(240, seed=0)  # what `fitted` was fitted on (the fixture's Y may be edited)
        per_label = np.add(loaded.card_["train_per_class"], loaded.card_["holdout_per_class"])
        np.testing.assert_array_equal(per_label, Y.sum(axis=0))
        np.testing.assert_array_equal(loaded.predict(X_test), fitted.predict(X_test))
    finally:
        fitted.thresholds_ = fitted.thresholds_ - np.array([0.0, 0.1, -0.1, 0.0])


def test_manifest_checks_thresholds():
    from imgclf._manifest import BadField, check_attributes

    base = {
        "classes_": np.arange(3),
        "image_size_": (8, 8),
        "n_channels_": 1,
        "input_range_": (0.0, 255.0),
        "batch_size_": 8,
    }
    check_attributes({**base, "multilabel_": True, "thresholds_": np.full(3, 0.5)}, True)
    for bad, field in (
        ({"multilabel_": True}, "missing"),
        ({"multilabel_": True, "thresholds_": np.full(2, 0.5)}, "2 thresholds for 3"),
        ({"multilabel_": True, "thresholds_": np.array([0.5, 2.0, 0.5])}, r"\[0, 1\]"),
        ({"thresholds_": np.full(3, 0.5)}, "multilabel_ is not true"),
        ({"multilabel_": "yes", "thresholds_": np.full(3, 0.5)}, "True or False"),
    ):
        with pytest.raises(BadField, match=field):
            check_attributes({**base, **bad}, True)


# ------------------------------------------------------- loaders and the CLI
def _write_tagged(root, n=60):
    X, Y = quadrants(n, seed=2)
    rows = ["file,tags"]
    for i in range(n):
        Image.fromarray(X[i, ..., 0]).save(root / f"img{i:03d}.png")
        rows.append(f"img{i:03d}.png,{';'.join(NAMES[j] for j in np.flatnonzero(Y[i]))}")
    (root / "tags.csv").write_text("\n".join(rows) + "\n")
    return Y


def test_load_csv_tags(tmp_path):
    Y = _write_tagged(tmp_path, n=8)
    X, y = imgclf.load_csv(tmp_path / "tags.csv", label_column="tags", tags_sep=";")
    assert y.dtype == object and y.shape == (8,)
    assert [set(labels) for labels in y] == [set(row) for row in as_lists(Y)]
    assert all(list(labels) == sorted(labels) for labels in y)
    with pytest.raises(InputError, match="tags_sep"):
        imgclf.load_csv(tmp_path / "tags.csv", tags_sep=",")


@pytest.mark.slow
def test_cli_train_and_predict_tags(tmp_path, capsys):
    from imgclf.cli import main

    data = tmp_path / "data"
    data.mkdir()
    _write_tagged(data)
    model = tmp_path / "ml.imgclf"
    argv = ["train", str(data), "--csv", str(data / "tags.csv"), "--tags-sep", ";"]
    assert main([*argv, "--out", str(model), "--epochs", "2", "--quiet", "--seed", "0"]) == 0
    out = capsys.readouterr().out
    assert "multi-label" in out and "label accuracy" in out
    assert imgclf.load(model).classes_.tolist() == sorted(NAMES)
    assert main(["predict", str(model), str(data), "--tags-sep", "|", "--proba"]) == 0
    rows = list(csv.reader(io.StringIO(capsys.readouterr().out)))
    assert rows[0] == ["path", "labels", *[f"proba_{n}" for n in sorted(NAMES)]]
    assert len(rows) == 61
    for row in rows[1:]:
        tags = [t for t in row[1].split("|") if t]
        assert set(tags) <= set(NAMES)
        assert ";" not in row[1]
    assert any("|" in row[1] for row in rows[1:])  # some images get several labels
    assert (
        main(
            ["evaluate", str(model), str(data), "--csv", str(data / "tags.csv"), "--tags-sep", ";"]
        )
        == 0
    )
    assert "Subset accuracy" in capsys.readouterr().out
    # Pictures beside the model: the top losses by binary cross-entropy, and Grad-CAM.
    pictures = tmp_path / "ml-evaluation"
    assert (pictures / "top_losses.png").stat().st_size > 0
    assert (pictures / "grad_cam.png").stat().st_size > 0
    assert not (pictures / "confusion_matrix.png").exists()


def test_bad_saved_thresholds_refused(fitted, tmp_path):
    path = tmp_path / "ml.imgclf"
    fitted.save(path)
    loaded = imgclf.load(path)
    loaded.thresholds_ = np.full(3, 0.5)  # one short
    broken = tmp_path / "broken.imgclf"
    # clf.save writes what it has; load checks it field by field.
    loaded.save(broken)
    with pytest.raises(ModelFileError, match="thresholds_"):
        imgclf.load(broken)
