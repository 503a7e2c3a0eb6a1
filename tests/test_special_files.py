"""Nothing hangs on, or reads without end from, a file that is not a regular
file: a named pipe (FIFO) or a link to ``/dev/zero`` named like an image is a
bad file like any other, wherever the library meets it.

Each FIFO is watched (:class:`tests._special.FifoWatch`): should the library
block opening it, the watchdog lets the open return after a few seconds and
the test fails instead of hanging.
"""

import csv
import io
import os
import sys
import time

import numpy as np
import pytest
from _special import FifoWatch
from PIL import Image

from imgclf import _pipeline as pipeline
from imgclf import _scan as scan
from imgclf import load_csv, load_filenames, load_folder
from imgclf._files import (
    FileTooLargeError,
    NotRegularFileError,
    open_binary,
    read_regular,
    special_problem,
)
from imgclf._validation import Images
from imgclf.cli import main
from imgclf.exceptions import ImageFileError, InputError

pytestmark = pytest.mark.skipif(
    not hasattr(os, "mkfifo") or not os.path.exists("/dev/zero"),
    reason="named pipes and /dev/zero are POSIX",
)


def _digit_files(folder, small_digits, n=6, classes=("a", "b")):
    """``n`` 8x8 grey PNGs per class folder; returns the paths."""
    X, _ = small_digits
    paths = []
    for c, name in enumerate(classes):
        (folder / name).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            paths.append(str(folder / name / f"{i}.png"))
            Image.fromarray(X[c * n + i, ..., 0]).save(paths[-1])
    return paths


# ------------------------------------------------------------- the helper
def test_helper_refuses_fifo_device_and_folder_and_caps_reads(tmp_path):
    regular = tmp_path / "f.bin"
    regular.write_bytes(b"x" * 100)
    assert read_regular(regular, 100) == b"x" * 100
    with pytest.raises(FileTooLargeError, match="holds 100 bytes, over the limit of 99"):
        read_regular(regular, 99)
    with pytest.raises(FileTooLargeError):
        open_binary(regular, 10)
    assert special_problem(regular) is None
    assert special_problem(tmp_path / "missing") is None  # opening it fails at once
    with FifoWatch(tmp_path / "pipe", after=5) as watch:
        with pytest.raises(NotRegularFileError, match=r"named pipe \(FIFO\), not a regular"):
            read_regular(watch.path, 100)
        assert special_problem(watch.path) == "is a named pipe (FIFO), not a regular file"
    assert not watch.fired, watch.where
    os.symlink("/dev/zero", tmp_path / "zero")
    with pytest.raises(NotRegularFileError, match="character device"):
        read_regular(tmp_path / "zero", 1 << 40)
    with pytest.raises(NotRegularFileError, match="is a folder"):
        open_binary(tmp_path)
    assert isinstance(NotRegularFileError("p", "x"), OSError)  # caught as unreadable


# ---------------------------------------------------------------- loaders
def test_fifo_named_like_an_image_is_a_bad_file_not_a_hang(tmp_path, small_digits):
    root = tmp_path / "data"
    good = _digit_files(root, small_digits)
    with FifoWatch(root / "a" / "pipe.png") as watch:
        with pytest.warns(UserWarning, match=r"left out 1 of 13") as caught:
            X, y = load_folder(root)
        assert "pipe.png' (sample 6) is a named pipe (FIFO), not a regular file" in str(
            caught[0].message
        )
        assert sorted(X.tolist()) == sorted(good)
        with pytest.raises(ImageFileError, match="named pipe"):
            load_folder(root, on_bad_file="error")
        with pytest.warns(UserWarning, match="named pipe"):
            load_filenames(root / "a", prefix_length=1)
    assert not watch.fired, "the scan blocked opening the FIFO"


def test_link_to_dev_zero_is_skipped_at_once(tmp_path, small_digits):
    root = tmp_path / "data"
    good = _digit_files(root, small_digits)
    os.symlink("/dev/zero", root / "b" / "zero.png")
    started = time.process_time()
    with pytest.warns(UserWarning, match=r"zero.png' \(sample 12\) is a character device"):
        X, _ = load_folder(root)
    assert time.process_time() - started < 5  # nothing read from the device
    assert sorted(X.tolist()) == sorted(good)


def test_csv_that_is_a_fifo_or_lists_one(tmp_path, small_digits):
    root = tmp_path / "data"
    good = _digit_files(root, small_digits, n=3)
    with FifoWatch(tmp_path / "labels.csv") as pipe, FifoWatch(root / "p.png") as listed:
        with pytest.raises(InputError, match="labels.csv"):
            load_csv(pipe.path)
        manifest = tmp_path / "manifest.csv"
        rows = [("path", "label")] + [(p, "x") for p in good] + [(listed.path, "x")]
        with open(manifest, "w", newline="") as f:
            csv.writer(f).writerows(rows)
        with pytest.warns(UserWarning, match="named pipe"):
            X, _ = load_csv(manifest)
        assert X.tolist() == good
    assert not pipe.fired and not listed.fired


# ------------------------------------------------------ predict, streaming
def test_predict_names_a_fifo_among_its_files(tmp_path, small_digits, fitted_cnn):
    good = _digit_files(tmp_path, small_digits, n=2)
    with FifoWatch(tmp_path / "pipe.png") as watch:
        with pytest.raises(ImageFileError, match=r"pipe.png' \(sample 4\) is a named pipe"):
            fitted_cnn.predict([*good, watch.path])
    assert not watch.fired, watch.where


def test_file_replaced_by_a_fifo_after_the_scan_is_named_not_waited_on(tmp_path, small_digits):
    """TensorFlow opens files by name while it streams them: a file swapped
    for a FIFO after the scan is found before TensorFlow opens it."""
    paths = _digit_files(tmp_path, small_digits, n=4)
    infos = scan.scan_files(paths)
    os.unlink(paths[5])
    with FifoWatch(paths[5]) as watch:
        data = pipeline.make_dataset(
            Images(paths=np.asarray(paths, dtype=object), infos=infos),
            None,
            size=(8, 8),
            channels=1,
            batch_size=4,
        )
        source = "CNNClassifier.predict"
        with pytest.raises(ImageFileError, match=r"1 image file.*\n.*pipe|named pipe") as caught:
            with scan.naming_bad_files(paths, infos, channels=1, size=(8, 8), source=source):
                list(data["x"])
        assert repr(paths[5]) in str(caught.value)
    assert not watch.fired, "TensorFlow blocked opening the FIFO"


def test_pixel_cache_file_that_is_a_fifo_is_replaced(tmp_path, small_digits):
    paths = _digit_files(tmp_path / "data", small_digits, n=4)
    infos = scan.scan_files(paths)
    images = Images(paths=np.asarray(paths, dtype=object), infos=infos)
    folder = tmp_path / "cache"
    folder.mkdir()
    target = pipeline._cache_file(str(folder), paths, (8, 8), 1)
    y = np.arange(8) % 2
    kwargs = dict(size=(8, 8), channels=1, batch_size=4, cache=str(folder))
    with FifoWatch(target) as watch:
        first = [b[0].numpy() for b in pipeline.make_dataset(images, y, **kwargs)["x"]]
    assert not watch.fired, watch.where
    assert os.path.isfile(target)  # the FIFO was replaced by the decoded pixels
    assert first[0].shape == (4, 8, 8, 1) and first[0].max() > 0
    # A foreign .npy of the wrong shape is decoded again too.
    os.unlink(target)
    np.save(target, np.zeros((3, 2), np.float64))
    again = [b[0].numpy() for b in pipeline.make_dataset(images, y, **kwargs)["x"]]
    np.testing.assert_array_equal(np.concatenate(again), np.concatenate(first))
    assert np.load(target).shape == (8, 8, 8, 1)


@pytest.mark.slow
def test_cli_predict_reports_the_fifo_and_predicts_the_rest(
    tmp_path, small_digits, fitted_cnn, capsys
):
    model = tmp_path / "model.imgclf"
    fitted_cnn.save(model)
    folder = tmp_path / "inputs"
    good = _digit_files(folder, small_digits, n=2)
    with FifoWatch(folder / "a" / "pipe.png") as watch:
        code = main(["predict", str(model), str(folder)])
        out, err = capsys.readouterr()
        assert code == 0, err
        assert "pipe.png' (sample 2) is a named pipe (FIFO), not a regular file" in err
        assert sorted(r[0] for r in csv.reader(io.StringIO(out)) if r[0] != "path") == sorted(good)
        # Given by name, alone: reported, not waited on.
        code = main(["predict", str(model), watch.path])
        out, err = capsys.readouterr()
        assert code != 0 and "named pipe" in err
    assert not watch.fired, watch.where
    assert sys.stdout is not None


def test_backbone_and_weights_files_are_checked_before_keras_opens_them(tmp_path):
    from imgclf import TransferClassifier
    from imgclf.backbones import load_weights

    with FifoWatch(tmp_path / "w.weights.h5") as weights, FifoWatch(tmp_path / "b.keras") as net:
        with pytest.raises(InputError, match=r"weights=.*is a named pipe"):
            load_weights(None, weights.path, "backbone", "TransferClassifier")
        with pytest.raises(InputError, match=r"backbone=.*is a named pipe"):
            TransferClassifier(backbone=net.path)._source()
    assert not weights.fired and not net.fired
