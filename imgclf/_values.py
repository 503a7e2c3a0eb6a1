"""Python values <-> JSON and NumPy arrays, with no pickle either way.

What :mod:`imgclf._persist` stores an estimator's parameters and fitted
attributes as. Plain JSON for None, bool, int, float, str and lists; one-key
objects tag the rest, so each comes back as the type it was. Anything else
(a callback, a user's layer class, arbitrary objects) raises
:class:`UnsafeValue`: storing it would take code.
"""

from __future__ import annotations

import numbers
import pathlib

import numpy as np

from ._backend import get_keras


class UnsafeValue(Exception):
    """A value that cannot be stored without pickling; the message says what it is."""


class BadValue(Exception):
    """Stored JSON that :class:`Encoder` would not have written; the message says what."""


def describe(value) -> str:
    kind = type(value)
    return f"a {kind.__module__}.{kind.__qualname__}"


class Encoder:
    """Values -> JSON, with the arrays collected to be written as ``.npy``.

    Plain JSON for None, bool, int, float, str and lists; one-key objects tag
    the rest: ``{"tuple": [...]}``, ``{"dict": {...}}`` (string keys),
    ``{"items": [[key, value], ...]}`` (other keys), ``{"path": "..."}``, ``{"array": {...}}``,
    ``{"random_state": [...]}`` and ``{"keras_layer": {...}}``.
    """

    def __init__(self):
        self.arrays: dict[str, np.ndarray] = {}

    def __call__(self, value):
        if value is None or isinstance(value, (bool, str)):
            return value
        if isinstance(value, np.bool_):
            return bool(value)
        if isinstance(value, numbers.Integral):
            return int(value)
        if isinstance(value, numbers.Real):
            return float(value)
        if isinstance(value, list):
            return [self(v) for v in value]
        if isinstance(value, tuple):
            return {"tuple": [self(v) for v in value]}
        if isinstance(value, dict):
            if all(isinstance(k, str) for k in value):
                return {"dict": {k: self(v) for k, v in value.items()}}
            return {"items": [[self(k), self(v)] for k, v in value.items()]}
        if isinstance(value, pathlib.PurePath):
            return {"path": str(value)}
        if isinstance(value, np.ndarray):
            return {"array": self._array(value)}
        if isinstance(value, np.random.RandomState):
            return {"random_state": [self(part) for part in value.get_state()]}
        if _is_keras_builtin_layer(value):
            config = get_keras().saving.serialize_keras_object(value)
            return {"keras_layer": self(config)}
        raise UnsafeValue(describe(value))

    def _array(self, array: np.ndarray) -> dict:
        spec = {"file": f"arrays/{len(self.arrays)}.npy"}
        if array.dtype == object:
            array, spec["object"] = _plain_array(array), True
        if array.dtype.hasobject:
            raise UnsafeValue(f"an array of dtype {array.dtype}")
        self.arrays[spec["file"]] = array
        return spec


def _plain_array(array: np.ndarray) -> np.ndarray:
    """An object array of str, bool, int or float as a NumPy dtype that
    ``.npy`` stores without pickle (restored to object dtype on load)."""
    items = array.ravel().tolist()
    kinds = {type(v) for v in items}
    dtype = None
    if all(issubclass(k, str) for k in kinds):
        dtype = str
    elif all(issubclass(k, (bool, np.bool_)) for k in kinds):
        dtype = bool
    elif not any(issubclass(k, (bool, np.bool_)) for k in kinds):
        if all(issubclass(k, numbers.Integral) for k in kinds):
            dtype = np.int64
        elif all(issubclass(k, numbers.Real) for k in kinds):
            dtype = np.float64
    if dtype is not None:
        try:
            return np.array(items, dtype=dtype).reshape(array.shape)
        except OverflowError:
            pass
    names = ", ".join(sorted(k.__name__ for k in kinds))
    raise UnsafeValue(f"an object array holding {names}")


def _is_keras_builtin_layer(value) -> bool:
    """A layer class of ``keras.layers`` itself (not a model, not ``Lambda``,
    not a user's subclass): its config alone rebuilds it."""
    if type(value).__module__.split(".")[0] != "keras":
        return False
    layers = get_keras().layers
    name = type(value).__name__
    return name != "Lambda" and getattr(layers, name, None) is type(value)


def decoder(read_array):
    """The inverse of :class:`Encoder`; ``read_array(name)`` reads an ``.npy`` member."""

    def decode(value):
        if value is None or isinstance(value, (bool, int, float, str)):
            return value
        if isinstance(value, list):
            return [decode(v) for v in value]
        if not isinstance(value, dict) or len(value) != 1:
            raise BadValue(f"unexpected value {str(value)[:80]!r}")
        ((tag, body),) = value.items()
        if tag == "tuple":
            return tuple(decode(v) for v in body)
        if tag == "dict":
            return {str(k): decode(v) for k, v in body.items()}
        if tag == "items":
            return {decode(k): decode(v) for k, v in body}
        if tag == "path":
            return pathlib.Path(body)
        if tag == "array":
            array = read_array(body["file"])
            return array.astype(object) if body.get("object") else array
        if tag == "random_state":
            state = np.random.RandomState()
            state.set_state(tuple(decode(part) for part in body))
            return state
        if tag == "keras_layer":
            return _keras_layer(decode(body))
        raise BadValue(f"unknown tag {tag!r}")

    return decode


def _keras_layer(config: dict):
    """A built-in Keras layer from its serialised config, in Keras's safe mode."""
    keras = get_keras()
    name = config.get("class_name")
    cls = getattr(keras.layers, str(name), None)
    if (
        config.get("module") != "keras.layers"
        or name == "Lambda"
        or not isinstance(cls, type)
        or not issubclass(cls, keras.layers.Layer)
    ):
        raise BadValue(f"stored layer {name!r} is not a built-in Keras layer")
    return keras.saving.deserialize_keras_object(config, safe_mode=True)


__all__ = ["BadValue", "Encoder", "UnsafeValue", "decoder", "describe"]
