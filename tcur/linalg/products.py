"""Matrix CUR through products with ``A``: the engine of the sparse and Dask paths.

Where ``A`` cannot (``scipy.sparse``: never densified) or should not (Dask: larger than memory)
be held as a dense array, :func:`fit_by_products` needs only an :class:`Operator`: products of
``A`` and ``A^H`` with thin dense blocks, a *gather* of a few whole columns and rows, and the
row and column norms. Every call is one **pass** over ``A`` (``Operator.passes`` counts them;
for Dask each is one ``dask.compute``, reading every chunk once). The rules are those of the
dense code, so the same seed gives the same indices as on ``A`` made dense for the deterministic
rules (``"deim"``, ``"qdeim"``, ``"norm"``; ``"sketch_qr"`` and ``"arp"`` build one candidate,
see below):

- ``"sketch_qr"`` (default) and ``"arp"``: one selection, the first candidate of
  :func:`tcur.linalg.pivoting.select_pivoted`. Passes: (1) ``X = A Omega``; (2)
  ``Y = A^H orth(X)``, whose pivots (``"sketch_qr"``) or adaptive randomized pivots
  (``"arp"``) are the columns; (3) gather ``C = A[:, cols]``; the rows are chosen on ``C``'s
  range (extended by columns of ``X`` when ``n_rows > n_cols``); (4) gather ``R = A[rows, :]``;
  (5) for ``middle="optimal"``, ``A^H Q_C`` (or ``A Q_R`` when ``A`` is wide: the product on the
  short side) gives ``U = (pinv(C) Q_C) (Q_C^H A Q_R) (Q_R^H pinv(R))``. **5 passes** (4 with
  ``middle="pinv"``). The dense code also builds three more candidates (from a second subspace
  iteration step and the transposed order) and keeps the best; here every candidate costs passes
  and tall QRs (on the power-law matrices of ``benchmarks/bench_sparse.py`` the four were
  within 0.1% of each other, and the extra work made the default 3x slower than ``svds``), so
  the product engine keeps the first. On the dense benchmark suite made sparse it was at most
  1.15x the dense default's error. The pivots come from :func:`pruned_pivots` (the same pivots,
  from the longest rows only).
- ``"deim"``, ``"qdeim"``, ``"leverage"``, ``"leverage_sample"``: randomized SVD with
  :data:`POWER_ITERS` power iterations (``2 + 2 * POWER_ITERS = 6`` passes), then one gather and,
  for ``middle="optimal"``, one product: **8 passes** (7 with ``middle="pinv"``). With
  ``svd="exact"`` the singular vectors come from :func:`scipy.sparse.linalg.svds` on the
  operator (one pass per ARPACK iteration: many).
- ``"norm"``, ``"inverse_norm"``, ``"uniform"``: one pass for the norms, one gather, one product
  for the optimal middle: **3 passes** (2 with ``middle="pinv"``).

``middle="pinv"`` uses the intersection ``R[:, cols]`` (from the gathered rows) with the rank
cap of :func:`tcur.linalg.pinv.pinv`.
"""

from __future__ import annotations

import math
import warnings
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from tcur._backend import binary_scale, check_choice, check_rank, is_sparse, spawn_rngs
from tcur.linalg.cur import CUR, MIDDLES, index_counts
from tcur.linalg.pinv import check_rtol, pinv
from tcur.linalg.pivoting import (
    PIVOTING_RULES,
    SKETCH_OVERSAMPLE,
    pick,
    pivoted_qr_indices,
    top_right_vectors,
)
from tcur.linalg.selection import BASIS_RULES, SELECT_RULES, choose_indices
from tcur.linalg.svd_bases import SVD_METHODS
from tcur.linalg.tolerance import FIRST_BLOCK, check_rank_or_tol

POWER_ITERS = 2
"""Power iterations of the randomized SVD behind the basis rules."""


class Operator(ABC):
    """``A`` seen through passes; subclasses say how one pass is computed.

    Attributes
    ----------
    shape : tuple of int
    dtype : numpy.dtype
        The floating dtype the products are computed in.
    passes : int
        Passes over ``A`` so far.
    """

    def __init__(self, shape: tuple[int, int], dtype: np.dtype) -> None:
        self.shape, self.dtype, self.passes = shape, dtype, 0

    @abstractmethod
    def products(self, right: np.ndarray | None, left: np.ndarray | None) -> list[np.ndarray]:
        """One pass: ``[A @ right]`` and/or ``[A^H @ left]`` (those given, in this order)."""

    @abstractmethod
    def gather(
        self, cols: list[np.ndarray], rows: list[np.ndarray]
    ) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """One pass: dense ``A[:, c]`` for each ``c`` in ``cols`` and ``A[r, :]`` for ``rows``."""

    @abstractmethod
    def norms(self) -> tuple[np.ndarray, np.ndarray]:
        """One pass: 2-norms of the rows and of the columns (host float64)."""

    def times(self, X: np.ndarray) -> np.ndarray:
        """``A @ X`` (one pass)."""
        return self.products(X, None)[0]

    def adjoint_times(self, X: np.ndarray) -> np.ndarray:
        """``A^H @ X`` (one pass)."""
        return self.products(None, X)[0]


@dataclass(frozen=True)
class Fit:
    """Indices and the dense middle factor found by :func:`fit_by_products`."""

    rows: np.ndarray
    cols: np.ndarray
    U: np.ndarray


def _gaussian(rng: np.random.Generator, shape: tuple[int, int], dtype: np.dtype) -> np.ndarray:
    return rng.standard_normal(shape).astype(dtype, copy=False)


def _orth(Y: np.ndarray) -> np.ndarray:
    """Orthonormal basis (C order, ``Y``'s dtype) of the range of a tall ``Y`` (``m x l``), by two
    rounds of Gram orthonormalization: ``Q <- Q V w^(-1/2)`` from ``eig(Q^H Q) = (w, V)``.

    Directions with ``w <= l eps max(w)`` (singular values below about ``1e-7`` of the largest,
    in float64) are set to zero; the second round restores orthogonality to round-off. Computed in
    double precision; when the Gram matrix over- or underflows (entries beyond about ``1e+-240``)
    ``Y`` is first divided by a power of two near its largest entry. Two products with the
    ``m x l`` block per round: cheaper than a Householder QR and its Fortran-order copies.
    """
    Q = np.asarray(Y, dtype=np.result_type(Y.dtype, np.float64))
    with np.errstate(over="ignore", under="ignore", invalid="ignore"):
        gram = Q.conj().T @ Q
    top = float(np.max(gram.diagonal().real)) if gram.size else 0.0
    if not (math.isfinite(top) and top > 2.0**-800):  # rare: rescale, then form it again
        peak = float(np.max(np.abs(Q))) if Q.size else 0.0
        if not peak > 0:
            return np.zeros_like(Y)
        Q = Q / binary_scale(peak)
        gram = Q.conj().T @ Q
    for second in (False, True):
        w, V = np.linalg.eigh(gram)
        keep = w > Q.shape[1] * float(np.finfo(w.dtype).eps) * w[-1]
        Q = Q @ (V * np.where(keep, 1.0 / np.sqrt(np.where(keep, w, 1.0)), 0.0))
        if not second:
            gram = Q.conj().T @ Q
    return np.ascontiguousarray(Q, dtype=Y.dtype)


def range_basis(X: np.ndarray) -> np.ndarray:
    """:func:`tcur.linalg.pivoting.numerical_range` of one tall matrix ``X`` (``m x k``): QR, then
    the SVD of the small triangular factor; directions of singular values at round-off level
    (``<= max(m, k) * eps * s_max``) are set to zero.

    Examples
    --------
    >>> import numpy as np
    >>> from tcur.linalg.products import range_basis
    >>> B = range_basis(np.array([[1.0, 2.0], [2.0, 4.0], [0.0, 0.0]]))
    >>> np.round(np.abs(B), 6).tolist()
    [[0.447214, 0.0], [0.894427, 0.0], [0.0, 0.0]]
    """

    return range_factor(X)[0]


def range_factor(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(Q, T)`` with ``Q = range_basis(X)`` and ``T = Q^H X`` (``k x k``), so ``X = Q T`` up to
    the round-off directions; from the QR and the small SVD ``R = u s v^H``: ``T = s v^H``."""
    import scipy.linalg  # deferred: keeps `import tcur` fast

    Q, R = scipy.linalg.qr(X, mode="economic", check_finite=False)
    u, s, vh = np.linalg.svd(R)
    keep = s > max(X.shape) * float(np.finfo(X.dtype).eps) * (s[0] if s.size else 0.0)
    return np.ascontiguousarray((Q @ u) * keep), (s * keep)[:, None] * vh


def pruned_pivots(basis: np.ndarray, count: int) -> np.ndarray:
    """:func:`tcur.linalg.pivoting.pivoted_qr_indices` of ``basis^H`` (``basis``: ``n x k``), run
    on the rows of largest norm only.

    A pivoted QR picks, at every step, the row of largest residual norm, and a residual is never
    longer than its row. So if the pivots found on the ``B`` longest rows all have residual norm
    (``|R_jj|``) above the ``(B + 1)``-th longest row's norm, no other row could have been
    picked at any step: the pivots are those of the whole matrix. ``B`` doubles until that
    holds (rank-deficient cases take the whole matrix). For the peaked row norms of sparse data
    this is a small fraction of a QR of the whole ``k x n`` matrix.

    Examples
    --------
    >>> import numpy as np
    >>> from tcur.linalg.pivoting import pivoted_qr_indices
    >>> from tcur.linalg.products import pruned_pivots
    >>> V = np.random.default_rng(0).standard_normal((5000, 6)) ** 3
    >>> bool(np.array_equal(pruned_pivots(V, 6), pivoted_qr_indices(V.T, 6)))
    True
    """
    import scipy.linalg  # deferred: keeps `import tcur` fast

    n = basis.shape[0]
    peak = float(np.max(np.abs(basis))) if basis.size else 0.0
    norms = np.linalg.norm(basis / peak, axis=1) * peak if peak > 0 else np.zeros(n)
    order = np.argsort(-norms, kind="stable")
    size = min(n, 16 * count + 256)
    tolerance = max(basis.shape) * float(np.finfo(basis.dtype).eps)
    while size < n:
        subset = order[:size]
        R, pivots = scipy.linalg.qr(basis[subset].conj().T, mode="r", pivoting=True)
        diag = np.abs(np.diagonal(R))
        if diag.size < count or not diag[count - 1] > tolerance * diag[0]:
            break  # rank-deficient: the whole matrix decides the fill
        if diag[count - 1] > norms[order[size]]:
            return np.asarray(subset[pivots[:count]], dtype=np.int64)
        size = min(n, 2 * size)
    return pivoted_qr_indices(basis.conj().T, count)


def _pick(rule: str, basis: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    """:func:`tcur.linalg.pivoting.pick`, with :func:`pruned_pivots` for ``"sketch_qr"``."""
    return pruned_pivots(basis, count) if rule == "sketch_qr" else pick(rule, basis, count, rng)


def _outer(rule: str, sketch: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    """Column indices from a row-space sketch ``Y`` (``n x l``), as
    :func:`tcur.linalg.pivoting.select_pivoted` picks them: pivots of ``Y^H`` for
    ``"sketch_qr"``, adaptive randomized pivots on ``Y``'s leading left singular vectors for
    ``"arp"``."""
    if rule == "arp":
        return _pick(rule, top_right_vectors(sketch[None, ...], count)[0], count, rng)
    return _pick(rule, sketch, count, rng)


@dataclass(frozen=True)
class Selection:
    """Chosen indices with the gathered ``C = A[:, cols]`` and ``R = A[rows, :]`` (dense), and
    ``C``'s :func:`range_factor` when the rule already computed it."""

    rows: np.ndarray
    cols: np.ndarray
    C: np.ndarray
    R: np.ndarray
    C_factor: tuple[np.ndarray, np.ndarray] | None = None


def _pivoted_selection(A: Operator, n_rows: int, n_cols: int, rule: str, seed: Any) -> Selection:
    """A pivoting rule in four passes: ``X = A Omega``, ``Y = A^H orth(X)``, columns from ``Y``
    and their gather, rows on ``C``'s range (extended by the first ``n_rows - n_cols`` columns of
    ``X`` when more rows than columns are kept) and their gather."""
    sketch_rng, sample_rng = spawn_rngs(seed, 2)
    m, n = A.shape
    size = min(max(n_rows, n_cols) + SKETCH_OVERSAMPLE, m, n)
    X = A.times(_gaussian(sketch_rng, (n, size), A.dtype))
    cols = _outer(rule, A.adjoint_times(_orth(X)), n_cols, sample_rng)
    (C,), _ = A.gather([cols], [])
    Q_C, T_C = range_factor(C)
    missing = n_rows - n_cols
    # The pivots depend only on the subspace: an orthonormal basis of [Q_C, X'] spans [C, X'].
    basis = range_basis(np.concatenate([Q_C, X[:, :missing]], axis=1)) if missing > 0 else Q_C
    rows = _pick(rule, basis, n_rows, sample_rng)
    _, (R,) = A.gather([], [rows])
    return Selection(rows, cols, C, R, (Q_C, T_C))


def randomized_svd(
    A: Operator, k: int, seed: Any, power_iters: int = POWER_ITERS
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Leading ``k`` singular triplets ``(U_k, s_k, V_k)`` (``V_k``: ``n x k``) of an operator:
    Gaussian range finder with ``k + 10`` columns and ``power_iters`` power iterations
    (``2 + 2 * power_iters`` passes)."""
    (rng,) = spawn_rngs(seed, 1)
    size = min(k + SKETCH_OVERSAMPLE, min(A.shape))
    Q = _orth(A.times(_gaussian(rng, (A.shape[1], size), A.dtype)))
    for _ in range(power_iters):
        Q = _orth(A.times(_orth(A.adjoint_times(Q))))
    v, s, wh = np.linalg.svd(A.adjoint_times(Q), full_matrices=False)  # A^H Q = (Q^H A)^H
    return (Q @ wh.conj().T)[:, :k], s[:k], v[:, :k]


def _arpack_svd(A: Operator, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    import scipy.sparse.linalg  # deferred: keeps `import tcur` fast

    op = scipy.sparse.linalg.LinearOperator(
        A.shape,
        matvec=lambda x: A.times(np.reshape(x, (-1, 1)))[:, 0],
        rmatvec=lambda x: A.adjoint_times(np.reshape(x, (-1, 1)))[:, 0],
        matmat=A.times,
        rmatmat=A.adjoint_times,
        dtype=A.dtype,
    )
    u, s, vh = scipy.sparse.linalg.svds(op, k=k, random_state=0)
    order = np.argsort(-s)
    return u[:, order], s[order], vh[order].conj().T


def singular_vectors(
    A: Operator, k: int, *, svd: str, seed: Any
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Leading singular triplets: ARPACK for ``svd="exact"`` (when ``k < min(A.shape)``),
    else :func:`randomized_svd`."""
    if svd == "exact" and k < min(A.shape):
        return _arpack_svd(A, k)
    return randomized_svd(A, k, seed)


def _single_candidate(
    A: Operator, rank: int, n_rows: int, n_cols: int, select: str, seed: Any, svd: str
) -> Selection:
    """A basis or norm rule: the SVD or the norms, then one gather."""
    sketch_rng, sample_rng = spawn_rngs(seed, 2)
    U = V = row_norms = col_norms = None
    if select in BASIS_RULES:
        U, _, V = singular_vectors(A, rank, svd=svd, seed=sketch_rng)
    else:
        row_norms, col_norms = A.norms()
    rows = choose_indices(select, n_rows, basis=U, norms=row_norms, rng=sample_rng)
    cols = choose_indices(select, n_cols, basis=V, norms=col_norms, rng=sample_rng)
    (C,), (R,) = A.gather([cols], [rows])
    return Selection(rows, cols, C, R)


def fit_by_products(
    A: Operator,
    rank: int,
    n_rows: int,
    n_cols: int,
    *,
    select: str,
    middle: str,
    seed: Any,
    svd: str,
    rtol: float | None,
) -> Fit:
    """Indices and middle factor of a CUR of ``A`` (arguments validated as in
    :func:`tcur.linalg.cur`); the passes are listed in :mod:`tcur.linalg.products`.

    Examples
    --------
    >>> import numpy as np, scipy.sparse as sp
    >>> from tcur.linalg.products import fit_by_products
    >>> from tcur.linalg.sparse import SparseOperator
    >>> A = sp.random_array((40, 3), density=0.6, rng=0) @ sp.random_array((3, 30), rng=1)
    >>> op = SparseOperator(A)
    >>> fit = fit_by_products(op, 3, 3, 3, select="sketch_qr", middle="optimal", seed=0,
    ...                       svd="auto", rtol=None)
    >>> op.passes, fit.U.shape
    (5, (3, 3))
    """
    if select in PIVOTING_RULES:
        picked = _pivoted_selection(A, n_rows, n_cols, select, seed)
    else:
        picked = _single_candidate(A, rank, n_rows, n_cols, select, seed, svd)
    rows, cols = picked.rows, picked.cols
    if middle == "pinv":
        return Fit(rows, cols, pinv(picked.R[:, cols], rtol, rank=rank))
    # C = Q_C T_C and R = T_R^H Q_R^H, so pinv(C) A pinv(R) = pinv(T_C) (Q_C^H A Q_R) pinv(T_R^H),
    # with the cutoffs pinv would use on C and R themselves. The product is on the short side.
    Q_C, T_C = picked.C_factor or range_factor(picked.C)
    Q_R, T_R = range_factor(picked.R.conj().T)
    m, n = A.shape
    tall = m >= n  # then (A^H Q_C)^H Q_R = Q_C^H A Q_R
    core = A.adjoint_times(Q_C).conj().T @ Q_R if tall else Q_C.conj().T @ A.times(Q_R)
    left = pinv(T_C, _cutoff(rtol, (m, n_cols), A.dtype))
    right = pinv(T_R.conj().T, _cutoff(rtol, (n_rows, n), A.dtype))
    return Fit(rows, cols, left @ core @ right)


def _cutoff(rtol: float | None, shape: tuple[int, int], dtype: np.dtype) -> float:
    """``rtol``, or the default cutoff of :func:`tcur.linalg.pinv.pinv` for a ``shape`` matrix."""
    return max(shape) * float(np.finfo(dtype).eps) if rtol is None else rtol


def smallest_rank_meeting(
    fit: Callable[[int], Any], error: Callable[[Any], float], tol: float, full: int
) -> Any:
    """The fit of the smallest rank found by doubling from :data:`FIRST_BLOCK`, then bisection,
    whose measured ``error`` is ``<= tol`` (about ``2 log2(rank)`` fits). At ``full`` rank
    without success, that fit with a :class:`RuntimeWarning`."""
    low, high = 0, min(FIRST_BLOCK, full)
    while True:
        result = fit(high)
        measured = error(result)
        if measured <= tol:
            break
        if high == full:
            warnings.warn(
                f"tol={tol} not reached: relative error {measured:.3e} at the full rank {full}; "
                "returning the full-rank decomposition",
                RuntimeWarning,
                stacklevel=4,
            )
            return result
        low, high = high, min(2 * high, full)
    found = result
    while high - low > 1:
        middle = (low + high) // 2
        result = fit(middle)
        if error(result) <= tol:
            found, high = result, middle
        else:
            low = middle
    return found


def float_dtype(dtype: Any, name: str) -> np.dtype:
    """The floating dtype a NumPy ``dtype`` is computed in (the rules of dense input): integers
    and booleans become float64, float16 float32; long double and non-numeric raise TypeError.

    Examples
    --------
    >>> import numpy as np
    >>> from tcur.linalg.products import float_dtype
    >>> float_dtype(np.dtype(np.int32), "A"), float_dtype(np.dtype(np.float16), "A")
    (dtype('float64'), dtype('float32'))
    """
    dtype = np.dtype(dtype)
    if dtype.kind in "biu":
        return np.dtype(np.float64)
    if dtype.kind == "f" and dtype.itemsize < 4:
        return np.dtype(np.float32)
    if (dtype.kind == "f" and dtype.itemsize > 8) or (dtype.kind == "c" and dtype.itemsize > 16):
        raise TypeError(f"{name} has dtype {dtype} (long double); convert it to float64 first")
    if dtype.kind in "fc":
        return dtype
    raise TypeError(f"{name} must have a numeric dtype, got dtype {dtype}")


def cur_by_operator(
    op: Operator,
    rank: Any,
    *,
    build: Callable[[Fit, int], CUR],
    error: Callable[[CUR], float],
    tol: Any = None,
    n_rows: Any = None,
    n_cols: Any = None,
    select: str = "sketch_qr",
    middle: str = "optimal",
    seed: Any = None,
    svd: str = "auto",
    rtol: Any = None,
) -> CUR:
    """:func:`tcur.linalg.cur` on an operator: the options validated as there, then one
    :func:`fit_by_products` at ``rank``, or for ``tol=`` :func:`smallest_rank_meeting` with the
    kind's measured ``error``. ``build(fit, rank)`` makes the result in the input's kind."""
    check_choice(select, "select", SELECT_RULES)
    check_choice(middle, "middle", MIDDLES)
    check_choice(svd, "svd", SVD_METHODS)
    options = {"select": select, "middle": middle, "seed": seed, "svd": svd}
    options["rtol"] = check_rtol(rtol)
    tol = check_rank_or_tol(rank, tol)

    def fit(k: int, rows: int, cols: int) -> CUR:
        return build(fit_by_products(op, k, rows, cols, **options), k)

    if tol is None:
        rank = check_rank(rank, "rank", min(op.shape))
        return fit(rank, *index_counts(rank, n_rows, n_cols, op.shape))
    if n_rows is not None or n_cols is not None:
        raise ValueError("n_rows and n_cols cannot be combined with tol=; they follow the rank")
    return smallest_rank_meeting(lambda k: fit(k, k, k), error, tol, min(op.shape))


def cur_of_kind(A: Any, rank: Any, *, check_finite: bool = True, **options: Any) -> CUR:
    """:func:`tcur.linalg.cur` of a ``scipy.sparse`` matrix (:mod:`tcur.linalg.sparse`) or a Dask
    array (:mod:`tcur.linalg.lazy`); ``options`` are the other keyword arguments of ``cur``."""
    if is_sparse(A):
        from tcur.linalg.sparse import sparse_cur

        return sparse_cur(A, rank, check_finite=check_finite, **options)
    from tcur.linalg.lazy import dask_cur

    return dask_cur(A, rank, check_finite=check_finite, **options)
