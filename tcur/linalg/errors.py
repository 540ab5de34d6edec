"""Approximation error measures."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from tcur._backend import (
    Array,
    as_float_array,
    eps,
    is_sparse,
    is_torch,
    namespace,
    power_of_two_below,
    scaled_norm,
    tiny,
)
from tcur.linalg.sparse import sparse_relative_error


def relative_error(x: Array, approx: Array, *, check_finite: bool = True) -> Array:
    """Relative Frobenius error ``||x - approx|| / ||x||`` (0-D array of the input's kind; NumPy
    for ``scipy.sparse`` and Dask input).

    Inputs near the ends of the dtype's range (1e+-300 in float64, 1e+-30 in float32 or
    float16/bfloat16 torch tensors, which are computed in float32) give the same answer as
    moderate ones: both arrays are divided by a power of two near their largest entry before
    any square is formed (exact, and free of overflow and underflow). NumPy input first tries
    the plain three-pass formula and falls back to the scaled one only when a norm is non-finite
    or tiny; torch input always takes the scaled one, which needs no host synchronisation.

    Parameters
    ----------
    x : array
        The reference: a NumPy, torch or array-API array, or a ``scipy.sparse`` matrix (two
        sparse inputs are never made dense; see :func:`tcur.linalg.sparse.sparse_relative_error`).
    approx : array of the same shape
        The approximation. NaN entries give a NaN error and infinite ones an infinite error;
        they are not an input error.
    check_finite : bool
        Raise ``ValueError`` if the reference ``x`` holds NaN or Inf (its relative error is
        undefined). ``False`` skips the scan.

    Returns
    -------
    0-D array
        For a zero ``x`` there is no relative scale: the result is 0 when ``approx`` is zero as
        well, and ``inf`` otherwise.

    Examples
    --------
    >>> import numpy as np
    >>> from tcur.linalg import relative_error
    >>> float(relative_error(np.ones(4), np.zeros(4)))
    1.0
    >>> float(relative_error(np.full(4, 1e300), np.full(4, 1.5e300)))
    0.5
    >>> zero = np.zeros(3)
    >>> float(relative_error(zero, zero)), float(relative_error(zero, np.ones(3)))
    (0.0, inf)
    """
    if is_sparse(x) and is_sparse(approx):
        return sparse_relative_error(x, approx, check_finite=check_finite)
    if is_sparse(x) or is_sparse(approx):  # the dense one already holds m * n entries
        x, approx = (M.toarray() if is_sparse(M) else M for M in (x, approx))
    x = as_float_array(x, "x", finite=check_finite)
    approx = as_float_array(approx, "approx", finite=False)
    namespace(x, approx)  # mixed array kinds are refused here
    if tuple(x.shape) != tuple(approx.shape):
        raise ValueError(
            f"x and approx must have the same shape, got {tuple(x.shape)} and {tuple(approx.shape)}"
        )
    return validated_relative_error(x, approx)


def validated_relative_error(x: Array, approx: Array) -> Array:
    """:func:`relative_error` of two dense float arrays of one kind and shape, already validated
    (no conversion, no NaN/Inf scan): the measure of the ``tol=`` search, which checks its input
    once per call.

    Examples
    --------
    >>> import numpy as np
    >>> from tcur.linalg.errors import validated_relative_error
    >>> float(validated_relative_error(np.ones(4), np.zeros(4)))
    1.0
    """
    xp = namespace(x, approx)
    dtype = xp.result_type(x.dtype, approx.dtype)
    x = xp.reshape(xp.astype(x, dtype, copy=False), (-1,))
    approx = xp.reshape(xp.astype(approx, dtype, copy=False), (-1,))
    if not is_torch(x):
        plain = _plain_ratio(x, approx)
        if plain is not None:
            return plain
    return _scaled_ratio(xp, x, approx)


def measured_error(x: Array, approx: Array) -> float:
    """:func:`validated_relative_error` as a host float, outside autograd: the measure of the
    ``tol=`` search of :func:`tcur.linalg.cur` and :func:`tcur.linalg.tcur`.

    Examples
    --------
    >>> import numpy as np
    >>> from tcur.linalg.errors import measured_error
    >>> measured_error(np.ones(4), np.zeros(4))
    1.0
    """
    if is_torch(x):
        x, approx = x.detach(), approx.detach()
    return float(validated_relative_error(x, approx))


def _plain_ratio(x: np.ndarray, approx: np.ndarray) -> np.ndarray | None:
    """Host fast path: ``||x - approx|| / ||x||`` unscaled (three passes), or ``None`` when a
    norm is non-finite or small enough that squares may have underflowed."""
    with np.errstate(over="ignore", under="ignore", invalid="ignore"):
        diff, ref = np.linalg.norm(x - approx), np.linalg.norm(x)
    small = math.sqrt(tiny(x)) / eps(x)
    if np.isfinite(diff) and np.isfinite(ref) and diff >= small and ref >= small:
        return np.asarray(diff / ref)
    return None


def _scaled_ratio(xp: Any, x: Array, approx: Array) -> Array:
    """The ratio from arrays scaled by powers of two; no host synchronisation."""
    scale = power_of_two_below(xp, xp.maximum(xp.max(xp.abs(x)), xp.max(xp.abs(approx))))
    x = x / scale
    diff, diff_scale = scaled_norm(xp, x - approx / scale)
    ref, ref_scale = scaled_norm(xp, x)
    zero_ref = ref == 0
    ratio = (diff / xp.where(zero_ref, xp.ones_like(ref), ref)) * (diff_scale / ref_scale)
    undefined = xp.where(diff == 0, xp.zeros_like(diff), xp.full_like(diff, float("inf")))
    return xp.where(zero_ref, undefined, ratio)
