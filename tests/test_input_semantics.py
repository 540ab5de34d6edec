"""Bad or unusual inputs mean what their own library says they mean (issue 17, section 3).

- A ``scipy.sparse`` matrix with duplicate stored entries is their sum, with unsorted indices the
  same matrix; the caller's object is never modified.
- Torch tensors with a size-1 mode go through mode-wise CUR; ``meta`` tensors are refused by name.
- ``factored_error`` refuses a dense ``A`` by name and takes dense ``C`` and ``R``.
- ``assert_reconstructs`` takes sparse results; its default tolerance accepts exact decompositions.
- Result dataclasses compare by value (``==``) and stay unhashable.
- The truncated pseudo-inverse middle has finite gradients on repeated singular values.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from hypothesis import given
from hypothesis import strategies as st

import tcur
from tcur import linalg
from tcur.linalg import chidori_cur, cur, fiber_cur, relative_error
from tcur.linalg.pinv import pinv
from tcur.linalg.sparse import factored_error, sparse_norms
from tcur.testing import (
    assert_reconstructs,
    default_rtol,
    low_multilinear_rank_tensor,
    low_rank_matrix,
    low_tubal_rank_tensor,
    multilinear_tensors,
)

# --- 1. scipy.sparse: duplicates are summed, unsorted indices are the same matrix ------------


def _integer_matrix(seed: int = 0, m: int = 30, n: int = 20) -> np.ndarray:
    """Integer-valued low-rank-plus-sparse matrix: every split below is exact in float64."""
    rng = np.random.default_rng(seed)
    A = rng.integers(-3, 4, (m, 3)) @ rng.integers(-3, 4, (3, n)) * (rng.random((m, n)) < 0.6)
    A[0, :] = 0.0  # an empty row
    return A.astype(np.float64)


def _duplicated(A: np.ndarray, fmt: str, seed: int = 1) -> Any:
    """``A`` stored with every nonzero split into two duplicate entries, shuffled (so the indices
    are unsorted too), in ``fmt`` (``"csr"``, ``"csc"`` or ``"coo"``); integer splits are exact."""
    rng = np.random.default_rng(seed)
    rows, cols = np.nonzero(A)
    values = A[rows, cols]
    part = rng.integers(-5, 6, values.size).astype(np.float64)
    r, c = np.concatenate([rows, rows]), np.concatenate([cols, cols])
    v = np.concatenate([part, values - part])
    order = rng.permutation(v.size)
    r, c, v = r[order], c[order], v[order]
    if fmt == "coo":
        return sp.coo_array((v, (r, c)), shape=A.shape)
    major, minor = (r, c) if fmt == "csr" else (c, r)
    sort = np.argsort(major, kind="stable")  # grouped by row (column), unsorted within
    pointers = np.searchsorted(major[sort], np.arange(A.shape[0 if fmt == "csr" else 1] + 1))
    cls = sp.csr_array if fmt == "csr" else sp.csc_array
    return cls((v[sort], minor[sort], pointers), shape=A.shape)


def _unsorted(A: np.ndarray) -> Any:
    """``A`` as a CSR with no duplicates but column indices stored in reverse order per row."""
    csr = sp.csr_array(A)
    indices, data = csr.indices.copy(), csr.data.copy()
    for i in range(A.shape[0]):
        lo, hi = csr.indptr[i], csr.indptr[i + 1]
        indices[lo:hi], data[lo:hi] = indices[lo:hi][::-1], data[lo:hi][::-1]
    return sp.csr_array((data, indices, csr.indptr.copy()), shape=A.shape)


def _storage(M: Any) -> list[np.ndarray]:
    parts = [M.data, M.row, M.col] if M.format == "coo" else [M.data, M.indices, M.indptr]
    return [p.copy() for p in parts]


NONCANONICAL: list[tuple[str, Callable[[np.ndarray], Any]]] = [
    ("csr duplicates", lambda A: _duplicated(A, "csr")),
    ("csc duplicates", lambda A: _duplicated(A, "csc")),
    ("coo duplicates", lambda A: _duplicated(A, "coo")),
    ("csr unsorted", _unsorted),
]


@pytest.mark.parametrize(("label", "build"), NONCANONICAL, ids=[n for n, _ in NONCANONICAL])
def test_noncanonical_sparse_means_its_sum(label: str, build: Callable[[np.ndarray], Any]) -> None:
    A = _integer_matrix()
    X = build(A)
    assert not X.has_canonical_format
    np.testing.assert_array_equal(X.toarray(), A)  # SciPy's meaning of X
    before = _storage(X)
    zero = sp.csr_array(A.shape)
    assert float(relative_error(X, zero)) == pytest.approx(1.0, rel=1e-15)
    assert float(relative_error(X, sp.csr_array(A))) == 0.0
    assert float(relative_error(sp.csr_array(A), X)) == 0.0
    if X.format != "coo":
        for axis in (0, 1):
            want = np.linalg.norm(A, axis=axis)
            np.testing.assert_allclose(sparse_norms(X, axis=axis), want, rtol=1e-15)
    ref = cur(sp.csr_array(A).asformat(X.format), tol=0.5, seed=0)
    d = cur(X, tol=0.5, seed=0)  # no "tol not reached" warning: warnings are errors here
    assert d.rank == ref.rank < min(A.shape)
    np.testing.assert_array_equal(d.rows, ref.rows)
    np.testing.assert_array_equal(d.cols, ref.cols)
    np.testing.assert_array_equal(d.C.toarray(), A[:, d.cols])
    np.testing.assert_array_equal(d.R.toarray(), A[d.rows, :])
    assert float(relative_error(A, d.reconstruct())) <= 0.5
    # the caller's matrix is untouched: same storage, still not canonical
    for got, want in zip(_storage(X), before, strict=True):
        np.testing.assert_array_equal(got, want)
    assert not X.has_canonical_format


def test_canonical_csr_is_not_copied() -> None:
    from tcur.linalg.sparse import as_csr

    X = sp.csr_array(_integer_matrix())
    assert as_csr(X, "A") is X


# --- 2. torch tensors with a size-1 mode -----------------------------------------------------


@pytest.mark.parametrize("method", [chidori_cur, fiber_cur])
def test_size_one_mode_of_a_torch_tensor(method: Callable[..., Any]) -> None:
    T = low_multilinear_rank_tensor(0, (4, 1, 5), (2, 1, 2))
    d = method(torch.as_tensor(T), (2, 1, 2))
    ref = method(T, (2, 1, 2))
    assert isinstance(d.core, torch.Tensor)
    for got, want in zip(d.indices, ref.indices, strict=True):
        np.testing.assert_array_equal(got.numpy(), want)
    assert_reconstructs(d, T)


@given(multilinear_tensors(backend="torch"), st.sampled_from(["chidori", "fiber"]))
def test_modewise_cur_of_every_torch_strategy_tensor(
    pair: tuple[torch.Tensor, list[int]], method: str
) -> None:
    T, ranks = pair
    d = (chidori_cur if method == "chidori" else fiber_cur)(T, ranks)
    assert isinstance(d.core, torch.Tensor)
    assert_reconstructs(d, T)


# --- 3. torch meta tensors -------------------------------------------------------------------


def _meta(*shape: int) -> torch.Tensor:
    return torch.empty(*shape, dtype=torch.float64, device="meta")


M, T3, G = _meta(6, 5), _meta(4, 3, 5), torch.zeros(6, 5, dtype=torch.float64)
META_CALLS: dict[str, tuple[Callable[..., Any], str]] = {
    "cur": (lambda **kw: cur(M, 2, **kw), "A"),
    "tcur": (lambda **kw: linalg.tcur(T3, 2, **kw), "A"),
    "decompose": (lambda **kw: tcur.decompose(M, 2, **kw), "x"),
    "tprod": (lambda **kw: linalg.tprod(T3, _meta(3, 4, 5), **kw), "operand 0"),
    "relative_error x": (lambda **kw: relative_error(M, G, **kw), "x"),
    "relative_error approx": (lambda **kw: relative_error(G, M, **kw), "approx"),
    "chidori_cur": (lambda **kw: chidori_cur(T3, 2, **kw), "T"),
    "fiber_cur": (lambda **kw: fiber_cur(T3, 2, **kw), "T"),
    "tsvd": (lambda **kw: linalg.tsvd(T3, **kw), "A"),
    "tpinv": (lambda **kw: linalg.tpinv(T3, **kw), "A"),
    "tinv": (lambda **kw: linalg.tinv(_meta(3, 3, 2), **kw), "A"),
    "tubal_rank": (lambda **kw: linalg.tubal_rank(T3, **kw), "A"),
    "mode_dot": (lambda **kw: linalg.mode_dot(T3, _meta(2, 3), 1, **kw), "T"),
    "multi_mode_dot": (lambda **kw: linalg.multi_mode_dot(T3, [_meta(2, 4)], [0], **kw), "T"),
    "leverage_scores": (lambda **kw: linalg.leverage_scores(M, 2, 0, **kw), "A"),
    "deim": (lambda **kw: linalg.deim(M, **kw), "V"),
    "qdeim": (lambda **kw: linalg.qdeim(M, **kw), "V"),
}


@pytest.mark.parametrize("check_finite", [True, False])
@pytest.mark.parametrize("name", list(META_CALLS))
def test_meta_tensors_are_refused_by_name(name: str, check_finite: bool) -> None:
    call, argument = META_CALLS[name]
    with pytest.raises(ValueError, match=rf"^{argument} is a torch tensor on the 'meta' device"):
        call(check_finite=check_finite)


@pytest.mark.parametrize(
    ("call", "argument"),
    [
        (lambda: linalg.ttranspose(T3), "A"),
        (lambda: linalg.unfold(T3, 1), "T"),
        (lambda: linalg.fold(_meta(3, 20), 1, (4, 3, 5)), "M"),
    ],
)
def test_meta_tensors_are_refused_by_the_reshaping_functions(
    call: Callable[[], Any], argument: str
) -> None:
    with pytest.raises(ValueError, match=rf"^{argument} is a torch tensor on the 'meta' device"):
        call()


# --- 4. factored_error with dense arrays -----------------------------------------------------


def test_factored_error_refuses_a_dense_a_and_takes_dense_factors() -> None:
    A = sp.random_array((40, 30), density=0.3, rng=0).tocsr()
    d = cur(A, 5, seed=0)
    dense = A.toarray()
    truth = np.linalg.norm(dense - d.C @ d.U @ d.R) / np.linalg.norm(dense)
    refused = r"A must be a scipy.sparse array or matrix, got ndarray of shape \(40, 30\)"
    with pytest.raises(TypeError, match=refused):
        factored_error(dense, d.C, d.U, d.R)
    with pytest.raises(TypeError, match=r"A must be a scipy.sparse .*got list"):
        factored_error(dense.tolist(), d.C, d.U, d.R)
    got = factored_error(A, d.C.toarray(), d.U, d.R.toarray())
    assert got == pytest.approx(truth, rel=1e-10)


# --- 5. assert_reconstructs ------------------------------------------------------------------


def test_assert_reconstructs_takes_sparse_results() -> None:
    A = sp.random_array((40, 5), density=0.5, rng=0) @ sp.random_array((5, 30), density=0.5, rng=1)
    A = A.tocsr()
    assert_reconstructs(cur(A, 5, seed=0), A)
    assert_reconstructs(cur(A.tocoo(), 5, seed=0), A.tocoo())
    with pytest.raises(AssertionError, match="relative reconstruction error"):
        assert_reconstructs(cur(A, 2, seed=0), A)  # rank 2 of a rank-5 matrix is not exact


@pytest.mark.parametrize("middle", ["optimal", "pinv"])
@pytest.mark.parametrize("select", ["sketch_qr", "deim", "qdeim"])
def test_default_rtol_accepts_exact_tensors_at_the_strategies_condition(
    select: str, middle: str
) -> None:
    # tubal rank r, condition 100 on every Fourier slice (the strategies' largest), 40 shapes
    rng = np.random.default_rng(0)
    for seed in range(40):
        n1, n2, n3 = (int(v) for v in rng.integers(1, 9, 3))
        rank = int(rng.integers(1, min(n1, n2) + 1))
        A = low_tubal_rank_tensor(seed, n1, n2, n3, rank, cond=100.0)
        assert_reconstructs(linalg.tcur(A, rank, select=select, middle=middle, seed=0), A)
        A32 = A.astype(np.float32)
        assert_reconstructs(linalg.tcur(A32, rank, select=select, middle=middle, seed=0), A32)


def test_default_rtol_is_a_bound_that_can_fail() -> None:
    A = low_rank_matrix(0, 20, 15, 4, cond=100.0)
    eps = np.finfo(np.float64).eps
    assert default_rtol(A) == 10 * eps * 20 * 100.0
    assert default_rtol(A.astype(np.float32)) == pytest.approx(10 * 2.0**-23 * 20 * 100.0)
    assert default_rtol(A, cond=1e4) == 100 * default_rtol(A)
    noisy = A + 1e-9 * np.random.default_rng(0).standard_normal(A.shape)
    with pytest.raises(AssertionError, match="exceeds rtol"):
        assert_reconstructs(cur(noisy, 4, seed=0), noisy)


# --- 6. equality of result dataclasses -------------------------------------------------------


def _results() -> list[tuple[str, Callable[[int], Any]]]:
    A = low_rank_matrix(0, 9, 8, 3)
    T = low_tubal_rank_tensor(0, 6, 5, 4, 2)
    X = low_multilinear_rank_tensor(0, (5, 4, 3), (2, 2, 2))
    S = sp.csr_array(A)
    return [
        ("CUR", lambda seed: cur(A, 3, seed=seed, select="arp")),
        ("CUR sparse", lambda seed: cur(S, 3, seed=seed, select="arp")),
        ("TCUR", lambda seed: linalg.tcur(T, 2, seed=seed, select="arp")),
        ("TuckerCUR", lambda seed: chidori_cur(X, 2, seed=seed, select="uniform")),
    ]


@pytest.mark.parametrize("index", range(4), ids=["CUR", "CUR sparse", "TCUR", "TuckerCUR"])
def test_results_compare_by_value(index: int) -> None:
    _, fit = _results()[index]
    a, b = fit(0), fit(0)
    assert a == b
    assert not a.__ne__(b)
    others = [fit(seed) for seed in range(1, 6)]
    assert any(a != other for other in others)  # another draw picks other indices
    assert (a == 3) is False and a != "CUR"
    with pytest.raises(TypeError, match="unhashable"):
        hash(a)


def test_results_of_different_kinds_or_dtypes_differ() -> None:
    A = low_rank_matrix(0, 9, 8, 3)
    a = cur(A, 3, seed=0)
    assert a != cur(torch.as_tensor(A), 3, seed=0)
    assert a != cur(A.astype(np.float32), 3, seed=0)
    assert cur(torch.as_tensor(A), 3, seed=0) == cur(torch.as_tensor(A), 3, seed=0)
    with pytest.raises(TypeError, match="unhashable"):
        hash(cur(torch.as_tensor(A), 3, seed=0))
    assert cur(A, 3, seed=0) != cur(A, 2, seed=0)


# --- 7. gradients through the truncated pseudo-inverse ---------------------------------------


def test_gradcheck_through_the_oversampled_pinv_middle() -> None:
    rng = np.random.default_rng(0)
    A0 = low_rank_matrix(5, 9, 8, 3, cond=3.0) + 0.05 * rng.standard_normal((9, 8))
    A = torch.as_tensor(A0).requires_grad_(True)

    def rebuild(x: torch.Tensor) -> torch.Tensor:
        return cur(x, 3, select="deim", middle="pinv", n_rows=5, n_cols=5).reconstruct()

    assert torch.autograd.gradcheck(rebuild, (A,), eps=1e-6, atol=1e-6)
    T = torch.as_tensor(rng.standard_normal((6, 5, 3))).requires_grad_(True)

    def rebuild_t(x: torch.Tensor) -> torch.Tensor:
        return linalg.tcur(x, 2, select="deim", middle="pinv", n_rows=4, n_cols=4).reconstruct()

    assert torch.autograd.gradcheck(rebuild_t, (T,), eps=1e-6, atol=1e-6)


@pytest.mark.parametrize("dtype", [torch.float64, torch.complex128])
@pytest.mark.parametrize(
    ("values", "rank"),
    [
        ([2.0, 1.0, 1.0, 0.5, 0.25], 3),  # repeated among the kept values
        ([2.0, 1.0, 0.5, 0.5, 0.5], 2),  # repeated among the dropped values
        ([1.0, 1.0, 1.0, 0.5, 0.5], 3),  # both
    ],
)
def test_truncated_pinv_gradient_on_repeated_singular_values(
    values: list[float], rank: int, dtype: torch.dtype
) -> None:
    # exactly repeated singular values on either side of the cut: the truncated pseudo-inverse
    # is smooth there (the cut is in a gap), and so is its gradient
    W = torch.zeros(6, 5, dtype=dtype)
    W[range(5), range(5)] = torch.tensor(values, dtype=dtype)
    W.requires_grad_(True)
    pinv(W, rank=rank).abs().sum().backward()
    assert W.grad is not None and bool(torch.isfinite(W.grad).all())
    assert torch.autograd.gradcheck(lambda x: pinv(x, rank=rank), (W,), eps=1e-6, atol=1e-6)


def test_cur_gradient_is_finite_on_repeated_singular_values() -> None:
    A = torch.zeros(8, 7, dtype=torch.float64)
    A[:4, :4] = torch.diag(torch.tensor([3.0, 1.0, 1.0, 0.5], dtype=torch.float64))
    A.requires_grad_(True)
    d = cur(A, 3, n_rows=4, n_cols=4, middle="pinv", select="deim")
    d.reconstruct().sum().backward()
    assert A.grad is not None and bool(torch.isfinite(A.grad).all())
