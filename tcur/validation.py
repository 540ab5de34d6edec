"""Validation of scalar arguments and options, with one rule for the whole library.

A value of the wrong type raises :class:`TypeError`, a value of the right type but out of range
:class:`ValueError`; both name the argument and the value. Python and NumPy numbers are accepted
alike (``np.int64(3)`` is an integer, ``np.float32(0.5)`` a real number); ``bool`` is never a
number. Arrays are validated where their kind is known (:func:`tcur._backend.as_float_array`);
the adapter configurations (:mod:`tcur.adapters.config`) use the checks of this module too.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np


def is_integer(value: object) -> bool:
    """True for a Python or NumPy integer scalar; False for bool (``True`` is not a rank)."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def check_rank(rank: Any, name: str, upper: int) -> int:
    """Validate an integer rank-like argument in ``1..upper`` and return it as ``int``.

    Python and NumPy integers are accepted; bool, floats and everything else get a ``TypeError``.
    """
    if not is_integer(rank):
        raise TypeError(f"{name} must be an integer, got {rank!r} ({type(rank).__name__})")
    if rank < 1:
        raise ValueError(f"{name} must be >= 1, got {rank}")
    if rank > upper:
        raise ValueError(f"{name}={rank} exceeds the largest value allowed here ({upper})")
    return int(rank)


def check_sizes(values: Any, name: str, length: int | None = None) -> tuple[int, ...]:
    """Validate a sequence of positive integers (a shape, per-mode ranks) and return a tuple.

    Accepts a list, tuple or 1-D integer NumPy array of Python or NumPy integers; ``length``
    (if given) is the required number of entries.

    Examples
    --------
    >>> import numpy as np
    >>> from tcur.validation import check_sizes
    >>> check_sizes([2, np.int64(3)], "shape")
    (2, 3)
    """
    if isinstance(values, np.ndarray) and values.ndim == 1:
        values = values.tolist()
    if not isinstance(values, (list, tuple)):
        raise TypeError(
            f"{name} must be a sequence of integers, got {values!r} ({type(values).__name__})"
        )
    if length is not None and len(values) != length:
        raise ValueError(f"{name} must have {length} entries, got {len(values)}: {values!r}")
    for v in values:
        if not is_integer(v):
            raise TypeError(
                f"{name} must hold integers, got {v!r} ({type(v).__name__}) in {values!r}"
            )
        if v < 1:
            raise ValueError(f"{name} must hold positive integers, got {v} in {values!r}")
    return tuple(int(v) for v in values)


def check_tolerance(value: Any, name: str) -> float:
    """Validate a tolerance or cutoff: a finite real number ``>= 0`` (not bool); returns ``float``.

    Examples
    --------
    >>> from tcur.validation import check_tolerance
    >>> check_tolerance(1e-8, "tol")
    1e-08
    """
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.number)):
        raise TypeError(f"{name} must be a real number, got {value!r} ({type(value).__name__})")
    if isinstance(value, np.complexfloating) or not math.isfinite(float(value)) or value < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return float(value)


def check_choice(value: Any, name: str, choices: tuple[str, ...]) -> str:
    """Validate a string option against ``choices``."""
    if value not in choices:
        raise ValueError(f"unknown {name}={value!r}; valid names are {', '.join(choices)}")
    return str(value)


def check_seed(seed: Any) -> None:
    """Validate a random seed: ``None``, an int >= 0, a ``SeedSequence`` or a ``Generator``."""
    if seed is None or isinstance(seed, (np.random.Generator, np.random.SeedSequence)):
        return
    if not is_integer(seed):
        raise TypeError(
            f"seed must be None, an int, a numpy.random.SeedSequence or a numpy.random.Generator, "
            f"got {seed!r}"
        )
    if seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed}")


def check_rtol(rtol: Any) -> float | None:
    """Validate the pseudo-inverse cutoff ``rtol``: ``None`` or a finite number ``>= 0``.

    Examples
    --------
    >>> from tcur.validation import check_rtol
    >>> check_rtol(1e-8)
    1e-08
    >>> check_rtol(-1.0)
    Traceback (most recent call last):
    ...
    ValueError: rtol must be a finite number >= 0, got -1.0
    """
    if rtol is None:
        return None
    if isinstance(rtol, bool) or not isinstance(rtol, (int, float, np.integer, np.floating)):
        raise TypeError(f"rtol must be a number or None, got {rtol!r} ({type(rtol).__name__})")
    value = float(rtol)
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"rtol must be a finite number >= 0, got {rtol!r}")
    return value


def check_rank_or_tol(rank: Any, tol: Any) -> float | None:
    """Validate that exactly one of ``rank`` and ``tol`` is given; return ``tol`` as a float.

    ``tol`` must be a finite real number in ``(0, 1)``.

    Examples
    --------
    >>> from tcur.validation import check_rank_or_tol
    >>> check_rank_or_tol(None, 0.05)
    0.05
    >>> check_rank_or_tol(5, 0.05)
    Traceback (most recent call last):
    ...
    ValueError: give exactly one of rank and tol, got rank=5 and tol=0.05
    """
    if (rank is None) == (tol is None):
        raise ValueError(f"give exactly one of rank and tol, got rank={rank!r} and tol={tol!r}")
    if tol is None:
        return None
    if isinstance(tol, bool) or not (is_integer(tol) or isinstance(tol, (float, np.floating))):
        raise TypeError(f"tol must be a float in (0, 1), got {tol!r} ({type(tol).__name__})")
    value = float(tol)
    if not (math.isfinite(value) and 0.0 < value < 1.0):
        raise ValueError(f"tol must be a finite float in (0, 1), got {tol!r}")
    return value


def is_real_number(value: Any) -> bool:
    """True for a Python or NumPy real scalar (int or float); False for bool."""
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(
        value, (bool, np.bool_)
    )


def check_number(value: Any, name: str, low: float, high: float | None = None) -> float:
    if not is_real_number(value):
        raise TypeError(f"{name} must be a number, got {value!r} ({type(value).__name__})")
    number = float(value)
    if not (low <= number and (high is None or number < high)) or number != number:
        upper = "" if high is None else f" and < {high}"
        raise ValueError(f"{name} must be >= {low}{upper}, got {value!r}")
    return number


def check_finite_number(value: Any, name: str) -> float:
    if not is_real_number(value):
        raise TypeError(f"{name} must be a number, got {value!r} ({type(value).__name__})")
    number = float(value)
    if not math.isfinite(number):
        raise ValueError(f"{name} must be finite, got {value!r}")
    return number


def check_flag(value: Any, name: str) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False, got {value!r} ({type(value).__name__})")
    return bool(value)
