"""Selection rules: leverage scores, DEIM and Q-DEIM against their definitions."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
import torch
from hypothesis import assume, given
from hypothesis import strategies as st

from tcur.linalg import deim, leverage_scores, qdeim
from tcur.linalg.svd_bases import singular_vectors
from tcur.testing import low_rank_matrix, matrices
from tcur.testing.strategies import orthonormal

bases = st.tuples(st.integers(0, 2**31), st.integers(1, 15), st.integers(1, 8)).map(
    lambda t: orthonormal(np.random.default_rng(t[0]), max(t[1], t[2]), t[2])
)


@given(pair=matrices(max_side=12), axis=st.sampled_from([0, 1]))
def test_leverage_scores_match_svd_definition(pair: tuple[np.ndarray, int], axis: int) -> None:
    A, k = pair
    p = leverage_scores(A, k, axis=axis)
    U, _, Vt = np.linalg.svd(A)
    basis = U[:, :k] if axis == 0 else Vt[:k].T
    np.testing.assert_allclose(p, (basis**2).sum(axis=1) / k, atol=1e-10)
    assert (p >= 0).all()
    assert abs(p.sum() - 1) < 1e-12


@given(V=bases)
def test_deim_matches_lu_partial_pivoting(V: np.ndarray) -> None:
    # DEIM's greedy choice equals the pivot order of LU with partial pivoting on V
    # (Sorensen & Embree 2016, Sec. 3), an independent construction. Both take an argmax at
    # every step, so they must agree only where it is well separated: a near tie shows up as
    # a multiplier |L[i, j]| within round-off of 1 (partial pivoting keeps |L| <= 1).
    p, L, _ = scipy.linalg.lu(V, p_indices=True)  # V == L[p] @ U
    assume(np.abs(np.tril(L, -1)).max(initial=0.0) < 1 - 1e3 * np.finfo(V.dtype).eps * V.shape[0])
    pivot_rows = np.argsort(p)  # V[pivot_rows] == L @ U, L unit lower triangular
    np.testing.assert_array_equal(deim(V), pivot_rows[: V.shape[1]])


@given(V=bases)
def test_deim_and_qdeim_give_distinct_indices_with_invertible_rows(V: np.ndarray) -> None:
    k = V.shape[1]
    for rule in (deim, qdeim):
        idx = rule(V)
        assert idx.shape == (k,) and len(set(idx.tolist())) == k
        assert np.linalg.matrix_rank(V[idx]) == k


def test_qdeim_matches_pivoted_qr() -> None:
    V = orthonormal(np.random.default_rng(4), 20, 5)
    _, _, piv = scipy.linalg.qr(V.T, pivoting=True)
    np.testing.assert_array_equal(qdeim(V), piv[:5])


def test_selection_returns_input_kind() -> None:
    V = orthonormal(np.random.default_rng(0), 9, 3)
    out = deim(torch.as_tensor(V))
    assert isinstance(out, torch.Tensor) and out.dtype == torch.int64
    np.testing.assert_array_equal(out.numpy(), deim(V))
    p = leverage_scores(torch.as_tensor(low_rank_matrix(0, 9, 7, 3)), 3, axis=1)
    assert isinstance(p, torch.Tensor) and p.shape == (7,)


@pytest.mark.parametrize("complex_input", [False, True])
def test_randomized_svd_finds_the_dominant_subspace(complex_input: bool) -> None:
    A = low_rank_matrix(9, 700, 500, 12)
    if complex_input:
        A = A @ (np.eye(500) + 1j * orthonormal(np.random.default_rng(1), 500, 500))  # rank 12
    U, s, V = singular_vectors(A, 8, svd="randomized")
    U_ex, s_ex, Vt_ex = np.linalg.svd(A, full_matrices=False)
    np.testing.assert_allclose(s, s_ex[:8], rtol=1e-8)
    # same subspaces: projector difference is tiny
    assert np.linalg.norm(U @ U.conj().T - U_ex[:, :8] @ U_ex[:, :8].conj().T) < 1e-6
    assert np.linalg.norm(V @ V.conj().T - Vt_ex[:8].conj().T @ Vt_ex[:8]) < 1e-6


def test_bad_basis_inputs() -> None:
    with pytest.raises(ValueError, match="V must have at least as many rows"):
        deim(np.ones((2, 3)))
    with pytest.raises(ValueError, match="V must be 2-D"):
        qdeim(np.ones(3))
    with pytest.raises(ValueError, match="axis must be 0"):
        leverage_scores(np.eye(3), 1, axis=2)
