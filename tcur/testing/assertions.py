"""Assertions for decompositions."""

from __future__ import annotations

from typing import Any

import numpy as np

from tcur._backend import Array, eps, to_numpy


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
        Allowed relative error; default :func:`default_rtol` (scales with dtype eps and size).

    Examples
    --------
    >>> import numpy as np
    >>> from tcur.linalg import cur
    >>> from tcur.testing import assert_reconstructs
    >>> A = np.outer([1.0, 2.0, 3.0], [1.0, -1.0])
    >>> assert_reconstructs(cur(A, 1), A)
    """
    approx = to_numpy(result.reconstruct())
    target = to_numpy(x)
    if approx.shape != target.shape:
        raise AssertionError(f"reconstruction has shape {approx.shape}, expected {target.shape}")
    tol = default_rtol(x) if rtol is None else rtol
    norm = float(np.linalg.norm(target))
    err = float(np.linalg.norm(approx - target)) / (norm if norm > 0 else 1.0)
    if not err <= tol:
        raise AssertionError(f"relative reconstruction error {err:.3e} exceeds rtol={tol:.3e}")
