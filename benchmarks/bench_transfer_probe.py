"""A linear model on efficientnet_lite0's frozen features: what a head can reach.

    python benchmarks/bench_transfer_probe.py [--per-class 10] [--seeds 0 1 2]
        [--memory <folder>]

Fashion-MNIST, all 10 classes, ``--per-class`` training images drawn per
seed (as ``bench_transfer.py --backbone`` draws them), the first 2,000 test
images. The pooled features come from ``TransferClassifier(backbone=
"efficientnet_lite0", fine_tune_epochs=0).transform`` (read from ``--memory``
when an earlier run stored them); scikit-learn's ``LogisticRegression`` is
fitted on them for several ``C``, raw and standardised. Prints the test
accuracy of each: an estimate of the best a head on the frozen features does.
"""

from __future__ import annotations

import argparse

import numpy as np
from _datasets import load_fashion_mnist
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from imgclf import TransferClassifier


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-class", type=int, default=10)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--memory")
    args = parser.parse_args()
    X_train, y_train, X_test, y_test = load_fashion_mnist()
    X_eval, y_eval = X_test[:2000], y_test[:2000]
    for seed in args.seeds:
        rng = np.random.default_rng(seed)
        index = np.concatenate(
            [rng.choice(np.flatnonzero(y_train == c), args.per_class, False) for c in range(10)]
        )
        X, y = X_train[index], y_train[index]
        clf = TransferClassifier(
            backbone="efficientnet_lite0",
            epochs=1,
            fine_tune_epochs=0,
            memory=args.memory,
            random_state=seed,
        ).fit(X, y)
        F, F_eval = clf.transform(X), clf.transform(X_eval)
        out = []
        for C in (0.01, 0.1, 1.0, 10.0):
            model = LogisticRegression(C=C, max_iter=3000).fit(F, y)
            out.append(f"C={C}: {model.score(F_eval, y_eval):.4f}")
        scaler = StandardScaler().fit(F)
        for C in (0.01, 0.1, 1.0):
            model = LogisticRegression(C=C, max_iter=3000).fit(scaler.transform(F), y)
            out.append(f"std C={C}: {model.score(scaler.transform(F_eval), y_eval):.4f}")
        print(f"{args.per_class}/class seed {seed}: " + " | ".join(out), flush=True)


if __name__ == "__main__":
    main()
