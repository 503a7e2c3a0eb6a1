"""The digests imgclf keys its caches by: of bytes, and of a network's weights.

Short BLAKE2b digests (16 bytes): they tell apart cache entries and the
states of a network, not adversaries (see :mod:`imgclf._featcache`).
"""

from __future__ import annotations

import hashlib

import numpy as np

#: Bytes of every digest here.
DIGEST_SIZE = 16


def short_digest(data: bytes) -> bytes:
    """The digest of ``data``."""
    return hashlib.blake2b(data, digest_size=DIGEST_SIZE).digest()


def hash_arrays(h, arrays) -> None:
    """Feed ``arrays`` into the hash ``h``, in order: each one's dtype, shape
    and bytes."""
    for w in arrays:
        w = np.ascontiguousarray(w)
        h.update(f"{w.dtype.str}{w.shape}".encode())
        h.update(w.tobytes())


def weights_digest(model) -> bytes:
    """Digest of every weight of ``model`` (values, shapes, dtypes, in order)."""
    h = hashlib.blake2b(digest_size=DIGEST_SIZE)
    hash_arrays(h, (w.numpy() for w in model.weights))
    return h.digest()


__all__ = ["DIGEST_SIZE", "short_digest", "hash_arrays", "weights_digest"]
