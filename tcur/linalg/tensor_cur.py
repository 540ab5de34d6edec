"""Tensor CUR under the t-product (t-CUR): ``A ~ C * U * R``.

``C = A[:, cols, :]`` (lateral slices), ``R = A[rows, :, :]`` (horizontal slices), the same
indices for every frontal slice, and ``U`` a t-product pseudo-inverse. In the Fourier domain
this is one matrix CUR per Fourier slice ``A_k`` that shares its row and column indices, so it is
exact when every Fourier slice of the intersection ``A[rows][:, cols, :]`` has the rank of the
matching slice of ``A``.

Index selection on a tensor (:func:`select_tensor_indices`) works in the Fourier domain, where
the Fourier slices ``A_k`` (``k`` over the full spectrum; with the real FFT the slices with a
conjugate partner count twice) are independent matrices:

- Basis rules. Let ``U_k`` be the leading ``rank`` left singular vectors of ``A_k``. The
  Fourier-averaged projector ``P = (1/n3) sum_k U_k U_k^H`` (real for real ``A``) describes the
  row space shared by all slices; its diagonal, divided by ``rank``, is the average over the
  Fourier slices of the slices' leverage scores. ``"leverage"`` takes the largest of these
  averaged scores, ``"leverage_sample"`` samples by them, and ``"deim"``/``"qdeim"`` run DEIM /
  Q-DEIM on the ``rank`` dominant eigenvectors of ``P`` (a basis closest, on average, to all
  slices' bases, in the spirit of the tubal DEIM of Ahmadi-Asl et al.). Columns likewise with the
  right singular vectors.
- ``"norm"`` (the rule of the published tCURLoRA code): columns with the largest sum over all
  Fourier slices of their 2-norms, ``sum_k ||A_k[:, j]||``; then rows with the largest
  ``sum_k ||A_k[i, cols]||`` over the chosen columns only.
- ``"inverse_norm"`` (as in CURLoRA): sampled with probability proportional to
  ``1 / (sum_k ||A_k[:, j]||)^2`` (rows likewise, on the whole tensor).
- ``"uniform"``: uniform sampling without replacement.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from tcur._backend import (
    Array,
    as_float_array,
    check_choice,
    check_rank,
    index_array,
    is_torch,
    make_rng,
    namespace,
    to_numpy,
)
from tcur.linalg._svd import singular_vectors
from tcur.linalg.cur import MIDDLES, _counts
from tcur.linalg.selection import BASIS_RULES, SELECT_RULES, choose_indices
from tcur.linalg.tproduct import fourier_weights, to_fourier, tpinv, tprod


@dataclass(frozen=True)
class TCUR:
    """Result of :func:`tcur`: ``A ~ C * U * R`` under the t-product.

    Attributes
    ----------
    C : array of shape (n1, n_cols, n3)
        ``A[:, cols, :]``.
    U : array of shape (n_cols, n_rows, n3)
    R : array of shape (n_rows, n2, n3)
        ``A[rows, :, :]``.
    rows, cols : integer arrays
        Selected horizontal and lateral slice indices, of the input's array kind.
    """

    C: Array
    U: Array
    R: Array
    rows: Array
    cols: Array

    def reconstruct(self) -> Array:
        """Return the t-product ``C * U * R`` (differentiable for torch input)."""
        return tprod(self.C, self.U, self.R)


def _detached_fourier(A: Array) -> tuple[Array, np.ndarray]:
    """Detached Fourier slices ``(n_freq, n1, n2)`` and their spectrum weights."""
    F = to_fourier(A.detach() if is_torch(A) else A)
    return F, fourier_weights(A.shape[2], F.shape[0])


def _averaged_bases(
    F: Array, weights: np.ndarray, rank: int, real: bool, svd: str, seed: Any
) -> tuple[np.ndarray, np.ndarray]:
    """Stacked, weighted leading singular vectors of all Fourier slices (rows, columns).

    Returns ``(B_rows, B_cols)`` with ``B B^H = sum_k w_k U_k U_k^H`` (the unnormalised
    Fourier-averaged projector); real matrices for real input.
    """
    left, right = [], []
    for k in range(F.shape[0]):
        u, _, v = singular_vectors(F[k], rank, svd=svd, seed=seed)
        scale = np.sqrt(weights[k])
        left.append(scale * u)
        right.append(scale * v)
    stack_u, stack_v = np.concatenate(left, axis=1), np.concatenate(right, axis=1)
    if real:
        stack_u = np.concatenate([stack_u.real, stack_u.imag], axis=1)
        stack_v = np.concatenate([stack_v.real, stack_v.imag], axis=1)
    return stack_u, stack_v


def _dominant(B: np.ndarray, rank: int) -> np.ndarray:
    """The ``rank`` dominant left singular vectors of ``B`` (eigenvectors of ``B B^H``)."""
    u, _, _ = np.linalg.svd(B, full_matrices=False)
    return u[:, :rank]


def _summed_norms(xp: Any, F: Array, weights: np.ndarray, axis: int) -> np.ndarray:
    """``sum_k w_k ||column or row of F_k||`` over the spectrum (axis 1: columns, 2: rows)."""
    norms = to_numpy(xp.linalg.vector_norm(F, axis=axis))
    return np.asarray(weights @ norms, dtype=np.float64)


def _norm_rule_indices(
    xp: Any, F: Array, weights: np.ndarray, n_rows: int, n_cols: int, select: str, rng: Any
) -> tuple[np.ndarray, np.ndarray]:
    col_scores = _summed_norms(xp, F, weights, axis=1)
    cols = choose_indices(select, n_cols, sq_norms=col_scores**2, rng=rng)
    if select == "norm":
        # tCURLoRA: rows are ranked on the chosen columns only.
        F_cols = F[:, :, index_array(cols, F)]
        row_scores = _summed_norms(xp, F_cols, weights, axis=2)
    else:
        row_scores = _summed_norms(xp, F, weights, axis=2)
    rows = choose_indices(select, n_rows, sq_norms=row_scores**2, rng=rng)
    return rows, cols


def select_tensor_indices(
    A: Array,
    rank: int,
    n_rows: int,
    n_cols: int,
    *,
    select: str,
    seed: Any = None,
    svd: str = "auto",
) -> tuple[np.ndarray, np.ndarray]:
    """Row and column indices (host int64 arrays) of a third-order tensor for t-CUR.

    The construction of each rule is described in :mod:`tcur.linalg.tensor_cur`. ``A`` must be
    a validated 3-D float or complex array (see :func:`tcur._backend.as_float_array`); ``rank``,
    ``n_rows`` and ``n_cols`` must already be checked against its shape. Used by :func:`tcur`
    and by the tCURLoRA adapters (on a stack of weight matrices).

    Parameters
    ----------
    A : array of shape (n1, n2, n3)
    rank : int
        Number of leading singular vectors per Fourier slice used by the basis rules.
    n_rows, n_cols : int
        How many horizontal (row) and lateral (column) slices to select.
    select : str
        One of :data:`tcur.linalg.selection.SELECT_RULES`.
    seed : None, int or numpy.random.Generator
        Randomness of the sampled rules and of the randomized SVD.
    svd : {"auto", "exact", "randomized"}
        How each Fourier slice's leading singular vectors are found.

    Returns
    -------
    rows, cols : numpy.ndarray of int64
        ``n_rows`` and ``n_cols`` distinct indices.

    Examples
    --------
    >>> import numpy as np
    >>> from tcur.linalg.tensor_cur import select_tensor_indices
    >>> A = np.random.default_rng(0).standard_normal((6, 5, 3))
    >>> rows, cols = select_tensor_indices(A, 2, 3, 2, select="deim")
    >>> rows.shape, cols.shape, rows.dtype
    ((3,), (2,), dtype('int64'))
    """
    check_choice(select, "select", SELECT_RULES)
    xp = namespace(A)
    real = not bool(xp.isdtype(A.dtype, "complex floating"))
    F, weights = _detached_fourier(A)
    rng = make_rng(seed)
    if select not in BASIS_RULES:
        return _norm_rule_indices(xp, F, weights, n_rows, n_cols, select, rng)
    svd_seed = seed if seed is not None else 0
    B_rows, B_cols = _averaged_bases(F, weights, rank, real, svd, svd_seed)
    if select in ("deim", "qdeim"):
        B_rows, B_cols = _dominant(B_rows, rank), _dominant(B_cols, rank)
    rows = choose_indices(select, n_rows, basis=B_rows, rng=rng)
    cols = choose_indices(select, n_cols, basis=B_cols, rng=rng)
    return rows, cols


def tcur(
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
) -> TCUR:
    """Tensor CUR decomposition under the t-product: ``A ~ A[:, cols, :] * U * A[rows, :, :]``.

    Parameters
    ----------
    A : array of shape (n1, n2, n3)
        NumPy array or torch tensor (any device); real or complex. Integers become float64.
    rank : int
        Target tubal rank used by the selection rule (``1 <= rank <= min(n1, n2)``).
    n_rows, n_cols : int, optional
        How many horizontal / lateral slices to keep (default ``rank``; larger oversamples).
    select : str
        ``"deim"`` (default), ``"qdeim"``, ``"leverage"``, ``"leverage_sample"``, ``"norm"``,
        ``"inverse_norm"`` or ``"uniform"``; constructions in :mod:`tcur.linalg.tensor_cur`.
    middle : {"pinv", "optimal"}
        ``"pinv"``: ``U = tpinv(A[rows][:, cols, :], rank=rank)``, truncated to ``rank``
        singular values per Fourier slice (reads only the sampled slices; exact at the true
        tubal rank, but on data that is not low-rank, with ``n_rows = n_cols = rank``, a
        nearly singular intersection can make the error exceed ``||A||``, so oversample or use
        ``"optimal"``); ``"optimal"``: ``U = tpinv(C) * A * tpinv(R)``
        (least Frobenius error for this C and R).
    seed : None, int or numpy.random.Generator
        Randomness of the sampled rules and of the randomized SVD.
    svd : {"auto", "exact", "randomized"}
        How leading singular vectors of the Fourier slices are found (basis rules).
    rtol : float, optional
        Relative cutoff of the t-pseudo-inverses (see :func:`tcur.linalg.tpinv`).

    Returns
    -------
    TCUR
        Frozen dataclass with ``C``, ``U``, ``R``, ``rows``, ``cols`` and ``.reconstruct()``.
        Autograd flows from ``C``, ``U``, ``R`` back to ``A`` for torch input.

    Examples
    --------
    >>> import numpy as np
    >>> from tcur.linalg import relative_error, tcur, tprod
    >>> rng = np.random.default_rng(0)
    >>> A = tprod(rng.standard_normal((20, 3, 4)), rng.standard_normal((3, 15, 4)))
    >>> d = tcur(A, 3)
    >>> d.C.shape, d.U.shape, d.R.shape
    ((20, 3, 4), (3, 3, 4), (3, 15, 4))
    >>> bool(relative_error(A, d.reconstruct()) < 1e-10)
    True
    """
    A = as_float_array(A, "A", ndim=3)
    check_choice(select, "select", SELECT_RULES)
    check_choice(middle, "middle", MIDDLES)
    rank = check_rank(rank, "rank", min(A.shape[:2]))
    n_rows, n_cols = _counts(rank, n_rows, n_cols, A.shape[:2])
    rows, cols = select_tensor_indices(A, rank, n_rows, n_cols, select=select, seed=seed, svd=svd)
    rows_x, cols_x = index_array(rows, A), index_array(cols, A)
    C, R = A[:, cols_x, :], A[rows_x, :, :]
    if middle == "pinv":
        U = tpinv(A[rows_x, :, :][:, cols_x, :], rtol, rank=rank)
    else:
        U = tprod(tpinv(C, rtol), A, tpinv(R, rtol))
    return TCUR(C=C, U=U, R=R, rows=rows_x, cols=cols_x)
