"""Matrix CUR of ``scipy.sparse`` input: ``A`` is only multiplied and sliced, never densified.

:func:`tcur.linalg.cur` (and :func:`tcur.decompose`) hand sparse arrays and matrices (CSR, CSC,
COO, and every other format SciPy converts to CSR) to :func:`sparse_cur`. ``C = A[:, cols]`` and
``R = A[rows, :]`` come back sparse, in the input's format and class (``csr_array`` stays
``csr_array``, ``coo_matrix`` stays ``coo_matrix``); ``U`` is a small dense NumPy array and the
indices are NumPy int64 arrays. The work is that of the dense rules with every product taken
by the sparse matrix, through :class:`SparseOperator` and the engine of
:mod:`tcur.linalg.products` (which lists the passes of every rule: 5 for the default). The same
seed gives the same indices as the dense code on ``A.toarray()`` for the deterministic rules;
``"sketch_qr"`` keeps the first of the dense code's four candidates. Only thin dense blocks are
formed: sketches of ``l = max(n_rows, n_cols) + 10`` columns, ``C`` and ``R`` made dense
(``m x n_cols``, ``n_rows x n``: the size of the factors) and their range bases, one
``n x n_cols`` product for the middle.

``tol=`` grows the rank (doubling, then bisection) until the error measured by
:func:`factored_error` is at most ``tol``; each trial is one fit. The validation is the dense
one: ``ValueError`` for an empty matrix or NaN/Inf among the stored entries (``.data``),
``TypeError`` for non-numeric or long-double dtypes; integer entries become float64.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from tcur._backend import Array, binary_scale, is_sparse
from tcur._threads import one_blas_thread
from tcur.linalg.orthonormal import Projection, range_factor
from tcur.linalg.products import Fit, Operator, cur_by_operator, float_dtype
from tcur.linalg.results import CUR


def _canonical(M: Any) -> Any:
    """``M`` when every entry is stored at most once with sorted indices, else a canonical copy.

    SciPy defines a matrix with duplicate stored entries as their sum; code that reads ``.data``
    directly (norms, ``abs``) needs them summed first. The copy keeps the caller's matrix as it
    was (``sum_duplicates`` works in place).
    """
    if getattr(M, "has_canonical_format", True):
        return M
    out = M.copy()
    out.sum_duplicates()
    return out


def as_csr(A: Any, name: str, *, finite: bool = True) -> Any:
    """Validate a ``scipy.sparse`` matrix; return its canonical CSR form (floating dtype).

    Duplicate stored entries are summed and column indices sorted (SciPy's meaning of such a
    matrix) in a copy; ``A`` itself is never modified, and is returned as is when it is already
    a canonical CSR of a floating dtype.

    Examples
    --------
    >>> import scipy.sparse as sp
    >>> from tcur.linalg.sparse import as_csr
    >>> csr = as_csr(sp.eye_array(3, format="coo", dtype=int), "A")
    >>> csr.format, csr.dtype
    ('csr', dtype('float64'))
    >>> dup = sp.csr_array(([1.0, 2.0], [0, 0], [0, 2, 2]), shape=(2, 2))  # A[0, 0] = 1 + 2
    >>> as_csr(dup, "A").toarray().tolist(), dup.nnz
    ([[3.0, 0.0], [0.0, 0.0]], 2)
    """
    if not is_sparse(A):
        raise TypeError(f"{name} must be a scipy.sparse array or matrix, got {type(A).__name__}")
    if A.ndim != 2:
        raise ValueError(f"{name} must be 2-D, got {A.ndim}-D sparse array of shape {A.shape}")
    if min(A.shape) == 0:
        raise ValueError(f"{name} must not be empty, got shape {tuple(A.shape)}")
    dtype = float_dtype(A.dtype, name)
    csr = A.tocsr()
    if csr.dtype != dtype:
        csr = csr.astype(dtype)
    csr = _canonical(csr)
    if finite and not np.isfinite(csr.data).all():
        raise ValueError(f"{name} must not contain NaN or Inf (found in its stored entries)")
    return csr


RESIDUAL_BLOCK = 1 << 20
"""Entries per dense block when :meth:`SparseOperator.residual_norm` forms ``A - Q_C M Q_R^H``."""


class SparseOperator(Operator):
    """A validated sparse matrix as an :class:`tcur.linalg.products.Operator` (CSR for products
    with ``A``, CSC for products with ``A^H`` and for gathering columns).

    Examples
    --------
    >>> import numpy as np, scipy.sparse as sp
    >>> from tcur.linalg.sparse import SparseOperator
    >>> op = SparseOperator(sp.csr_array([[1.0, 2.0], [0.0, 3.0]]))
    >>> op.times(np.eye(2)).tolist(), op.passes
    ([[1.0, 2.0], [0.0, 3.0]], 1)
    """

    def __init__(self, A: Any, *, check_finite: bool = False) -> None:
        self.csr = as_csr(A, "A", finite=check_finite)
        self.csc = self.csr.tocsc()
        # A^H in CSR without copying the entries of a real matrix (the transpose of CSC).
        complex_ = np.iscomplexobj(self.csc.data)
        self.adjoint = self.csc.conj().T if complex_ else self.csc.T
        super().__init__(tuple(self.csr.shape), self.csr.dtype)

    def products(self, right: np.ndarray | None, left: np.ndarray | None) -> list[np.ndarray]:
        self.passes += 1
        out = [] if right is None else [np.asarray(self.csr @ np.ascontiguousarray(right))]
        if left is not None:
            out.append(np.asarray(self.adjoint @ np.ascontiguousarray(left)))
        return out

    def gather(
        self, cols: list[np.ndarray], rows: list[np.ndarray]
    ) -> tuple[list[np.ndarray], list[np.ndarray]]:
        self.passes += 1
        return (
            [np.asarray(self.csc[:, c].toarray()) for c in cols],
            [np.asarray(self.csr[r, :].toarray()) for r in rows],
        )

    def norms(self) -> tuple[np.ndarray, np.ndarray]:
        self.passes += 1
        return sparse_norms(self.csr, axis=1), sparse_norms(self.csc, axis=0)

    def frobenius_norm(self) -> float:
        return _scaled_data_norm(self.csr.data)

    def residual_norm(self, form: Projection) -> float:
        self.passes += 1
        m, n = self.shape
        step = max(1, RESIDUAL_BLOCK // max(n, 1))
        right = form.core @ form.right.conj().T  # (a, n)
        scale = binary_scale(float(np.max(np.abs(self.csr.data))) if self.csr.nnz else 0.0)
        squares = 0.0
        for start in range(0, m, step):
            stop = min(m, start + step)
            block = self.csr[start:stop].toarray() - form.left[start:stop] @ right
            squares += float(np.sum(np.abs(block / scale) ** 2))
        return math.sqrt(squares) * scale


def sparse_norms(A: Any, axis: int) -> np.ndarray:
    """2-norms of the rows (``axis=1``) or columns (``axis=0``) from the stored entries, scaled by
    a power of two near the largest entry (no overflow or underflow). Duplicate stored entries
    count as their sum (in a canonical copy; ``A`` is not modified).

    Examples
    --------
    >>> import scipy.sparse as sp
    >>> from tcur.linalg.sparse import sparse_norms
    >>> sparse_norms(sp.csr_array([[3e-300, 4e-300], [0.0, 0.0]]), axis=1).tolist()
    [5e-300, 0.0]
    """
    A = _canonical(A)
    peak = float(np.max(np.abs(A.data))) if A.nnz else 0.0
    scale = binary_scale(peak)
    scaled = abs(A) / scale
    squares = np.asarray(scaled.multiply(scaled).sum(axis=axis), dtype=np.float64).ravel()
    return np.asarray(np.sqrt(squares) * scale)


def factored_error(A: Any, C: Any, U: Array, R: Any) -> float:
    """Relative Frobenius error ``||A - C U R||_F / ||A||_F`` without forming ``C U R`` or
    densifying ``A``.

    In orthonormal coordinates: with ``C = Q_C T_C``, ``R^H = Q_R T_R``
    (:func:`tcur.linalg.orthonormal.range_factor` of ``C`` and ``R^H`` made dense: ``m x k`` and
    ``n x k``), ``M = Q_C^H A Q_R`` and ``N = T_C U T_R^H``,
    ``||A - C U R||^2 = ||A||^2 - ||M||^2 + ||M - N||^2`` (the two parts are orthogonal). Only the
    difference of squares cancels, so the result is within 1% of the true error whenever that
    is at least ``100 sqrt(eps)``; below, it is accurate to about ``eps / error`` (absolute).

    Examples
    --------
    >>> import numpy as np, scipy.sparse as sp
    >>> from tcur.linalg import cur
    >>> from tcur.linalg.sparse import factored_error
    >>> A = sp.random_array((40, 30), density=0.2, rng=0)
    >>> d = cur(A, 5, seed=0)
    >>> dense = A.toarray()
    >>> truth = np.linalg.norm(dense - d.C @ d.U @ d.R) / np.linalg.norm(dense)
    >>> bool(abs(factored_error(A, d.C, d.U, d.R) / truth - 1) < 1e-10)
    True
    """
    if not is_sparse(A):  # the dense formula needs no factored form
        shape = f" of shape {tuple(A.shape)}" if hasattr(A, "shape") else ""
        raise TypeError(
            f"A must be a scipy.sparse array or matrix, got {type(A).__name__}{shape}; for a "
            "dense A use tcur.linalg.relative_error(A, C @ U @ R)"
        )
    A = as_csr(A, "A", finite=False)
    total = _scaled_data_norm(A.data)
    scale = binary_scale(total)  # 1.0 for a zero A
    A = A / scale
    C, R = (np.asarray(M.toarray() if is_sparse(M) else M) / scale for M in (C, R))
    Q_C, T_C = range_factor(np, C)
    Q_R, T_R = range_factor(np, R.conj().T)
    M = np.asarray((A.conj().T @ Q_C).conj().T @ Q_R)
    N = T_C @ (np.asarray(U) * scale) @ T_R.conj().T
    if total == 0.0:  # relative_error's convention: 0 if C U R is zero too, else inf
        return 0.0 if not np.any(N) else math.inf
    squared = (total / scale) ** 2 - float(np.sum(np.abs(M) ** 2))
    squared += float(np.sum(np.abs(M - N) ** 2))
    return math.sqrt(max(squared, 0.0)) * scale / total


def sparse_relative_error(x: Any, approx: Any, *, check_finite: bool) -> np.ndarray:
    """:func:`tcur.linalg.relative_error` when ``x`` or ``approx`` is a ``scipy.sparse`` matrix.

    Both arguments sparse: the difference stays sparse and the norms come from its stored
    entries, scaled by a power of two (no overflow or underflow at 1e+-300). (With one of them
    dense, :func:`tcur.linalg.relative_error` makes the other dense: the dense one already holds
    that many entries.)

    Examples
    --------
    >>> import scipy.sparse as sp
    >>> from tcur.linalg import relative_error
    >>> A = sp.csr_array([[3.0, 0.0], [0.0, 4.0]])
    >>> float(relative_error(A, A * 0.5))
    0.5
    """
    if tuple(x.shape) != tuple(approx.shape):
        raise ValueError(
            f"x and approx must have the same shape, got {tuple(x.shape)} and {tuple(approx.shape)}"
        )
    x = as_csr(x, "x", finite=check_finite)
    approx = as_csr(approx, "approx", finite=False)
    reference = _scaled_data_norm(x.data)
    difference = _scaled_data_norm((x - approx).data)
    if reference == 0.0:
        return np.asarray(0.0 if difference == 0.0 else math.inf)
    return np.asarray(difference / reference)


def _scaled_data_norm(data: np.ndarray) -> float:
    """2-norm of stored entries, computed on ``data / 2^e`` with ``2^e`` near the largest."""
    peak = float(np.max(np.abs(data))) if data.size else 0.0
    if not math.isfinite(peak):  # NaN or Inf among the entries: the norm is that too
        return peak
    scale = binary_scale(peak)
    return float(np.linalg.norm(data / scale)) * scale


def sparse_cur(A: Any, rank: int | None, *, check_finite: bool, **options: Any) -> CUR:
    """:func:`tcur.linalg.cur` of a ``scipy.sparse`` matrix (``options``: the other keyword
    arguments of ``cur``); see :mod:`tcur.linalg.sparse`.

    Examples
    --------
    >>> import numpy as np, scipy.sparse as sp
    >>> from tcur.linalg import cur
    >>> A = sp.random_array((50, 5), density=0.5, rng=0) @ sp.random_array((5, 40), rng=1)
    >>> d = cur(A.tocsc(), 5, seed=0)
    >>> d.C.format, d.R.format, type(d.U).__name__
    ('csc', 'csc', 'ndarray')
    >>> bool(np.allclose(d.reconstruct(), A.toarray()))
    True
    """
    op = SparseOperator(A, check_finite=check_finite)

    def build(found: Fit, rank: int) -> CUR:
        C, R = op.csc[:, found.cols].asformat(A.format), op.csr[found.rows, :].asformat(A.format)
        return CUR(C, found.U, R, found.rows, found.cols, rank, found.form)

    with one_blas_thread():  # sparse products and thin blocks: idle BLAS threads only cost
        return cur_by_operator(op, rank, build=build, **options)
