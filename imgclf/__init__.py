"""imgclf: scikit-learn image classifiers on Keras 3.

Importing imgclf is cheap: the public names below are loaded on first use,
and TensorFlow only when a model is built, trained or loaded.
"""

from importlib import import_module

__version__ = "0.1.0.dev0"

# Public name -> module that defines it.
_EXPORTS = {
    "Abstain": ".reject",
    "CNNClassifier": ".cnn",
    "TransferClassifier": ".transfer",
    "find_label_issues": ".audit",
    "load": "._loading",
    "load_csv": ".data",
    "load_filenames": ".data",
    "load_folder": ".data",
    "threshold_for": ".reject",
}

__all__ = [*_EXPORTS, "__version__"]


def __getattr__(name):
    if name in _EXPORTS:
        value = getattr(import_module(_EXPORTS[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'imgclf' has no attribute {name!r}")


def __dir__():
    return sorted(__all__)
