"""numpydoc validation of the public API's docstrings.

Every public function and every public method an imgclf class defines has a
numpydoc docstring whose parameters match its signature, with a Returns
section; the estimators' methods also say what they raise and where to look
next (Raises, See Also).
"""

import importlib
import inspect

import pytest

numpydoc_validate = pytest.importorskip("numpydoc.validate")
from numpydoc.docscrape import NumpyDocString  # noqa: E402

# Module -> public names documented in the API reference.
PUBLIC = {
    "imgclf": ["CNNClassifier", "TransferClassifier", "load", "load_csv", "load_filenames"],
    "imgclf.data": ["load_folder"],
    "imgclf.explain": ["top_losses", "grad_cam"],
    "imgclf.plot": [
        "plot_learning_curves",
        "plot_confusion_matrix",
        "plot_top_losses",
        "plot_grad_cam",
        "plot_lr_find",
        "plot_label_issues",
    ],
    "imgclf.export": ["export"],
    "imgclf.audit": ["find_label_issues", "LabelIssues"],
    "imgclf.augment": ["augmentation_layers"],
}
# Methods whose docstrings also need Raises and See Also sections.
ESTIMATOR_METHODS = [
    "fit",
    "predict",
    "predict_proba",
    "transform",
    "network_input",
    "save",
    "export",
]

# numpydoc's checks that apply here: no docstring, parameters missing,
# unknown or undescribed, no Returns section, sections out of order.
CHECKS = {"GL08", "PR01", "PR02", "PR07", "RT01", "GL07", "SS01"}


def _targets():
    for module_name, names in PUBLIC.items():
        module = importlib.import_module(module_name)
        for name in names:
            obj = getattr(module, name)
            path = f"{obj.__module__}.{obj.__qualname__}"
            if inspect.isclass(obj):
                for attr, member in vars(obj).items():
                    if inspect.isfunction(member) and not attr.startswith("_"):
                        yield f"{path}.{attr}"
                # Inherited public methods written in imgclf (the base class).
                for base in obj.__mro__[1:]:
                    if base.__module__.startswith("imgclf"):
                        for attr, member in vars(base).items():
                            if inspect.isfunction(member) and not attr.startswith("_"):
                                if attr not in vars(obj):
                                    yield f"{base.__module__}.{base.__qualname__}.{attr}"
            else:
                yield path


TARGETS = sorted(set(_targets()))


def test_the_public_api_is_found():
    assert "imgclf._base.BaseImageClassifier.fit" in TARGETS
    assert "imgclf.explain.grad_cam" in TARGETS
    assert len(TARGETS) >= 20


@pytest.mark.parametrize("target", TARGETS)
def test_docstring_is_valid_numpydoc(target):
    result = numpydoc_validate.validate(target)
    errors = [f"{code}: {message}" for code, message in result["errors"] if code in CHECKS]
    assert not errors, f"{target}:\n" + "\n".join(errors)


@pytest.mark.parametrize("method", ESTIMATOR_METHODS)
def test_estimator_methods_say_what_they_raise_and_what_to_see(method):
    from imgclf._base import BaseImageClassifier

    doc = NumpyDocString(inspect.getdoc(getattr(BaseImageClassifier, method)))
    assert doc["Raises"], f"{method} has no Raises section"
    assert doc["See Also"], f"{method} has no See Also section"
