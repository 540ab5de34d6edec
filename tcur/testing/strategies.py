"""Hypothesis strategies for matrices of a known rank (NumPy or torch).

Inputs are built from bounded factors, never filtered: ``A = Q_1 diag(s) Q_2^T`` with orthonormal
``Q_1``, ``Q_2`` from QR of Gaussian matrices and singular values spread log-uniformly between 1
and ``1 / cond``. The randomness is a seed drawn by Hypothesis, so failures shrink to a seed.

Every builder and strategy checks its arguments when it is called (a strategy before any example
is drawn) and raises ``ValueError``/``TypeError`` naming the bad argument.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from hypothesis import strategies as st

from tcur._backend import make_rng
from tcur.testing.assertions import MAX_COND
from tcur.validation import check_choice, check_rank

BACKENDS = ("numpy", "torch")
DTYPES = ("float64", "float32")
SIZE_MAX = 2**31
"""Upper bound used when a size is only required to be positive."""


def check_size(value: Any, name: str) -> int:
    """A positive Python or NumPy integer (a dimension), as ``int``."""
    return check_rank(value, name, SIZE_MAX)


def check_cond(cond: Any, name: str = "cond") -> float:
    """A finite real condition number ``>= 1``, as ``float``."""
    if isinstance(cond, bool) or not isinstance(cond, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be a real number, got {cond!r} ({type(cond).__name__})")
    if not (math.isfinite(cond) and cond >= 1):
        raise ValueError(f"{name} must be a finite number >= 1, got {cond!r}")
    return float(cond)


def orthonormal(rng: np.random.Generator, n: int, k: int) -> np.ndarray:
    """``(n, k)`` matrix with orthonormal columns (QR of a Gaussian matrix); ``1 <= k <= n``."""
    n = check_size(n, "n")
    k = check_rank(k, "k", n)
    q, r = np.linalg.qr(rng.standard_normal((n, k)))
    return q * np.sign(np.diag(r))


def spectrum(k: int, cond: float) -> np.ndarray:
    """``k`` singular values from 1 down to ``1 / cond``, log-uniformly spaced."""
    k, cond = check_size(k, "k"), check_cond(cond)
    return np.logspace(0.0, -np.log10(cond), k) if k > 1 else np.ones(1)


def low_rank_matrix(
    seed: int, m: int, n: int, rank: int, cond: float = 10.0, scale: float = 1.0
) -> np.ndarray:
    """Deterministic ``(m, n)`` float64 matrix of exact rank ``rank`` and condition ``cond``.

    ``1 <= rank <= min(m, n)``; ``scale`` multiplies the matrix (finite and nonzero, so that the
    rank stays ``rank``).

    Examples
    --------
    >>> import numpy as np
    >>> from tcur.testing import low_rank_matrix
    >>> int(np.linalg.matrix_rank(low_rank_matrix(0, 6, 5, 2)))
    2
    """
    m, n = check_size(m, "m"), check_size(n, "n")
    rank = check_rank(rank, "rank", min(m, n))
    cond = check_cond(cond)
    if not (isinstance(scale, (int, float, np.integer, np.floating)) and math.isfinite(scale)):
        raise ValueError(f"scale must be a finite real number, got {scale!r}")
    if scale == 0:
        raise ValueError("scale must be nonzero (a zero matrix has rank 0)")
    rng = make_rng(seed)
    u, v = orthonormal(rng, m, rank), orthonormal(rng, n, rank)
    return scale * (u * spectrum(rank, cond)) @ v.T


def convert(x: np.ndarray, backend: str, dtype: str = "float64") -> Any:
    """NumPy float64 array to the requested backend (:data:`BACKENDS`) and dtype name
    (:data:`DTYPES`)."""
    check_choice(backend, "backend", BACKENDS)
    check_choice(dtype, "dtype", DTYPES)
    if backend == "numpy":
        return x.astype(dtype)
    import torch

    return torch.as_tensor(x.astype(dtype))


def check_backend(backend: Any) -> None:
    """A backend name of :data:`BACKENDS` or a Hypothesis strategy of them."""
    if not isinstance(backend, st.SearchStrategy):
        check_choice(backend, "backend", BACKENDS)


def check_sides(min_side: Any, max_side: Any) -> tuple[int, int]:
    """``1 <= min_side <= max_side`` (names as in the strategies)."""
    min_side = check_size(min_side, "min_side")
    max_side = check_size(max_side, "max_side")
    if max_side < min_side:
        raise ValueError(f"max_side={max_side} must be >= min_side={min_side}")
    return min_side, max_side


def matrices(
    *,
    max_side: int = 12,
    min_side: int = 1,
    rank: int | None = None,
    max_cond: float = MAX_COND,
    backend: str | st.SearchStrategy[str] = "numpy",
    dtype: str = "float64",
) -> st.SearchStrategy[tuple[Any, int]]:
    """Strategy for ``(A, rank)``: a matrix of exactly the returned rank.

    Parameters
    ----------
    max_side, min_side : int
        Bounds of each dimension.
    rank : int, optional
        Fixed rank (capped by the drawn shape); default: drawn between 1 and ``min(m, n)``.
    max_cond : float
        Largest condition number of the nonzero spectrum.
    backend : "numpy", "torch" or a strategy of those names.
    dtype : "float64" or "float32".

    Examples
    --------
    >>> from hypothesis import given
    >>> from tcur.testing import matrices
    >>> @given(matrices(max_side=6))
    ... def test_shape(pair):
    ...     A, rank = pair
    ...     assert 1 <= rank <= min(A.shape)
    >>> test_shape()
    """
    min_side, max_side = check_sides(min_side, max_side)
    rank = None if rank is None else check_size(rank, "rank")
    check_cond(max_cond, "max_cond")
    check_backend(backend)
    check_choice(dtype, "dtype", DTYPES)
    return _matrices(max_side, min_side, rank, max_cond, backend, dtype)


@st.composite
def _matrices(
    draw: st.DrawFn,
    max_side: int,
    min_side: int,
    rank: int | None,
    max_cond: float,
    backend: str | st.SearchStrategy[str],
    dtype: str,
) -> tuple[Any, int]:
    m = draw(st.integers(min_side, max_side))
    n = draw(st.integers(min_side, max_side))
    k = min(rank, m, n) if rank is not None else draw(st.integers(1, min(m, n)))
    cond = draw(st.floats(1.0, max_cond))
    seed = draw(st.integers(0, 2**32 - 1))
    name = draw(backend) if isinstance(backend, st.SearchStrategy) else backend
    return convert(low_rank_matrix(seed, m, n, k, cond), name, dtype), k
