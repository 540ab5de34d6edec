"""Matrix CUR through products with ``A``: the engine of the sparse and Dask paths.

Where ``A`` cannot (``scipy.sparse``: never densified) or should not (Dask: larger than memory)
be held as a dense array, :func:`fit_by_products` needs only an :class:`Operator`: products of
``A`` and ``A^H`` with thin dense blocks, a *gather* of a few whole columns and rows, and the
row and column norms. Every call is one **pass** over ``A`` (``Operator.passes`` counts them;
for Dask each is one ``dask.compute``, reading every chunk once). The rules are those of the
dense code, so the same seed gives the same indices as on ``A`` made dense for ``"sketch_qr"``
and the deterministic rules (``"arp"`` draws its samples in another order):

- ``"sketch_qr"`` (default) and ``"arp"``: the candidates of
  :func:`tcur.linalg.pivoting.select_pivoted` (three, plus Q-DEIM on the sketch's dominant
  subspace for ``"sketch_qr"``). Passes: (1) ``Y = A Omega``; (2) ``A^H Q_0``; (3)
  ``A orth(.)``; (4) ``A^H orth(.)``, with the extra range sketches of an oversampled side riding
  along in (3) and (4); (5) gather the first index set of every candidate (columns, or rows for
  the transposed one); (6) gather the other side, chosen conditioned on the first; (7)
  ``A^H [Q_C1, Q_C2, ...]`` (or ``A [Q_R1, ...]`` when ``A`` is wide: the product on the short
  side), which gives every candidate's exact error ``||A||_F^2 - ||Q_C^H A Q_R||_F^2`` (the
  dense code pre-ranks them on the sketch and measures two) and the optimal middle of the best:
  ``U = (pinv(C) Q_C) (Q_C^H A Q_R) (Q_R^H pinv(R))``. **7 passes**, for either middle. The
  pivots come from :func:`pruned_pivots` (the same pivots, from the longest rows only).
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

import warnings
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from tcur._backend import check_choice, check_rank, is_sparse, spawn_rngs
from tcur.linalg._svd import SVD_METHODS
from tcur.linalg.cur import CUR, MIDDLES, index_counts
from tcur.linalg.pinv import check_rtol, pinv
from tcur.linalg.pivoting import (
    PIVOTING_RULES,
    SKETCH_OVERSAMPLE,
    numerical_range,
    pick,
    pivoted_qr_indices,
    top_right_vectors,
)
from tcur.linalg.selection import BASIS_RULES, SELECT_RULES, choose_indices
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

    def times_each(self, blocks: list[np.ndarray], adjoint: bool) -> list[np.ndarray]:
        """One pass: ``A @ X`` (``A^H @ X`` with ``adjoint``) for every ``X`` of ``blocks``.

        Here the blocks are joined side by side; an operator may override it to avoid the copy.
        """
        joined = np.concatenate(blocks, axis=1)
        out = self.adjoint_times(joined) if adjoint else self.times(joined)
        return np.split(out, np.cumsum([X.shape[1] for X in blocks])[:-1], axis=1)


@dataclass(frozen=True)
class Fit:
    """Indices and the dense middle factor found by :func:`fit_by_products`."""

    rows: np.ndarray
    cols: np.ndarray
    U: np.ndarray


def _gaussian(rng: np.random.Generator, shape: tuple[int, int], dtype: np.dtype) -> np.ndarray:
    return rng.standard_normal(shape).astype(dtype, copy=False)


def _orth(Y: np.ndarray) -> np.ndarray:
    """Orthonormal basis of the range of a tall ``Y`` (economic Householder QR, C order)."""
    import scipy.linalg  # deferred: keeps `import tcur` fast

    return np.ascontiguousarray(scipy.linalg.qr(Y, mode="economic", check_finite=False)[0])


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


class Gathered:
    """Gathered columns (``"cols"``) and rows (``"rows"``) of ``A`` by index set, with their
    numerical range bases and small factors (``A[:, c] = Q T`` and ``A[r, :]^H = Q T``)
    computed once. A block is dropped as soon as its basis is known: the factors carry all that
    is needed later, so at most the bases (not the bases and the blocks) of every candidate are
    held at once."""

    def __init__(self) -> None:
        self.blocks: dict[tuple[str, bytes], np.ndarray] = {}
        self.bases: dict[tuple[str, bytes], tuple[np.ndarray, np.ndarray]] = {}

    def add(self, side: str, indices: list[np.ndarray], blocks: list[np.ndarray]) -> None:
        for idx, block in zip(indices, blocks, strict=True):
            self.blocks[side, idx.tobytes()] = block

    def block(self, side: str, idx: np.ndarray) -> np.ndarray:
        return self.blocks[side, idx.tobytes()]

    def basis(self, side: str, idx: np.ndarray, extra: np.ndarray | None = None) -> np.ndarray:
        """Range basis of the block (``A[:, c]``, or ``A[r, :]^H``), extended by ``extra``."""
        key = (side, idx.tobytes())
        if extra is None and key in self.bases:
            return self.bases[key][0]
        block = self.block(side, idx)
        block = block if side == "cols" else block.conj().T
        if extra is not None:
            return range_basis(np.concatenate([block, extra], axis=1))
        if key not in self.bases:
            self.bases[key] = range_factor(block)
            del self.blocks[key]
        return self.bases[key][0]

    def factor(self, side: str, idx: np.ndarray) -> np.ndarray:
        """``T`` of :meth:`basis` (computed with it)."""
        self.basis(side, idx)
        return self.bases[side, idx.tobytes()][1]


def _outer(
    rule: str, sketch: np.ndarray, count: int, orthonormal: bool, rng: np.random.Generator
) -> np.ndarray:
    """Indices from a sketch, as :func:`tcur.linalg.pivoting.select_pivoted` picks them."""
    if rule == "arp" or orthonormal:
        basis = top_right_vectors(sketch[None, ...], count)[0]
        if orthonormal:
            basis = numerical_range(np, basis)[:, :count]
        return _pick(rule, basis, count, rng)
    return _pick(rule, sketch, count, rng)


def _pivoting_candidates(
    A: Operator, n_rows: int, n_cols: int, rule: str, seed: Any
) -> tuple[list[tuple[np.ndarray, np.ndarray]], Gathered]:
    """The candidates of :func:`tcur.linalg.pivoting.select_pivoted` in six passes, with the
    gathered columns and rows (keyed by the index bytes) for the final pass.

    Each candidate is ``(side, sketch, orthonormal)``: indices along ``side`` from the sketch,
    then the other side conditioned on them. The range sketches of an oversampled second side
    are drawn in the dense code's order and ride along in passes 3 and 4.
    """
    sketch_rng, sample_rng = spawn_rngs(seed, 2)
    m, n = A.shape
    size = min(max(n_rows, n_cols) + SKETCH_OVERSAMPLE, m, n)
    omega = _gaussian(sketch_rng, (n, size), A.dtype)
    specs = [("cols", 0, False), ("cols", 1, False), ("rows", 0, False)]
    if rule == "sketch_qr":
        specs.append(("cols", 1, True))
    extras: list[np.ndarray | None] = []
    for side, _, _ in specs:
        missing = n_rows - n_cols if side == "cols" else n_cols - n_rows
        shape = (n, missing) if side == "cols" else (m, missing)
        extras.append(_gaussian(sketch_rng, shape, A.dtype) if missing > 0 else None)
    Y0 = A.adjoint_times(_orth(A.times(omega)))
    right = [e for (side, _, _), e in zip(specs, extras, strict=True) if side == "cols"]
    left = [e for (side, _, _), e in zip(specs, extras, strict=True) if side == "rows"]
    X1, *sketched_right = _split(A.times(_join(_orth(Y0), right)), size, right)
    Y1, *sketched_left = _split(A.adjoint_times(_join(_orth(X1), left)), size, left)
    sketches = {"cols": (Y0, Y1), "rows": (X1,)}
    first = [
        _outer(rule, sketches[side][k], n_cols if side == "cols" else n_rows, ortho, sample_rng)
        for side, k, ortho in specs
    ]
    is_cols = [side == "cols" for side, _, _ in specs]
    cols_first = [i for i, c in zip(first, is_cols, strict=True) if c]
    rows_first = [i for i, c in zip(first, is_cols, strict=True) if not c]
    gathered = Gathered()
    _gather(A, gathered, cols_first, rows_first)
    sketched = {"cols": iter(sketched_right), "rows": iter(sketched_left)}
    second: list[np.ndarray] = []
    known: dict[tuple[str, bytes], np.ndarray] = {}  # sketch_qr is deterministic: pick once
    for (side, _, _), idx, extra in zip(specs, first, extras, strict=True):
        key = (side, idx.tobytes())
        if rule == "sketch_qr" and extra is None and key in known:
            second.append(known[key])
            continue
        basis = gathered.basis(side, idx, next(sketched[side]) if extra is not None else None)
        second.append(_pick(rule, basis, n_rows if side == "cols" else n_cols, sample_rng))
        known[key] = second[-1]
    rows_second = [i for i, c in zip(second, is_cols, strict=True) if c]
    cols_second = [i for i, c in zip(second, is_cols, strict=True) if not c]
    _gather(A, gathered, cols_second, rows_second)
    candidates = [
        (s_idx, f_idx) if c else (f_idx, s_idx)
        for f_idx, s_idx, c in zip(first, second, is_cols, strict=True)
    ]
    return candidates, gathered


def _gather(A: Operator, into: Gathered, cols: list[np.ndarray], rows: list[np.ndarray]) -> None:
    """One pass gathering ``A[:, c]`` and ``A[r, :]`` into ``into``."""
    col_blocks, row_blocks = A.gather(cols, rows)
    into.add("cols", cols, col_blocks)
    into.add("rows", rows, row_blocks)


def _split(X: np.ndarray, size: int, extras: list[np.ndarray | None]) -> list[np.ndarray]:
    """``X`` cut into its first ``size`` columns and one block per array of ``extras``."""
    widths = [size, *(e.shape[1] for e in extras if e is not None)]
    return np.split(X, np.cumsum(widths)[:-1], axis=1)


def _join(X: np.ndarray, extras: list[np.ndarray | None]) -> np.ndarray:
    return np.concatenate([X, *(e for e in extras if e is not None)], axis=1)


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
) -> tuple[np.ndarray, np.ndarray]:
    sketch_rng, sample_rng = spawn_rngs(seed, 2)
    U = V = row_norms = col_norms = None
    if select in BASIS_RULES:
        U, _, V = singular_vectors(A, rank, svd=svd, seed=sketch_rng)
    else:
        row_norms, col_norms = A.norms()
    rows = choose_indices(select, n_rows, basis=U, norms=row_norms, rng=sample_rng)
    cols = choose_indices(select, n_cols, basis=V, norms=col_norms, rng=sample_rng)
    return rows, cols


def _safe_norm(X: np.ndarray) -> float:
    """Frobenius norm of ``X`` computed on ``X / max|X|`` (no overflow or underflow at 1e+-300):
    the square root of a candidate's captured energy ``||Q_C^H A Q_R||_F^2``."""
    peak = float(np.max(np.abs(X))) if X.size else 0.0
    return 0.0 if peak == 0.0 else peak * float(np.linalg.norm(X / peak))


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
    (7, (3, 3))
    """
    if select in PIVOTING_RULES:
        candidates, gathered = _pivoting_candidates(A, n_rows, n_cols, select, seed)
    else:
        candidates = [_single_candidate(A, rank, n_rows, n_cols, select, seed, svd)]
        gathered = Gathered()
        _gather(A, gathered, [candidates[0][1]], [candidates[0][0]])
    if middle == "pinv" and len(candidates) == 1:
        rows, cols = candidates[0]
        return Fit(rows, cols, pinv(gathered.block("rows", rows)[:, cols], rtol, rank=rank))
    bases_C = [gathered.basis("cols", c) for _, c in candidates]
    bases_R = [gathered.basis("rows", r) for r, _ in candidates]
    tall = A.shape[0] >= A.shape[1]  # multiply on the short side: n x (candidates * k) blocks
    keys = [(c if tall else r).tobytes() for r, c in candidates]
    unique = {key: Q for key, Q in zip(keys, bases_C if tall else bases_R, strict=True)}
    projected = dict(zip(unique, A.times_each(list(unique.values()), adjoint=tall), strict=True))
    if tall:  # (A^H Q_C)^H Q_R = Q_C^H A Q_R
        cores = [projected[k].conj().T @ Q_R for k, Q_R in zip(keys, bases_R, strict=True)]
    else:
        cores = [Q_C.conj().T @ projected[k] for k, Q_C in zip(keys, bases_C, strict=True)]
    captured = np.asarray([_safe_norm(core) for core in cores])
    # Within round-off of the best (1000 eps in the squared energies) is a tie: take the first.
    eps = float(np.finfo(A.dtype).eps)
    best = int(np.flatnonzero(captured >= captured.max() * (1 - 500 * eps))[0])
    rows, cols = candidates[best]
    T_C, T_R = gathered.factor("cols", cols), gathered.factor("rows", rows)
    m, n = A.shape
    if middle == "pinv":  # R[:, cols] = T_R^H Q_R[cols]^H
        W = T_R.conj().T @ bases_R[best][cols, :].conj().T
        return Fit(rows, cols, pinv(W, _cutoff(rtol, (n_rows, n), A.dtype), rank=rank))
    # C = Q_C T_C and R = T_R^H Q_R^H, so pinv(C) A pinv(R) = pinv(T_C) (Q_C^H A Q_R) pinv(T_R^H),
    # with the cutoffs pinv would use on C and R themselves.
    left = pinv(T_C, _cutoff(rtol, (m, n_cols), A.dtype))
    right = pinv(T_R.conj().T, _cutoff(rtol, (n_rows, n), A.dtype))
    return Fit(rows, cols, left @ cores[best] @ right)


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
