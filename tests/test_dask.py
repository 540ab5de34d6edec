"""Dask input: lazy in, lazy out, a fixed number of passes, threaded and distributed schedulers."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

import tcur
from tcur.linalg import cur, relative_error
from tcur.linalg.lazy import DaskOperator
from tcur.linalg.products import fit_by_products

da = pytest.importorskip("dask.array")
dask = pytest.importorskip("dask")

RNG = np.random.default_rng(0)
LOW_RANK = RNG.standard_normal((240, 6)) @ RNG.standard_normal((6, 150))
NOISY = LOW_RANK + 1e-3 * RNG.standard_normal(LOW_RANK.shape)


def lazy(X: np.ndarray, rows: int = 40) -> da.Array:
    return da.from_array(X, chunks=(rows, X.shape[1]))


class CountingArray:
    """Array-like for ``da.from_array`` that counts its chunk reads."""

    def __init__(self, data: np.ndarray) -> None:
        self.data, self.reads = data, 0
        self.shape, self.dtype, self.ndim = data.shape, data.dtype, data.ndim

    def __getitem__(self, index: object) -> np.ndarray:
        self.reads += 1
        return np.asarray(self.data[index])


def test_dask_in_gives_lazy_dask_out_equal_to_sparse() -> None:
    """The Dask and sparse kinds share the product engine: the same indices and middle."""
    d = cur(lazy(NOISY), 6, seed=0)
    ref = cur(sp.csr_array(NOISY), 6, seed=0)
    assert isinstance(d.C, da.Array) and isinstance(d.R, da.Array) and isinstance(d.U, da.Array)
    assert isinstance(d.rows, np.ndarray) and isinstance(d.cols, np.ndarray)
    np.testing.assert_array_equal(d.rows, ref.rows)
    np.testing.assert_array_equal(d.cols, ref.cols)
    np.testing.assert_allclose(d.U.compute(), ref.U, rtol=1e-8, atol=1e-10)
    np.testing.assert_array_equal(d.C.compute(), NOISY[:, d.cols])
    np.testing.assert_array_equal(d.R.compute(), NOISY[d.rows, :])
    approx = d.reconstruct()
    assert isinstance(approx, da.Array)
    assert float(relative_error(NOISY, approx.compute())) == pytest.approx(
        float(relative_error(NOISY, ref.reconstruct())), rel=1e-8
    )


@pytest.mark.parametrize(
    ("select", "middle", "passes"),
    [
        ("sketch_qr", "optimal", 5),
        ("sketch_qr", "pinv", 4),
        ("arp", "optimal", 5),
        ("deim", "optimal", 8),
        ("leverage", "pinv", 7),
        ("norm", "optimal", 3),
        ("uniform", "pinv", 2),
    ],
)
def test_fixed_number_of_passes_each_reading_every_chunk_once(
    select: str, middle: str, passes: int
) -> None:
    source = CountingArray(NOISY)
    A = da.from_array(source, chunks=(40, 150), asarray=False)
    source.reads = 0  # from_array reads an empty slice for its meta
    op = DaskOperator(A, check_finite=True)  # the NaN/Inf scan rides along in pass 1
    fit_by_products(op, 6, 6, 6, select=select, middle=middle, seed=0, svd="auto", rtol=None)
    assert op.passes == passes
    # every pass reads each chunk at most once (a gather of rows only the chunks holding them)
    assert passes * A.numblocks[0] - 6 <= source.reads <= passes * A.numblocks[0]


def test_results_are_exact_at_the_true_rank_and_tol_is_met() -> None:
    d = tcur.decompose(lazy(LOW_RANK, 64), 6, seed=1)
    assert float(relative_error(LOW_RANK, d.reconstruct().compute())) < 1e-9
    e = cur(lazy(NOISY), tol=0.01, seed=0)
    assert e.rank == 6
    assert float(relative_error(NOISY, e.reconstruct().compute())) <= 0.01


def test_float32_and_column_chunks() -> None:
    X = NOISY.astype(np.float32)
    d = cur(da.from_array(X, chunks=(50, 60)), 6, seed=0)
    assert d.C.dtype == np.float32 and d.U.dtype == np.float32
    assert float(relative_error(X, d.reconstruct().compute())) < 1e-2


@pytest.mark.parametrize("name", ["chidori_cur", "fiber_cur"])
def test_modewise_cur_of_a_dask_tensor_is_lazy_and_equals_numpy(name: str) -> None:
    fit = getattr(tcur.linalg, name)
    rng = np.random.default_rng(2)
    core = rng.standard_normal((3, 3, 3))
    X = np.einsum("abc,ia,jb,kc->ijk", core, *(rng.standard_normal((d, 3)) for d in (20, 18, 16)))
    X += 1e-3 * rng.standard_normal(X.shape)
    source = CountingArray(X)
    T = da.from_array(source, chunks=(10, 9, 16), asarray=False)
    source.reads = 0
    d = fit(T, (3, 3, 3), seed=0)
    # selection: the NaN/Inf scan, then per mode the peak, the Gram matrix and one product
    assert source.reads == (1 + 3 * 3) * T.npartitions
    ref = fit(X, (3, 3, 3), seed=0)
    assert isinstance(d.core, da.Array) and all(isinstance(f, da.Array) for f in d.factors)
    for got, want in zip(d.indices, ref.indices, strict=True):
        np.testing.assert_array_equal(np.asarray(got), want)
    approx = d.reconstruct()
    assert isinstance(approx, da.Array)
    np.testing.assert_allclose(approx.compute(), ref.reconstruct(), rtol=1e-8, atol=1e-10)
    assert float(relative_error(X, ref.reconstruct())) < 1e-2


def test_validation() -> None:
    bad = NOISY.copy()
    bad[7, 3] = np.inf
    with pytest.raises(ValueError, match="A must not contain NaN or Inf"):
        cur(lazy(bad), 3)
    with pytest.raises(ValueError, match="must not be empty"):
        cur(da.zeros((0, 4), chunks=1), 1)
    with pytest.raises(ValueError, match="unknown chunk sizes"):
        X = lazy(NOISY)
        cur(X[X[:, 0] > 0], 2)
    with pytest.raises(ValueError, match="rank=151 exceeds"):
        cur(lazy(NOISY), 151)
    with pytest.raises(TypeError, match="numeric dtype"):
        cur(da.from_array(np.array([["a", "b"]])), 1)
    with pytest.raises(ValueError, match="matrix CUR only"):
        tcur.decompose(da.ones((4, 4, 4)), 2)
    for fit in (tcur.linalg.tcur, tcur.linalg.tsvd):
        with pytest.raises(TypeError, match="does not take Dask arrays"):
            fit(da.ones((4, 4, 4)), 2)


def test_distributed_local_cluster_gives_the_same_result() -> None:
    distributed = pytest.importorskip("distributed")
    reference = cur(lazy(NOISY), 6, seed=0)
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        d = cur(lazy(NOISY), 6, seed=0)
        approx = d.reconstruct().compute()
        assert len(client.scheduler_info()["workers"]) == 2
    np.testing.assert_array_equal(d.rows, reference.rows)
    np.testing.assert_array_equal(d.cols, reference.cols)
    np.testing.assert_allclose(approx, reference.reconstruct().compute(), rtol=1e-8, atol=1e-9)
