"""The ``checkpoint`` file: a fit's progress, written at the end of every epoch.

One ``.npz`` file read with ``allow_pickle=False`` (loading it runs no code):
the network's weights at the end of the last epoch, the weights early
stopping would keep, the network at the start of the current stage (for
estimators training in stages), the early-stopping and plateau state, and a
JSON header with the history so far and two fingerprints: of the parameters
(callbacks, verbosity and the checkpoint path aside) and of the data. A fit
resumes from the file only when both match; Keras's ``BackupAndRestore``
does the same for plain Keras, and like it the file is removed once the fit
has ended normally.
"""

from __future__ import annotations

import hashlib
import json
import os

import numpy as np

from .persist import atomic_write

FORMAT = "imgclf-checkpoint-1"
#: Parameters that do not change what is learnt, so a fit may resume with
#: other values of them.
IGNORED_PARAMS = frozenset({"callbacks", "verbose", "checkpoint"})


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


def data_fingerprint(images, y) -> str:
    """Of the pixels (arrays) or the files' paths, sizes and times, and of ``y``."""
    from .scan import stat_key

    digest = hashlib.sha256()
    if images.array is not None:
        array = np.ascontiguousarray(images.array)
        digest.update(f"{array.shape} {array.dtype}".encode())
        digest.update(memoryview(array).cast("B"))
    else:
        for path in images.paths:
            digest.update(os.fsencode(os.path.abspath(path)))
            digest.update(repr(stat_key(path)).encode())
    digest.update(json.dumps(np.asarray(y).tolist(), default=repr).encode())
    return digest.hexdigest()


def write(path: str, meta: dict, arrays: dict[str, list[np.ndarray]]) -> None:
    """Write atomically: a temporary file beside ``path``, renamed over it."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    payload = {"meta": np.frombuffer(json.dumps({"format": FORMAT, **meta}).encode(), np.uint8)}
    for name, values in arrays.items():
        for i, value in enumerate(values):
            payload[f"{name}_{i}"] = np.asarray(value)
    atomic_write(path, lambda f: np.savez(f, **payload), prefix=".imgclf-checkpoint-")


def read(path: str) -> tuple[dict, dict[str, list[np.ndarray]]] | str:
    """``(meta, arrays)``, or a sentence saying why the file cannot be used."""
    try:
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(bytes(data["meta"]).decode())
            arrays: dict[str, list[np.ndarray]] = {}
            for key in data.files:
                name, _, index = key.rpartition("_")
                if key != "meta":
                    arrays.setdefault(name, []).append((int(index), data[key]))
    except Exception as exc:  # noqa: BLE001 -- any damage makes the file unusable
        return f"it cannot be read as an imgclf checkpoint ({type(exc).__name__}: {exc})"
    if meta.get("format") != FORMAT:
        return "it is not an imgclf checkpoint of this version"
    return meta, {k: [a for _, a in sorted(v, key=lambda t: t[0])] for k, v in arrays.items()}


def remove(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
