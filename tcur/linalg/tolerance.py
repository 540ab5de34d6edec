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
from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np

from tcur._backend import Array, eps, namespace, spawn_rngs, to_numpy, unit_scaled, warn_user
from tcur.linalg.options import index_counts
from tcur.linalg.orthonormal import hermitian, qr_basis
from tcur.linalg.pivoting import gaussian
from tcur.validation import check_rank

FIRST_BLOCK = 16
"""Width of the first block of the range finder (later blocks double the basis)."""
ACCURATE_SUBTRACTION = 1000
"""The range finder's error indicator ``||F||^2 - sum ||Y^H F||^2`` is trusted down to this many
``eps ||F||^2``; below, the residual is formed exactly (one more pass)."""
GROWTH = 1.1
"""Factor by which the rank grows while the verified error exceeds ``tol``."""

Result = TypeVar("Result")


class BatchProducts:
    """A batch of matrices ``F`` (``(b, m, n)``: one matrix, or the Fourier slices of a tensor)
    seen through products, as :func:`estimate_rank` reads it. The sparse and Dask engines pass
    their own object with the same four members.

    ``F`` is divided by a power of two near its largest entry (exact), so that squared norms
    neither overflow nor underflow at 1e+-300.
    """

    def __init__(self, F: Array) -> None:
        self.xp = namespace(F)
        self.F = unit_scaled(F)
        self.Fh = hermitian(self.xp, self.F)
        self.shape = tuple(F.shape)
        self.eps = eps(F)

    def times(self, X: Array) -> Array:
        """``F @ X`` (``X``: ``(b, n, l)``)."""
        return self.F @ X

    def adjoint_times(self, X: Array) -> Array:
        """``F^H @ X`` (``X``: ``(b, m, l)``)."""
        return self.Fh @ X

    def squared_norms(self) -> np.ndarray:
        """Per-matrix squared Frobenius norms (host float64)."""
        return _sq_norms(self.xp, self.F)

    def gaussian(self, rng: np.random.Generator, width: int) -> Array:
        """A standard normal ``(b, n, width)`` block of ``F``'s kind."""
        return gaussian(rng, (self.shape[0], self.shape[2], width), self.F)

    def residual_squares(self, Q: Array, B: Array) -> np.ndarray:
        """Per-matrix ``||F - Q B||_F^2`` (host float64), formed exactly."""
        return _sq_norms(self.xp, self.F - Q @ B)


def _sq_norms(xp: Any, X: Array) -> np.ndarray:
    """Per-matrix squared Frobenius norms of a batch, on the host."""
    return np.asarray(to_numpy(xp.sum(xp.abs(X) ** 2, axis=(-2, -1))), dtype=np.float64)


def estimate_rank(
    F: Any, tol: float, *, weights: np.ndarray | None = None, seed: Any = None
) -> int:
    """Smallest rank ``k`` whose rank-``k`` truncation within a randomized range meets ``tol``.

    Parameters
    ----------
    F : array of shape (b, m, n), or BatchProducts-like
        Detached batch: one matrix (``b = 1``) or the Fourier slices of a tensor; or any object
        with the members of :class:`BatchProducts` (the sparse and Dask engines).
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

    Notes
    -----
    Each block is one power iteration of the *deflated* matrix ``(I - Q Q^H) F``, orthonormalized
    after every product, so that blocks far down a fast-decaying spectrum (a smooth kernel, whose
    singular values fall below ``eps * ||F||`` within a few blocks) still find the next singular
    directions instead of round-off.

    Examples
    --------
    >>> import numpy as np
    >>> from tcur.linalg.tolerance import estimate_rank
    >>> U = np.linalg.qr(np.random.default_rng(0).standard_normal((60, 60)))[0]
    >>> A = (U * 0.5 ** np.arange(60)) @ U.T
    >>> estimate_rank(A[None], 1e-3, seed=0)  # 0.5^k / sqrt(4/3) <= 1e-3 from k = 10
    10
    """
    op = F if hasattr(F, "adjoint_times") else BatchProducts(F)
    xp = op.xp
    w = np.ones(op.shape[0]) if weights is None else np.asarray(weights, dtype=np.float64)
    (rng,) = spawn_rngs(seed, 1)
    total = float(w @ op.squared_norms())
    if total == 0.0:
        return 1
    target = tol**2 * total
    accurate = ACCURATE_SUBTRACTION * op.eps * total
    full = min(op.shape[1:])
    Q, B = None, None
    remaining, block = total, FIRST_BLOCK
    while True:
        width = min(block, full - (0 if Q is None else Q.shape[-1]))
        Y = qr_basis(xp, op.times(op.gaussian(rng, width)), Q)
        Y = qr_basis(xp, op.times(qr_basis(xp, op.adjoint_times(Y))), Q)
        block_rows = hermitian(xp, op.adjoint_times(Y))  # Y^H F
        Q = Y if Q is None else xp.concat([Q, Y], axis=-1)
        B = block_rows if B is None else xp.concat([B, block_rows], axis=-2)
        remaining -= float(w @ _sq_norms(xp, block_rows))
        if target < accurate and remaining <= accurate:  # below the subtraction's accuracy
            remaining = float(w @ op.residual_squares(Q, B))
        if remaining <= target or Q.shape[-1] >= full:
            break
        block = Q.shape[-1]
    s = np.linalg.svd(to_numpy(B), compute_uv=False)
    tail = np.cumsum((w[:, None] * s**2).sum(axis=0)[::-1])[::-1]  # tail[k] = sum_{j >= k}
    outside = max(remaining, 0.0)
    meets = np.flatnonzero(outside + np.append(tail[1:], 0.0) <= target)
    return int(meets[0]) + 1 if meets.size else full


def fit_to_tolerance(
    fit: Callable[[int], Result],
    error: Callable[[Result], float],
    tol: float,
    first_rank: int,
    max_rank: int,
) -> Result:
    """Fit at ``first_rank``, then grow the rank until the measured error is ``<= tol``.

    ``fit(k)`` returns a decomposition of rank ``k`` and ``error(result)`` its relative Frobenius
    error. Returns the first fit whose error is at most ``tol``; the rank grows by
    :data:`GROWTH` (at least one). At ``max_rank`` without success, that fit with a
    :class:`RuntimeWarning` that points at the caller's line.
    """
    k = max(1, min(first_rank, max_rank))
    while True:
        result = fit(k)
        measured = error(result)
        if measured <= tol:
            return result
        if k >= max_rank:
            warn_user(
                f"tol={tol} not reached: relative error {measured:.3e} at the full rank {k} "
                "(round-off of this dtype); returning the full-rank decomposition",
                RuntimeWarning,
            )
            return result
        k = min(max_rank, max(k + 1, math.ceil(k * GROWTH)))


def fit_rank_or_tol(
    fit: Callable[[int, int, int], Result],
    error: Callable[[Result], float],
    estimate: Callable[[float], int],
    *,
    rank: Any,
    tol: float | None,
    n_rows: Any,
    n_cols: Any,
    shape: tuple[int, int],
) -> Result:
    """The one dispatch of :func:`tcur.linalg.cur`, :func:`tcur.linalg.tcur` and the product
    engine: ``fit(rank, n_rows, n_cols)`` at a checked rank, or for ``tol=`` (already checked)
    :func:`fit_to_tolerance` from ``estimate(tol)`` with ``n_rows = n_cols = rank``.
    ``shape`` is the ``(m, n)`` the counts are checked against."""
    if tol is None:
        rank = check_rank(rank, "rank", min(shape))
        return fit(rank, *index_counts(rank, n_rows, n_cols, shape))
    if n_rows is not None or n_cols is not None:
        raise ValueError("n_rows and n_cols cannot be combined with tol=; they follow the rank")
    return fit_to_tolerance(lambda k: fit(k, k, k), error, tol, estimate(tol), min(shape))
