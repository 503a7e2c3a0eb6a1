"""Loaders: load_folder, load_csv, load_filenames."""

from __future__ import annotations

import os

import numpy as np
import pytest
from _images import gradient, write_bad_files
from PIL import Image

from imgclf import load_csv, load_filenames, load_folder
from imgclf.exceptions import ImageFileError, InputError


def _png(path, seed=0):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.fromarray(gradient(8, 8, seed=seed)).save(path)
    return str(path)


def _names(X, root):
    return [os.path.relpath(p, root).replace(os.sep, "/") for p in X]


# --------------------------------------------------------------- load_folder
@pytest.fixture
def tree(tmp_path):
    root = tmp_path / "train"
    for rel in ["cat/b.png", "cat/a.JPG", "cat/sub/c.png", "dog/1.png", "dog-2/x.webp"]:
        path = root / rel
        os.makedirs(path.parent, exist_ok=True)
        fmt = {".JPG": "JPEG", ".webp": "WEBP"}.get(path.suffix, "PNG")
        Image.fromarray(gradient(8, 8)).save(path, format=fmt)
    # Not images: ignored.
    (root / "cat" / ".DS_Store").write_bytes(b"\x00\x01")
    (root / "cat" / "notes.txt").write_text("not an image")
    (root / "cat" / "._a.JPG").write_bytes(b"resource fork")
    os.makedirs(root / ".hidden")
    _png(root / ".hidden" / "h.png")
    return root


def test_load_folder_one_subfolder_per_class(tree):
    X, y = load_folder(tree)
    assert X.ndim == 1 and X.dtype == object and all(isinstance(p, str) for p in X)
    assert _names(X, tree) == [
        "cat/a.JPG",
        "cat/b.png",
        "cat/sub/c.png",
        "dog/1.png",
        "dog-2/x.webp",
    ]
    assert y.tolist() == ["cat", "cat", "cat", "dog", "dog-2"]


def test_load_folder_order_is_deterministic(tree):
    first, _ = load_folder(tree)
    _png(tree / "dog" / "0.png")  # a new file takes its sorted place
    second, _ = load_folder(str(tree))
    assert _names(second, tree) == sorted(_names(second, tree), key=lambda n: n.split("/"))
    assert set(first) < set(second)


def test_load_folder_kaggle_shape(tmp_path):
    root = tmp_path / "seg_train"
    for cls in ["buildings", "forest"]:
        _png(root / "seg_train" / cls / "1.png")
    X, y = load_folder(root)
    assert y.tolist() == ["buildings", "forest"]
    assert _names(X, root) == ["seg_train/buildings/1.png", "seg_train/forest/1.png"]


def test_load_folder_errors_name_the_folder(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        load_folder(tmp_path / "nope")
    _png(tmp_path / "flat" / "eII001.png")
    with pytest.raises(InputError, match="no class folders.*load_filenames"):
        load_folder(tmp_path / "flat")
    os.makedirs(tmp_path / "empty" / "cat")
    with pytest.raises(InputError, match="no image files"):
        load_folder(tmp_path / "empty")


def test_load_folder_skips_bad_files_with_a_warning(tree):
    bad = write_bad_files(str(tree / "dog"))
    with pytest.warns(UserWarning, match="left out 4 of 9") as record:
        X, y = load_folder(tree)
    message = str(record[0].message)
    assert all(repr(p) in message for p in bad.values())
    assert len(X) == 5 and not set(bad.values()) & set(X)


def test_load_folder_on_bad_file_error(tree):
    bad = write_bad_files(str(tree / "dog"))
    with pytest.raises(ImageFileError) as err:
        load_folder(tree, on_bad_file="error")
    assert all(repr(p) in str(err.value) for p in bad.values())
    with pytest.raises(InputError, match="on_bad_file='drop'"):
        load_folder(tree, on_bad_file="drop")


# ------------------------------------------------------------------ load_csv
@pytest.fixture
def manifest(tmp_path):
    for name in ["a.png", "b.png", "sub/c.png"]:
        _png(tmp_path / "imgs" / name)
    csv = tmp_path / "imgs" / "labels.csv"
    csv.write_text("id,Filename,Label\n1,a.png,cat\n2,b.png,dog\n\n3,sub/c.png,cat\n")
    return csv


def test_load_csv_finds_well_known_columns_relative_to_the_csv(manifest):
    X, y = load_csv(manifest)
    assert _names(X, manifest.parent) == ["a.png", "b.png", "sub/c.png"]
    assert y.tolist() == ["cat", "dog", "cat"]
    assert all(os.path.isabs(p) for p in X)


def test_load_csv_default_is_first_two_columns(tmp_path):
    _png(tmp_path / "x.png")
    (tmp_path / "m.csv").write_text("picture,kind\nx.png,owl\n")
    X, y = load_csv(tmp_path / "m.csv")
    assert _names(X, tmp_path) == ["x.png"] and y.tolist() == ["owl"]


def test_load_csv_explicit_columns_and_root(manifest, tmp_path):
    other = tmp_path / "elsewhere.csv"
    other.write_text("label;x\n")  # one column: only used to check the error below
    csv = tmp_path / "m.csv"
    csv.write_text("what,where\ncat,a.png\n")
    X, y = load_csv(csv, path_column="where", label_column="what", root=manifest.parent)
    assert _names(X, manifest.parent) == ["a.png"] and y.tolist() == ["cat"]
    X2, _ = load_csv(csv, path_column=1, label_column=0, root=manifest.parent)
    assert list(X2) == list(X)
    with pytest.raises(InputError, match="did you mean 'where'"):
        load_csv(csv, path_column="wher", label_column="what")
    with pytest.raises(InputError, match="needs a path column"):
        load_csv(other)


def test_load_csv_missing_files_listed_with_row_numbers(manifest):
    manifest.write_text(manifest.read_text() + "4,gone.png,cat\n5,sub/lost.png,dog\n")
    with pytest.raises(InputError) as err:
        load_csv(manifest)
    text = str(err.value)
    assert "2 of" in text and "row 6:" in text and "gone.png" in text and "row 7:" in text
    assert "missing='skip'" in text
    with pytest.warns(UserWarning, match="gone.png"):
        X, _ = load_csv(manifest, missing="skip")
    assert len(X) == 3


# ------------------------------------------------------------ load_filenames
@pytest.fixture
def coins(tmp_path):
    for i, name in enumerate(["eII0042.png", "gvi0001.png", "lin0007.jpg", "eII0001.png"]):
        _png(tmp_path / "coins" / name, seed=i)
    return tmp_path / "coins"


def test_load_filenames_prefix_and_mapping(coins):
    X, y = load_filenames(coins, prefix_length=3)
    assert _names(X, coins) == ["eII0001.png", "eII0042.png", "gvi0001.png", "lin0007.jpg"]
    assert y.tolist() == ["eII", "eII", "gvi", "lin"]
    names = {"eII": "Elizabeth II", "gvi": "George VI", "lin": "Lincoln"}
    _, y = load_filenames(coins, prefix_length=3, mapping=names)
    assert y.tolist() == ["Elizabeth II", "Elizabeth II", "George VI", "Lincoln"]


def test_load_filenames_pattern(tmp_path):
    for name in ["cat_001.png", "dog_12.png", "cat_7.png"]:
        _png(tmp_path / name)
    _, y = load_filenames(tmp_path, pattern=r"^([a-z]+)_\d+")
    assert y.tolist() == ["cat", "cat", "dog"]


def test_load_filenames_reports_files_that_match_nothing(coins):
    _png(coins / "IMG_1.png")
    with pytest.warns(UserWarning, match="IMG_1.png"):
        X, y = load_filenames(coins, pattern=r"^(eII|gvi|lin)\d+")
    assert len(X) == 4 and "IMG" not in " ".join(X)


def test_load_filenames_unknown_code_in_mapping_is_an_error(coins):
    with pytest.raises(InputError) as err:
        load_filenames(coins, prefix_length=3, mapping={"eII": "Elizabeth II", "gvi": "George VI"})
    assert "'lin'" in str(err.value) and "lin0007.jpg" in str(err.value)


def test_load_filenames_needs_exactly_one_rule(coins):
    with pytest.raises(InputError, match="exactly one"):
        load_filenames(coins)
    with pytest.raises(InputError, match="exactly one"):
        load_filenames(coins, prefix_length=3, pattern="x")
    with pytest.raises(InputError, match="prefix_length=0"):
        load_filenames(coins, prefix_length=0)
    with pytest.raises(InputError, match="not a valid regex"):
        load_filenames(coins, pattern="(")


def test_loader_output_works_with_sklearn_splitters(coins):
    from sklearn.model_selection import train_test_split

    X, y = load_filenames(coins, prefix_length=3)
    X_tr, X_te, y_tr, y_te = train_test_split(X, y, test_size=2, random_state=0)
    assert len(X_tr) == 2 and isinstance(X_tr, np.ndarray) and X_tr.dtype == object
