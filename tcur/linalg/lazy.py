"""Matrix CUR of Dask arrays: lazy in, lazy out, in a fixed number of passes over ``A``.

:func:`tcur.linalg.cur` and :func:`tcur.decompose` hand a 2-D ``dask.array.Array`` to
:func:`dask_cur`. ``A`` is read only through :class:`DaskOperator`, whose every call is **one**
``dask.compute`` (one pass over the chunks of ``A``; with several outputs in one call, each
chunk is read once): products with thin NumPy blocks, gathers of a few whole columns and rows,
the norms. The passes per rule are those of :mod:`tcur.linalg.products`: **5** for the default
``select="sketch_qr"`` (and ``"arp"``; 4 with ``middle="pinv"``), 8 for the basis rules, 3 for
the norm rules; the NaN/Inf scan of ``check_finite=True`` rides along in the first pass.
``tol=`` costs one such fit per trial rank plus one pass for its error (doubling, then
bisection).

The result holds Dask arrays: ``C = A[:, cols]`` and ``R = A[rows, :]`` are lazy (not
computed), ``U`` is the small computed middle factor wrapped as a one-chunk Dask array, so
``result.reconstruct()`` is lazy too; ``rows`` and ``cols`` are computed NumPy int64 arrays.
Whatever scheduler is active runs the passes: the threaded default, or a
``dask.distributed.Client`` (e.g. on a ``LocalCluster``) once one is created. Memory: a few
chunks of ``A`` per worker, plus the thin blocks (``m x (n_rows + 10)`` and ``n x (n_cols + 10)``
floats) and ``C``, ``R`` gathered once as NumPy arrays during selection. A gather of rows reads
only the chunks that hold them.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from tcur._backend import binary_scale, is_dask
from tcur.linalg.orthonormal import Projection
from tcur.linalg.products import Fit, Operator, cur_by_operator, float_dtype
from tcur.linalg.results import CUR


class DaskOperator(Operator):
    """A validated 2-D Dask array as an :class:`tcur.linalg.products.Operator`.

    ``check_finite=True`` adds the NaN/Inf scan of ``A`` to the first pass.

    Examples
    --------
    >>> import numpy as np, dask.array as da
    >>> from tcur.linalg.lazy import DaskOperator
    >>> op = DaskOperator(da.from_array(np.arange(6.0).reshape(3, 2), chunks=(2, 2)))
    >>> op.times(np.ones((2, 1))).ravel().tolist(), op.passes
    ([1.0, 5.0, 9.0], 1)
    """

    def __init__(self, A: Any, *, check_finite: bool = False) -> None:
        if not is_dask(A):
            raise TypeError(f"A must be a dask array, got {type(A).__name__}")
        if A.ndim != 2:
            raise ValueError(f"A must be 2-D, got {A.ndim}-D dask array of shape {A.shape}")
        if any(math.isnan(size) for size in A.shape):
            raise ValueError(
                f"A has unknown chunk sizes (shape {A.shape}); call A.compute_chunk_sizes() first"
            )
        if min(A.shape) == 0:
            raise ValueError(f"A must not be empty, got shape {tuple(A.shape)}")
        dtype = float_dtype(A.dtype, "A")
        self.A = A if A.dtype == dtype else A.astype(dtype)
        self._unscanned = check_finite
        super().__init__((int(A.shape[0]), int(A.shape[1])), dtype)

    def _source(self) -> Any:
        """``A``; while the NaN/Inf scan is pending, with non-finite entries read as 0 (that pass's
        results are discarded if the scan fails, and NumPy never warns on them)."""
        import dask.array as da

        return da.where(da.isfinite(self.A), self.A, 0) if self._unscanned else self.A

    def _compute(self, *lazy: Any) -> list[np.ndarray]:
        """One pass: compute ``lazy`` together (and the pending NaN/Inf scan)."""
        import dask
        import dask.array as da

        self.passes += 1
        scan = [da.isfinite(self.A).all()] if self._unscanned else []
        out = dask.compute(*lazy, *scan)
        if scan:
            if not bool(out[-1]):
                raise ValueError("A must not contain NaN or Inf")
            self._unscanned = False
            out = out[:-1]
        return [np.asarray(x) for x in out]

    def products(self, right: np.ndarray | None, left: np.ndarray | None) -> list[np.ndarray]:
        import dask.array as da

        lazy, A = [], self._source()
        if right is not None:
            blocks = da.from_array(right, chunks=(A.chunks[1], right.shape[1]))
            lazy.append(A @ blocks)
        if left is not None:
            blocks = da.from_array(left, chunks=(A.chunks[0], left.shape[1]))
            lazy.append((A.conj().T if self.dtype.kind == "c" else A.T) @ blocks)
        return self._compute(*lazy)

    def gather(
        self, cols: list[np.ndarray], rows: list[np.ndarray]
    ) -> tuple[list[np.ndarray], list[np.ndarray]]:
        A = self._source()
        out = self._compute(*(A[:, c] for c in cols), *(A[r, :] for r in rows))
        return out[: len(cols)], out[len(cols) :]

    def norms(self) -> tuple[np.ndarray, np.ndarray]:
        import dask.array as da

        squares = abs(self._source()) ** 2
        row, col = self._compute(da.sqrt(squares.sum(axis=1)), da.sqrt(squares.sum(axis=0)))
        return np.asarray(row, dtype=np.float64), np.asarray(col, dtype=np.float64)

    def frobenius_norm(self) -> float:
        """Two passes: ``||A||_F`` from the squares of ``A`` divided by a power of two near its
        largest magnitude (no overflow or underflow at 1e+-300)."""
        return self._scaled_norm(self._source())

    def residual_norm(self, form: Projection) -> float:
        """Two passes: ``||A - form.value()||_F``, chunk by chunk (``form.value()`` is lazy)."""
        return self._scaled_norm(self._source() - form.value())

    def _scaled_norm(self, X: Any) -> float:
        (peak,) = self._compute(abs(X).max())
        if not float(peak) > 0:
            return 0.0
        scale = binary_scale(float(peak))
        (squares,) = self._compute((abs(X / scale) ** 2).sum())
        return math.sqrt(float(squares)) * scale


def dask_cur(A: Any, rank: int | None, *, check_finite: bool, **options: Any) -> CUR:
    """:func:`tcur.linalg.cur` of a 2-D Dask array (``options``: the other keyword arguments of
    ``cur``); see :mod:`tcur.linalg.lazy`.

    Examples
    --------
    >>> import numpy as np, dask.array as da
    >>> from tcur.linalg import cur
    >>> rng = np.random.default_rng(0)
    >>> X = rng.standard_normal((60, 4)) @ rng.standard_normal((4, 30))
    >>> d = cur(da.from_array(X, chunks=(20, 30)), 4, seed=0)
    >>> type(d.C).__name__, type(d.rows).__name__
    ('Array', 'ndarray')
    >>> bool(np.allclose(d.reconstruct().compute(), X))
    True
    """
    import dask.array as da

    op = DaskOperator(A, check_finite=check_finite)

    def build(found: Fit, rank: int) -> CUR:
        U = da.from_array(found.U, chunks=found.U.shape)
        left = da.from_array(found.form.left, chunks=(op.A.chunks[0], found.form.left.shape[1]))
        form = Projection(left, found.form.core, found.form.right)
        C, R = op.A[:, found.cols], op.A[found.rows, :]
        return CUR(C, U, R, found.rows, found.cols, rank, form)

    return cur_by_operator(op, rank, build=build, **options)
