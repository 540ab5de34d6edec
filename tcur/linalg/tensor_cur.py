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
- ``"sketch_qr"`` and ``"arp"`` (:mod:`tcur.linalg.pivoting`): pivoting on weighted sketches of
  all Fourier slices, rows conditioned on the chosen columns; ``"sketch_qr"`` also measures the
  ``"qdeim"`` selection and keeps whichever has the smaller exact t-CUR error (its singular
  vectors are those of the pivoting's last sketch where that is under a quarter of the slices'
  smaller side: no pass over ``A`` of their own).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tcur._backend import (
    Array,
    as_float_array,
    host_arrays,
    index_array,
    is_complex,
    is_torch,
    namespace,
    refuse_dask,
    spawn_rngs,
    take,
    to_numpy,
)
from tcur.linalg.errors import measured_error
from tcur.linalg.middle import middle_factors
from tcur.linalg.options import DEFAULT_MIDDLE, DEFAULT_SELECT, MIDDLES
from tcur.linalg.orthonormal import dominant_directions
from tcur.linalg.pivoting import (
    PIVOTING_RULES,
    SKETCH_OVERSAMPLE,
    Alternative,
    select_pivoted,
    stack_bases,
)
from tcur.linalg.results import TCUR
from tcur.linalg.selection import BASIS_RULES, SELECT_RULES, choose_indices
from tcur.linalg.svd_bases import (
    RANDOMIZED_MAX_FRACTION,
    batched_singular_vectors,
    sketched_singular_vectors,
)
from tcur.linalg.tolerance import estimate_rank, fit_rank_or_tol
from tcur.linalg.tproduct import fourier_weights, from_fourier, to_fourier
from tcur.validation import check_choice, check_rank_or_tol, check_rtol


def _detached_fourier(A: Array) -> tuple[Array, np.ndarray]:
    """Detached Fourier slices ``(n_freq, n1, n2)`` and their spectrum weights."""
    F = to_fourier(A.detach() if is_torch(A) else A)
    return F, fourier_weights(A.shape[2], F.shape[0])


def _stacked_bases(
    U: np.ndarray, V: np.ndarray, weights: np.ndarray, real: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Stacked, weighted leading singular vectors of all Fourier slices (rows, columns), from the
    host bases ``U`` (``(b, m, k)``) and ``V`` (``(b, n, k)``).

    Returns ``(B_rows, B_cols)`` with ``B B^H = sum_k w_k U_k U_k^H`` (the unnormalised
    Fourier-averaged projector); real matrices for real input.
    """
    return stack_bases(U, weights, real), stack_bases(V, weights, real)


def _summed_norms(xp: Any, F: Array, weights: np.ndarray, axis: int) -> np.ndarray:
    """``sum_k w_k ||column or row of F_k||`` over the spectrum (axis 1: columns, 2: rows)."""
    norms = to_numpy(xp.linalg.vector_norm(F, axis=axis))
    return np.asarray(weights @ norms, dtype=np.float64)


def _norm_rule_indices(
    xp: Any, F: Array, weights: np.ndarray, n_rows: int, n_cols: int, select: str, rng: Any
) -> tuple[np.ndarray, np.ndarray]:
    col_scores = _summed_norms(xp, F, weights, axis=1)
    cols = choose_indices(select, n_cols, norms=col_scores, rng=rng)
    if select == "norm":
        # tCURLoRA: rows are ranked on the chosen columns only.
        F_cols = take(F, index_array(cols, F), axis=2)
        row_scores = _summed_norms(xp, F_cols, weights, axis=2)
    else:
        row_scores = _summed_norms(xp, F, weights, axis=2)
    rows = choose_indices(select, n_rows, norms=row_scores, rng=rng)
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
    F, weights = _detached_fourier(A)
    return _select(F, weights, not is_complex(A), rank, n_rows, n_cols, select, seed, svd)


def _select(
    F: Array,
    weights: np.ndarray,
    real: bool,
    rank: int,
    n_rows: int,
    n_cols: int,
    select: str,
    seed: Any,
    svd: str,
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`select_tensor_indices` on detached Fourier slices ``F``."""
    if select in PIVOTING_RULES:
        return _pivoted(F, weights, real, rank, n_rows, n_cols, select, seed, svd)
    sketch_rng, sample_rng = spawn_rngs(seed, 2)
    if select not in BASIS_RULES:
        return _norm_rule_indices(namespace(F), F, weights, n_rows, n_cols, select, sample_rng)
    U, V = host_arrays(*batched_singular_vectors(F, rank, svd=svd, seed=sketch_rng))
    return _from_bases(U, V, weights, real, rank, n_rows, n_cols, select, sample_rng)


def _from_bases(
    U: np.ndarray,
    V: np.ndarray,
    weights: np.ndarray,
    real: bool,
    rank: int,
    n_rows: int,
    n_cols: int,
    select: str,
    rng: Any,
) -> tuple[np.ndarray, np.ndarray]:
    """A basis rule's indices from the slices' host bases (see :mod:`tcur.linalg.tensor_cur`)."""
    B_rows, B_cols = _stacked_bases(U, V, weights, real)
    if select in ("deim", "qdeim"):
        B_rows, B_cols = dominant_directions(B_rows, rank), dominant_directions(B_cols, rank)
    rows = choose_indices(select, n_rows, basis=B_rows, rng=rng)
    cols = choose_indices(select, n_cols, basis=B_cols, rng=rng)
    return rows, cols


def _pivoted(
    F: Array,
    weights: np.ndarray,
    real: bool,
    rank: int,
    n_rows: int,
    n_cols: int,
    select: str,
    seed: Any,
    svd: str,
) -> tuple[np.ndarray, np.ndarray]:
    """The pivoting rules on a tensor. ``"sketch_qr"`` also measures the ``"qdeim"`` selection
    (from the slices' own leading singular vectors, which a sketch of a flat spectrum only
    approximates) with the pivoting candidates, and keeps it only when its exact t-CUR error is
    smaller; its bases travel to the host with the sketches."""
    pivot_rng, basis_rng = spawn_rngs(seed, 2)
    alternative = None
    if select == "sketch_qr":
        sketch_rng, sample_rng = spawn_rngs(basis_rng, 2)
        # Only a candidate, measured exactly with the others: the singular vectors of the
        # pivoting's own last sketch suffice wherever it is smaller than the slices (exact SVDs
        # of every slice cost as much as tsvd, a randomized SVD of its own four more passes).
        cheap = (
            svd == "auto"
            and rank <= max(n_rows, n_cols)
            and rank + SKETCH_OVERSAMPLE <= RANDOMIZED_MAX_FRACTION * min(F.shape[1:])
        )

        def qdeim(host: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray] | None:
            try:
                U, V = host
                return _from_bases(U, V, weights, real, rank, n_rows, n_cols, "qdeim", sample_rng)
            except ValueError:  # rank-deficient slices: Q-DEIM has no distinct pivots there
                return None

        if cheap:
            alternative = Alternative(
                qdeim, from_sketch=lambda Q, Y: sketched_singular_vectors(Q, Y, rank)
            )
        else:
            bases = batched_singular_vectors(F, rank, svd=svd, seed=sketch_rng)
            alternative = Alternative(qdeim, arrays=tuple(bases))
    chosen = select_pivoted(
        F,
        n_rows,
        n_cols,
        rule=select,
        seed=pivot_rng,
        weights=weights,
        real=real,
        alternative=alternative,
    )
    return chosen.rows, chosen.cols


def tcur(
    A: Array,
    rank: int | None = None,
    *,
    tol: float | None = None,
    n_rows: int | None = None,
    n_cols: int | None = None,
    select: str = DEFAULT_SELECT,
    middle: str = DEFAULT_MIDDLE,
    seed: Any = None,
    svd: str = "auto",
    rtol: float | None = None,
    check_finite: bool = True,
) -> TCUR:
    """Tensor CUR decomposition under the t-product: ``A ~ A[:, cols, :] * U * A[rows, :, :]``.

    Parameters
    ----------
    A : array of shape (n1, n2, n3)
        NumPy array or torch tensor (any device); real or complex. Integers become float64.
    rank : int, optional
        Target tubal rank (``1 <= rank <= min(n1, n2)``); exactly one of ``rank`` and ``tol``.
    tol : float, optional
        Relative Frobenius error target in ``(0, 1)``; the tubal rank is found adaptively and
        the returned result's measured error is ``<= tol`` (:mod:`tcur.linalg.tolerance`).
        The rank found is ``result.rank``; ``n_rows``/``n_cols`` must then be left out.
    n_rows, n_cols : int, optional
        How many horizontal / lateral slices to keep (default ``rank``; larger oversamples).
    select : str
        ``"sketch_qr"`` (default), ``"arp"``, ``"deim"``, ``"qdeim"``, ``"leverage"``,
        ``"leverage_sample"``, ``"norm"``, ``"inverse_norm"`` or ``"uniform"``; constructions in
        :mod:`tcur.linalg.tensor_cur`.
    middle : {"optimal", "pinv"}
        ``"optimal"`` (default): ``U = tpinv(C) * A * tpinv(R)`` (least Frobenius error for
        this C and R). ``"pinv"``: ``U = tpinv(A[rows][:, cols, :], rank=rank)``, truncated to
        ``rank`` singular values per Fourier slice; it reads only the sampled slices and is
        exact at the true tubal rank. Its error is that of interpolation through the chosen
        rows (see :func:`tcur.linalg.cur`): oversample one side (``n_rows=2 * rank``) on data
        without exact low-rank structure.
    seed : None, int or numpy.random.Generator
        Randomness of the sketches and sampled rules (independent streams); ``None`` is random.
    svd : {"auto", "exact", "randomized"}
        How leading singular vectors of the Fourier slices are found (DEIM/leverage rules).
    rtol : float, optional
        Relative cutoff of the t-pseudo-inverses in the explicit ``U`` (default ``sqrt(eps / 10)``,
        as :func:`tcur.linalg.cur`; see :func:`tcur.linalg.tpinv`).
    check_finite : bool
        Scan ``A`` for NaN/Inf (default); ``False`` skips the scan.

    Returns
    -------
    TCUR
        Frozen dataclass with ``C``, ``U``, ``R``, ``rows``, ``cols``, ``rank`` and
        ``.reconstruct()``. Autograd flows from ``C``, ``U``, ``R`` back to ``A`` for torch
        input.

    Examples
    --------
    >>> import numpy as np
    >>> from tcur.linalg import relative_error, tcur, tprod
    >>> rng = np.random.default_rng(0)
    >>> A = tprod(rng.standard_normal((20, 3, 4)), rng.standard_normal((3, 15, 4)))
    >>> d = tcur(A, 3, seed=0)
    >>> d.C.shape, d.U.shape, d.R.shape
    ((20, 3, 4), (3, 3, 4), (3, 15, 4))
    >>> bool(relative_error(A, d.reconstruct()) < 1e-10)
    True
    >>> e = tcur(A + 1e-4 * rng.standard_normal(A.shape), tol=0.01, seed=0)
    >>> e.rank
    3
    """
    refuse_dask(A, "A", "tcur")
    options: dict[str, Any] = {"tol": tol, "n_rows": n_rows, "n_cols": n_cols, "select": select}
    options |= {"middle": middle, "seed": seed, "svd": svd, "rtol": rtol}
    return tcur_of_array(
        as_float_array(A, "A", ndim=3, finite=check_finite, factorized=True, fourier=True),
        rank,
        **options,
    )


def tcur_of_array(
    A: Array,
    rank: int | None,
    *,
    tol: float | None,
    n_rows: int | None,
    n_cols: int | None,
    select: str,
    middle: str,
    seed: Any,
    svd: str,
    rtol: float | None,
) -> TCUR:
    """:func:`tcur` of a third-order tensor already converted and scanned by
    :func:`tcur._backend.as_float_array` (how :func:`tcur.decompose` validates its input once);
    the options are checked here."""
    check_choice(select, "select", SELECT_RULES)
    check_choice(middle, "middle", MIDDLES)
    rtol = check_rtol(rtol)
    tol = check_rank_or_tol(rank, tol)
    F = to_fourier(A)
    weights = fourier_weights(A.shape[2], F.shape[0])
    fit = _TensorFit(A, F, weights, select, middle, seed, svd, rtol)
    return fit_rank_or_tol(
        fit,
        lambda d: measured_error(A, d.reconstruct()),
        lambda target: estimate_rank(fit.detached, target, weights=weights, seed=seed),
        rank=rank,
        tol=tol,
        n_rows=n_rows,
        n_cols=n_cols,
        shape=A.shape[:2],
    )


class _TensorFit:
    """t-CUR of one validated tensor at a given rank, sharing its Fourier slices across fits."""

    def __init__(
        self,
        A: Array,
        F: Array,
        weights: np.ndarray,
        select: str,
        middle: str,
        seed: Any,
        svd: str,
        rtol: float | None,
    ) -> None:
        self.A, self.F, self.weights = A, F, weights
        self.detached = F.detach() if is_torch(F) else F
        self.real = not is_complex(A)
        self.select, self.middle, self.seed, self.svd, self.rtol = select, middle, seed, svd, rtol

    def __call__(self, rank: int, n_rows: int, n_cols: int) -> TCUR:
        A, F = self.A, self.F
        rows, cols = _select(
            self.detached,
            self.weights,
            self.real,
            rank,
            n_rows,
            n_cols,
            self.select,
            self.seed,
            self.svd,
        )
        rows_x, cols_x = index_array(rows, A), index_array(cols, A)
        F_cols, F_rows = take(F, cols_x, axis=2), take(F, rows_x, axis=1)
        U_F, form = middle_factors(
            F, F_cols, F_rows, rows_x, cols_x, middle=self.middle, rank=rank, rtol=self.rtol
        )
        U = from_fourier(U_F, A.shape[2], self.real)
        C, R = take(A, cols_x, axis=1), take(A, rows_x, axis=0)
        return TCUR(C, U, R, rows_x, cols_x, rank, form)
