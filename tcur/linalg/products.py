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
- ``"deim"``, ``"qdeim"``, ``"leverage"``, ``"leverage_sample"``: randomized SVD with two power
  iterations (:func:`tcur.linalg.svd_bases.operator_randomized_svd`: 6 passes), then one gather
  and, for ``middle="optimal"``, one product: **8 passes** (7 with ``middle="pinv"``). With
  ``svd="exact"`` the singular vectors come from :func:`scipy.sparse.linalg.svds` on the
  operator (one pass per ARPACK iteration: many).
- ``"norm"``, ``"inverse_norm"``, ``"uniform"``: one pass for the norms, one gather, one product
  for the optimal middle: **3 passes** (2 with ``middle="pinv"``).

``middle="pinv"`` uses the intersection ``R[:, cols]`` (from the gathered rows) with the rank
cap of :func:`tcur.linalg.pinv.pinv`.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from tcur._backend import binary_scale, namespace, spawn_rngs
from tcur.linalg.middle import explicit_optimal
from tcur.linalg.options import MIDDLES, explicit_rtol
from tcur.linalg.orthonormal import (
    Projection,
    interpolation_projection,
    numerical_range,
    orthonormal_columns,
    spectral_range_factor,
    without_roundoff,
)
from tcur.linalg.pinv import pinv
from tcur.linalg.pivoting import (
    PIVOTING_RULES,
    SKETCH_OVERSAMPLE,
    pick,
    sketch_pivots,
)
from tcur.linalg.results import CUR
from tcur.linalg.selection import BASIS_RULES, SELECT_RULES, choose_indices
from tcur.linalg.svd_bases import SVD_METHODS, operator_singular_vectors
from tcur.linalg.tolerance import estimate_rank, fit_rank_or_tol
from tcur.validation import check_choice, check_rank_or_tol, check_rtol

EXACT_BELOW = 100
""":func:`operator_error` measures exactly (one pass) below ``EXACT_BELOW * sqrt(eps)``."""


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

    @abstractmethod
    def frobenius_norm(self) -> float:
        """``||A||_F`` without overflow or underflow (at most one pass)."""

    @abstractmethod
    def residual_norm(self, form: Projection) -> float:
        """One pass: ``||A - form.value()||_F``, formed block by block."""

    def times(self, X: np.ndarray) -> np.ndarray:
        """``A @ X`` (one pass)."""
        return self.products(X, None)[0]

    def adjoint_times(self, X: np.ndarray) -> np.ndarray:
        """``A^H @ X`` (one pass)."""
        return self.products(None, X)[0]


@dataclass(frozen=True)
class Fit:
    """Indices, the dense middle factor and the stable form found by :func:`fit_by_products`."""

    rows: np.ndarray
    cols: np.ndarray
    U: np.ndarray
    form: Projection


def _gaussian(rng: np.random.Generator, shape: tuple[int, int], dtype: np.dtype) -> np.ndarray:
    return rng.standard_normal(shape).astype(dtype, copy=False)


@dataclass(frozen=True)
class Selection:
    """Chosen indices with the gathered ``C = A[:, cols]`` and ``R = A[rows, :]`` (dense)."""

    rows: np.ndarray
    cols: np.ndarray
    C: np.ndarray
    R: np.ndarray
    left: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
    """``C``'s :func:`tcur.linalg.orthonormal.spectral_range_factor` when already computed."""


def _pivoted_selection(A: Operator, n_rows: int, n_cols: int, rule: str, seed: Any) -> Selection:
    """A pivoting rule in four passes: ``X = A Omega``, ``Y = A^H orth(X)``, columns from ``Y``
    and their gather, rows on ``C``'s range (extended by the first ``n_rows - n_cols`` columns of
    ``X`` when more rows than columns are kept) and their gather."""
    sketch_rng, sample_rng = spawn_rngs(seed, 2)
    m, n = A.shape
    size = min(max(n_rows, n_cols) + SKETCH_OVERSAMPLE, m, n)
    X = A.times(_gaussian(sketch_rng, (n, size), A.dtype))
    cols = sketch_pivots(rule, A.adjoint_times(orthonormal_columns(X))[None], n_cols, sample_rng)
    (C,), _ = A.gather([cols], [])
    left = spectral_range_factor(np, C)
    Q_C = without_roundoff(np, *left)[0]
    missing = n_rows - n_cols
    # The pivots depend only on the subspace: an orthonormal basis of [Q_C, X'] spans [C, X'].
    extended = np.concatenate([Q_C, X[:, :missing]], axis=1)
    basis = numerical_range(np, extended) if missing > 0 else Q_C
    rows = pick(rule, basis, n_rows, sample_rng)
    _, (R,) = A.gather([], [rows])
    return Selection(rows, cols, C, R, left)


def _single_candidate(
    A: Operator, rank: int, n_rows: int, n_cols: int, select: str, seed: Any, svd: str
) -> Selection:
    """A basis or norm rule: the SVD or the norms, then one gather."""
    sketch_rng, sample_rng = spawn_rngs(seed, 2)
    U = V = row_norms = col_norms = None
    if select in BASIS_RULES:
        U, _, V = operator_singular_vectors(A, rank, svd=svd, seed=sketch_rng)
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
    cutoff = explicit_rtol(rtol, float(np.finfo(A.dtype).eps))
    left = picked.left or spectral_range_factor(np, picked.C)
    right = spectral_range_factor(np, picked.R.conj().T)
    if middle == "pinv":  # interpolation needs the numerical ranges; projection does not
        U = pinv(picked.R[:, cols], cutoff, rank=rank)
        capped = rank < min(n_rows, n_cols)
        form = interpolation_projection(np, left, right, rows, cols, U, capped, cutoff)
        return Fit(rows, cols, U, form)
    (Q_C, T_C, _), (Q_R, T_R, _) = left, right
    core = _coordinates(A, Q_C, Q_R)
    return Fit(rows, cols, explicit_optimal(T_C, core, T_R, cutoff), Projection(Q_C, core, Q_R))


def _coordinates(A: Operator, Q_C: np.ndarray, Q_R: np.ndarray) -> np.ndarray:
    """``Q_C^H A Q_R`` in one pass, the product taken on ``A``'s short side."""
    m, n = A.shape
    if m >= n:  # (A^H Q_C)^H Q_R = Q_C^H A Q_R
        return np.asarray(A.adjoint_times(Q_C).conj().T @ Q_R)
    return np.asarray(Q_C.conj().T @ A.times(Q_R))


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
    :func:`fit_by_products` at ``rank``; for ``tol=`` the search of :mod:`tcur.linalg.tolerance`
    (the rank estimated by the range finder on the operator, then grown until
    :func:`operator_error` meets ``tol``). ``build(fit, rank)`` makes the result in the input's
    kind."""
    check_choice(select, "select", SELECT_RULES)
    check_choice(middle, "middle", MIDDLES)
    check_choice(svd, "svd", SVD_METHODS)
    options = {"select": select, "middle": middle, "seed": seed, "svd": svd}
    options["rtol"] = check_rtol(rtol)
    tol = check_rank_or_tol(rank, tol)
    products = OperatorProducts(op)
    found = fit_rank_or_tol(
        lambda k, rows, cols: fit_by_products(op, k, rows, cols, **options),
        lambda f: operator_error(op, f, middle, products.norm),
        lambda target: estimate_rank(products, target, seed=seed),
        rank=rank,
        tol=tol,
        n_rows=n_rows,
        n_cols=n_cols,
        shape=op.shape,
    )
    return build(found, int(rank) if tol is None else found.rows.size)


class OperatorProducts:
    """An :class:`Operator` as the batch of one matrix that
    :func:`tcur.linalg.tolerance.estimate_rank` reads, divided by a power of two near its
    Frobenius norm (exact; no overflow or underflow at 1e+-300)."""

    def __init__(self, op: Operator) -> None:
        self.op, self.xp = op, namespace(np.zeros(0))
        self.norm = op.frobenius_norm()
        self.scale = binary_scale(self.norm)
        self.shape = (1, *op.shape)
        self.eps = float(np.finfo(op.dtype).eps)

    def times(self, X: np.ndarray) -> np.ndarray:
        return (self.op.times(np.asarray(X[0])) / self.scale)[None]

    def adjoint_times(self, X: np.ndarray) -> np.ndarray:
        return (self.op.adjoint_times(np.asarray(X[0])) / self.scale)[None]

    def squared_norms(self) -> np.ndarray:
        return np.array([(self.norm / self.scale) ** 2])

    def gaussian(self, rng: np.random.Generator, width: int) -> np.ndarray:
        return _gaussian(rng, (self.op.shape[1], width), self.op.dtype)[None]

    def residual_squares(self, Q: np.ndarray, B: np.ndarray) -> np.ndarray:
        identity = np.eye(Q.shape[-1], dtype=Q.dtype)
        residual = self.op.residual_norm(Projection(Q[0] * self.scale, identity, B[0].conj().T))
        return np.array([(residual / self.scale) ** 2])


def operator_error(op: Operator, fit: Fit, middle: str, norm: float) -> float:
    """Relative Frobenius error ``||A - form.value()|| / ||A||`` of a fit (``norm = ||A||_F``).

    In orthonormal coordinates, without forming ``A - Q_C M Q_R^H``: with ``M = Q_C^H A Q_R``,
    ``||A - Q_C N Q_R^H||^2 = ||A||^2 - ||M||^2 + ||M - N||^2`` (for ``middle="optimal"``
    ``N = M``, and no pass is needed). The difference of squares is accurate to about
    ``eps / error^2`` relative, so below :data:`EXACT_BELOW` times ``sqrt(eps)`` the error is
    measured exactly by :meth:`Operator.residual_norm` (one more pass).
    """
    if norm == 0.0:
        return 0.0
    scale = binary_scale(norm)
    core = fit.form.core / scale
    M = core if middle == "optimal" else _coordinates(op, fit.form.left, fit.form.right) / scale
    squared = (norm / scale) ** 2 - float(np.sum(np.abs(M) ** 2))
    squared += float(np.sum(np.abs(M - core) ** 2))
    error = math.sqrt(max(squared, 0.0)) * scale / norm
    if error >= EXACT_BELOW * math.sqrt(float(np.finfo(op.dtype).eps)):
        return error
    return op.residual_norm(fit.form) / norm
