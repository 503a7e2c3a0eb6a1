"""A reader for PyTorch's legacy ``.pth`` files that runs no code from the file.

``torch.save`` (before PyTorch 1.6, or with ``_use_new_zipfile_serialization=False``)
writes five pickles one after another: a magic number, a protocol version, a
dictionary describing the machine, the object itself (here a state dict: an
``OrderedDict`` of tensors, each pickled as a call of
``torch._utils._rebuild_tensor_v2`` on a storage named by a persistent id), and
the list of storage keys. Then comes each storage in that order, as an 8-byte
little-endian element count followed by its raw little-endian data.

A pickle may name any importable function and call it. The unpickler here
allows only the handful of names a state dict needs, each mapped to a local
function that merely records what it is given; any other name (``os.system``,
``builtins.eval``...) stops the read before anything is called. The file's
SHA-256 is checked against a pinned digest before the first byte is unpickled.
"""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import zipfile
from collections import OrderedDict
from typing import NamedTuple

import numpy as np

from .exceptions import InputError

_MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
_PROTOCOL_VERSION = 1001

#: torch storage class -> element type of its data in the file.
_STORAGE_DTYPES = {
    "FloatStorage": "<f4",
    "DoubleStorage": "<f8",
    "HalfStorage": "<f2",
    "LongStorage": "<i8",
    "IntStorage": "<i4",
    "ShortStorage": "<i2",
    "CharStorage": "i1",
    "ByteStorage": "u1",
    "BoolStorage": "?",
}


class UnsafeFileError(InputError):
    """A file names a Python object the reader does not allow (it would run code)."""


class _StorageType(NamedTuple):
    name: str
    dtype: str


class _Storage(NamedTuple):
    key: str
    dtype: str
    size: int


class _TensorRef(NamedTuple):
    storage: _Storage
    offset: int
    shape: tuple
    stride: tuple


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False, *rest):
    """Stands in for ``torch._utils._rebuild_tensor_v2``: records the view only
    (the storage's data comes after the pickle)."""
    if not isinstance(storage, _Storage):
        raise InputError("a tensor in the file is not built on a storage")
    ints = (storage_offset, *size, *stride)
    if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in ints):
        raise InputError("a tensor in the file has a non-integer shape, stride or offset")
    if len(size) != len(stride):
        raise InputError("a tensor in the file has a stride of another rank than its shape")
    return _TensorRef(storage, storage_offset, tuple(size), tuple(stride))


def _allowed() -> dict:
    names = {
        ("collections", "OrderedDict"): OrderedDict,
        ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    }
    for name, dtype in _STORAGE_DTYPES.items():
        names[("torch", name)] = _StorageType(name, dtype)
    return names


class _RestrictedUnpickler(pickle.Unpickler):
    """Allows only the names of :func:`_allowed`, and storages as persistent ids."""

    _ALLOWED = _allowed()

    def __init__(self, file, source: str):
        super().__init__(file)
        self.source = source
        self.storages: dict[str, _Storage] = {}

    def find_class(self, module, name):
        try:
            return self._ALLOWED[(module, name)]
        except KeyError:
            raise UnsafeFileError(
                f"{self.source} names {module}.{name}, which a file of weights never needs "
                "and which could run code: refused, nothing in the file was run. Reinstall "
                "the package that provides the file."
            ) from None

    def persistent_load(self, pid):
        # ('storage', storage type, key, location, element count[, view metadata])
        if (
            not isinstance(pid, tuple)
            or len(pid) not in (5, 6)
            or pid[0] != "storage"
            or not isinstance(pid[1], _StorageType)
            or not isinstance(pid[2], str)
            or not isinstance(pid[4], int)
            or (len(pid) == 6 and pid[5] is not None)
        ):
            raise InputError(f"{self.source} holds a persistent id {pid!r} that is not a storage")
        storage = _Storage(pid[2], pid[1].dtype, pid[4])
        known = self.storages.setdefault(storage.key, storage)
        if known != storage:
            raise InputError(f"{self.source} declares storage {storage.key!r} twice, differently")
        return known


def file_sha256(path: str) -> str:
    """SHA-256 of the file at ``path``, as hex."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def read_state_dict(path, sha256: str | None) -> OrderedDict:
    """The tensors of a legacy PyTorch state-dict file, as NumPy arrays.

    Parameters
    ----------
    path : str or path-like
        The ``.pth`` file.
    sha256 : str or None
        The digest the file must have; checked on the very bytes then read.
        None skips the check (only for files made by the caller, e.g. tests).

    Returns
    -------
    OrderedDict
        Tensor name -> ``np.ndarray``, in the file's order.

    Raises
    ------
    InputError
        The digest differs, the file is not a legacy state dict, or it is
        damaged. :class:`UnsafeFileError` (an ``InputError``) if its pickle
        names anything but the few objects a state dict needs.
    """
    path = os.fspath(path)
    with open(path, "rb") as f:
        data = f.read()
    if sha256 is not None:
        got = hashlib.sha256(data).hexdigest()
        if got != sha256.lower():
            raise InputError(
                f"{path} has SHA-256 {got}, not the pinned {sha256}: the file was changed or "
                "damaged, and is not read. Reinstall the package that provides it "
                "(pip install --force-reinstall <package>)."
            )
    if zipfile.is_zipfile(io.BytesIO(data)):
        raise InputError(
            f"{path} is in PyTorch's zip-based format; imgclf reads only the legacy format "
            "its pinned weight packages use."
        )
    stream = io.BytesIO(data)
    try:
        return _read(stream, path, len(data))
    except InputError:
        raise
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError) as exc:
        raise InputError(
            f"{path} is not a readable PyTorch state-dict file ({type(exc).__name__}: {exc})."
        ) from exc


def _load_one(stream, path: str) -> tuple:
    unpickler = _RestrictedUnpickler(stream, path)
    return unpickler.load(), unpickler.storages


def _read(stream, path: str, total: int) -> OrderedDict:
    magic, _ = _load_one(stream, path)
    if magic != _MAGIC_NUMBER:
        raise InputError(f"{path} is not a PyTorch file (wrong magic number).")
    protocol, _ = _load_one(stream, path)
    if protocol != _PROTOCOL_VERSION:
        raise InputError(f"{path} has PyTorch protocol {protocol!r}, not {_PROTOCOL_VERSION}.")
    info, _ = _load_one(stream, path)
    if not isinstance(info, dict) or not info.get("little_endian", False):
        raise InputError(f"{path} was written on a big-endian machine; not supported.")
    state, storages = _load_one(stream, path)
    keys, _ = _load_one(stream, path)
    if not isinstance(state, dict) or not all(
        isinstance(k, str) and isinstance(v, _TensorRef) for k, v in state.items()
    ):
        raise InputError(f"{path} does not hold a state dict (names -> tensors).")
    if not isinstance(keys, list) or sorted(keys) != sorted(storages):
        raise InputError(f"{path}: its list of storages does not match its tensors.")
    arrays = {}
    for key in keys:
        storage = storages[key]
        head = stream.read(8)
        count = int.from_bytes(head, "little") if len(head) == 8 else -1
        if count != storage.size:
            raise InputError(f"{path} is truncated or damaged (storage {key!r}).")
        nbytes = count * np.dtype(storage.dtype).itemsize
        raw = stream.read(nbytes)
        if len(raw) != nbytes:
            raise InputError(f"{path} is truncated (storage {key!r}).")
        arrays[key] = np.frombuffer(raw, dtype=storage.dtype)
    if stream.tell() != total:
        raise InputError(f"{path} has {total - stream.tell()} unexpected bytes at its end.")
    return OrderedDict(
        (name, _view(arrays[ref.storage.key], ref, path)) for name, ref in state.items()
    )


def _view(storage: np.ndarray, ref: _TensorRef, path: str) -> np.ndarray:
    last = ref.offset + sum(
        (n - 1) * s for n, s in zip(ref.shape, ref.stride, strict=True) if n > 0
    )
    if any(n == 0 for n in ref.shape):
        return np.zeros(ref.shape, dtype=storage.dtype.newbyteorder("="))
    if last >= storage.size:
        raise InputError(f"{path}: a tensor reaches past the end of its storage.")
    item = storage.itemsize
    view = np.lib.stride_tricks.as_strided(
        storage[ref.offset :],
        shape=ref.shape,
        strides=tuple(s * item for s in ref.stride),
        writeable=False,
    )
    return np.array(view, dtype=storage.dtype.newbyteorder("="))


__all__ = ["UnsafeFileError", "file_sha256", "read_state_dict"]
