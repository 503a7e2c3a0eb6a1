"""A folder of backbone features, one small file per image, shared across fits.

:class:`~imgclf.TransferClassifier`'s ``memory`` parameter points here. The
frozen stage maps each training image to the frozen backbone's pooled
features; in a grid search the same images meet the same backbone in every
fold and candidate, so the features are stored once per image and read back
by later fits (in this process or another).

Layout::

    <memory>/imgclf-features-v1/<network key>/<image key>.f32

The network key digests everything the features depend on besides the image
(the backbone's architecture and every weight, the input size, channels and
pixel scaling, the library versions); the image key digests the image (an
array row's bytes, or a file's absolute path, size and modification time).
Each file is a 48-byte header (magic, format version, feature length and
both keys) followed by the features as little-endian float32: a file is
used only if its header names exactly this network and image, so a renamed,
damaged or foreign file is recomputed, never trusted.

Files are written under a temporary name in the same folder and renamed
over the target (``os.replace``, atomic on one file system), so processes
writing the same entries at once never expose a half-written file. Deleting
the folder clears the cache. Nothing here imports TensorFlow.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
import warnings

import numpy as np

from .persist import atomic_write
from .scan import stat_key

#: Bump when the file layout or anything that changes the features without
#: changing the keys (decoding, resizing) changes: old folders are then ignored.
FORMAT = 1
_MAGIC = b"IMGCLFFT"
_HEADER = struct.Struct("<8sII16s16s")  # magic, format, length, network, image
_SUFFIX = ".f32"


class FeatureCacheWarning(UserWarning):
    """The feature cache (``memory``) could not be used as asked; training goes
    on, computing the features it could not read or store."""


def is_memory(value) -> bool:
    """A ``joblib.Memory`` (anything with a ``location`` and a ``cache`` method)."""
    return hasattr(value, "location") and callable(getattr(value, "cache", None))


def location(memory) -> str | None:
    """The folder of ``memory`` (None, a path or a ``joblib.Memory``), or None
    for no cache (``memory=None``, or a ``joblib.Memory(location=None)``)."""
    if memory is None:
        return None
    if is_memory(memory):
        memory = memory.location
        if memory is None:
            return None
    return os.path.abspath(os.path.expanduser(os.fspath(memory)))


def _digest(data: bytes) -> bytes:
    return hashlib.blake2b(data, digest_size=16).digest()


def network_key(identity: dict, weights) -> bytes:
    """Digest of a feature extractor: ``identity`` (JSON-able facts: backbone,
    input spec, versions) and ``weights`` (its arrays, in order, with their
    shapes and dtypes)."""
    h = hashlib.blake2b(digest_size=16)
    h.update(f"imgclf-features-v{FORMAT}".encode())
    h.update(json.dumps(identity, sort_keys=True, default=repr).encode())
    for w in weights:
        w = np.ascontiguousarray(w)
        h.update(f"{w.dtype.str}{w.shape}".encode())
        h.update(w.tobytes())
    return h.digest()


def array_keys(array: np.ndarray) -> list[bytes]:
    """One key per row of ``array``: its dtype, shape and bytes."""
    head = f"array {array.dtype.str} {array.shape[1:]}".encode()
    return [_digest(head + np.ascontiguousarray(row).tobytes()) for row in array]


def path_keys(paths) -> list[bytes | None]:
    """One key per file: absolute path, size and modification time (None for a
    file that cannot be stat'ed: it is computed and never stored)."""
    keys = []
    for p in paths:
        stat = stat_key(str(p))
        name = os.fsencode(os.path.abspath(str(p)))
        keys.append(None if stat is None else _digest(b"path " + name + repr(stat).encode()))
    return keys


class FeatureStore:
    """The cached features of one network, in ``root``'s sub-folder for it.

    Open with :meth:`open`. Problems never raise: they warn once per store (a
    :class:`FeatureCacheWarning` naming the folder and the fix) and the
    entries concerned are treated as missing (reads) or not stored (writes).
    """

    def __init__(self, folder: str, network: bytes):
        self.folder = folder
        self.network = network
        self.writable = True
        self._warned: set[str] = set()

    @classmethod
    def open(cls, root: str, network: bytes) -> FeatureStore | None:
        """The store for ``network`` under ``root``, or None (with a warning)
        if the folder cannot be created."""
        store = cls.reader(root, network)
        try:
            os.makedirs(store.folder, exist_ok=True)
        except OSError as exc:
            warnings.warn(
                f"memory={root!r} cannot hold the feature cache ({exc}); training goes on "
                "without it, computing every feature. Pass a writable folder, or memory=None.",
                FeatureCacheWarning,
                stacklevel=2,
            )
            return None
        return store

    @classmethod
    def reader(cls, root: str, network: bytes) -> FeatureStore:
        """The store for ``network`` under ``root``, to read (nothing is created:
        a missing folder has no entries)."""
        return cls(os.path.join(root, f"imgclf-features-v{FORMAT}", network.hex()), network)

    def _warn(self, kind: str, message: str) -> None:
        if kind not in self._warned:
            self._warned.add(kind)
            warnings.warn(message, FeatureCacheWarning, stacklevel=2)

    def _path(self, key: bytes) -> str:
        return os.path.join(self.folder, key.hex() + _SUFFIX)

    def get(self, keys) -> tuple[list[np.ndarray | None], int]:
        """The stored features of each key (None where missing or unusable), and
        the feature length found (0 if none)."""
        out: list[np.ndarray | None] = []
        length = 0
        for key in keys:
            found = None if key is None else self._read(key)
            if found is not None and length and len(found) != length:
                found = self._foreign(key)
            if found is not None:
                length = len(found)
            out.append(found)
        return out, length

    def _read(self, key: bytes) -> np.ndarray | None:
        path = self._path(key)
        try:
            with open(path, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            return None
        except OSError as exc:
            self._warn(
                "read",
                f"could not read the feature cache in {self.folder!r} ({exc}); the features "
                "concerned are computed again. Check the folder's permissions.",
            )
            return None
        if len(data) < _HEADER.size:
            return self._foreign(key)
        magic, version, length, network, image = _HEADER.unpack_from(data)
        if (
            magic != _MAGIC
            or version != FORMAT
            or network != self.network
            or image != key
            or len(data) != _HEADER.size + 4 * length
        ):
            return self._foreign(key)
        return np.frombuffer(data, dtype="<f4", offset=_HEADER.size).astype(np.float32)

    def _foreign(self, key: bytes) -> None:
        self._warn(
            "foreign",
            f"the feature cache in {self.folder!r} holds files this imgclf did not write "
            "for these images (another version, or damaged); their features are computed "
            "again and the files replaced. Deleting the folder clears the cache.",
        )
        return None

    def put(self, keys, features: np.ndarray) -> None:
        """Store ``features[i]`` under ``keys[i]`` (None keys are skipped)."""
        if not self.writable:
            return
        features = np.ascontiguousarray(features, dtype="<f4")
        for key, row in zip(keys, features, strict=True):
            if key is None:
                continue
            try:
                self._write(key, row)
            except OSError as exc:
                self.writable = False
                self._warn(
                    "write",
                    f"could not write to the feature cache in {self.folder!r} ({exc}); "
                    "training goes on, and the features not stored will be computed again "
                    "by later fits. Free some space or fix the folder's permissions, or pass "
                    "memory=None.",
                )
                return

    def _write(self, key: bytes, row: np.ndarray) -> None:
        header = _HEADER.pack(_MAGIC, FORMAT, len(row), self.network, key)
        # Renamed only once complete: a reader sees the old file, the new one
        # or none, never part of one. Not synced: a lost entry is recomputed.
        atomic_write(
            self._path(key), lambda f: f.write(header + row.tobytes()), prefix=".tmp-", sync=False
        )


def bytes_per_image(length: int) -> int:
    """Size of one cached entry of ``length`` features (before the file system
    rounds it up to its block size, usually 4 KiB)."""
    return _HEADER.size + 4 * length


__all__ = [
    "FeatureCacheWarning",
    "FeatureStore",
    "array_keys",
    "bytes_per_image",
    "location",
    "network_key",
    "path_keys",
]
