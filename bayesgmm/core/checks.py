"""The validation vocabulary: settings checked against declared constraints, and seeds.

Every setting bayesgmm takes is checked here, in one way (in the spirit of
scikit-learn's ``_parameter_constraints``): a table maps each name to a
:class:`Constraint` (a test and what it allows), :func:`check_settings` reports every
violation at once, and :func:`check_keys` rejects unknown keys, naming the valid ones.
Child seeds for many fits come from one helper, :func:`child_seed`.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from bayesgmm.exceptions import ConfigError, DataError

__all__ = [
    "Constraint",
    "check_k_range",
    "check_keys",
    "check_mapping",
    "check_seed",
    "check_settings",
    "child_seed",
    "child_sequence",
    "choice",
    "integer",
    "is_int",
    "is_real",
    "optional",
    "real",
    "say",
    "violations",
]


def is_int(value: Any) -> bool:
    """An integer (Python or numpy), not a bool."""
    return isinstance(value, int | np.integer) and not isinstance(value, bool)


def is_real(value: Any) -> bool:
    """A real number (Python or numpy), not a bool."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


@dataclass(frozen=True)
class Constraint:
    """What a setting may be: ``test(value)`` is true for allowed values, ``allowed`` says
    so in words (it completes "... must be ...")."""

    test: Callable[[Any], bool]
    allowed: str

    def __call__(self, value: Any) -> bool:
        try:
            return bool(self.test(value))
        except (TypeError, ValueError):
            return False

    def says(self, allowed: str) -> Constraint:
        """The same test, described in other words."""
        return Constraint(self.test, allowed)


def integer(lo: int | None = None) -> Constraint:
    """An integer, at least ``lo``.

    Examples
    --------
    >>> integer(1)(3), integer(1)(0), integer(1)(2.0), integer(1).allowed
    (True, False, False, 'an integer >= 1')
    """
    if lo is None:
        return Constraint(is_int, "an integer")
    return Constraint(lambda v: is_int(v) and v >= lo, f"an integer >= {lo}")


def real(
    lo: float | None = None,
    hi: float | None = None,
    *,
    lo_open: bool = False,
    hi_open: bool = False,
) -> Constraint:
    """A finite real number in the interval given (open or closed at each end).

    Examples
    --------
    >>> real(0, 1, lo_open=True, hi_open=True).allowed
    'a number in (0, 1)'
    >>> real(0)(-1.0), real(0)(float("inf")), real(0).allowed
    (False, False, 'a finite number >= 0')
    """

    def test(v: Any) -> bool:
        if not is_real(v) or not math.isfinite(v):
            return False
        if lo is not None and (v <= lo if lo_open else v < lo):
            return False
        return not (hi is not None and (v >= hi if hi_open else v > hi))

    if lo is not None and hi is not None:
        text = f"a number in {'(' if lo_open else '['}{lo:g}, {hi:g}{')' if hi_open else ']'}"
    elif lo is not None:
        text = f"a finite number {'>' if lo_open else '>='} {lo:g}"
    elif hi is not None:
        text = f"a finite number {'<' if hi_open else '<='} {hi:g}"
    else:
        text = "a finite number"
    return Constraint(test, text)


def choice(options: Iterable[Any]) -> Constraint:
    """One of ``options`` (compared with ``==``; strings only match strings).

    Examples
    --------
    >>> choice(["a", "b"])("b"), choice(["a", "b"]).allowed
    (True, "one of ['a', 'b']")
    """
    opts = list(options)
    return Constraint(
        lambda v: any(type(v) is type(o) and v == o for o in opts), f"one of {opts!r}"
    )


def optional(constraint: Constraint, what: str = "None") -> Constraint:
    """``None`` or what ``constraint`` allows.

    Examples
    --------
    >>> optional(integer(0)).allowed
    'an integer >= 0 or None'
    """
    return Constraint(lambda v: v is None or constraint(v), f"{constraint.allowed} or {what}")


def violations(values: Mapping[str, Any], constraints: Mapping[str, Constraint]) -> list[str]:
    """One message per value that its constraint does not allow.

    Examples
    --------
    >>> violations({"n": 0, "tol": 1e-3}, {"n": integer(1), "tol": real(0)})
    ['n must be an integer >= 1; got 0']
    """
    return [
        f"{name} must be {c.allowed}; got {values[name]!r}"
        for name, c in constraints.items()
        if name in values and not c(values[name])
    ]


def check_settings(
    values: Mapping[str, Any], constraints: Mapping[str, Constraint], what: str
) -> None:
    """Raise one ConfigError listing every violation of ``constraints`` by ``values``.

    Examples
    --------
    >>> check_settings({"n": 0}, {"n": integer(1)}, "demo")
    Traceback (most recent call last):
    ...
    bayesgmm.exceptions.ConfigError: invalid demo settings:
      - n must be an integer >= 1; got 0
    """
    errors = violations(values, constraints)
    if errors:
        raise ConfigError(f"invalid {what} settings:\n  - " + "\n  - ".join(errors))


def check_keys(d: Any, valid: Iterable[str], what: str, *, required: Iterable[str] = ()) -> None:
    """``d`` must be a mapping whose keys are among ``valid`` and include ``required``.

    Examples
    --------
    >>> check_keys({"draw": 1}, ["draws", "tune"], "sampler")
    Traceback (most recent call last):
    ...
    bayesgmm.exceptions.ConfigError: unknown sampler setting(s) ['draw']; valid: ['draws', 'tune']
    """
    valid, required = list(valid), list(required)
    if not isinstance(d, Mapping):
        raise ConfigError(f"{what} settings must be a dict; got {type(d).__name__}.")
    unknown = sorted(set(d) - set(valid))
    missing = [k for k in required if k not in d]
    if required and (unknown or missing):  # a whole record (from_dict): say both
        raise ConfigError(
            f"{what}: unknown keys {unknown}, missing keys {missing}; the valid keys are {valid}."
        )
    if unknown:
        raise ConfigError(f"unknown {what} setting(s) {unknown}; valid: {valid}")


def child_sequence(master: int, *key: int) -> np.random.SeedSequence:
    """The ``SeedSequence`` of one task of many: a child of ``master`` named by ``key``.

    It depends only on ``(master, key)`` -- task ``i`` of a batch of ten gets the same
    seed as task ``i`` of a batch of three, and a fit in a K sweep keeps its seed when the
    sweep grows -- and equals ``SeedSequence(master).spawn(n)[i]`` for ``key = (i,)``.
    """
    return np.random.SeedSequence(master, spawn_key=tuple(int(k) for k in key))


def child_seed(master: int, *key: int) -> int:
    """An integer seed (< 2**31) for one task of many; see :func:`child_sequence`.

    Examples
    --------
    >>> child_seed(0, 1) == child_seed(0, 1) != child_seed(0, 2)
    True
    """
    return int(child_sequence(master, *key).generate_state(1, dtype=np.uint32)[0] >> 1)


def check_mapping(value: Any, what: str) -> dict | None:
    """``None`` or a mapping of settings (as a dict); ConfigError naming ``what`` otherwise.

    Examples
    --------
    >>> check_mapping({"draws": 10}, "sampler")
    {'draws': 10}
    """
    if value is not None and not isinstance(value, Mapping):
        raise ConfigError(f"{what} must be a dict of settings; got {type(value).__name__}.")
    return None if value is None else dict(value)


def check_seed(random_seed: Any) -> int:
    """A master seed of many fits: a non-negative integer.

    Examples
    --------
    >>> check_seed(3)
    3
    """
    if not integer(0)(random_seed):
        raise ConfigError(f"random_seed must be a non-negative integer; got {random_seed!r}.")
    return int(random_seed)


def check_k_range(
    k_range: Iterable[int], n_samples: int | None = None, *, lowest: int = 1, hint: str = ""
) -> list[int]:
    """The numbers of components to try, sorted: distinct integers >= ``lowest`` (at most
    ``n_samples`` when given). ``hint`` ends the message about values below ``lowest``.

    Examples
    --------
    >>> check_k_range(range(3, 0, -1))
    [1, 2, 3]
    >>> check_k_range([2, 0], lowest=0)
    [0, 2]
    """
    try:
        ks = list(k_range)
    except TypeError:
        raise ConfigError(f"k_range must be an iterable of integers; got {k_range!r}.") from None
    bad = [k for k in ks if not integer(lowest)(k)]
    if not ks or bad:
        raise ConfigError(
            f"k_range must be a non-empty sequence of integers >= {lowest}; got {ks!r}"
            + (f" (invalid: {bad!r}){hint}" if bad else "")
            + "."
        )
    if len(set(ks)) != len(ks):
        raise ConfigError(f"k_range has repeated values: {ks!r}.")
    if n_samples is not None and max(ks) > n_samples:
        raise DataError(
            f"k_range goes up to K={max(ks)} but the data has only {n_samples} points; a "
            "mixture needs at least one point per component."
        )
    return sorted(int(k) for k in ks)


def say(progress: bool, message: str) -> None:
    """Print one progress line when ``progress`` is on (K sweeps, many fits)."""
    if progress:
        print(message, flush=True)
