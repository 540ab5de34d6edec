"""Any array-API library: ``array_api_strict`` arrays in give ``array_api_strict`` arrays out.

``array_api_strict`` implements only the standard (no NumPy conversions, no mixed slice and
integer-array indexing, no implicit trailing ellipsis), so a function that passes here computes
through the standard namespace. Every result is compared with the NumPy result on the same data
and seed (the same indices, the same factors to round-off).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

import tcur
from tcur import linalg
from tcur.linalg import relative_error, tprod
from tcur.linalg.selection import SELECT_RULES

xps = pytest.importorskip("array_api_strict")

RNG = np.random.default_rng(0)
MATRIX = RNG.standard_normal((30, 5)) @ RNG.standard_normal((5, 20))
NOISY = MATRIX + 1e-3 * RNG.standard_normal(MATRIX.shape)
TENSOR = tprod(RNG.standard_normal((12, 3, 4)), RNG.standard_normal((3, 10, 4)))
CUBE = linalg.multi_mode_dot(
    RNG.standard_normal((2, 2, 2)), [RNG.standard_normal((d, 2)) for d in (7, 8, 9)]
)
RULES = SELECT_RULES


def strict(a: np.ndarray) -> Any:
    return xps.asarray(a)


def host(a: Any) -> np.ndarray:
    assert type(a).__module__.startswith("array_api_strict"), type(a)
    return np.from_dlpack(a)


def assert_same(strict_out: Any, numpy_out: np.ndarray) -> None:
    got = host(strict_out)
    scale = max(1.0, float(np.max(np.abs(numpy_out))))
    np.testing.assert_allclose(got, numpy_out, atol=1e-9 * scale, rtol=1e-9)


@pytest.mark.parametrize("select", RULES)
@pytest.mark.parametrize("middle", ["optimal", "pinv"])
def test_cur_returns_strict_arrays_equal_to_numpy(select: str, middle: str) -> None:
    # Same indices on NOISY (rank 5 plus noise: every pivot and candidate energy is separated
    # by far more than round-off). On the exactly rank-5 MATRIX the pivoting rules' candidates
    # all reproduce it, so which one is kept is round-off: there only exactness is compared.
    d = linalg.cur(strict(NOISY), 5, select=select, middle=middle, seed=0)
    ref = linalg.cur(NOISY, 5, select=select, middle=middle, seed=0)
    for got, want in zip((d.C, d.U, d.R), (ref.C, ref.U, ref.R), strict=True):
        assert_same(got, want)
    assert d.rows.dtype == xps.int64 and d.cols.dtype == xps.int64
    np.testing.assert_array_equal(host(d.rows), ref.rows)
    np.testing.assert_array_equal(host(d.cols), ref.cols)
    exact = linalg.cur(strict(MATRIX), 5, select=select, middle=middle, seed=0)
    assert float(relative_error(strict(MATRIX), exact.reconstruct())) < 1e-9


@pytest.mark.parametrize("select", ["sketch_qr", "deim", "norm", "uniform"])
def test_tcur_returns_strict_arrays_equal_to_numpy(select: str) -> None:
    d = linalg.tcur(strict(TENSOR), 3, select=select, seed=0)
    ref = linalg.tcur(TENSOR, 3, select=select, seed=0)
    for got, want in zip((d.C, d.U, d.R), (ref.C, ref.U, ref.R), strict=True):
        assert_same(got, want)
    assert float(relative_error(strict(TENSOR), d.reconstruct())) < 1e-9


def test_tol_finds_the_same_rank_as_numpy() -> None:
    d = linalg.cur(strict(NOISY), tol=0.01, seed=0)
    assert d.rank == linalg.cur(NOISY, tol=0.01, seed=0).rank
    assert float(relative_error(strict(NOISY), d.reconstruct())) <= 0.01
    t = linalg.tcur(strict(TENSOR), tol=0.01, seed=0)
    assert t.rank == 3


@pytest.mark.parametrize("n3", [4, 5, 40])  # real-DFT matrix path (short tubes) and the FFT path
def test_tprod_tsvd_tpinv_match_numpy(n3: int) -> None:
    A, B = RNG.standard_normal((4, 3, n3)), RNG.standard_normal((3, 5, n3))
    assert_same(linalg.tprod(strict(A), strict(B)), tprod(A, B))
    assert_same(linalg.ttranspose(strict(A)), linalg.ttranspose(A))
    assert_same(linalg.tpinv(strict(A)), linalg.tpinv(A))
    U, S, V = linalg.tsvd(strict(A), 2)
    approx = linalg.tprod(U, S, linalg.ttranspose(V))
    U0, S0, V0 = linalg.tsvd(A, 2)
    assert_same(approx, tprod(U0, S0, linalg.ttranspose(V0)))
    assert linalg.tubal_rank(strict(TENSOR)) == 3


def test_tinv_and_teye_stay_strict() -> None:
    A = RNG.standard_normal((3, 3, 4))
    X = linalg.tinv(strict(A))
    assert_same(linalg.tprod(strict(A), X), linalg.teye(3, 4))
    eye = linalg.teye(2, 3, like=strict(A))
    assert_same(eye, linalg.teye(2, 3))


def test_complex_tensor_stays_strict() -> None:
    A = RNG.standard_normal((6, 5, 3)) + 1j * RNG.standard_normal((6, 5, 3))
    d = linalg.tcur(strict(A), 5, seed=0)
    assert d.C.dtype == xps.complex128
    assert float(relative_error(strict(A), d.reconstruct())) < 1e-9


@pytest.mark.parametrize(
    "fit",
    [
        lambda T: linalg.chidori_cur(T, 2),
        lambda T: linalg.fiber_cur(T, 2),
        lambda T: linalg.fiber_cur(T, 2, select="uniform", seed=0),
    ],
    ids=["chidori", "fiber", "fiber-uniform"],
)
def test_modewise_cur_returns_strict_arrays(fit: Callable[[Any], Any]) -> None:
    d = fit(strict(CUBE))
    ref = fit(CUBE)
    assert_same(d.core, ref.core)
    for got, want in zip(d.factors, ref.factors, strict=True):
        assert_same(got, want)
    assert_same(d.reconstruct(), ref.reconstruct())
    assert float(relative_error(strict(CUBE), d.reconstruct())) < 1e-9


def test_decompose_and_helpers_stay_strict() -> None:
    # NOISY, not the exactly rank-5 MATRIX: there every candidate captures all of it, a tie that
    # round-off decides (NumPy may orthonormalize by orthonormal.gram_rounds, strict arrays never)
    assert_same(tcur.decompose(strict(NOISY), 5, seed=0).C, linalg.cur(NOISY, 5, seed=0).C)
    assert_same(tcur.decompose(strict(TENSOR), 3, seed=0).U, linalg.tcur(TENSOR, 3, seed=0).U)
    scores = linalg.leverage_scores(strict(MATRIX), 3, axis=0)
    assert_same(scores, linalg.leverage_scores(MATRIX, 3, axis=0))
    basis = np.eye(4)[:, :2] + 0.1
    np.testing.assert_array_equal(host(linalg.deim(strict(basis))), linalg.deim(basis))
    M = np.ones((2, 7))
    assert_same(
        linalg.multi_mode_dot(strict(CUBE), [strict(M), strict(np.ones(8))], modes=[0, 1]),
        linalg.multi_mode_dot(CUBE, [M, np.ones(8)], modes=[0, 1]),
    )
    assert_same(linalg.fold(linalg.unfold(strict(CUBE), 1), 1, CUBE.shape), CUBE)


def test_float32_and_integer_inputs_follow_the_numpy_rules() -> None:
    d = linalg.cur(xps.asarray(MATRIX, dtype=xps.float32), 5, seed=0)
    assert d.C.dtype == xps.float32 and d.U.dtype == xps.float32
    assert float(relative_error(xps.asarray(MATRIX, dtype=xps.float32), d.reconstruct())) < 1e-4
    ints = xps.asarray(np.arange(12).reshape(3, 4) % 5)
    assert linalg.cur(ints, 2, seed=0).C.dtype == xps.float64


def test_bad_strict_input_is_refused_by_name() -> None:
    bad = MATRIX.copy()
    bad[3, 4] = np.nan
    with pytest.raises(ValueError, match="A must not contain NaN"):
        linalg.cur(strict(bad), 2)
    with pytest.raises(ValueError, match="A must be 2-D"):
        linalg.cur(strict(TENSOR), 2)
    with pytest.raises(TypeError, match="mix array kinds"):
        linalg.tprod(strict(TENSOR[:, :3]), TENSOR[:3])


def test_jax_arrays_on_cpu_stay_jax() -> None:
    """A sample (every eager JAX op compiles once per shape: ~1 s each on this machine)."""
    jax = pytest.importorskip("jax")
    jax.config.update("jax_enable_x64", True)
    jnp = jax.numpy

    def same(got: Any, want: np.ndarray) -> None:
        assert isinstance(got, jax.Array), type(got)
        np.testing.assert_allclose(np.asarray(got), want, atol=1e-9 * np.abs(want).max() + 1e-12)

    d, ref = linalg.cur(jnp.asarray(MATRIX), 5, seed=0), linalg.cur(MATRIX, 5, seed=0)
    for got, want in zip((d.C, d.U, d.R), (ref.C, ref.U, ref.R), strict=True):
        same(got, want)
    same(linalg.tprod(jnp.asarray(TENSOR), linalg.teye(10, 4, like=jnp.asarray(TENSOR))), TENSOR)
    same(linalg.chidori_cur(jnp.asarray(CUBE), 2).reconstruct(), CUBE)
