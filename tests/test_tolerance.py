"""``tol=``: accuracy-driven rank on cur, tcur and decompose (validation and promises)."""

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
from tcur.linalg.tolerance import estimate_rank
from tcur.linalg.tproduct import fourier_weights, to_fourier
from tcur.testing import low_rank_matrix, low_tubal_rank_tensor


def svd_rank_meeting(A: np.ndarray, tol: float) -> int:
    """Smallest k whose truncated SVD has relative Frobenius error <= tol."""
    s2 = np.linalg.svd(A, compute_uv=False) ** 2
    tail = np.sqrt(np.append(np.cumsum(s2[::-1])[::-1], 0.0) / s2.sum())
    return int(np.flatnonzero(tail <= tol)[0])


@given(
    seed=st.integers(0, 10**6),
    m=st.integers(20, 70),
    n=st.integers(20, 70),
    decay=st.floats(0.5, 0.95),
    noise=st.sampled_from([0.0, 1e-8, 1e-4, 1e-2]),
    tol=st.floats(0.01, 0.5),
)
def test_cur_meets_tol_with_a_visible_rank(
    seed: int, m: int, n: int, decay: float, noise: float, tol: float
) -> None:
    A = noisy_spectrum(seed, m, n, decay, noise)
    d = cur(A, tol=tol, seed=seed)
    assert float(relative_error(A, d.reconstruct())) <= tol
    assert d.rank == d.C.shape[1] == d.R.shape[0] == len(d.rows)
    assert svd_rank_meeting(A, tol) <= d.rank <= min(A.shape)


@given(seed=st.integers(0, 10**6), decay=st.floats(0.3, 0.8), tol=st.floats(0.01, 0.3))
def test_rank_at_most_twice_the_svd_rank_on_fast_decaying_spectra(
    seed: int, decay: float, tol: float
) -> None:
    # Geometric decay: a CUR needs only a few more terms than the SVD (the measured table in
    # benchmarks/results/bench_cur.json shows where slower decay needs more).
    A = noisy_spectrum(seed, 60, 50, decay, 1e-6)
    d = cur(A, tol=tol, seed=seed)
    assert d.rank is not None and d.rank <= max(2 * svd_rank_meeting(A, tol), 2)


@pytest.mark.parametrize("r", [1, 3, 7])
def test_exact_low_rank_gives_the_true_rank(r: int) -> None:
    A = low_rank_matrix(r, 40, 30, r) + 1e-10 * np.random.default_rng(r).standard_normal((40, 30))
    d = cur(A, tol=1e-6, seed=0)
    assert d.rank == r
    assert float(relative_error(A, d.reconstruct())) <= 1e-6


def test_estimate_rank_never_below_the_svd_rank() -> None:
    for seed in range(5):
        A = noisy_spectrum(seed, 120, 90, 0.95, 1e-3)
        for tol in (0.5, 0.2, 0.05):
            k = estimate_rank(A[None], tol, seed=seed)
            assert svd_rank_meeting(A, tol) <= k <= svd_rank_meeting(A, tol) + 3


def test_tcur_meets_tol() -> None:
    rng = np.random.default_rng(0)
    T = low_tubal_rank_tensor(1, 30, 25, 5, 6) + 1e-3 * rng.standard_normal((30, 25, 5))
    for tol in (0.3, 0.05, 0.01):
        d = tensor_cur(T, tol=tol, seed=1)
        assert float(relative_error(T, d.reconstruct())) <= tol
        assert d.rank == d.C.shape[1] == d.R.shape[0]
    F = to_fourier(T)
    w = fourier_weights(5, F.shape[0])
    s2 = np.linalg.svd(F, compute_uv=False) ** 2
    tail = np.sqrt([w @ s2[:, k:].sum(axis=1) / (w @ s2.sum(axis=1)) for k in range(26)])
    for tol in (0.3, 0.05, 0.01):
        floor_rank = int(np.flatnonzero(tail <= tol)[0])  # truncated t-SVD rank meeting tol
        assert floor_rank <= estimate_rank(F, tol, weights=w, seed=0) <= floor_rank + 3


def test_decompose_tol_and_torch() -> None:
    A = noisy_spectrum(2, 50, 40, 0.8, 1e-4)
    d = tcur.decompose(A, tol=0.02, seed=0)
    assert float(relative_error(A, d.reconstruct())) <= 0.02
    dt = tcur.decompose(torch.as_tensor(A), tol=0.02, seed=0)
    assert isinstance(dt.C, torch.Tensor) and dt.rank == d.rank
    T = low_tubal_rank_tensor(3, 12, 10, 4, 2)
    assert tcur.decompose(T, tol=1e-6, seed=0).rank == 2


def test_tol_on_a_tensor_that_requires_grad_keeps_autograd_and_warns_nothing() -> None:
    # The search measures errors outside autograd (a float() of a graph tensor warns; the
    # project's pytest settings turn that warning into an error).
    A = torch.as_tensor(noisy_spectrum(2, 50, 40, 0.8, 1e-4)).requires_grad_()
    d = cur(A, tol=0.02, seed=0)
    d.reconstruct().sum().backward()
    assert A.grad is not None and bool(torch.isfinite(A.grad).all())
    T = torch.as_tensor(low_tubal_rank_tensor(3, 12, 10, 4, 2)).requires_grad_()
    assert tensor_cur(T, tol=1e-6, seed=0).rank == 2


def test_unreachable_tol_returns_full_rank_with_a_warning() -> None:
    # float32 round-off (~1e-7) cannot reach 1e-12: the full-rank (exact up to round-off)
    # decomposition is returned and a RuntimeWarning says so.
    A = np.random.default_rng(0).standard_normal((12, 9)).astype(np.float32)
    with pytest.warns(RuntimeWarning, match="not reached"):
        d = cur(A, tol=1e-12, seed=0)
    assert d.rank == 9
    assert float(relative_error(A, d.reconstruct())) < 1e-5


@pytest.mark.parametrize(
    ("rank", "tol", "error", "match"),
    [
        (None, None, ValueError, "exactly one of rank and tol"),
        (3, 0.1, ValueError, "exactly one of rank and tol"),
        (None, 0.0, ValueError, "tol must be a finite float in"),
        (None, 1.0, ValueError, "tol must be a finite float in"),
        (None, -0.1, ValueError, "tol must be a finite float in"),
        (None, float("nan"), ValueError, "tol must be a finite float in"),
        (None, float("inf"), ValueError, "tol must be a finite float in"),
        (None, "0.1", TypeError, "tol must be a float"),
        (None, True, TypeError, "tol must be a float"),
    ],
)
def test_rank_and_tol_validation(rank: object, tol: object, error: type, match: str) -> None:
    A = np.random.default_rng(0).standard_normal((8, 6))
    with pytest.raises(error, match=match):
        cur(A, rank, tol=tol)  # type: ignore[arg-type]
    with pytest.raises(error, match=match):
        tensor_cur(A[:, :, None], rank, tol=tol)  # type: ignore[arg-type]
    if rank is not None or tol is not None:
        with pytest.raises(error, match=match):
            tcur.decompose(A, rank, tol=tol)  # type: ignore[arg-type]


def test_tol_rejects_explicit_counts_and_modewise_methods() -> None:
    A = np.random.default_rng(0).standard_normal((8, 6))
    with pytest.raises(ValueError, match="n_rows and n_cols"):
        cur(A, tol=0.1, n_rows=4)
    with pytest.raises(ValueError, match="tol= is supported"):
        tcur.decompose(np.ones((3, 3, 3)), tol=0.1, method="chidori")
