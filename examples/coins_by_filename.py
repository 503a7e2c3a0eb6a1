"""Coins labelled by file-name prefix: train, report, save, load, predict.

The photos are labelled by the first three characters of their file name
(``eII`` Elizabeth II, ``gvi`` George VI, ``lin`` Lincoln). With imgclf the
workflow is four calls: ``load_filenames`` reads the labels from the names,
``CNNClassifier`` trains with augmentation and early stopping, scikit-learn
reports, ``save`` ships it.

To run without a download, the script first draws a folder of synthetic
coins: a metal disc on a noisy background, rotated, shifted and lit at random,
whose engraving differs by class (a head facing left under a crown of dots, a
head facing right under a cross, a head facing right beside rows of "text").

Run it::

    python examples/coins_by_filename.py            # about 300 coins, a few minutes
    python examples/coins_by_filename.py --fast     # a smoke test in seconds
"""

from __future__ import annotations

import argparse
import os
import tempfile

import numpy as np
from PIL import Image, ImageDraw, ImageFilter
from sklearn.metrics import classification_report
from sklearn.model_selection import train_test_split

import imgclf
from imgclf import CNNClassifier, load_filenames

# File-name prefix -> readable class name.
NAMES = {"eII": "Elizabeth II", "gvi": "George VI", "lin": "Lincoln"}
# Lincoln photos are called e.g. "linc4351.png"; the first three characters are
# what counts.
FILE_STEMS = {"eII": "eII", "gvi": "gvi", "lin": "linc"}
METALS = [(184, 115, 51), (192, 192, 196), (200, 170, 80)]  # copper, silver, brass


def draw_coin(code: str, rng: np.random.Generator, size: int = 64) -> Image.Image:
    """One synthetic coin photo of class ``code``."""
    scale = 4  # draw large, then downsample: smooth edges like a photo
    s = size * scale
    # A dull cloth background; a copper, silver or brass coin whatever the class.
    background = tuple(int(v) for v in rng.integers(30, 60) + rng.integers(0, 40, 3))
    image = Image.new("RGB", (s, s), background)
    draw = ImageDraw.Draw(image)
    metal = np.array(METALS[rng.integers(len(METALS))]) * rng.uniform(0.8, 1.1)
    radius = s * rng.uniform(0.36, 0.46)
    cx, cy = s / 2 + rng.uniform(-0.06, 0.06, 2) * s
    draw.ellipse(
        (cx - radius, cy - radius, cx + radius, cy + radius), fill=tuple(metal.astype(int))
    )
    ink = tuple((metal * 0.55).astype(int))  # the engraving: darker metal
    r = radius
    if code == "eII":
        # A head facing left, and a crown of dots around the rim.
        draw.ellipse((cx - 0.45 * r, cy - 0.35 * r, cx + 0.15 * r, cy + 0.35 * r), fill=ink)
        draw.polygon(
            [(cx - 0.45 * r, cy), (cx - 0.65 * r, cy + 0.1 * r), (cx - 0.4 * r, cy + 0.2 * r)],
            fill=ink,
        )
        for angle in np.linspace(0, 2 * np.pi, 16, endpoint=False):
            x, y = cx + 0.8 * r * np.cos(angle), cy + 0.8 * r * np.sin(angle)
            draw.ellipse((x - 0.05 * r, y - 0.05 * r, x + 0.05 * r, y + 0.05 * r), fill=ink)
    elif code == "gvi":
        # A head facing right, under a cross.
        draw.ellipse((cx - 0.15 * r, cy - 0.1 * r, cx + 0.45 * r, cy + 0.6 * r), fill=ink)
        draw.polygon(
            [
                (cx + 0.45 * r, cy + 0.25 * r),
                (cx + 0.65 * r, cy + 0.35 * r),
                (cx + 0.4 * r, cy + 0.45 * r),
            ],
            fill=ink,
        )
        w = 0.06 * r
        draw.rectangle((cx - w, cy - 0.75 * r, cx + w, cy - 0.2 * r), fill=ink)
        draw.rectangle((cx - 0.25 * r, cy - 0.55 * r, cx + 0.25 * r, cy - 0.45 * r), fill=ink)
    else:
        # A head facing right, and rows of "LIBERTY" and a year on the left.
        draw.ellipse((cx - 0.05 * r, cy - 0.4 * r, cx + 0.55 * r, cy + 0.3 * r), fill=ink)
        for row in range(3):
            y = cy - 0.3 * r + row * 0.25 * r
            draw.rectangle((cx - 0.7 * r, y, cx - 0.15 * r, y + 0.08 * r), fill=ink)
    image = image.rotate(rng.uniform(-25, 25), resample=Image.BILINEAR, fillcolor=background)
    image = image.filter(ImageFilter.GaussianBlur(scale * rng.uniform(0.2, 0.8)))
    image = image.resize((size, size), Image.LANCZOS)
    pixels = np.asarray(image, dtype=np.float32)
    pixels *= rng.uniform(0.75, 1.2)  # lighting
    pixels += rng.normal(0, 8, pixels.shape)  # sensor noise
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def make_coin_folder(root: str, per_class: int, seed: int = 0) -> None:
    """Write ``per_class`` PNGs per coin into ``root``, named by prefix."""
    rng = np.random.default_rng(seed)
    os.makedirs(root, exist_ok=True)
    for code, stem in FILE_STEMS.items():
        for i in range(per_class):
            draw_coin(code, rng).save(os.path.join(root, f"{stem}{1000 + i}.png"))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fast", action="store_true", help="a tiny smoke-test run")
    parser.add_argument(
        "--workdir", help="where to write the coins and the model (default: a temp dir)"
    )
    args = parser.parse_args(argv)
    workdir = args.workdir or tempfile.mkdtemp(prefix="imgclf-coins-")
    root = os.path.join(workdir, "portraits")

    per_class = 12 if args.fast else 100
    make_coin_folder(root, per_class)
    print(f"Drew {3 * per_class} synthetic coins into {root}")

    # The label is the first three characters of each file name, mapped to a name.
    X, y = load_filenames(root, prefix_length=3, mapping=NAMES)
    print(f"load_filenames found {len(X)} images; classes: {', '.join(sorted(set(y)))}")

    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=0.25, stratify=y, random_state=0
    )
    clf = CNNClassifier(
        image_size=48,
        augment="standard",  # flips, small rotations, shifts and zooms, training only
        epochs=2 if args.fast else 40,
        patience=8,  # early stopping: no need to guess "88 epochs, not 150"
        filters=8 if args.fast else 16,
        random_state=0,
    )
    clf.fit(X_train, y_train)  # X_train is a list of file paths: decoded on the fly
    epochs = len(clf.history_["loss"])
    if "val_accuracy" in clf.history_:
        best = max(clf.history_["val_accuracy"])
        print(f"Trained {epochs} epochs; best validation accuracy {best:.2f}")
    else:  # fewer than 5 images per class for a hold-out (--fast): none was made
        print(f"Trained {epochs} epochs on all {len(X_train)} images, too few for a hold-out")
    print(classification_report(y_test, clf.predict(X_test), zero_division=0))
    print(f"Test accuracy: {clf.score(X_test, y_test):.3f}")

    # Save, load in a fresh estimator, then one file in, one readable label out.
    model_path = os.path.join(workdir, "coins.imgclf")
    clf.save(model_path)
    reloaded = imgclf.load(model_path)
    one = X_test[0]
    proba = reloaded.predict_proba([one])[0]
    print(f"{os.path.basename(one)} -> {reloaded.predict([one])[0]} ({proba.max():.2f})")
    print(f"Saved the model to {model_path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
