"""The schema of a saved model's ``imgclf.json``, checked by
:func:`imgclf._persist.load` before an estimator is rebuilt from it.

What is checked, and what is done with the unexpected:

- the top level: the fields ``clf.save`` writes, each of its type
  (:data:`FIELDS`); other top-level fields are ignored (a later release of
  the same format version may add some);
- nesting: at most :data:`MAX_DEPTH` levels of lists and objects;
- parameters: each against its estimator's ``_parameter_rules`` (after the
  path parameters are reset, see :func:`path_parameters`); parameters the
  estimator does not have are ignored with a warning;
- fitted attributes: each of :data:`ATTRIBUTES` of its type and range;
  others are ignored with a warning; with a network, the ones prediction
  needs (:data:`REQUIRED`) must be there, without one none may be; those
  files of earlier releases lack take their :data:`DEFAULTS`
  (``temperature_``: 1.0);
- against the network (:func:`check_network`): one input of shape
  ``(*image_size_, n_channels_)`` and one output per class in ``classes_``,
  ``temperature_`` equal to the network's temperature layer (1.0 without
  one), and one image of zeros run through it gives a row of probabilities;
  and ``tta`` against ``image_size_`` (:func:`check_views`);
- the model card (``card``, optional: files of earlier releases have none),
  by :func:`check_card`: each field of its type and within its bounds, and
  agreeing with ``classes_`` and ``image_size_``; fields it does not know are
  ignored.

A problem raises :class:`BadField` naming the field; ``load`` turns it into a
:class:`~imgclf.exceptions.ModelFileError` naming the file.
"""

from __future__ import annotations

import math
import numbers
import os

import numpy as np

from ._backend import get_keras, get_tf
from ._calibration import get_temperature, temperature_layer
from ._inference import flips_in, max_views
from .backbones import BACKBONES

#: Version of the archive layout; files of a later version are refused.
FORMAT_VERSION = 1
FORMAT = "imgclf-estimator"
MANIFEST = "imgclf.json"
NETWORK = "model.keras"
#: The classes ``load`` rebuilds, by name -> module.
ESTIMATORS = {"CNNClassifier": ".cnn", "TransferClassifier": ".transfer"}
#: Keras releases before this one have published ``safe_mode`` bypasses
#: (CVE-2025-1550, CVE-2025-8747, CVE-2026-1462): ``load`` refuses an
#: untrusted file with them (and ``pyproject.toml`` requires it).
SAFE_KERAS = (3, 14)


def versions() -> dict:
    """The imgclf, Keras and TensorFlow versions a file is saved with."""
    from . import __version__

    return {
        "imgclf": __version__,
        "keras": get_keras().__version__,
        "tensorflow": get_tf().__version__,
    }


class BadField(Exception):
    """A field of ``imgclf.json`` that ``clf.save`` would not have written."""

    def __init__(self, field: str, problem: str):
        super().__init__(f"{field}: {problem}")
        self.field = field


#: Levels of lists and objects a manifest may nest (``clf.save`` writes about 8).
MAX_DEPTH = 32
#: The largest image side a saved network may take (``load`` runs the
#: network once on an image of its size: 2048 x 2048 x 3 float32 is 48 MiB).
MAX_IMAGE_SIDE = 2048
#: The largest ``batch_size_`` (a batch of 2**20 8x8 images is 64 MiB).
MAX_BATCH = 1 << 20
#: Keras dtype policies a network is built with.
PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")

#: Top-level field -> (type, what it is).
FIELDS = {
    "format": (str, "a string"),
    "format_version": (int, "an integer"),
    "estimator": (str, "a class name"),
    "versions": (dict, "an object of version strings"),
    "params": (dict, "an object of parameters"),
    "dropped": (list, "a list of parameter names"),
    "attributes": (dict, "an object of fitted attributes"),
    "network": (bool, "true or false"),
}


def _int(value, low: int, high: float = math.inf) -> bool:
    return (
        isinstance(value, numbers.Integral)
        and not isinstance(value, (bool, np.bool_))
        and low <= value <= high
    )


def _finite(value) -> bool:
    return (
        isinstance(value, numbers.Real)
        and not isinstance(value, (bool, np.bool_))
        and math.isfinite(value)
    )


def _size(value) -> str | None:
    if not (isinstance(value, tuple) and len(value) == 2):
        return "expected a (height, width) tuple"
    if not all(_int(v, 1, MAX_IMAGE_SIDE) for v in value):
        return f"expected two integers in [1, {MAX_IMAGE_SIDE}], got {value!r}"
    return None


def _range(value) -> str | None:
    if not (isinstance(value, tuple) and len(value) == 2 and all(_finite(v) for v in value)):
        return "expected a (low, high) tuple of finite numbers"
    if value[0] > value[1]:
        return f"expected low <= high, got {value!r}"
    return None


def _classes(value) -> str | None:
    if not isinstance(value, np.ndarray) or value.ndim != 1 or len(value) < 2:
        return "expected a 1-D array of at least 2 labels"
    if value.dtype.kind not in "biufUO":
        return f"expected labels of str, int, float or bool, got dtype {value.dtype}"
    if value.dtype.kind == "O" and not all(
        isinstance(v, (str, numbers.Real, np.bool_)) for v in value.tolist()
    ):
        return "expected labels of str, int, float or bool"
    try:
        distinct = len(np.unique(value)) == len(value)
    except TypeError:  # labels of mixed types
        return "expected labels of one type"
    if not distinct:
        return "expected each label once"
    return None


def _history(value) -> str | None:
    if not isinstance(value, dict):
        return "expected a dict of metric name -> list of numbers"
    for key, values in value.items():
        if not isinstance(key, str) or not isinstance(values, list):
            return "expected a dict of metric name -> list of numbers"
        if not all(isinstance(v, numbers.Real) for v in values):
            return f"expected numbers in {key!r}, got {str(values)[:60]}"
    return None


def _names(value) -> str | None:
    if not isinstance(value, np.ndarray) or value.ndim != 1:
        return "expected a 1-D array of column names"
    if not all(isinstance(v, str) for v in value.tolist()):
        return "expected column names (strings)"
    return None


def _thresholds(value) -> str | None:
    if not isinstance(value, np.ndarray) or value.ndim != 1 or value.dtype.kind != "f":
        return "expected a 1-D array of floats, one per label"
    if not (np.isfinite(value).all() and ((value >= 0) & (value <= 1)).all()):
        return "expected thresholds in [0, 1]"
    return None


def _check(accepts, expected: str):
    return lambda value: None if accepts(value) else f"expected {expected}, got {value!r:.80}"


#: Fitted attribute -> its check (the problem as text, or None).
ATTRIBUTES = {
    "classes_": _classes,
    "image_size_": _size,
    "n_channels_": _check(lambda v: _int(v, 1, 3) and v != 2, "1 or 3"),
    "input_range_": _range,
    "batch_size_": _check(lambda v: _int(v, 1, MAX_BATCH), f"an integer in [1, {MAX_BATCH}]"),
    "precision_": _check(lambda v: v in PRECISIONS, " or ".join(map(repr, PRECISIONS))),
    "epochs_": _check(lambda v: _int(v, 0), "an integer >= 0"),
    "history_": _history,
    "interrupted_": _check(lambda v: isinstance(v, bool), "True or False"),
    "best_epoch_": _check(lambda v: _int(v, 0), "an integer >= 0"),
    "n_features_in_": _check(lambda v: _int(v, 1), "an integer >= 1"),
    "feature_names_in_": _names,
    "temperature_": _check(lambda v: _finite(v) and v > 0, "a number > 0"),
    "multilabel_": _check(lambda v: isinstance(v, bool), "True or False"),
    "refitted_": _check(lambda v: isinstance(v, bool), "True or False"),
    "thresholds_": _thresholds,
}
#: The attributes a fitted estimator's file must hold (what prediction reads).
REQUIRED = ("classes_", "image_size_", "n_channels_", "input_range_", "batch_size_")
#: Attributes a fitted estimator has that files of earlier releases lack,
#: with the value they stand for there.
DEFAULTS = {"temperature_": 1.0}


def check_top_level(manifest: dict) -> None:
    """Each field ``clf.save`` writes is there, of its type, nested at most
    :data:`MAX_DEPTH` deep."""
    for field, (kind, text) in FIELDS.items():
        value = manifest.get(field)
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise BadField(field, f"expected {text}, got {str(value)[:60]!r}")
    for field in ("versions",):
        if not all(isinstance(v, str) for v in manifest[field].values()):
            raise BadField(field, "expected version strings")
    if not all(isinstance(v, str) for v in manifest["dropped"]):
        raise BadField("dropped", "expected parameter names")
    depth = _depth(manifest)
    if depth > MAX_DEPTH:
        raise BadField("imgclf.json", f"nested {depth} levels deep (at most {MAX_DEPTH})")


def _depth(value) -> int:
    """How deeply lists and dicts nest in ``value`` (without recursion)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            item = list(item.values())
        if isinstance(item, list):
            deepest = max(deepest, depth)
            if depth <= MAX_DEPTH:
                stack.extend((v, depth + 1) for v in item)
    return deepest


def check_attributes(attributes: dict, has_network: bool) -> tuple[dict, list[str]]:
    """``(the known attributes, the names of unknown ones)``, each known one
    checked; raises :class:`BadField` for the first problem."""
    known = {k: v for k, v in attributes.items() if k in ATTRIBUTES}
    unknown = sorted(str(k) for k in attributes if k not in ATTRIBUTES)
    for key, value in known.items():
        problem = ATTRIBUTES[key](value)
        if problem:
            raise BadField(f"attributes.{key}", problem)
    if has_network:
        for key in REQUIRED:
            if key not in known:
                raise BadField(f"attributes.{key}", "missing (a fitted model has it)")
        known = {**DEFAULTS, **known}
    elif known:
        raise BadField("network", f"false, but the file has fitted attributes {sorted(known)}")
    names = known.get("feature_names_in_")
    if names is not None and len(names) != known.get("n_features_in_"):
        raise BadField(
            "attributes.feature_names_in_",
            f"{len(names)} names for n_features_in_={known.get('n_features_in_')!r}",
        )
    multilabel, thresholds = known.get("multilabel_", False), known.get("thresholds_")
    if multilabel and has_network and thresholds is None:
        raise BadField("attributes.thresholds_", "missing (a multi-label model has it)")
    if thresholds is not None and not multilabel:
        raise BadField("attributes.thresholds_", "present, but multilabel_ is not true")
    if thresholds is not None and len(thresholds) != len(known.get("classes_", ())):
        raise BadField(
            "attributes.thresholds_",
            f"{len(thresholds)} thresholds for {len(known.get('classes_', ()))} labels",
        )
    return known, unknown


#: Version of the model card's layout (``card.card_version``).
CARD_VERSION = 1
#: The longest text a card holds in one field (a parameter's ``repr`` is cut there).
CARD_TEXT = 1000
#: The most parameters, metrics or versions a card lists.
CARD_ENTRIES = 256


def _card_scalar(value) -> bool:
    if isinstance(value, str):
        return len(value) <= CARD_TEXT
    return (
        value is None or isinstance(value, bool) or _int(value, -(2**63), 2**63) or _finite(value)
    )


def _card_value(value) -> bool:
    """A card's parameter: a JSON scalar or a list of at most 16 of them."""
    if isinstance(value, list):
        return len(value) <= 16 and all(_card_scalar(v) and not isinstance(v, str) for v in value)
    return _card_scalar(value)


def _card_counts(value, n_classes: int) -> str | None:
    if value is None:
        return None
    if not isinstance(value, list) or len(value) != n_classes:
        return f"expected a list of {n_classes} counts (one per class) or null"
    if not all(_int(v, 0, 2**63) for v in value):
        return "expected counts (integers >= 0)"
    return None


def _card_mapping(value, accepts, expected: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, dict) or len(value) > CARD_ENTRIES:
        return f"expected an object of at most {CARD_ENTRIES} entries or null"
    for key, item in value.items():
        if len(key) > 100 or not accepts(item):
            return f"expected {expected}, got {key[:100]!r}: {str(item)[:60]!r}"
    return None


def _card_text(limit: int):
    def check(value):
        if value is None or (isinstance(value, str) and len(value) <= limit):
            return None
        return f"expected a string of at most {limit} characters or null"

    return check


#: The card's fields ``load`` reads back (what only the fit knows) -> check.
CARD_FACTS = {
    "fit": lambda v: _card_mapping(v, _card_scalar, "numbers or short strings"),
    "versions": lambda v: _card_mapping(
        v, lambda s: isinstance(s, str) and len(s) <= 100, "version strings"
    ),
    "data_fingerprint": _card_text(128),
    "trained_at": _card_text(64),
}
#: The card's fields ``load`` recomputes from the estimator -> check.
CARD_DERIVED = {
    "card_version": lambda v: None if _int(v, 1) else "expected an integer >= 1",
    "estimator": _card_text(100),
    "params": lambda v: _card_mapping(v, _card_value, "a number, a string or a short list"),
    "interrupted": lambda v: None if isinstance(v, bool) else "expected true or false",
    "temperature": lambda v: (
        None if v is None or (_finite(v) and v > 0) else "expected a number > 0 or null"
    ),
}


def check_card(card, attributes: dict) -> dict:
    """The facts a saved card holds (:data:`CARD_FACTS`, the images per
    class), each field of the card checked against its bounds and against the
    file's ``classes_`` and ``image_size_``; raises :class:`BadField`."""
    if not isinstance(card, dict):
        raise BadField("card", f"expected an object, got {str(card)[:60]!r}")
    classes = attributes["classes_"].tolist()
    if card.get("classes") != classes:
        raise BadField("card.classes", "expected the file's classes_, in order")
    if card.get("image_size") != list(attributes["image_size_"]):
        raise BadField("card.image_size", "expected the file's image_size_")
    if card.get("n_channels") != attributes["n_channels_"]:
        raise BadField("card.n_channels", "expected the file's n_channels_")
    facts = {}
    for key in ("train_per_class", "holdout_per_class"):
        problem = _card_counts(card.get(key), len(classes))
        if problem:
            raise BadField(f"card.{key}", problem)
        facts[key] = card.get(key)
    for key, check in {**CARD_FACTS, **CARD_DERIVED}.items():
        problem = check(card.get(key))
        if problem:
            raise BadField(f"card.{key}", problem)
        if key in CARD_FACTS:
            facts[key] = card.get(key)
    return facts


def check_network(model, attributes: dict) -> None:
    """The network takes ``(*image_size_, n_channels_)`` images and gives one
    probability per class in ``classes_``: by its declared shapes, and by
    running it once on an image of zeros."""
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise BadField(
            "model.keras",
            f"a network of {len(model.inputs)} inputs and {len(model.outputs)} outputs "
            "(imgclf's have one of each)",
        )
    taken = tuple(model.inputs[0].shape)[1:]
    expected = (*attributes["image_size_"], attributes["n_channels_"])
    if taken != expected:
        field = "image_size_" if taken[:2] != expected[:2] else "n_channels_"
        raise BadField(
            f"attributes.{field}",
            f"the network takes images of shape {taken}, the file says {expected}",
        )
    outputs = tuple(model.outputs[0].shape)[1:]
    n_classes = len(attributes["classes_"])
    if outputs != (n_classes,):
        raise BadField(
            "attributes.classes_",
            f"{n_classes} classes for a network of output shape {outputs}: predictions would "
            "carry the wrong labels",
        )
    # The config may still describe layers that do not fit together (Keras
    # builds them lazily): one image of zeros must give one row of probabilities.
    keras = get_keras()
    try:
        x = np.zeros((1, *expected), np.float32)
        out = keras.ops.convert_to_numpy(model(x, training=False))
    except Exception as exc:  # noqa: BLE001 -- any failure of the network is the file's
        lines = [line for line in str(exc).splitlines() if line.strip()] or [type(exc).__name__]
        raise BadField(
            "model.keras",
            f"the network fails on an image of its own input shape ({lines[0][:200]})",
        ) from None
    if attributes.get("multilabel_", False):  # one probability per label
        sums_right = ((out >= 0) & (out <= 1)).all()
    else:
        sums_right = abs(out.sum() - 1) <= 1e-2
    if out.shape != (1, n_classes) or not np.isfinite(out).all() or not sums_right:
        raise BadField(
            "model.keras",
            f"the network gives {out.ravel()[:5].tolist()} (shape {out.shape}) for an image, "
            f"not {n_classes} class probabilities",
        )
    layer = temperature_layer(model)
    held = 1.0 if layer is None else get_temperature(model)
    said = attributes.get("temperature_", DEFAULTS["temperature_"])
    if not math.isclose(held, said, rel_tol=1e-5):
        raise BadField(
            "attributes.temperature_",
            f"{said!r}, but the network's temperature layer holds {held!r}"
            + (" (the network has none)" if layer is None else ""),
        )


def check_views(estimator) -> None:
    """``tta`` asks for no more views than ``image_size_`` has (``predict``
    would refuse it)."""
    most = max_views(estimator.image_size_, flips_in(estimator.augment))
    if estimator.tta > most:
        raise BadField(
            "params.tta",
            f"{estimator.tta} views asked for; {most} exist for {estimator.image_size_} images",
        )


#: Parameters that can name a file or folder, each with the test of a value
#: that is not a path. A loaded estimator must not act on paths its file
#: names (a later ``fit`` writes a checkpoint or a cache there, or reads a
#: backbone or weights from there): these are reset to their defaults.
PATH_PARAMETERS = {
    "checkpoint": lambda v: v is None,
    "cache": lambda v: v is None or v == "memory",
    "memory": lambda v: v is None,
    "weights": lambda v: v is None or v == "imagenet",
    "backbone": lambda v: (
        isinstance(v, str)
        and not v.endswith((".keras", ".h5"))
        and "/" not in v
        and os.sep not in v
        and v.lower().replace("-", "_") in BACKBONES
    ),
}


def path_parameters(params: dict) -> dict:
    """The parameters among ``params`` that name a path: ``{name: value}``."""
    return {
        key: value
        for key, value in params.items()
        if key in PATH_PARAMETERS and not PATH_PARAMETERS[key](value)
    }


__all__ = [
    "ATTRIBUTES",
    "CARD_ENTRIES",
    "CARD_TEXT",
    "CARD_VERSION",
    "ESTIMATORS",
    "FORMAT",
    "FORMAT_VERSION",
    "MANIFEST",
    "NETWORK",
    "SAFE_KERAS",
    "FIELDS",
    "PATH_PARAMETERS",
    "REQUIRED",
    "DEFAULTS",
    "BadField",
    "check_attributes",
    "check_card",
    "check_network",
    "check_top_level",
    "check_views",
    "path_parameters",
    "versions",
]
