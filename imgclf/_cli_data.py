"""What the ``imgclf`` commands read: labelled images from DATA and the
label-source options (``--csv``, ``--prefix``, ``--pattern``, ``--map``...),
image files and folders to predict, and saved models; and the one-line
description of labelled data the commands print. Nothing heavy is imported
until a function runs."""

from __future__ import annotations

import os


def load_model(path):
    """The model saved at ``path`` (a clear error when there is no file)."""
    import imgclf
    from imgclf.exceptions import PathNotFoundError

    if not os.path.exists(path):
        raise PathNotFoundError(f"No saved model at {path!r}; give the file 'imgclf train' wrote.")
    return imgclf.load(path)


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


def load_data(args):
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


def as_model_labels(clf, y):
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


def describe_data(y) -> str:
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


def image_files(inputs) -> list[str]:
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


__all__ = ["as_model_labels", "describe_data", "image_files", "load_data", "load_model"]
