"""Every parameter rule, tested from the rules tables themselves.

In the way of scikit-learn's ``check_param_validation``: for each estimator
and each entry of its ``_parameter_rules``, values the rule rejects are
generated (a value of an unrelated type, then each rule's ``invalid`` values
just outside it, then a misspelling of a suggested name), set one at a time,
and ``fit`` must raise :class:`imgclf.exceptions.InputError` naming the
parameter and what it expects, before any network is built. A new parameter
is covered as soon as it is in the table.
"""

import numpy as np
import pytest

from imgclf import CNNClassifier, TransferClassifier
from imgclf._params import misspelt
from imgclf.exceptions import InputError

ESTIMATORS = [CNNClassifier, TransferClassifier]

# Tiny valid data: fit must stop at the parameters, so its size does not matter.
X = np.zeros((8, 32, 32, 3), np.uint8)
Y = np.array([0, 1] * 4)


class Unrelated:
    """A value of a type no rule accepts."""

    def __repr__(self):
        return "Unrelated()"


def invalid_values(param) -> list:
    """Values ``param`` should reject: an :class:`Unrelated`, each rule's
    ``invalid`` values unless another rule of ``param`` takes them (a rule
    that takes its own is a bug the test shows), and a misspelt suggestion."""
    candidates = [(Unrelated(), None)]
    for rule in param.rules:
        candidates.extend((value, rule) for value in rule.invalid)
    candidates.extend((misspelt(word), None) for word in param.suggest[:1])
    found = []
    for value, source in candidates:
        taken = any(rule.accepts(value) for rule in param.rules if rule is not source)
        if not taken and not any(repr(value) == repr(v) for v in found):
            found.append(value)
    return found


def _cases():
    for estimator in ESTIMATORS:
        for name, param in estimator._parameter_rules.items():
            for value in invalid_values(param):
                yield pytest.param(
                    estimator, name, value, id=f"{estimator.__name__}-{name}={value!r}"
                )


CASES = list(_cases())


def test_every_rule_has_cases_and_every_parameter_a_rule():
    for estimator in ESTIMATORS:
        rules = estimator._parameter_rules
        assert set(rules) == set(estimator().get_params()), estimator.__name__
        covered = {name for est, name, _ in (case.values for case in CASES) if est is estimator}
        assert covered == set(rules), estimator.__name__


def test_generated_values_include_the_edges():
    values = {(est.__name__, name): [] for est, name, _ in (c.values for c in CASES)}
    for case in CASES:
        est, name, value = case.values
        values[(est.__name__, name)].append(value)
    assert 0 in values[("CNNClassifier", "patience")] or -1 in values[("CNNClassifier", "patience")]
    assert 0 in values[("CNNClassifier", "learning_rate")]  # excluded bound
    assert 1 in values[("CNNClassifier", "validation_fraction")]  # excluded bound
    assert 3 in values[("CNNClassifier", "verbose")]
    assert "ligth" in values[("CNNClassifier", "augment")]


@pytest.mark.parametrize("estimator, name, value", CASES)
def test_an_invalid_parameter_is_named_before_training(estimator, name, value, monkeypatch):
    def no_network(self, *args, **kwargs):
        raise AssertionError(f"{name}={value!r} was accepted: fit went on to build the network")

    monkeypatch.setattr(estimator, "_build_network", no_network)
    clf = estimator(**{name: value})
    with pytest.raises(InputError) as err:
        clf.fit(X, Y)
    message = str(err.value)
    assert f"invalid parameters:\n  1. {name}=" in message
    param = estimator._parameter_rules[name]
    # What it expects (the fix), as the table says it.
    texts = [rule.text for rule in param.rules]
    joined = texts[0] if len(texts) == 1 else ", ".join(texts[:-1]) + f" or {texts[-1]}"
    assert f": expected {param.expected or joined}." in message
    assert "\n  2. " not in message  # only the parameter set
    if param.suggest and isinstance(value, str):
        assert "(did you mean " in message
    assert not hasattr(clf, "model_")


@pytest.mark.parametrize(
    "augment, hint",
    [
        ({"filp": "horizontal"}, "unknown key 'filp' (did you mean 'flip'?)"),
        ({"zoom": 0.1, "rotaton": 0.1}, "(did you mean 'rotation'?)"),
        ({"flip": "horizonal"}, "(did you mean 'horizontal'?)"),
        ({"zoom": "big"}, "zoom='big': expected a number"),
        ([3], "item 3 is not a Keras layer"),
    ],
)
def test_augment_dict_keys_and_items_are_parameter_errors(augment, hint, monkeypatch):
    monkeypatch.setattr(CNNClassifier, "_build_network", None)  # never reached
    with pytest.raises(InputError) as err:
        CNNClassifier(augment=augment, epochs=0).fit(X, Y)
    message = str(err.value)
    # Listed with the other invalid parameters, in the table's order.
    assert "1. epochs=0" in message and f"2. augment={augment!r}: " in message
    assert hint in message
