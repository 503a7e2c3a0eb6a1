"""pytest setup for the whole repository (the package's doctests and tests/).

Here, not in ``tests/conftest.py``, so that it also applies when only the
package is collected (``pytest imgclf``).
"""

import re

import pytest

# A docstring example that trains a network (``fit``, ``lr_find``) takes
# seconds: it belongs to the slow tier, like any test that trains.
_TRAINS = re.compile(r"\.(fit|lr_find)\(")


def trains_a_network(item) -> bool:
    """Whether ``item`` is a doctest whose examples fit or sweep a network."""
    test = getattr(item, "dtest", None)  # set on doctest items only
    if test is None:
        return False
    code = (line.split("#")[0] for ex in test.examples for line in ex.source.splitlines())
    return any(_TRAINS.search(line) for line in code)


@pytest.hookimpl(tryfirst=True)  # before ``-m`` deselects by marker
def pytest_collection_modifyitems(config, items):
    for item in items:
        if trains_a_network(item):
            item.add_marker(pytest.mark.slow)
