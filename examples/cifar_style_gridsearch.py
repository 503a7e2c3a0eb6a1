"""CIFAR-style arrays and a hyper-parameter search with GridSearchCV.

A common CIFAR-10 workflow loads uint8 arrays ``(n, 32, 32, 3)``, builds a
Keras baseline, then tries learning rates and augmentation one run at a time,
by hand. An imgclf estimator is a scikit-learn classifier, so that search is
``GridSearchCV``: cross-validated, with the best model refitted.

To run without a download, the script builds arrays of CIFAR-10's
shape and type from scikit-learn's digits: each 8x8 digit upscaled to 32x32
and painted in random ink and paper colours, ``(n, 32, 32, 3)`` uint8.

Run it::

    python examples/cifar_style_gridsearch.py          # 4 settings x 3 folds, a few minutes
    python examples/cifar_style_gridsearch.py --fast   # 2 settings, 1 split, tiny
"""

from __future__ import annotations

import argparse

import numpy as np
from skimage.transform import resize
from sklearn.datasets import load_digits
from sklearn.metrics import classification_report
from sklearn.model_selection import GridSearchCV, ShuffleSplit, train_test_split

from imgclf import CNNClassifier


def cifar_like_digits(n: int | None = None, seed: int = 0):
    """Digits as CIFAR-shaped arrays: uint8 ``(n, 32, 32, 3)`` and int labels."""
    rng = np.random.default_rng(seed)
    digits = load_digits()
    images, y = digits.images[:n] / 16, digits.target[:n]
    ink = resize(images, (len(images), 32, 32), order=1, anti_aliasing=False)[..., None]
    fg = rng.uniform(0, 0.4, (len(images), 1, 1, 3))
    bg = rng.uniform(0.6, 1.0, (len(images), 1, 1, 3))
    X = (bg * (1 - ink) + fg * ink) * 255
    return np.round(X).astype(np.uint8), y


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fast", action="store_true", help="a tiny smoke-test run")
    args = parser.parse_args(argv)

    X, y = cifar_like_digits(200 if args.fast else 600)
    print(f"X: {X.shape} {X.dtype}, y: {y.shape}, {len(np.unique(y))} classes")
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=0.25, stratify=y, random_state=0
    )

    base = CNNClassifier(
        epochs=1 if args.fast else 8,
        filters=4 if args.fast else 16,
        random_state=0,
    )
    if args.fast:
        # Two settings on one train/validation split: three fits in all.
        grid = {"learning_rate": [1e-3, 3e-3]}
        cv = ShuffleSplit(n_splits=1, test_size=0.25, random_state=0)
    else:
        grid = {"learning_rate": [1e-3, 3e-3], "augment": [None, "light"]}
        cv = 3  # stratified 3-fold, as for any scikit-learn classifier
    # n_jobs=1: TensorFlow already uses every core for one fit.
    search = GridSearchCV(base, grid, cv=cv, n_jobs=1, verbose=1)
    search.fit(X_train, y_train)

    results = search.cv_results_
    for params, mean, std in zip(
        results["params"], results["mean_test_score"], results["std_test_score"], strict=True
    ):
        print(f"  {params}: {mean:.3f} +/- {std:.3f}")
    print(f"Best: {search.best_params_} (cross-validated accuracy {search.best_score_:.3f})")

    # The best setting, refitted on all the training data, scored on held-out images.
    print(classification_report(y_test, search.predict(X_test), zero_division=0))
    print(f"Test accuracy: {search.score(X_test, y_test):.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
