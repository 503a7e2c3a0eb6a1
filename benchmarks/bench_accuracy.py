"""Test accuracy and training time of CNNClassifier with default parameters.

    python benchmarks/bench_accuracy.py [--only digits|fashion]

Digits: scikit-learn's 1,797 8x8 digits, stratified 75/25 split.
Fashion-MNIST: the official 60,000 / 10,000 split (Debian package
``dataset-fashion-mnist``). Bars (issue 2): digits >= 0.97, Fashion-MNIST >= 0.92,
each within 15 minutes of training on a 2-core machine.
"""

from __future__ import annotations

import argparse
import time

from _datasets import load_fashion_mnist
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from imgclf import CNNClassifier


def run(name, X_train, y_train, X_test, y_test, verbose):
    clf = CNNClassifier(random_state=0, verbose=verbose)
    start = time.perf_counter()
    clf.fit(X_train, y_train)
    seconds = time.perf_counter() - start
    accuracy = clf.score(X_test, y_test)
    epochs = len(clf.history_["loss"])
    print(
        f"{name:>14}: test accuracy {accuracy:.4f}  fit {seconds:7.1f} s "
        f"({epochs} epochs, batch {clf.batch_size_}, {len(X_train)} training images)",
        flush=True,
    )
    return accuracy, seconds


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=("digits", "fashion"))
    parser.add_argument("--verbose", type=int, default=2)
    args = parser.parse_args()
    if args.only in (None, "digits"):
        X, y = load_digits(return_X_y=True)
        split = train_test_split(X, y, test_size=0.25, stratify=y, random_state=0)
        run("digits", split[0], split[2], split[1], split[3], args.verbose)
    if args.only in (None, "fashion"):
        X_train, y_train, X_test, y_test = load_fashion_mnist()
        run("Fashion-MNIST", X_train, y_train, X_test, y_test, args.verbose)


if __name__ == "__main__":
    main()
