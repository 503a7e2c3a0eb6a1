"""Input pipelines: one place turns validated samples into what ``keras.Model.fit``
and ``predict`` consume.

* Arrays already at the network's size and channels go to Keras as NumPy
  arrays, untouched: exactly what a plain Keras user would pass, so there is no
  overhead to measure against.
* Arrays that need resizing or channel conversion, and file paths, go through
  ``tf.data``: shuffled indices (or paths), batched, converted, prefetched.
  Images are float32 in the network's raw input units throughout.
"""

from __future__ import annotations

import numpy as np

from ._backend import get_tf
from ._validation import Images


def _needs_conversion(array: np.ndarray, size, channels: int) -> bool:
    return tuple(array.shape[1:3]) != tuple(size) or array.shape[-1] != channels


def _convert_batch(tf, batch, size, channels):
    """Resize and fix channels of a float32 batch ``(b, h, w, c)``."""
    if batch.shape[-1] == 1 and channels == 3:
        batch = tf.image.grayscale_to_rgb(batch)
    elif batch.shape[-1] == 3 and channels == 1:
        batch = tf.image.rgb_to_grayscale(batch)
    if tuple(batch.shape[1:3]) != tuple(size):
        batch = tf.image.resize(batch, size, method="bilinear", antialias=True)
    return batch


def _decode_path(tf, path, size, channels):
    data = tf.io.read_file(path)
    image = tf.io.decode_image(data, channels=channels, expand_animations=False)
    image = tf.image.resize(tf.cast(image, tf.float32), size, method="bilinear", antialias=True)
    image.set_shape((*size, channels))
    return image


def infer_path_channels(paths, sample: int = 32) -> int:
    """1 if the first ``sample`` files are all grayscale, else 3."""
    from PIL import Image

    for path in paths[:sample]:
        try:
            with Image.open(path) as im:
                if im.mode not in ("1", "L", "LA", "I", "I;16", "F"):
                    return 3
        except OSError:
            continue
    return 1


def make_dataset(
    images: Images,
    y: np.ndarray | None,
    *,
    size: tuple[int, int],
    channels: int,
    batch_size: int,
    shuffle: bool = False,
    seed: int | None = None,
) -> dict:
    """Return keyword arguments for ``model.fit`` / ``model.predict``.

    Either ``{"x": array, "y": y, "batch_size": ..., "shuffle": ...}`` (fast
    path for arrays that need no conversion) or ``{"x": tf.data.Dataset}``.
    """
    if images.array is not None and not _needs_conversion(images.array, size, channels):
        kwargs = {"x": images.array, "batch_size": batch_size}
        if y is not None:
            kwargs.update(y=y, shuffle=shuffle)
        return kwargs

    tf = get_tf()
    n = len(images)
    order = tf.data.Dataset.range(n)
    if shuffle:
        order = order.shuffle(n, seed=seed, reshuffle_each_iteration=True)
    labels = None if y is None else tf.constant(y)

    if images.array is not None:
        data = tf.constant(images.array)

        def load(idx):
            batch = tf.cast(tf.gather(data, idx), tf.float32)
            return _convert_batch(tf, batch, size, channels)

        ds = order.batch(batch_size).map(
            lambda idx: (load(idx),) if labels is None else (load(idx), tf.gather(labels, idx)),
            num_parallel_calls=tf.data.AUTOTUNE,
            deterministic=True,
        )
    else:
        paths = tf.constant(images.paths.astype(str))
        ds = order.map(
            lambda i: (
                (_decode_path(tf, paths[i], size, channels),)
                if labels is None
                else (_decode_path(tf, paths[i], size, channels), labels[i])
            ),
            num_parallel_calls=tf.data.AUTOTUNE,
            deterministic=True,
        ).batch(batch_size)
    # shuffle=False: the dataset is already shuffled; Keras warns otherwise.
    return {"x": ds.prefetch(tf.data.AUTOTUNE), **({} if y is None else {"shuffle": False})}
