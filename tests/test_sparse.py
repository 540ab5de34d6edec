"""scipy.sparse input: C and R stay sparse (input format and class), U dense, A never densified."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import scipy.sparse as sp

import tcur
from tcur.linalg import cur, relative_error
from tcur.linalg.pivoting import PIVOTING_RULES, pivoted_qr_indices
from tcur.linalg.products import fit_by_products
from tcur.linalg.selection import SELECT_RULES
from tcur.linalg.sparse import SparseOperator, factored_error, sparse_norms

RULES = SELECT_RULES
FORMATS = [(fmt, kind) for fmt in ("csr", "csc", "coo") for kind in ("array", "matrix")]


def low_rank(m: int = 120, n: int = 90, rank: int = 6, seed: int = 0) -> Any:
    """Sparse matrix of exact rank ``rank`` (product of sparse factors)."""
    left = sp.random_array((m, rank), density=0.4, rng=seed)
    right = sp.random_array((rank, n), density=0.4, rng=seed + 1)
    return (left @ right).tocsr()


NOISY = (low_rank() + 0.01 * sp.random_array((120, 90), density=0.05, rng=7)).tocsr()


def as_kind(A: Any, fmt: str, kind: str) -> Any:
    out = A.asformat(fmt)
    return out if kind == "array" else sp.coo_matrix(out).asformat(fmt)


@pytest.fixture
def never_densified(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[tuple[int, int]]]:
    """Record the shape of every sparse ``toarray`` call (``todense`` goes through it too)."""
    shapes: list[tuple[int, int]] = []
    for cls in (sp.csr_array, sp.csc_array, sp.coo_array, sp.csr_matrix, sp.csc_matrix):
        original = cls.toarray

        def spy(self: Any, *args: Any, _original: Any = original, **kwargs: Any) -> Any:
            shapes.append(tuple(self.shape))
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(cls, "toarray", spy)
    yield shapes


@pytest.mark.parametrize(("fmt", "kind"), FORMATS)
def test_formats_give_sparse_factors_of_the_same_class(
    fmt: str, kind: str, never_densified: list[tuple[int, int]]
) -> None:
    A = as_kind(low_rank(), fmt, kind)
    d = cur(A, 6, seed=0)
    for factor in (d.C, d.R):
        assert sp.issparse(factor) and factor.format == fmt
        assert isinstance(factor, sp.sparray) == (kind == "array")
    assert isinstance(d.U, np.ndarray) and d.U.shape == (6, 6)
    assert d.rows.dtype == np.int64 and d.cols.dtype == np.int64
    assert d.C.shape == (120, 6) and d.R.shape == (6, 90)
    assert all(shape != A.shape for shape in never_densified), never_densified
    dense = A.toarray()
    assert float(relative_error(dense, d.reconstruct())) < 1e-10
    np.testing.assert_array_equal(d.C.toarray(), dense[:, d.cols])
    np.testing.assert_array_equal(d.R.toarray(), dense[d.rows, :])


@pytest.mark.parametrize("select", RULES)
@pytest.mark.parametrize("middle", ["optimal", "pinv"])
def test_every_rule_matches_the_dense_code(select: str, middle: str) -> None:
    d = cur(NOISY, 6, select=select, middle=middle, seed=0, svd="exact", n_rows=8)
    ref = cur(NOISY.toarray(), 6, select=select, middle=middle, seed=0, svd="exact", n_rows=8)
    error = factored_error(NOISY, d.C, d.U, d.R)
    want = float(relative_error(NOISY.toarray(), ref.reconstruct()))
    if select in PIVOTING_RULES:  # one candidate of the dense code's four: its quality
        assert error <= (1.2 if select == "sketch_qr" else 2.0) * want + 1e-3
        return
    np.testing.assert_array_equal(d.rows, ref.rows)
    np.testing.assert_array_equal(d.cols, ref.cols)
    np.testing.assert_allclose(d.U, ref.U, rtol=1e-8, atol=1e-8 * np.abs(ref.U).max())
    assert error == pytest.approx(want, rel=1e-6, abs=1e-8)


@pytest.mark.parametrize("select", ["sketch_qr", "deim", "leverage"])
def test_randomized_basis_rules_are_exact_at_the_true_rank(select: str) -> None:
    A = low_rank(300, 200, 8, seed=3)
    d = cur(A, 8, select=select, seed=1, svd="randomized")
    assert float(relative_error(A.toarray(), d.reconstruct())) < 1e-9


def test_sketch_qr_rows_are_pivots_of_the_chosen_columns_range() -> None:
    d = cur(NOISY, 6, seed=0)
    Q = np.linalg.qr(NOISY.toarray()[:, d.cols])[0]
    np.testing.assert_array_equal(d.rows, pivoted_qr_indices(Q.T, 6))


def test_passes_over_a_are_counted_per_rule() -> None:
    expected = {"sketch_qr": 5, "arp": 5, "deim": 8, "norm": 3, "uniform": 3}
    for select, passes in expected.items():
        op = SparseOperator(NOISY)
        fit_by_products(
            op, 6, 6, 6, select=select, middle="optimal", seed=0, svd="randomized", rtol=None
        )
        assert op.passes == passes, select
    op = SparseOperator(NOISY)
    fit_by_products(op, 6, 6, 6, select="norm", middle="pinv", seed=0, svd="auto", rtol=None)
    assert op.passes == 2


def test_tol_meets_the_target_with_a_modest_rank() -> None:
    dense = NOISY.toarray()
    s = np.linalg.svd(dense, compute_uv=False)
    tail = np.sqrt(np.cumsum((s**2)[::-1])[::-1]) / np.linalg.norm(dense)
    for tol in (0.3, 0.05, 0.005):
        d = cur(NOISY, tol=tol, seed=0)
        svd_rank = int(np.flatnonzero(np.append(tail[1:], 0.0) <= tol)[0]) + 1
        assert float(relative_error(dense, d.reconstruct())) <= tol
        assert d.rank is not None and d.rank <= 2 * svd_rank


def test_factored_error_matches_the_dense_error_at_any_scale() -> None:
    d = cur(NOISY, 4, seed=0)
    truth = float(relative_error(NOISY.toarray(), d.reconstruct()))
    for scale in (1.0, 1e-300, 1e300):
        scaled = cur(NOISY * scale, 4, seed=0)
        assert factored_error(NOISY * scale, scaled.C, scaled.U, scaled.R) == pytest.approx(
            truth, rel=1e-6
        )
    assert sparse_norms(NOISY * 1e-300, axis=1) == pytest.approx(
        np.linalg.norm(NOISY.toarray(), axis=1) * 1e-300, rel=1e-12
    )


def test_validation_is_the_dense_one() -> None:
    bad = NOISY.copy()
    bad.data[5] = np.nan
    with pytest.raises(ValueError, match="A must not contain NaN or Inf"):
        cur(bad, 3)
    bad.data[5] = np.inf
    with pytest.raises(ValueError, match="A must not contain NaN or Inf"):
        tcur.decompose(bad.tocoo(), 3)
    with pytest.raises(ValueError, match="must not be empty"):
        cur(sp.csr_array((0, 5)), 1)
    with pytest.raises(ValueError, match="rank=91 exceeds"):
        cur(NOISY, 91)
    with pytest.raises(ValueError, match="unknown select='nope'"):
        cur(NOISY, 3, select="nope")
    with pytest.raises(ValueError, match="unknown middle='nope'"):
        cur(NOISY, 3, middle="nope")
    with pytest.raises(ValueError, match="exactly one of rank and tol"):
        cur(NOISY, 3, tol=0.1)
    with pytest.raises(TypeError, match="long double"):
        cur(NOISY.astype(np.longdouble), 3)
    with pytest.raises(ValueError, match="matrix CUR only"):
        tcur.decompose(NOISY, 3, method="tproduct")


def test_integer_complex_and_zero_matrices() -> None:
    ints = sp.csr_array((np.arange(1, 41) % 7).reshape(8, 5))
    d = cur(ints, 2, seed=0)
    assert d.C.dtype == np.float64 and d.U.dtype == np.float64
    Z = low_rank(40, 30, 3) + 1j * low_rank(40, 30, 3, seed=5)
    e = cur(Z.tocsr(), 6, seed=0)
    assert e.C.dtype == np.complex128
    assert float(relative_error(Z.toarray(), e.reconstruct())) < 1e-9
    zero = cur(sp.csr_array((20, 10)), 3, seed=0)
    assert np.all(np.isfinite(zero.U)) and not np.any(zero.reconstruct())
    assert factored_error(sp.csr_array((20, 10)), zero.C, zero.U, zero.R) == 0.0
    ones = (np.ones((20, 2)), np.eye(2), np.ones((2, 10)))  # factors not taken from A
    assert factored_error(sp.csr_array((20, 10)), *ones) == float(
        relative_error(np.zeros((20, 10)), ones[0] @ ones[2])
    )


def test_decompose_defaults_on_sparse_input() -> None:
    d = tcur.decompose(low_rank().tocsc(), 6)
    assert d.C.format == "csc" and d.rank == 6
    with pytest.raises(ValueError, match="exactly one of rank and tol"):
        tcur.decompose(low_rank())


@pytest.mark.parametrize("scale", [1.0, 1e-300, 1e300])
def test_relative_error_takes_sparse_input_at_any_scale(scale: float) -> None:
    A, B = NOISY * scale, low_rank() * scale
    want = np.linalg.norm(NOISY.toarray() - low_rank().toarray()) / np.linalg.norm(NOISY.toarray())
    for x, approx in ((A, B), (A, B.toarray()), (A.toarray(), B), (A.tocoo(), B.tocsc())):
        got = relative_error(x, approx)
        assert isinstance(got, np.ndarray) and got.ndim == 0
        assert float(got) == pytest.approx(want, rel=1e-12)


def test_relative_error_of_sparse_input_validates_like_dense() -> None:
    zero = sp.csr_array((4, 3))
    assert float(relative_error(zero, zero)) == 0.0
    assert float(relative_error(zero, sp.eye_array(4, 3))) == np.inf
    bad = NOISY.copy()
    bad.data[0] = np.nan
    with pytest.raises(ValueError, match="x must not contain NaN"):
        relative_error(bad, NOISY)
    assert np.isnan(float(relative_error(NOISY, bad)))
    with pytest.raises(ValueError, match="same shape"):
        relative_error(NOISY, sp.eye_array(3))


@pytest.mark.parametrize("scale", [1e-300, 1e300])
def test_sketch_qr_picks_the_same_indices_at_any_scale(scale: float) -> None:
    ref = cur(NOISY, 6, seed=0)
    d = cur(NOISY * scale, 6, seed=0)
    np.testing.assert_array_equal(d.rows, ref.rows)
    np.testing.assert_array_equal(d.cols, ref.cols)
    assert np.isfinite(d.U).all()
    assert float(relative_error(NOISY * scale, d.C @ d.U @ d.R)) == pytest.approx(
        float(relative_error(NOISY, ref.C @ ref.U @ ref.R)), rel=1e-6
    )
