"""Prediction without ``model.predict``'s per-call set-up, and test-time augmentation.

``keras.Model.predict`` builds a dataset, an iterator and a step loop on every
call: about 35 ms here, eight times what calling a small network on one image
costs. A few images are better served by one traced call of the network
(:func:`traced_predictor`), a ``tf.function`` with a relaxed batch dimension
so that every batch size reuses the same graph. It is built on first use,
once per network and set of views, and kept in a table keyed weakly by the
network: it goes away with the network (each fit builds a new one), and never
sits on the estimator, so pickling and ``sklearn.base.clone`` never see it.

Test-time augmentation (fastai's ``tta``) averages the class probabilities
over the image as given and a few fixed views of it (:func:`tta_views`):
horizontal flips when the training augmentation flipped, then shifts by a
few pixels (reflected at the border) in the four directions and the four
diagonals.
"""

from __future__ import annotations

import weakref
from typing import NamedTuple

from ._backend import get_tf

#: Array inputs of up to this many images take the traced call instead of
#: ``model.predict``; larger ones, and file paths, keep the tf.data pipeline.
DIRECT_CALL_MAX_IMAGES = 512

#: Shift directions of the TTA views, in the order they are added.
_DIRECTIONS = ((0, 1), (0, -1), (1, 0), (-1, 0), (1, 1), (1, -1), (-1, 1), (-1, -1))


class View(NamedTuple):
    """One deterministic view: shift by ``(dy, dx)`` pixels, then flip left-right."""

    dy: int = 0
    dx: int = 0
    flip: bool = False


def flips_in(augment) -> bool:
    """Whether an ``augment`` parameter value flips images left-right in training."""
    from .augment import PRESETS

    if augment is None:
        return False
    if isinstance(augment, str):
        augment = PRESETS.get(augment, {})
    if isinstance(augment, dict):
        return "horizontal" in str(augment.get("flip") or "")
    modes = [
        str(layer.get_config().get("mode", ""))
        for layer in augment
        if type(layer).__name__ == "RandomFlip"
    ]
    return any("horizontal" in mode for mode in modes)


def shift_pixels(size: tuple[int, int]) -> int:
    """Pixels a TTA shift moves: a sixteenth of the smaller side (2 px at 28 px,
    14 px at 224), at least 1, and 0 for images too small to shift."""
    side = min(size)
    return min(max(1, round(side / 16)), side - 1)


def max_views(size: tuple[int, int], flip: bool) -> int:
    """How many distinct views :func:`tta_views` can give."""
    shifts = 1 + (len(_DIRECTIONS) if shift_pixels(size) > 0 else 0)
    return shifts * (2 if flip else 1)


def tta_views(n: int, size: tuple[int, int], flip: bool) -> list[View]:
    """The first ``max(n, 1)`` views: the image as given, its mirror image
    (with ``flip``), then each shift (and its mirror image).

    Examples
    --------
    >>> from imgclf.inference import tta_views
    >>> tta_views(3, (28, 28), flip=False)
    [View(dy=0, dx=0, flip=False), View(dy=0, dx=2, flip=False), View(dy=0, dx=-2, flip=False)]
    >>> [v.flip for v in tta_views(4, (28, 28), flip=True)]
    [False, True, False, True]
    """
    d = shift_pixels(size)
    offsets = [(0, 0)] + ([(dy * d, dx * d) for dy, dx in _DIRECTIONS] if d else [])
    views = [View(dy, dx, f) for dy, dx in offsets for f in ((False, True) if flip else (False,))]
    if n > len(views):
        raise ValueError(f"{n} views asked for, {len(views)} available")
    return views[: max(n, 1)]


def apply_view(tf, x, view: View):
    """``view`` of a batch ``(b, h, w, c)``: shifted with the border reflected, then flipped."""
    if view.dy or view.dx:
        h, w = x.shape[1], x.shape[2]
        pad = max(abs(view.dy), abs(view.dx))
        x = tf.pad(x, [[0, 0], [pad, pad], [pad, pad], [0, 0]], mode="REFLECT")
        # Content moves by (dy, dx): the window starts that far before the original.
        top, left = pad - view.dy, pad - view.dx
        x = x[:, top : top + h, left : left + w, :]
    if view.flip:
        x = tf.reverse(x, axis=[2])
    return x


_PREDICTORS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def traced_predictor(model, input_shape: tuple[int, int, int], views: list[View]):
    """A ``tf.function`` mapping a float32 batch ``(b, *input_shape)`` to
    ``model``'s class probabilities averaged over ``views``, in inference mode.

    Built once per ``(model, views)`` and traced on its first call; any batch
    size reuses the trace. The function holds the model only weakly, so the
    table entry dies with the model.
    """
    per_model = _PREDICTORS.setdefault(model, {})
    key = (tuple(input_shape), tuple(views))
    if key not in per_model:
        per_model[key] = _trace(weakref.ref(model), input_shape, views)
    return per_model[key]


def _trace(model_ref, input_shape, views):
    tf = get_tf()
    spec = tf.TensorSpec((None, *input_shape), tf.float32)

    # The name marks it for _backend's filter of TensorFlow's cross-model
    # retracing warning: each network's function traces once, but they share
    # this code object, which is what TensorFlow counts.
    def imgclf_predict_step(x):
        model = model_ref()
        outputs = [model(apply_view(tf, x, view), training=False) for view in views]
        return outputs[0] if len(outputs) == 1 else tf.add_n(outputs) / len(outputs)

    return tf.function(imgclf_predict_step, input_signature=[spec], autograph=False)


__all__ = [
    "DIRECT_CALL_MAX_IMAGES",
    "View",
    "apply_view",
    "flips_in",
    "max_views",
    "shift_pixels",
    "traced_predictor",
    "tta_views",
]
