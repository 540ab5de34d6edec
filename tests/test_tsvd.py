"""Properties of the t-SVD and the tubal rank."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from tcur.linalg import teye, tprod, tsvd, ttranspose, tubal_rank
from tcur.testing import low_tubal_rank_tensor, tubal_tensors

EPS = np.finfo(np.float64).eps
seeds = st.integers(0, 2**32 - 1)
sides = st.integers(1, 6)
tubes = st.integers(1, 7)


def gaussian(seed: int, shape: tuple[int, ...], complex_: bool = False) -> np.ndarray:
    rng = np.random.default_rng(seed)
    out = rng.standard_normal(shape)
    return out + 1j * rng.standard_normal(shape) if complex_ else out


def tol(A: np.ndarray) -> float:
    return 100 * EPS * max(A.shape) * A.shape[2] * max(float(np.abs(A).max()), 1.0)


def fourier_singular_values(A: np.ndarray) -> np.ndarray:
    """Singular values of all n3 slices of the full DFT, shape (n3, min(n1, n2))."""
    return np.linalg.svd(np.moveaxis(np.fft.fft(A, axis=2), 2, 0), compute_uv=False)


@given(seeds, sides, sides, tubes, st.booleans(), st.booleans())
def test_reconstruction_orthogonality_fdiagonal(
    seed: int, n1: int, n2: int, n3: int, full: bool, complex_: bool
) -> None:
    A = gaussian(seed, (n1, n2, n3), complex_)
    U, S, V = tsvd(A, full_matrices=full)
    k = min(n1, n2)
    if full:
        assert (U.shape, S.shape, V.shape) == ((n1, n1, n3), (n1, n2, n3), (n2, n2, n3))
    else:
        assert (U.shape, S.shape, V.shape) == ((n1, k, n3), (k, k, n3), (n2, k, n3))
    assert np.iscomplexobj(U) == complex_
    np.testing.assert_allclose(tprod(U, S, ttranspose(V)), A, atol=tol(A))
    for Q in (U, V):
        np.testing.assert_allclose(tprod(ttranspose(Q), Q), teye(Q.shape[1], n3), atol=tol(A))
    off_diagonal = S * (1 - np.eye(S.shape[0], S.shape[1]))[:, :, None]
    assert np.abs(off_diagonal).max(initial=0.0) < tol(A)


@given(seeds, sides, sides, tubes)
def test_full_factors_are_t_orthogonal_both_ways(seed: int, n1: int, n2: int, n3: int) -> None:
    A = gaussian(seed, (n1, n2, n3))
    U, _, V = tsvd(A, full_matrices=True)
    for Q in (U, V):
        np.testing.assert_allclose(tprod(Q, ttranspose(Q)), teye(Q.shape[0], n3), atol=tol(A))


@given(seeds, sides, sides, tubes, st.data())
def test_truncation_error_is_the_fourier_singular_value_tail(
    seed: int, n1: int, n2: int, n3: int, data: st.DataObject
) -> None:
    A = gaussian(seed, (n1, n2, n3))
    rank = data.draw(st.integers(1, min(n1, n2)))
    U, S, V = tsvd(A, rank)
    assert (U.shape, S.shape, V.shape) == ((n1, rank, n3), (rank, rank, n3), (n2, rank, n3))
    err2 = np.linalg.norm(A - tprod(U, S, ttranspose(V))) ** 2
    tail = (fourier_singular_values(A)[:, rank:] ** 2).sum() / n3
    assert abs(err2 - tail) <= 1e-10 * np.linalg.norm(A) ** 2


@given(tubal_tensors(max_side=6, max_tubes=7))
def test_tubal_rank_and_exact_truncation(pair: tuple[np.ndarray, int]) -> None:
    A, rank = pair
    assert tubal_rank(A) == rank
    U, S, V = tsvd(A, rank)
    np.testing.assert_allclose(tprod(U, S, ttranspose(V)), A, atol=tol(A))


def test_singular_values_match_fourier_slices() -> None:
    A = gaussian(0, (5, 4, 6))
    _, S, _ = tsvd(A)
    diag = np.fft.fft(S, axis=2)[np.arange(4), np.arange(4), :]  # (4, n3) Fourier diagonals
    np.testing.assert_allclose(diag.real.T, fourier_singular_values(A), atol=tol(A))
    np.testing.assert_allclose(diag.imag, 0.0, atol=tol(A))


def test_numpy_and_torch_agree() -> None:
    A = gaussian(1, (5, 3, 4))
    U, S, V = tsvd(A, 2)
    Ut, St, Vt = tsvd(torch.as_tensor(A), 2)
    assert all(isinstance(x, torch.Tensor) and x.dtype == torch.float64 for x in (Ut, St, Vt))
    np.testing.assert_allclose(St.numpy(), S, atol=tol(A))
    np.testing.assert_allclose(tprod(Ut, St, ttranspose(Vt)).numpy(), tprod(U, S, ttranspose(V)))
    assert tubal_rank(torch.as_tensor(A)) == tubal_rank(A) == 3
    U32, S32, _ = tsvd(A.astype(np.float32))
    assert U32.dtype == S32.dtype == np.float32


def test_tubal_rank_tolerance() -> None:
    A = low_tubal_rank_tensor(0, 5, 5, 4, 3, cond=1e6)
    assert tubal_rank(A) == 3
    assert tubal_rank(A, tol=1e-3) < 3
    assert tubal_rank(np.zeros((2, 3, 4))) == 0


def test_bad_inputs() -> None:
    A = np.ones((3, 4, 2))
    with pytest.raises(ValueError, match="3-D"):
        tsvd(np.ones((3, 4)))
    with pytest.raises(ValueError, match="rank=4 exceeds"):
        tsvd(A, 4)
    with pytest.raises(ValueError, match="rank must be >= 1"):
        tsvd(A, 0)
    with pytest.raises(ValueError, match="full_matrices"):
        tsvd(A, 2, full_matrices=True)
    with pytest.raises(ValueError, match="tol"):
        tubal_rank(A, tol=-1.0)
    with pytest.raises(ValueError, match="NaN"):
        tubal_rank(np.full((2, 2, 2), np.inf))
