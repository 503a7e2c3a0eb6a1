"""Reading image files: a cheap scan that finds bad files and picks a decoder,
and the two decoders that run inside ``tf.data``.

TensorFlow's own decoders are fast and release the GIL, so plain 8-bit JPEG
and PNG files (nearly every real dataset) decode in the TensorFlow graph.
Everything else goes through Pillow in a ``tf.numpy_function``: CMYK JPEG,
JPEG with an EXIF rotation, 16-bit / palette / grey+alpha PNG, BMP, GIF (first
frame), TIFF, WebP. Both decoders hand the same thing to the rest of the
pipeline: float32 pixels in 0-255 with 1 (grey), 2 (grey+alpha), 3 (RGB) or 4
(RGBA) channels, which :func:`finish` flattens onto white and converts to the
network's channels with the same formulas whichever decoder ran.

The scan reads each file's header and its last few bytes (Pillow's
``Image.open`` does not decode pixels), so it finds empty files, text saved
under an image extension, images over the pixel limit and truncated JPEG /
PNG / GIF files before any training starts. Results are cached per file
(keyed on path, size and modification time), so cross-validation and grid
search scan each file once.
"""

from __future__ import annotations

import os
import threading
import warnings
from dataclasses import dataclass

import numpy as np

# Which decoder a file needs.
TF_JPEG, TF_PNG, PILLOW = 0, 1, 2

IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".jpe", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp"}
)

# Pillow modes whose pixels are grey; everything else is treated as colour.
_GREY_MODES = frozenset({"1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"})
_PNG_END = b"IEND\xaeB`\x82"
_JPEG_END = b"\xff\xd9"
_GIF_END = b";"


@dataclass(frozen=True)
class FileInfo:
    """What the scan learnt about one file.

    ``decoder`` is ``TF_JPEG``, ``TF_PNG`` or ``PILLOW`` for a good file;
    ``problem`` is a sentence saying what is wrong with a bad one (then
    ``decoder`` is -1).
    """

    decoder: int
    channels: int
    problem: str | None = None


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


def _fully_decodes(path: str) -> str | None:
    """Decode with Pillow; return the error as text, or None if the image is whole."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            im.load()
    except Exception as exc:  # noqa: BLE001 -- any decoder failure makes the file bad
        return f"cannot be decoded ({exc})"
    return None


def inspect_file(path: str) -> FileInfo:
    """Scan one file: decide its decoder and channels, or say why it is bad."""
    from PIL import Image, UnidentifiedImageError

    try:
        size = os.path.getsize(path)
    except FileNotFoundError:
        return _bad("does not exist")
    except OSError as exc:
        return _bad(f"cannot be read ({exc.strerror or exc})")
    if os.path.isdir(path):
        return _bad("is a folder, not an image file")
    if size == 0:
        return _bad("is empty (0 bytes)")
    limit = max_pixels()
    try:
        with open(path, "rb") as f:
            head = f.read(32)
            f.seek(max(0, size - 16))
            tail = f.read()
            f.seek(0)
            with warnings.catch_warnings():
                # The limit is checked below against the same number, as an
                # error for every file rather than a warning for some.
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                with Image.open(f) as im:
                    fmt, mode, (width, height) = im.format, im.mode, im.size
                    orientation = im.getexif().get(0x0112, 1) if fmt == "JPEG" else 1
    except UnidentifiedImageError:
        return _bad(
            f"is not an image ({size} bytes that no image format recognises; "
            "a text or other file saved with an image extension?)"
        )
    except Image.DecompressionBombError as exc:
        return _bad(f"is too large to decode safely ({exc})")
    except Exception as exc:  # noqa: BLE001 -- a broken header, whatever the format
        return _bad(f"has a broken header ({exc})")
    if width * height > limit:
        return _bad(
            f"has {width} x {height} = {width * height:,} pixels, over the limit of "
            f"{limit:,} (a decompression bomb?); raise PIL.Image.MAX_IMAGE_PIXELS if it is genuine"
        )
    if width == 0 or height == 0:
        return _bad(f"has no pixels ({width} x {height})")

    # A cut-off download or copy loses the end marker. Files with extra bytes
    # after it are legal, so a missing marker triggers a full decode to decide.
    end_marker = {"JPEG": _JPEG_END, "MPO": _JPEG_END, "PNG": _PNG_END, "GIF": _GIF_END}.get(fmt)
    if end_marker is not None and end_marker not in tail:
        problem = _fully_decodes(path)
        if problem is not None:
            return _bad(f"is truncated or corrupt: {problem}")

    channels = 1 if mode in _GREY_MODES else 3
    if fmt in ("JPEG", "MPO") and mode in ("L", "RGB") and orientation in (None, 1):
        return FileInfo(TF_JPEG, channels)
    # Byte 24 of a PNG is the bit depth; TensorFlow's PNG decoder is used for
    # 8-bit grey, RGB and RGBA only (palette and grey+alpha go through Pillow
    # so transparency is handled one way).
    if fmt == "PNG" and mode in ("L", "RGB", "RGBA") and head[24:25] == b"\x08":
        return FileInfo(TF_PNG, channels)
    return FileInfo(PILLOW, channels)


# path -> ((size, mtime_ns), FileInfo). Bounded so a long session cannot grow
# it without limit; cleared wholesale when full (a rescan is cheap).
_SCAN_CACHE: dict[str, tuple[tuple[int, int], FileInfo]] = {}
_SCAN_CACHE_MAX = 2_000_000
_SCAN_LOCK = threading.Lock()


def _stat_key(path: str) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_size, st.st_mtime_ns)


def _inspect_cached(path: str) -> FileInfo:
    key = _stat_key(path)
    if key is not None:
        hit = _SCAN_CACHE.get(path)
        if hit is not None and hit[0] == key:
            return hit[1]
    info = inspect_file(path)
    if key is not None:
        with _SCAN_LOCK:
            if len(_SCAN_CACHE) >= _SCAN_CACHE_MAX:
                _SCAN_CACHE.clear()
            _SCAN_CACHE[path] = (key, info)
    return info


def scan_files(paths) -> list[FileInfo]:
    """Scan every path (threads: the work is mostly waiting on the disk)."""
    paths = [str(p) for p in paths]
    if len(paths) < 64:
        return [_inspect_cached(p) for p in paths]
    from concurrent.futures import ThreadPoolExecutor

    workers = min(8, (os.cpu_count() or 2) * 2)
    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(_inspect_cached, paths, chunksize=256))


def clear_scan_cache() -> None:
    """Forget every scanned file (they are rescanned on next use)."""
    with _SCAN_LOCK:
        _SCAN_CACHE.clear()


# ----------------------------------------------------------------- decoders
def pillow_pixels(path) -> np.ndarray:
    """Decode one file with Pillow to float32 ``(h, w, c)`` in 0-255, ``c`` in 1-4.

    EXIF orientation is applied; 16-bit images are scaled to 0-255; palette
    and CMYK images become RGB (RGBA when they carry transparency). Alpha is
    left for :func:`finish` so both decoders flatten it the same way.
    """
    from PIL import Image, ImageOps

    if isinstance(path, bytes):
        path = os.fsdecode(path)
    with Image.open(path) as im:
        im.seek(0)  # the first frame of an animation
        im = ImageOps.exif_transpose(im)
        mode = im.mode
        if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
            # 16-bit grey (Pillow opens 16-bit PNGs as "I" or "I;16").
            array = np.asarray(im, dtype=np.float32) / 257.0
            return np.clip(array, 0, 255)[..., None]
        if mode == "F":
            return np.clip(np.asarray(im, dtype=np.float32), 0, 255)[..., None]
        if mode in ("1", "L"):
            target = "L"
        elif mode in ("LA", "La"):
            target = "LA"
        elif mode in ("RGBA", "RGBa", "PA") or (mode == "P" and "transparency" in im.info):
            target = "RGBA"
        else:  # RGB, P, CMYK, YCbCr, LAB, HSV
            target = "RGB"
        array = np.asarray(im.convert(target), dtype=np.float32)
    return array[..., None] if array.ndim == 2 else array


def finish(tf, image, channels: int, size):
    """Flatten alpha onto white, convert to ``channels`` and resize to ``size``.

    ``image`` is float32 ``(h, w, c)`` in 0-255 with ``c`` in 1-4, from either
    decoder. Grey from RGB uses ``tf.image.rgb_to_grayscale``'s weights; RGB
    from grey repeats the channel.
    """
    c = tf.shape(image)[-1]

    def over_white():
        alpha = image[..., -1:] / 255.0
        return image[..., :-1] * alpha + 255.0 * (1.0 - alpha)

    image = tf.cond(tf.equal(c % 2, 0), over_white, lambda: image)
    c = tf.shape(image)[-1]
    if channels == 3:
        image = tf.cond(tf.equal(c, 1), lambda: tf.tile(image, [1, 1, 3]), lambda: image)
    else:
        weights = tf.constant([0.2989, 0.5870, 0.1140], tf.float32)
        image = tf.cond(
            tf.equal(c, 3),
            lambda: tf.reduce_sum(image * weights, axis=-1, keepdims=True),
            lambda: image,
        )
    image = tf.ensure_shape(image, (None, None, channels))
    hw = tf.shape(image)[:2]
    same = tf.reduce_all(tf.equal(hw, tf.constant(size, tf.int32)))
    image = tf.cond(
        same,
        lambda: image,
        lambda: tf.image.resize(image, size, method="bilinear", antialias=True),
    )
    image.set_shape((*size, channels))
    return image


def decode_fn(tf, kinds_present, channels: int, size):
    """Return ``f(path, kind) -> image`` for ``tf.data``: the decoders the data need,
    chosen per file by ``kind`` (``TF_JPEG``, ``TF_PNG`` or ``PILLOW``)."""

    def jpeg(path):
        data = tf.io.read_file(path)
        # INTEGER_ACCURATE is libjpeg's default, the method Pillow uses too.
        image = tf.io.decode_jpeg(data, channels=0, dct_method="INTEGER_ACCURATE")
        return tf.cast(image, tf.float32)

    def png(path):
        return tf.cast(tf.io.decode_png(tf.io.read_file(path), channels=0), tf.float32)

    def pillow(path):
        image = tf.numpy_function(pillow_pixels, [path], tf.float32, stateful=False)
        return tf.ensure_shape(image, (None, None, None))

    table = {TF_JPEG: jpeg, TF_PNG: png, PILLOW: pillow}
    kinds = sorted(set(int(k) for k in kinds_present))

    def decode(path, kind):
        if len(kinds) == 1:
            image = table[kinds[0]](path)
        else:
            # Branch index in `kinds` order; the kind codes are small ints.
            position = tf.constant([kinds.index(k) if k in kinds else 0 for k in range(3)])
            image = tf.switch_case(
                tf.gather(position, kind), [lambda f=table[k]: f(path) for k in kinds]
            )
        return finish(tf, image, channels, size)

    return decode
