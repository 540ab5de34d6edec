"""Index selection for CUR: DEIM, Q-DEIM, leverage scores, norms and random sampling.

The rules work on host NumPy copies (index selection is not differentiable). Each rule picks
``count`` distinct indices from either a basis ``V`` of shape ``(n, k)`` (the leading singular
vectors along the axis being sampled) or from squared norms of the slices along that axis:

- ``"deim"``: discrete empirical interpolation (Chaturantabut & Sorensen 2010; Sorensen & Embree
  2016) on ``V``; when ``count > k`` the extra indices are the largest leverage scores among the
  rest (L-DEIM, Gidisu & Hochstenbach 2022).
- ``"qdeim"``: column-pivoted QR of ``V^T`` (Drmač & Gugercin 2016), extended like ``"deim"``.
- ``"leverage"``: the ``count`` largest leverage scores (deterministic).
- ``"leverage_sample"``: sampled without replacement with probability proportional to the leverage
  scores (Mahoney & Drineas 2009).
- ``"norm"``: the ``count`` largest squared norms.
- ``"inverse_norm"``: sampled with probability proportional to the inverse squared norms (CURLoRA,
  Fawi 2024: rarely used directions, so the update disturbs the model least). Zero slices (e.g.
  pruned rows) carry no direction at all and are never sampled; only when fewer than ``count``
  slices are nonzero are all nonzero ones taken and the rest filled with the zero slices of
  lowest index (deterministic). The probabilities are formed as ``(min_norm / norm)^2``, so
  tiny norms (1e-300) never overflow.
- ``"uniform"``: uniform sampling without replacement.

The norms are computed with each slice scaled by its largest entry, so rows of 1e-300 or 1e300
neither underflow to zero nor overflow. DEIM and Q-DEIM need a basis of full column rank and
raise ``ValueError`` otherwise (they would repeat indices).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from tcur._backend import (
    Array,
    as_float_array,
    eps,
    index_array,
    is_torch,
    like,
    namespace,
    spawn_rngs,
    tiny,
    to_numpy,
)
from tcur.linalg.pivoting import PIVOTING_RULES, Pivots, column_pivoted_qr, select_pivoted
from tcur.linalg.svd_bases import SVD_METHODS, singular_vectors
from tcur.validation import check_choice, check_rank

SELECT_RULES = (
    "sketch_qr",
    "arp",
    "deim",
    "qdeim",
    "leverage",
    "leverage_sample",
    "norm",
    "inverse_norm",
    "uniform",
)
"""Every rule; ``"sketch_qr"`` and ``"arp"`` are in :mod:`tcur.linalg.pivoting`."""
BASIS_RULES = ("deim", "qdeim", "leverage", "leverage_sample")
"""Rules that need the leading singular vectors."""
RANDOM_RULES = ("arp", "leverage_sample", "inverse_norm", "uniform")
"""Rules that draw from ``seed``."""


def _host_basis(V: Array, check_finite: bool) -> np.ndarray:
    V = as_float_array(V, "V", ndim=2, finite=check_finite)
    n, k = V.shape
    if k > n:
        raise ValueError(f"V must have at least as many rows as columns, got shape {(n, k)}")
    return to_numpy(V)


def _rank_deficient(rule: str, j: int, k: int, size: float) -> ValueError:
    return ValueError(
        f"V is rank-deficient: column {j} lies in the span of the columns before it to working "
        f"precision ({rule} residual {size:.3e}); {rule} needs {k} linearly independent columns "
        f"to return {k} distinct indices"
    )


def _deim_host(V: np.ndarray) -> np.ndarray:
    n, k = V.shape
    # DEIM's choices do not change when a column is scaled; a power of two per column (exact)
    # keeps the interpolation coefficients of a 1e300 basis from overflowing.
    tol = max(n, k) * np.finfo(V.dtype).eps
    _, exponents = np.frexp(np.max(np.abs(V), axis=0))
    half = -exponents // 2  # in two factors: 2**1074 (subnormal columns) is not a float
    V = V * np.ldexp(1.0, half) * np.ldexp(1.0, -exponents - half)
    picked: list[int] = []
    for j in range(k):
        residual = V[:, j]
        if picked:
            residual = residual - V[:, :j] @ np.linalg.solve(V[picked, :j], V[picked, j])
        i = int(np.argmax(np.abs(residual)))
        if not abs(residual[i]) > tol * np.max(np.abs(V[:, j])):
            raise _rank_deficient("DEIM", j, k, float(abs(residual[i])))
        picked.append(i)
    return np.asarray(picked, dtype=np.int64)


def _qdeim_host(V: np.ndarray) -> np.ndarray:
    n, k = V.shape
    diagonal, pivots = column_pivoted_qr(V.conj().T)
    if not diagonal[k - 1] > max(n, k) * np.finfo(V.dtype).eps * diagonal[0]:
        j = int(np.argmax(~(diagonal > max(n, k) * np.finfo(V.dtype).eps * diagonal[0])))
        raise _rank_deficient("Q-DEIM", j, k, float(diagonal[j]))
    return np.asarray(pivots[:k], dtype=np.int64)


def deim(V: Array, *, check_finite: bool = True) -> Array:
    """Discrete empirical interpolation (DEIM) indices of a basis.

    Greedy: the first index is ``argmax |V[:, 0]|``; index ``j`` is the position of the largest
    entry of the interpolation residual of column ``j`` on the indices chosen so far.

    Parameters
    ----------
    V : array of shape (n, k), k <= n
        A basis with linearly independent columns (e.g. leading singular vectors).
    check_finite : bool
        Raise ``ValueError`` on NaN/Inf entries; ``False`` skips the scan.

    Returns
    -------
    indices : integer array of shape (k,)
        Distinct row indices, of the input's array kind.

    Raises
    ------
    ValueError
        If a column of ``V`` lies in the span of the previous ones to working precision
        (relative size ``max(n, k) * eps``): the greedy step would repeat an index.

    Examples
    --------
    >>> import numpy as np
    >>> from tcur.linalg import deim
    >>> deim(np.eye(4)[:, :2] + 0.1)
    array([0, 1])
    """
    return index_array(_deim_host(_host_basis(V, check_finite)), V)


def qdeim(V: Array, *, check_finite: bool = True) -> Array:
    """Q-DEIM indices of a basis: the first ``k`` pivots of a column-pivoted QR of ``V^T``.

    ``ValueError`` if ``V`` is rank-deficient to working precision (the last diagonal entry of
    the triangular factor is at most ``max(n, k) * eps`` times the first), as for :func:`deim`;
    ``check_finite=False`` skips the NaN/Inf scan.

    Examples
    --------
    >>> import numpy as np
    >>> from tcur.linalg import qdeim
    >>> sorted(qdeim(np.eye(4)[:, :2]).tolist())
    [0, 1]
    """
    return index_array(_qdeim_host(_host_basis(V, check_finite)), V)


def _leverage_from_basis(V: np.ndarray) -> np.ndarray:
    scores = np.sum(np.abs(V) ** 2, axis=1)
    return scores / scores.sum()


def leverage_scores(
    A: Array, rank: int, axis: int, *, svd: str = "auto", check_finite: bool = True
) -> Array:
    """Rank-``rank`` statistical leverage scores of the rows (``axis=0``) or columns (``axis=1``).

    For ``A = U S V^T`` the score of row ``i`` is ``||U_k[i, :]||^2 / k`` (columns: ``V_k``).
    The scores are non-negative and sum to 1. ``svd`` is ``"auto"``, ``"exact"`` or
    ``"randomized"`` (see :mod:`tcur.linalg.matrix_cur`); ``check_finite=False`` skips the NaN/Inf
    scan of ``A``.

    Examples
    --------
    >>> import numpy as np
    >>> from tcur.linalg import leverage_scores
    >>> p = leverage_scores(np.diag([3.0, 2.0, 1.0]), 2, axis=0)
    >>> np.round(p, 3).tolist()
    [0.5, 0.5, 0.0]
    """
    A = as_float_array(A, "A", ndim=2, finite=check_finite)
    check_choice(svd, "svd", SVD_METHODS)
    if isinstance(axis, bool) or axis not in (0, 1):
        raise ValueError(f"axis must be 0 (rows) or 1 (columns), got {axis!r}")
    rank = check_rank(rank, "rank", min(A.shape))
    U, _, V = singular_vectors(A, rank, svd=svd)
    return like(_leverage_from_basis(U if axis == 0 else V), A, dtype=None)


def _top(scores: np.ndarray, count: int, exclude: np.ndarray | None = None) -> np.ndarray:
    scores = scores.astype(np.float64, copy=True)
    if exclude is not None:
        scores[exclude] = -np.inf
    order = np.argsort(-scores, kind="stable")
    return order[:count].astype(np.int64)


def _sample(weights: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    weights = np.asarray(weights, dtype=np.float64)
    weights = weights + weights.sum() * 1e-12 / weights.size + 1e-300
    chosen = rng.choice(weights.size, size=count, replace=False, p=weights / weights.sum())
    return np.asarray(chosen, dtype=np.int64)


def _extend_by_leverage(first: np.ndarray, V: np.ndarray, count: int) -> np.ndarray:
    if count <= first.size:
        return first[:count]
    extra = _top(_leverage_from_basis(V), count - first.size, exclude=first)
    return np.concatenate([first, extra])


def _inverse_norm_sample(norms: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    """CURLoRA's rule with zero slices excluded (see the module docstring)."""
    norms = np.minimum(np.asarray(norms, dtype=np.float64), np.finfo(np.float64).max)
    nonzero = np.flatnonzero(norms > 0)
    if nonzero.size <= count:
        zeros = np.flatnonzero(~(norms > 0))
        return np.concatenate([nonzero, zeros[: count - nonzero.size]]).astype(np.int64)
    ratio = norms[nonzero].min() / norms[nonzero]
    return nonzero[_sample(ratio**2, count, rng)]


def choose_indices(
    rule: str,
    count: int,
    *,
    basis: np.ndarray | None = None,
    norms: np.ndarray | None = None,
    rng: np.random.Generator | None = None,
) -> np.ndarray:
    """Apply a selection ``rule`` to host data; returns ``count`` distinct int64 indices.

    ``basis`` (n, k) is needed by :data:`BASIS_RULES`, ``norms`` (n,) (non-negative slice
    norms, see :func:`slice_norms`) by the norm rules and ``"uniform"``, and ``rng`` by
    :data:`RANDOM_RULES`. Shared by matrix, tensor and mode-wise CUR.
    """
    check_choice(rule, "select", SELECT_RULES)
    if rule in ("deim", "qdeim"):
        assert basis is not None
        first = _deim_host(basis) if rule == "deim" else _qdeim_host(basis)
        return _extend_by_leverage(first, basis, count)
    if rule == "leverage":
        assert basis is not None
        return _top(_leverage_from_basis(basis), count)
    if rule == "norm":
        assert norms is not None
        return _top(norms, count)
    assert rng is not None
    if rule == "leverage_sample":
        assert basis is not None
        return _sample(_leverage_from_basis(basis), count, rng)
    if rule == "inverse_norm":
        assert norms is not None
        return _inverse_norm_sample(norms, count, rng)
    assert norms is not None
    return rng.choice(norms.size, size=count, replace=False).astype(np.int64)


def slice_norms(A: Array, axis: int | tuple[int, ...]) -> np.ndarray:
    """Host float64 copy of the 2-norms ``sqrt(sum(|A|^2, axis))``, reduced where ``A`` lives.

    One pass in the usual range. When a norm comes out non-finite or so small that its square
    may have underflowed (zero slices included), every slice is divided by its largest entry
    before squaring, so norms of 1e-300 or 1e300 come out right instead of as 0 or inf.

    Examples
    --------
    >>> import numpy as np
    >>> from tcur.linalg.selection import slice_norms
    >>> slice_norms(np.array([[3e-300, 4e-300], [0.0, 0.0]]), axis=1).tolist()
    [5e-300, 0.0]
    """
    xp = namespace(A)
    data = A.detach() if is_torch(A) else A
    with np.errstate(over="ignore", under="ignore"):  # detected below, then recomputed
        plain = np.asarray(to_numpy(xp.linalg.vector_norm(data, axis=axis)), dtype=np.float64)
    # Below sqrt(tiny) / eps the squares of the entries lose bits to underflow.
    small = math.sqrt(tiny(A)) / eps(A)
    if np.all(np.isfinite(plain) & (plain >= small)):
        return plain
    magnitude = xp.abs(data)
    peak = xp.max(magnitude, axis=axis, keepdims=True)
    safe = xp.where(peak > 0, peak, xp.ones_like(peak))
    scaled = xp.linalg.vector_norm(magnitude / safe, axis=axis)
    return np.asarray(to_numpy(scaled * xp.max(magnitude, axis=axis)), dtype=np.float64)


def select_matrix(
    A: Array,
    rank: int,
    n_rows: int,
    n_cols: int,
    *,
    select: str,
    seed: Any = None,
    svd: str = "auto",
) -> Pivots:
    """Rows and columns of a validated matrix for CUR, with what the pivoting rules measured of
    that CUR (:class:`tcur.linalg.pivoting.Pivots`; nothing for the other rules).

    ``select`` and ``svd`` are validated for every rule. The randomized SVD and the sampling
    draw from independent streams spawned from ``seed`` (:func:`tcur._backend.spawn_rngs`);
    ``seed=None`` makes both random.
    """
    check_choice(select, "select", SELECT_RULES)
    check_choice(svd, "svd", SVD_METHODS)
    if select in PIVOTING_RULES:
        chosen = select_pivoted(A[None, ...], n_rows, n_cols, rule=select, seed=seed)
        measured = chosen.measured.first() if chosen.measured is not None else None
        return Pivots(chosen.rows, chosen.cols, measured)
    sketch_rng, sample_rng = spawn_rngs(seed, 2)
    U = V = None
    if select in BASIS_RULES:
        U, _, V = singular_vectors(A, rank, svd=svd, seed=sketch_rng)
    row_norms = col_norms = None
    if select not in BASIS_RULES:
        row_norms, col_norms = slice_norms(A, axis=1), slice_norms(A, axis=0)
    rows = choose_indices(select, n_rows, basis=U, norms=row_norms, rng=sample_rng)
    cols = choose_indices(select, n_cols, basis=V, norms=col_norms, rng=sample_rng)
    return Pivots(rows, cols)
