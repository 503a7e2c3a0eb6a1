"""Loaders: turn a folder tree, a CSV manifest or labelled file names into
``(X, y)``, with ``X`` a 1-D array of image paths every imgclf estimator (and
every scikit-learn splitter) takes.

Each loader only finds ``(path, label)`` pairs; one core, :func:`_finish`,
screens the files (:func:`imgclf._scan.screen`: every file kept is one its
decoder reads; bad ones left out or rejected) and builds the arrays.
"""

from __future__ import annotations

import io
import os
import re
import warnings
from collections.abc import Mapping

import numpy as np

from ._files import FileRefusedError, open_binary
from ._multilabel import parse_tags
from ._params import did_you_mean
from ._pathargs import as_path, short_repr
from ._scan import (
    IMAGE_EXTENSIONS,
    LIST_AT_MOST,
    capped_lines,
    check_on_bad_file,
    list_image_files,
    screen,
)
from .exceptions import InputError, InputTypeError, PathNotFoundError

#: The largest CSV manifest :func:`load_csv` reads (1 GiB: tens of millions of rows).
MAX_CSV_BYTES = 1 << 30


def _subfolders(folder: str) -> list[str]:
    with os.scandir(folder) as entries:
        return sorted(e.name for e in entries if e.is_dir() and not e.name.startswith("."))


def _check_root(root, what: str) -> str:
    root = as_path(root, f"{what}: root")
    if not os.path.exists(root):
        raise PathNotFoundError(f"{what}: {root!r} does not exist; check the path.")
    if not os.path.isdir(root):
        raise InputError(f"{what}: {root!r} is a file, not a folder.")
    return root


def _finish(paths: list[str], labels: list, *, on_bad_file: str, source: str):
    """The core every loader ends in: check the files, then build ``(X, y)``."""
    if not paths:
        raise InputError(
            f"{source} has no image files (looked for {', '.join(sorted(IMAGE_EXTENSIONS))}, "
            "any case)."
        )
    found = screen(paths, on_bad_file=on_bad_file, source=source)
    if labels and isinstance(labels[0], tuple):  # tags: a 1-D array of label tuples
        y = np.empty(len(found.keep), dtype=object)
        y[:] = [labels[i] for i in found.keep]
        return found.paths, y
    return found.paths, np.asarray([labels[i] for i in found.keep])


def load_folder(root, *, on_bad_file: str = "skip"):
    """Images in one sub-folder per class: ``root/<class>/<image>``.

    The Kaggle shape, where ``root`` holds a single folder that holds the
    class folders (``seg_train/seg_train/<class>/...``), is recognised and
    descended into. Images in deeper sub-folders of a class folder belong to
    that class.

    Parameters
    ----------
    root : str or os.PathLike
        The folder holding the class folders.
    on_bad_file : {"skip", "error"}, default="skip"
        Files with an image extension that cannot be used (empty, truncated,
        not really an image, over ``PIL.Image.MAX_IMAGE_PIXELS``): ``"skip"``
        leaves them out and warns, naming each; ``"error"`` raises
        :class:`imgclf.exceptions.ImageFileError` naming each.

    Returns
    -------
    X : ndarray of shape (n,), dtype object
        Image paths (``str``), sorted by class then by path within a class.
        Only image files count (jpg, jpeg, png, bmp, gif, tif, tiff, webp, in
        any case); hidden files and folders (``.DS_Store``...) are ignored.
    y : ndarray of shape (n,)
        The class folder name of each image.

    Examples
    --------
    >>> import os, tempfile
    >>> from PIL import Image
    >>> from imgclf import load_folder
    >>> root = tempfile.mkdtemp()
    >>> for name in ["cat", "dog"]:
    ...     os.mkdir(os.path.join(root, name))
    ...     Image.new("RGB", (8, 8)).save(os.path.join(root, name, "1.png"))
    >>> X, y = load_folder(root)
    >>> [os.path.relpath(p, root) for p in X], y.tolist()
    (['cat/1.png', 'dog/1.png'], ['cat', 'dog'])
    """
    check_on_bad_file(on_bad_file)
    top = _check_root(root, "load_folder")
    folder = top
    # Kaggle archives unpack to root/<name>/<class>/...: descend while the
    # folder holds exactly one folder and no images of its own.
    while True:
        subs = _subfolders(folder)
        if len(subs) != 1 or list_image_files(folder, recursive=False):
            break
        inner = os.path.join(folder, subs[0])
        if list_image_files(inner, recursive=False) or not _subfolders(inner):
            break
        folder = inner
    classes = _subfolders(folder)
    if not classes:
        loose = len(list_image_files(folder, recursive=False))
        hint = (
            f" It holds {loose} images directly: use load_filenames if their names "
            "carry the label, or sort them into one folder per class."
            if loose
            else ""
        )
        raise InputError(
            f"load_folder: {folder!r} has no class folders; expected "
            f"{folder}/<class name>/<image files>.{hint}"
        )
    paths, labels = [], []
    for name in classes:
        files = list_image_files(os.path.join(folder, name), recursive=True)
        paths.extend(files)
        labels.extend([name] * len(files))
    return _finish(paths, labels, on_bad_file=on_bad_file, source=f"load_folder({top!r})")


_PATH_COLUMNS = ("path", "filepath", "file_path", "filename", "file", "image", "image_path")
_LABEL_COLUMNS = ("label", "class", "target", "category", "y")


def _pick_column(header: list[str], given, known: tuple, fallback: int, role: str, path: str):
    if given is not None:
        if isinstance(given, int) and not isinstance(given, bool):
            if not 0 <= given < len(header):
                raise InputError(
                    f"load_csv: {role}={given} but {path!r} has {len(header)} columns."
                )
            return given
        if given not in header:
            raise InputError(
                f"load_csv: {role}={given!r} is not a column of {path!r}"
                f"{did_you_mean(str(given), header)}; its columns are {short_repr(header, 300)}."
            )
        return header.index(given)
    lowered = [h.strip().lower() for h in header]
    for name in known:
        if name in lowered:
            return lowered.index(name)
    return fallback


def load_csv(
    path,
    path_column=None,
    label_column=None,
    *,
    root=None,
    missing: str = "error",
    on_bad_file: str = "skip",
    delimiter: str = ",",
    encoding: str | None = None,
    tags_sep: str | None = None,
):
    """Images listed in a CSV manifest, one row per image.

    Parameters
    ----------
    path : str or os.PathLike
        The CSV file. Its first row is the header.
    path_column, label_column : str or int, optional
        Column names (or 0-based positions) of the image path and the label.
        By default the first column named one of ``path``, ``filepath``,
        ``file_path``, ``filename``, ``file``, ``image``, ``image_path`` (any
        case) holds paths and the first named ``label``, ``class``,
        ``target``, ``category`` or ``y`` holds labels; failing that, the
        first column is the path and the second the label.
    root : str or os.PathLike, optional
        Folder relative paths are taken from. Default: the CSV's folder.
    missing : {"error", "skip"}, default="error"
        Rows naming files that do not exist: ``"error"`` raises one
        :class:`imgclf.exceptions.InputError` listing their row numbers (as
        a spreadsheet shows them, header = row 1) and paths; ``"skip"``
        leaves them out with a warning.
    on_bad_file : {"skip", "error"}, default="skip"
        Files that exist but cannot be used; see :func:`load_folder`.
    delimiter : str, default=","
        The character between columns: ``";"`` for the CSV files a
        spreadsheet writes under a locale with a decimal comma, ``"\\t"``
        for tab-separated text.
    encoding : str, optional
        The file's text encoding, e.g. ``"latin-1"`` or ``"cp1252"``. By
        default UTF-8, or UTF-16 / UTF-32 when the file starts with their
        byte-order mark (spreadsheets' "Unicode text").
    tags_sep : str, optional
        For multi-label data: the label column holds each image's labels
        (tags) separated by ``tags_sep``, e.g. ``"cat;dog"`` with
        ``tags_sep=";"``; an empty cell means no label. ``y`` is then an
        array of label tuples, which ``fit`` takes as multi-label targets.

    Returns
    -------
    X : ndarray of shape (n,), dtype object
        Image paths in row order.
    y : ndarray of shape (n,)
        Labels, as read (strings); with ``tags_sep``, an object array of
        tuples of labels (sorted, each once).

    Examples
    --------
    >>> import os, tempfile
    >>> from PIL import Image
    >>> from imgclf import load_csv
    >>> root = tempfile.mkdtemp()
    >>> Image.new("L", (8, 8)).save(os.path.join(root, "a.png"))
    >>> with open(os.path.join(root, "labels.csv"), "w") as f:
    ...     _ = f.write("filename,label\\na.png,cat\\n")
    >>> X, y = load_csv(os.path.join(root, "labels.csv"))
    >>> os.path.basename(X[0]), str(y[0])
    ('a.png', 'cat')
    """
    check_on_bad_file(on_bad_file)
    if missing not in ("error", "skip"):
        raise InputError(f"load_csv: missing={missing!r}: expected 'error' or 'skip'.")
    path = as_path(path, "load_csv: path")
    if not os.path.exists(path):
        raise PathNotFoundError(f"load_csv: {path!r} does not exist; check the path.")
    if not os.path.isfile(path):
        raise InputError(f"load_csv: {path!r} is not a file; give the path of the CSV file.")
    if not isinstance(delimiter, str) or len(delimiter) != 1 or delimiter in '"\r\n':
        raise InputError(
            f"load_csv: delimiter={short_repr(delimiter)}: expected one character, such as "
            "',' (the default), ';' or '\\t'.",
            parameters=("delimiter",),
        )
    if tags_sep is not None and (
        not isinstance(tags_sep, str) or not tags_sep or tags_sep == delimiter or "\n" in tags_sep
    ):
        raise InputError(
            f"load_csv: tags_sep={short_repr(tags_sep)}: expected a separator of the tags in "
            f"the label column other than the column delimiter {delimiter!r}, such as ';' or "
            "'|' (or None: one label per row)."
        )
    base = (
        as_path(root, "load_csv: root")
        if root is not None
        else os.path.dirname(os.path.abspath(path))
    )
    rows = _read_rows(path, delimiter, encoding)
    if not rows:
        raise InputError(f"load_csv: {path!r} is empty; expected a header and one row per image.")
    header = rows[0]
    if len(header) < 2:
        found = [c for c in (";", "\t", "|", ",") if c != delimiter and c in header[0]]
        hint = (
            f" Its header holds {found[0]!r}: pass delimiter={found[0]!r} if that separates "
            "its columns."
            if found
            else ""
        )
        raise InputError(
            f"load_csv: {path!r} has {len(header)} column ({short_repr(header, 120)}) with "
            f"delimiter={delimiter!r}; it needs a path column and a label column.{hint}",
            parameters=("delimiter",),
        )
    pcol = _pick_column(header, path_column, _PATH_COLUMNS, 0, "path_column", path)
    default_label = 1 if pcol == 0 else 0
    lcol = _pick_column(header, label_column, _LABEL_COLUMNS, default_label, "label_column", path)
    paths, labels, absent, short = [], [], [], []
    for number, row in enumerate(rows[1:], start=2):
        if not any(cell.strip() for cell in row):
            continue  # blank lines, common at the end of hand-edited files
        if len(row) <= max(pcol, lcol):
            short.append(number)
            continue
        file = os.path.join(base, row[pcol].strip())
        if not os.path.exists(file):
            absent.append((number, file))
            continue
        paths.append(file)
        cell = row[lcol].strip()
        labels.append(cell if tags_sep is None else parse_tags(cell, tags_sep))
    if short:
        raise InputError(
            f"load_csv: rows {short[:LIST_AT_MOST]} of {path!r} have fewer than "
            f"{max(pcol, lcol) + 1} columns."
        )
    if absent:
        listing = capped_lines([f"  row {n}: {p!r}" for n, p in absent])
        where = f"root={base!r}" if root is not None else f"the CSV's folder {base!r}"
        message = (
            f"load_csv: {len(absent)} of {len(rows) - 1} rows of {path!r} name files that do "
            f"not exist (paths are relative to {where}):\n{listing}"
        )
        if missing == "error":
            raise InputError(
                f"{message}\nFix the paths, pass root= the folder they are relative to, "
                "or pass missing='skip' to leave those rows out."
            )
        warnings.warn(message, UserWarning, stacklevel=2)
    return _finish(paths, labels, on_bad_file=on_bad_file, source=f"load_csv({path!r})")


#: Byte-order marks and the encoding each announces (UTF-32 before UTF-16:
#: the little-endian UTF-32 mark starts with UTF-16's).
_BOMS = (
    (b"\xef\xbb\xbf", "utf-8-sig"),
    (b"\xff\xfe\x00\x00", "utf-32"),
    (b"\x00\x00\xfe\xff", "utf-32"),
    (b"\xff\xfe", "utf-16"),
    (b"\xfe\xff", "utf-16"),
)


def _read_rows(path: str, delimiter: str, encoding: str | None) -> list[list[str]]:
    """The rows of the CSV file at ``path``, decoded as ``encoding`` (by
    default UTF-8, or what a byte-order mark announces)."""
    import codecs
    import csv

    if encoding is not None:
        try:
            codecs.lookup(encoding)
        except (LookupError, TypeError):
            raise InputError(
                f"load_csv: encoding={short_repr(encoding)} is not a text encoding Python "
                "knows; e.g. 'utf-8', 'latin-1', 'cp1252', 'utf-16'.",
                parameters=("encoding",),
            ) from None
    try:  # a regular file only (a FIFO would block), of a bounded size
        f = open_binary(path, MAX_CSV_BYTES)
    except FileRefusedError as exc:
        raise InputError(f"load_csv: {path!r} {exc.problem}; expected a CSV file.") from None
    with f:
        data = f.read(4096)  # a binary file is refused before it is read whole
        if encoding is None:
            encoding = next((name for bom, name in _BOMS if data.startswith(bom)), "utf-8")
            if encoding == "utf-8" and b"\x00" in data:
                raise InputError(
                    f"load_csv: {path!r} is not a text file (it holds NUL bytes: a binary "
                    "file, or text in UTF-16 without a byte-order mark). Give the CSV "
                    "manifest, saved as UTF-8, or pass encoding='utf-16-le' if it is UTF-16 "
                    "text.",
                    parameters=("encoding",),
                )
        data += f.read()
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise InputError(
            f"load_csv: {path!r} is not valid {encoding} text: byte {exc.start} (line {line}) is "
            f"{data[exc.start : exc.start + 1]!r}. Save it as UTF-8 (a spreadsheet's 'CSV "
            "UTF-8'), or pass encoding= the one it was written in, e.g. encoding='latin-1' or "
            "'cp1252' (Windows).",
            parameters=("encoding",),
        ) from None
    if text.startswith("\ufeff"):
        text = text[1:]
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    try:
        return list(reader)
    except csv.Error as exc:
        raise InputError(
            f"load_csv: {path!r} cannot be read as CSV at line {reader.line_num}: {exc}. "
            "Check that line (an unclosed quote makes one huge field), or the delimiter."
        ) from None


def load_filenames(
    root,
    prefix_length: int | None = None,
    pattern: str | None = None,
    mapping: Mapping | None = None,
    *,
    recursive: bool = False,
    on_bad_file: str = "skip",
):
    """Images in one folder, the label read from each file's name.

    Give exactly one of ``prefix_length`` (``3``: ``eII0042.png`` -> ``eII``)
    and ``pattern`` (a regular expression searched in the file name; its
    first group, or the whole match if it has no group, is the label).

    Parameters
    ----------
    root : str or os.PathLike
        The folder holding the images.
    prefix_length : int, optional
        The label is the first ``prefix_length`` characters of the file name.
    pattern : str, optional
        Regular expression, e.g. ``r"^([a-z]+)_\\d+"`` for ``cat_001.jpg``.
    mapping : dict, optional
        Turns codes into readable labels: ``{"eII": "Elizabeth II",
        "gvi": "George VI", "lin": "Lincoln"}``. A code missing from it is an
        error that lists the codes and a file of each.
    recursive : bool, default=False
        Also look in sub-folders.
    on_bad_file : {"skip", "error"}, default="skip"
        Files that cannot be used; see :func:`load_folder`.

    Returns
    -------
    X : ndarray of shape (n,), dtype object
        Image paths, sorted.
    y : ndarray of shape (n,)
        The label of each image.

    Warns
    -----
    UserWarning
        Naming the image files whose name gives no label (too short for
        ``prefix_length``, or not matching ``pattern``); they are left out.

    Examples
    --------
    >>> import os, tempfile
    >>> from PIL import Image
    >>> from imgclf import load_filenames
    >>> root = tempfile.mkdtemp()
    >>> for name in ["eII0001.png", "gvi0001.png"]:
    ...     Image.new("L", (8, 8)).save(os.path.join(root, name))
    >>> X, y = load_filenames(root, prefix_length=3, mapping={"eII": "Elizabeth II",
    ...                                                        "gvi": "George VI"})
    >>> y.tolist()
    ['Elizabeth II', 'George VI']
    """
    check_on_bad_file(on_bad_file)
    if (prefix_length is None) == (pattern is None):
        raise InputError(
            "load_filenames needs exactly one of prefix_length (e.g. 3 for 'eII0042.png' -> "
            "'eII') and pattern (a regular expression whose group 1 is the label)."
        )
    if prefix_length is not None and (
        isinstance(prefix_length, bool) or not isinstance(prefix_length, int) or prefix_length < 1
    ):
        raise InputError(f"load_filenames: prefix_length={prefix_length!r}: expected an int >= 1.")
    regex = None
    if pattern is not None and not isinstance(pattern, (str, re.Pattern)):
        raise InputTypeError(
            f"load_filenames: pattern={short_repr(pattern)} ({type(pattern).__name__}): "
            r"expected a regular expression as a str, e.g. r'^([a-z]+)_\d+'."
        )
    if mapping is not None and not isinstance(mapping, Mapping):
        raise InputTypeError(
            f"load_filenames: mapping={short_repr(mapping)} ({type(mapping).__name__}): "
            "expected a dict from codes to labels, e.g. {'eII': 'Elizabeth II'}."
        )
    if pattern is not None:
        try:
            regex = re.compile(pattern)
        except re.error as exc:
            raise InputError(
                f"load_filenames: pattern={pattern!r} is not a valid regex: {exc}."
            ) from None
    folder = _check_root(root, "load_filenames")
    paths, labels, unmatched = [], [], []
    for file in list_image_files(folder, recursive=recursive):
        name = os.path.basename(file)
        if regex is not None:
            match = regex.search(name)
            code = None if match is None else (match.group(1) if regex.groups else match.group(0))
        else:
            stem = os.path.splitext(name)[0]
            code = stem[:prefix_length] if len(stem) >= prefix_length else None
        if not code:
            unmatched.append(file)
            continue
        paths.append(file)
        labels.append(code)
    rule = f"pattern={pattern!r}" if regex is not None else f"prefix_length={prefix_length}"
    if unmatched:
        listing = capped_lines([f"  - {p!r}" for p in unmatched])
        warnings.warn(
            f"load_filenames: left out {len(unmatched)} image files whose name gives no label "
            f"with {rule}:\n{listing}",
            UserWarning,
            stacklevel=2,
        )
    if mapping is not None:
        unknown = {}
        for file, code in zip(paths, labels, strict=True):
            if code not in mapping:
                unknown.setdefault(code, file)
        if unknown:
            listing = "\n".join(f"  {c!r} (e.g. {f!r})" for c, f in sorted(unknown.items()))
            raise InputError(
                f"load_filenames: mapping has no entry for {len(unknown)} codes read with "
                f"{rule}:\n{listing}\nAdd them to mapping, or check prefix_length / pattern."
            )
        labels = [mapping[code] for code in labels]
    return _finish(paths, labels, on_bad_file=on_bad_file, source=f"load_filenames({folder!r})")


__all__ = ["load_csv", "load_filenames", "load_folder"]
