"""Exceptions raised by imgclf.

Each is also a built-in exception type (``ValueError``, ``OSError``...), so code
that catches the generic type keeps working.
"""

from sklearn.exceptions import NotFittedError

__all__ = ["NotFittedError", "ImageFileError", "InputError"]


class InputError(ValueError):
    """``X``, ``y`` or a parameter cannot be used; the message says why and the fix."""


class ImageFileError(InputError):
    """An image file cannot be read or decoded; the message names the file."""
