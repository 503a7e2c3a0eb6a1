"""The ``imgclf`` command line: ``demo``, ``train``, ``predict``, ``evaluate``,
``audit``, ``info`` and ``serve``. This module parses the arguments and runs
the command; the commands live by job in ``_cli_train`` (demo, train, audit),
``_cli_predict`` (predict, evaluate) and ``_servecli`` (info, serve), with
what they read in ``_cli_data`` and what they show in ``_cli_report``.

Parsing and ``--help`` never import TensorFlow; each command imports what it
needs when it runs. Errors print one ``imgclf: error: ...`` message and exit
with status 1, without a traceback unless ``--debug`` is given.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import warnings

import imgclf._cli_predict as predict_commands
import imgclf._cli_report as report
import imgclf._cli_train as train_commands

from ._servecli import add_commands


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
        "--refit",
        choices=("auto", "yes", "no"),
        help="transfer: after a fit with a hold-out, fit again on every image with what it "
        "chose (default auto: when at most 10 images per class are held out)",
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
    demo.set_defaults(func=train_commands.run_demo)

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
    train.set_defaults(func=train_commands.run_train)

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
    predict.set_defaults(func=predict_commands.run_predict)

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
    evaluate.set_defaults(func=predict_commands.run_evaluate)

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
    audit.set_defaults(func=train_commands.run_audit)
    add_commands(sub, debug)  # info, serve
    return parser


def _progress_option(parser) -> None:
    parser.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help=f"progress bar on stderr (default: when there are more than {report.CHUNK} images)",
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
