"""Reading a saved model's file within bounds, for :func:`imgclf._persist.load`.

A model file is untrusted input. Before anything is allocated for it:

- the path must name a regular file (a FIFO, a device such as ``/dev/zero``
  or a folder is refused without being read), of at most
  :data:`MAX_FILE_BYTES`;
- the zip's central directory (its index) may declare at most
  :data:`MAX_MEMBERS` members in at most :data:`MAX_INDEX_BYTES`;
- every member must be stored or deflated (the two methods ``clf.save``
  writes), unencrypted, and declare a size within its kind's limit:
  :data:`MAX_MANIFEST_BYTES` for ``imgclf.json``, :data:`MAX_ARRAY_BYTES` for
  the ``.npy`` arrays (all of them together), and for the network :func:`network_limit` (the file's
  own size times :data:`NETWORK_RATIO`, at least :data:`NETWORK_FLOOR`, at
  most :data:`MAX_NETWORK_BYTES`); other members are never read;
- members are read in chunks, counting the bytes inflated, and refused as
  soon as they pass the limit (the declared size is not trusted alone);
- an ``.npy`` header must describe exactly the bytes that follow it.

Every refusal is a :class:`~imgclf.exceptions.ModelFileError` naming the file
and the member.
"""

from __future__ import annotations

import io
import os
import re
import struct
import zipfile

import numpy as np

from ._files import NotRegularFileError, open_regular
from ._values import BadValue
from .exceptions import ModelFileError

KIB, MIB, GIB = 1 << 10, 1 << 20, 1 << 30
#: The largest model file read (the largest backbones save to well under 1 GiB).
MAX_FILE_BYTES = 8 * GIB
#: ``imgclf.json``: parameters and fitted attributes as text (a 10,000-epoch
#: ``history_`` takes about 1 MiB).
MAX_MANIFEST_BYTES = 4 * MIB
#: The ``.npy`` members together (``classes_``, ``feature_names_in_``...).
MAX_ARRAY_BYTES = 64 * MIB
#: The network member inflates to at most this many times the whole file's
#: size. ``clf.save`` stores it uncompressed (ratio 1); Keras weights deflate
#: by a few percent when an archive is re-zipped.
NETWORK_RATIO = 8
#: ... and to at least this much, whatever the file's size.
NETWORK_FLOOR = 64 * MIB
#: ... and never to more than this.
MAX_NETWORK_BYTES = 8 * GIB
#: Members in the zip's index (``clf.save`` writes 2 to about 10).
MAX_MEMBERS = 1000
#: Bytes of the zip's index (about 100 a member).
MAX_INDEX_BYTES = 1 * MIB
#: The compression methods ``clf.save`` writes.
COMPRESSIONS = {zipfile.ZIP_STORED: "stored", zipfile.ZIP_DEFLATED: "deflated"}
_CHUNK = 1 * MIB


def _size(n: int) -> str:
    for unit, scale in (("GiB", GIB), ("MiB", MIB), ("KiB", KIB)):
        if n >= scale:
            return f"{n / scale:.3g} {unit}"
    return f"{n} bytes"


def open_model_file(path: str):
    """``(binary file, size)`` of the regular file at ``path``, opened without
    blocking (a FIFO would wait for a writer); anything else is refused."""
    try:
        fd, info = open_regular(path)
    except FileNotFoundError:
        raise FileNotFoundError(f"No saved model at {path!r}.") from None
    except NotRegularFileError as exc:
        if "folder" in exc.problem:
            raise ModelFileError(
                f"{path!r} is a folder; imgclf.load reads the file clf.save wrote."
            ) from None
        raise ModelFileError(
            f"{path!r} {exc.problem}: imgclf.load reads only the file clf.save wrote, and "
            "does not read from a stream."
        ) from None
    try:
        if info.st_size == 0:
            raise ModelFileError(f"{path!r} is empty: it is not a saved imgclf model.")
        if info.st_size > MAX_FILE_BYTES:
            raise ModelFileError(
                f"{path!r} is {_size(info.st_size)}, more than the {_size(MAX_FILE_BYTES)} "
                "imgclf.load reads: it is not a model clf.save wrote."
            )
        return os.fdopen(fd, "rb"), info.st_size
    except BaseException:
        os.close(fd)
        raise


def check_index(f, size: int, path: str) -> None:
    """Refuse a zip whose index declares more than :data:`MAX_MEMBERS`
    members or :data:`MAX_INDEX_BYTES` (``zipfile`` reads the whole index and
    makes an object per member before any other check can run). The end
    record is found the way ``zipfile`` finds it; a file without one is left
    to ``zipfile`` to refuse."""
    f.seek(max(0, size - (22 + 65535)))
    tail = f.read()
    start = len(tail) - 22
    if not (tail[start : start + 4] == b"PK\x05\x06" and tail[-2:] == b"\0\0"):
        start = tail.rfind(b"PK\x05\x06")
        if start < 0 or len(tail) - start < 22:
            return
    members, index_bytes = struct.unpack("<HI", tail[start + 10 : start + 16])
    end = size - len(tail) + start  # where the end record starts
    if end >= 76:  # a zip64 end record and its locator just before it
        f.seek(end - 76)
        record = f.read(76)
        if record[56:60] == b"PK\x06\x07" and record[:4] == b"PK\x06\x06":
            members, index_bytes = struct.unpack("<QQ", record[32:48])
    if members > MAX_MEMBERS or index_bytes > MAX_INDEX_BYTES:
        raise ModelFileError(
            f"{path!r} is not an imgclf model, or it is damaged: its zip index declares "
            f"{members:,} members in {_size(index_bytes)} (a saved model has a few, in under "
            f"{_size(MAX_INDEX_BYTES)})."
        )
    f.seek(0)


def network_limit(file_size: int) -> int:
    """The most bytes the network member of a ``file_size``-byte file may hold."""
    return min(MAX_NETWORK_BYTES, max(NETWORK_FLOOR, NETWORK_RATIO * file_size))


def limit_of(name: str, file_size: int, network: str) -> int:
    """The most bytes member ``name`` may inflate to (members that are not
    read are held to the manifest's limit)."""
    if name == network:
        return network_limit(file_size)
    if name.endswith(".npy"):
        return MAX_ARRAY_BYTES
    return MAX_MANIFEST_BYTES


def check_members(zf: zipfile.ZipFile, path: str, file_size: int, network: str) -> None:
    """Refuse encrypted members, other compression methods and declared sizes
    over the limits, before any member is read."""
    for info in zf.infolist():
        where = f"{path!r}: its part {info.filename!r}"
        if info.flag_bits & 0x1:
            raise ModelFileError(
                f"{where} is encrypted; clf.save writes no encrypted parts. It is not a file "
                "clf.save wrote: save the model again."
            )
        if info.compress_type not in COMPRESSIONS:
            raise ModelFileError(
                f"{where} uses compression method {info.compress_type}; clf.save writes only "
                "stored or deflated parts. Save the model again (a tool that re-compressed "
                "the file may have changed it)."
            )
        limit = limit_of(info.filename, file_size, network)
        if info.file_size > limit:
            raise ModelFileError(
                f"{where} declares {_size(info.file_size)} uncompressed, more than the "
                f"{_size(limit)} imgclf.load allows for it in a file of {_size(file_size)}: it "
                "is not a file clf.save wrote (a decompression bomb?)."
            )


def copy_member(zf: zipfile.ZipFile, name: str, limit: int, out, path: str) -> int:
    """Inflate member ``name`` into the binary file ``out`` in chunks,
    refusing it once more than ``limit`` bytes came out; the bytes copied."""
    total = 0
    with zf.open(name) as stream:
        while chunk := stream.read(_CHUNK):
            total += len(chunk)
            if total > limit:
                raise ModelFileError(
                    f"{path!r}: its part {name!r} inflates to more than {_size(limit)}, the "
                    "most imgclf.load allows for it: it is not a file clf.save wrote (a "
                    "decompression bomb?)."
                )
            out.write(chunk)
    return total


def read_member(zf: zipfile.ZipFile, name: str, limit: int, path: str) -> bytes:
    """Member ``name`` as bytes, read as :func:`copy_member` does."""
    buffer = io.BytesIO()
    copy_member(zf, name, limit, buffer, path)
    return buffer.getvalue()


def read_npy(data: bytes, name: str) -> np.ndarray:
    """The array of an ``.npy`` member, without pickle, once its header is
    checked to describe exactly the bytes that follow it (NumPy would
    allocate the declared shape first). :class:`BadValue` says what is wrong."""
    stream = io.BytesIO(data)
    version = np.lib.format.read_magic(stream)
    if version == (1, 0):
        shape, _, dtype = np.lib.format.read_array_header_1_0(stream)
    elif version == (2, 0):
        shape, _, dtype = np.lib.format.read_array_header_2_0(stream)
    else:
        raise BadValue(f"{name}: .npy version {version} is not one NumPy writes here")
    if dtype.hasobject:
        raise BadValue(f"{name}: an array of Python objects (only pickle could read it)")
    count = 1
    for n in shape:
        count *= int(n)
    if count * dtype.itemsize != len(data) - stream.tell():
        raise BadValue(
            f"{name}: its header declares shape {shape} of {dtype}, "
            f"{count * dtype.itemsize:,} bytes, but {len(data) - stream.tell():,} follow"
        )
    return np.load(io.BytesIO(data), allow_pickle=False)


class ArrayReader:
    """``read(name)``: the array of member ``name`` (``arrays/<n>.npy``) as
    :func:`read_npy` reads it, for :func:`imgclf._values.decoder`. All the
    arrays a manifest names together may take :data:`MAX_ARRAY_BYTES` (one
    array named many times counts each time)."""

    def __init__(self, zf: zipfile.ZipFile, path: str):
        self.zf, self.path, self.left = zf, path, MAX_ARRAY_BYTES

    def __call__(self, name) -> np.ndarray:
        if not isinstance(name, str) or not re.fullmatch(r"arrays/\d{1,6}\.npy", name):
            raise BadValue(f"{str(name)[:80]!r} is not the name of a stored array")
        data = read_member(self.zf, name, self.left, self.path)
        self.left -= len(data)
        return read_npy(data, name)


__all__ = [
    "ArrayReader",
    "MAX_ARRAY_BYTES",
    "MAX_FILE_BYTES",
    "MAX_MANIFEST_BYTES",
    "MAX_MEMBERS",
    "check_index",
    "check_members",
    "copy_member",
    "network_limit",
    "open_model_file",
    "read_member",
    "read_npy",
]
