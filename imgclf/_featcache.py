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
Each file is a 64-byte header (magic, entry format, feature length, both
keys and a digest of the header and the features) followed by the features
as little-endian float32. Nothing read is trusted until checked: a file is
used only if it is a regular file of the expected size (a FIFO or a device
at an entry's path is refused without blocking or reading from it), its
header names exactly this network and image, the feature length is the one
the backbone produces, the digest matches and every feature is finite. A
renamed, damaged, foreign or planted file is recomputed and replaced, and
each fit warns once (:meth:`FeatureStore.report`) naming the folder and how
many entries were replaced. (The digest is a checksum, not a signature: it
catches damage and files written by anything else, not someone who rewrites
entries knowing the format -- who could as well rewrite the images.)

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

from ._digests import hash_arrays, short_digest
from ._files import FileRefusedError, file_stamp, identity_bytes, read_regular
from ._persist import atomic_write
from .exceptions import FeatureCacheWarning

#: Bump when the folder layout or anything that changes the features without
#: changing the keys (decoding, resizing) changes: old folders are then ignored.
FORMAT = 1
#: The entry format in each file's header: entries of another one (format 1
#: had no digest) are foreign, recomputed and replaced in place.
ENTRY_FORMAT = 2
_MAGIC = b"IMGCLFFT"
# magic, entry format, length, network key, image key, digest
_HEADER = struct.Struct("<8sII16s16s16s")
_SUFFIX = ".f32"
#: The longest feature vector read when the backbone's is not known (4 MiB).
MAX_FEATURES = 1 << 20


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


def _entry_digest(length: int, network: bytes, image: bytes, payload: bytes) -> bytes:
    """The digest an entry's header carries: of the rest of the header and the features."""
    h = hashlib.blake2b(digest_size=16, person=b"imgclf-entry")
    h.update(struct.pack("<II", ENTRY_FORMAT, length))
    h.update(network)
    h.update(image)
    h.update(payload)
    return h.digest()


def network_key(identity: dict, weights) -> bytes:
    """Digest of a feature extractor: ``identity`` (JSON-able facts: backbone,
    input spec, versions) and ``weights`` (its arrays, in order, with their
    shapes and dtypes)."""
    h = hashlib.blake2b(digest_size=16)
    h.update(f"imgclf-features-v{FORMAT}".encode())
    h.update(json.dumps(identity, sort_keys=True, default=repr).encode())
    hash_arrays(h, weights)
    return h.digest()


def array_keys(array: np.ndarray) -> list[bytes]:
    """One key per row of ``array``: its dtype, shape and bytes."""
    head = f"array {array.dtype.str} {array.shape[1:]}".encode()
    return [short_digest(head + np.ascontiguousarray(row).tobytes()) for row in array]


def path_keys(paths) -> list[bytes | None]:
    """One key per file: absolute path, size and modification time (None for a
    file that cannot be stat'ed: it is computed and never stored)."""
    keys = []
    for p in paths:
        stamp = file_stamp(str(p))
        keys.append(
            None if stamp is None else short_digest(b"path " + identity_bytes(str(p), stamp))
        )
    return keys


class FeatureStore:
    """The cached features of one network, in ``root``'s sub-folder for it.

    Open with :meth:`open` (or :meth:`reader`). Problems never raise: an
    unusable folder warns once per store (a :class:`FeatureCacheWarning`
    naming the folder and the fix) and the entries concerned are treated as
    missing (reads) or not stored (writes). Damaged or foreign entries are
    counted; :meth:`report` warns about them once, after they were replaced.

    ``length``, when given, is the feature length the network produces: an
    entry of any other length is foreign.
    """

    def __init__(self, folder: str, network: bytes, length: int | None = None):
        self.folder = folder
        self.network = network
        self.length = None if length is None else int(length)
        self.writable = True
        self._warned: set[str] = set()
        self._damaged: set[bytes] = set()  # keys of entries found unusable...
        self._replaced: set[bytes] = set()  # ...and those of them written again

    @classmethod
    def open(cls, root: str, network: bytes, length: int | None = None) -> FeatureStore | None:
        """The store for ``network`` (features of ``length``) under ``root``, or
        None (with a warning) if the folder cannot be created."""
        store = cls.reader(root, network, length)
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
    def reader(cls, root: str, network: bytes, length: int | None = None) -> FeatureStore:
        """The store for ``network`` under ``root``, to read (nothing is created:
        a missing folder has no entries)."""
        folder = os.path.join(root, f"imgclf-features-v{FORMAT}", network.hex())
        return cls(folder, network, length)

    def _warn(self, kind: str, message: str) -> None:
        if kind not in self._warned:
            self._warned.add(kind)
            warnings.warn(message, FeatureCacheWarning, stacklevel=3)

    def _path(self, key: bytes) -> str:
        return os.path.join(self.folder, key.hex() + _SUFFIX)

    def get(self, keys) -> tuple[list[np.ndarray | None], int]:
        """The stored features of each key (None where missing or unusable), and
        the feature length: the store's ``length``, else the one found (0 if
        none; without a ``length``, entries must agree with the first found)."""
        out: list[np.ndarray | None] = []
        length = self.length or 0
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
        longest = MAX_FEATURES if self.length is None else self.length
        try:
            # A regular file only (a FIFO would block), read no further than
            # the largest entry this store can hold.
            data = read_regular(path, _HEADER.size + 4 * longest)
        except FileNotFoundError:
            return None
        except FileRefusedError:
            return self._foreign(key)
        except OSError as exc:
            self._warn(
                "read",
                f"could not read the feature cache in {self.folder!r} ({exc}); the features "
                "concerned are computed again. Check the folder's permissions.",
            )
            return None
        if len(data) < _HEADER.size:
            return self._foreign(key)
        magic, version, length, network, image, digest = _HEADER.unpack_from(data)
        payload = data[_HEADER.size :]
        if (
            magic != _MAGIC
            or version != ENTRY_FORMAT
            or network != self.network
            or image != key
            or (self.length is not None and length != self.length)
            or len(payload) != 4 * length
            or digest != _entry_digest(length, network, image, payload)
        ):
            return self._foreign(key)
        features = np.frombuffer(payload, dtype="<f4").astype(np.float32)
        if not np.isfinite(features).all():  # never stored: written by someone else
            return self._foreign(key)
        return features

    def _foreign(self, key: bytes) -> None:
        self._damaged.add(key)
        return None

    def put(self, keys, features: np.ndarray) -> None:
        """Store ``features[i]`` under ``keys[i]`` (None keys are skipped, and
        so are rows that are not finite or not of the store's ``length``)."""
        if not self.writable:
            return
        features = np.ascontiguousarray(features, dtype="<f4")
        for key, row in zip(keys, features, strict=True):
            if key is None or not np.isfinite(row).all():
                continue
            if self.length is not None and len(row) != self.length:
                continue
            try:
                self._write(key, row)
            except IsADirectoryError:  # a folder at this entry's path: left alone
                continue
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
            if key in self._damaged:
                self._replaced.add(key)

    def _write(self, key: bytes, row: np.ndarray) -> None:
        payload = row.tobytes()
        digest = _entry_digest(len(row), self.network, key, payload)
        header = _HEADER.pack(_MAGIC, ENTRY_FORMAT, len(row), self.network, key, digest)
        # Renamed only once complete: a reader sees the old file, the new one
        # or none, never part of one; whatever was at the path (a damaged
        # entry, a FIFO, a link) is replaced, not written through. Not synced:
        # a lost entry is recomputed.
        atomic_write(
            self._path(key), lambda f: f.write(header + payload), prefix=".tmp-", sync=False
        )

    def report(self) -> None:
        """Warn once about the damaged or foreign entries met since the last
        report: how many, how many were replaced, and the folder. Call at the
        end of a fit's (or a prediction's) use of the store."""
        found, replaced = len(self._damaged), len(self._replaced & self._damaged)
        self._damaged.clear()
        self._replaced.clear()
        if not found:
            return
        entries = "entry" if found == 1 else "entries"
        warnings.warn(
            f"the feature cache in {self.folder!r} held {found} {entries} this imgclf did not "
            "write or that are damaged (wrong checksum, length or values, or not a regular "
            f"file); their features were computed again and {replaced} of the {found} "
            "replaced. Deleting the folder clears the cache.",
            FeatureCacheWarning,
            stacklevel=2,
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
