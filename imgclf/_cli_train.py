"""The ``imgclf`` commands that fit models: ``demo`` (a CNN on
scikit-learn's digits), ``train`` (a classifier on labelled images, saved)
and ``audit`` (cross-validated fits that flag labels which look wrong), with
the estimator the ``train`` and ``audit`` options describe."""

from __future__ import annotations

import os

import imgclf._cli_data as cli_data
import imgclf._cli_report as report


def run_demo(args) -> int:
    """``imgclf demo``: a CNN on scikit-learn's digits, its report and pictures."""
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
    epochs = 15 if args.fast else "auto"  # the default: about 1,600 steps, 21 epochs here
    clf = CNNClassifier(epochs=epochs, random_state=0, verbose=args.verbose).fit(X_tr, y_tr)
    print(f"Trained {len(clf.history_['loss'])} epochs.")
    proba = clf.predict_proba(X_te)
    print(classification_report(y_te, report.predicted_labels(clf, proba), digits=3))
    print(f"Test accuracy: {clf.score(X_te, y_te):.3f}")
    if args.out:
        clf.save(args.out)
        print(f"Saved the model to {args.out}")
    if args.plots:

        def draw(folder):
            return [
                *report.learning_curves_picture(clf, folder),
                *report.evaluation_pictures(clf, X_te, y_te, proba, folder, top=16),
            ]

        report.pictures(args.plots, draw)
    return 0


def _estimator(args):
    import imgclf
    from imgclf.exceptions import InputError

    common = {
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "learning_rate": args.learning_rate,
        "image_size": args.image_size,
        "augment": args.augment,
        "validation_fraction": args.validation_fraction,
    }
    params = {k: v for k, v in common.items() if v is not None}
    if args.lr_schedule is not None:
        params["lr_schedule"] = None if args.lr_schedule == "none" else args.lr_schedule
    params.update(random_state=args.seed, verbose=0 if args.quiet else 1)
    if args.model == "cnn":
        if args.backbone or args.weights or args.fine_tune_epochs is not None or args.refit:
            raise InputError(
                "--backbone, --weights, --fine-tune-epochs and --refit are for --model transfer."
            )
        return imgclf.CNNClassifier(**params)
    params["backbone"] = args.backbone or "mobilenet_v2"
    weights = args.weights or "imagenet"
    params["weights"] = None if weights.lower() == "none" else weights
    if args.fine_tune_epochs is not None:
        params["fine_tune_epochs"] = args.fine_tune_epochs
    if args.refit is not None:
        params["refit"] = {"auto": "auto", "yes": True, "no": False}[args.refit]
    return imgclf.TransferClassifier(**params)


def run_train(args) -> int:
    """``imgclf train``: fit on DATA, say how it went, save the model."""
    from .exceptions import InputError

    clf = _estimator(args)  # option mistakes first, before scanning a large folder
    X, y = cli_data.load_data(args)
    print(f"Found {cli_data.describe_data(y)}.", flush=True)
    try:
        clf.fit(X, y)
    except InputError as exc:
        if "weights" not in exc.parameters:
            raise

        # The library's advice names Python arguments; say the flags too.
        raise InputError(f"{exc}\nOn the command line: --weights PATH, or --weights none.") from exc
    history = clf.history_
    n_epochs = len(history["loss"])
    # Multi-label: the share of right yes/no label decisions at 0.5.
    accuracy = "label accuracy" if getattr(clf, "multilabel_", False) else "accuracy"
    if history.get("val_accuracy"):
        best = clf.best_epoch_  # the epoch whose weights the estimator kept
        print(
            f"Trained {n_epochs} epochs; validation {accuracy} "
            f"{history['val_accuracy'][best]:.3f} "
            f"(epoch {best + 1}, the weights kept)."
        )
    elif getattr(clf, "refitted_", False):
        judged = clf.card_["fit"]
        print(
            f"Trained {n_epochs} epochs on every image, after a fit with a hold-out of "
            f"{judged['refit_after_holdout_of']} images chose them (validation {accuracy} "
            f"{judged.get('holdout_fit_val_accuracy', float('nan')):.3f}); --refit no skips "
            "the second fit."
        )
    else:
        why = (
            "--validation-fraction 0"
            if args.validation_fraction == 0
            else "fewer than 5 images per class would be held out"
        )
        print(
            f"Trained {n_epochs} epochs; training {accuracy} {history['accuracy'][-1]:.3f} "
            f"(no validation hold-out: {why})."
        )
    clf.save(args.out)
    print(f"Saved the model to {args.out}")
    if args.plots:
        report.pictures(args.plots, lambda folder: report.learning_curves_picture(clf, folder))
    return 0


def run_audit(args) -> int:
    """``imgclf audit``: cross-validated fits, the suspects written to a CSV."""
    from collections import Counter

    from ._pathargs import check_output_file
    from .audit import FILTERS, find_label_issues
    from .exceptions import InputError

    # Option mistakes first, before scanning a large folder.
    clf = _estimator(args)
    if args.filter not in FILTERS:
        raise InputError(f"--filter {args.filter}: expected one of {', '.join(FILTERS)}.")
    if args.cv < 2:
        raise InputError(f"--cv {args.cv}: at least 2 folds (5 is usual).")
    if args.tags_sep:
        raise InputError(
            "imgclf audit checks one label per image; --tags-sep (multi-label tags) is not "
            "supported. In Python, cleanlab.filter.find_label_issues(labels, pred_probs, "
            "multi_label=True) checks tags, given out-of-fold probabilities from "
            "sklearn.model_selection.cross_val_predict(clf, X, Y, method='predict_proba')."
        )
    out = check_output_file(args.out, "--out", example="suspects.csv")
    X, y = cli_data.load_data(args)
    print(f"Found {cli_data.describe_data(y)}.", flush=True)
    print(f"Fitting {args.cv} models, each judging the images it was not trained on...", flush=True)
    issues = find_label_issues(clf, X, y, cv=args.cv, filter_by=args.filter)
    issues.to_csv(out)
    share = 100 * len(issues) / len(y)
    print(f"{len(issues)} of {len(y)} labels look wrong ({share:.1f} %).")
    if len(issues):
        by_label = Counter(str(label) for label in issues.given_label.tolist())
        print("By given label: " + ", ".join(f"{k} ({v})" for k, v in by_label.most_common()))
        print("Worst (given -> suggested, label quality):")
        for row in issues.rows()[: args.show]:
            print(
                f"  {row['path']}: {row['given_label']} -> {row['suggested_label']} "
                f"({row['label_quality']:.3f})"
            )
    print(f"Wrote the suspects to {out} (path, given_label, suggested_label, label_quality).")
    if args.plots and len(issues):

        def draw(folder):
            from . import plot

            path = os.path.join(folder, "label_issues.png")
            plot.plot_label_issues(issues, n=args.top, path=path)
            return [path]

        report.pictures(args.plots, draw)
    return 0


__all__ = ["run_audit", "run_demo", "run_train"]
