"""The quasi-optimal rules ``sketch_qr`` and ``arp``: exactness, guarantees, determinism, seeds."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from spectra import noisy_spectrum

import tcur
from tcur.linalg import cur, relative_error
from tcur.linalg import tcur as tensor_cur
from tcur.linalg.middle import middle_factors
from tcur.linalg.pivoting import (
    PIVOTING_RULES,
    adaptive_randomized_pivots,
    captured_energy,
    pivoted_qr_indices,
    select_pivoted,
)
from tcur.testing import assert_reconstructs, low_tubal_rank_tensor, matrices, tubal_tensors

EPS = np.finfo(np.float64).eps


def svd_floor(A: np.ndarray, k: int) -> float:
    s2 = np.linalg.svd(A, compute_uv=False) ** 2
    return float(np.sqrt(s2[k:].sum() / s2.sum()))


@pytest.mark.parametrize("middle", ["optimal", "pinv"])
@pytest.mark.parametrize("select", PIVOTING_RULES)
@given(pair=matrices(max_side=14, max_cond=100.0), seed=st.integers(0, 2**32 - 1))
def test_exact_at_true_rank(
    pair: tuple[np.ndarray, int], select: str, middle: str, seed: int
) -> None:
    # Pivoting on a basis of the (sketched) range picks rank(A) independent columns, and rows
    # independent on them, so the intersection has rank(A) and CUR is exact.
    A, k = pair
    d = cur(A, k, select=select, middle=middle, seed=seed)
    W = A[d.rows][:, d.cols]
    s = np.linalg.svd(W, compute_uv=False)
    assert s[k - 1] > 0
    assert_reconstructs(d, A, rtol=1e3 * EPS * max(A.shape) * s[0] / s[k - 1])


@pytest.mark.parametrize("select", PIVOTING_RULES)
@given(pair=tubal_tensors(max_side=7, max_tubes=5, max_cond=10.0))
def test_tensor_exact_at_true_tubal_rank(pair: tuple[np.ndarray, int], select: str) -> None:
    A, rank = pair
    d = tensor_cur(A, rank, select=select, seed=0)
    assert_reconstructs(d, A, rtol=1e5 * EPS * max(A.shape) * A.shape[2])


@pytest.mark.parametrize("select", PIVOTING_RULES)
@given(
    seed=st.integers(0, 10**6),
    m=st.integers(30, 60),
    n=st.integers(30, 60),
    k=st.integers(2, 10),
    decay=st.floats(0.6, 0.97),
    noise=st.sampled_from([1e-6, 1e-4, 1e-2]),
)
def test_error_within_modest_factor_of_svd_floor(
    select: str, seed: int, m: int, n: int, k: int, decay: float, noise: float
) -> None:
    # Suite-like inputs (decaying spectrum plus noise): CUR with exactly k rows and columns
    # stays within the volume-sampling factor sqrt(k + 1) of the best rank-k error (times 2 for
    # the two sides); on the benchmark suite the default is within 2.5x.
    A = noisy_spectrum(seed, m, n, decay, noise)
    d = cur(A, k, select=select, seed=seed)
    err = float(relative_error(A, d.reconstruct()))
    assert np.isfinite(err) and err <= 1.0
    assert err <= 2 * np.sqrt(k + 1) * svd_floor(A, k)


@given(seed=st.integers(0, 10**6), k=st.integers(1, 6), decay=st.floats(0.5, 0.95))
def test_arp_expected_column_error_bound(seed: int, k: int, decay: float) -> None:
    # Cortinovis & Kressner (2024): E ||A - P_C A||_F^2 <= (k + 1) ||A - A V V^T||_F^2 for the
    # exact leading right singular vectors V. Checked on the mean of 200 draws (Monte Carlo
    # slack 1.25: the bound is far from tight on these inputs).
    A = noisy_spectrum(seed, 25, 20, decay, 1e-3)
    _, s, Vt = np.linalg.svd(A)
    V = Vt[:k].T
    rng = np.random.default_rng(seed)
    errors = []
    for _ in range(200):
        C = A[:, adaptive_randomized_pivots(V, k, rng)]
        errors.append(np.linalg.norm(A - C @ np.linalg.lstsq(C, A, rcond=None)[0]) ** 2)
    assert np.mean(errors) <= 1.25 * (k + 1) * np.sum(s[k:] ** 2)


def _textbook_arp(V: np.ndarray, count: int, rng: np.random.Generator) -> list[int]:
    """Adaptive randomized pivots as Cortinovis & Kressner state them: draw by the squared row
    norms of the residual, then project the drawn row's direction out of every row."""
    residual, picked = np.array(V, dtype=complex), []
    for _ in range(count):
        weights = np.sum(np.abs(residual) ** 2, axis=1)
        weights[picked] = 0.0
        j = int(rng.choice(weights.size, p=weights / weights.sum()))
        picked.append(j)
        direction = residual[j] / np.linalg.norm(residual[j])
        residual -= np.outer(residual @ direction.conj(), direction)
    return picked


@pytest.mark.parametrize("case", ["orthonormal", "graded", "complex"])
def test_arp_draws_what_the_textbook_algorithm_draws(case: str) -> None:
    # The implementation updates weights by subtraction; with the same random stream it must
    # draw the same indices as the residual-update algorithm (also with a tiny energy tail,
    # where it recomputes the weights).
    rng = np.random.default_rng(4)
    V = np.linalg.qr(rng.standard_normal((60, 12)))[0]
    if case == "graded":
        V = V * np.r_[np.ones(3), 1e-5 * np.ones(9)]
    if case == "complex":
        V = np.linalg.qr(rng.standard_normal((60, 12)) + 1j * rng.standard_normal((60, 12)))[0]
    for seed in range(20):
        ours = adaptive_randomized_pivots(V, 12, np.random.default_rng(seed))
        assert ours.tolist() == _textbook_arp(V, 12, np.random.default_rng(seed))


def test_arp_draws_distinct_indices_beyond_the_rank() -> None:
    V = np.linalg.qr(np.random.default_rng(0).standard_normal((10, 2)))[0]
    idx = adaptive_randomized_pivots(V, 6, np.random.default_rng(1))
    assert len(set(idx.tolist())) == 6


def test_pivoted_qr_past_the_numerical_rank_uses_column_norms() -> None:
    M = np.outer([1.0, 2.0], [0.0, 3.0, 1.0, 2.0])  # rank 1
    idx = pivoted_qr_indices(M, 3)
    assert idx.tolist() == [1, 3, 2]


def test_captured_energy_is_the_exact_cur_error() -> None:
    # The candidates are ranked by ||A||^2 - ||Q_C^H A Q_R||^2, which must be the squared error
    # of C pinv(C) A pinv(R) R, also for rank-deficient C and R.
    A = noisy_spectrum(3, 40, 30, 0.9, 1e-3)
    A[:, 5] = A[:, 4]  # duplicated column: rank-deficient C below
    candidates = [(np.array([1, 2, 3]), np.array([4, 5, 9])), (np.array([0, 7]), np.array([1, 2]))]
    energy = captured_energy(A[None], np.ones(1), candidates)
    for (rows, cols), e in zip(candidates, energy, strict=True):
        C, R = A[:, cols], A[rows]
        err2 = np.linalg.norm(A - C @ np.linalg.pinv(C) @ A @ np.linalg.pinv(R) @ R) ** 2
        np.testing.assert_allclose(np.linalg.norm(A) ** 2 - e, err2, rtol=1e-9)


@pytest.mark.parametrize("select", PIVOTING_RULES)
def test_default_keeps_exactly_rank_rows_and_columns(select: str) -> None:
    A = noisy_spectrum(0, 40, 30, 0.9, 1e-3)
    d = cur(A, 7, select=select, seed=0)
    assert d.C.shape == (40, 7) and d.R.shape == (7, 30) and d.U.shape == (7, 7)
    assert len(set(d.rows.tolist())) == 7 and len(set(d.cols.tolist())) == 7


def test_default_is_the_quasi_optimal_rule_with_the_optimal_middle() -> None:
    A = noisy_spectrum(1, 50, 40, 0.8, 1e-2)
    d = tcur.decompose(A, 6, seed=2)
    e = cur(A, 6, select="sketch_qr", middle="optimal", seed=2)
    np.testing.assert_array_equal(d.rows, e.rows)
    np.testing.assert_allclose(d.U, e.U)


@pytest.mark.parametrize("select", PIVOTING_RULES)
def test_numpy_and_torch_select_the_same_indices(select: str) -> None:
    A = noisy_spectrum(2, 30, 25, 0.8, 1e-3)
    dn = cur(A, 5, select=select, seed=3)
    dt = cur(torch.as_tensor(A), 5, select=select, seed=3)
    np.testing.assert_array_equal(dn.rows, dt.rows.numpy())
    np.testing.assert_array_equal(dn.cols, dt.cols.numpy())
    T = low_tubal_rank_tensor(4, 9, 8, 4, 3) + 1e-3 * np.random.default_rng(0).random((9, 8, 4))
    tn = tensor_cur(T, 3, select=select, seed=1)
    tt = tensor_cur(torch.as_tensor(T), 3, select=select, seed=1)
    np.testing.assert_array_equal(tn.rows, tt.rows.numpy())
    np.testing.assert_allclose(tn.reconstruct(), tt.reconstruct().numpy(), atol=1e-10)


def test_seed_none_is_random_and_an_int_reproducible() -> None:
    A = np.random.default_rng(0).standard_normal((60, 50))
    draws = {tuple(cur(A, 10, select="arp").cols.tolist()) for _ in range(4)}
    assert len(draws) > 1
    a, b = cur(A, 10, select="arp", seed=4), cur(A, 10, select="arp", seed=4)
    np.testing.assert_array_equal(a.cols, b.cols)
    np.testing.assert_array_equal(a.rows, b.rows)


@pytest.mark.parametrize("seed", [-1, 1.5, "0"])
def test_bad_seed_is_a_clear_error(seed: object) -> None:
    A = np.random.default_rng(0).standard_normal((6, 5))
    with pytest.raises((ValueError, TypeError), match="seed"):
        cur(A, 2, seed=seed)
    with pytest.raises((ValueError, TypeError), match="seed"):
        tensor_cur(A[:, :, None], 2, seed=seed)


@pytest.mark.parametrize("select", PIVOTING_RULES)
@pytest.mark.parametrize(
    ("scale", "dtype"),
    [(1e300, np.float64), (1e-300, np.float64), (1e30, np.float32), (1e-30, np.float32)],
)
def test_selection_is_invariant_to_scale_at_the_ends_of_the_range(
    select: str, scale: float, dtype: type
) -> None:
    """Candidates are ranked by squared energies: scaled input must not overflow them."""
    A = noisy_spectrum(5, 40, 30, 0.85, 1e-3).astype(dtype)
    base = cur(A, 6, select=select, seed=2)
    scaled = cur(A * dtype(scale), 6, select=select, seed=2)
    np.testing.assert_array_equal(base.cols, scaled.cols)
    np.testing.assert_array_equal(base.rows, scaled.rows)
    T = noisy_spectrum(6, 24, 18, 0.8, 1e-3).reshape(12, 18, 2).astype(dtype)
    t_base = tensor_cur(T, 4, select=select, seed=2)
    t_scaled = tensor_cur(T * dtype(scale), 4, select=select, seed=2)
    np.testing.assert_array_equal(t_base.cols, t_scaled.cols)
    np.testing.assert_array_equal(t_base.rows, t_scaled.rows)


@pytest.mark.parametrize("middle", ["optimal", "pinv"])
@pytest.mark.parametrize("shape", [(40, 30, 5, 5), (40, 30, 8, 5), (30, 40, 5, 8)])
def test_middle_from_the_selections_measurements_equals_the_direct_one(
    middle: str, shape: tuple[int, int, int, int]
) -> None:
    # The selection hands its range factors and Q_C^H A Q_R to the middle instead of factoring
    # C and R again and reading A once more: the result must be the middle computed directly.
    m, n, n_rows, n_cols = shape
    A = noisy_spectrum(4, m, n, 0.8, 1e-6)
    chosen = select_pivoted(A[None], n_rows, n_cols, rule="sketch_qr", seed=0)
    assert chosen.measured is not None
    measured = chosen.measured.first()
    C, R = A[:, chosen.cols], A[chosen.rows]
    options = {"middle": middle, "rank": min(n_rows, n_cols), "rtol": None}
    U, form = middle_factors(A, C, R, chosen.rows, chosen.cols, measured=measured, **options)
    U0, form0 = middle_factors(A, C, R, chosen.rows, chosen.cols, **options)
    tol = 100 * np.finfo(A.dtype).eps * np.linalg.norm(A)
    assert np.linalg.norm(form.value() - form0.value()) <= tol
    assert np.linalg.norm(C @ U @ R - C @ U0 @ R) <= 1e4 * tol


def test_a_rescaled_input_hands_no_measurements_to_the_middle() -> None:
    # Beyond 2^+-128 the selection works on a rescaled copy, whose factors are not A's.
    A = noisy_spectrum(4, 30, 20, 0.8, 1e-6)
    assert select_pivoted(A[None], 4, 4, rule="sketch_qr", seed=0).measured is not None
    assert select_pivoted(1e300 * A[None], 4, 4, rule="sketch_qr", seed=0).measured is None
