"""Every script in examples/ runs as written (in its --fast mode), in a fresh process."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
FASHION_DIR = os.environ.get("FASHION_MNIST_DIR", "/usr/share/datasets/fashion-mnist")
FASHION_FILES = [
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
]


def run_example(name: str, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONUNBUFFERED": "1"}
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / name), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, (
        f"{name} {' '.join(args)} exited with {result.returncode}\n"
        f"--- stdout\n{result.stdout[-3000:]}\n--- stderr\n{result.stderr[-3000:]}"
    )
    return result


def reported_accuracy(stdout: str) -> float:
    match = re.search(r"Test accuracy: ([0-9.]+)", stdout)
    assert match, f"no 'Test accuracy' line in:\n{stdout[-2000:]}"
    return float(match.group(1))


def assert_report_agrees(stdout: str) -> None:
    """The example's 'Test accuracy' (from score) matches the accuracy row of
    the classification report it printed (from predict), to their rounding."""
    match = re.search(r"^\s*accuracy\s+([0-9.]+)\s+\d+\s*$", stdout, re.MULTILINE)
    assert match, f"no classification report in:\n{stdout[-2000:]}"
    assert abs(float(match.group(1)) - reported_accuracy(stdout)) <= 0.0051


def test_every_example_is_tested():
    scripts = sorted(p.name for p in EXAMPLES.glob("*.py"))
    assert scripts == sorted(
        [
            "cifar_style_gridsearch.py",
            "coins_by_filename.py",
            "fashion_mnist.py",
            "scene_folders.py",
        ]
    )


@pytest.mark.slow
def test_coins_by_filename(tmp_path):
    out = run_example("coins_by_filename.py", "--fast", "--workdir", str(tmp_path), cwd=tmp_path)
    # Labels come from the file-name prefixes through the mapping.
    for name in ("Elizabeth II", "George VI", "Lincoln"):
        assert name in out.stdout
    assert "load_filenames found 36 images" in out.stdout
    assert_report_agrees(out.stdout)
    # The model was saved, reloaded, and predicted a readable label for one file.
    assert (tmp_path / "coins.imgclf").stat().st_size > 10_000
    assert re.search(r"\.png -> (Elizabeth II|George VI|Lincoln) \(", out.stdout)


@pytest.mark.slow
def test_scene_folders(tmp_path):
    out = run_example("scene_folders.py", "--fast", "--workdir", str(tmp_path), cwd=tmp_path)
    tree = tmp_path / "intel"
    assert sorted(p.name for p in (tree / "seg_train" / "seg_train").iterdir()) == sorted(
        ["zero", "one", "two", "three", "four", "five"]
    )
    n_files = sum(1 for _ in tree.rglob("*.jpg"))
    assert n_files == 120
    # load_folder found every class in both parts, through Kaggle's doubled folder.
    counts = re.findall(r"Class: (\w+)\s+train images:\s+(\d+)\s+test images:\s+(\d+)", out.stdout)
    assert len(counts) == 6
    assert sum(int(tr) + int(te) for _, tr, te in counts) == n_files
    assert_report_agrees(out.stdout)


@pytest.mark.slow
def test_cifar_style_gridsearch(tmp_path):
    out = run_example("cifar_style_gridsearch.py", "--fast", cwd=tmp_path)
    assert "X: (200, 32, 32, 3) uint8" in out.stdout
    assert len(re.findall(r"\{'learning_rate': [0-9.]+\}: [0-9.]+", out.stdout)) == 2
    assert re.search(r"Best: \{'learning_rate': 0\.00[13]\}", out.stdout)
    assert_report_agrees(out.stdout)


@pytest.mark.skipif(
    not all(os.path.exists(os.path.join(FASHION_DIR, f)) for f in FASHION_FILES),
    reason=f"Fashion-MNIST not in {FASHION_DIR}: apt-get install dataset-fashion-mnist",
)
@pytest.mark.slow
def test_fashion_mnist(tmp_path):
    out = run_example("fashion_mnist.py", "--fast", "--data-dir", FASHION_DIR, cwd=tmp_path)
    assert "Training on 500 images (28, 28) (uint8), testing on 500" in out.stdout
    assert "Ankle boot" in out.stdout  # readable labels reach the report
    assert_report_agrees(out.stdout)


def test_fashion_mnist_without_the_data_says_how_to_get_it(tmp_path):
    out = run_example("fashion_mnist.py", "--fast", "--data-dir", str(tmp_path), cwd=tmp_path)
    assert "apt-get install dataset-fashion-mnist" in out.stderr
    assert "Test accuracy" not in out.stdout
