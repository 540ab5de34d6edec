"""Hypothesis strategies for tensors of a known tubal rank or multilinear rank (NumPy or torch).

Built from bounded factors, never filtered:

- tubal rank ``r``: every independent Fourier slice (real FFT along the tube axis) is
  ``Q_1 diag(s) Q_2^H`` with orthonormal ``Q_1``, ``Q_2`` (real for the zero-frequency and
  Nyquist slices, complex otherwise) and ``r`` singular values from 1 down to ``1 / cond``;
  the inverse real FFT gives a real tensor whose Fourier slices all have rank exactly ``r``.
- multilinear rank ``(r_1, ..., r_N)``: a Tucker tensor ``G x_1 Q_1 ... x_N Q_N`` with
  orthonormal ``Q_n`` and a core ``G`` whose mode-0 unfolding is ``Q diag(s) W^T`` (condition
  ``cond``) with a random orthonormal ``W``, so its other unfoldings are generic (full row rank
  with probability one).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from hypothesis import strategies as st

from tcur._backend import make_rng
from tcur.testing.assertions import MAX_COND
from tcur.testing.strategies import (
    DTYPES,
    check_backend,
    check_cond,
    check_sides,
    check_size,
    convert,
    orthonormal,
    spectrum,
)
from tcur.validation import check_choice, check_rank, check_sizes


def _unitary(rng: np.random.Generator, n: int, k: int) -> np.ndarray:
    """``(n, k)`` complex matrix with orthonormal columns."""
    q, r = np.linalg.qr(rng.standard_normal((n, k)) + 1j * rng.standard_normal((n, k)))
    return q * (np.diag(r) / np.abs(np.diag(r)))


def low_tubal_rank_tensor(
    seed: int, n1: int, n2: int, n3: int, rank: int, cond: float = 10.0
) -> np.ndarray:
    """Deterministic real ``(n1, n2, n3)`` float64 tensor of exact tubal rank ``rank``.

    Every Fourier slice has rank ``rank`` and condition number ``cond`` on its nonzero
    spectrum; ``1 <= rank <= min(n1, n2)``.

    Examples
    --------
    >>> from tcur.linalg import tubal_rank
    >>> from tcur.testing import low_tubal_rank_tensor
    >>> tubal_rank(low_tubal_rank_tensor(0, 6, 5, 4, 2))
    2
    """
    n1, n2, n3 = (check_size(v, name) for v, name in ((n1, "n1"), (n2, "n2"), (n3, "n3")))
    rank = check_rank(rank, "rank", min(n1, n2))
    check_cond(cond)
    rng = make_rng(seed)
    n_freq = n3 // 2 + 1
    s = spectrum(rank, cond)
    slices = []
    for k in range(n_freq):
        real = k == 0 or 2 * k == n3
        make = orthonormal if real else _unitary
        u, v = make(rng, n1, rank), make(rng, n2, rank)
        slices.append((u * s) @ v.conj().T)
    return np.fft.irfft(np.stack(slices, axis=-1), n=n3, axis=-1)


def _core(rng: np.random.Generator, ranks: Sequence[int], cond: float) -> np.ndarray:
    """Core whose mode-0 unfolding is ``Q diag(s) W^T`` and others are generic full rank."""
    rest = math.prod(ranks[1:])
    q, w = orthonormal(rng, ranks[0], ranks[0]), orthonormal(rng, rest, ranks[0])
    mixed = (q * spectrum(ranks[0], cond)) @ w.T
    return mixed.reshape(tuple(ranks))


def valid_multilinear_ranks(ranks: Sequence[int], shape: Sequence[int]) -> list[int]:
    """Cap ``ranks`` so that ``r_n <= d_n`` and ``r_n <= prod_{m != n} r_m`` (realisable).

    ``shape`` and ``ranks`` are sequences of positive integers of the same length.

    Examples
    --------
    >>> from tcur.testing import valid_multilinear_ranks
    >>> valid_multilinear_ranks([5, 1, 3], (4, 6, 6))
    [3, 1, 3]
    """
    shape = check_sizes(shape, "shape")
    ranks = check_sizes(ranks, "ranks", len(shape))
    out = [min(r, d) for r, d in zip(ranks, shape, strict=True)]
    changed = True
    while changed:
        changed = False
        for n in range(len(out)):
            cap = math.prod(out[:n] + out[n + 1 :])
            if out[n] > cap:
                out[n], changed = cap, True
    return out


def low_multilinear_rank_tensor(
    seed: int, shape: Sequence[int], ranks: Sequence[int], cond: float = 10.0
) -> np.ndarray:
    """Deterministic float64 tensor of the given shape and exact multilinear rank ``ranks``.

    ``ranks`` (one positive integer per mode) must be realisable (see
    :func:`valid_multilinear_ranks`).

    Examples
    --------
    >>> import numpy as np
    >>> from tcur.linalg import unfold
    >>> from tcur.testing import low_multilinear_rank_tensor
    >>> T = low_multilinear_rank_tensor(0, (5, 6, 7), (2, 3, 2))
    >>> [int(np.linalg.matrix_rank(unfold(T, n))) for n in range(3)]
    [2, 3, 2]
    """
    shape = check_sizes(shape, "shape")
    ranks = check_sizes(ranks, "ranks", len(shape))
    if list(ranks) != valid_multilinear_ranks(ranks, shape):
        raise ValueError(
            f"ranks {ranks} are not a multilinear rank of shape {shape}: need r_n <= d_n and "
            f"r_n <= the product of the other ranks (valid_multilinear_ranks caps them)"
        )
    check_cond(cond)
    rng = make_rng(seed)
    out = _core(rng, ranks, cond)
    for n, d in enumerate(shape):
        q = orthonormal(rng, d, ranks[n])
        out = np.moveaxis(np.tensordot(q, out, axes=(1, n)), 0, n)
    return out


def _backend_name(draw: st.DrawFn, backend: str | st.SearchStrategy[str]) -> str:
    return draw(backend) if isinstance(backend, st.SearchStrategy) else backend


def tubal_tensors(
    *,
    max_side: int = 8,
    min_side: int = 1,
    max_tubes: int = 6,
    rank: int | None = None,
    max_cond: float = MAX_COND,
    backend: str | st.SearchStrategy[str] = "numpy",
    dtype: str = "float64",
) -> st.SearchStrategy[tuple[Any, int]]:
    """Strategy for ``(A, rank)``: a real ``(n1, n2, n3)`` tensor of exactly that tubal rank.

    Parameters
    ----------
    max_side, min_side : int
        Bounds of ``n1`` and ``n2``.
    max_tubes : int
        Largest tube length ``n3`` (drawn from 1, so odd and even lengths both occur).
    rank : int, optional
        Fixed tubal rank (capped by ``min(n1, n2)``); default drawn.
    max_cond : float
        Largest condition number of each Fourier slice's nonzero spectrum.
    backend : "numpy", "torch" or a strategy of those names.
    dtype : "float64" or "float32".

    Examples
    --------
    >>> from hypothesis import given
    >>> from tcur.testing import tubal_tensors
    >>> @given(tubal_tensors(max_side=5))
    ... def test_shape(pair):
    ...     A, rank = pair
    ...     assert A.ndim == 3 and 1 <= rank <= min(A.shape[:2])
    >>> test_shape()
    """
    min_side, max_side = check_sides(min_side, max_side)
    max_tubes = check_size(max_tubes, "max_tubes")
    rank = None if rank is None else check_size(rank, "rank")
    check_cond(max_cond, "max_cond")
    check_backend(backend)
    check_choice(dtype, "dtype", DTYPES)
    return _tubal_tensors(max_side, min_side, max_tubes, rank, max_cond, backend, dtype)


@st.composite
def _tubal_tensors(
    draw: st.DrawFn,
    max_side: int,
    min_side: int,
    max_tubes: int,
    rank: int | None,
    max_cond: float,
    backend: str | st.SearchStrategy[str],
    dtype: str,
) -> tuple[Any, int]:
    n1 = draw(st.integers(min_side, max_side))
    n2 = draw(st.integers(min_side, max_side))
    n3 = draw(st.integers(1, max_tubes))
    k = min(rank, n1, n2) if rank is not None else draw(st.integers(1, min(n1, n2)))
    cond = draw(st.floats(1.0, max_cond))
    seed = draw(st.integers(0, 2**32 - 1))
    tensor = low_tubal_rank_tensor(seed, n1, n2, n3, k, cond)
    return convert(tensor, _backend_name(draw, backend), dtype), k


def multilinear_tensors(
    *,
    min_order: int = 3,
    max_order: int = 4,
    max_side: int = 6,
    max_rank: int = 3,
    max_cond: float = MAX_COND,
    backend: str | st.SearchStrategy[str] = "numpy",
    dtype: str = "float64",
) -> st.SearchStrategy[tuple[Any, list[int]]]:
    """Strategy for ``(T, ranks)``: an order-N tensor of exactly that multilinear rank.

    Parameters
    ----------
    min_order, max_order : int
        Bounds of the order ``N``.
    max_side : int
        Largest size of a mode (at least 1).
    max_rank : int
        Largest rank of a mode (ranks are capped to be realisable).
    max_cond : float
        Largest condition number of the core's mode-0 unfolding.
    backend : "numpy", "torch" or a strategy of those names.
    dtype : "float64" or "float32".

    Examples
    --------
    >>> from hypothesis import given
    >>> from tcur.testing import multilinear_tensors
    >>> @given(multilinear_tensors(max_order=3))
    ... def test_order(pair):
    ...     T, ranks = pair
    ...     assert T.ndim == len(ranks) == 3
    >>> test_order()
    """
    min_order, max_order = check_size(min_order, "min_order"), check_size(max_order, "max_order")
    if max_order < min_order:
        raise ValueError(f"max_order={max_order} must be >= min_order={min_order}")
    max_side, max_rank = check_size(max_side, "max_side"), check_size(max_rank, "max_rank")
    check_cond(max_cond, "max_cond")
    check_backend(backend)
    check_choice(dtype, "dtype", DTYPES)
    return _multilinear_tensors(min_order, max_order, max_side, max_rank, max_cond, backend, dtype)


@st.composite
def _multilinear_tensors(
    draw: st.DrawFn,
    min_order: int,
    max_order: int,
    max_side: int,
    max_rank: int,
    max_cond: float,
    backend: str | st.SearchStrategy[str],
    dtype: str,
) -> tuple[Any, list[int]]:
    order = draw(st.integers(min_order, max_order))
    shape = [draw(st.integers(1, max_side)) for _ in range(order)]
    wanted = [draw(st.integers(1, max_rank)) for _ in range(order)]
    ranks = valid_multilinear_ranks(wanted, shape)
    cond = draw(st.floats(1.0, max_cond))
    seed = draw(st.integers(0, 2**32 - 1))
    tensor = low_multilinear_rank_tensor(seed, shape, ranks, cond)
    return convert(tensor, _backend_name(draw, backend), dtype), ranks
