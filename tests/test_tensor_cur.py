"""Tensor CUR under the t-product: exactness, selection rules, backends, autograd, bad input."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import tcur
from tcur.linalg import TCUR, relative_error, tpinv, tprod
from tcur.linalg.pivoting import PIVOTING_RULES
from tcur.linalg.selection import SELECT_RULES
from tcur.linalg.tensor_cur import select_tensor_indices
from tcur.testing import assert_reconstructs, low_tubal_rank_tensor, tubal_tensors

EPS = np.finfo(np.float64).eps
DETERMINISTIC = ("deim", "qdeim", "leverage")
RANDOM = ("leverage_sample", "inverse_norm", "uniform")


def exact_rtol(A: np.ndarray) -> float:
    """Allowed error at the true tubal rank: eps * size * cond^2 (cond <= 100) with slack."""
    return 1e3 * EPS * max(A.shape) * A.shape[2] * 100.0**2


@given(tubal_tensors(max_side=7, max_tubes=6, max_cond=100.0), st.sampled_from(DETERMINISTIC))
def test_exact_at_true_tubal_rank(pair: tuple[np.ndarray, int], select: str) -> None:
    A, rank = pair
    for middle in ("pinv", "optimal"):
        d = tcur.linalg.tcur(A, rank, select=select, middle=middle)
        assert_reconstructs(d, A, rtol=exact_rtol(A))


@given(tubal_tensors(max_side=7, max_tubes=5, max_cond=10.0), st.sampled_from(SELECT_RULES))
def test_exact_with_oversampling_every_rule(pair: tuple[np.ndarray, int], select: str) -> None:
    A, rank = pair
    n1, n2, _ = A.shape
    d = tcur.linalg.tcur(A, rank, n_rows=n1, n_cols=n2, select=select, seed=0)
    assert_reconstructs(d, A, rtol=exact_rtol(A))


@given(tubal_tensors(max_side=7, max_tubes=5), st.sampled_from(SELECT_RULES), st.data())
def test_factors_are_slices_of_the_input(
    pair: tuple[np.ndarray, int], select: str, data: st.DataObject
) -> None:
    A, rank = pair
    n_rows = data.draw(st.integers(rank, A.shape[0]))
    n_cols = data.draw(st.integers(rank, A.shape[1]))
    d = tcur.linalg.tcur(A, rank, n_rows=n_rows, n_cols=n_cols, select=select, seed=1)
    assert d.rows.dtype == d.cols.dtype == np.int64
    assert len(set(d.rows.tolist())) == n_rows and len(set(d.cols.tolist())) == n_cols
    np.testing.assert_array_equal(d.C, A[:, d.cols, :])
    np.testing.assert_array_equal(d.R, A[d.rows, :, :])
    np.testing.assert_allclose(d.U, tpinv(A[d.rows][:, d.cols, :]))
    assert d.U.shape == (n_cols, n_rows, A.shape[2])


def test_optimal_middle_is_never_worse_than_pinv() -> None:
    A = np.random.default_rng(0).standard_normal((12, 10, 5))
    for select in ("deim", "norm"):
        e_pinv = relative_error(
            A, tcur.linalg.tcur(A, 3, select=select, middle="pinv").reconstruct()
        )
        e_opt = relative_error(
            A, tcur.linalg.tcur(A, 3, select=select, middle="optimal").reconstruct()
        )
        assert e_opt <= e_pinv + 1e-12


def test_randomized_rules_are_reproducible() -> None:
    A = low_tubal_rank_tensor(0, 12, 10, 4, 3)
    for select in RANDOM:
        first = select_tensor_indices(A, 3, 5, 5, select=select, seed=7)
        again = select_tensor_indices(A, 3, 5, 5, select=select, seed=np.random.default_rng(7))
        for x, y in zip(first, again, strict=True):
            np.testing.assert_array_equal(x, y)


def summed_fourier_norms(A: np.ndarray, axis: int) -> np.ndarray:
    """sum over all n3 slices of the full complex FFT of column (axis=0) or row norms."""
    F = np.fft.fft(A, axis=2)
    return sum(np.linalg.norm(F[:, :, k], axis=axis) for k in range(A.shape[2]))


def test_norm_rule_matches_the_published_construction() -> None:
    A = np.random.default_rng(3).standard_normal((9, 8, 6)) * np.arange(1, 9)[None, :, None]
    rows, cols = select_tensor_indices(A, 3, 3, 4, select="norm")
    expected_cols = np.argsort(-summed_fourier_norms(A, axis=0))[:4]
    np.testing.assert_array_equal(np.sort(cols), np.sort(expected_cols))
    expected_rows = np.argsort(-summed_fourier_norms(A[:, cols, :], axis=1))[:3]
    np.testing.assert_array_equal(np.sort(rows), np.sort(expected_rows))


def test_leverage_rule_averages_fourier_slice_scores() -> None:
    A = np.random.default_rng(4).standard_normal((9, 8, 5))
    rank = 2
    F = np.moveaxis(np.fft.fft(A, axis=2), 2, 0)
    U, _, Vh = np.linalg.svd(F)
    row_scores = (np.abs(U[:, :, :rank]) ** 2).sum(axis=(0, 2))
    col_scores = (np.abs(Vh[:, :rank, :]) ** 2).sum(axis=(0, 1))
    rows, cols = select_tensor_indices(A, rank, 3, 3, select="leverage", svd="exact")
    np.testing.assert_array_equal(np.sort(rows), np.sort(np.argsort(-row_scores)[:3]))
    np.testing.assert_array_equal(np.sort(cols), np.sort(np.argsort(-col_scores)[:3]))


def _same_reconstruction(A: np.ndarray, dn: TCUR, dt: TCUR) -> None:
    """NumPy and torch reconstructions agree to round-off: ``100 eps sqrt(size)`` relative to
    ``||A||_F``, times the condition number of the intersection's Fourier slices (the middle
    inverts them; cut where the library cuts, at ``max(shape) * eps``)."""
    W = np.fft.fft(A[dn.rows][:, dn.cols, :], axis=2)
    s = np.linalg.svd(np.moveaxis(W, 2, 0), compute_uv=False)
    kept = s[s > max(W.shape) * EPS * s.max()]
    tol = 100 * EPS * np.sqrt(A.size) * float(kept.max() / kept.min())
    gap = np.linalg.norm(dt.reconstruct().numpy() - dn.reconstruct()) / np.linalg.norm(A)
    assert gap <= tol, (gap, tol)


@pytest.mark.parametrize("select", SELECT_RULES)
def test_numpy_and_torch_agree_on_a_generic_tensor(select: str) -> None:
    # Tubal rank 3 plus 1e-3 noise: 4 rows and columns lie inside the numerical rank of every
    # Fourier slice, so every pivot, score and candidate energy is separated by far more than
    # round-off and both backends must pick the same indices.
    A = low_tubal_rank_tensor(5, 10, 9, 4, 3) + 1e-3 * np.random.default_rng(5).standard_normal(
        (10, 9, 4)
    )
    d = tcur.linalg.tcur(A, 3, n_rows=4, n_cols=4, select=select, seed=0)
    dt = tcur.linalg.tcur(torch.as_tensor(A), 3, n_rows=4, n_cols=4, select=select, seed=0)
    assert isinstance(dt.rows, torch.Tensor) and dt.rows.dtype == torch.int64
    np.testing.assert_array_equal(dt.rows.numpy(), d.rows)
    np.testing.assert_array_equal(dt.cols.numpy(), d.cols)
    _same_reconstruction(A, d, dt)


@pytest.mark.parametrize("select", SELECT_RULES)
def test_numpy_and_torch_agree_past_the_tubal_rank(select: str) -> None:
    # Exact tubal rank 3, 4 rows and columns: the pivoting rules' fourth pick (and their choice
    # among candidates that all reproduce A) is decided by round-off, so only the result is
    # promised for them; the other rules act on well-separated norms, leverage scores and DEIM
    # pivots of the exact rank-3 subspaces, and keep identical indices.
    A = low_tubal_rank_tensor(5, 10, 9, 4, 3)
    d = tcur.linalg.tcur(A, 3, n_rows=4, n_cols=4, select=select, seed=0)
    dt = tcur.linalg.tcur(torch.as_tensor(A), 3, n_rows=4, n_cols=4, select=select, seed=0)
    assert isinstance(dt.rows, torch.Tensor) and dt.rows.dtype == torch.int64
    for fit in (d, dt):
        assert len(set(np.asarray(fit.rows).tolist())) == 4
        assert len(set(np.asarray(fit.cols).tolist())) == 4
        assert_reconstructs(fit, A, rtol=exact_rtol(A))
    _same_reconstruction(A, d, dt)
    if select not in PIVOTING_RULES:
        np.testing.assert_array_equal(dt.rows.numpy(), d.rows)
        np.testing.assert_array_equal(dt.cols.numpy(), d.cols)


def test_complex_input_is_exact_at_true_rank() -> None:
    rng = np.random.default_rng(0)
    X = rng.standard_normal((8, 2, 5)) + 1j * rng.standard_normal((8, 2, 5))
    Y = rng.standard_normal((2, 7, 5)) + 1j * rng.standard_normal((2, 7, 5))
    A = tprod(X, Y)
    for select in DETERMINISTIC:
        d = tcur.linalg.tcur(A, 2, select=select)
        assert np.iscomplexobj(d.U)
        assert_reconstructs(d, A, rtol=1e-9)


def test_gradcheck_through_reconstruction() -> None:
    A = torch.tensor(np.random.default_rng(0).standard_normal((4, 3, 3)), requires_grad=True)
    d = tcur.linalg.tcur(A, 2, select="deim")
    rows, cols = d.rows, d.cols

    def reconstruct(a: torch.Tensor) -> torch.Tensor:
        C, R = a[:, cols, :], a[rows, :, :]
        return TCUR(C, tpinv(a[rows][:, cols, :]), R, rows, cols).reconstruct()

    assert torch.autograd.gradcheck(reconstruct, (A,), fast_mode=True)
    d.reconstruct().sum().backward()
    assert A.grad is not None and torch.isfinite(A.grad).all()


def test_decompose_dispatches_3d_input() -> None:
    A = low_tubal_rank_tensor(0, 8, 6, 4, 2)
    d = tcur.decompose(A, 2)
    assert isinstance(d, TCUR)
    assert_reconstructs(d, A, rtol=1e-9)
    d = tcur.decompose(A, 3, method="tproduct", select="qdeim", middle="optimal")
    assert isinstance(d, TCUR) and d.C.shape == (8, 3, 4)


def test_bad_inputs() -> None:
    A = np.ones((4, 5, 3))
    with pytest.raises(ValueError, match="3-D"):
        tcur.linalg.tcur(np.ones((4, 5)), 2)
    with pytest.raises(ValueError, match="rank=5 exceeds"):
        tcur.linalg.tcur(A, 5)
    with pytest.raises(ValueError, match="rank must be >= 1"):
        tcur.linalg.tcur(A, 0)
    with pytest.raises(ValueError, match="n_rows=1 and n_cols=2 must be >= rank=2"):
        tcur.linalg.tcur(A, 2, n_rows=1)
    with pytest.raises(ValueError, match="n_cols=6 exceeds"):
        tcur.linalg.tcur(A, 2, n_cols=6)
    with pytest.raises(ValueError, match="unknown select='best'"):
        tcur.linalg.tcur(A, 2, select="best")
    with pytest.raises(ValueError, match="unknown middle='mean'"):
        tcur.linalg.tcur(A, 2, middle="mean")
    with pytest.raises(ValueError, match="NaN"):
        tcur.linalg.tcur(np.full((4, 5, 3), np.nan), 2)
    with pytest.raises(TypeError, match="seed"):
        tcur.linalg.tcur(A, 2, select="uniform", seed="abc")
    with pytest.raises(TypeError, match="numeric dtype"):
        tcur.linalg.tcur(np.full((4, 5, 3), "x"), 2)


@given(seed=st.integers(0, 2**31), k=st.integers(1, 4))
def test_oversampled_pinv_middle_is_stable_on_noisy_data(seed: int, k: int) -> None:
    # The t-pinv middle is truncated to rank k per Fourier slice: with 2k slices sampled, the
    # noise directions of the intersection are not inverted.
    A = low_tubal_rank_tensor(seed, 20, 16, 4, k)
    A = A + 1e-3 * np.random.default_rng(seed).standard_normal(A.shape)
    opts: dict[str, Any] = {"n_rows": 2 * k, "n_cols": 2 * k, "seed": seed}
    err_pinv = float(relative_error(A, tcur.linalg.tcur(A, k, middle="pinv", **opts).reconstruct()))
    err_opt = float(
        relative_error(A, tcur.linalg.tcur(A, k, middle="optimal", **opts).reconstruct())
    )
    assert err_pinv <= 2.0 * err_opt
