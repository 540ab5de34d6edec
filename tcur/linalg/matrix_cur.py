"""Matrix CUR decomposition ``A ~ C @ U @ R``."""

from __future__ import annotations

from typing import Any

from tcur._backend import Array, as_float_array, index_array, is_dask, is_sparse, is_torch, take
from tcur.linalg.errors import measured_error
from tcur.linalg.lazy import dask_cur
from tcur.linalg.middle import middle_factors
from tcur.linalg.options import DEFAULT_MIDDLE, DEFAULT_SELECT, MIDDLES
from tcur.linalg.results import CUR
from tcur.linalg.selection import SELECT_RULES, select_matrix
from tcur.linalg.sparse import sparse_cur
from tcur.linalg.tolerance import estimate_rank, fit_rank_or_tol
from tcur.validation import check_choice, check_rank_or_tol, check_rtol


def cur(
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
) -> CUR:
    """CUR decomposition of a matrix: ``A ~ A[:, cols] @ U @ A[rows, :]``.

    Parameters
    ----------
    A : array of shape (m, n)
        NumPy array or torch tensor (any device), another array-API array (computed on in its
        own namespace), a ``scipy.sparse`` matrix (C and R stay sparse, ``A`` is never
        densified; :mod:`tcur.linalg.sparse`) or a Dask array (C and R lazy;
        :mod:`tcur.linalg.lazy`). Sparse and Dask input is read in a fixed number of passes:
        5 for the default rule (:mod:`tcur.linalg.products`). Integers become float64.
    rank : int, optional
        Target rank (``1 <= rank <= min(m, n)``); exactly one of ``rank`` and ``tol``.
    tol : float, optional
        Relative Frobenius error target in ``(0, 1)``: the rank is found adaptively (randomized
        range finder, then the decomposition's own error is measured and the rank grown until
        ``||A - C U R||_F <= tol ||A||_F``; see :mod:`tcur.linalg.tolerance`). The rank found is
        ``result.rank``; ``n_rows``/``n_cols`` must then be left out.
    n_rows, n_cols : int, optional
        How many rows/columns to keep (default ``rank``; larger values oversample).
    select : str
        Selection rule: ``"sketch_qr"`` (default: pivoted QR on a randomized sketch, rows
        conditioned on the chosen columns; :mod:`tcur.linalg.pivoting`), ``"arp"``,
        ``"deim"``, ``"qdeim"``, ``"leverage"``, ``"leverage_sample"``, ``"norm"``,
        ``"inverse_norm"`` or ``"uniform"`` (:mod:`tcur.linalg.selection`).
    middle : {"optimal", "pinv"}
        ``"optimal"`` (default): ``U = pinv(C) @ A @ pinv(R)``, the least Frobenius error for
        these C and R. ``"pinv"``: ``U = pinv(A[rows][:, cols])`` truncated to ``rank``
        singular values; it reads only the sampled entries and is exact when ``A`` has exact
        rank ``rank``. Its error is that of interpolating ``A`` on ``C``'s range through the
        chosen rows: close to ``"optimal"`` when the rows are pivots of ``C``'s range (the
        default rule) and oversampled (``n_rows=2 * rank``; Park & Nakatsukasa 2024), larger
        with a square intersection or sampled rows.
    seed : None, int or numpy.random.Generator
        Randomness of the sketches and of the sampled rules (independent streams spawned from
        it); ``None`` is random every call.
    svd : {"auto", "exact", "randomized"}
        How leading singular vectors are found for the DEIM/leverage rules.
    rtol : float, optional
        Relative cutoff of the pseudo-inverses in the explicit ``U`` (default ``sqrt(eps / 10)``
        of the dtype, :func:`tcur.linalg.options.explicit_rtol`; see :func:`tcur.linalg.pinv.pinv`).
    check_finite : bool
        Scan ``A`` for NaN/Inf (default). ``False`` skips the scan (a device synchronisation
        on GPU); results on non-finite input are then undefined.

    Returns
    -------
    CUR
        Frozen dataclass with ``C``, ``U``, ``R``, ``rows``, ``cols``, ``rank`` and
        ``.reconstruct()``. Exact when ``rank(A[rows][:, cols]) == rank(A)``.
        ``reconstruct()`` is accurate to a few ``eps ||A||`` beyond the error of the chosen
        columns and rows at every rank (it works in orthonormal coordinates,
        :mod:`tcur.linalg.orthonormal`); ``C @ U @ R`` multiplied by hand to about
        ``sqrt(eps)`` relative, since an explicit ``U`` amplifies round-off. Autograd flows
        from ``C``, ``U``, ``R`` back to ``A`` for torch input (the indices are not
        differentiable).

    Examples
    --------
    >>> import numpy as np
    >>> from tcur.linalg import cur, relative_error
    >>> rng = np.random.default_rng(0)
    >>> A = rng.standard_normal((30, 5)) @ rng.standard_normal((5, 20))
    >>> d = cur(A, 5, seed=0)
    >>> d.C.shape, d.U.shape, d.R.shape
    ((30, 5), (5, 5), (5, 20))
    >>> bool(relative_error(A, d.reconstruct()) < 1e-10)
    True
    >>> B = A + 1e-3 * rng.standard_normal(A.shape)
    >>> e = cur(B, tol=0.01, seed=0)
    >>> e.rank, bool(relative_error(B, e.reconstruct()) <= 0.01)
    (5, True)
    """
    options: dict[str, Any] = {"tol": tol, "n_rows": n_rows, "n_cols": n_cols, "select": select}
    options |= {"middle": middle, "seed": seed, "svd": svd, "rtol": rtol}
    if is_sparse(A) or is_dask(A):  # products with A only: tcur.linalg.products
        kind_cur = sparse_cur if is_sparse(A) else dask_cur
        return kind_cur(A, rank, check_finite=check_finite, **options)
    return cur_of_array(
        as_float_array(A, "A", ndim=2, finite=check_finite, factorized=True), rank, **options
    )


def cur_of_array(
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
) -> CUR:
    """:func:`cur` of a matrix already converted and scanned by
    :func:`tcur._backend.as_float_array` (how :func:`tcur.decompose` validates its input once);
    the options are checked here."""
    check_choice(select, "select", SELECT_RULES)
    check_choice(middle, "middle", MIDDLES)
    rtol = check_rtol(rtol)
    tol = check_rank_or_tol(rank, tol)
    options = {"select": select, "middle": middle, "seed": seed, "svd": svd, "rtol": rtol}
    detached = A.detach()[None, ...] if is_torch(A) else A[None, ...]
    return fit_rank_or_tol(
        lambda k, rows, cols: _fit(A, k, rows, cols, **options),
        lambda d: measured_error(A, d.reconstruct()),
        lambda target: estimate_rank(detached, target, seed=seed),
        rank=rank,
        tol=tol,
        n_rows=n_rows,
        n_cols=n_cols,
        shape=A.shape,
    )


def _fit(
    A: Array, rank: int, n_rows: int, n_cols: int, *, select: str, middle: str, **options: Any
) -> CUR:
    seed, svd, rtol = options["seed"], options["svd"], options["rtol"]
    chosen = select_matrix(A, rank, n_rows, n_cols, select=select, seed=seed, svd=svd)
    rows_x, cols_x = index_array(chosen.rows, A), index_array(chosen.cols, A)
    C, R = take(A, cols_x, axis=1), take(A, rows_x, axis=0)
    U, form = middle_factors(
        A, C, R, rows_x, cols_x, middle=middle, rank=rank, rtol=rtol, measured=chosen.measured
    )
    return CUR(C=C, U=U, R=R, rows=rows_x, cols=cols_x, rank=rank, form=form)
