"""The ``imgclf`` command line.

Parsing and ``--help`` never import TensorFlow; each command imports what it
needs when it runs.
"""

from __future__ import annotations

import argparse
import sys


def _cmd_demo(args) -> int:
    import numpy as np
    from sklearn.datasets import load_digits
    from sklearn.metrics import classification_report
    from sklearn.model_selection import train_test_split

    from .cnn import CNNClassifier

    digits = load_digits()
    X, y = digits.images, digits.target
    if args.fast:
        keep = np.flatnonzero(y < 4)[:400]
        X, y = X[keep], y[keep]
    X_tr, X_te, y_tr, y_te = train_test_split(X, y, test_size=0.25, stratify=y, random_state=0)
    print(
        f"imgclf demo: scikit-learn's handwritten digits, {len(X_tr)} training and "
        f"{len(X_te)} test images of 8x8 pixels, {len(np.unique(y))} classes.",
        flush=True,
    )
    clf = CNNClassifier(
        epochs=15 if args.fast else 30, random_state=0, verbose=args.verbose
    ).fit(X_tr, y_tr)
    print(f"Trained {len(clf.history_['loss'])} epochs.")
    print(classification_report(y_te, clf.predict(X_te), digits=3))
    print(f"Test accuracy: {clf.score(X_te, y_te):.3f}")
    if args.out:
        clf.save(args.out)
        print(f"Saved the model to {args.out}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="imgclf", description="scikit-learn image classifiers on Keras 3."
    )
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser(
        "demo", help="train a CNN on scikit-learn's digits and print a classification report"
    )
    demo.add_argument("--fast", action="store_true", help="a few seconds' run on 4 classes")
    demo.add_argument("--out", help="also save the trained model to this file")
    demo.add_argument("--verbose", type=int, default=1, choices=(0, 1, 2))
    demo.set_defaults(func=_cmd_demo)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print("imgclf: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # one clear line unless --debug
        if args.debug:
            raise
        print(f"imgclf: error: {exc}", file=sys.stderr)
        return 1
