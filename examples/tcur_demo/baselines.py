"""What the demo measures tcur against: truncated SVD, truncated t-SVD and SciPy's ID-CUR.

:func:`scipy_id_cur` is the two-sided interpolative-decomposition CUR of
``benchmarks/bench_cur.py`` (columns from ``scipy.linalg.interpolative.interp_decomp(A, k)``,
rows from the same call on ``A.T``, middle ``pinv(C) @ A @ pinv(R)``), returned as factors so that
the fit can be timed without the reconstruction, as :func:`tcur.decompose` is.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from tcur.linalg import tprod, tsvd, ttranspose


@dataclass(frozen=True)
class TruncatedSVD:
    """Rank-``k`` truncated SVD ``U @ diag(s) @ Vh`` of a matrix."""

    U: np.ndarray
    s: np.ndarray
    Vh: np.ndarray

    def reconstruct(self) -> np.ndarray:
        """Return ``U @ diag(s) @ Vh``."""
        return (self.U * self.s) @ self.Vh


def truncated_svd(A: np.ndarray, rank: int) -> TruncatedSVD:
    """Truncated SVD of ``A`` from LAPACK's thin SVD: the error floor of any rank-``rank`` fit.

    Examples
    --------
    >>> import numpy as np
    >>> A = np.diag([3.0, 2.0, 1.0])
    >>> float(np.linalg.norm(A - truncated_svd(A, 2).reconstruct()))
    1.0
    """
    U, s, Vh = np.linalg.svd(A, full_matrices=False)
    return TruncatedSVD(U[:, :rank], s[:rank], Vh[:rank, :])


@dataclass(frozen=True)
class TruncatedTSVD:
    """Tubal-rank-``k`` truncated t-SVD ``U * S * V^T`` of a third-order tensor."""

    U: Any
    S: Any
    V: Any

    def reconstruct(self) -> Any:
        """Return the t-product ``U * S * V^T``."""
        return tprod(self.U, self.S, ttranspose(self.V))


def truncated_tsvd(T: Any, rank: int) -> TruncatedTSVD:
    """Truncated t-SVD of ``T`` (:func:`tcur.linalg.tsvd`): the best tubal-rank-``rank`` fit.

    Examples
    --------
    >>> import numpy as np
    >>> T = np.zeros((3, 3, 2)); T[0, 0, 0] = 2.0; T[1, 1, 0] = 1.0
    >>> float(np.linalg.norm(T - truncated_tsvd(T, 1).reconstruct()))
    1.0
    """
    U, S, V = tsvd(T, rank)
    return TruncatedTSVD(U, S, V)


@dataclass(frozen=True)
class IDCUR:
    """SciPy's two-sided ID-CUR: ``C = A[:, cols]``, ``R = A[rows]``, ``U = pinv(C) A pinv(R)``."""

    C: np.ndarray
    U: np.ndarray
    R: np.ndarray
    rows: np.ndarray
    cols: np.ndarray

    def reconstruct(self) -> np.ndarray:
        """Return ``C @ U @ R``."""
        return self.C @ (self.U @ self.R)


def scipy_id_cur(A: np.ndarray, rank: int, seed: int = 0) -> IDCUR:
    """Two-sided ID-CUR with ``scipy.linalg.interpolative`` (randomized ID, seeded).

    Columns are the first ``rank`` pivots of ``interp_decomp(A, rank)``, rows those of
    ``interp_decomp(A.T, rank)``; the middle is the best one for them, as tcur's default
    ``middle="optimal"``.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> A = rng.standard_normal((30, 4)) @ rng.standard_normal((4, 20))
    >>> d = scipy_id_cur(A, 4)
    >>> d.C.shape, d.U.shape, d.R.shape
    ((30, 4), (4, 4), (4, 20))
    >>> bool(np.allclose(d.reconstruct(), A))
    True
    """
    import scipy.linalg.interpolative as sli

    cols, _ = sli.interp_decomp(A, rank, rng=np.random.default_rng(seed))
    rows, _ = sli.interp_decomp(
        np.ascontiguousarray(A.T), rank, rng=np.random.default_rng(seed + 1)
    )
    cols, rows = np.asarray(cols[:rank]), np.asarray(rows[:rank])
    C, R = A[:, cols], A[rows, :]
    U = np.linalg.pinv(C) @ A @ np.linalg.pinv(R)
    return IDCUR(C, U, R, rows, cols)


def svd_rank_for_tol(A: np.ndarray, tol: float) -> int:
    """The smallest rank whose truncated SVD has relative Frobenius error ``<= tol``.

    Examples
    --------
    >>> import numpy as np
    >>> svd_rank_for_tol(np.diag([3.0, 2.0, 1.0]), 0.3)  # 1 / sqrt(14) = 0.27
    2
    """
    s2 = np.linalg.svd(A, compute_uv=False) ** 2
    tail = np.sqrt(np.append(np.cumsum(s2[::-1])[::-1], 0.0) / s2.sum())
    return int(np.flatnonzero(tail <= tol)[0])
