"""Accuracy-driven rank (``tol=``): estimate the rank, then verify the decomposition's error.

1. :func:`estimate_rank` runs a blocked randomized range finder with an exact error indicator
   (``randQB_EI``, Martinsson & Voronin 2016) on a batch of matrices (one matrix, or the Fourier
   slices of a tensor): ``||A - Q Q^H A||_F^2 = ||A||_F^2 - ||Q^H A||_F^2`` is updated block by
   block (one power iteration per block, blocks doubling from :data:`FIRST_BLOCK`), so no full
   SVD is ever taken of ``A``. Once the indicator drops below ``tol``, the SVD of the small
   ``Q^H A`` gives the smallest rank whose truncation within ``Q``'s range meets ``tol``.
2. :func:`fit_to_tolerance` fits the decomposition at that rank, measures its true relative
   Frobenius error and, while it exceeds ``tol``, refits with the rank grown by
   :data:`GROWTH` (at least one). The returned result always satisfies ``error <= tol``,
   measured, with no estimation slack; at full rank the decomposition is exact up to round-off,
   so only a ``tol`` below the dtype's round-off can be missed (then the full-rank result is
   returned with a :class:`RuntimeWarning`).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np

from tcur._backend import Array, is_integer, namespace, spawn_rngs, to_numpy
from tcur.linalg.pivoting import gaussian, hermitian

FIRST_BLOCK = 16
"""Width of the first block of the range finder (later blocks double the basis)."""
GROWTH = 1.1
"""Factor by which the rank grows while the verified error exceeds ``tol``."""

Result = TypeVar("Result")


def check_rank_or_tol(rank: Any, tol: Any) -> float | None:
    """Validate that exactly one of ``rank`` and ``tol`` is given; return ``tol`` as a float.

    ``tol`` must be a finite real number in ``(0, 1)``.

    Examples
    --------
    >>> from tcur.linalg.tolerance import check_rank_or_tol
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


def _sq_norms(xp: Any, X: Array) -> np.ndarray:
    """Per-matrix squared Frobenius norms of a batch, on the host."""
    return np.asarray(to_numpy(xp.sum(xp.abs(X) ** 2, axis=(-2, -1))), dtype=np.float64)


def estimate_rank(
    F: Array, tol: float, *, weights: np.ndarray | None = None, seed: Any = None
) -> int:
    """Smallest rank ``k`` whose rank-``k`` truncation within a randomized range meets ``tol``.

    Parameters
    ----------
    F : array of shape (b, m, n)
        Detached batch: one matrix (``b = 1``) or the Fourier slices of a tensor.
    tol : float
        Relative Frobenius error target in ``(0, 1)``.
    weights : array of shape (b,), optional
        Weight of each matrix in the total squared norm (Fourier spectrum weights).
    seed : None, int or numpy.random.Generator

    Returns
    -------
    int
        A rank ``1 <= k <= min(m, n)``, never below the truncated-SVD rank that meets ``tol``
        (the range finder's subspace can only be worse than the singular subspace).

    Examples
    --------
    >>> import numpy as np
    >>> from tcur.linalg.tolerance import estimate_rank
    >>> U = np.linalg.qr(np.random.default_rng(0).standard_normal((60, 60)))[0]
    >>> A = (U * 0.5 ** np.arange(60)) @ U.T
    >>> estimate_rank(A[None], 1e-3, seed=0)  # 0.5^k / sqrt(4/3) <= 1e-3 from k = 10
    10
    """
    xp = namespace(F)
    w = np.ones(F.shape[0]) if weights is None else np.asarray(weights, dtype=np.float64)
    (rng,) = spawn_rngs(seed, 1)
    total = float(w @ _sq_norms(xp, F))
    if total == 0.0:
        return 1
    target = tol**2 * total
    full = min(F.shape[1:])
    Fh = hermitian(xp, F)
    Q = None
    remaining, block = total, FIRST_BLOCK
    while True:
        width = min(block, full - (0 if Q is None else Q.shape[-1]))
        Y = F @ (Fh @ (F @ gaussian(rng, (F.shape[0], F.shape[2], width), F)))
        for _ in range(2):  # project out the basis so far twice (stable Gram-Schmidt)
            if Q is not None:
                Y = Y - Q @ (hermitian(xp, Q) @ Y)
            Y, _ = xp.linalg.qr(Y)
        Q = Y if Q is None else xp.concat([Q, Y], axis=-1)
        remaining -= float(w @ _sq_norms(xp, hermitian(xp, Y) @ F))
        if remaining <= target or Q.shape[-1] >= full:
            break
        block = Q.shape[-1]
    s = np.linalg.svd(to_numpy(hermitian(xp, Q) @ F), compute_uv=False)
    tail = np.cumsum((w[:, None] * s**2).sum(axis=0)[::-1])[::-1]  # tail[k] = sum_{j >= k}
    outside = max(remaining, 0.0)
    meets = np.flatnonzero(outside + np.append(tail[1:], 0.0) <= target)
    return int(meets[0]) + 1 if meets.size else full


def measured_error(x: Array, approx: Array) -> float:
    """``||x - approx||_F / ||x||_F`` without re-validating ``x``, scaled by ``max |x|``."""
    xp = namespace(x, approx)
    x, approx = (a.detach() if hasattr(a, "detach") else a for a in (x, approx))
    scale = xp.max(xp.abs(x))
    if float(scale) == 0.0:
        return 0.0 if float(xp.max(xp.abs(approx))) == 0.0 else math.inf
    num = xp.linalg.vector_norm((x - approx) / scale)
    return float(num / xp.linalg.vector_norm(x / scale))


def fit_to_tolerance(
    fit: Callable[[int], Result],
    x: Array,
    tol: float,
    first_rank: int,
    max_rank: int,
    reconstruct: Callable[[Result], Array],
) -> Result:
    """Fit at ``first_rank``, then grow the rank until the measured error is ``<= tol``.

    ``fit(k)`` returns a decomposition of rank ``k``; ``reconstruct`` turns it back into an
    array of ``x``'s shape. Returns the first fit whose relative Frobenius error is at most
    ``tol``; at ``max_rank`` without success, that fit with a :class:`RuntimeWarning`.
    """
    k = max(1, min(first_rank, max_rank))
    while True:
        result = fit(k)
        error = measured_error(x, reconstruct(result))
        if error <= tol:
            return result
        if k >= max_rank:
            warnings.warn(
                f"tol={tol} not reached: relative error {error:.3e} at the full rank {k} "
                "(round-off of this dtype); returning the full-rank decomposition",
                RuntimeWarning,
                stacklevel=3,
            )
            return result
        k = min(max_rank, max(k + 1, math.ceil(k * GROWTH)))
