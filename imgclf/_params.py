"""Parameter rules as data, and the one checker that reads them.

Each estimator class declares ``_parameter_rules``: parameter name -> a
:class:`Param` listing the kinds of value it accepts (scikit-learn's
``_parameter_constraints`` idea). A subclass extends its parent's table with
``{**Parent._parameter_rules, ...}``. :func:`check_params` runs every rule at
the start of ``fit`` and raises one :class:`~imgclf.exceptions.InputError`
listing every problem, numbered, with "did you mean ...?" for misspelt names.
"""

from __future__ import annotations

import difflib
import numbers
import os
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ._pathargs import short_repr
from .exceptions import InputError


def did_you_mean(word: str, choices) -> str:
    """``" (did you mean 'x'?)"`` for the closest of ``choices``, or ``""``."""
    close = difflib.get_close_matches(str(word), [str(c) for c in choices], n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def numbered(problems) -> str:
    """``problems`` one a line, indented and numbered from 1: the body of an
    error that lists every bad parameter or argument at once."""
    return "\n".join(f"  {i}. {problem}" for i, problem in enumerate(problems, 1))


def is_int(value, low=None) -> bool:
    """An integer (not a bool) of at least ``low``."""
    return (
        isinstance(value, numbers.Integral)
        and not isinstance(value, (bool, np.bool_))
        and (low is None or value >= low)
    )


def is_real(value) -> bool:
    """A real number (not a bool)."""
    return isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))


# ------------------------------------------------------------------- rules
@dataclass(frozen=True)
class Rule:
    """One kind of accepted value: ``accepts(value)`` and how to say it.

    ``invalid`` holds values just outside the rule (the bound itself when it
    is excluded, a misspelt option...); the generated test of every parameter
    rule (``tests/test_param_rules.py``) sets them, in the way of
    scikit-learn's ``generate_invalid_param_val``.
    """

    accepts: Callable[[object], bool]
    text: str
    invalid: tuple = ()


def Integer(low: int | None = None) -> Rule:  # noqa: N802 -- reads as a type in a table
    """An integer, at least ``low``."""
    text = "an integer" + ("" if low is None else f" >= {low}")
    invalid = (0.5,) if low is None else (low - 1, low + 0.5)
    return Rule(lambda v: is_int(v, low), text, invalid)


def Number(low=None, high=None, *, closed: str = "both") -> Rule:  # noqa: N802
    """A real number in an interval; ``closed`` is "both", "left", "right" or "neither"."""
    low_ok = {"both": np.greater_equal, "left": np.greater_equal}.get(closed, np.greater)
    high_ok = {"both": np.less_equal, "right": np.less_equal}.get(closed, np.less)

    def accepts(v) -> bool:
        return (
            is_real(v)
            and not np.isnan(v)
            and (low is None or bool(low_ok(v, low)))
            and (high is None or bool(high_ok(v, high)))
        )

    if low is not None and high is not None:
        left = "[" if closed in ("both", "left") else "("
        right = "]" if closed in ("both", "right") else ")"
        text = f"a number in {left}{low}, {high}{right}"
    elif low is not None:
        text = f"a number {'>=' if closed in ('both', 'left') else '>'} {low}"
    else:
        text = "a number"
    invalid = [float("nan"), True]
    if low is not None:
        invalid.append(low if closed in ("right", "neither") else low - 1)
    if high is not None:
        invalid.append(high if closed in ("left", "neither") else high + 1)
    return Rule(accepts, text, tuple(invalid))


def Options(*values, text: str | None = None) -> Rule:  # noqa: N802
    """One of the given values (strings are matched exactly)."""
    allowed = frozenset(values)

    def accepts(v) -> bool:
        try:
            return v in allowed
        except TypeError:  # unhashable
            return False

    if text is None:
        shown = [repr(v) for v in values]
        text = shown[0] if len(shown) == 1 else ", ".join(shown[:-1]) + f" or {shown[-1]}"
    words = [v for v in values if isinstance(v, str)]
    numbers_ = [v for v in values if is_real(v)]
    invalid = ([misspelt(words[0])] if words else []) + ([max(numbers_) + 1] if numbers_ else [])
    return Rule(accepts, text, tuple(invalid))


def misspelt(word: str) -> str:
    """``word`` with its last two letters swapped (or doubled): a typo."""
    return word[:-2] + word[-1] + word[-2] if len(word) > 2 else word + word[-1:]


NONE = Rule(lambda v: v is None, "None")
BOOLEAN = Rule(lambda v: isinstance(v, (bool, np.bool_)), "True or False", (1, "yes"))
PATH = Rule(lambda v: isinstance(v, (str, os.PathLike)), "a path")
RANDOM_STATE = Rule(
    lambda v: v is None or is_int(v, 0) or isinstance(v, np.random.RandomState),
    "None, an integer >= 0 or a numpy RandomState",
    (-1, 0.5),
)


def Instance(*types: type, text: str) -> Rule:  # noqa: N802
    """An instance of one of ``types``."""
    return Rule(lambda v: isinstance(v, types) and not isinstance(v, (bool, np.bool_)), text)


@dataclass(frozen=True)
class Param:
    """The rules of one parameter.

    ``rules`` are alternatives: a value is valid when one accepts it.
    ``expected`` replaces the text joined from the rules' texts (for values
    that deserve a word of explanation). ``check(value)`` runs on values the
    rules accept and returns a further problem as text, or None (for what a
    type cannot say: a file that must exist). ``suggest`` lists names a
    misspelt string value is compared with.
    """

    rules: tuple[Rule, ...]
    expected: str | None = None
    check: Callable[[object], str | None] | None = None
    suggest: tuple = ()

    def problem(self, name: str, value) -> str | None:
        """The error text for ``value``, or None if it is valid."""
        if not any(rule.accepts(value) for rule in self.rules):
            expected = self.expected or _join([rule.text for rule in self.rules])
            hint = did_you_mean(value, self.suggest) if isinstance(value, str) else ""
            return f"{name}={short_repr(value, 120)}{hint}: expected {expected}."
        if self.check is not None:
            found = self.check(value)
            if found:
                return f"{name}={short_repr(_shown(value), 120)}: {found}"
        return None


def param(*rules: Rule, expected: str | None = None, check=None, suggest=()) -> Param:
    """Shorthand for :class:`Param` in a rules table."""
    return Param(tuple(rules), expected, check, tuple(suggest))


def _join(texts: list[str]) -> str:
    return texts[0] if len(texts) == 1 else ", ".join(texts[:-1]) + f" or {texts[-1]}"


def _shown(value):
    return os.fspath(value) if isinstance(value, os.PathLike) else value


def check_params(estimator) -> None:
    """Check every parameter of ``estimator`` against its class's
    ``_parameter_rules`` (and its ``_check_params_together``), and raise one
    :class:`InputError` listing all problems, numbered."""
    rules = type(estimator)._parameter_rules
    values = estimator.get_params(deep=False)
    missing = sorted(set(values) - set(rules))
    if missing:
        raise TypeError(
            f"{type(estimator).__name__} has no rule for its parameters {missing}; add them "
            "to its _parameter_rules."
        )
    # In the table's order, so the numbered list reads like the signature.
    found = {
        name: problem
        for name, rule in rules.items()
        if name in values and (problem := rule.problem(name, values[name]))
    }
    errors = list(found.values()) or estimator._check_params_together()
    if errors:
        raise InputError(
            f"{type(estimator).__name__} got invalid parameters:\n{numbered(errors)}",
            parameters=tuple(found),
        )
