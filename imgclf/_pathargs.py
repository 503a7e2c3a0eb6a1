"""Checks on path arguments (a file to read or write, a folder to search),
run before anything is opened, so a bad one gets an error naming the
argument and the fix rather than the operating system's words about a
temporary file."""

from __future__ import annotations

import os

from .exceptions import InputError, InputTypeError, PathNotFoundError


def short_repr(value, limit: int = 80) -> str:
    """``repr(value)`` cut to ``limit`` characters: messages never print a
    whole array or a long string."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def as_path(value, what: str) -> str:
    """``value`` as a ``str`` path; ``what`` names the argument (``"load_csv:
    path"``) in the error raised for anything else."""
    if isinstance(value, (str, os.PathLike)):
        path = os.fspath(value)
        if isinstance(path, str):
            if not path:
                raise InputError(f"{what}='' is empty; give a file or folder path.")
            return path
    raise InputTypeError(
        f"{what}={short_repr(value)} ({type(value).__name__}): expected a path, a str or "
        "os.PathLike such as pathlib.Path."
    )


def check_output_file(value, what: str, example: str = "model.imgclf") -> str:
    """The path of a file about to be written: its folder must exist and it
    must not be a folder itself (``example`` is the file name suggested in
    one). Returns it as a ``str``."""
    path = as_path(value, what)
    target = os.path.abspath(path)
    folder = os.path.dirname(target)
    if os.path.isdir(target):
        raise InputError(
            f"{what}={path!r} is a folder; give a file name in it, e.g. "
            f"{os.path.join(path, example)!r}."
        )
    if not os.path.isdir(folder):
        state = "is a file, not a folder" if os.path.exists(folder) else "does not exist"
        raise PathNotFoundError(
            f"{what}={path!r}: the folder {folder!r} {state}. Create the folder first "
            "(os.makedirs(folder, exist_ok=True)), or check the path."
        )
    return path


__all__ = ["as_path", "check_output_file", "short_repr"]
