"""Opening a user's file: only a regular file, and never more of it than asked.

A path the library is given, or finds in a folder, may name something that is
not a regular file: a named pipe (FIFO), whose ``open`` blocks until some
other process writes to it; a character device such as ``/dev/zero``, which
reads without end; a socket or a folder. Every open of such a path goes
through :func:`open_regular`, which opens without blocking (``O_NONBLOCK``),
then checks what it opened with ``fstat`` -- the same file descriptor, so the
path cannot be swapped for something else between the check and the read --
and refuses anything but a regular file. :func:`read_regular` also refuses a
file over a size limit before reading, and never reads more than the limit.

The errors are :class:`OSError` subclasses, so callers that already treat an
unreadable file as bad need no new ``except`` clause; their message is a
phrase about the file (``"is a named pipe (FIFO), not a regular file"``),
ready to follow the file's name.
"""

from __future__ import annotations

import io
import os
import stat

# Opened without blocking (a FIFO's open waits for a writer otherwise); on a
# regular file the flag changes nothing. Not close-on-exec'd by accident.
_FLAGS = (
    os.O_RDONLY
    | getattr(os, "O_NONBLOCK", 0)
    | getattr(os, "O_BINARY", 0)
    | getattr(os, "O_CLOEXEC", 0)
)


class FileRefusedError(OSError):
    """A file the library will not read; ``problem`` says why, as a phrase
    to follow the file's name (``"is a named pipe (FIFO), not a regular file"``)."""

    def __init__(self, path, problem: str):
        super().__init__(f"{os.fspath(path)!r} {problem}")
        self.path = os.fspath(path)
        self.problem = problem


class NotRegularFileError(FileRefusedError):
    """The path names a FIFO, a device, a socket or a folder, not a regular file."""


class FileTooLargeError(FileRefusedError):
    """The file holds more bytes than the reader allows."""


def _too_large(path, size: int, max_bytes: int) -> FileTooLargeError:
    return FileTooLargeError(path, f"holds {size:,} bytes, over the limit of {max_bytes:,}")


def kind_of(mode: int) -> str:
    """What a file of ``st_mode`` ``mode`` is, as a phrase (``"a named pipe (FIFO)"``)."""
    if stat.S_ISREG(mode):
        return "a regular file"
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a named pipe (FIFO)"
    if stat.S_ISCHR(mode):
        return "a character device"
    if stat.S_ISBLK(mode):
        return "a block device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def not_regular_problem(mode: int) -> str:
    """The phrase a refused file's message carries: ``"is a named pipe (FIFO),
    not a regular file"``."""
    return f"is {kind_of(mode)}, not a regular file"


def open_regular(path) -> tuple[int, os.stat_result]:
    """Open ``path`` for reading if it is a regular file: ``(fd, fstat result)``.

    Never blocks (a FIFO is opened with ``O_NONBLOCK``, then refused). The
    caller closes ``fd``.

    Raises
    ------
    NotRegularFileError
        ``path`` is a FIFO, a device, a socket or a folder.
    OSError
        ``path`` cannot be opened (missing, no permission...).
    """
    try:
        fd = os.open(os.fspath(path), _FLAGS)
    except IsADirectoryError:  # Windows refuses to open a folder at all
        raise NotRegularFileError(path, not_regular_problem(stat.S_IFDIR)) from None
    try:
        st = os.fstat(fd)
    except BaseException:
        os.close(fd)
        raise
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise NotRegularFileError(path, not_regular_problem(st.st_mode))
    return fd, st


def open_binary(path, max_bytes: int | None = None) -> io.BufferedReader:
    """``open(path, "rb")`` for a regular file only (see :func:`open_regular`),
    refusing one over ``max_bytes`` (:class:`FileTooLargeError`)."""
    fd, st = open_regular(path)
    if max_bytes is not None and st.st_size > max_bytes:
        os.close(fd)
        raise _too_large(path, st.st_size, max_bytes)
    return os.fdopen(fd, "rb")


def open_text(path, max_bytes: int | None = None, **kwargs) -> io.TextIOWrapper:
    """``open(path, "r", **kwargs)`` for a regular file of at most ``max_bytes``."""
    return io.TextIOWrapper(open_binary(path, max_bytes), **kwargs)


def read_regular(path, max_bytes: int) -> bytes:
    """The whole of the regular file ``path``, of at most ``max_bytes`` bytes.

    The size is checked before reading, and the read stops one byte past the
    limit whatever the file does meanwhile (one growing while it is read is
    refused too).

    Raises
    ------
    NotRegularFileError
        ``path`` is not a regular file.
    FileTooLargeError
        ``path`` holds more than ``max_bytes`` bytes.
    OSError
        ``path`` cannot be opened or read.
    """
    fd, st = open_regular(path)
    try:
        if st.st_size > max_bytes:
            raise _too_large(path, st.st_size, max_bytes)
        parts, left = [], max_bytes + 1
        while left > 0:
            part = os.read(fd, min(left, 1 << 20))
            if not part:
                break
            parts.append(part)
            left -= len(part)
    finally:
        os.close(fd)
    data = b"".join(parts)
    if len(data) > max_bytes:
        raise FileTooLargeError(path, f"grew past the limit of {max_bytes:,} bytes while read")
    return data


def special_problem(path) -> str | None:
    """Why ``path`` must not be opened (``"is a named pipe (FIFO), not a regular
    file"``), or None for a regular file and for a path that cannot be
    stat'ed (missing...: opening it fails without blocking). One ``stat``,
    for a check before a path goes to code that opens it by name
    (TensorFlow's ``read_file``)."""
    try:
        mode = os.stat(os.fspath(path)).st_mode
    except (OSError, ValueError):
        return None
    return None if stat.S_ISREG(mode) else not_regular_problem(mode)


# ------------------------------------------------------------ identity
def stat_stamp(st: os.stat_result) -> tuple[int, int]:
    """``(size, mtime_ns)`` of a ``stat`` result: what says a file at a path is
    unchanged since (the scan cache, the pixel and feature caches)."""
    return (st.st_size, st.st_mtime_ns)


def file_stamp(path) -> tuple[int, int] | None:
    """:func:`stat_stamp` of the file at ``path``, or None if it cannot be stat'ed."""
    try:
        return stat_stamp(os.stat(os.fspath(path)))
    except (OSError, ValueError):
        return None


def file_identity(path) -> tuple[str, int, int] | None:
    """``(absolute path, size, mtime_ns)``: the one file at ``path`` as it is
    now, or None if it cannot be stat'ed."""
    stamp = file_stamp(path)
    return None if stamp is None else (os.path.abspath(os.fspath(path)), *stamp)


def identity_bytes(path, stamp: tuple[int, int] | None = None) -> bytes:
    """:func:`file_identity` as bytes for a digest: the absolute path, then
    the ``repr`` of its :func:`file_stamp` (``stamp`` if given; ``None`` for
    a file that cannot be stat'ed)."""
    if stamp is None:
        stamp = file_stamp(path)
    return os.fsencode(os.path.abspath(os.fspath(path))) + repr(stamp).encode()


__all__ = [
    "FileRefusedError",
    "FileTooLargeError",
    "NotRegularFileError",
    "file_identity",
    "file_stamp",
    "identity_bytes",
    "kind_of",
    "not_regular_problem",
    "open_binary",
    "open_regular",
    "open_text",
    "read_regular",
    "special_problem",
    "stat_stamp",
]
