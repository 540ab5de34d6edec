"""Assertions for decompositions."""

from __future__ import annotations

from typing import Any

from tcur._backend import Array, check_tolerance, eps, to_numpy
from tcur.linalg.errors import relative_error


def default_rtol(x: Array, factor: float = 100.0) -> float:
    """Tolerance ``factor * eps(dtype) * max(shape)`` for a relative Frobenius error."""
    return factor * eps(x) * max(x.shape)


def assert_reconstructs(result: Any, x: Array, rtol: float | None = None) -> None:
    """Assert that ``result.reconstruct()`` reproduces ``x`` to a relative Frobenius error.

    Parameters
    ----------
    result
        Any object with ``.reconstruct()`` (``CUR``, ``TCUR``, ``TuckerCUR``).
    x : array
        The decomposed array.
    rtol : float, optional
        Allowed relative error (a finite number >= 0); default :func:`default_rtol` (scales with
        dtype eps and size). The error is :func:`tcur.linalg.relative_error` (scaled, so inputs
        of 1e+-300 are measured correctly; a zero ``x`` passes only with a zero reconstruction).

    Examples
    --------
    >>> import numpy as np
    >>> from tcur.linalg import cur
    >>> from tcur.testing import assert_reconstructs
    >>> A = np.outer([1.0, 2.0, 3.0], [1.0, -1.0])
    >>> assert_reconstructs(cur(A, 1), A)
    """
    tol = default_rtol(x) if rtol is None else check_tolerance(rtol, "rtol")
    if not callable(getattr(result, "reconstruct", None)):
        raise TypeError(f"result must have a .reconstruct() method, got {type(result).__name__}")
    approx = to_numpy(result.reconstruct())
    target = to_numpy(x)
    if approx.shape != target.shape:
        raise AssertionError(f"reconstruction has shape {approx.shape}, expected {target.shape}")
    err = float(relative_error(target, approx, check_finite=False))
    if not err <= tol:
        raise AssertionError(f"relative reconstruction error {err:.3e} exceeds rtol={tol:.3e}")
