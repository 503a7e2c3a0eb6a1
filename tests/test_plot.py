"""imgclf.plot: the pictures are written, are not blank, and Grad-CAM finds
the feature map in flat and nested (backbone) models."""

import sys

import numpy as np
import pytest

pytest.importorskip("matplotlib")

from PIL import Image  # noqa: E402

from imgclf import CNNClassifier, explain, plot  # noqa: E402
from imgclf.exceptions import InputError  # noqa: E402


def _check_png(path, min_side=200):
    """Written, a real PNG of a reasonable size, and not one flat colour."""
    assert path.exists() and path.stat().st_size > 5_000
    with Image.open(path) as im:
        assert im.format == "PNG"
        assert min(im.size) >= min_side
        pixels = np.asarray(im.convert("L"), dtype=float)
    assert pixels.std() > 10  # a blank or single-colour canvas has ~0


def test_learning_curves(fitted_cnn, tmp_path):
    fig = plot.plot_learning_curves(fitted_cnn, path=tmp_path / "lc.png")
    _check_png(tmp_path / "lc.png")
    titles = [ax.get_title() for ax in fig.axes]
    assert titles == ["accuracy", "loss"]
    # Training and validation curves, and the best-epoch marker.
    n_epochs = len(fitted_cnn.history_["loss"])
    loss_ax = fig.axes[1]
    assert [len(line.get_xdata()) for line in loss_ax.lines] == [n_epochs, n_epochs, 1]


def test_learning_curves_mark_stages():
    history = {
        "loss": [1.0, 0.8, 0.7, 0.5, 0.4],
        "val_loss": [1.1, 0.9, 0.8, 0.6, 0.65],
        "stage": ["frozen", "frozen", "frozen", "fine-tune", "fine-tune"],
    }
    fig = plot.plot_learning_curves(history)
    (ax,) = fig.axes
    vertical = [
        line for line in ax.lines if len(set(line.get_xdata())) == 1 and line.get_ls() == "--"
    ]
    assert len(vertical) == 1 and vertical[0].get_xdata()[0] == pytest.approx(3.5)
    assert "fine-tune" in [t.get_text() for t in ax.texts]


def test_learning_curves_rejects_unfitted():
    from sklearn.exceptions import NotFittedError

    with pytest.raises(NotFittedError):
        plot.plot_learning_curves(CNNClassifier())
    with pytest.raises(InputError, match="history dict"):
        plot.plot_learning_curves({})


def test_confusion_matrix_uses_sklearn_display(fitted_cnn, small_digits, tmp_path):
    X, y = small_digits
    pred = fitted_cnn.predict(X)
    fig = plot.plot_confusion_matrix(y, pred, labels=fitted_cnn.classes_, path=tmp_path / "cm.png")
    _check_png(tmp_path / "cm.png")
    ax = fig.axes[0]
    # The numbers drawn in the cells are the confusion matrix itself.
    from sklearn.metrics import confusion_matrix

    cells = [int(t.get_text()) for t in ax.texts]
    assert cells == confusion_matrix(y, pred, labels=fitted_cnn.classes_).ravel().tolist()


def test_top_losses_orders_worst_first(fitted_cnn, small_digits, tmp_path):
    X, y = small_digits
    index, losses, proba = plot.top_losses(fitted_cnn, X, y, n=5)
    assert len(index) == 5 and np.all(np.diff(losses) <= 0)
    full = -np.log(proba[np.arange(len(y)), np.searchsorted(fitted_cnn.classes_, y)])
    assert losses[0] == pytest.approx(full.max())
    fig = plot.plot_top_losses(fitted_cnn, X, y, n=6, proba=proba, path=tmp_path / "tl.png")
    _check_png(tmp_path / "tl.png")
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert len(titles) == 6
    worst = index[0]
    assert titles[0].startswith(f"true {y[worst]} ")
    assert f"loss {losses[0]:.2f}" in titles[0]


def test_top_losses_from_file_paths(fitted_cnn, small_digits, tmp_path):
    X, y = small_digits
    paths = []
    for i in range(8):
        p = tmp_path / f"{i}.png"
        Image.fromarray(X[i, ..., 0]).save(p)
        paths.append(str(p))
    fig = plot.plot_top_losses(fitted_cnn, paths, y[:8], n=4, path=tmp_path / "tl.png")
    _check_png(tmp_path / "tl.png")
    assert len([ax for ax in fig.axes if ax.images]) == 4


def test_grad_cam_flat_cnn(fitted_cnn, small_digits, tmp_path):
    X, _ = small_digits
    heat, proba = plot.grad_cam(fitted_cnn, X[:10])
    assert heat.shape == (10, *fitted_cnn.image_size_)
    assert heat.min() >= 0 and heat.max() <= 1 + 1e-6
    assert np.all(heat.reshape(10, -1).max(axis=1) > 0.99)  # normalised per image
    np.testing.assert_allclose(proba, fitted_cnn.predict_proba(X[:10]), atol=1e-5)
    plot.plot_grad_cam(fitted_cnn, X[:4], path=tmp_path / "gc.png")
    _check_png(tmp_path / "gc.png")


def test_grad_cam_explains_a_chosen_class(fitted_cnn, small_digits):
    X, _ = small_digits
    a, _ = plot.grad_cam(fitted_cnn, X[:4], class_index=0)
    b, _ = plot.grad_cam(fitted_cnn, X[:4], class_index=1)
    assert not np.allclose(a, b)


def _nested_estimator(fitted_cnn, pooling_inside: bool):
    """``fitted_cnn`` with its network swapped for one whose convolutions live in a
    nested model, as a TransferClassifier's backbone does."""
    import copy

    import keras

    h, w = fitted_cnn.image_size_
    inner_in = keras.Input((h, w, 1))
    z = keras.layers.Conv2D(4, 3, padding="same", name="inner_conv")(inner_in)
    z = keras.layers.ReLU(name="inner_relu")(z)
    if pooling_inside:
        z = keras.layers.GlobalAveragePooling2D(name="inner_pool")(z)
    backbone = keras.Model(inner_in, z, name="backbone")
    x_in = keras.Input((h, w, 1))
    x = keras.layers.Rescaling(1 / 255)(x_in)
    x = backbone(x)
    if not pooling_inside:
        x = keras.layers.GlobalAveragePooling2D()(x)
    out = keras.layers.Dense(len(fitted_cnn.classes_), activation="softmax")(x)
    clone = copy.copy(fitted_cnn)
    clone.model_ = keras.Model(x_in, out)
    return clone


@pytest.mark.parametrize("pooling_inside", [False, True])
def test_grad_cam_nested_backbone(fitted_cnn, small_digits, pooling_inside):
    X, _ = small_digits
    est = _nested_estimator(fitted_cnn, pooling_inside)
    heat, proba = plot.grad_cam(est, X[:6])
    expected = est.model_.predict(X[:6].astype(np.float32), verbose=0)
    np.testing.assert_allclose(proba, expected, atol=1e-5)
    assert heat.shape == (6, *fitted_cnn.image_size_)
    assert np.all(heat.reshape(6, -1).max(axis=1) > 0.99)
    _, name = explain._forward(est.model_, None)
    assert name == ("backbone/inner_relu" if pooling_inside else "backbone")


def test_grad_cam_layer_by_name(fitted_cnn, small_digits):
    X, _ = small_digits
    est = _nested_estimator(fitted_cnn, pooling_inside=False)
    heat, _ = plot.grad_cam(est, X[:3], layer="inner_conv")
    assert heat.shape == (3, *fitted_cnn.image_size_)
    with pytest.raises(InputError, match="'nope' is not in the model"):
        plot.grad_cam(est, X[:3], layer="nope")


def test_missing_matplotlib_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    with pytest.raises(ImportError, match=r"imgclf\[plot\]"):
        plot.plot_learning_curves({"loss": [1.0, 0.5]})


def test_missing_folder_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        plot.plot_learning_curves({"loss": [1.0, 0.5]}, path=tmp_path / "no" / "lc.png")


def test_grad_cam_on_a_transfer_classifier(fitted_mobilenet_transfer, tmp_path):
    """The real nested case: TransferClassifier's backbone is a model inside model_."""
    clf, X = fitted_mobilenet_transfer
    _, name = explain._forward(clf.model_, None)
    assert name == "backbone"
    heat, proba = plot.grad_cam(clf, X[:4])
    assert heat.shape == (4, 32, 32)
    np.testing.assert_allclose(proba, clf.predict_proba(X[:4]), atol=1e-5)
    plot.plot_grad_cam(clf, X[:4], path=tmp_path / "gc.png")
    _check_png(tmp_path / "gc.png")


def test_label_issues_grid_from_arrays_and_paths(digits, tmp_path):
    from imgclf import find_label_issues

    X, _, y = digits
    X, y = X[:40], y[:40].copy()
    proba = np.eye(10)[y] * 0.9 + 0.01
    y[[3, 7]] = (y[[3, 7]] + 1) % 10  # two wrong labels, the model sure of the truth
    issues = find_label_issues(None, X, y, pred_probs=proba, filter_by="predicted_neq_given")
    fig = plot.plot_label_issues(issues, X, path=tmp_path / "issues.png")
    assert len(fig.axes) == 2 and (tmp_path / "issues.png").stat().st_size > 2_000
    shown = fig.axes[0].images[0].get_array()
    assert shown.shape == (8, 8)  # flattened 64 -> 8x8
    assert np.allclose(shown, X[issues.index[0]].reshape(8, 8) / X[issues.index[:2]].max())
    title = fig.axes[0].get_title().splitlines()
    assert title[0] == f"given {y[issues.index[0]]}"
    assert title[1].startswith(f"suggested {issues.suggested_label[0]} (0.9")
    with pytest.raises(InputError, match="needs X"):
        plot.plot_label_issues(issues)
    with pytest.raises(InputError, match="LabelIssues"):
        plot.plot_label_issues(issues.index, X)
    # Paths: the files named by the result are read again.
    paths = []
    for i, row in enumerate(np.round(X / 16 * 255).astype(np.uint8)):
        paths.append(str(tmp_path / f"{i}.png"))
        Image.fromarray(row.reshape(8, 8)).save(paths[-1])
    from_files = find_label_issues(
        None, paths, y, pred_probs=proba, filter_by="predicted_neq_given"
    )
    fig = plot.plot_label_issues(from_files, n=1)
    assert len(fig.axes) == 1 and fig.axes[0].images[0].get_array().shape == (8, 8)
    none = find_label_issues(None, X, np.argmax(proba, 1), pred_probs=proba)
    fig = plot.plot_label_issues(none, X)
    assert fig._suptitle.get_text() == "no suspected label errors"


def test_calibration_diagram(fitted_cnn, small_digits, tmp_path):
    from imgclf._calibration import expected_calibration_error, reliability

    X, y = small_digits
    fig = plot.plot_calibration(fitted_cnn, X, y, n_bins=10, path=tmp_path / "rel.png")
    _check_png(tmp_path / "rel.png")
    ax = fig.axes[0]
    proba = fitted_cnn.predict_proba(X)
    columns = np.searchsorted(fitted_cnn.classes_, y)
    _, acc, counts = reliability(proba, columns, 10)
    # One bar per non-empty bin, as tall as that bin's accuracy.
    heights = [patch.get_height() for patch in ax.patches]
    np.testing.assert_allclose(heights, acc[counts > 0])
    assert f"ECE {expected_calibration_error(proba, columns, 10):.3f}" in ax.get_title()
    assert f"T = {fitted_cnn.temperature_:.2f}" in ax.get_title()
    with pytest.raises(InputError, match="not among"):
        plot.plot_calibration(fitted_cnn, X[:3], ["x", "y", "z"])
