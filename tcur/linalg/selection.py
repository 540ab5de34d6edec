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
  Fawi 2024: rarely used directions, so the update disturbs the model least).
- ``"uniform"``: uniform sampling without replacement.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tcur._backend import (
    Array,
    as_float_array,
    check_choice,
    check_rank,
    index_array,
    is_torch,
    like,
    make_rng,
    namespace,
    to_numpy,
)
from tcur.linalg._svd import singular_vectors

SELECT_RULES = ("deim", "qdeim", "leverage", "leverage_sample", "norm", "inverse_norm", "uniform")
BASIS_RULES = ("deim", "qdeim", "leverage", "leverage_sample")
"""Rules that need the leading singular vectors."""
RANDOM_RULES = ("leverage_sample", "inverse_norm", "uniform")
"""Rules that draw from ``seed``."""


def _host_basis(V: Array) -> np.ndarray:
    V = as_float_array(V, "V", ndim=2)
    n, k = V.shape
    if k > n:
        raise ValueError(f"V must have at least as many rows as columns, got shape {(n, k)}")
    return to_numpy(V)


def _deim_host(V: np.ndarray) -> np.ndarray:
    k = V.shape[1]
    picked = [int(np.argmax(np.abs(V[:, 0])))]
    for j in range(1, k):
        coeffs = np.linalg.solve(V[picked, :j], V[picked, j])
        residual = V[:, j] - V[:, :j] @ coeffs
        picked.append(int(np.argmax(np.abs(residual))))
    return np.asarray(picked, dtype=np.int64)


def _qdeim_host(V: np.ndarray) -> np.ndarray:
    import scipy.linalg  # deferred: keeps `import tcur` fast

    _, _, pivots = scipy.linalg.qr(V.conj().T, mode="economic", pivoting=True)
    return np.asarray(pivots[: V.shape[1]], dtype=np.int64)


def deim(V: Array) -> Array:
    """Discrete empirical interpolation (DEIM) indices of a basis.

    Greedy: the first index is ``argmax |V[:, 0]|``; index ``j`` is the position of the largest
    entry of the interpolation residual of column ``j`` on the indices chosen so far.

    Parameters
    ----------
    V : array of shape (n, k), k <= n
        A basis with linearly independent columns (e.g. leading singular vectors).

    Returns
    -------
    indices : integer array of shape (k,)
        Distinct row indices, of the input's array kind.

    Examples
    --------
    >>> import numpy as np
    >>> from tcur.linalg import deim
    >>> deim(np.eye(4)[:, :2] + 0.1)
    array([0, 1])
    """
    return index_array(_deim_host(_host_basis(V)), V)


def qdeim(V: Array) -> Array:
    """Q-DEIM indices of a basis: the first ``k`` pivots of a column-pivoted QR of ``V^T``.

    Examples
    --------
    >>> import numpy as np
    >>> from tcur.linalg import qdeim
    >>> sorted(qdeim(np.eye(4)[:, :2]).tolist())
    [0, 1]
    """
    return index_array(_qdeim_host(_host_basis(V)), V)


def _leverage_from_basis(V: np.ndarray) -> np.ndarray:
    scores = np.sum(np.abs(V) ** 2, axis=1)
    return scores / scores.sum()


def leverage_scores(A: Array, rank: int, axis: int, *, svd: str = "auto") -> Array:
    """Rank-``rank`` statistical leverage scores of the rows (``axis=0``) or columns (``axis=1``).

    For ``A = U S V^T`` the score of row ``i`` is ``||U_k[i, :]||^2 / k`` (columns: ``V_k``).
    The scores are non-negative and sum to 1.

    Examples
    --------
    >>> import numpy as np
    >>> from tcur.linalg import leverage_scores
    >>> p = leverage_scores(np.diag([3.0, 2.0, 1.0]), 2, axis=0)
    >>> np.round(p, 3).tolist()
    [0.5, 0.5, 0.0]
    """
    A = as_float_array(A, "A", ndim=2)
    if axis not in (0, 1):
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


def choose_indices(
    rule: str,
    count: int,
    *,
    basis: np.ndarray | None = None,
    sq_norms: np.ndarray | None = None,
    rng: np.random.Generator | None = None,
) -> np.ndarray:
    """Apply a selection ``rule`` to host data; returns ``count`` distinct int64 indices.

    ``basis`` (n, k) is needed by :data:`BASIS_RULES`, ``sq_norms`` (n,) by the norm rules, and
    ``rng`` by :data:`RANDOM_RULES`. Shared by matrix and tensor CUR.
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
        assert sq_norms is not None
        return _top(sq_norms, count)
    assert rng is not None
    if rule == "leverage_sample":
        assert basis is not None
        return _sample(_leverage_from_basis(basis), count, rng)
    if rule == "inverse_norm":
        assert sq_norms is not None
        tiny = np.finfo(np.float64).tiny
        return _sample(1.0 / np.maximum(sq_norms, tiny), count, rng)
    assert sq_norms is not None
    return rng.choice(sq_norms.size, size=count, replace=False).astype(np.int64)


def squared_norms(A: Array, axis: int | tuple[int, ...]) -> np.ndarray:
    """Host copy of ``sum(|A|^2, axis)``, reduced where ``A`` lives (no full host transfer)."""
    xp = namespace(A)
    data = A.detach() if is_torch(A) else A
    return to_numpy(xp.sum(xp.abs(data) ** 2, axis=axis))


def select_matrix_indices(
    A: Array,
    rank: int,
    n_rows: int,
    n_cols: int,
    *,
    select: str,
    seed: Any = None,
    svd: str = "auto",
) -> tuple[np.ndarray, np.ndarray]:
    """Row and column indices (host int64 arrays) of a validated matrix for CUR."""
    check_choice(select, "select", SELECT_RULES)
    U = V = None
    if select in BASIS_RULES:
        U, _, V = singular_vectors(A, rank, svd=svd, seed=seed if seed is not None else 0)
    rng = make_rng(seed)
    row_norms = col_norms = None
    if select not in BASIS_RULES:
        row_norms, col_norms = squared_norms(A, axis=1), squared_norms(A, axis=0)
    rows = choose_indices(select, n_rows, basis=U, sq_norms=row_norms, rng=rng)
    cols = choose_indices(select, n_cols, basis=V, sq_norms=col_norms, rng=rng)
    return rows, cols
