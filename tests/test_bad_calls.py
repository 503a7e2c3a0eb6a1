"""Every bad call to the public API gets one of imgclf's own exceptions, whose
message names the argument or file and says the fix: never a raw
``TypeError`` / ``ValueError`` / ``KeyError`` / ``IndexError`` from NumPy,
scikit-learn, Keras or Pillow, never a whole array printed.

The table below is the contract: one row per bad call, with the imgclf
exception expected and the words the message must hold.
"""

from __future__ import annotations

import os
import subprocess
import sys
import types

import numpy as np
import pytest
from PIL import Image
from sklearn.exceptions import NotFittedError

import imgclf
from imgclf import CNNClassifier, load_csv, load_filenames, load_folder
from imgclf.cli import main
from imgclf.exceptions import (
    ImageFileError,
    InputError,
    InputTypeError,
    ModelFileError,
    PathNotFoundError,
)

#: The longest message a bad call may give: enough for a listing of files,
#: far too short for an array of images.
MESSAGE_MAX = 1500


def _new():
    return CNNClassifier(epochs=1, filters=4, random_state=0, lr_schedule=None)


def _png(path, value=0, size=8):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.fromarray(np.full((size, size), value, np.uint8)).save(path)
    return str(path)


@pytest.fixture(scope="module")
def c(tmp_path_factory, small_digits, fitted_cnn, digits):
    """What the bad calls need: images, a fitted CNN (and one fitted on
    flattened digits), its saved file, a class-folder tree, files to name."""
    tmp = tmp_path_factory.mktemp("bad_calls")
    X, y = small_digits
    data = tmp / "data"
    for label in ("one", "two"):
        for i in range(3):
            _png(str(data / label / f"{label}_{i}.png"), value=40 * i + (label == "two") * 120)
    flat_X, _, flat_y = digits
    flat = CNNClassifier(epochs=1, filters=4, random_state=0).fit(flat_X[:60], flat_y[:60] % 2)
    model = str(tmp / "model.imgclf")
    fitted_cnn.save(model)
    (tmp / "empty").mkdir()
    (tmp / "notes.imgclf").write_text("not a model")

    def csv(name: str, content: bytes) -> str:
        path = tmp / "csvs" / name
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(content)
        for label in ("a", "b"):
            _png(str(path.parent / f"{label}.png"))
        return str(path)

    return types.SimpleNamespace(
        tmp=str(tmp), X=X, y=y, clf=fitted_cnn, flat=flat, model=model, data=str(data), csv=csv
    )


def _cli(*argv):
    """The command line with --debug: its exception propagates."""
    return main([*argv, "--debug"])


X8 = np.zeros((4, 8, 8), np.uint8)
Y4 = [0, 1, 0, 1]
OK_CSV = b"path,label\na.png,x\nb.png,y\n"

# (id, call, exception type, words the message must hold)
CASES = [
    # ---------------------------------------------------------------- fit: y
    ("fit y mixed types", lambda c: _new().fit(X8, [1, "a", 2, "b"]), InputError, ["y mixes"]),
    (
        "fit y mixed object array",
        lambda c: _new().fit(X8, np.array([1, "a", 2.5, "b"], dtype=object)),
        InputError,
        ["y mixes", "'a'"],
    ),
    (
        "fit y continuous",
        lambda c: _new().fit(X8, [0.5, 1.5, 0.2, 0.1]),
        InputError,
        ["y holds", "astype(int)"],
    ),
    ("fit y 3-D", lambda c: _new().fit(X8, np.ones((4, 2, 1))), InputError, ["y should be", "1-D"]),
    (
        "fit y 2-D not 0/1",
        lambda c: _new().fit(X8, np.full((4, 2), 3)),
        InputError,
        ["multi-label", "other than 0 and 1"],
    ),
    ("fit y of dicts", lambda c: _new().fit(X8, [{}, {}, {}, {}]), InputError, ["y holds dict"]),
    ("fit y None", lambda c: _new().fit(X8, None), InputError, ["y is None"]),
    ("fit y too short", lambda c: _new().fit(X8, [0, 1]), InputError, ["y has 2 labels"]),
    ("fit y missing labels", lambda c: _new().fit(X8, [0, None, 1, 0]), InputError, ["y has 1"]),
    ("fit y one class", lambda c: _new().fit(X8, [1, 1, 1, 1]), InputError, ["2 classes"]),
    # ---------------------------------------------------------------- fit: X
    (
        "fit X images of different sizes",
        lambda c: _new().fit([np.zeros((8, 8)), np.zeros((9, 9))], [0, 1]),
        InputError,
        ["X is a list of images of different sizes", "(9, 9)"],
    ),
    (
        "fit X zero height",
        lambda c: _new().fit(np.zeros((4, 0, 8)), Y4),
        InputError,
        ["zero height", "X.shape"],
    ),
    (
        "fit X complex",
        lambda c: _new().fit(np.zeros((4, 8, 8)) + 1j, Y4),
        InputError,
        ["X has complex", "np.abs(X)"],
    ),
    (
        "fit X complex flattened",
        lambda c: _new().fit(np.ones((50, 64)) * 1j, [0, 1] * 25),
        InputError,
        ["Complex data not supported", "X"],
    ),
    (
        "fit X datetime",
        lambda c: _new().fit(np.zeros((4, 8, 8), "datetime64[s]"), Y4),
        InputTypeError,
        ["X has dtype datetime64"],
    ),
    (
        "fit X strings 2-D",
        lambda c: _new().fit(np.full((4, 4), "a"), Y4),
        InputError,
        ["X is a 2-D array of strings"],
    ),
    (
        "fit X objects 2-D",
        lambda c: _new().fit(np.array([[{}, 1.0]] * 4, dtype=object), Y4),
        InputTypeError,
        ["X holds items that are not numbers"],
    ),
    ("fit X no images", lambda c: _new().fit(np.zeros((0, 8, 8)), []), InputError, ["0 images"]),
    (
        "fit X no pixels",
        lambda c: _new().fit(np.zeros((4, 0)), Y4),
        InputError,
        ["X has 0 feature(s)"],
    ),
    ("fit X None", lambda c: _new().fit(None, Y4), InputError, ["X=None"]),
    ("fit X one path", lambda c: _new().fit("a.png", Y4), InputError, ["X is a single path"]),
    (
        "fit X five channels",
        lambda c: _new().fit(np.zeros((4, 8, 8, 5)), Y4),
        InputError,
        ["5 channels"],
    ),
    (
        "fit X five dimensions",
        lambda c: _new().fit(np.zeros((4, 8, 8, 1, 1)), Y4),
        InputError,
        ["X with 5 dimensions"],
    ),
    ("fit X 1-D numbers", lambda c: _new().fit(np.zeros(64), Y4), InputError, ["1-D array"]),
    ("fit X list of None", lambda c: _new().fit([None] * 4, Y4), InputTypeError, ["NoneType"]),
    (
        "fit X NaN",
        lambda c: _new().fit(np.full((4, 8, 8), np.nan), Y4),
        InputError,
        ["X contains NaN"],
    ),
    (
        "fit X beyond float32",
        lambda c: _new().fit(np.full((4, 8, 8), 1e39), Y4),
        InputError,
        ["float32", "sample 0"],
    ),
    (
        "fit X paths and arrays",
        lambda c: _new().fit(["a.png", np.zeros((8, 8))], [0, 1]),
        InputError,
        ["X mixes image paths", "item 1"],
    ),
    (
        "fit X missing files",
        lambda c: _new().fit([f"{c.tmp}/gone_{i}.png" for i in range(4)], Y4),
        ImageFileError,
        ["gone_0.png", "does not exist"],
    ),
    (
        "fit bad parameter",
        lambda c: _new().set_params(epochs=-1).fit(X8, Y4),
        InputError,
        ["epochs=-1"],
    ),
    (
        "fit parameter holding a large array",
        lambda c: _new().set_params(image_size=np.arange(900)).fit(X8, Y4),
        InputError,
        ["image_size=array([", "..."],
    ),
    # ------------------------------------------------- predict, predict_proba, score
    (
        "predict X complex",
        lambda c: c.clf.predict(np.zeros((2, 8, 8)) + 1j),
        InputError,
        ["X has complex"],
    ),
    (
        "predict X images of different sizes",
        lambda c: c.clf.predict([np.zeros((8, 8)), np.zeros((8, 9))]),
        InputError,
        ["different sizes"],
    ),
    (
        "predict X zero width",
        lambda c: c.clf.predict(np.zeros((2, 8, 0))),
        InputError,
        ["zero height or width"],
    ),
    (
        "predict_proba X other channels",
        lambda c: c.clf.predict_proba(np.zeros((2, 8, 8, 3))),
        InputError,
        ["1-channel", "X has 3 channels"],
    ),
    (
        "predict_proba X empty",
        lambda c: c.clf.predict_proba(np.zeros((0, 8, 8))),
        InputError,
        ["0 images"],
    ),
    ("predict_proba X None", lambda c: c.clf.predict_proba(None), InputError, ["X=None"]),
    (
        "predict missing file",
        lambda c: c.clf.predict([f"{c.tmp}/absent.png"]),
        ImageFileError,
        ["absent.png"],
    ),
    (
        "predict other number of features",
        lambda c: c.flat.predict(np.zeros((2, 16))),
        InputError,
        ["X has 16 features", "expecting 64"],
    ),
    (
        "score y mixed types",
        lambda c: c.clf.score(c.X[:4], [1, "a", 2, "b"]),
        InputError,
        ["y mixes"],
    ),
    ("score y too short", lambda c: c.clf.score(c.X[:4], [0, 1]), InputError, ["y has 2 labels"]),
    ("score y None", lambda c: c.clf.score(c.X[:4], None), InputError, ["y is None"]),
    (
        "score y strings for numeric classes",
        lambda c: c.clf.score(c.X[:4], np.array(["0", "1", "2", "0"])),
        InputError,
        ["score: y holds str", "classes"],
    ),
    (
        "score sample_weight of another length",
        lambda c: c.clf.score(c.X[:4], c.y[:4], sample_weight=[1.0, 2.0]),
        InputError,
        ["sample_weight"],
    ),
    ("predict unfitted", lambda c: _new().predict(X8), NotFittedError, ["CNNClassifier"]),
    # ----------------------------------------------------------------- loaders
    (
        "load_folder missing",
        lambda c: load_folder(f"{c.tmp}/nowhere"),
        PathNotFoundError,
        ["nowhere", "does not exist"],
    ),
    ("load_folder None", lambda c: load_folder(None), InputTypeError, ["root=None"]),
    ("load_folder a file", lambda c: load_folder(c.model), InputError, ["model.imgclf", "a file"]),
    (
        "load_folder no class folders",
        lambda c: load_folder(f"{c.tmp}/empty"),
        InputError,
        ["empty", "no class folders"],
    ),
    (
        "load_folder on_bad_file",
        lambda c: load_folder(c.data, on_bad_file="ignore"),
        InputError,
        ["on_bad_file='ignore'"],
    ),
    (
        "load_csv UTF-16 without byte-order mark",
        lambda c: load_csv(c.csv("u16.csv", OK_CSV.decode().encode("utf-16-le"))),
        InputError,
        ["u16.csv", "encoding='utf-16-le'"],
    ),
    (
        "load_csv Latin-1",
        lambda c: load_csv(c.csv("latin.csv", "path,label\na.png,café\n".encode("latin-1"))),
        InputError,
        ["latin.csv", "line 2", "encoding="],
    ),
    (
        "load_csv binary",
        lambda c: load_csv(c.csv("binary.csv", bytes(range(256)) * 8)),
        InputError,
        ["binary.csv", "not a text file"],
    ),
    (
        "load_csv semicolons",
        lambda c: load_csv(c.csv("semi.csv", b"path;label\na.png;x\nb.png;y\n")),
        InputError,
        ["semi.csv", "delimiter=';'"],
    ),
    (
        "load_csv missing",
        lambda c: load_csv(f"{c.tmp}/labels.csv"),
        PathNotFoundError,
        ["labels.csv", "does not exist"],
    ),
    ("load_csv a folder", lambda c: load_csv(c.tmp), InputError, ["is not a file"]),
    ("load_csv None", lambda c: load_csv(None), InputTypeError, ["path=None"]),
    (
        "load_csv empty",
        lambda c: load_csv(c.csv("void.csv", b"")),
        InputError,
        ["void.csv", "empty"],
    ),
    (
        "load_csv unclosed quote",
        lambda c: load_csv(c.csv("quote.csv", b'path,label\n"' + b"a" * 200_000 + b"\n")),
        InputError,
        ["quote.csv", "line"],
    ),
    (
        "load_csv unknown path column",
        lambda c: load_csv(c.csv("ok.csv", OK_CSV), path_column="file"),
        InputError,
        ["path_column='file'", "ok.csv"],
    ),
    (
        "load_csv label column out of range",
        lambda c: load_csv(c.csv("ok.csv", OK_CSV), label_column=7),
        InputError,
        ["label_column=7"],
    ),
    (
        "load_csv missing=",
        lambda c: load_csv(c.csv("ok.csv", OK_CSV), missing="maybe"),
        InputError,
        ["missing='maybe'"],
    ),
    (
        "load_csv delimiter of two characters",
        lambda c: load_csv(c.csv("ok.csv", OK_CSV), delimiter="::"),
        InputError,
        ["delimiter='::'"],
    ),
    (
        "load_csv unknown encoding",
        lambda c: load_csv(c.csv("ok.csv", OK_CSV), encoding="klingon"),
        InputError,
        ["encoding='klingon'"],
    ),
    (
        "load_csv rows naming missing files",
        lambda c: load_csv(c.csv("rows.csv", b"path,label\nno.png,x\n")),
        InputError,
        ["row 2", "no.png", "missing='skip'"],
    ),
    (
        "load_filenames prefix and pattern",
        lambda c: load_filenames(c.data, prefix_length=1, pattern="a"),
        InputError,
        ["exactly one of prefix_length", "pattern"],
    ),
    (
        "load_filenames bad regex",
        lambda c: load_filenames(c.data, pattern="("),
        InputError,
        ["pattern='('"],
    ),
    (
        "load_filenames pattern int",
        lambda c: load_filenames(c.data, pattern=5),
        InputTypeError,
        ["pattern=5"],
    ),
    (
        "load_filenames mapping list",
        lambda c: load_filenames(c.data, prefix_length=1, mapping=["a"]),
        InputTypeError,
        ["mapping=['a']"],
    ),
    (
        "load_filenames prefix_length 0",
        lambda c: load_filenames(c.data, prefix_length=0),
        InputError,
        ["prefix_length=0"],
    ),
    (
        "load_filenames code not in mapping",
        lambda c: load_filenames(f"{c.data}/one", prefix_length=3, mapping={"two": "2"}),
        InputError,
        ["mapping has no entry", "'one'"],
    ),
    # ------------------------------------------------------- save, load, export
    (
        "save into a missing folder",
        lambda c: c.clf.save(f"{c.tmp}/no/such/folder/m.imgclf"),
        PathNotFoundError,
        ["save: path=", "no/such/folder", "Create the folder"],
    ),
    (
        "save onto a folder",
        lambda c: c.clf.save(c.tmp),
        InputError,
        ["is a folder", "model.imgclf"],
    ),
    ("save path None", lambda c: c.clf.save(None), InputTypeError, ["save: path=None"]),
    (
        "load not a model",
        lambda c: imgclf.load(f"{c.tmp}/notes.imgclf"),
        ModelFileError,
        ["notes.imgclf"],
    ),
    ("load a folder", lambda c: imgclf.load(c.tmp), ModelFileError, ["is a folder"]),
    (
        "export format",
        lambda c: c.clf.export(f"{c.tmp}/e", format="coreml"),
        InputError,
        ["format='coreml'"],
    ),
    (
        "export into a missing folder",
        lambda c: c.clf.export(f"{c.tmp}/no/e.tflite", format="tflite"),
        PathNotFoundError,
        ["no/e.tflite", "does not exist"],
    ),
    ("export path None", lambda c: c.clf.export(None), InputTypeError, ["path=None"]),
    ("export unfitted", lambda c: _new().export(f"{c.tmp}/e"), NotFittedError, ["CNNClassifier"]),
    # ------------------------------------------------------------ command line
    (
        "cli predict missing model",
        lambda c: _cli("predict", f"{c.tmp}/gone.imgclf", c.data),
        PathNotFoundError,
        ["gone.imgclf"],
    ),
    (
        "cli predict missing input",
        lambda c: _cli("predict", c.model, f"{c.tmp}/gone.png"),
        PathNotFoundError,
        ["gone.png"],
    ),
    (
        "cli predict folder without images",
        lambda c: _cli("predict", c.model, f"{c.tmp}/empty"),
        InputError,
        ["No image files", "empty"],
    ),
    (
        "cli train --map without --prefix",
        lambda c: _cli("train", c.data, "--map", "a=b", "--out", f"{c.tmp}/m"),
        InputError,
        ["--map"],
    ),
    (
        "cli train --map without =",
        lambda c: _cli("train", c.data, "--prefix", "3", "--map", "one", "--out", f"{c.tmp}/m"),
        InputError,
        ["--map 'one'", "CODE=NAME"],
    ),
    (
        "cli train --backbone for a cnn",
        lambda c: _cli("train", c.data, "--backbone", "vgg16", "--out", f"{c.tmp}/m"),
        InputError,
        ["--backbone"],
    ),
    (
        "cli train missing folder",
        lambda c: _cli("train", f"{c.tmp}/absent", "--out", f"{c.tmp}/m"),
        PathNotFoundError,
        ["absent"],
    ),
    (
        "cli train --delimiter without --csv",
        lambda c: _cli("train", c.data, "--delimiter", ";", "--out", f"{c.tmp}/m"),
        InputError,
        ["--delimiter", "--csv"],
    ),
    (
        "cli evaluate folder names for numeric classes",
        lambda c: _cli("evaluate", c.model, c.data),
        InputError,
        ["['one', 'two']", "not among the model's classes"],
    ),
    (
        "cli evaluate semicolon CSV",
        lambda c: _cli(
            "evaluate",
            c.model,
            os.path.dirname(c.csv("semi.csv", b"path;label\na.png;x\n")),
            "--csv",
            c.csv("semi.csv", b"path;label\na.png;x\n"),
        ),
        InputError,
        ["semi.csv", "delimiter=';'"],
    ),
]


@pytest.mark.parametrize(
    "call, expected, words", [case[1:] for case in CASES], ids=[case[0] for case in CASES]
)
def test_bad_call_raises_the_library_error_naming_it(c, call, expected, words):
    with pytest.raises(Exception) as info:
        call(c)
    exc = info.value
    assert isinstance(exc, expected), f"{type(exc).__module__}.{type(exc).__name__}: {exc}"
    library = (InputError, ModelFileError, NotFittedError)
    assert isinstance(exc, library), f"raw {type(exc).__name__}: {exc}"
    message = str(exc)
    for word in words:
        assert word in message, message
    assert len(message) <= MESSAGE_MAX, message[:300]
    assert ".imgclf-" not in message  # never the name of a temporary file


def test_the_table_covers_every_public_call():
    covered = {case[0].split()[0] for case in CASES}
    assert len(CASES) >= 40
    assert {"fit", "predict", "predict_proba", "score", "load_folder", "load_csv"} <= covered
    assert {"load_filenames", "save", "load", "export", "cli"} <= covered


def test_errors_stay_the_built_in_types_they_were():
    # Code that caught the built-in error before keeps working.
    assert issubclass(InputError, ValueError)
    assert issubclass(InputTypeError, TypeError) and issubclass(InputTypeError, InputError)
    assert issubclass(PathNotFoundError, FileNotFoundError)
    assert issubclass(PathNotFoundError, InputError)


def test_save_into_a_missing_folder_creates_nothing(c, tmp_path):
    with pytest.raises(PathNotFoundError):
        c.clf.save(tmp_path / "missing" / "m.imgclf")
    assert os.listdir(tmp_path) == []


def test_score_is_the_accuracy_of_predict(c):
    X, y = c.X[:60], c.y[:60]
    assert c.clf.score(X, y) == pytest.approx(np.mean(c.clf.predict(X) == y))
    weights = np.arange(60.0)
    expected = np.average(c.clf.predict(X) == y, weights=weights)
    assert c.clf.score(X, y, sample_weight=weights) == pytest.approx(expected)


def test_a_list_of_labels_of_one_type_still_works(c):
    clf = _new().fit(c.X[:40], [str(v) for v in c.y[:40]])
    assert clf.classes_.tolist() == ["0", "1", "2"]


# ---------------------------------------------------- load_csv reads what it can
@pytest.mark.parametrize(
    "encoding, given",
    [("utf-8-sig", None), ("utf-16", None), ("utf-32", None), ("latin-1", "latin-1")],
)
def test_load_csv_reads_other_encodings(c, encoding, given):
    path = c.csv(f"enc-{encoding}.csv", "path,label\na.png,café\nb.png,thé\n".encode(encoding))
    X, y = load_csv(path, encoding=given)
    assert [os.path.basename(p) for p in X] == ["a.png", "b.png"]
    assert y.tolist() == ["café", "thé"]


@pytest.mark.parametrize("delimiter", [";", "\t", "|"])
def test_load_csv_takes_a_delimiter(c, delimiter):
    text = f"path{delimiter}label\na.png{delimiter}x\nb.png{delimiter}y\n"
    X, y = load_csv(c.csv("delimited.csv", text.encode()), delimiter=delimiter)
    assert y.tolist() == ["x", "y"]


def test_cli_reads_a_semicolon_csv(c, capsys):
    csv_path = c.csv("semi-ok.csv", b"path;label\na.png;0\nb.png;1\n")
    code = main(
        [
            "evaluate",
            c.model,
            os.path.dirname(csv_path),
            "--csv",
            csv_path,
            "--delimiter",
            ";",
            "--plots",
            f"{c.tmp}/plots",
        ]
    )
    assert code == 0
    assert "Evaluating on 2 images in 2 classes" in capsys.readouterr().out


# -------------------------------------------- decoders' own lines stay out of the CLI
def _damaged_tiffs(folder) -> list[str]:
    """TIFFs whose decoding makes libtiff / libjpeg write to file descriptor 2
    and Pillow warn (checked against Pillow by running it bare, below)."""
    import io

    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8))
    paths = []
    for compression in ("tiff_lzw", "tiff_deflate", "jpeg"):
        buffer = io.BytesIO()
        image.save(buffer, format="TIFF", compression=compression)
        data = bytearray(buffer.getvalue())
        for i in range(200, min(len(data) - 200, 1200), 7):
            data[i] ^= 0xFF
        path = os.path.join(folder, f"{compression}_flipped.tif")
        with open(path, "wb") as f:
            f.write(bytes(data))
        paths.append(path)
        path = os.path.join(folder, f"{compression}_cut.tif")
        with open(path, "wb") as f:
            f.write(buffer.getvalue()[: len(data) - 20])
        paths.append(path)
    return paths


@pytest.mark.slow
def test_cli_output_holds_no_decoder_lines(c, tmp_path):
    folder = tmp_path / "scan"
    folder.mkdir()
    tiffs = _damaged_tiffs(str(folder))
    good = _png(str(folder / "good.png"), value=90)
    # Bare Pillow on these files writes C-level lines (this test's premise).
    bare = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys\nfrom PIL import Image\nfor p in sys.argv[1:]:\n"
            "    try: Image.open(p).load()\n    except Exception: pass",
            *tiffs,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert "Decode" in bare.stderr or "JPEGLib" in bare.stderr
    proc = subprocess.run(
        [sys.executable, "-m", "imgclf", "predict", c.model, str(folder)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    rows = proc.stdout.splitlines()
    assert rows[0] == "path,label,probability" and any(r.startswith(good) for r in rows[1:])
    lines = proc.stderr.splitlines()
    # Only imgclf's warning naming the files left out, its list of them.
    assert lines[0].startswith("imgclf: warning: imgclf predict: left out")
    assert all(line.startswith("  - '") for line in lines[1:]), proc.stderr
