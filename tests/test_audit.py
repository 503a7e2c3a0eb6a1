"""imgclf.find_label_issues (imgclf.audit): out-of-fold probabilities read by cleanlab."""

import csv
import os
import sys

import numpy as np
import pytest
from PIL import Image

from imgclf import CNNClassifier, find_label_issues
from imgclf.audit import FILTERS, LabelIssues
from imgclf.exceptions import InputError


def _confident(true, n_classes=3, p=0.9):
    """Probabilities that put ``p`` on each image's true class."""
    probs = np.full((len(true), n_classes), (1 - p) / (n_classes - 1))
    probs[np.arange(len(true)), true] = p
    return probs


@pytest.fixture
def noisy():
    """30 labels of 3 classes, three of them wrong (positions 4, 15, 26), and
    out-of-fold probabilities that know the truth (wrong ones sure to varying degrees)."""
    true = np.repeat([0, 1, 2], 10)
    given = true.copy()
    wrong = {4: (1, 0.99), 15: (2, 0.95), 26: (0, 0.93)}
    probs = _confident(true)
    for i, (label, _) in wrong.items():
        given[i] = label
    for i, (_, p) in wrong.items():
        probs[i] = _confident([true[i]], p=p)[0]
    names = np.array(["ant", "bee", "cat"])
    return names[given], probs, names[true]


def test_precomputed_pred_probs_worst_first(noisy):
    y, probs, truth = noisy
    issues = find_label_issues(None, None, y, pred_probs=probs)
    assert isinstance(issues, LabelIssues)
    # Worst first: the most confident disagreement has the lowest label quality.
    assert issues.index.tolist() == [4, 15, 26]
    assert issues.given_label.tolist() == y[[4, 15, 26]].tolist()
    assert issues.suggested_label.tolist() == truth[[4, 15, 26]].tolist()
    assert np.all(np.diff(issues.label_quality) >= 0)
    assert issues.label_quality[0] == pytest.approx(0.005)  # p(given) for position 4
    assert issues.suggested_proba.tolist() == pytest.approx([0.99, 0.95, 0.93])
    assert issues.path is None and len(issues) == 3
    assert issues.classes.tolist() == ["ant", "bee", "cat"]
    assert issues.pred_probs.shape == (30, 3)
    assert repr(issues) == (
        "LabelIssues(3 of 30 labels suspected; worst: index 4, given 'bee', suggested 'ant', "
        "label quality 0.005)"
    )


def test_rows_and_csv_with_paths(noisy, tmp_path):
    y, probs, _ = noisy
    X = [tmp_path / f"img_{i:02d}.png" for i in range(30)]  # PathLike items
    issues = find_label_issues(None, X, y, pred_probs=probs)
    assert issues.path.tolist() == [str(X[i]) for i in (4, 15, 26)]
    rows = issues.rows()
    assert rows[0] == {
        "index": 4,
        "path": str(X[4]),
        "given_label": "bee",
        "suggested_label": "ant",
        "label_quality": pytest.approx(0.005),
        "suggested_proba": pytest.approx(0.99),
    }
    out = issues.to_csv(tmp_path / "suspects.csv")
    with open(out, newline="") as f:
        table = list(csv.DictReader(f))
    assert [r["path"] for r in table] == [str(X[i]) for i in (4, 15, 26)]
    assert list(table[0]) == [
        "index",
        "path",
        "given_label",
        "suggested_label",
        "label_quality",
        "suggested_proba",
    ]
    assert float(table[2]["label_quality"]) == pytest.approx(issues.label_quality[2])


def test_refiltering_the_same_pred_probs(noisy):
    y, probs, _ = noisy
    for rule in FILTERS:
        found = find_label_issues(None, None, y, pred_probs=probs, filter_by=rule)
        assert set(found.index.tolist()) <= {4, 15, 26}, rule
    every = find_label_issues(None, None, y, pred_probs=probs, filter_by="predicted_neq_given")
    assert sorted(every.index.tolist()) == [4, 15, 26]


def test_classes_name_the_columns(noisy):
    y, probs, _ = noisy
    flipped = probs[:, ::-1]
    issues = find_label_issues(None, None, y, pred_probs=flipped, classes=["cat", "bee", "ant"])
    assert issues.index.tolist() == [4, 15, 26]
    assert issues.suggested_label.tolist() == ["ant", "bee", "cat"]


def test_missing_cleanlab_names_the_extra_before_any_fit(monkeypatch, noisy):
    for name in ("cleanlab", "cleanlab.filter", "cleanlab.rank"):
        monkeypatch.setitem(sys.modules, name, None)

    class NeverFits(CNNClassifier):
        def fit(self, X, y):
            raise AssertionError("fitted before checking for cleanlab")

    y, probs, _ = noisy
    for call in (
        lambda: find_label_issues(NeverFits(), np.zeros((30, 8, 8)), y),
        lambda: find_label_issues(None, None, y, pred_probs=probs),
    ):
        with pytest.raises(ImportError, match=r'pip install "imgclf\[cleanlab\]"') as info:
            call()
        assert 'pip install -e ".[cleanlab]"' in str(info.value)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"filter_by": "prune"}, "filter_by='prune' is not one of"),
        ({"rank_by": "loss"}, "rank_by='loss' is not one of"),
        ({"cv": 1}, "at least 2 folds"),
        ({"cv": 11}, r"every class needs at least 11 images.*'ant' \(10\)"),
        ({"cv": "five"}, "give a number of folds"),
        ({"classes": ["ant", "bee", "cat"]}, "classes= names the columns of pred_probs"),
    ],
)
def test_errors_before_any_fit(noisy, kwargs, message):
    class NeverFits(CNNClassifier):
        def fit(self, X, y):
            raise AssertionError("fitted despite a bad argument")

    y, _, _ = noisy
    with pytest.raises(InputError, match=message):
        find_label_issues(NeverFits(), np.zeros((30, 8, 8)), y, **kwargs)


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda y, p: find_label_issues(None, np.zeros((29, 8, 8)), y, pred_probs=p), "29"),
        (lambda y, p: find_label_issues(None, None, y, pred_probs=p[:, :2]), "2 columns"),
        (lambda y, p: find_label_issues(None, None, y, pred_probs=p[:5]), r"\(5, 3\)"),
        (lambda y, p: find_label_issues(None, None, y, pred_probs=np.log(p)), "logits"),
        (lambda y, p: find_label_issues(None, None, y), "or pred_probs="),
        (
            lambda y, p: find_label_issues(None, None, y, pred_probs=p, classes=["a", "b", "c"]),
            r"label 'ant' \(position 0\)",
        ),
        (lambda y, p: find_label_issues(None, None, y[:, None], pred_probs=p), "1-D"),
    ],
)
def test_bad_inputs(noisy, call, message):
    y, probs, _ = noisy
    with pytest.raises(InputError, match=message):
        call(y, probs)


# ---------------------------------------------------------------- real refits
def _patterns(n_per_class=6, seed=0):
    """12x12 greyscale bars / columns / squares, uint8 (a quick 3-class task)."""
    rng = np.random.default_rng(seed)
    images, labels = [], []
    for kind in range(3):
        for _ in range(n_per_class):
            image = rng.integers(0, 60, (12, 12)).astype(np.uint8)
            if kind == 0:
                image[::3] = 230
            elif kind == 1:
                image[:, ::3] = 230
            else:
                image[4:8, 4:8] = 230
            images.append(image)
            labels.append(kind)
    return np.stack(images), np.array(labels)


@pytest.mark.slow  # 4 fits: seconds alone, minutes on a shared machine
def test_refits_on_arrays_and_on_paths(tmp_path):
    """cross_val_predict clones and refits an imgclf classifier on arrays and
    on file paths alike; the paths' result names the files."""
    X, y = _patterns()
    paths = []
    for i, image in enumerate(X):
        paths.append(str(tmp_path / f"{i:02d}.png"))
        Image.fromarray(image).save(paths[-1])
    clf = CNNClassifier(epochs=1, filters=4, batch_size=8, random_state=0, verbose=0)
    from_arrays = find_label_issues(clf, X, y, cv=2)
    from_paths = find_label_issues(clf, paths, y, cv=2)  # a plain list of str
    assert not hasattr(clf, "classes_")  # only clones were fitted
    for issues in (from_arrays, from_paths):
        assert issues.pred_probs.shape == (18, 3)
        assert np.allclose(issues.pred_probs.sum(axis=1), 1, atol=1e-4)
        assert issues.classes.tolist() == [0, 1, 2]
    assert from_arrays.path is None
    assert from_paths.path.tolist() == [paths[i] for i in from_paths.index]


@pytest.mark.slow
def test_finds_flipped_digits():
    """5 % of digits' labels flipped: at least 60 % of them are flagged."""
    from sklearn.datasets import load_digits

    data = load_digits()
    X = np.round(data.images / 16 * 255).astype(np.uint8)[..., None]
    rng = np.random.default_rng(0)
    flipped = rng.choice(len(X), size=90, replace=False)  # 5 % of 1,797
    noisy = data.target.copy()
    noisy[flipped] = (noisy[flipped] + rng.integers(1, 10, size=90)) % 10  # another digit
    clf = CNNClassifier(epochs=5, random_state=0, verbose=0)
    issues = find_label_issues(clf, X, noisy, cv=5)
    hits = len(np.intersect1d(issues.index, flipped))
    recall, precision = hits / len(flipped), hits / len(issues)
    print(f"recall {recall:.3f} precision {precision:.3f} ({len(issues)} flagged)")
    assert recall >= 0.6
    assert precision >= 0.5


# ------------------------------------------------------------- command line
def _run(argv, capsys):
    from imgclf.cli import main

    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def mislabelled_folder(tmp_path):
    """``data/<class>/`` with 6 images each, file names starting with the
    class the pixels show; ``cols/bar_99.png`` shows bars (its label is wrong)."""
    X, y = _patterns()
    names = ["bars", "cols", "dots"]
    for image, label in zip(X, y, strict=True):
        folder = tmp_path / "data" / names[label]
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(
            folder / f"{names[label][:3]}_{len(list(folder.iterdir()))}.png"
        )
    Image.fromarray(X[0]).save(tmp_path / "data" / "cols" / "bar_99.png")
    return tmp_path


@pytest.fixture
def oracle(monkeypatch):
    """cross_val_predict replaced by probabilities read from the file names
    (0.9 on the class a file's name starts with): the command without fits."""
    import sklearn.model_selection

    calls = []

    def by_file_name(estimator, X, y, *, groups, cv, method):
        calls.append((type(estimator).__name__, cv, method))
        prefixes = ["bar", "col", "dot"]
        true = [prefixes.index(os.path.basename(path)[:3]) for path in X]
        probs = np.full((len(X), 3), 0.05)
        probs[np.arange(len(X)), true] = 0.9
        return probs

    monkeypatch.setattr(sklearn.model_selection, "cross_val_predict", by_file_name)
    return calls


def test_cli_audit_writes_suspects(mislabelled_folder, oracle, capsys):
    out_csv = mislabelled_folder / "suspects.csv"
    data = str(mislabelled_folder / "data")
    argv = [
        "audit",
        data,
        "--out",
        str(out_csv),
        "--cv",
        "3",
        "--plots",
        str(mislabelled_folder / "pics"),
    ]
    code, out, err = _run([*argv, "--debug"], capsys)
    assert code == 0, err
    assert oracle == [("CNNClassifier", 3, "predict_proba")]
    suspect = os.path.join(data, "cols", "bar_99.png")
    with open(out_csv, newline="") as f:
        table = list(csv.DictReader(f))
    assert [(r["path"], r["given_label"], r["suggested_label"]) for r in table] == [
        (suspect, "cols", "bars")
    ]
    assert float(table[0]["label_quality"]) == pytest.approx(0.05)
    assert "Found 19 images in 3 classes" in out
    assert "1 of 19 labels look wrong (5.3 %)." in out
    assert f"{suspect}: cols -> bars (0.050)" in out
    picture = mislabelled_folder / "pics" / "label_issues.png"
    assert str(picture) in out and picture.stat().st_size > 2_000


def test_cli_audit_reads_a_csv_manifest(mislabelled_folder, oracle, capsys):
    data = mislabelled_folder / "data"
    manifest = mislabelled_folder / "labels.csv"
    files = sorted(p.relative_to(data).as_posix() for p in data.rglob("*.png"))
    with open(manifest, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["file", "kind"])
        writer.writerows([name, name.split("/")[0]] for name in files)
    out_csv = mislabelled_folder / "out.csv"
    argv = ["audit", str(data), "--csv", str(manifest), "--out", str(out_csv), "--debug"]
    code, out, err = _run(argv, capsys)
    assert code == 0, err
    with open(out_csv, newline="") as f:
        table = list(csv.DictReader(f))
    assert [os.path.basename(r["path"]) for r in table] == ["bar_99.png"]
    assert table[0]["given_label"] == "cols" and table[0]["suggested_label"] == "bars"


def test_cli_audit_help_lists_every_filter(capsys):
    from imgclf.cli import main

    with pytest.raises(SystemExit):
        main(["audit", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for rule in FILTERS:
        assert rule in text
    for option in ("--cv", "--out", "--csv", "--prefix", "--model", "--epochs", "--image-size"):
        assert option in text


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--cv", "1"], "--cv 1: at least 2 folds"),
        (["--filter", "prune"], "--filter prune: expected one of prune_by_noise_rate"),
        (["--cv", "7"], r"every class needs at least 7 images"),
        (["--out", "no/such/folder/s.csv"], "the folder"),
    ],
)
def test_cli_audit_errors_are_one_line(
    mislabelled_folder, oracle, capsys, monkeypatch, extra, message
):
    monkeypatch.chdir(mislabelled_folder)  # where the default --out would go
    code, out, err = _run(["audit", str(mislabelled_folder / "data"), *extra], capsys)
    assert code == 1
    assert err.startswith("imgclf: error: ") and err.count("\n") == 1, err
    assert message in err
    assert oracle == []  # no fit
    assert not (mislabelled_folder / "suspects.csv").exists()


@pytest.mark.slow
def test_cli_audit_fits(mislabelled_folder, capsys):
    out_csv = mislabelled_folder / "suspects.csv"
    argv = ["audit", str(mislabelled_folder / "data"), "--out", str(out_csv), "--cv", "2"]
    code, out, err = _run([*argv, "--epochs", "1", "--image-size", "12", "--quiet"], capsys)
    assert code == 0, err
    with open(out_csv, newline="") as f:
        table = list(csv.DictReader(f))
    assert f"{len(table)} of 19 labels look wrong" in out
    assert all(os.path.exists(r["path"]) for r in table)


def test_groups_reach_the_splitter(monkeypatch):
    import sklearn.model_selection

    seen = []

    def record(estimator, X, y, *, groups, cv, method):
        seen.append((groups, cv))
        return np.eye(3)[y]

    monkeypatch.setattr(sklearn.model_selection, "cross_val_predict", record)
    X, y = _patterns()
    groups = np.arange(len(y)) // 2
    splitter = sklearn.model_selection.StratifiedGroupKFold(3)
    issues = find_label_issues(CNNClassifier(), X, y, cv=splitter, groups=groups)
    assert seen == [(groups, splitter)] and len(issues) == 0
