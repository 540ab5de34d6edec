"""Hypothesis strategies for matrices of a known rank (NumPy or torch).

Inputs are built from bounded factors, never filtered: ``A = Q_1 diag(s) Q_2^T`` with orthonormal
``Q_1``, ``Q_2`` from QR of Gaussian matrices and singular values spread log-uniformly between 1
and ``1 / cond``. The randomness is a seed drawn by Hypothesis, so failures shrink to a seed.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from hypothesis import strategies as st

BACKENDS = ("numpy", "torch")


def orthonormal(rng: np.random.Generator, n: int, k: int) -> np.ndarray:
    """``(n, k)`` matrix with orthonormal columns (QR of a Gaussian matrix)."""
    q, r = np.linalg.qr(rng.standard_normal((n, k)))
    return q * np.sign(np.diag(r))


def spectrum(k: int, cond: float) -> np.ndarray:
    """``k`` singular values from 1 down to ``1 / cond``, log-uniformly spaced."""
    return np.logspace(0.0, -np.log10(cond), k) if k > 1 else np.ones(1)


def low_rank_matrix(
    seed: int, m: int, n: int, rank: int, cond: float = 10.0, scale: float = 1.0
) -> np.ndarray:
    """Deterministic ``(m, n)`` float64 matrix of exact rank ``rank`` and condition ``cond``."""
    rng = np.random.default_rng(seed)
    u, v = orthonormal(rng, m, rank), orthonormal(rng, n, rank)
    return scale * (u * spectrum(rank, cond)) @ v.T


def convert(x: np.ndarray, backend: str, dtype: str = "float64") -> Any:
    """NumPy float64 array to the requested backend and dtype name."""
    if backend == "numpy":
        return x.astype(dtype)
    if backend != "torch":
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    import torch

    return torch.as_tensor(x.astype(dtype))


@st.composite
def matrices(
    draw: st.DrawFn,
    *,
    max_side: int = 12,
    min_side: int = 1,
    rank: int | None = None,
    max_cond: float = 100.0,
    backend: str | st.SearchStrategy[str] = "numpy",
    dtype: str = "float64",
) -> tuple[Any, int]:
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
    m = draw(st.integers(min_side, max_side))
    n = draw(st.integers(min_side, max_side))
    k = min(rank, m, n) if rank is not None else draw(st.integers(1, min(m, n)))
    cond = draw(st.floats(1.0, max_cond))
    seed = draw(st.integers(0, 2**32 - 1))
    name = draw(backend) if isinstance(backend, st.SearchStrategy) else backend
    return convert(low_rank_matrix(seed, m, n, k, cond), name, dtype), k
