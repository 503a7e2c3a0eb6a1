"""A Kaggle-style folder tree with a train/test split, read with load_folder.

Kaggle's "Intel Image Classification" unpacks to
``seg_train/seg_train/<class>/*.jpg`` and ``seg_test/seg_test/<class>/*.jpg``.
With imgclf, ``load_folder`` reads either folder (it sees through the doubled
``seg_train/seg_train`` level), and the rest is scikit-learn: no ``glob``,
no ``image_dataset_from_directory``, no hand-written Keras model.

To run without a download, the script writes the same tree from real
data that ships with scikit-learn: handwritten digits 0-5, one class folder
per digit, as JPEGs of mixed sizes (24 to 40 px) in colour. Mixed sizes are
normal: every image is resized to ``image_size`` as it streams from disk.

Run it::

    python examples/scene_folders.py          # about 1,000 images, a few minutes
    python examples/scene_folders.py --fast   # a smoke test in seconds
"""

from __future__ import annotations

import argparse
import collections
import os
import tempfile

import numpy as np
from PIL import Image
from sklearn.datasets import load_digits
from sklearn.metrics import classification_report, confusion_matrix
from sklearn.model_selection import train_test_split

from imgclf import CNNClassifier, load_folder

CLASS_NAMES = ["zero", "one", "two", "three", "four", "five"]


def write_kaggle_tree(root: str, fast: bool, seed: int = 0) -> None:
    """Write ``root/seg_train/seg_train/<class>`` and ``root/seg_test/seg_test/<class>``."""
    rng = np.random.default_rng(seed)
    digits = load_digits()
    keep = np.flatnonzero(digits.target < len(CLASS_NAMES))
    if fast:
        keep = keep[:120]
    images, labels = digits.images[keep], digits.target[keep]
    split = train_test_split(
        np.arange(len(keep)), test_size=0.2, stratify=labels, random_state=seed
    )
    for part, index in zip(("seg_train", "seg_test"), split, strict=True):
        for i in index:
            folder = os.path.join(root, part, part, CLASS_NAMES[labels[i]])
            os.makedirs(folder, exist_ok=True)
            gray = Image.fromarray(np.round(images[i] * 255 / 16).astype(np.uint8))
            side = int(rng.integers(24, 41))
            gray = gray.resize((side, side), Image.BICUBIC)
            # Colour: ink and paper tinted at random, so the images are real RGB.
            ink, paper = rng.integers(0, 90, 3), rng.integers(160, 256, 3)
            alpha = np.asarray(gray, dtype=np.float32)[..., None] / 255
            rgb = paper * (1 - alpha) + ink * alpha
            Image.fromarray(rgb.astype(np.uint8)).save(
                os.path.join(folder, f"{i:05d}.jpg"), quality=90
            )


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fast", action="store_true", help="a tiny smoke-test run")
    parser.add_argument("--workdir", help="where to write the folder tree (default: a temp dir)")
    args = parser.parse_args(argv)
    root = os.path.join(args.workdir or tempfile.mkdtemp(prefix="imgclf-scenes-"), "intel")
    write_kaggle_tree(root, args.fast)

    # Kaggle's doubled level (seg_train/seg_train/<class>) is found by the loader.
    X_train, y_train = load_folder(os.path.join(root, "seg_train"))
    X_test, y_test = load_folder(os.path.join(root, "seg_test"))
    n_train, n_test = collections.Counter(y_train), collections.Counter(y_test)
    for name in sorted(n_train):
        share = n_test[name] / (n_train[name] + n_test[name])
        print(
            f"Class: {name:6s} train images: {n_train[name]:4d}  test images: "
            f"{n_test[name]:4d}  ratio: {share:.2f}"
        )

    clf = CNNClassifier(
        image_size=32,  # every file is resized to 32x32 as it is decoded
        augment="light",  # digits must not be flipped: shifts and zooms only
        epochs=2 if args.fast else 30,
        filters=8 if args.fast else 16,
        random_state=0,
        verbose=0,
    )
    clf.fit(X_train, y_train)
    print(f"Trained {len(clf.history_['loss'])} epochs on {len(X_train)} files")

    y_pred = clf.predict(X_test)
    print(classification_report(y_test, y_pred, zero_division=0))
    print(f"Test accuracy: {np.mean(y_pred == y_test):.3f}")

    # The most misclassified pair, from scikit-learn's confusion matrix.
    cm = confusion_matrix(y_test, y_pred, labels=clf.classes_)
    np.fill_diagonal(cm, 0)
    true, pred = np.unravel_index(np.argmax(cm), cm.shape)
    if cm[true, pred]:
        print(
            f"Most misclassified pair: {clf.classes_[true]} predicted as "
            f"{clf.classes_[pred]} ({cm[true, pred]} images)"
        )
    else:
        print("No test image was misclassified.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
