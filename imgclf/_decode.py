"""Decoding image files inside ``tf.data``.

TensorFlow's own decoders are fast and release the GIL, so plain 8-bit JPEG
and PNG files (nearly every real dataset) decode in the TensorFlow graph.
Everything else goes through Pillow in a ``tf.numpy_function``: CMYK JPEG,
JPEG with an EXIF rotation, 16-bit / palette / grey+alpha PNG, BMP, GIF (first
frame), TIFF, WebP. Both decoders hand the same thing to the rest of the
pipeline: float32 pixels in 0-255 with 1 (grey), 2 (grey+alpha), 3 (RGB) or 4
(RGBA) channels, which :func:`finish` flattens onto white and converts to the
network's channels with the same operations whichever decoder ran.

Which decoder a file needs is decided by the scan (:mod:`imgclf._scan`), which
also makes sure that decoder accepts the file (:func:`pillow_problem` for
Pillow's). Should a file still fail while it streams (changed on disk since),
:func:`failing_files` finds which.
"""

from __future__ import annotations

import contextlib
import io
import os
import stat
import warnings

import numpy as np

from ._files import open_binary, special_problem

# Which decoder a file needs (``imgclf._scan.FileInfo.decoder``).
TF_JPEG, TF_PNG, PILLOW = 0, 1, 2


# ------------------------------------------------------ pixel conversions
# The one place images change channels or size, for arrays and files alike.
def resize(tf, images, size):
    """Resize ``(h, w, c)`` or ``(b, h, w, c)`` float images to ``size`` (bilinear,
    antialiased when shrinking)."""
    return tf.image.resize(images, size, method="bilinear", antialias=True)


def convert(tf, batch, size, channels: int):
    """Give a float32 batch ``(b, h, w, 1 or 3)`` ``channels`` and ``size``
    (``None``: keep the size).

    Grey from RGB uses ``tf.image.rgb_to_grayscale``'s weights; RGB from grey
    repeats the channel.
    """
    if batch.shape[-1] == 1 and channels == 3:
        batch = tf.image.grayscale_to_rgb(batch)
    elif batch.shape[-1] == 3 and channels == 1:
        batch = tf.image.rgb_to_grayscale(batch)
    if size is not None and tuple(batch.shape[1:3]) != tuple(size):
        batch = resize(tf, batch, size)
    return batch


# ----------------------------------------------------------------- decoders
def _pillow_image(path, draft: bool = False):
    """Open, decode and convert one file with Pillow: ``(image, mode)`` where
    ``mode`` is the 16-bit / float mode to scale, or None for an 8-bit image.

    ``draft`` lets libjpeg decode JPEGs at 1/8 scale: every marker and every
    coefficient is still read (what can fail), but the pixels cost a fraction.
    """
    from PIL import Image, ImageOps

    if isinstance(path, np.ndarray):  # tf.numpy_function passes a 0-d array
        path = path.item()
    if isinstance(path, bytes):
        path = os.fsdecode(path)
    # Only a regular file is opened (a FIFO would block, a device never end);
    # an image held in memory (an upload to ``imgclf serve``) is read as it is.
    opened = contextlib.nullcontext(path) if isinstance(path, io.BytesIO) else open_binary(path)
    with opened as f, Image.open(f) as im:
        im.seek(0)  # the first frame of an animation
        if draft and im.format == "JPEG":
            im.draft(im.mode, (max(1, im.width // 8), max(1, im.height // 8)))
        im = ImageOps.exif_transpose(im)
        mode = im.mode
        if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
            # 16-bit grey (Pillow opens 16-bit PNGs as "I" or "I;16"), or float.
            im.load()
            return im, mode
        if mode in ("1", "L"):
            target = "L"
        elif mode in ("LA", "La"):
            target = "LA"
        elif mode in ("RGBA", "RGBa", "PA") or (mode == "P" and "transparency" in im.info):
            target = "RGBA"
        else:  # RGB, P, CMYK, YCbCr, LAB, HSV
            target = "RGB"
        return im.convert(target), None


def pillow_pixels(path) -> np.ndarray:
    """Decode one file with Pillow to float32 ``(h, w, c)`` in 0-255, ``c`` in 1-4.

    EXIF orientation is applied; 16-bit images are scaled to 0-255; palette
    and CMYK images become RGB (RGBA when they carry transparency). Alpha is
    left for :func:`finish` so both decoders flatten it the same way.
    """
    im, mode = _pillow_image(path)
    if mode == "F":
        return np.clip(np.asarray(im, dtype=np.float32), 0, 255)[..., None]
    if mode is not None:
        array = np.asarray(im, dtype=np.float32) / 257.0
        return np.clip(array, 0, 255)[..., None]
    array = np.asarray(im, dtype=np.float32)
    return array[..., None] if array.ndim == 2 else array


def pixels_from_memory(data: bytes) -> np.ndarray:
    """:func:`pillow_pixels` of an image file's bytes held in memory."""
    return pillow_pixels(io.BytesIO(data))


def pillow_problem(path) -> str | None:
    """None if :func:`pillow_pixels` decodes ``path``, else Pillow's error as text.

    Runs the same steps (JPEGs at 1/8 scale), so a file it passes is one
    training can read.
    """
    try:
        with warnings.catch_warnings():
            # Pillow warns about damaged metadata it reads past; the pixels decide.
            warnings.simplefilter("ignore")
            _pillow_image(path, draft=True)
    except Exception as exc:  # noqa: BLE001 -- any decoder failure makes the file bad
        return f"{exc}" or type(exc).__name__
    return None


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
    # The channel count is only known per file: convert a batch of one.
    c = tf.shape(image)[-1]
    image = tf.ensure_shape(image, (None, None, None))

    def as_rgb():
        return convert(tf, tf.ensure_shape(image, (None, None, 1))[None], None, 3)[0]

    def as_grey():
        return convert(tf, tf.ensure_shape(image, (None, None, 3))[None], None, 1)[0]

    wrong = tf.not_equal(c, channels)
    image = tf.cond(wrong, as_rgb if channels == 3 else as_grey, lambda: image)
    image = tf.ensure_shape(image, (None, None, channels))
    hw = tf.shape(image)[:2]
    same = tf.reduce_all(tf.equal(hw, tf.constant(size, tf.int32)))
    image = tf.cond(same, lambda: image, lambda: resize(tf, image, size))
    image.set_shape((*size, channels))
    return image


def decode_fns(tf, infos, channels: int, size):
    """Return ``(per_image, per_batch, spec)`` for ``tf.data``, built for the
    files described by ``infos`` (their :class:`FileInfo`).

    ``per_image(path, kind)`` reads and decodes one file (``kind`` is its
    ``decoder``) into a tensor matching ``spec``. ``per_batch`` is None when
    that already is float32 at ``size`` with ``channels``; otherwise it turns a
    stacked batch of them into that.

    When every file is a plain JPEG / PNG with the network's channels and no
    alpha (nearly every dataset), the per-image graph is just read and
    decode, to uint8, and the batch is cast to float32 (and, when all files
    share one size other than ``size``, resized) in one operation: batching
    uint8 moves a quarter of the bytes. The general graph, with per-image
    conditionals, costs about a quarter of the throughput.
    """
    kinds = sorted({f.decoder for f in infos})
    plain = all(
        f.decoder in (TF_JPEG, TF_PNG) and f.channels == channels and not f.alpha for f in infos
    )
    sizes = {tuple(f.size) for f in infos}
    want = channels if plain else 0  # 0: the file's own channels, converted in finish

    def jpeg(path):
        data = tf.io.read_file(path)
        # INTEGER_ACCURATE is libjpeg's default, the method Pillow uses too.
        return tf.io.decode_jpeg(data, channels=want, dct_method="INTEGER_ACCURATE")

    def png(path):
        return tf.io.decode_png(tf.io.read_file(path), channels=want)

    def pillow(path):
        image = tf.numpy_function(pillow_pixels, [path], tf.float32, stateful=False)
        return tf.ensure_shape(image, (None, None, None))

    table = {TF_JPEG: jpeg, TF_PNG: png, PILLOW: pillow}

    def read(path, kind):
        if len(kinds) == 1:
            return table[kinds[0]](path)
        # Branch index in `kinds` order; the kind codes are small ints.
        position = tf.constant([kinds.index(k) if k in kinds else 0 for k in range(3)])
        dtype = tf.uint8 if plain else tf.float32
        return tf.switch_case(
            tf.gather(position, kind),
            [lambda f=table[k]: tf.cast(f(path), dtype) for k in kinds],
        )

    if not plain:

        def general(path, kind):
            return finish(tf, tf.cast(read(path, kind), tf.float32), channels, size)

        return general, None, tf.TensorSpec((*size, channels), tf.float32)

    if len(sizes) == 1:
        (shared,) = sizes

        def same_size(path, kind):
            image = read(path, kind)
            image.set_shape((*shared, channels))
            return image

        def batch_tail(batch):
            batch = tf.cast(batch, tf.float32)
            if shared != tuple(size):
                batch = resize(tf, batch, size)
            batch.set_shape((None, *size, channels))
            return batch

        return same_size, batch_tail, tf.TensorSpec((*shared, channels), tf.uint8)

    def mixed_sizes(path, kind):
        image = tf.cast(read(path, kind), tf.float32)
        image = resize(tf, image, size)
        image.set_shape((*size, channels))
        return image

    return mixed_sizes, None, tf.TensorSpec((*size, channels), tf.float32)


class SpecialFileError(ValueError):
    """A file to decode is no longer a regular file (a FIFO, a device...)."""


def check_regular(names: np.ndarray, index: np.ndarray) -> np.ndarray:
    """``index``, once every ``names[index]`` is found to be a regular file (or
    missing: TensorFlow's reader reports that itself); raises
    :class:`SpecialFileError` otherwise. Run in ``tf.numpy_function`` before
    TensorFlow opens the files by name, which would block on a FIFO."""
    for i in index:
        try:
            mode = os.stat(names[i]).st_mode
        except OSError:
            continue
        if not stat.S_ISREG(mode):
            raise SpecialFileError(f"{names[i]!r} {special_problem(names[i])}")
    return index


def failing_files(tf, paths, infos, channels: int, size) -> list[int]:
    """Positions of the files that fail to decode with the pipeline's own
    graph (decoded in parallel, each on its own, errors dropped). A path
    that is no longer a regular file fails without being opened."""
    special = {i for i, p in enumerate(paths) if special_problem(p) is not None}
    if special:
        keep = [i for i in range(len(paths)) if i not in special]
        rest = failing_files(tf, [paths[i] for i in keep], [infos[i] for i in keep], channels, size)
        return sorted(special | {keep[i] for i in rest})
    if not len(paths):
        return []
    per_image, _, _ = decode_fns(tf, infos, channels, size)
    paths_t = tf.constant(np.asarray(paths, dtype=object).astype(str))
    kinds_t = tf.constant(np.array([f.decoder for f in infos], dtype=np.int32))

    def one(i):
        image = per_image(tf.gather(paths_t, i), tf.gather(kinds_t, i))
        # A value computed from the pixels, so the decoding cannot be pruned.
        return i, tf.reduce_max(tf.cast(image, tf.float32))

    ds = tf.data.Dataset.range(len(paths)).map(one, num_parallel_calls=tf.data.AUTOTUNE)
    decoded = {int(i) for i, _ in ds.ignore_errors().as_numpy_iterator()}
    return [i for i in range(len(paths)) if i not in decoded]
