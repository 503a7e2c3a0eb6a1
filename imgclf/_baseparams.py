"""What each parameter of every imgclf estimator accepts: the table
:attr:`imgclf._base.BaseImageClassifier._parameter_rules` starts from
(subclasses extend it), and rules several estimators' tables share. The
machinery the rules are written in is :mod:`imgclf._params`."""

from __future__ import annotations

from ._backend import get_keras
from ._devices import PRECISIONS, is_strategy
from ._params import (
    BOOLEAN,
    NONE,
    PATH,
    RANDOM_STATE,
    Instance,
    Integer,
    Number,
    Options,
    Rule,
    is_int,
    param,
)
from ._scan import ON_BAD_FILE, ON_BAD_FILE_MEANING
from ._training import LR_SCHEDULES
from .augment import PRESETS, augment_problem


def _is_callback_list(value) -> bool:
    if not isinstance(value, (list, tuple)):
        return False
    return all(isinstance(cb, get_keras().callbacks.Callback) for cb in value)


#: Rules shared by several estimators' tables.
SIZE = param(
    NONE,
    Integer(1),
    Rule(
        lambda v: isinstance(v, (tuple, list)) and len(v) == 2 and all(is_int(s, 1) for s in v),
        "(height, width)",
    ),
)
DROPOUT = param(Number(0, 1, closed="left"))


#: What each parameter of :class:`~imgclf._base.BaseImageClassifier` accepts.
PARAMETER_RULES = {
    "epochs": param(Integer(1)),
    "batch_size": param(Options("auto"), Integer(1)),
    "learning_rate": param(Number(0, closed="neither"), expected="a number > 0, e.g. 1e-3"),
    "lr_schedule": param(
        NONE,
        Options(*LR_SCHEDULES),
        expected="'plateau', 'one_cycle', 'cosine' or None (a constant rate)",
        suggest=LR_SCHEDULES,
    ),
    "image_size": SIZE,
    "color_mode": param(
        Options("auto", "grayscale", "rgb"),
        expected="'auto' (follow the data), 'grayscale' or 'rgb'",
        suggest=("auto", "grayscale", "rgb"),
    ),
    "augment": param(
        NONE,
        Options(*PRESETS),
        Instance(dict, list, tuple, text="a dict or a list of Keras layers"),
        check=augment_problem,
        suggest=tuple(PRESETS),
    ),
    "early_stopping": param(BOOLEAN),
    "patience": param(Integer(0)),
    "validation_fraction": param(
        Number(0, 1, closed="left"), expected="a number in [0, 1); 0.0 means no hold-out"
    ),
    "class_weight": param(NONE, Options("balanced"), Instance(dict, text="a dict {label: weight}")),
    "random_state": param(RANDOM_STATE),
    "verbose": param(
        Options(0, 1, 2), expected="0 (silent), 1 (progress bar) or 2 (one line per epoch)"
    ),
    "warm_start": param(BOOLEAN),
    "calibrate": param(BOOLEAN),
    "callbacks": param(NONE, Rule(_is_callback_list, "a list of keras.callbacks.Callback objects")),
    "checkpoint": param(NONE, PATH, expected="None or a file path"),
    "on_bad_file": param(Options(*ON_BAD_FILE), expected=ON_BAD_FILE_MEANING, suggest=ON_BAD_FILE),
    "cache": param(
        NONE,
        Options("memory"),
        PATH,
        expected="None (stream from disk), 'memory' or a folder path",
    ),
    "tta": param(
        Integer(0),
        expected="an integer >= 0: 0 predicts on the images as given, n averages over "
        "them and n - 1 flipped or shifted views",
    ),
    "precision": param(
        Options(*PRECISIONS),
        expected="'auto' (mixed_float16 on GPUs of compute capability >= 7.0, else "
        "float32), 'float32', 'mixed_float16' or 'mixed_bfloat16'",
        suggest=PRECISIONS,
    ),
    "distribute": param(
        NONE,
        Options("auto"),
        Rule(is_strategy, ""),
        expected="None (one device), 'auto' (all visible GPUs when there are 2 or more) "
        "or a tf.distribute.Strategy",
        suggest=("auto",),
    ),
}


__all__ = ["DROPOUT", "PARAMETER_RULES", "SIZE"]
