"""The tools that take ``(estimator, X, y)`` on multi-label models: top losses
(binary cross-entropy), the pooled reliability diagram, and the clear errors
of the tools that need one label per image."""

import numpy as np
import pytest
from _images import NAMES, as_lists, quadrants

from imgclf import Abstain, CNNClassifier, find_label_issues, threshold_for
from imgclf.exceptions import InputError
from imgclf.explain import top_losses

pytest.importorskip("matplotlib")

from imgclf import plot  # noqa: E402


def by_hand_bce(Y, proba):
    """Each image's binary cross-entropy, averaged over labels, computed apart."""
    p = np.clip(proba.astype(np.float64), 1e-12, 1 - 1e-12)
    return -(Y * np.log(p) + (1 - Y) * np.log(1 - p)).mean(axis=1)


@pytest.fixture(scope="module")
def data():
    return quadrants(80, seed=0), quadrants(40, seed=1)


@pytest.fixture(scope="module")
def tagged(data):
    """A multi-label model fitted on label lists (classes_ the sorted names)."""
    (X, Y), _ = data
    return CNNClassifier(epochs=1, filters=4, random_state=0).fit(X, as_lists(Y))


@pytest.fixture(scope="module")
def single(data):
    (X, Y), _ = data
    return CNNClassifier(epochs=1, filters=4, random_state=0).fit(X, Y.argmax(axis=1))


def columns_in_classes(clf, Y):
    """Y (columns in NAMES order) reordered to the model's classes_ order."""
    return Y[:, [NAMES.index(label) for label in clf.classes_.tolist()]]


# ------------------------------------------------------------- top losses
def test_top_losses_rank_by_mean_bce(tagged, data):
    _, (X, Y) = data
    proba = tagged.predict_proba(X)
    truth = columns_in_classes(tagged, Y)
    mine = by_hand_bce(truth, proba)
    for y in (as_lists(Y), truth):  # label lists and the indicator matrix agree
        index, losses, returned = top_losses(tagged, X, y, n=10)
        np.testing.assert_array_equal(index, np.argsort(-mine, kind="stable")[:10])
        np.testing.assert_allclose(losses, mine[index], rtol=1e-6)
        np.testing.assert_allclose(returned, proba, rtol=1e-6)
    # A given proba is used as is: flip one image's labels and it rises to the top.
    edited = proba.copy()
    edited[7] = 1 - truth[7]
    index, losses, returned = top_losses(tagged, X, as_lists(Y), n=3, proba=edited)
    assert index[0] == 7 and returned is not None
    np.testing.assert_allclose(losses[0], by_hand_bce(truth[7:8], edited[7:8])[0], rtol=1e-6)


def test_top_losses_bad_multilabel_y(tagged, single, data):
    _, (X, Y) = data
    with pytest.raises(InputError, match="top_losses: .*fitted on multi-label"):
        top_losses(tagged, X, Y.argmax(axis=1))
    with pytest.raises(InputError, match=r"top_losses: y\[0\] holds labels \['zebra'\]"):
        top_losses(tagged, X, [["zebra"]] * len(X))
    with pytest.raises(InputError, match="top_losses: y has 3 label columns"):
        top_losses(tagged, X, Y[:, :3])
    with pytest.raises(InputError, match="top_losses: X has 40 samples but y has 39"):
        top_losses(tagged, X, Y[:39])
    with pytest.raises(InputError, match="top_losses: y holds multi-label targets.*one label"):
        top_losses(single, X, Y)
    with pytest.raises(InputError, match="top_losses: y holds multi-label targets"):
        top_losses(single, X, as_lists(Y))


def _label_set(labels):
    return ", ".join(labels) or "(none)"


def test_plot_top_losses_titles_name_the_label_sets(tagged, data):
    _, (X, Y) = data
    proba = tagged.predict_proba(X)
    truth = columns_in_classes(tagged, Y)
    classes = tagged.classes_.tolist()
    fig = plot.plot_top_losses(tagged, X, as_lists(Y), n=6)
    index = np.argsort(-by_hand_bce(truth, proba), kind="stable")[:6]
    assert len(fig.axes) == 6
    assert "binary cross-entropy" in fig.get_suptitle()
    per_label = -np.log(np.clip(np.where(truth > 0, proba, 1 - proba), 1e-12, None))
    for ax, i in zip(fig.axes, index, strict=True):
        given, pred, last = ax.get_title().splitlines()
        predicted = proba[i] >= tagged.thresholds_
        given_names = [classes[j] for j in np.flatnonzero(truth[i])]
        assert given == "given " + _label_set(given_names)
        assert pred == "pred " + _label_set([classes[j] for j in np.flatnonzero(predicted)])
        worst = int(np.argmax(per_label[i]))
        assert last == (
            f"loss {by_hand_bce(truth[i : i + 1], proba[i : i + 1])[0]:.2f}, "
            f"p({classes[worst]}) {proba[i, worst]:.2f}"
        )
        wrong = (predicted != truth[i].astype(bool)).any()
        assert ax.title.get_color() == ("tab:red" if wrong else "black")


def test_plot_top_losses_with_thresholds_changed(tagged, data, monkeypatch):
    """The predicted set follows thresholds_: at 0 every label is predicted."""
    _, (X, Y) = data
    monkeypatch.setattr(tagged, "thresholds_", np.zeros(4))
    fig = plot.plot_top_losses(tagged, X, Y, n=2)
    for ax in fig.axes:
        assert ax.get_title().splitlines()[1] == "pred " + ", ".join(tagged.classes_)


# ------------------------------------------------------------ calibration
def by_hand_reliability(Y, proba, n_bins):
    """Per bin over the (image, label) pairs: accuracy and mean confidence, and the ECE."""
    p, t = proba.ravel().astype(np.float64), Y.ravel()
    confidence = np.maximum(p, 1 - p)
    right = (p > 0.5) == (t == 1)
    bins = np.minimum(np.floor(confidence * n_bins).astype(int), n_bins - 1)
    acc, conf, ece = {}, {}, 0.0
    for b in np.unique(bins):
        inside = bins == b
        acc[b], conf[b] = right[inside].mean(), confidence[inside].mean()
        ece += inside.mean() * abs(acc[b] - conf[b])
    return acc, conf, ece


@pytest.mark.parametrize("n_bins", [10, 15])
def test_plot_calibration_pooled_over_pairs(tagged, data, n_bins):
    _, (X, Y) = data
    proba = tagged.predict_proba(X)
    truth = columns_in_classes(tagged, Y)
    acc, conf, ece = by_hand_reliability(truth, proba, n_bins)
    fig = plot.plot_calibration(tagged, X, as_lists(Y), n_bins=n_bins)
    ax = fig.axes[0]
    title = ax.get_title()
    assert title.startswith(f"ECE {ece:.3f} (40 images x 4 labels, pooled, {n_bins} bins)")
    bars = sorted(ax.patches, key=lambda bar: bar.get_x())
    assert [round(bar.get_x() * n_bins) for bar in bars] == sorted(acc)
    np.testing.assert_allclose([bar.get_height() for bar in bars], [acc[b] for b in sorted(acc)])
    # No pair has confidence below 0.5: no bar starts left of the middle.
    assert min(bar.get_x() for bar in bars) >= 0.5 - 1 / n_bins
    dots = ax.lines[0].get_xdata()
    np.testing.assert_allclose(dots, [conf[b] for b in sorted(conf)])
    same = plot.plot_calibration(tagged, X, truth, n_bins=n_bins)  # the indicator matrix
    assert same.axes[0].get_title() == title


def test_plot_calibration_refuses_mismatched_y(tagged, single, data):
    _, (X, Y) = data
    with pytest.raises(InputError, match="plot_calibration: y holds multi-label targets"):
        plot.plot_calibration(single, X, Y)
    with pytest.raises(InputError, match="plot_calibration: .*fitted on multi-label"):
        plot.plot_calibration(tagged, X, Y.argmax(axis=1))


def test_plot_calibration_multilabel_y_for_another_classifier(data):
    from sklearn.neighbors import KNeighborsClassifier

    (X, Y), _ = data
    flat = X.reshape(len(X), -1)
    knn = KNeighborsClassifier(3).fit(flat, Y)  # scikit-learn's multi-label: a list of arrays
    with pytest.raises(InputError, match="plot_calibration: .*KNeighborsClassifier is not an"):
        plot.plot_calibration(knn, flat, Y)


def test_confusion_matrix_points_to_multilabel_confusion_matrix(tagged, data):
    _, (X, Y) = data
    pred = tagged.predict(X)
    for y_true, y_pred, name in [(Y, pred, "y_true"), (Y.argmax(1), pred, "y_pred")]:
        with pytest.raises(InputError, match=f"{name} holds multi-label.*multilabel_confusion"):
            plot.plot_confusion_matrix(y_true, y_pred)
    with pytest.raises(InputError, match="y_true holds multi-label"):
        plot.plot_confusion_matrix(as_lists(Y), as_lists(Y))
    fig = plot.plot_confusion_matrix(Y.argmax(1), pred.argmax(1))  # one label each: fine
    assert fig.axes[0].get_title() == "confusion matrix"


# ------------------------------------------------------ one label per image
def test_threshold_for_and_abstain_refuse_multilabel(tagged, data):
    from sklearn.frozen import FrozenEstimator

    _, (X, Y) = data
    proba = tagged.predict_proba(X)
    for y in (Y, as_lists(Y)):
        with pytest.raises(InputError, match="threshold_for: y holds multi-label.*thresholds_"):
            threshold_for(proba, y, coverage=0.9)
    with pytest.raises(InputError, match="Abstain: y holds multi-label") as caught:
        Abstain(CNNClassifier(epochs=1)).fit(X, Y)
    assert caught.value.parameters == ("y",)
    with pytest.raises(InputError, match="Abstain: the wrapped .* multi-label model"):
        Abstain(FrozenEstimator(tagged)).fit(X, Y.argmax(axis=1))


def test_abstain_score_refuses_multilabel(single, data):
    from sklearn.frozen import FrozenEstimator

    _, (X, Y) = data
    abstain = Abstain(FrozenEstimator(single), threshold=0.0).fit(X, Y.argmax(axis=1))
    assert abstain.score(X, Y.argmax(axis=1)) == pytest.approx(single.score(X, Y.argmax(axis=1)))
    with pytest.raises(InputError, match="Abstain.score: y holds multi-label"):
        abstain.score(X, Y)


def test_find_label_issues_refuses_multilabel(tagged, data):
    pytest.importorskip("cleanlab")
    _, (X, Y) = data
    proba = tagged.predict_proba(X)
    for y in (Y, as_lists(Y)):
        with pytest.raises(InputError, match="find_label_issues: y holds multi-label.*multi_label"):
            find_label_issues(None, None, y, pred_probs=proba)


def test_cli_audit_refuses_tags(tmp_path, capsys):
    from imgclf.cli import main

    (tmp_path / "tags.csv").write_text("file,tags\na.png,x;y\n")
    argv = ["audit", str(tmp_path), "--csv", str(tmp_path / "tags.csv"), "--tags-sep", ";"]
    assert main([*argv, "--out", str(tmp_path / "out.csv")]) == 1
    assert "audit checks one label per image; --tags-sep" in capsys.readouterr().err


def test_transfer_multilabel_top_losses_and_grad_cam(tiny_backbone, data):
    from imgclf import TransferClassifier

    (X, Y), (X_test, Y_test) = data
    clf = TransferClassifier(
        backbone=tiny_backbone, weights=None, epochs=1, fine_tune_epochs=0, random_state=0
    ).fit(X, Y)
    index, losses, proba = top_losses(clf, X_test, Y_test, n=5)
    np.testing.assert_array_equal(index, np.argsort(-by_hand_bce(Y_test, proba), kind="stable")[:5])
    assert sum(bool(ax.images) for ax in plot.plot_top_losses(clf, X_test, Y_test, n=3).axes) == 3
    assert len(plot.plot_grad_cam(clf, X_test[index[:2]]).axes) == 4
