"""The ``imgclf`` commands that apply a saved model: ``predict`` (a CSV of
labels on standard output) and ``evaluate`` (a report on labelled images,
with pictures), each for single-label and multi-label models."""

from __future__ import annotations

import csv
import os
import sys

import imgclf._cli_data as cli_data
import imgclf._cli_report as report


def run_predict(args) -> int:
    """``imgclf predict``: a CSV row per readable image on standard output."""
    from ._scan import screen

    clf = cli_data.load_model(args.model)
    files = screen(
        cli_data.image_files(args.inputs), on_bad_file="skip", source="imgclf predict"
    ).paths
    proba = report.predict_proba(clf, files, "predicting", progress=args.progress)
    writer = csv.writer(sys.stdout, lineterminator="\n")
    if getattr(clf, "multilabel_", False):
        return _write_tags(writer, clf, files, proba, args)
    labels = report.predicted_labels(clf, proba)
    header = ["path", "label", "probability"]
    if args.proba:
        header += [f"proba_{label}" for label in clf.classes_]
    writer.writerow(header)
    for path, label, p in zip(files, labels, proba, strict=True):
        row = [path, label, f"{p.max():.6f}"]
        if args.proba:
            row += [f"{v:.6f}" for v in p]
        writer.writerow(row)
    sys.stdout.flush()
    return 0


def _write_tags(writer, clf, files, proba, args) -> int:
    """``imgclf predict`` for a multi-label model: each image's labels joined
    by ``--tags-sep`` (none: an empty cell)."""
    from ._multilabel import join_tags, predict

    header = ["path", "labels"]
    if args.proba:
        header += [f"proba_{label}" for label in clf.classes_]
    writer.writerow(header)
    for path, row, p in zip(files, predict(clf, proba), proba, strict=True):
        line = [path, join_tags(clf.classes_, row, args.tags_sep or ";")]
        if args.proba:
            line += [f"{v:.6f}" for v in p]
        writer.writerow(line)
    sys.stdout.flush()
    return 0


def run_evaluate(args) -> int:
    """``imgclf evaluate``: the classification report, then the pictures."""
    import numpy as np
    from sklearn.metrics import accuracy_score, classification_report

    clf = cli_data.load_model(args.model)
    X, y = cli_data.load_data(args)
    if getattr(clf, "multilabel_", False) or args.tags_sep:
        return _evaluate_tags(clf, X, y, args)
    y = cli_data.as_model_labels(clf, y)
    print(f"Evaluating on {cli_data.describe_data(y)}.", flush=True)
    unknown = sorted(set(np.unique(y).tolist()) - set(clf.classes_.tolist()))
    if unknown:
        print(
            f"imgclf: warning: labels {unknown} were not among the model's classes "
            f"{clf.classes_.tolist()}; their images are always counted as mistakes.",
            file=sys.stderr,
        )
    proba = report.predict_proba(clf, X, "predicting", progress=args.progress)
    pred = report.predicted_labels(clf, proba)
    print(classification_report(y, pred, digits=3, zero_division=0))
    print(f"Accuracy: {accuracy_score(y, pred):.3f}")
    folder = args.plots or os.path.splitext(args.model)[0] + "-evaluation"
    report.pictures(folder, lambda f: report.evaluation_pictures(clf, X, y, proba, f, top=args.top))
    return 0


def _evaluate_tags(clf, X, y, args) -> int:
    """``imgclf evaluate`` for a multi-label model: the per-label report, the
    subset accuracy and the pictures of :func:`imgclf._cli_report.tag_pictures`."""
    import numpy as np
    from sklearn.metrics import accuracy_score, classification_report

    from ._multilabel import indicator, predict
    from .exceptions import InputError

    if not getattr(clf, "multilabel_", False) or not args.tags_sep:
        raise InputError(
            "A multi-label model is evaluated on a --csv FILE whose label column holds tags: "
            "give --tags-sep CHAR (and only for a multi-label model)."
        )
    print(f"Evaluating on {cli_data.describe_data(y)}.", flush=True)
    if clf.classes_.dtype.kind not in "OUS":
        y = [tuple(cli_data.as_model_labels(clf, np.asarray(labels, dtype=str))) for labels in y]
    truth = indicator(clf, y, len(y))
    proba = report.predict_proba(clf, X, "predicting", progress=args.progress)
    pred = predict(clf, proba)
    names = [str(label) for label in clf.classes_]
    print(classification_report(truth, pred, target_names=names, digits=3, zero_division=0))
    print(f"Subset accuracy (every label right): {accuracy_score(truth, pred):.3f}")
    folder = args.plots or os.path.splitext(args.model)[0] + "-evaluation"
    report.pictures(folder, lambda f: report.tag_pictures(clf, X, truth, proba, f, top=args.top))
    return 0


__all__ = ["run_evaluate", "run_predict"]
