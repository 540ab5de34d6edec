"""Single-precision sketch passes of a double-precision matrix, when the first pass shows they
resolve it.

A range sketch only has to tell the dominant directions apart: the pivots chosen on it are then
measured and fitted on the data in its own precision. Once the first pass ``X0 = F Omega`` (in
``F``'s precision) shows that ``X0`` is well conditioned (its singular values within
:data:`MAX_CONDITION` of each other), single-precision round-off (``6e-8`` relative, grown by
about ``sqrt(m)`` in a product) perturbs even its smallest direction by under a percent, far
below what changes a pivot's quality; the later passes then run on a single-precision copy of
``F`` scaled by a power of two (exact, so any magnitude fits single precision's range), at twice
the speed of BLAS in double (measured at one thread on 4000 x 3000: 14 ms against 27 ms a pass,
for a copy of 5.6 ms). The pivots are chosen in single precision too, on these sketches and on
the range bases of the candidates' columns and rows (:meth:`SketchOperand.for_pivoting`): on
150 large matrices of nine families at ranks 5-50 every error was unchanged, and a
``decompose(A, 50)`` of the 4000 x 3000 matrix of ``bench_threads`` took 8-10% less time at two
threads (1% at one). Ill-conditioned sketches (smooth kernels, Hilbert, graded scalings at
high rank: the matrices whose small singular values the pivots must resolve) stay in double
precision, as do small matrices (:data:`MIN_ENTRIES`, counted over the Fourier slices a t-CUR
works on: ``n3 // 2 + 1`` of them for a real tensor), where the passes are cheap next to the
factorizations, arrays other than NumPy ones (the condition would be read back from the
device), memory-mapped files (the copy would bring them into memory) and matrices whose copy
would exceed :data:`MAX_COPY_BYTES`.
"""

from __future__ import annotations

import mmap
from dataclasses import dataclass

import numpy as np

from tcur._backend import Array, binary_scale, in_dtype, is_numpy, namespace
from tcur.linalg.orthonormal import hermitian

MIN_ENTRIES = 2**20
"""Matrices (all slices together) with fewer entries keep every pass in their own precision."""
MAX_COPY_BYTES = 2**30
"""The single-precision copy is made only up to this size (1 GiB: a 16,384 x 16,384 real matrix);
a larger one would add half a real input's memory to the peak."""
MAX_CONDITION = 1e3
"""Largest ``s_max / s_min`` of the first sketch (over all its slices) for single-precision
passes. With every size eligible, the families of :mod:`tcur.testing.families` (60 x 40, every
rank) keep their quality bound up to 1e4 and miss it from 1e5 (smooth kernels at high rank)."""
SINGLE = {np.dtype(np.float64): np.float32, np.dtype(np.complex128): np.complex64}
"""Double-precision dtypes and their single-precision counterparts."""


@dataclass(frozen=True)
class SketchOperand:
    """What the sketch passes multiply by: ``data = F * scale`` (``scale`` a power of two), in
    single precision (``single``), or ``F`` itself (``scale = 1``)."""

    data: Array
    scale: float = 1.0
    single: bool = False

    def converted(self, X: Array) -> Array:
        """``X`` (in ``F``'s dtype and scale) in :attr:`data`'s dtype and scale, for a basis that
        multiplies :attr:`data`: the inverse of :meth:`restored` (exact up to the rounding to
        single precision)."""
        if not self.single:
            return X
        return in_dtype(namespace(X), X * self.scale, self.data.dtype)

    def for_pivoting(self, block: np.ndarray) -> np.ndarray:
        """A host ``block`` (a candidate's range basis; the sketches are already in this
        precision) in :attr:`data`'s precision, where the pivots are chosen: with
        single-precision passes the sketches resolve no more than that,
        and a pivoted QR in single precision is a quarter faster (3.9 against 5.1 ms on the
        60 x 4000 sketch of a rank-50 CUR)."""
        return block.astype(SINGLE[block.dtype]) if self.single and block.dtype in SINGLE else block

    def restored(self, X: Array, F: Array) -> Array:
        """A product of :attr:`data` with a basis, back in ``F``'s dtype and scale (exact)."""
        X = in_dtype(namespace(X), X, F.dtype)
        return X if self.scale == 1.0 else X / self.scale


def sketch_operand(F: Array, X0: Array) -> SketchOperand:
    """``F`` itself, or a scaled single-precision copy of it when the first sketch
    ``X0 = F Omega`` (``(..., m, l)``, in ``F``'s precision) shows that single-precision passes
    resolve it (see the module docstring).

    Examples
    --------
    >>> import numpy as np
    >>> from tcur.linalg.sketch_precision import sketch_operand
    >>> rng = np.random.default_rng(0)
    >>> F = rng.standard_normal((1, 2000, 600))
    >>> sketch_operand(F, F @ rng.standard_normal((1, 600, 20))).data.dtype
    dtype('float32')
    >>> H = 1.0 / (np.arange(2000)[:, None] + np.arange(600)[None, :] + 1.0)  # Hilbert
    >>> sketch_operand(H[None], H[None] @ rng.standard_normal((1, 600, 20))).data.dtype
    dtype('float64')
    """
    eligible = is_numpy(F) and F.dtype in SINGLE and not memory_mapped(F)
    if not (eligible and F.size >= MIN_ENTRIES and F.nbytes // 2 <= MAX_COPY_BYTES):
        return SketchOperand(F)
    if not single_precision_resolves(X0):
        return SketchOperand(F)
    scale = 1.0 / binary_scale(float(np.max(np.abs(X0))))
    single = np.empty(F.shape, dtype=SINGLE[F.dtype])
    np.multiply(F, scale, out=single, casting="same_kind")
    return SketchOperand(single, scale, single=True)


def single_precision_resolves(X0: np.ndarray) -> bool:
    """Whether the singular values of every slice of the sketch ``X0`` lie within
    :data:`MAX_CONDITION` of the largest over all slices (``False`` for empty, zero or
    non-finite sketches).

    Examples
    --------
    >>> import numpy as np
    >>> from tcur.linalg.sketch_precision import single_precision_resolves
    >>> X0 = np.linalg.qr(np.random.default_rng(0).standard_normal((50, 4)))[0]
    >>> single_precision_resolves(X0 * [1, 1e-2, 1e-2, 1e-2]), single_precision_resolves(X0 * 1e-9)
    (True, True)
    >>> single_precision_resolves(X0 * [1, 1, 1, 1e-5])
    False
    """
    peak = float(np.max(np.abs(X0))) if X0.size else 0.0
    if not (np.isfinite(peak) and peak > 0):
        return False
    scaled = X0 / binary_scale(peak)
    eigenvalues = np.linalg.eigvalsh(hermitian(np, scaled) @ scaled)
    smallest, largest = float(np.min(eigenvalues[..., 0])), float(np.max(eigenvalues[..., -1]))
    return smallest > 0 and largest <= MAX_CONDITION**2 * smallest


def memory_mapped(a: np.ndarray) -> bool:
    """Whether ``a`` views a memory-mapped file (``np.asarray`` of an ``np.memmap`` is a plain
    array whose base chain ends in the map).

    Examples
    --------
    >>> import numpy as np
    >>> from tcur.linalg.sketch_precision import memory_mapped
    >>> memory_mapped(np.ones(3)), memory_mapped(np.ones(3)[1:])
    (False, False)
    """
    base: object = a
    while base is not None:
        if isinstance(base, np.memmap | mmap.mmap):
            return True
        base = getattr(base, "base", None)
    return False
