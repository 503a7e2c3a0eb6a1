"""Sphinx configuration for the imgclf guide.

Build: ``sphinx-build -W --keep-going -b html docs docs/_build/html`` (warnings
are errors, as in CI). Needs the ``docs`` extra: ``pip install -e ".[docs]"``.
"""

import imgclf

project = "imgclf"
author = "imgclf developers"
copyright = "imgclf developers, BSD-3-Clause"
version = release = imgclf.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "numpydoc",
]

# The API reference is generated from the numpydoc docstrings at build time
# into docs/generated/ (not committed).
autosummary_generate = True
autodoc_typehints = "none"  # the numpydoc Parameters sections already give types
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
# Examples sections run as doctests under pytest; here they are shown as written.
numpydoc_use_plots = False

templates_path = ["_templates"]
exclude_patterns = ["_build", "generated/*.examples"]
html_theme = "alabaster"
html_theme_options = {
    "description": "scikit-learn image classifiers on Keras 3",
    "fixed_sidebar": True,
}
html_static_path = []
