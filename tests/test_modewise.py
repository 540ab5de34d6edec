"""Mode-wise tensor CUR (Chidori / Fiber): exactness, structure, tensorly, backends, bad input."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import tcur
from tcur.linalg import TuckerCUR, chidori_cur, fiber_cur, relative_error, unfold
from tcur.linalg.modewise import MODEWISE_RULES
from tcur.testing import assert_reconstructs, low_multilinear_rank_tensor, multilinear_tensors

EPS = np.finfo(np.float64).eps
INTERPOLATORY = ("deim", "qdeim")
"""Rules that guarantee a nonsingular ``U_n`` at the true rank (so the CUR is exact)."""
METHODS = (chidori_cur, fiber_cur)
Method = Callable[..., Any]


def exact_rtol(T: np.ndarray) -> float:
    """Gram-based bases and cond <= 100: eps * size * cond^2 with slack."""
    return 1e3 * EPS * max(T.shape) * T.ndim * 100.0**2


@given(
    multilinear_tensors(max_order=4, max_side=6, max_rank=3),
    st.sampled_from(INTERPOLATORY),
    st.sampled_from(METHODS),
)
def test_exact_at_true_multilinear_rank(
    pair: tuple[np.ndarray, list[int]], select: str, method: Method
) -> None:
    T, ranks = pair
    d = method(T, ranks, select=select)
    assert d.core.shape == tuple(ranks)
    assert_reconstructs(d, T, rtol=exact_rtol(T))


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("seed", range(5))
def test_leverage_is_exact_on_generic_tensors(method: Method, seed: int) -> None:
    # Top-k leverage scores carry no rank guarantee: on tiny degenerate tensors two chosen
    # indices can be collinear (Hypothesis finds such cases), so this checks generic inputs.
    T = low_multilinear_rank_tensor(seed, (9, 8, 7, 6), (3, 2, 3, 2))
    assert_reconstructs(method(T, (3, 2, 3, 2), select="leverage"), T, rtol=exact_rtol(T))


@given(multilinear_tensors(max_order=4, max_side=6), st.sampled_from(METHODS), st.data())
def test_core_is_a_subtensor_and_factor_shapes(
    pair: tuple[np.ndarray, list[int]], method: Method, data: st.DataObject
) -> None:
    T, ranks = pair
    counts = [data.draw(st.integers(r, d)) for r, d in zip(ranks, T.shape, strict=True)]
    select = data.draw(st.sampled_from(MODEWISE_RULES))
    d = method(T, ranks, select=select, n_indices=counts, seed=0)
    np.testing.assert_array_equal(d.core, T[np.ix_(*d.indices)])
    assert [f.shape for f in d.factors] == [(n, c) for n, c in zip(T.shape, counts, strict=True)]
    for idx, c in zip(d.indices, counts, strict=True):
        assert idx.dtype == np.int64 and len(set(idx.tolist())) == c


def test_uniform_uses_the_papers_sample_sizes() -> None:
    T = low_multilinear_rank_tensor(0, (40, 30, 20), (2, 3, 2))
    d = chidori_cur(T, (2, 3, 2), select="uniform", seed=0)
    expected = [math.ceil(2.0 * r * math.log(n)) for r, n in zip((2, 3, 2), T.shape, strict=True)]
    assert d.core.shape == tuple(expected)
    assert_reconstructs(d, T, rtol=1e-9)
    f = fiber_cur(T, (2, 3, 2), select="uniform", seed=0, oversample=1.0, fiber_oversample=2.0)
    sizes = zip((2, 3, 2), T.shape, strict=True)
    assert f.core.shape == tuple(math.ceil(r * math.log(n)) for r, n in sizes)
    assert_reconstructs(f, T, rtol=1e-9)


def test_randomized_selection_is_reproducible() -> None:
    T = low_multilinear_rank_tensor(1, (9, 8, 7), (2, 2, 2))
    for method in METHODS:
        a = method(T, 2, select="uniform", seed=3)
        b = method(T, 2, select="uniform", seed=np.random.default_rng(3))
        for x, y in zip(a.indices, b.indices, strict=True):
            np.testing.assert_array_equal(x, y)


def test_deterministic_rows_span_the_unfolding() -> None:
    T = low_multilinear_rank_tensor(2, (7, 6, 5, 4), (3, 2, 2, 2))
    d = chidori_cur(T, (3, 2, 2, 2), select="deim")
    for n, idx in enumerate(d.indices):
        assert np.linalg.matrix_rank(unfold(T, n)[idx]) == d.core.shape[n]


def test_to_tensorly_round_trip() -> None:
    import tensorly as tl

    T = low_multilinear_rank_tensor(0, (6, 5, 4), (2, 2, 2))
    for method in METHODS:
        d = method(T, 2)
        tucker = d.to_tensorly()
        core, factors = tucker
        assert core is d.core and all(a is b for a, b in zip(factors, d.factors, strict=True))
        np.testing.assert_allclose(tl.tucker_to_tensor(tucker), d.reconstruct(), atol=1e-12)
        np.testing.assert_allclose(tl.tucker_to_tensor(tucker), T, atol=1e-10)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("select", MODEWISE_RULES)
def test_numpy_and_torch_agree(method: Method, select: str) -> None:
    T = low_multilinear_rank_tensor(3, (7, 6, 5), (2, 3, 2))
    d = method(T, (2, 3, 2), select=select, seed=0)
    dt = method(torch.as_tensor(T), (2, 3, 2), select=select, seed=0)
    assert isinstance(dt.core, torch.Tensor) and dt.indices[0].dtype == torch.int64
    for x, y in zip(dt.indices, d.indices, strict=True):
        np.testing.assert_array_equal(x.numpy(), y)
    np.testing.assert_allclose(dt.reconstruct().numpy(), d.reconstruct(), atol=1e-10)


def test_autograd_reaches_the_input() -> None:
    T = torch.tensor(low_multilinear_rank_tensor(0, (5, 4, 3), (2, 2, 2)), requires_grad=True)
    for method in METHODS:
        T.grad = None
        relative_error(T, method(T, 2).reconstruct()).backward()
        assert T.grad is not None and torch.isfinite(T.grad).all()


def test_noisy_tensor_error_is_near_the_noise_level() -> None:
    rng = np.random.default_rng(0)
    T = low_multilinear_rank_tensor(0, (30, 30, 30), (3, 3, 3))
    noise = 1e-4 * np.linalg.norm(T) * rng.standard_normal(T.shape) / math.sqrt(T.size)
    for method in METHODS:
        for select in ("deim", "uniform"):
            d = method(T + noise, 3, select=select, seed=0)
            assert float(relative_error(T + noise, d.reconstruct())) < 1e-2


@pytest.mark.parametrize("method", ["chidori", "fiber"])
def test_decompose_dispatches_nd_input(method: str) -> None:
    T = low_multilinear_rank_tensor(0, (6, 5, 4, 3), (2, 2, 2, 2))
    d = tcur.decompose(T, [2, 2, 2, 2], method=method)
    assert isinstance(d, TuckerCUR)
    assert_reconstructs(d, T, rtol=1e-9)
    with pytest.raises(ValueError, match="exactly one of rank and tol"):
        tcur.decompose(T, method=method)  # no default rank: the user says what they want


def test_bad_inputs() -> None:
    T = np.ones((4, 5, 6))
    for method in METHODS:
        with pytest.raises(ValueError, match="at least 3 dimensions"):
            method(np.ones((4, 5)), 2)
        with pytest.raises(ValueError, match="sequence of 3 ints"):
            method(T, (2, 2))
        with pytest.raises(ValueError, match=r"ranks\[0\]=5 exceeds"):
            method(T, (5, 2, 2))
        with pytest.raises(ValueError, match=r"ranks\[1\] must be >= 1"):
            method(T, (2, 0, 2))
        with pytest.raises(ValueError, match=r"n_indices\[2\]=1 must be >= the rank 2"):
            method(T, 2, n_indices=(2, 2, 1))
        with pytest.raises(ValueError, match="unknown select='norm'"):
            method(T, 2, select="norm")
        with pytest.raises(ValueError, match=r"oversample must be a finite number > 0, got 0\.0"):
            method(T, 2, select="uniform", oversample=0.0)
        with pytest.raises(ValueError, match="oversample must be a finite number > 0, got inf"):
            method(T, 2, select="uniform", oversample=np.inf)
        with pytest.raises(TypeError, match="oversample must be a real number, got '2'"):
            method(T, 2, oversample="2")  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="seed must be a non-negative integer"):
            method(T, 2, select="uniform", seed=-3)
        with pytest.raises(ValueError, match="NaN"):
            method(np.full((3, 3, 3), np.nan), 1)
    with pytest.raises(ValueError, match=r"n_fibers\[0\]=1 must be >= the rank 2"):
        fiber_cur(T, 2, n_fibers=1)
    with pytest.raises(ValueError, match="fiber_oversample must be a finite number > 0"):
        fiber_cur(T, 2, select="uniform", fiber_oversample=-1.0)
    with pytest.raises(ValueError, match=r"ranks\[0\]=2 exceeds .* \(1\)"):
        chidori_cur(np.ones((5, 1, 1)), (2, 1, 1))
