"""The ``imgclf`` command line, run in-process on tiny generated image folders."""

import contextlib
import csv
import io
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

import imgclf
from imgclf.cli import main
from imgclf.exceptions import InputError

CLASSES = ("bars", "cols", "dots")


def _pattern(kind: int, rng) -> np.ndarray:
    image = rng.integers(0, 60, (12, 12)).astype(np.uint8)
    if kind == 0:
        image[::3] = 230
    elif kind == 1:
        image[:, ::3] = 230
    else:
        image[4:8, 4:8] = 230
    return image


def _write_images(root, per_class=10, flat=False):
    """``root/<class>/<cls>_NN.png`` (or all in ``root`` with ``flat``)."""
    rng = np.random.default_rng(0)
    for kind, name in enumerate(CLASSES):
        folder = root if flat else root / name
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            Image.fromarray(_pattern(kind, rng)).save(folder / f"{name[:3]}_{i:02d}.png")
    return root


def run(argv, capsys=None):
    """Run the command line; return (exit code, stdout, stderr)."""
    if capsys is not None:
        code = main(argv)
        out, err = capsys.readouterr()
        return code, out, err
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One CNN trained through ``imgclf train`` on a class-folder tree."""
    base = tmp_path_factory.mktemp("cli")
    data = _write_images(base / "data")
    model = base / "model.imgclf"
    result = run(
        [
            "train",
            str(data),
            "--epochs",
            "2",
            "--image-size",
            "12",
            "--out",
            str(model),
            "--plots",
            str(base / "plots"),
            "--quiet",
        ]
    )
    return base, data, model, result


def test_help_does_not_import_tensorflow():
    code = (
        "import sys\n"
        "from imgclf.cli import main\n"
        "for argv in (['--help'], ['train', '--help'], ['predict', '--help'], ['audit', '--help']):\n"
        "    try:\n"
        "        main(argv)\n"
        "    except SystemExit as exc:\n"
        "        assert exc.code == 0, exc.code\n"
        "heavy = [m for m in ('tensorflow', 'keras', 'matplotlib') if m in sys.modules]\n"
        "print('HEAVY', heavy)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert "HEAVY []" in proc.stdout
    for word in (
        "demo",
        "train",
        "predict",
        "evaluate",
        "audit",
        "--backbone",
        "--prefix",
        "--proba",
    ):
        assert word in proc.stdout


def test_python_dash_m_help():
    proc = subprocess.run(
        [sys.executable, "-m", "imgclf", "--help"], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0 and "usage: imgclf" in proc.stdout


def test_train_on_folders(trained):
    base, _, model, (code, out, err) = trained
    assert code == 0, err
    assert "Found 30 images in 3 classes: bars (10), cols (10), dots (10)." in out
    # 3 of 30 images would be held out: too few to judge epochs by, so none is.
    assert "no validation hold-out: fewer than 5 images per class would be held out" in out
    assert f"Saved the model to {model}" in out
    assert str(base / "plots" / "learning_curves.png") in out
    assert (base / "plots" / "learning_curves.png").stat().st_size > 5_000
    clf = imgclf.load(model)
    assert clf.classes_.tolist() == list(CLASSES)
    assert clf.image_size_ == (12, 12)
    assert len(clf.history_["loss"]) <= 2


def test_predict_csv_agrees_with_model(trained, capsys):
    _, data, model, _ = trained
    code, out, err = run(
        ["predict", str(model), str(data / "bars"), str(data / "dots" / "dot_03.png"), "--proba"],
        capsys,
    )
    assert code == 0, err
    rows = list(csv.reader(io.StringIO(out)))
    assert rows[0] == ["path", "label", "probability", "proba_bars", "proba_cols", "proba_dots"]
    paths = [r[0] for r in rows[1:]]
    assert paths == sorted(str(p) for p in (data / "bars").iterdir()) + [
        str(data / "dots" / "dot_03.png")
    ]
    clf = imgclf.load(model)
    expected = clf.predict_proba(paths)
    got = np.array([[float(v) for v in r[3:]] for r in rows[1:]])
    np.testing.assert_allclose(got, expected, atol=1e-5)
    assert [r[1] for r in rows[1:]] == clf.classes_[expected.argmax(1)].tolist()
    np.testing.assert_allclose([float(r[2]) for r in rows[1:]], expected.max(1), atol=1e-5)
    assert "predicting" not in err  # small input: no progress bar


def test_predict_progress_bar_goes_to_stderr(trained, capsys):
    _, data, model, _ = trained
    code, out, err = run(["predict", str(model), str(data), "--progress"], capsys)
    assert code == 0
    assert "predicting" in err and "30/30" in err
    assert "predicting" not in out
    assert len(out.splitlines()) == 31  # header + one row per image


def test_predict_skips_unreadable_files(trained, tmp_path, capsys):
    _, data, model, _ = trained
    good = tmp_path / "ok.png"
    Image.open(data / "bars" / "bar_00.png").save(good)
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG not really")
    code, out, err = run(["predict", str(model), str(tmp_path)], capsys)
    assert code == 0
    assert "imgclf: warning: imgclf predict: left out 1 of 2 image files" in err
    assert repr(str(broken)) in err
    assert [r[0] for r in csv.reader(io.StringIO(out))][1:] == [str(good)]


def test_evaluate_writes_report_and_pictures(trained, capsys):
    base, data, model, _ = trained
    plots = base / "eval"
    code, out, err = run(
        ["evaluate", str(model), str(data), "--plots", str(plots), "--top", "6"], capsys
    )
    assert code == 0, err
    for name in CLASSES:
        assert name in out
    clf = imgclf.load(model)
    X, y = imgclf.load_folder(data)
    assert f"Accuracy: {clf.score(X, y):.3f}" in out
    for name in ("confusion_matrix.png", "top_losses.png", "grad_cam.png"):
        assert (plots / name).stat().st_size > 5_000
        assert str(plots / name) in out


def test_evaluate_with_prefix_labels_and_map(trained, tmp_path, capsys):
    _, _, model, _ = trained
    flat = _write_images(tmp_path / "flat", per_class=3, flat=True)
    argv = ["evaluate", str(model), str(flat), "--prefix", "3", "--plots", str(tmp_path / "p")]
    argv += ["--map", "bar=bars", "--map", "col=cols", "--map", "dot=dots"]
    code, out, err = run(argv, capsys)
    assert code == 0, err
    assert "Evaluating on 9 images in 3 classes: bars (3), cols (3), dots (3)." in out


def test_train_from_csv(tmp_path, capsys):
    data = _write_images(tmp_path / "imgs", per_class=6)
    manifest = tmp_path / "labels.csv"
    lines = ["file,kind"] + [
        f"{p.parent.name}/{p.name},{p.parent.name.upper()}" for p in sorted(data.rglob("*.png"))
    ]
    manifest.write_text("\n".join(lines) + "\n")
    model = tmp_path / "m.imgclf"
    argv = ["train", str(data), "--csv", str(manifest), "--label-column", "kind"]
    argv += ["--epochs", "1", "--image-size", "12", "--out", str(model), "--quiet"]
    code, out, err = run(argv + ["--lr-schedule", "one_cycle"], capsys)
    assert code == 0, err
    assert "Found 18 images in 3 classes: BARS (6), COLS (6), DOTS (6)." in out
    clf = imgclf.load(model)
    assert clf.classes_.tolist() == ["BARS", "COLS", "DOTS"]
    assert clf.lr_schedule == "one_cycle"


@pytest.mark.slow
def test_train_transfer_without_imagenet(tmp_path, capsys):
    data = _write_images(tmp_path / "imgs", per_class=6)
    model = tmp_path / "t.imgclf"
    argv = ["train", str(data), "--model", "transfer", "--backbone", "mobilenet_v3_small"]
    argv += ["--weights", "none", "--image-size", "32", "--epochs", "1", "--fine-tune-epochs", "1"]
    argv += ["--out", str(model)]
    code, out, err = run(argv + ["--quiet"], capsys)
    assert code == 0, err
    clf = imgclf.load(model)
    assert type(clf).__name__ == "TransferClassifier"
    assert clf.backbone == "mobilenet_v3_small" and clf.weights is None
    code, out, err = run(["predict", str(model), str(data / "dots")], capsys)
    assert code == 0 and len(out.splitlines()) == 7


@pytest.mark.slow
def test_demo_prints_where_it_saved_pictures(tmp_path, capsys, monkeypatch):
    import imgclf.cnn

    class Quick(imgclf.cnn.CNNClassifier):
        def fit(self, X, y):
            self.set_params(epochs=1, filters=4)
            return super().fit(X, y)

    monkeypatch.setattr(imgclf.cnn, "CNNClassifier", Quick)
    plots = tmp_path / "pics"
    code, out, err = run(["demo", "--fast", "--verbose", "0", "--plots", str(plots)], capsys)
    assert code == 0, err
    assert "precision" in out and "Test accuracy:" in out
    assert f"Saved pictures to {plots}{os.sep}:" in out
    names = ("learning_curves.png", "confusion_matrix.png", "top_losses.png", "grad_cam.png")
    for name in names:
        assert (plots / name).stat().st_size > 5_000
        assert str(plots / name) in out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["predict", "{tmp}/nope.imgclf", "{tmp}"], "No saved model at"),
        (["predict", "{model}", "{tmp}/missing.png"], "No such file or folder"),
        (["train", "{tmp}", "--map", "a=b", "--out", "{tmp}/m"], "--map renames file-name codes"),
        (["train", "{tmp}", "--backbone", "vgg16", "--out", "{tmp}/m"], "are for --model transfer"),
        (["train", "{tmp}/absent", "--out", "{tmp}/m"], "absent"),
        (
            [
                "train",
                "{data}",
                "--model",
                "transfer",
                "--weights",
                "{tmp}/no.h5",
                "--out",
                "{tmp}/m",
            ],
            "On the command line: --weights PATH, or --weights none.",
        ),
    ],
)
def test_errors_are_one_clear_line(trained, tmp_path, capsys, argv, message):
    _, data, model, _ = trained
    argv = [a.format(tmp=tmp_path, model=model, data=data) for a in argv]
    code, out, err = run(argv, capsys)
    assert code == 1
    assert err.startswith("imgclf: error: ") and message in err
    assert "Traceback" not in err


def test_csv_errors_name_the_flags(tmp_path, capsys):
    """The library's advice names ``delimiter=`` and ``encoding=``; the command
    line adds its flags, for those errors (``InputError.parameters``) only."""
    manifest = tmp_path / "labels.csv"
    manifest.write_text("path;label\na.png;x\n")
    argv = ["train", str(tmp_path), "--csv", str(manifest), "--out", str(tmp_path / "m")]
    code, _, err = run(argv, capsys)
    assert code == 1
    assert "delimiter=';'" in err and "On the command line: --delimiter CHAR" in err
    with pytest.raises(InputError) as exc:
        imgclf.load_csv(manifest)
    assert exc.value.parameters == ("delimiter",)
    # An error that only quotes a path with "delimiter=" in it is not about the flag.
    empty = tmp_path / "delimiter=x.csv"
    empty.write_text("")
    code, _, err = run(["train", str(tmp_path), "--csv", str(empty), "--out", "m"], capsys)
    assert code == 1 and "is empty" in err and "--delimiter" not in err


def test_debug_shows_the_traceback(tmp_path):
    with pytest.raises(FileNotFoundError):
        main(["predict", str(tmp_path / "nope.imgclf"), str(tmp_path), "--debug"])
    with pytest.raises(FileNotFoundError):
        main(["--debug", "predict", str(tmp_path / "nope.imgclf"), str(tmp_path)])


def test_bad_option_values_exit_2(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["train", "x", "--image-size", "big", "--out", "m"])
    assert exc.value.code == 2
    assert "expected a size such as 64" in capsys.readouterr().err


@pytest.mark.slow
def test_error_is_the_only_line_on_stderr(trained, tmp_path):
    """In a fresh process, TensorFlow's C++ start-up lines do not bury the message."""
    _, _, model, _ = trained
    proc = subprocess.run(
        [sys.executable, "-m", "imgclf", "predict", str(model), str(tmp_path / "gone.png")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 1
    assert proc.stderr.splitlines() == [
        f"imgclf: error: No such file or folder: {str(tmp_path / 'gone.png')!r}."
    ]
