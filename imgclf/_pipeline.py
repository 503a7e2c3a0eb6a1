"""Input pipelines: one place turns validated samples into what ``keras.Model.fit``
and ``predict`` consume.

* Arrays already at the network's size and channels go to Keras as NumPy
  arrays, untouched: exactly what a plain Keras user would pass, so there is no
  overhead to measure against.
* Arrays that need resizing or channel conversion, and file paths, go through
  ``tf.data``: shuffled indices (or paths), batched, converted, prefetched.
  Images are float32 in the network's raw input units throughout.
* File paths are streamed: only the shuffled order (integers) and the path
  strings are held; each batch is read, decoded (:mod:`imgclf._decode`),
  resized and prefetched in parallel while the previous one trains. With
  ``cache="memory"`` the files are decoded once into a uint8 array and then
  train exactly like in-memory images; with ``cache=<folder>`` they are
  decoded once into a ``.npy`` file there that later fits (other folds, other
  parameters) on the same files reuse, read back by memory map.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile

import numpy as np

import imgclf._decode as decode

from ._backend import get_tf
from ._files import identity_bytes, open_binary
from ._scan import scan_files
from ._validation import Images


def _needs_conversion(array: np.ndarray, size, channels: int) -> bool:
    return tuple(array.shape[1:3]) != tuple(size) or array.shape[-1] != channels


# ---------------------------------------------------------------- datasets
def _path_dataset(
    tf, paths, infos, order, size, channels, batch_size, labels=None, with_index=False, weights=None
):
    """Map a dataset of sample indices to batches of ``(images,)``, ``(images,
    labels)`` given ``labels`` (``(images, labels, weights)`` with ``weights``),
    or ``(indices, images)`` with ``with_index``;
    images float32 in 0-255.

    The indices are batched first and each batch is decoded by one map call
    (``tf.map_fn`` over its files), batches in parallel. Mapping image by image
    and batching afterwards, as ``image_dataset_from_directory`` does, pays
    tf.data's per-element cost on every file: measured here, that alone took
    as long as reading and decoding 64x64 JPEGs, and the batched map made a
    pass nearly twice as fast.
    """
    kinds = np.array([f.decoder for f in infos], dtype=np.int32)
    per_image, per_batch, spec = decode.decode_fns(tf, infos, channels, size)
    names = np.asarray(paths, dtype=object).astype(str)
    paths_t = tf.constant(names)
    kinds_t = tf.constant(kinds)

    def one(i):
        return per_image(tf.gather(paths_t, i), tf.gather(kinds_t, i))

    def load(idx):
        # TensorFlow opens files by name, and a FIFO put in a file's place
        # since the scan would block it: each batch's files are stat'ed first.
        idx = tf.numpy_function(lambda i: decode.check_regular(names, i), [idx], tf.int64)
        idx.set_shape((None,))
        images = tf.map_fn(one, idx, fn_output_signature=spec, parallel_iterations=16)
        return images if per_batch is None else per_batch(images)

    def batch(idx):
        if labels is None:
            return (idx, load(idx)) if with_index else (load(idx),)
        if weights is None:
            return load(idx), tf.gather(labels, idx)
        return load(idx), tf.gather(labels, idx), tf.gather(weights, idx)

    return order.batch(batch_size).map(
        batch, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True
    )


def _decode_all(tf, paths, infos, size, channels, batch_size, out: np.ndarray) -> np.ndarray:
    """Decode every file in order into ``out`` (uint8, rounded), batch by batch."""
    order = tf.data.Dataset.range(len(paths))
    ds = _path_dataset(
        tf, paths, infos, order, size, channels, max(batch_size, 64), with_index=True
    )
    for idx, batch in ds.prefetch(2):
        idx = idx.numpy()
        out[idx[0] : idx[-1] + 1] = np.clip(np.round(batch.numpy()), 0, 255).astype(np.uint8)
    return out


def _cache_file(folder, paths, size, channels) -> str:
    """A file name in ``folder`` naming exactly these files (path, size, mtime),
    this size and channels: changed files give a new name, never stale pixels."""
    digest = hashlib.sha256(f"imgclf-cache-v1 {tuple(size)} {channels}".encode())
    for p in paths:
        digest.update(identity_bytes(p))
    return os.path.join(os.fspath(folder), f"imgclf-{digest.hexdigest()[:24]}.npy")


def _cached_pixels(tf, cache, paths, infos, size, channels, batch_size) -> np.ndarray:
    shape = (len(paths), *size, channels)
    if cache == "memory":
        return _decode_all(tf, paths, infos, size, channels, batch_size, np.empty(shape, np.uint8))
    os.makedirs(cache, exist_ok=True)
    target = _cache_file(cache, paths, size, channels)
    pixels = _read_cached(target, shape)
    if pixels is None:
        # A new file of our own (never one planted under a guessable name).
        fd, partial = tempfile.mkstemp(
            prefix=os.path.basename(target) + ".", suffix=".partial", dir=os.fspath(cache)
        )
        os.close(fd)
        try:
            out = np.lib.format.open_memmap(partial, mode="w+", dtype=np.uint8, shape=shape)
            _decode_all(tf, paths, infos, size, channels, batch_size, out)
            out.flush()
            del out
            # Renamed only when complete: an interrupted fit leaves no half-filled cache.
            os.replace(partial, target)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(partial)
            raise
        pixels = _read_cached(target, shape)
        if pixels is None:  # replaced by something else at once: decode into memory
            out = np.empty(shape, np.uint8)
            pixels = _decode_all(tf, paths, infos, size, channels, batch_size, out)
    return pixels


def _read_cached(target: str, shape: tuple) -> np.ndarray | None:
    """The cached pixels at ``target`` (memory-mapped), or None when there is
    no usable file there: missing, not a regular file (a FIFO would block),
    not a ``.npy`` file, or not uint8 pixels of ``shape`` (then it is
    decoded again and replaced)."""
    fmt = np.lib.format
    try:
        with open_binary(target) as f:
            version = fmt.read_magic(f)
            read_header = fmt.read_array_header_1_0 if version == (1, 0) else None
            if read_header is None:
                read_header = fmt.read_array_header_2_0 if version == (2, 0) else None
            if read_header is None:
                return None
            found, fortran, dtype = read_header(f)
            if tuple(found) != tuple(shape) or fortran or dtype != np.uint8:
                return None
            # Mapped through the file checked above, not opened again by name.
            return np.memmap(f, dtype=np.uint8, mode="r", offset=f.tell(), shape=shape)
    except (OSError, ValueError, EOFError):
        return None


def _memmap_dataset(tf, pixels, y, order, batch_size, weights=None):
    """Batches gathered from a memory-mapped array: only the batch is read."""

    def gather(idx):
        idx = np.sort(idx)  # sequential reads; labels follow the same order
        if weights is None:
            return pixels[idx].astype(np.float32), y[idx]
        return pixels[idx].astype(np.float32), y[idx], weights[idx]

    types = (tf.float32, tf.as_dtype(y.dtype))
    if weights is not None:
        types = (*types, tf.float32)

    def load(idx):
        batch = tf.numpy_function(gather, [idx], types)
        batch[0].set_shape((None, *pixels.shape[1:]))
        batch[1].set_shape((None, *y.shape[1:]))
        if weights is not None:
            batch[2].set_shape((None,))
        return tuple(batch)

    return order.batch(batch_size).map(load, num_parallel_calls=tf.data.AUTOTUNE)


def make_dataset(
    images: Images,
    y: np.ndarray | None,
    *,
    size: tuple[int, int],
    channels: int,
    batch_size: int,
    shuffle: bool = False,
    seed: int | None = None,
    cache=None,
    sample_weight: np.ndarray | None = None,
) -> dict:
    """Return keyword arguments for ``model.fit`` / ``model.predict``.

    Either ``{"x": array, "y": y, "batch_size": ..., "shuffle": ...}`` (fast
    path for arrays that need no conversion; with ``"sample_weight"`` when
    given) or ``{"x": tf.data.Dataset}`` (whose batches then carry the
    weights: ``(images, labels, weights)``).
    ``cache`` (None, ``"memory"`` or a folder) applies to file paths with
    labels (training and validation data); prediction always streams.
    """
    if images.array is not None and not _needs_conversion(images.array, size, channels):
        kwargs = {"x": images.array, "batch_size": batch_size}
        if y is not None:
            kwargs.update(y=y, shuffle=shuffle)
            if sample_weight is not None:
                kwargs["sample_weight"] = sample_weight
        return kwargs

    tf = get_tf()
    n = len(images)
    if images.paths is not None:
        # Screened samples carry their scan; scanning here serves direct callers.
        infos = images.infos if images.infos is not None else scan_files(images.paths)
        if cache is not None and y is not None:
            pixels = _cached_pixels(tf, cache, images.paths, infos, size, channels, batch_size)
            if cache == "memory":
                kwargs = {"x": pixels, "y": y, "batch_size": batch_size, "shuffle": shuffle}
                if sample_weight is not None:
                    kwargs["sample_weight"] = sample_weight
                return kwargs
            order = tf.data.Dataset.range(n)
            if shuffle:
                order = order.shuffle(n, seed=seed, reshuffle_each_iteration=True)
            ds = _memmap_dataset(tf, pixels, y, order, batch_size, sample_weight)
            return {"x": ds.prefetch(tf.data.AUTOTUNE), "shuffle": False}

    order = tf.data.Dataset.range(n)
    if shuffle:
        order = order.shuffle(n, seed=seed, reshuffle_each_iteration=True)
    labels = None if y is None else tf.constant(y)
    weights = None if y is None or sample_weight is None else tf.constant(sample_weight, tf.float32)

    if images.array is not None:
        data = tf.constant(images.array)

        def load(idx):
            batch = tf.cast(tf.gather(data, idx), tf.float32)
            return decode.convert(tf, batch, size, channels)

        def batch(idx):
            if labels is None:
                return (load(idx),)
            if weights is None:
                return load(idx), tf.gather(labels, idx)
            return load(idx), tf.gather(labels, idx), tf.gather(weights, idx)

        ds = order.batch(batch_size).map(
            batch, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True
        )
    else:
        ds = _path_dataset(
            tf, images.paths, infos, order, size, channels, batch_size, labels, weights=weights
        )
    # shuffle=False: the dataset is already shuffled; Keras warns otherwise.
    return {"x": ds.prefetch(tf.data.AUTOTUNE), **({} if y is None else {"shuffle": False})}
