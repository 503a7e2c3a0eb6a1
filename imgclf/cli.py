"""The ``imgclf`` command line: ``demo``, ``train``, ``predict``, ``evaluate``,
``audit``, ``info`` and ``serve`` (those two in ``_servecli``).

Parsing and ``--help`` never import TensorFlow; each command imports what it
needs when it runs. Errors print one ``imgclf: error: ...`` message and exit
with status 1, without a traceback unless ``--debug`` is given.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import os
import sys
import warnings

from ._servecli import add_commands

# Images per predict_proba call in predict/evaluate: bounds memory on large
# folders and paces the progress bar.
_CHUNK = 256


def _predict_proba(clf, X, what: str, progress: bool | None = None):
    """``clf.predict_proba(X)`` in chunks, with a progress bar (rich's, on
    standard error: stdout may carry a CSV) for large inputs."""
    import numpy as np
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
    from sklearn.utils import _safe_indexing

    n = len(X)
    shown = n > _CHUNK if progress is None else progress
    parts = []
    columns = (TextColumn(what), BarColumn(), MofNCompleteColumn())
    console = Console(stderr=True)
    with Progress(*columns, console=console, disable=not shown or n == 0) as bar:
        task = bar.add_task(what, total=n)
        for start in range(0, n, _CHUNK):
            index = np.arange(start, min(start + _CHUNK, n))
            parts.append(clf.predict_proba(_safe_indexing(X, index)))
            bar.update(task, completed=index[-1] + 1)
    return np.concatenate(parts) if parts else np.empty((0, len(clf.classes_)))


def _labels(clf, proba):
    """The predicted label of each row of ``proba``."""
    import numpy as np

    return clf.classes_[np.argmax(proba, axis=1)]


def _load_model(path):
    import imgclf
    from imgclf.exceptions import PathNotFoundError

    if not os.path.exists(path):
        raise PathNotFoundError(f"No saved model at {path!r}; give the file 'imgclf train' wrote.")
    return imgclf.load(path)


# ------------------------------------------------------------------ data
def _parse_map(items) -> dict | None:
    from .exceptions import InputError

    if not items:
        return None
    mapping = {}
    for item in items:
        code, sep, name = item.partition("=")
        if not sep or not code:
            raise InputError(f"--map {item!r}: expected CODE=NAME, e.g. --map eII='Elizabeth II'.")
        mapping[code] = name
    return mapping


def _load_data(args):
    """``(X, y)`` from DATA and the label-source options."""
    import imgclf
    from imgclf.exceptions import InputError

    if args.map and args.prefix is None and args.pattern is None:
        raise InputError("--map renames file-name codes; use it with --prefix or --pattern.")
    if not args.csv and (args.delimiter or args.encoding or args.tags_sep):
        raise InputError(
            "--delimiter, --encoding and --tags-sep describe the --csv file; give --csv FILE."
        )
    if args.csv:
        try:
            return imgclf.load_csv(
                args.csv,
                _column(args.path_column),
                _column(args.label_column),
                root=args.data,
                delimiter=_delimiter(args.delimiter),
                encoding=args.encoding,
                tags_sep=args.tags_sep,
            )
        except InputError as exc:
            if not {"delimiter", "encoding"} & set(exc.parameters):
                raise
            # The library's advice names Python arguments; say the flags too.
            raise InputError(
                f"{exc}\nOn the command line: --delimiter CHAR, --encoding NAME."
            ) from exc
    if args.prefix is not None or args.pattern is not None:
        return imgclf.load_filenames(
            args.data,
            prefix_length=args.prefix,
            pattern=args.pattern,
            mapping=_parse_map(args.map),
        )
    return imgclf.load_folder(args.data)


def _delimiter(text) -> str:
    """``--delimiter``: a character, or ``tab`` / ``\\t`` (a shell passes the
    two characters) for a tab."""
    if text is None:
        return ","
    return "\t" if text.lower() in ("tab", "\\t") else text


def _as_model_labels(clf, y):
    """Labels read from folder or file names are text; a model fitted in
    Python may have numbers as classes (``[0, 1, 2]``): "0" is then 0."""
    import numpy as np

    from .exceptions import InputError

    if clf.classes_.dtype.kind in "OUS":
        return y
    by_text = {str(label): label for label in clf.classes_.tolist()}
    unknown = sorted(set(y.tolist()) - set(by_text))
    if unknown:
        raise InputError(
            f"The labels {unknown[:10]} are not among the model's classes "
            f"{clf.classes_.tolist()[:20]}, which are numbers: give the images' labels as those "
            "numbers (the class folders or the CSV's label column)."
        )
    return np.asarray([by_text[label] for label in y.tolist()])


def _column(value):
    """A CSV column given on the command line: a name, or a 0-based position."""
    return int(value) if value is not None and value.isdigit() else value


def _describe_data(y) -> str:
    import numpy as np

    from ._multilabel import is_multilabel

    if is_multilabel(y):
        tags = [label for labels in y.tolist() for label in labels]
        labels, counts = np.unique(np.asarray(tags, dtype=str), return_counts=True)
        shown = ", ".join(f"{label} ({count})" for label, count in zip(labels, counts, strict=True))
        return f"{len(y)} images with {len(labels)} labels (multi-label): {shown}"
    labels, counts = np.unique(y, return_counts=True)
    shown = ", ".join(f"{label} ({count})" for label, count in zip(labels, counts, strict=True))
    return f"{len(y)} images in {len(labels)} classes: {shown}"


def _image_files(inputs) -> list[str]:
    """Files as given, folders searched recursively for image files, in order."""
    from ._scan import list_image_files
    from .exceptions import InputError, PathNotFoundError

    files = []
    for item in inputs:
        if os.path.isdir(item):
            found = list_image_files(item, recursive=True)
            if not found:
                raise InputError(f"No image files in the folder {item!r}.")
            files += found
        elif os.path.exists(item):  # a FIFO or device too: the scan reports it
            files.append(item)
        else:
            raise PathNotFoundError(f"No such file or folder: {item!r}.")
    return files


# -------------------------------------------------------------- pictures
def _pictures(folder, draw) -> list[str]:
    """Run ``draw(folder)`` (which returns written paths); without matplotlib
    say how to get pictures instead of failing the command."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        print(
            "imgclf: note: pictures skipped, matplotlib is not installed "
            "(pip install 'imgclf[plot]').",
            file=sys.stderr,
        )
        return []
    os.makedirs(folder, exist_ok=True)
    written = draw(folder)
    if written:
        print(f"Saved pictures to {folder}{os.sep}:")
        for path in written:
            print(f"  {path}")
    return written


def _evaluation_pictures(clf, X, y, proba, folder, top: int) -> list[str]:
    import numpy as np

    from . import plot

    pred = _labels(clf, proba)
    paths = []
    path = os.path.join(folder, "confusion_matrix.png")
    labels = np.unique(np.concatenate([clf.classes_, np.unique(y)]))
    plot.plot_confusion_matrix(y, pred, labels=labels, path=path)
    paths.append(path)
    path = os.path.join(folder, "top_losses.png")
    plot.plot_top_losses(clf, X, y, n=top, proba=proba, path=path)
    paths.append(path)
    worst, _, _ = plot.top_losses(clf, X, y, n=min(top, 8), proba=proba)
    path = os.path.join(folder, "grad_cam.png")
    try:
        plot.plot_grad_cam(clf, np.asarray(X)[worst], path=path)
        paths.append(path)
    except Exception as exc:  # a network Grad-CAM cannot read should not fail the report
        print(f"imgclf: note: no Grad-CAM picture ({exc})", file=sys.stderr)
    return paths


# -------------------------------------------------------------- commands
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
    epochs = 15 if args.fast else "auto"  # the default: about 1,600 steps, 21 epochs here
    clf = CNNClassifier(epochs=epochs, random_state=0, verbose=args.verbose).fit(X_tr, y_tr)
    print(f"Trained {len(clf.history_['loss'])} epochs.")
    proba = clf.predict_proba(X_te)
    print(classification_report(y_te, _labels(clf, proba), digits=3))
    print(f"Test accuracy: {clf.score(X_te, y_te):.3f}")
    if args.out:
        clf.save(args.out)
        print(f"Saved the model to {args.out}")
    if args.plots:

        def draw(folder):
            from . import plot

            path = os.path.join(folder, "learning_curves.png")
            plot.plot_learning_curves(clf, path=path)
            return [path, *_evaluation_pictures(clf, X_te, y_te, proba, folder, top=16)]

        _pictures(args.plots, draw)
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
        if args.backbone or args.weights or args.fine_tune_epochs is not None:
            raise InputError(
                "--backbone, --weights and --fine-tune-epochs are for --model transfer."
            )
        return imgclf.CNNClassifier(**params)
    params["backbone"] = args.backbone or "mobilenet_v2"
    weights = args.weights or "imagenet"
    params["weights"] = None if weights.lower() == "none" else weights
    if args.fine_tune_epochs is not None:
        params["fine_tune_epochs"] = args.fine_tune_epochs
    return imgclf.TransferClassifier(**params)


def _cmd_train(args) -> int:

    from .exceptions import InputError

    clf = _estimator(args)  # option mistakes first, before scanning a large folder
    X, y = _load_data(args)
    print(f"Found {_describe_data(y)}.", flush=True)
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

        def draw(folder):
            from . import plot

            path = os.path.join(folder, "learning_curves.png")
            plot.plot_learning_curves(clf, path=path)
            return [path]

        _pictures(args.plots, draw)
    return 0


def _cmd_predict(args) -> int:

    from ._scan import screen

    clf = _load_model(args.model)
    files = screen(_image_files(args.inputs), on_bad_file="skip", source="imgclf predict").paths
    proba = _predict_proba(clf, files, "predicting", progress=args.progress)
    writer = csv.writer(sys.stdout, lineterminator="\n")
    if getattr(clf, "multilabel_", False):
        return _write_tags(writer, clf, files, proba, args)
    labels = _labels(clf, proba)
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


def _cmd_evaluate(args) -> int:
    import numpy as np
    from sklearn.metrics import accuracy_score, classification_report

    clf = _load_model(args.model)
    X, y = _load_data(args)
    if getattr(clf, "multilabel_", False) or args.tags_sep:
        return _evaluate_tags(clf, X, y, args)
    y = _as_model_labels(clf, y)
    print(f"Evaluating on {_describe_data(y)}.", flush=True)
    unknown = sorted(set(np.unique(y).tolist()) - set(clf.classes_.tolist()))
    if unknown:
        print(
            f"imgclf: warning: labels {unknown} were not among the model's classes "
            f"{clf.classes_.tolist()}; their images are always counted as mistakes.",
            file=sys.stderr,
        )
    proba = _predict_proba(clf, X, "predicting", progress=args.progress)
    pred = _labels(clf, proba)
    print(classification_report(y, pred, digits=3, zero_division=0))
    print(f"Accuracy: {accuracy_score(y, pred):.3f}")
    folder = args.plots or os.path.splitext(args.model)[0] + "-evaluation"
    _pictures(folder, lambda f: _evaluation_pictures(clf, X, y, proba, f, top=args.top))
    return 0


def _cmd_audit(args) -> int:
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
    X, y = _load_data(args)
    print(f"Found {_describe_data(y)}.", flush=True)
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

        _pictures(args.plots, draw)
    return 0


def _evaluate_tags(clf, X, y, args) -> int:
    """``imgclf evaluate`` for a multi-label model: the per-label report, the
    subset accuracy and the pictures of :func:`_tag_pictures`."""
    import numpy as np
    from sklearn.metrics import accuracy_score, classification_report

    from ._multilabel import indicator, predict
    from .exceptions import InputError

    if not getattr(clf, "multilabel_", False) or not args.tags_sep:
        raise InputError(
            "A multi-label model is evaluated on a --csv FILE whose label column holds tags: "
            "give --tags-sep CHAR (and only for a multi-label model)."
        )
    print(f"Evaluating on {_describe_data(y)}.", flush=True)
    if clf.classes_.dtype.kind not in "OUS":
        y = [tuple(_as_model_labels(clf, np.asarray(labels, dtype=str))) for labels in y]
    truth = indicator(clf, y, len(y))
    proba = _predict_proba(clf, X, "predicting", progress=args.progress)
    pred = predict(clf, proba)
    names = [str(label) for label in clf.classes_]
    print(classification_report(truth, pred, target_names=names, digits=3, zero_division=0))
    print(f"Subset accuracy (every label right): {accuracy_score(truth, pred):.3f}")
    folder = args.plots or os.path.splitext(args.model)[0] + "-evaluation"
    _pictures(folder, lambda f: _tag_pictures(clf, X, truth, proba, f, top=args.top))
    return 0


def _tag_pictures(clf, X, truth, proba, folder, top: int) -> list[str]:
    """``imgclf evaluate``'s pictures for a multi-label model: the top losses
    (mean binary cross-entropy) and Grad-CAM of the worst few (no confusion
    matrix: a multi-label model has one 2x2 matrix per label)."""
    import numpy as np

    from . import plot

    paths = []
    path = os.path.join(folder, "top_losses.png")
    plot.plot_top_losses(clf, X, truth, n=top, proba=proba, path=path)
    paths.append(path)
    worst, _, _ = plot.top_losses(clf, X, truth, n=min(top, 8), proba=proba)
    path = os.path.join(folder, "grad_cam.png")
    try:
        plot.plot_grad_cam(clf, np.asarray(X)[worst], path=path)
        paths.append(path)
    except Exception as exc:  # a network Grad-CAM cannot read should not fail the report
        print(f"imgclf: note: no Grad-CAM picture ({exc})", file=sys.stderr)
    return paths


# ---------------------------------------------------------------- parser
def _image_size(text: str):
    parts = text.lower().replace("x", ",").split(",")
    try:
        sizes = [int(p) for p in parts]
    except ValueError:
        sizes = []
    if len(sizes) not in (1, 2) or min(sizes) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a size such as 64 or 96x128.")
    return sizes[0] if len(sizes) == 1 else tuple(sizes)


def _batch_size(text: str):
    return text if text == "auto" else int(text)


def _data_options(parser) -> None:
    parser.add_argument(
        "data", metavar="DATA", help="folder of images (one sub-folder per class by default)"
    )
    source = parser.add_mutually_exclusive_group()
    source.add_argument(
        "--csv", metavar="FILE", help="labels from a CSV manifest; its paths are relative to DATA"
    )
    source.add_argument(
        "--prefix",
        metavar="N",
        type=int,
        help="the label is the first N characters of each file name",
    )
    source.add_argument(
        "--pattern",
        metavar="RE",
        help="the label is the first group of RE searched in each file name",
    )
    parser.add_argument(
        "--path-column", metavar="COL", help="CSV column of the paths (name or 0-based position)"
    )
    parser.add_argument("--label-column", metavar="COL", help="CSV column of the labels")
    parser.add_argument(
        "--delimiter", metavar="CHAR", help="CSV column separator (default ','), e.g. ';'"
    )
    parser.add_argument(
        "--encoding",
        metavar="NAME",
        help="CSV text encoding (default UTF-8, or UTF-16 with a byte-order mark), e.g. latin-1",
    )
    parser.add_argument(
        "--tags-sep",
        metavar="CHAR",
        help="multi-label: the CSV label column holds each image's labels separated by CHAR, "
        "e.g. 'cat;dog' with --tags-sep ';'",
    )
    parser.add_argument(
        "--map",
        metavar="CODE=NAME",
        action="append",
        help="with --prefix/--pattern: readable name for a code (repeatable), e.g. eII='Elizabeth II'",
    )


def _model_options(parser) -> None:
    """The classifier and its settings (``imgclf train`` and ``imgclf audit``)."""
    parser.add_argument(
        "--model", choices=("cnn", "transfer"), default="cnn", help="default: %(default)s"
    )
    parser.add_argument(
        "--backbone",
        metavar="NAME",
        help="transfer: keras.applications backbone (default mobilenet_v2)",
    )
    parser.add_argument(
        "--weights",
        metavar="W",
        help="transfer: 'imagenet' (default), 'none' (train from scratch) or a weights file",
    )
    parser.add_argument(
        "--epochs", type=int, help="maximum epochs (of the frozen stage for transfer)"
    )
    parser.add_argument(
        "--fine-tune-epochs",
        type=int,
        help="transfer: maximum epochs of the fine-tune stage (default 10; 0 skips it)",
    )
    parser.add_argument(
        "--image-size",
        type=_image_size,
        metavar="SIZE",
        help="network input size, e.g. 64 or 96x128",
    )
    parser.add_argument(
        "--batch-size", type=_batch_size, metavar="N", help="images per step (default auto)"
    )
    parser.add_argument("--learning-rate", type=float, metavar="LR")
    parser.add_argument(
        "--lr-schedule",
        choices=("plateau", "one_cycle", "cosine", "none"),
        help="learning-rate schedule (default: one_cycle for cnn, none for transfer)",
    )
    parser.add_argument(
        "--augment", choices=("light", "standard", "heavy"), help="augmentation preset"
    )
    parser.add_argument(
        "--validation-fraction", type=float, metavar="F", help="hold-out for early stopping"
    )
    parser.add_argument("--seed", type=int, default=0, help="random_state (default: %(default)s)")


def build_parser() -> argparse.ArgumentParser:
    # --debug is accepted before or after the command; SUPPRESS keeps the
    # sub-command's absent flag from overwriting one given before it.
    debug = argparse.ArgumentParser(add_help=False)
    debug.add_argument(
        "--debug",
        action="store_true",
        default=argparse.SUPPRESS,
        help="show full tracebacks on errors",
    )
    parser = argparse.ArgumentParser(
        prog="imgclf",
        description="scikit-learn image classifiers on Keras 3.",
        epilog="Run 'imgclf COMMAND --help' for a command's options.",
    )
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = sub.add_parser(
        "demo",
        parents=[debug],
        help="train a CNN on scikit-learn's digits, print a report, save pictures",
    )
    demo.add_argument("--fast", action="store_true", help="a few seconds' run on 4 classes")
    demo.add_argument("--out", help="also save the trained model to this file")
    demo.add_argument(
        "--plots",
        metavar="DIR",
        default="imgclf-demo",
        help="folder for the pictures (default: %(default)s); '' for none",
    )
    demo.add_argument("--verbose", type=int, default=1, choices=(0, 1, 2))
    demo.set_defaults(func=_cmd_demo)

    train = sub.add_parser(
        "train", parents=[debug], help="train a classifier on a folder of images and save it"
    )
    _data_options(train)
    _model_options(train)
    train.add_argument(
        "--out", required=True, metavar="MODEL", help="file to save the trained model to"
    )
    train.add_argument("--plots", metavar="DIR", help="also save the learning curves there")
    train.add_argument("--quiet", action="store_true", help="no progress bars")
    train.set_defaults(func=_cmd_train)

    predict = sub.add_parser(
        "predict",
        parents=[debug],
        help="predict image files or folders; CSV (path,label,probability) to stdout",
    )
    predict.add_argument(
        "model", metavar="MODEL", help="a model saved by 'imgclf train' or clf.save"
    )
    predict.add_argument(
        "inputs", metavar="FILES_OR_FOLDERS", nargs="+", help="folders are searched recursively"
    )
    predict.add_argument(
        "--proba", action="store_true", help="also one probability column per class"
    )
    predict.add_argument(
        "--tags-sep",
        metavar="CHAR",
        help="multi-label models: the separator of the labels in the 'labels' column (default ';')",
    )
    _progress_option(predict)
    predict.set_defaults(func=_cmd_predict)

    evaluate = sub.add_parser(
        "evaluate",
        parents=[debug],
        help="classification report, confusion matrix and top losses on labelled images",
    )
    evaluate.add_argument(
        "model", metavar="MODEL", help="a model saved by 'imgclf train' or clf.save"
    )
    _data_options(evaluate)
    evaluate.add_argument(
        "--plots", metavar="DIR", help="folder for the pictures (default: MODEL-evaluation)"
    )
    evaluate.add_argument(
        "--top", type=int, default=16, metavar="N", help="images in the top-losses grid"
    )
    _progress_option(evaluate)
    evaluate.set_defaults(func=_cmd_evaluate)

    audit = sub.add_parser(
        "audit",
        parents=[debug],
        help="find images whose label looks wrong (cross-validated fits, cleanlab); CSV of suspects",
    )
    _data_options(audit)
    _model_options(audit)
    audit.add_argument(
        "--cv",
        type=int,
        default=5,
        metavar="K",
        help="folds: K models fitted (default: %(default)s)",
    )
    audit.add_argument(
        "--filter",
        metavar="RULE",
        default="prune_by_noise_rate",
        help="cleanlab's rule for flagging: prune_by_noise_rate (default), prune_by_class, both, "
        "confident_learning, predicted_neq_given (every disagreement), low_normalized_margin, "
        "low_self_confidence",
    )
    audit.add_argument(
        "--out",
        metavar="CSV",
        default="suspects.csv",
        help="the suspects, worst first (default: %(default)s)",
    )
    audit.add_argument(
        "--show", type=int, default=10, metavar="N", help="suspects printed (default: %(default)s)"
    )
    audit.add_argument("--plots", metavar="DIR", help="also save a picture of the suspects there")
    audit.add_argument(
        "--top",
        type=int,
        default=16,
        metavar="N",
        help="images in the picture (default: %(default)s)",
    )
    audit.add_argument("--quiet", action="store_true", help="no progress bars")
    audit.set_defaults(func=_cmd_audit)
    add_commands(sub, debug)  # info, serve
    return parser


def _progress_option(parser) -> None:
    parser.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help=f"progress bar on stderr (default: when there are more than {_CHUNK} images)",
    )


def _start_tensorflow_quietly() -> None:
    """Import TensorFlow and find its devices with file descriptor 2 parked in
    a temporary file. TensorFlow's C++ start-up lines (oneDNN notices, CUDA
    probing, an "E0000 ... cuInit" on every CPU-only machine) ignore
    TF_CPP_MIN_LOG_LEVEL and would bury the command's own messages. If the
    start fails, what it printed is shown after all."""
    import tempfile

    from ._backend import get_tf

    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as log:
        os.dup2(log.fileno(), 2)
        try:
            get_tf().config.list_physical_devices()
        except BaseException:
            os.dup2(saved, 2)
            log.seek(0)
            sys.stderr.write(log.read().decode(errors="replace"))
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)


@contextlib.contextmanager
def _decoder_lines_hidden():
    """Keep what C libraries write straight to file descriptor 2 (libtiff's
    "LZWDecode: Not enough data...", libjpeg's "Unsupported marker", TensorFlow's
    C++ logging) out of the command's output, and Pillow's warnings about the
    files it reads ("Truncated File Read"): the files they are about are
    reported once, by name, as files left out. Python's own ``sys.stderr``
    (warnings, errors, the progress bar) still reaches the terminal."""
    sys.stderr.flush()
    try:
        python_on_fd2 = sys.stderr.fileno() == 2
    except (AttributeError, OSError, ValueError):  # replaced by a test, or closed
        python_on_fd2 = False
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    stream = sys.stderr
    if python_on_fd2:
        encoding = getattr(stream, "encoding", None) or "utf-8"
        sys.stderr = open(  # noqa: SIM115 - closed below
            os.dup(saved), "w", buffering=1, encoding=encoding, errors="backslashreplace"
        )
    os.dup2(devnull, 2)
    os.close(devnull)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", module=r"PIL\.")
            yield
    finally:
        if python_on_fd2:
            sys.stderr.close()
            sys.stderr = stream
        os.dup2(saved, 2)
        os.close(saved)


def _show_warning(message, category, filename, lineno, file=None, line=None):
    print(f"imgclf: warning: {message}", file=sys.stderr)


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        with warnings.catch_warnings():
            warnings.showwarning = _show_warning  # no file:line noise for a user
            if getattr(args, "debug", False):
                return args.func(args)
            _start_tensorflow_quietly()
            with _decoder_lines_hidden():
                return args.func(args)
    except KeyboardInterrupt:
        print("imgclf: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # `imgclf predict ... | head`: the reader left; not an error.
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - silences the exit-time flush
        return 0
    except Exception as exc:  # one clear message unless --debug
        if getattr(args, "debug", False):
            raise
        message = str(exc) or type(exc).__name__
        if isinstance(exc, KeyError):
            message = f"missing {message}"
        print(f"imgclf: error: {message}", file=sys.stderr)
        return 1
