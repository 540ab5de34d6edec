"""Matrix CUR decomposition ``A ~ C @ U @ R``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tcur._backend import (
    Array,
    as_float_array,
    check_choice,
    check_rank,
    eps,
    index_array,
)
from tcur.linalg._pinv import largest_singular_value, truncated_pinv
from tcur.linalg.selection import SELECT_RULES, select_matrix_indices

MIDDLES = ("pinv", "optimal")


@dataclass(frozen=True)
class CUR:
    """Result of :func:`cur`: ``A ~ C @ U @ R`` with ``C = A[:, cols]`` and ``R = A[rows, :]``.

    Attributes
    ----------
    C : array of shape (m, n_cols)
    U : array of shape (n_cols, n_rows)
    R : array of shape (n_rows, n)
    rows, cols : integer arrays
        Selected row and column indices, of the input's array kind.
    """

    C: Array
    U: Array
    R: Array
    rows: Array
    cols: Array

    def reconstruct(self) -> Array:
        """Return ``C @ U @ R``."""
        return self.C @ (self.U @ self.R)


def default_rtol(W: Array) -> float:
    """Relative singular-value cutoff used for pseudo-inverses: ``max(W.shape) * eps``."""
    return max(W.shape[-2:]) * eps(W)


def middle_pinv(W: Array, rtol: float | None = None, rank: int | None = None) -> Array:
    """``pinv`` of the intersection ``W``: singular values below ``rtol * s_max`` dropped, and at
    most ``rank`` kept (the truncation that keeps an oversampled intersection stable)."""
    atol = (default_rtol(W) if rtol is None else rtol) * largest_singular_value(W)
    return truncated_pinv(W, atol, rank)


def middle_optimal(C: Array, A: Array, R: Array, rtol: float | None = None) -> Array:
    """``pinv(C) @ A @ pinv(R)`` through SVD-based pseudo-inverses (never normal equations)."""
    return middle_pinv(C, rtol) @ (A @ middle_pinv(R, rtol))


def _counts(rank: int, n_rows: int | None, n_cols: int | None, shape: Any) -> tuple[int, int]:
    m, n = shape
    n_rows = check_rank(rank if n_rows is None else n_rows, "n_rows", m)
    n_cols = check_rank(rank if n_cols is None else n_cols, "n_cols", n)
    if n_rows < rank or n_cols < rank:
        raise ValueError(f"n_rows={n_rows} and n_cols={n_cols} must be >= rank={rank}")
    return n_rows, n_cols


def cur(
    A: Array,
    rank: int,
    *,
    n_rows: int | None = None,
    n_cols: int | None = None,
    select: str = "deim",
    middle: str = "pinv",
    seed: Any = None,
    svd: str = "auto",
    rtol: float | None = None,
) -> CUR:
    """CUR decomposition of a matrix: ``A ~ A[:, cols] @ U @ A[rows, :]``.

    Parameters
    ----------
    A : array of shape (m, n)
        NumPy array or torch tensor (any device). Integers become float64.
    rank : int
        Target rank used by the selection rule (``1 <= rank <= min(m, n)``).
    n_rows, n_cols : int, optional
        How many rows/columns to keep (default ``rank``; larger values oversample).
    select : str
        Selection rule: ``"deim"`` (default), ``"qdeim"``, ``"leverage"``, ``"leverage_sample"``,
        ``"norm"``, ``"inverse_norm"`` or ``"uniform"``; see :mod:`tcur.linalg.selection`.
    middle : {"pinv", "optimal"}
        ``"pinv"``: ``U = pinv_rank(A[rows][:, cols])``, the pseudo-inverse truncated to
        ``rank`` singular values (reads only sampled entries; on noisy data with
        ``n_rows = n_cols = rank`` small singular values of the intersection amplify the
        noise, so oversample there);
        ``"optimal"``: ``U = pinv(C) @ A @ pinv(R)`` (least Frobenius error for these C and R).
    seed : None, int or numpy.random.Generator
        Randomness of the sampled rules and of the randomized SVD.
    svd : {"auto", "exact", "randomized"}
        How leading singular vectors are found for the basis rules.
    rtol : float, optional
        Relative cutoff of the pseudo-inverses (default ``max(shape) * eps``).

    Returns
    -------
    CUR
        Frozen dataclass with ``C``, ``U``, ``R``, ``rows``, ``cols`` and ``.reconstruct()``.
        Exact when ``rank(A[rows][:, cols]) == rank(A)``. Autograd flows from ``C``, ``U``,
        ``R`` back to ``A`` for torch input (the indices are not differentiable).

    Examples
    --------
    >>> import numpy as np
    >>> from tcur.linalg import cur, relative_error
    >>> rng = np.random.default_rng(0)
    >>> A = rng.standard_normal((30, 5)) @ rng.standard_normal((5, 20))
    >>> d = cur(A, 5)
    >>> d.C.shape, d.U.shape, d.R.shape
    ((30, 5), (5, 5), (5, 20))
    >>> bool(relative_error(A, d.reconstruct()) < 1e-10)
    True
    """
    A = as_float_array(A, "A", ndim=2)
    check_choice(select, "select", SELECT_RULES)
    check_choice(middle, "middle", MIDDLES)
    rank = check_rank(rank, "rank", min(A.shape))
    n_rows, n_cols = _counts(rank, n_rows, n_cols, A.shape)
    rows, cols = select_matrix_indices(A, rank, n_rows, n_cols, select=select, seed=seed, svd=svd)
    rows_x, cols_x = index_array(rows, A), index_array(cols, A)
    C, R = A[:, cols_x], A[rows_x, :]
    if middle == "pinv":
        U = middle_pinv(A[rows_x, :][:, cols_x], rtol, rank=rank)
    else:
        U = middle_optimal(C, A, R, rtol)
    return CUR(C=C, U=U, R=R, rows=rows_x, cols=cols_x)
