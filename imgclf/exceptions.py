"""Exceptions and warnings raised by imgclf.

Each is also a built-in exception type (``ValueError``, ``OSError``...), so code
that catches the generic type keeps working.
"""

from sklearn.exceptions import NotFittedError

__all__ = [
    "NotFittedError",
    "ImageFileError",
    "InputError",
    "InputTypeError",
    "PathNotFoundError",
    "ModelFileError",
    "InconsistentVersionWarning",
    "UnsavedParameterWarning",
    "TrainingError",
]


class InputError(ValueError):
    """``X``, ``y`` or a parameter cannot be used; the message says why and the fix.

    Attributes
    ----------
    parameters : tuple of str
        The parameters or arguments the error is about, when the fix is to
        change them (``("weights",)``, ``("delimiter",)``); empty otherwise.
        Code that adds advice of its own (the command line names its flags)
        reads this, never the message.
    """

    def __init__(self, *args, parameters=()):
        super().__init__(*args)
        self.parameters = tuple(parameters)


class InputTypeError(InputError, TypeError):
    """An argument is of a type imgclf cannot use (``None`` or a number for a
    path, items of ``X`` that are not numbers); also a ``TypeError``, which
    the same call raised before imgclf checked it."""


class PathNotFoundError(InputError, FileNotFoundError):
    """A file or folder given does not exist, or the folder a file is to be
    written in; the message names it. Also a ``FileNotFoundError``."""


class ImageFileError(InputError):
    """An image file cannot be read or decoded; the message names the file."""


class ModelFileError(InputError):
    """A file given to :func:`imgclf.load` is not a saved imgclf model, is damaged,
    or is a pickle that could run code; the message names the file and the fix."""


class InconsistentVersionWarning(UserWarning):
    """A model is loaded with other imgclf, Keras or TensorFlow versions than it
    was saved with (scikit-learn's warning of the same name, for imgclf files)."""


class UnsavedParameterWarning(UserWarning):
    """A parameter holds an object that cannot be saved without pickling (a
    callback, a custom layer, a ``keras.Model``); it is saved as its default."""


class FeatureCacheWarning(UserWarning):
    """The feature cache (``memory``) could not be used as asked; training goes
    on, computing the features it could not read or store."""


class TrainingError(RuntimeError):
    """Training went wrong although every input passed its checks (the loss
    stopped being a number); the message names the epoch and the likely fixes.

    A ``RuntimeError``, not an :class:`InputError`: no single argument is
    wrong, and the same data may train well at another learning rate.
    """
