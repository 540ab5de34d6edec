"""t-SVD and tubal rank (Kilmer & Martin 2011).

``A = U * S * V^T`` under the t-product, with ``U``, ``V`` orthogonal (``U^T * U = I``) and ``S``
f-diagonal (every frontal slice diagonal). It is one matrix SVD per Fourier slice. For real input
only the ``n3 // 2 + 1`` independent slices of the real FFT are decomposed (the others are their
complex conjugates); the zero-frequency slice and, for even ``n3``, the Nyquist slice are real and
get a real SVD, so that the factors come back real.

Truncating to tubal rank ``r`` keeps the ``r`` leading singular triplets of every Fourier slice.
It is the best approximation of tubal rank ``r`` in the Frobenius norm: its squared error is
``(1/n3) sum_k sum_{j > r} s_{k,j}^2`` over the full spectrum of Fourier slices.
"""

from __future__ import annotations

from typing import Any

from tcur._backend import (
    Array,
    as_float_array,
    eps,
    is_complex,
    is_torch,
    namespace,
    refuse_dask,
    to_numpy,
)
from tcur.linalg.tproduct import from_fourier, to_fourier
from tcur.validation import check_rank, check_tolerance


def _self_conjugate(n3: int, real: bool) -> set[int]:
    """Fourier slices of a real tensor that are real matrices (zero and Nyquist frequency)."""
    if not real:
        return set()
    return {0, n3 // 2} if n3 % 2 == 0 else {0}


def _slice_svds(F: Array, n3: int, real: bool, full: bool) -> tuple[Array, Array, Array]:
    """SVD of every stored Fourier slice; real SVDs on the self-conjugate ones."""
    xp = namespace(F)
    real_slices = _self_conjugate(n3, real)
    us, ss, vhs = [], [], []
    for k in range(F.shape[0]):
        slice_k = xp.real(F[k, ...]) if k in real_slices else F[k, ...]
        u, s, vh = xp.linalg.svd(slice_k, full_matrices=full)
        us.append(xp.astype(u, F.dtype))
        ss.append(s)
        vhs.append(xp.astype(vh, F.dtype))
    return xp.stack(us), xp.stack(ss), xp.stack(vhs)


def _embed_diagonal(xp: Any, s: Array, shape: tuple[int, int], dtype: Any) -> Array:
    """Batch ``(n_freq, p)`` of singular values -> ``(n_freq, *shape)`` diagonal matrices."""
    n_freq, p = s.shape
    device = getattr(s, "device", None)
    square = xp.astype(s, dtype)[:, :, None] * xp.eye(p, dtype=dtype, device=device)
    pad_rows = xp.zeros((n_freq, shape[0] - p, p), dtype=dtype, device=device)
    tall = xp.concat([square, pad_rows], axis=1)
    pad_cols = xp.zeros((n_freq, shape[0], shape[1] - p), dtype=dtype, device=device)
    return xp.concat([tall, pad_cols], axis=2)


def _conj_t(xp: Any, M: Array) -> Array:
    return xp.conj(xp.matrix_transpose(M))


def tsvd(
    A: Array, rank: int | None = None, *, full_matrices: bool = False, check_finite: bool = True
) -> tuple[Array, Array, Array]:
    """t-SVD ``A = U * S * V^T`` of a third-order tensor (full, economy or truncated).

    Parameters
    ----------
    A : array of shape (n1, n2, n3)
        NumPy array or torch tensor, real or complex.
    rank : int, optional
        Truncate to this tubal rank (``1 <= rank <= min(n1, n2)``): the best tubal-rank-``rank``
        approximation is ``U * S * V^T``. Default: no truncation.
    full_matrices : bool
        With ``rank=None``: ``True`` gives the full t-SVD (``U: (n1, n1, n3)``,
        ``S: (n1, n2, n3)``, ``V: (n2, n2, n3)``); ``False`` (default) the economy one with
        ``p = min(n1, n2)``. Cannot be combined with ``rank``.
    check_finite : bool
        Raise ``ValueError`` on NaN/Inf entries; ``False`` skips the scan.

    Returns
    -------
    U : array of shape (n1, k, n3)
        t-orthogonal columns: ``tprod(ttranspose(U), U)`` is the identity.
    S : array of shape (k, k, n3)
        f-diagonal (``(n1, n2, n3)`` for the full t-SVD).
    V : array of shape (n2, k, n3)
        t-orthogonal; ``A = tprod(U, S, ttranspose(V))``.

    Examples
    --------
    >>> import numpy as np
    >>> from tcur.linalg import tprod, tsvd, ttranspose
    >>> A = np.random.default_rng(0).standard_normal((5, 4, 3))
    >>> U, S, V = tsvd(A)
    >>> U.shape, S.shape, V.shape
    ((5, 4, 3), (4, 4, 3), (4, 4, 3))
    >>> bool(np.allclose(tprod(U, S, ttranspose(V)), A))
    True
    """
    refuse_dask(A, "A", "tsvd")
    A = as_float_array(A, "A", ndim=3, finite=check_finite, factorized=True, fourier=True)
    xp = namespace(A)
    n1, n2, n3 = A.shape
    if rank is not None:
        if full_matrices:
            raise ValueError(f"rank={rank} cannot be combined with full_matrices=True")
        rank = check_rank(rank, "rank", min(n1, n2))
    real = not is_complex(A)
    F = to_fourier(A)
    u, s, vh = _slice_svds(F, n3, real, full_matrices)
    if rank is not None:
        u, s, vh = u[:, :, :rank], s[:, :rank], vh[:, :rank, :]
    k = s.shape[1]
    s_shape = (n1, n2) if full_matrices else (k, k)
    S_f = _embed_diagonal(xp, s, s_shape, F.dtype)
    return (
        from_fourier(u, n3, real),
        from_fourier(S_f, n3, real),
        from_fourier(_conj_t(xp, vh), n3, real),
    )


def tubal_rank(A: Array, tol: float | None = None, *, check_finite: bool = True) -> int:
    """Tubal rank: the largest rank of the Fourier slices of ``A``.

    A singular value counts when it exceeds ``tol``; singular values are those of the Fourier
    slices of the unnormalised DFT along the tube axis.

    Parameters
    ----------
    A : array of shape (n1, n2, n3)
    tol : float, optional
        Absolute threshold; default ``max(n1, n2) * eps(dtype) * s_max`` with ``s_max`` the
        largest singular value over all Fourier slices. Negative, NaN, Inf or non-numeric
        values raise.
    check_finite : bool
        Raise ``ValueError`` on NaN/Inf entries; ``False`` skips the scan.

    Returns
    -------
    int

    Examples
    --------
    >>> import numpy as np
    >>> from tcur.linalg import tprod, tubal_rank
    >>> rng = np.random.default_rng(0)
    >>> tubal_rank(tprod(rng.standard_normal((6, 2, 4)), rng.standard_normal((2, 5, 4))))
    2
    """
    refuse_dask(A, "A", "tubal_rank")
    A = as_float_array(A, "A", ndim=3, finite=check_finite, factorized=True, fourier=True)
    cutoff = None if tol is None else check_tolerance(tol, "tol")
    xp = namespace(A)
    F = to_fourier(A.detach() if is_torch(A) else A)
    s = to_numpy(xp.linalg.svdvals(F))
    if cutoff is None:
        cutoff = max(A.shape[:2]) * eps(A) * float(s.max())
    return int((s > cutoff).sum(axis=1).max())
