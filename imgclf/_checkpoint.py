"""The ``checkpoint`` file: a fit's progress, written at the end of every epoch.

One ``.npz`` file (a zip of ``.npy`` members, stored uncompressed): the
network's weights at the end of the last epoch, the weights early stopping
would keep, the network at the start of the current stage (for estimators
training in stages), and a JSON header with the history so far, the
early-stopping and schedule state and two fingerprints: of the parameters
(callbacks, verbosity and the checkpoint path aside) and of the data. A fit
resumes from the file only when both match; Keras's ``BackupAndRestore``
does the same for plain Keras, and like it the file is removed once the fit
has ended normally (only if it is still the file this library wrote).

Every file is untrusted. Only a regular file is opened (a named pipe or a
device is never read), and nothing is read without a bound: the zip
directory, the header and every array are checked against limits (the
arrays against the shapes of the network they will be loaded into) before
they are read. Loading runs no code (no pickles). :func:`check_meta`
checks every field of the header; a file that fails is :class:`Unusable`.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import stat
import struct
import zipfile

import numpy as np

from ._files import NotRegularFileError, identity_bytes, open_regular, stat_stamp
from ._persist import atomic_write

FORMAT = "imgclf-checkpoint-1"
#: Parameters that do not change what is learnt, so a fit may resume with
#: other values of them.
IGNORED_PARAMS = frozenset({"callbacks", "verbose", "checkpoint"})
#: The largest JSON header read (the history of thousands of epochs is a
#: few hundred kilobytes)...
META_LIMIT = 16 * 2**20
#: ...the largest zip directory, and the most members (three copies of a
#: network's weight tensors and the header).
DIRECTORY_LIMIT = 8 * 2**20
MEMBERS_LIMIT = 30_000
#: The header fields, all required.
META_FIELDS = frozenset(
    {"format", "params", "data", "seed", "stage", "stage_epochs", "complete", "epochs"}
    | {"history", "best", "best_epoch", "callbacks"}
)
#: The largest seed ``resolve_seed`` draws, plus one.
SEED_LIMIT = 2**31 - 1
_MEMBER = re.compile(r"(meta|(latest|kept|start)_(0|[1-9][0-9]{0,5}))\.npy")
_NPY_HEADER_LIMIT = 10_000


class Unusable(Exception):
    """The checkpoint cannot be resumed from; the message says why."""


def _describe(value):
    """A JSON-able description of a parameter value, stable across processes."""
    if hasattr(value, "get_config"):  # Keras layers and models
        try:
            return {"class": type(value).__name__, "config": value.get_config()}
        except Exception:  # noqa: BLE001 -- fall back to the type name
            return {"class": type(value).__name__}
    if isinstance(value, np.random.RandomState):
        return {"class": "RandomState", "state": str(value.get_state()[1][:4].tolist())}
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, np.generic):
        return value.item()
    return repr(value)


def params_fingerprint(params: dict) -> str:
    kept = {k: v for k, v in params.items() if k not in IGNORED_PARAMS}
    text = json.dumps(kept, sort_keys=True, default=_describe)
    return hashlib.sha256(text.encode()).hexdigest()


def data_fingerprint(images, y, sample_weight=None) -> str:
    """Of the pixels (arrays) or the files' paths, sizes and times, of ``y``
    and of the sample weights (if any)."""
    digest = hashlib.sha256()
    if images.array is not None:
        array = np.ascontiguousarray(images.array)
        digest.update(f"{array.shape} {array.dtype}".encode())
        digest.update(memoryview(array).cast("B"))
    else:
        for path in images.paths:
            digest.update(identity_bytes(path))
    digest.update(json.dumps(np.asarray(y).tolist(), default=repr).encode())
    if sample_weight is not None:
        digest.update(b"sample_weight")
        digest.update(np.ascontiguousarray(sample_weight, dtype=np.float64).tobytes())
    return digest.hexdigest()


# ------------------------------------------------------------------ the path
def path_problem(path: str) -> str | None:
    """Why ``path`` cannot be a checkpoint file (a directory, a named pipe, a
    device, a folder that is a file), or None. Symlinks are followed."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        folder = os.path.dirname(os.path.abspath(path))
        while not os.path.exists(folder):
            folder = os.path.dirname(folder)
        if not os.path.isdir(folder):
            return f"its folder {folder!r} is a file, not a folder"
        return None
    except OSError as exc:
        return f"it cannot be examined ({type(exc).__name__}: {exc})"
    if stat.S_ISDIR(mode):
        return "it is a directory"
    if not stat.S_ISREG(mode):
        return "it is not a regular file (a named pipe, a socket or a device)"
    return None


def identity(path: str) -> tuple | None:
    """What tells one file at ``path`` from another written there later."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return _identity(st)


def _identity(st: os.stat_result) -> tuple:
    return (st.st_dev, st.st_ino, *stat_stamp(st))


# ------------------------------------------------------------------- writing
def write(path: str, meta: dict, arrays: dict[str, list[np.ndarray]]) -> tuple | None:
    """Write atomically (a temporary file beside ``path``, renamed over it);
    returns the written file's :func:`identity`."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    payload = {"meta": np.frombuffer(json.dumps({"format": FORMAT, **meta}).encode(), np.uint8)}
    for name, values in arrays.items():
        for i, value in enumerate(values):
            payload[f"{name}_{i}"] = np.asarray(value)
    atomic_write(path, lambda f: np.savez(f, **payload), prefix=".imgclf-checkpoint-")
    return identity(path)


def set_aside(path: str) -> str:
    """Rename the file at ``path`` to the first free ``<path>.bad-<n>``
    (never over another file); returns the new name."""
    for n in range(1, 10_000):
        target = f"{path}.bad-{n}"
        if os.path.lexists(target):
            continue
        try:
            os.link(path, target)  # fails if target appeared meanwhile
        except FileExistsError:
            continue
        except OSError:  # a file system without hard links
            os.rename(path, target)
            return target
        os.unlink(path)
        return target
    raise OSError(f"no free name {path}.bad-<n>")


def remove_if_same(path: str, written: tuple | None) -> None:
    """Delete ``path`` only if it is still the file this library wrote or
    resumed from (same device, inode, size and time)."""
    if written is not None and identity(path) == written:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass


# ------------------------------------------------------------------- reading
class _Archive:
    """A checkpoint opened for bounded reading: a regular file only, its zip
    directory checked before ``zipfile`` parses it."""

    def __init__(self, path: str):
        try:  # non-blocking: opening a named pipe does not wait
            fd, st = open_regular(path)
        except NotRegularFileError as exc:
            raise Unusable(f"it {exc.problem}") from None
        except OSError as exc:
            raise Unusable(f"it cannot be opened ({type(exc).__name__}: {exc})") from None
        self.file = os.fdopen(fd, "rb")
        self.identity = _identity(st)
        try:
            _check_directory(self.file, st.st_size)
            self.zip = zipfile.ZipFile(self.file)
            self.members = _members(self.zip, st.st_size)
        except BaseException:
            self.file.close()
            raise

    def close(self) -> None:
        self.file.close()

    def array(self, name: str, *, limit: int, expect: tuple | None = None) -> np.ndarray:
        """Member ``name`` (without ``.npy``), at most ``limit`` bytes of data
        and, with ``expect``, of exactly that ``(shape, dtype)``."""
        info = self.members.get(name)
        if info is None:
            raise Unusable(f"it has no {name!r} member")
        if info.file_size > limit + _NPY_HEADER_LIMIT + 16:
            raise Unusable(f"its {name!r} member is {info.file_size} bytes, over the bound")
        with self.zip.open(info) as fp:
            version = np.lib.format.read_magic(fp)
            read_header = {
                (1, 0): np.lib.format.read_array_header_1_0,
                (2, 0): np.lib.format.read_array_header_2_0,
            }.get(version)
            if read_header is None:
                raise Unusable(f"its {name!r} member has an unknown .npy version {version}")
            shape, fortran, dtype = read_header(fp, max_header_size=_NPY_HEADER_LIMIT)
            if dtype.hasobject or dtype.kind not in "biuf" or dtype.byteorder == ">":
                raise Unusable(f"its {name!r} member holds {dtype}, not numbers")
            if expect is not None and (tuple(shape), dtype) != (tuple(expect[0]), expect[1]):
                raise Unusable(
                    f"its {name!r} member is {dtype} of shape {tuple(shape)}, where the network "
                    f"has {expect[1]} of shape {tuple(expect[0])}"
                )
            nbytes = math.prod(shape) * dtype.itemsize
            if nbytes > limit:
                raise Unusable(f"its {name!r} member holds {nbytes} bytes, over the bound")
            data = fp.read(nbytes)
            if len(data) != nbytes or fp.read(1):  # reading to the end checks the CRC
                raise Unusable(f"its {name!r} member is not the size its header says")
        return np.frombuffer(data, dtype).reshape(shape, order="F" if fortran else "C")


def _check_directory(f, size: int) -> None:
    """Refuse a zip whose directory would be large to parse, before ``zipfile``
    reads it whole."""
    tail_size = min(size, 22 + 0xFFFF + 20)
    f.seek(size - tail_size)
    tail = f.read(tail_size)
    at = tail.rfind(b"PK\x05\x06")
    if at < 0 or len(tail) - at < 22:
        raise Unusable("it is not a zip archive (an .npz file)")
    _, _, _, _, count, dir_size, dir_offset, _ = struct.unpack("<4s4H2LH", tail[at : at + 22])
    if 0xFFFF in (count,) or 0xFFFFFFFF in (dir_size, dir_offset):
        locator = tail[at - 20 : at] if at >= 20 else b""
        if locator[:4] != b"PK\x06\x07":
            raise Unusable("its zip directory is damaged")
        (record_at,) = struct.unpack("<Q", locator[8:16])
        if record_at + 56 > size:
            raise Unusable("its zip directory is damaged")
        f.seek(record_at)
        record = f.read(56)
        if record[:4] != b"PK\x06\x06":
            raise Unusable("its zip directory is damaged")
        count, _, dir_size, dir_offset = struct.unpack("<4Q", record[24:56])
    if count > MEMBERS_LIMIT or dir_size > DIRECTORY_LIMIT or dir_offset + dir_size > size:
        raise Unusable(
            f"its zip directory ({count} members, {dir_size} bytes) is over the bound "
            f"({MEMBERS_LIMIT} members, {DIRECTORY_LIMIT} bytes) or past the end of the file"
        )


def _members(archive: zipfile.ZipFile, size: int) -> dict[str, zipfile.ZipInfo]:
    members = {}
    for info in archive.infolist():
        match = _MEMBER.fullmatch(info.filename)
        if match is None:
            raise Unusable(f"it has a member {info.filename[:80]!r} no checkpoint has")
        if info.compress_type != zipfile.ZIP_STORED or info.flag_bits & 0x1:
            raise Unusable(f"its member {info.filename!r} is compressed or encrypted")
        if info.file_size > size or info.filename[:-4] in members:
            raise Unusable(f"its member {info.filename!r} is damaged or repeated")
        members[info.filename[:-4]] = info
    return members


def read_meta(path: str) -> tuple[dict, tuple]:
    """``(header, identity)`` of the checkpoint at ``path``, the header only
    checked to be an imgclf checkpoint's; raises :class:`Unusable`."""
    archive = _open(path)
    try:
        raw = archive.array("meta", limit=META_LIMIT)
        if raw.dtype != np.uint8 or raw.ndim != 1:
            raise Unusable("its header is not JSON text")
        meta = json.loads(raw.tobytes().decode("utf-8"))
    except Unusable:
        raise
    except Exception as exc:  # noqa: BLE001 -- any other damage (zip, UTF-8, JSON, nesting)
        raise Unusable(
            f"it cannot be read as an imgclf checkpoint ({type(exc).__name__}: {exc})"
        ) from None
    finally:
        archive.close()
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise Unusable("it is not an imgclf checkpoint of this version")
    return meta, archive.identity


def read_arrays(path: str, expected: tuple, shapes: dict[str, list]) -> dict[str, list]:
    """The weight arrays of the checkpoint at ``path``, which must still be
    the file of identity ``expected``: group ``g`` must have exactly the
    ``(shape, dtype)`` list ``shapes[g]`` (and no other group); every value
    must be finite."""
    archive = _open(path)
    try:
        if archive.identity != expected:
            raise Unusable("it changed while the fit was starting")
        wanted = {f"{g}_{i}" for g, specs in shapes.items() for i in range(len(specs))}
        extra = sorted(set(archive.members) - wanted - {"meta"})
        if extra:
            raise Unusable(f"it has members {extra[:3]} the network has no place for")
        arrays = {}
        for group, specs in shapes.items():
            arrays[group] = []
            for i, (shape, dtype) in enumerate(specs):
                nbytes = math.prod(shape) * np.dtype(dtype).itemsize
                value = archive.array(f"{group}_{i}", limit=nbytes, expect=(shape, dtype))
                if value.dtype.kind == "f" and not np.isfinite(value).all():
                    raise Unusable(f"its '{group}_{i}' weights are not all finite numbers")
                arrays[group].append(value)
        return arrays
    except Unusable:
        raise
    except Exception as exc:  # noqa: BLE001 -- any other damage (zip, CRC)
        raise Unusable(
            f"it cannot be read as an imgclf checkpoint ({type(exc).__name__}: {exc})"
        ) from None
    finally:
        archive.close()


def _open(path: str) -> _Archive:
    try:
        return _Archive(path)
    except Unusable:
        raise
    except Exception as exc:  # noqa: BLE001 -- a damaged zip
        raise Unusable(
            f"it cannot be read as an imgclf checkpoint ({type(exc).__name__}: {exc})"
        ) from None


# ------------------------------------------------------------------ checking
def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _require(ok: bool, field: str, what: str) -> None:
    if not ok:
        raise Unusable(f"its field {field!r} is not {what}")


def check_seed(meta: dict) -> int:
    """The header's seed, an integer from 0 to :data:`SEED_LIMIT`."""
    seed = meta.get("seed")
    _require(_is_int(seed) and 0 <= seed < SEED_LIMIT, "seed", f"an integer in [0, {SEED_LIMIT})")
    return seed


def check_meta(meta: dict, plan: list[tuple[int, float]], states: dict[str, set]) -> None:
    """Check every field of a header against the fit about to resume from it:
    ``plan`` holds each training stage's ``(epochs, learning_rate)``,
    ``states`` each stateful callback's name and the fields it may save."""
    missing, unknown = META_FIELDS - set(meta), set(meta) - META_FIELDS
    if missing or unknown:
        raise Unusable(f"its header lacks {sorted(missing)} or has unknown {sorted(unknown)[:5]}")
    check_seed(meta)
    for key in ("params", "data"):
        _require(isinstance(meta[key], str), key, "a fingerprint")
    stage, complete = meta["stage"], meta["complete"]
    _require(_is_int(stage) and 1 <= stage <= len(plan), "stage", f"a stage from 1 to {len(plan)}")
    _require(isinstance(complete, bool), "complete", "true or false")
    limit, peak = plan[stage - 1]
    stage_epochs, epochs = meta["stage_epochs"], meta["epochs"]
    _require(
        _is_int(stage_epochs) and 0 <= stage_epochs <= limit,
        "stage_epochs",
        f"an integer from 0 to {limit} (the epochs of stage {stage})",
    )
    _require(_is_int(epochs) and epochs >= stage_epochs, "epochs", "an integer >= stage_epochs")
    _check_history(meta["history"], epochs, stage, stage_epochs, plan)
    _require(meta["best"] is None or _is_number(meta["best"]), "best", "null or a finite number")
    best_epoch = meta["best_epoch"]
    _require(_is_int(best_epoch) and 0 <= best_epoch <= epochs, "best_epoch", "an epoch")
    callbacks = meta["callbacks"]
    _require(isinstance(callbacks, dict), "callbacks", "an object")
    rate = callbacks.get("learning_rate")
    _require(
        _is_number(rate) and 0 <= rate <= peak * (1 + 1e-5),
        "callbacks.learning_rate",
        f"a rate from 0 to {peak:g} (the stage's learning rate)",
    )
    names = set(callbacks) - {"learning_rate"}
    _require(names == set(states), "callbacks", f"the state of {sorted(states)}")
    for name, fields in states.items():
        values = callbacks[name]
        _require(
            isinstance(values, dict) and set(values) <= fields, name, f"some of {sorted(fields)}"
        )
        for key, value in values.items():
            if key == "best":
                ok = value is None or _is_number(value)
            else:
                ok = value is None or (_is_number(value) and value == int(value))
                ok = ok and (value is None or 0 <= value <= stage_epochs)
            _require(ok, f"{name}.{key}", "a number in range")


def _check_history(history, epochs: int, stage: int, stage_epochs: int, plan: list) -> None:
    _require(isinstance(history, dict), "history", "an object")
    if epochs == 0:
        _require(not history, "history", "empty (epochs is 0)")
        return
    _require({"loss", "stage"} <= set(history), "history", "an object with 'loss' and 'stage'")
    for key, values in history.items():
        _require(
            isinstance(values, list) and len(values) == epochs and all(map(_is_number, values)),
            f"history.{key}"[:60],
            f"a list of {epochs} finite numbers (epochs)",
        )
    stages = history["stage"]
    ok = all(v == int(v) and 1 <= v <= stage for v in stages) and stages == sorted(stages)
    counts = [stages.count(s) for s in range(1, len(plan) + 1)]
    ok = ok and counts[stage - 1] == stage_epochs and stages[-1] <= stage
    ok = ok and all(count <= limit for count, (limit, _) in zip(counts, plan, strict=True))
    _require(ok, "history.stage", "the stage of each epoch, within each stage's epochs")
