"""The file scan: which image files can be used, and how each is decoded.

One pass over the files, before any training starts, reads each one's header
(without Pillow for JPEG and PNG: several times faster), which finds empty
files, text saved under an image extension and images over the pixel limit,
and chooses a decoder (:class:`FileInfo`). It then makes sure that decoder
accepts the file, so training never meets a file it cannot decode:

* a plain JPEG or PNG, decoded by TensorFlow, is checked without decoding its
  pixels (:mod:`imgclf._verify`: every JPEG marker, every PNG chunk, CRC and
  the inflated image data), which costs about what reading its header did;
* every other file, and one TensorFlow's decoder would refuse, is decoded
  once with Pillow (JPEGs at 1/8 scale); if Pillow can, Pillow decodes it in
  training, otherwise the file is bad.

Results are cached per file (keyed on path, size and modification time), so
cross-validation and grid search check each file once.

This module also owns the two other decisions about files: which files in a
folder are images (:func:`list_image_files`) and what happens to bad ones
(:func:`screen`, the one place the ``on_bad_file`` policy is applied).
"""

from __future__ import annotations

import contextlib
import os
import struct
import threading
import warnings
from typing import NamedTuple

import numpy as np

import imgclf._decode as decode
import imgclf._verify as verify

from ._decode import PILLOW, TF_JPEG, TF_PNG
from ._files import FileRefusedError, file_stamp, open_binary, open_regular, stat_stamp

IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".jpe", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp"}
)

# Pillow modes whose pixels are grey; everything else is treated as colour.
_GREY_MODES = frozenset({"1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"})


class FileInfo(NamedTuple):
    """What the scan learnt about one file.

    ``decoder`` is ``TF_JPEG``, ``TF_PNG`` or ``PILLOW`` for a good file;
    ``problem`` is a sentence saying what is wrong with a bad one (then
    ``decoder`` is -1). ``channels`` is 1 for grey files, 3 for colour.
    (A named tuple rather than a frozen dataclass: one is built per file,
    and at tens of thousands of files its cheaper construction shows.)
    """

    decoder: int
    channels: int
    problem: str | None = None
    size: tuple[int, int] = (0, 0)  # (height, width)
    alpha: bool = False  # known to carry transparency (PNG header)


def max_pixels() -> int:
    """The pixel limit: Pillow's ``Image.MAX_IMAGE_PIXELS`` (about 89 million).

    Set ``PIL.Image.MAX_IMAGE_PIXELS`` to change it; files with more pixels
    than that are treated as bad files (a decompression bomb).
    """
    from PIL import Image

    limit = Image.MAX_IMAGE_PIXELS
    return int(limit) if limit else 2**62


def _bad(problem: str) -> FileInfo:
    return FileInfo(decoder=-1, channels=0, problem=problem)


def _exif_orientation(exif: bytes) -> int | None:
    """The orientation tag (0x0112) of an EXIF block (after ``Exif\\0\\0``); 1 when
    absent, None when the block cannot be read here."""
    try:
        endian = {b"II": "<", b"MM": ">"}[exif[:2]]
        (offset,) = struct.unpack(endian + "I", exif[4:8])
        (count,) = struct.unpack(endian + "H", exif[offset : offset + 2])
        for k in range(count):
            entry = offset + 2 + 12 * k
            (tag,) = struct.unpack(endian + "H", exif[entry : entry + 2])
            if tag == 0x0112:
                return struct.unpack(endian + "H", exif[entry + 8 : entry + 10])[0]
    except (KeyError, struct.error):
        return None
    return 1


def _jpeg_header(data: bytes, read) -> tuple[int, int, int, int, bool] | None:
    """``(width, height, decoder, channels, alpha)`` from a JPEG's markers, or None for
    anything unusual (Pillow then decides). ``read(n)`` supplies bytes past ``data``."""
    pos, orientation = 2, 1
    while True:
        if pos + 10 > len(data):
            more = read(max(4096, pos + 10 - len(data)))
            if not more:
                return None
            data += more
            continue
        if data[pos] != 0xFF:
            return None
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker == 0x01 or 0xD0 <= marker <= 0xD8:  # markers without a length
            pos += 2
            continue
        (length,) = struct.unpack(">H", data[pos + 2 : pos + 4])
        if marker == 0xE1:
            end = pos + 2 + length
            if end > len(data):
                data += read(end - len(data))
            if data[pos + 4 : pos + 10] == b"Exif\x00\x00":
                orientation = _exif_orientation(data[pos + 10 : end])
                if orientation is None:
                    return None
        elif marker in (0xC0, 0xC1, 0xC2):  # baseline, extended, progressive
            precision, height, width, components = struct.unpack(">BHHB", data[pos + 4 : pos + 10])
            if precision != 8 or components not in (1, 3, 4):
                return None
            channels = 1 if components == 1 else 3
            if components == 4 or orientation != 1:
                return width, height, PILLOW, channels, False  # CMYK, or EXIF rotation
            return width, height, TF_JPEG, channels, False
        elif 0xC3 <= marker <= 0xCF or marker == 0xDA:
            return None  # lossless / arithmetic coding, or scan data before a frame
        pos += 2 + length


def _png_header(data: bytes) -> tuple[int, int, int, int, bool] | None:
    if len(data) < 26 or data[12:16] != b"IHDR":
        return None
    width, height, depth, colour = struct.unpack(">IIBB", data[16:26])
    if colour not in (0, 2, 3, 4, 6) or depth not in (1, 2, 4, 8, 16):
        return None
    channels = 1 if colour in (0, 4) else 3
    # TensorFlow decodes 8-bit grey, RGB and RGBA; palette, grey+alpha and
    # 16-bit go through Pillow so each case is handled one way.
    decoder = TF_PNG if depth == 8 and colour in (0, 2, 6) else PILLOW
    return width, height, decoder, channels, colour in (4, 6)


def _fast_header(data: bytes, read) -> tuple | None:
    """Parse JPEG and PNG headers directly (several times faster than Pillow's
    ``Image.open``, which matters at tens of thousands of files)."""
    if data[:3] == b"\xff\xd8\xff":
        found = _jpeg_header(data, read)
        return None if found is None else ("JPEG", *found)
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        found = _png_header(data)
        return None if found is None else ("PNG", *found)
    return None


def _pillow_header(path: str, size: int) -> tuple | FileInfo:
    """``(format, width, height, decoder, channels, alpha)`` from Pillow, or a bad FileInfo."""
    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            # The limit is checked by the caller against the same number, as an
            # error for every file rather than a warning for some.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with open_binary(path) as f, Image.open(f) as im:
                fmt, mode, (width, height) = im.format, im.mode, im.size
    except UnidentifiedImageError:
        return _bad(
            f"is not an image ({size} bytes that no image format recognises; "
            "a text or other file saved with an image extension?)"
        )
    except Image.DecompressionBombError as exc:
        return _bad(f"is too large to decode safely ({exc})")
    except FileRefusedError as exc:  # replaced since it was opened
        return _bad(exc.problem)
    except Exception as exc:  # noqa: BLE001 -- a broken header, whatever the format
        return _bad(f"has a broken header ({exc})")
    return fmt, width, height, PILLOW, 1 if mode in _GREY_MODES else 3, "A" in mode


def inspect_file(path: str) -> FileInfo:
    """Scan one file: decide its decoder and channels, or say why it is bad."""
    return _inspect(path, max_pixels())[1]


def _inspect(path: str, limit: int) -> tuple[tuple[int, int] | None, FileInfo]:
    """``(cache key, FileInfo)`` for one file, with one open and one ``fstat``.

    Raw ``os`` calls, not ``open()``: a buffered file object costs more system
    calls and objects than reading a few kilobytes needs, and at tens of
    thousands of files the scan is what a user waits for before training.
    """
    try:
        # Only a regular file is read: opened without blocking and checked on
        # the open descriptor, so a FIFO named like an image cannot hang the scan.
        fd, st = open_regular(path)
    except FileNotFoundError:
        return None, _bad("does not exist")
    except FileRefusedError as exc:
        return file_stamp(path), _bad(exc.problem)
    except OSError as exc:
        return None, _bad(f"cannot be read ({exc.strerror or exc})")
    try:
        key = stat_stamp(st)
        size = st.st_size
        if size == 0:
            return key, _bad("is empty (0 bytes)")
        head = os.read(fd, 4096)
        found = _fast_header(head, lambda n: os.read(fd, n))
        # TensorFlow's decoders are checked on the whole file (most small
        # images are whole in the first read already).
        data = None
        if found is not None and found[3] in (TF_JPEG, TF_PNG):
            data = head if size <= len(head) else _read_all(fd, size)
    except OSError as exc:
        return None, _bad(f"cannot be read ({exc.strerror or exc})")
    finally:
        os.close(fd)
    return key, _check(path, size, found, data, limit)


def _read_all(fd: int, size: int) -> bytes:
    os.lseek(fd, 0, os.SEEK_SET)
    parts, left = [], size
    while left > 0:
        part = os.read(fd, left)
        if not part:
            break
        parts.append(part)
        left -= len(part)
    return b"".join(parts)


def _check(path: str, size: int, found, data: bytes | None, limit: int) -> FileInfo:
    """The verdict on one file, given its header (``found``, None if only
    Pillow can read it) and, for TensorFlow's decoders, its bytes."""
    if found is None:
        found = _pillow_header(path, size)
        if isinstance(found, FileInfo):
            return found
    fmt, width, height, decoder, channels, alpha = found
    if width * height > limit:
        return _bad(
            f"has {width} x {height} = {width * height:,} pixels, over the limit of "
            f"{limit:,} (a decompression bomb?); raise PIL.Image.MAX_IMAGE_PIXELS if it is genuine"
        )
    if width == 0 or height == 0:
        return _bad(f"has no pixels ({width} x {height})")
    if fmt in ("JPEG", "MPO") and size < verify.jpeg_least_bytes(width, height):
        return _bad(
            f"holds {size:,} bytes, too few for a JPEG of {width} x {height} pixels "
            f"(at least {verify.jpeg_least_bytes(width, height):,}): cut short or damaged"
        )
    refused = None
    if decoder in (TF_JPEG, TF_PNG):
        refused = (verify.jpeg_problem if decoder == TF_JPEG else verify.png_problem)(data)
        if refused is None:
            return FileInfo(decoder, channels, None, (height, width), alpha)
    # Pillow's files, and those TensorFlow's decoder would refuse (a PNG with
    # a bad CRC, say, which Pillow reads past): decode once with Pillow.
    problem = decode.pillow_problem(path)
    if problem is not None:
        why = f"{refused}; Pillow: {problem}" if refused else problem
        return _bad(f"cannot be decoded (a truncated or corrupt {fmt} file: {why})")
    return FileInfo(PILLOW, channels, None, (height, width), alpha)


# path -> ((size, mtime_ns), FileInfo). Bounded so a long session cannot grow
# it without limit; cleared wholesale when full (a rescan is cheap).
_SCAN_CACHE: dict[str, tuple[tuple[int, int], FileInfo]] = {}
_SCAN_CACHE_MAX = 2_000_000
_SCAN_LOCK = threading.Lock()


def scan_files(paths) -> list[FileInfo]:
    """Scan every path; results are cached per path, size and modification time.

    A file seen before costs one ``stat``; a new one, one open and no separate
    ``stat``. One thread: the work is mostly Python holding the GIL, and a
    thread pool measured slower.
    """
    limit = max_pixels()
    cache = _SCAN_CACHE
    out, new = [], []
    for p in paths:
        p = str(p)
        hit = cache.get(p)
        if hit is not None and hit[0] == file_stamp(p):
            out.append(hit[1])
            continue
        key, info = _inspect(p, limit)
        out.append(info)
        if key is not None:
            new.append((p, (key, info)))
    if new:
        with _SCAN_LOCK:
            if len(cache) + len(new) > _SCAN_CACHE_MAX:
                cache.clear()
            cache.update(new)
    return out


def clear_scan_cache() -> None:
    """Forget every scanned file (they are rescanned on next use)."""
    with _SCAN_LOCK:
        _SCAN_CACHE.clear()


# ------------------------------------------------------------ image folders
def is_image_name(name: str) -> bool:
    """An image file name by its extension (any case); hidden files
    (``.DS_Store``, ``._resource`` forks) never are."""
    return not name.startswith(".") and os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


def list_image_files(folder: str, recursive: bool = True) -> list[str]:
    """Image files under ``folder``, sorted so the order is the same on every
    machine and file system. Hidden folders are not entered."""
    found = []
    if recursive:
        for dirpath, dirnames, filenames in os.walk(folder):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            found.extend(os.path.join(dirpath, f) for f in filenames if is_image_name(f))
    else:
        with os.scandir(folder) as entries:
            # Not only regular files: a FIFO or device named like an image is
            # listed, so the scan reports it, as os.walk's listing does.
            found = [e.path for e in entries if not e.is_dir() and is_image_name(e.name)]
    # Sorted by path components, so "a/x" < "a-b/x" as in a file browser, on any OS.
    start = len(os.path.join(folder, ""))
    return sorted(found, key=lambda p: p[start:].split(os.sep))


# -------------------------------------------------------------- bad files
#: Accepted values of every ``on_bad_file`` parameter, and what they mean.
ON_BAD_FILE = ("skip", "error")
ON_BAD_FILE_MEANING = (
    "'skip' (leave unreadable files out, with a warning naming them) or 'error' "
    "(raise, naming them)"
)

# Items (bad files, rows) listed in full in a message; more are counted.
LIST_AT_MOST = 20


def capped_lines(lines: list[str]) -> str:
    """``lines`` joined, the first :data:`LIST_AT_MOST` of them, then a count
    of the rest."""
    shown = list(lines[:LIST_AT_MOST])
    if len(lines) > LIST_AT_MOST:
        shown.append(f"  ... and {len(lines) - LIST_AT_MOST} more")
    return "\n".join(shown)


def check_on_bad_file(on_bad_file) -> None:
    """Raise :class:`~imgclf.exceptions.InputError` unless ``on_bad_file`` is valid."""
    from .exceptions import InputError

    if on_bad_file not in ON_BAD_FILE:
        raise InputError(f"on_bad_file={on_bad_file!r}: expected {ON_BAD_FILE_MEANING}.")


class Screened(NamedTuple):
    """The usable files of a :func:`screen`, in their original order."""

    paths: np.ndarray  # 1-D object array of str
    infos: list[FileInfo]
    keep: np.ndarray  # int positions of the kept files among those given


def describe_bad(bad: list[tuple[int | None, str, str]]) -> str:
    """One line per bad file ``(index, path, problem)``, at most
    :data:`LIST_AT_MOST`, then a count (an index of None is not shown)."""
    return capped_lines(
        [
            f"  - {path!r}{'' if i is None else f' (sample {i})'} {problem}"
            for i, path, problem in bad
        ]
    )


def screen(paths, *, on_bad_file: str, source: str, can_skip: bool = True) -> Screened:
    """Scan ``paths`` and apply the bad-file policy: the one place it is applied.

    ``on_bad_file="skip"`` leaves bad files out with one warning naming each;
    ``"error"`` raises :class:`~imgclf.exceptions.ImageFileError` naming each.
    So does a screen where no file is usable, and one with ``can_skip=False``
    (prediction owes one answer per file). ``source`` starts every message,
    e.g. ``"load_folder('data')"`` or ``"CNNClassifier.fit"``.
    """
    from .exceptions import ImageFileError

    check_on_bad_file(on_bad_file)
    paths = np.asarray(paths, dtype=object).reshape(-1)
    infos = scan_files(paths)
    bad = [
        (i, str(p), f.problem)
        for i, (p, f) in enumerate(zip(paths, infos, strict=True))
        if f.problem
    ]
    if not bad:
        return Screened(paths, infos, np.arange(len(paths)))
    n, total = len(bad), len(paths)
    if not can_skip or on_bad_file == "error" or n == total:
        if not can_skip:
            fix = (
                "Remove or fix them: one prediction is owed per file (imgclf.load_folder "
                "and friends leave such files out)."
            )
        elif n == total:
            fix = "None of the files can be used."
        else:
            fix = "Remove or fix them, or pass on_bad_file='skip' to leave them out."
        raise ImageFileError(
            f"{source}: {n} of {total} image files cannot be used:\n{describe_bad(bad)}\n{fix}"
        )
    warnings.warn(
        f"{source}: left out {n} of {total} image files that cannot be used "
        f"(on_bad_file='skip'):\n{describe_bad(bad)}",
        UserWarning,
        stacklevel=3,
    )
    keep = np.array([i for i, f in enumerate(infos) if not f.problem], dtype=np.intp)
    return Screened(paths[keep], [infos[i] for i in keep], keep)


@contextlib.contextmanager
def naming_bad_files(paths, infos, *, channels: int, size, source: str):
    """While files stream to the network (``fit``, ``predict``): turn a
    decoder error into :class:`~imgclf.exceptions.ImageFileError` naming the
    files that fail.

    The scan has made sure every file decodes, so this is for files changed
    on disk since. TensorFlow's error does not say which file it was reading;
    the files are decoded again (in parallel, only after an error) to find out.
    An error no file explains is raised as it was.
    """
    try:
        yield
    except Exception as exc:
        from ._backend import get_tf
        from .exceptions import ImageFileError

        tf = get_tf()
        if not isinstance(exc, tf.errors.OpError) or paths is None:
            raise
        failing = decode.failing_files(tf, paths, infos, channels, size)
        if not failing:
            raise
        bad = []
        with _SCAN_LOCK:
            for i in failing:
                _SCAN_CACHE.pop(str(paths[i]), None)  # checked afresh next time
        for i, info in zip(failing, scan_files([paths[i] for i in failing]), strict=True):
            bad.append((None, str(paths[i]), info.problem or "cannot be decoded any more"))
        raise ImageFileError(
            f"{source}: {len(bad)} image file(s) could not be decoded, though each was "
            f"checked before {source.rsplit('.', 1)[-1]} began; changed on disk since?\n"
            f"{describe_bad(bad)}\nRemove or fix them (the next call checks them again)."
        ) from exc
