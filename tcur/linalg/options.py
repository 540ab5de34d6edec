"""Options shared by every CUR engine (dense, t-CUR, sparse, Dask): names, defaults, counts."""

from __future__ import annotations

import math
from typing import Any

from tcur.validation import check_rank

MIDDLES = ("optimal", "pinv")
DEFAULT_SELECT = "sketch_qr"
"""Default selection rule of :func:`tcur.linalg.cur` and :func:`tcur.linalg.tcur`, chosen by the
benchmark suite (``benchmarks/bench_cur.py``; see :mod:`tcur.linalg.pivoting`)."""
DEFAULT_MIDDLE = "optimal"
"""Default middle factor: ``pinv(C) @ A @ pinv(R)``, stable on data that is not low-rank."""


EXPLICIT_RTOL_SHARE = 0.1
"""The default cutoff of an explicit ``U`` is ``sqrt(EXPLICIT_RTOL_SHARE * eps)``."""


def explicit_rtol(rtol: float | None, eps: float) -> float:
    """Cutoff of the pseudo-inverses in an explicit middle factor ``U``: ``rtol``, or by default
    ``sqrt(eps / 10)`` of the dtype (:data:`EXPLICIT_RTOL_SHARE`).

    An explicit ``U`` multiplies round-off by the condition numbers of ``C`` and ``R``; truncating
    the singular values below ``rtol * s_max`` bounds that amplification, so ``C @ U @ R`` is
    accurate to about ``sqrt(eps)`` relative (Park & Nakatsukasa 2024 analyse this
    epsilon-pseudo-inverse for CUR). The error has a truncation part that grows with ``rtol``
    and an amplified round-off part that grows with ``eps / rtol``. At ``rtol = sqrt(eps)`` the
    truncation part dominated: on ten test families (2400 x 60 and 150 x 100, every second rank)
    the worst ``C @ U @ R`` error was 1.10x ``max(10 tail, 10 sqrt(eps))`` in float32 (Hilbert,
    rank 13) and 0.79x in float64. ``sqrt(eps / 10)`` gives 0.40x and 0.53x there, and 0.30x /
    0.46x at 150 x 100 (0.43x / 0.46x before); a tenth of that cutoff gave the same worst
    cases. ``result.reconstruct()`` does not use ``U`` and stays near ``eps``
    (:mod:`tcur.linalg.orthonormal`).

    Examples
    --------
    >>> from tcur.linalg.options import explicit_rtol
    >>> explicit_rtol(None, 2.0**-52) == (0.1 * 2.0**-52) ** 0.5, explicit_rtol(1e-3, 2.0**-52)
    (True, 0.001)
    """
    return math.sqrt(EXPLICIT_RTOL_SHARE * eps) if rtol is None else rtol


def index_counts(rank: int, n_rows: Any, n_cols: Any, shape: Any) -> tuple[int, int]:
    """Validated ``(n_rows, n_cols)``: default ``rank``, at least ``rank``, within ``shape``.

    Examples
    --------
    >>> from tcur.linalg.options import index_counts
    >>> index_counts(3, None, 6, (10, 8))
    (3, 6)
    """
    m, n = shape
    n_rows = check_rank(rank if n_rows is None else n_rows, "n_rows", m)
    n_cols = check_rank(rank if n_cols is None else n_cols, "n_cols", n)
    if n_rows < rank or n_cols < rank:
        raise ValueError(f"n_rows={n_rows} and n_cols={n_cols} must be >= rank={rank}")
    return n_rows, n_cols
