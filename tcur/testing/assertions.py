"""Assertions for decompositions."""

from __future__ import annotations

from typing import Any

import numpy as np

from tcur._backend import Array, as_float_array, eps, is_sparse, to_numpy
from tcur.linalg.errors import relative_error
from tcur.validation import check_tolerance

MAX_COND = 100.0
"""Default largest condition number of the strategies' inputs (``max_cond`` of
:func:`tcur.testing.matrices`, :func:`tcur.testing.tubal_tensors` and
:func:`tcur.testing.multilinear_tensors`), assumed by :func:`default_rtol`."""


def default_rtol(x: Array, factor: float = 10.0, cond: float = MAX_COND) -> float:
    """Round-off bound ``factor * eps(dtype) * max(shape) * cond`` on the relative Frobenius
    error of an exact decomposition of ``x``.

    Reconstructing an exact-rank input from its own rows, columns or subtensor is exact up to
    round-off, which grows like ``eps * size * cond`` (a first-order perturbation of the
    projection onto the chosen rows and columns; ``cond`` is the condition number of the
    input's nonzero spectrum, of each Fourier slice for a tubal tensor, of the core's
    unfoldings for a Tucker tensor). ``cond`` defaults to ``MAX_COND`` (100), the largest the
    strategies generate. The worst error measured over 400 inputs of each strategy (float64 and
    float32, every deterministic rule, both middles, Chidori and Fiber CUR) was
    ``0.9 * eps * max(shape) * MAX_COND``; ``factor = 10`` leaves a margin of 10 over it.
    Pass a larger ``cond`` for inputs of worse condition.

    Examples
    --------
    >>> import numpy as np
    >>> from tcur.testing import default_rtol
    >>> bool(default_rtol(np.zeros((10, 8))) == 10 * np.finfo(np.float64).eps * 10 * 100)
    True
    >>> default_rtol(np.zeros((10, 8), dtype=int)) == default_rtol(np.zeros((10, 8)))
    True
    """
    return factor * _working_eps(x) * max(x.shape) * cond


def _working_eps(x: Array) -> float:
    """Machine epsilon of the dtype tcur computes ``x`` in (integers become float64, half
    precision float32; a ``scipy.sparse`` matrix's entries as a dense array's)."""
    probe = np.zeros(1, dtype=x.dtype) if is_sparse(x) else x
    return eps(as_float_array(probe, "x", finite=False))


def _host(a: Any) -> Any:
    """A dense host NumPy copy of ``a`` (``scipy.sparse`` made dense, Dask computed)."""
    return a.toarray() if is_sparse(a) else to_numpy(a)


def assert_reconstructs(result: Any, x: Array, rtol: float | None = None) -> None:
    """Assert that ``result.reconstruct()`` reproduces ``x`` to a relative Frobenius error.

    Parameters
    ----------
    result
        Any object with ``.reconstruct()`` (``CUR``, ``TCUR``, ``TuckerCUR``), including the
        CUR of a ``scipy.sparse`` matrix.
    x : array
        The decomposed array: NumPy, torch, ``scipy.sparse``, Dask or another array-API array.
    rtol : float, optional
        Allowed relative error (a finite number >= 0); default :func:`default_rtol` (a
        round-off bound from the dtype's eps, the size and the strategies' largest condition
        number). The error is :func:`tcur.linalg.relative_error` (scaled, so inputs of 1e+-300
        are measured correctly; a zero ``x`` passes only with a zero reconstruction).

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
    approx = _host(result.reconstruct())
    target = _host(x)
    if approx.shape != target.shape:
        raise AssertionError(f"reconstruction has shape {approx.shape}, expected {target.shape}")
    err = float(relative_error(target, approx, check_finite=False))
    if not err <= tol:
        raise AssertionError(f"relative reconstruction error {err:.3e} exceeds rtol={tol:.3e}")
