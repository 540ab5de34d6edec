"""Numerical hardening: zero, pruned, tiny and huge inputs (issue 9, section 4).

Warnings are errors in this suite (pyproject), so "no numpy warning" is part of every test.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import tcur
from tcur.linalg import (
    chidori_cur,
    cur,
    deim,
    fiber_cur,
    leverage_scores,
    qdeim,
    relative_error,
    teye,
    tinv,
    tpinv,
    tprod,
    tsvd,
    ttranspose,
    tubal_rank,
)
from tcur.linalg.modewise import MODEWISE_RULES
from tcur.linalg.selection import choose_indices, select_matrix, slice_norms
from tcur.testing import low_multilinear_rank_tensor

# --- inverse_norm (CURLoRA's rule) -----------------------------------------------------------


def _with_zero_rows(n_zero: int, seed: int = 0) -> np.ndarray:
    A = np.random.default_rng(seed).standard_normal((10, 8))
    A[:n_zero] = 0.0
    return A


@pytest.mark.parametrize("seed", range(8))
def test_inverse_norm_never_picks_zero_rows_when_enough_are_nonzero(seed: int) -> None:
    A = _with_zero_rows(4)
    A[:, [1, 5]] = 0.0  # pruned columns too
    chosen = select_matrix(A, 3, 3, 3, select="inverse_norm", seed=seed)
    rows, cols = chosen.rows, chosen.cols
    assert len(set(rows.tolist())) == 3 and len(set(cols.tolist())) == 3
    assert not set(rows.tolist()) & {0, 1, 2, 3}
    assert not set(cols.tolist()) & {1, 5}
    d = cur(A, 3, select="inverse_norm", seed=seed)
    assert np.isfinite(d.reconstruct()).all()


@pytest.mark.parametrize("seed", range(4))
def test_inverse_norm_fills_with_zero_slices_deterministically(seed: int) -> None:
    # 8 of 10 rows are zero: both nonzero rows are taken, then the zero rows of lowest index.
    norms = slice_norms(_with_zero_rows(8), axis=1)
    picked = choose_indices("inverse_norm", 4, norms=norms, rng=np.random.default_rng(seed))
    np.testing.assert_array_equal(picked, [8, 9, 0, 1])
    every = choose_indices("inverse_norm", 10, norms=np.zeros(10), rng=np.random.default_rng(0))
    np.testing.assert_array_equal(every, np.arange(10))


def test_inverse_norm_with_tiny_rows_does_not_overflow() -> None:
    A = np.random.default_rng(1).standard_normal((10, 8))
    A[:4] *= 1e-300  # tiny but nonzero: their inverse squared norms are ~1e600
    for seed in range(10):
        rows = select_matrix(A, 3, 3, 3, select="inverse_norm", seed=seed).rows
        # the tiny rows carry all the probability mass
        assert set(rows.tolist()) <= {0, 1, 2, 3}
    np.testing.assert_allclose(
        slice_norms(A, axis=1)[:4], np.linalg.norm(A[:4] * 1e300, axis=1) * 1e-300
    )


def test_inverse_norm_samples_proportional_to_inverse_squared_norm() -> None:
    norms = np.array([1.0, 2.0, 4.0])
    rng = np.random.default_rng(0)
    draws = [int(choose_indices("inverse_norm", 1, norms=norms, rng=rng)[0]) for _ in range(4000)]
    freq = np.bincount(draws, minlength=3) / len(draws)
    np.testing.assert_allclose(freq, np.array([16.0, 4.0, 1.0]) / 21.0, atol=0.03)


def test_slice_norms_at_both_ends_of_the_range() -> None:
    A = np.array([[3e-300, 4e-300], [3e300, 4e300], [0.0, 0.0]])
    np.testing.assert_allclose(slice_norms(A, axis=1), [5e-300, 5e300, 0.0], rtol=1e-15)
    t = torch.tensor([[3e-30, 4e-30], [3e30, 4e30]], dtype=torch.float32)
    np.testing.assert_allclose(slice_norms(t, axis=1), [5e-30, 5e30], rtol=1e-6)


# --- relative_error ------------------------------------------------------------------------


def _exact_relative_error(x: np.ndarray, approx: np.ndarray) -> float:
    num = sum(
        (Fraction(float(a)) - Fraction(float(b))) ** 2 for a, b in zip(x, approx, strict=True)
    )
    den = sum(Fraction(float(a)) ** 2 for a in x)
    return float(num / den) ** 0.5


@given(
    seed=st.integers(0, 2**32 - 1),
    exponent=st.integers(-300, 300),
    offset=st.integers(-150, 150),
    noise=st.sampled_from([1e-15, 1e-8, 1.0, 1e6, None]),
)
def test_relative_error_matches_exact_arithmetic_across_float64_range(
    seed: int, exponent: int, offset: int, noise: float | None
) -> None:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(6) * 10.0**exponent
    if noise is None:  # an unrelated approximation of another magnitude
        approx = rng.standard_normal(6) * 10.0 ** min(max(exponent + offset, -300), 300)
    else:  # a relative perturbation of x
        approx = x * (1 + noise * rng.standard_normal(6))
    expected = _exact_relative_error(x, approx)
    # NumPy takes the plain formula when it is safe, torch always the scaled one: both exact
    assert float(relative_error(x, approx)) == pytest.approx(expected, rel=1e-12)
    got_t = relative_error(torch.as_tensor(x), torch.as_tensor(approx))
    assert float(got_t) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize(
    ("dtype", "scales", "rtol"),
    [
        (np.float64, [1e-300, 1e-200, 1.0, 1e200, 1e300], 1e-14),
        (np.float32, [1e-30, 1e-20, 1.0, 1e20, 1e30], 1e-5),
    ],
)
def test_relative_error_is_scale_invariant_numpy(dtype: type, scales: list, rtol: float) -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((5, 4))
    approx = x + 0.1 * rng.standard_normal((5, 4))
    expected = np.linalg.norm(x - approx) / np.linalg.norm(x)
    for c in scales:
        xs, approxs = (x * c).astype(dtype), (approx * c).astype(dtype)
        got = float(relative_error(xs, approxs))
        assert got == pytest.approx(expected, rel=rtol), c


@pytest.mark.parametrize(
    ("dtype", "scales"),
    [
        (torch.float32, [2.0**-100, 2.0**100]),  # about 1e+-30
        (torch.bfloat16, [2.0**-100, 2.0**100]),
        (torch.float16, [2.0**-10, 2.0**12]),
    ],
)
def test_relative_error_is_scale_invariant_torch(dtype: torch.dtype, scales: list) -> None:
    x = torch.tensor([1.0, -2.0, 3.0, 0.5])
    approx = torch.tensor([1.5, -2.0, 3.0, 0.0])  # exact in every dtype, scaled by powers of 2
    expected = float(torch.linalg.vector_norm(x - approx) / torch.linalg.vector_norm(x))
    for c in scales:
        got = relative_error((x * c).to(dtype), (approx * c).to(dtype))
        assert isinstance(got, torch.Tensor) and got.ndim == 0
        assert float(got) == pytest.approx(expected, rel=1e-6), c


def test_relative_error_keeps_tiny_differences_exact() -> None:
    # x and approx differ in the last bits; dividing by a non-power-of-two scale would lose them
    x = 3.0 * (1.0 + np.arange(1, 6) * np.finfo(float).eps)
    approx = np.full(5, 3.0)
    assert float(relative_error(x, approx)) == pytest.approx(
        _exact_relative_error(x, approx), rel=1e-12
    )


def test_relative_error_special_values() -> None:
    x = np.ones(3)
    assert np.isnan(float(relative_error(x, np.array([1.0, np.nan, 1.0]))))
    assert float(relative_error(x, np.array([1.0, np.inf, 1.0]))) == np.inf
    assert float(relative_error(np.full(3, 1e308), np.full(3, -1e308))) == pytest.approx(2.0)
    assert float(relative_error(np.array([1e-200]), np.array([1e100]))) == pytest.approx(1e300)
    assert float(relative_error(np.zeros((2, 2)), np.zeros((2, 2)))) == 0.0
    assert float(relative_error(torch.zeros(3), torch.tensor([0.0, 1e-30, 0.0]))) == np.inf
    with pytest.raises(ValueError, match="x must not contain NaN or Inf"):
        relative_error(np.array([1.0, np.nan]), np.ones(2))
    assert np.isnan(float(relative_error(np.array([1.0, np.nan]), np.ones(2), check_finite=False)))


def test_relative_error_gradcheck() -> None:
    x = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    approx = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(relative_error, (x, approx))


# --- DEIM / Q-DEIM on rank-deficient bases ---------------------------------------------------


def _deficient_bases() -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal(7), rng.standard_normal(7)
    return [
        np.stack([a, 2 * a], axis=1),  # repeated direction
        np.stack([a, b, a - 3 * b], axis=1),  # combination of earlier columns
        np.stack([a, np.zeros(7)], axis=1),  # zero column
        np.zeros((5, 2)),
        np.ones((5, 2)),
    ]


@pytest.mark.parametrize("V", _deficient_bases())
@pytest.mark.parametrize("rule", [deim, qdeim])
def test_deim_and_qdeim_refuse_rank_deficient_bases(V: np.ndarray, rule: object) -> None:
    with pytest.raises(ValueError, match="V is rank-deficient"):
        rule(V)  # type: ignore[operator]
    with pytest.raises(ValueError, match="rank-deficient"):
        rule(torch.as_tensor(V))  # type: ignore[operator]


@pytest.mark.parametrize("rule", [deim, qdeim])
@pytest.mark.parametrize("scale", [1e-300, 1.0, 1e300])
def test_deim_accepts_nearly_dependent_and_scaled_bases(rule: object, scale: float) -> None:
    rng = np.random.default_rng(1)
    a = rng.standard_normal(9)
    V = np.stack([a, a + 1e-9 * rng.standard_normal(9), rng.standard_normal(9)], axis=1) * scale
    idx = rule(V)  # type: ignore[operator]
    assert len(set(idx.tolist())) == 3
    assert np.linalg.matrix_rank(V[idx] / scale) == 3


def test_deim_on_complex_and_tiny_float32_bases_matches_float64() -> None:
    rng = np.random.default_rng(2)
    Z, _ = np.linalg.qr(rng.standard_normal((8, 3)) + 1j * rng.standard_normal((8, 3)))
    for rule in (deim, qdeim):
        np.testing.assert_array_equal(rule(Z * 1e-300), rule(Z))
        assert len(set(rule(Z).tolist())) == 3
    Q, _ = np.linalg.qr(rng.standard_normal((8, 3)))
    tiny = (Q * 1e-40).astype(np.float32)  # subnormal float32 entries
    np.testing.assert_array_equal(deim(tiny), deim(Q))
    np.testing.assert_array_equal(deim(Q * 1e-310), deim(Q))  # subnormal float64 entries
    assert deim(np.array([[1e-310], [2e-310]])).tolist() == [1]


def test_too_large_input_is_refused_clearly_instead_of_hanging() -> None:
    # LAPACK's SVD of an overflowed (Inf) triangular factor loops forever; the factor is checked.
    rng = np.random.default_rng(3)
    A = rng.standard_normal((40, 5)) @ rng.standard_normal((5, 30))
    for big in ((A / np.abs(A).max() * 3e38).astype(np.float32), A / np.abs(A).max() * 1.7e308):
        for select in ("sketch_qr", "deim"):
            with pytest.raises(ValueError, match=r"A is too large for float.*power of two"):
                cur(big, 5, seed=0, select=select)
            with pytest.raises(ValueError, match=r"too large for float.*power of two"):
                cur(big, 5, seed=0, select=select, check_finite=False)  # the factor's check
        with pytest.raises(ValueError, match=r"A is too large for torch\.float"):
            cur(torch.as_tensor(big), 5, seed=0)  # torch.float32 / torch.float64
    holed = A.copy()
    holed[3, 4] = np.nan  # let through by check_finite=False: the factor's check names both causes
    with pytest.raises(ValueError, match=r"holds NaN or Inf \(check_finite=False"):
        cur(holed, 5, seed=0, check_finite=False)
    T = np.random.default_rng(0).standard_normal((20, 15, 4))
    T = (T / np.abs(T).max() * 3e38).astype(np.float32)
    for call in (lambda: tsvd(T), lambda: tcur.decompose(T, 3)):  # t-product: Fourier slices
        with pytest.raises(ValueError, match=r"too large for float32.*sqrt\(n3\)"):
            call()
    with pytest.raises(ValueError, match=r"T is too large for float32: its Frobenius norm \("):
        chidori_cur(T, 3)
    # Large but representable: decomposed as usual, to the accuracy of the unscaled problem
    # (float32 at a norm of 5e37, an eighth of its largest value; a Tucker method has no
    # Fourier transform, so the tube length does not count against it).
    d = cur(A * 2.0**1000, 5, seed=0)
    assert float(relative_error(A * 2.0**1000, d.reconstruct())) < 1e-12
    A32 = (A * (5e37 / np.linalg.norm(A))).astype(np.float32)
    assert float(relative_error(A32, cur(A32, 5, seed=0).reconstruct())) < 1e-5
    long = (np.ones((3, 3, 400)) * (2e37 / 60)).astype(np.float32)  # norm 2e37, sqrt(n3) = 20
    chidori_cur(long, 1)
    with pytest.raises(ValueError, match=r"sqrt\(n3\) = 20"):
        tsvd(long)


# --- mode-wise CUR on zero and extreme tensors -----------------------------------------------


@pytest.mark.parametrize("method", [chidori_cur, fiber_cur])
@pytest.mark.parametrize("select", MODEWISE_RULES)
def test_modewise_cur_of_zero_tensor(method: object, select: str) -> None:
    T = np.zeros((4, 5, 6))
    d = method(T, 2, select=select, seed=0)  # type: ignore[operator]
    for idx, size in zip(d.indices, T.shape, strict=True):
        assert len(set(idx.tolist())) == len(idx) and int(idx.max()) < size
    np.testing.assert_array_equal(d.reconstruct(), T)
    assert all(np.isfinite(f).all() for f in d.factors)


@pytest.mark.parametrize("method", [chidori_cur, fiber_cur])
@pytest.mark.parametrize("select", ["deim", "qdeim", "leverage"])
@pytest.mark.parametrize("scale", [1e-300, 1e300])
def test_modewise_cur_is_scale_invariant_at_float64_extremes(
    method: object, select: str, scale: float
) -> None:
    T = low_multilinear_rank_tensor(3, (6, 7, 5), (2, 3, 2))
    ref = method(T, (2, 3, 2), select=select)  # type: ignore[operator]
    big = method(T * scale, (2, 3, 2), select=select)  # type: ignore[operator]
    for a, b in zip(ref.indices, big.indices, strict=True):
        np.testing.assert_array_equal(a, b)
    approx = big.reconstruct()
    assert np.isfinite(approx).all()
    assert float(relative_error(T * scale, approx)) < 1e-10


@pytest.mark.parametrize("method", [chidori_cur, fiber_cur])
def test_modewise_cur_of_complex_tensor_at_1e300(method: object) -> None:
    rng = np.random.default_rng(6)
    T = rng.standard_normal((4, 5, 3)) + 1j * rng.standard_normal((4, 5, 3))
    d = method(T * 1e300, (4, 5, 3))  # type: ignore[operator]
    assert float(relative_error(T * 1e300, d.reconstruct())) < 1e-12


@pytest.mark.parametrize("method", [chidori_cur, fiber_cur])
@pytest.mark.parametrize("scale", [1e-30, 1e30])
def test_modewise_cur_of_extreme_float32_tensor(method: object, scale: float) -> None:
    T = torch.as_tensor(low_multilinear_rank_tensor(4, (6, 5, 4), (2, 2, 2)) * scale)
    T = T.to(torch.float32)
    d = method(T, 2)  # type: ignore[operator]
    approx = d.reconstruct()
    assert approx.dtype == torch.float32 and torch.isfinite(approx).all()
    assert float(relative_error(T, approx)) < 1e-4


@pytest.mark.parametrize("method", [chidori_cur, fiber_cur])
def test_modewise_cur_with_over_specified_rank_stays_exact(method: object) -> None:
    # asking for more than the true multilinear rank: the extra directions are round-off and
    # are completed to a basis instead of producing repeated indices
    T = low_multilinear_rank_tensor(5, (6, 6, 6), (2, 2, 2))
    d = method(T, 4)  # type: ignore[operator]
    for idx in d.indices:
        assert len(set(idx.tolist())) == 4
    assert float(relative_error(T, d.reconstruct())) < 1e-8


# --- the t-product algebra at the ends of the range ------------------------------------------


@pytest.mark.parametrize(
    ("dtype", "scale"),
    [(np.float64, 1e-300), (np.float64, 1e300), (np.float32, 1e-30), (np.float32, 1e30)],
)
def test_tproduct_algebra_at_extreme_scales(dtype: type, scale: float) -> None:
    tol = 1e-12 if dtype == np.float64 else 1e-4
    A: np.ndarray = (np.random.default_rng(7).standard_normal((5, 4, 3)) * scale).astype(dtype)
    U, S, V = tsvd(A)
    assert all(np.isfinite(f).all() for f in (U, S, V))
    assert float(relative_error(A, tprod(U, S, ttranspose(V)))) < tol
    assert float(relative_error(A, tprod(A, tpinv(A), A))) < tol
    assert tubal_rank(A) == 4
    B: np.ndarray = (np.random.default_rng(8).standard_normal((4, 4, 3)) * scale).astype(dtype)
    assert float(relative_error(teye(4, 3, like=B), tprod(B, tinv(B)))) < 100 * tol
    p = leverage_scores(A[:, :, 0], 2, axis=0)
    assert np.isfinite(p).all() and abs(float(p.sum()) - 1) < tol


def test_tproduct_algebra_of_zero_tensor() -> None:
    Z = np.zeros((4, 3, 5))
    U, S, V = tsvd(Z)
    np.testing.assert_array_equal(tprod(U, S, ttranspose(V)), Z)
    np.testing.assert_array_equal(tpinv(Z), np.zeros((3, 4, 5)))
    np.testing.assert_array_equal(tpinv(torch.zeros(4, 3, 5)).numpy(), np.zeros((3, 4, 5)))
    assert tubal_rank(Z) == 0
    with pytest.raises(ValueError, match="Fourier slice 0 is singular"):
        tinv(np.zeros((3, 3, 2)))
    p = leverage_scores(Z[:, :, 0], 2, axis=1)
    assert np.isfinite(p).all() and abs(float(p.sum()) - 1) < 1e-12


def test_torch_sparse_tensors_are_refused_with_the_fix() -> None:
    A = torch.randn(20, 10, dtype=torch.float64)
    with pytest.raises(
        TypeError, match=r"A is a torch tensor with layout torch\.sparse_coo.*to_dense"
    ):
        cur(A.to_sparse(), 4)
    with pytest.raises(TypeError, match=r"layout torch\.sparse_coo"):
        tsvd(A.reshape(5, 4, 10).to_sparse())


def test_tinv_refuses_an_inverse_beyond_the_dtype_instead_of_nan() -> None:
    for A in (np.eye(2)[:, :, None] * 1e-310, (np.eye(2)[:, :, None] * 1e-39).astype(np.float32)):
        with pytest.raises(ValueError, match=r"inverse of A is not representable.*power of two"):
            tinv(A)
    np.testing.assert_allclose(tinv(np.eye(2)[:, :, None] * 1e-300)[:, :, 0], np.eye(2) * 1e300)


def test_small_api_errors_say_what_to_do() -> None:
    with pytest.raises(TypeError, match=r"not a NumPy dtype.*like="):
        teye(2, 3, dtype=torch.float32)
    assert teye(2, 3, like=torch.zeros(1), dtype=torch.float32).dtype == torch.float32
    with pytest.raises(ValueError, match=r"3-D for method='tproduct'.*'chidori' or 'fiber'"):
        tcur.decompose(np.ones((3, 3, 3, 3)), 2)
