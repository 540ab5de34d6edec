"""Single-precision sketch passes of a double-precision matrix, when the first pass shows they
resolve it.

A range sketch only has to tell the dominant directions apart: the pivots chosen on it are then
measured and fitted on the data in its own precision. Once the first pass ``X0 = F Omega`` (in
``F``'s precision) shows that ``X0`` is well conditioned (its singular values within
:data:`MAX_CONDITION` of each other), single-precision round-off (``6e-8`` relative, grown by
about ``sqrt(m)`` in a product) perturbs even its smallest direction by under a percent, far
below what changes a pivot's quality; the later passes then run on a single-precision copy of
``F``, at twice the speed of BLAS in double (measured at one thread on 4000 x 3000: 14 ms
against 27 ms a pass, for a copy of 5.6 ms). Ill-conditioned sketches (smooth kernels,
Hilbert, graded scalings at high rank: the matrices whose small singular values the pivots must
resolve) stay in double precision, as do small matrices (:data:`MIN_ENTRIES`), where the passes
are cheap next to the factorizations, arrays other than NumPy ones (the condition would be
read back from the device), memory-mapped files (the copy would bring them into memory) and
matrices whose copy would exceed :data:`MAX_COPY_BYTES`.
"""

from __future__ import annotations

import numpy as np

from tcur._backend import Array, is_numpy
from tcur.linalg.orthonormal import hermitian

MIN_ENTRIES = 2**20
"""Matrices (all slices together) with fewer entries keep every pass in their own precision."""
MAX_COPY_BYTES = 2**30
"""The single-precision copy is made only up to this size (1 GiB: a 16,384 x 16,384 matrix); a
larger one would add half the input's memory to the peak."""
MAX_CONDITION = 1e3
"""Largest ``s_max / s_min`` of the first sketch (over all its slices) for single-precision
passes. With every size eligible, the families of :mod:`tcur.testing.families` (60 x 40, every
rank) keep their quality bound up to 1e4 and miss it from 1e5 (smooth kernels at high rank)."""
SAFE_MAGNITUDE = 2.0**50
"""The first sketch's largest magnitude must lie within ``[1 / SAFE_MAGNITUDE, SAFE_MAGNITUDE]``
(far inside single precision's range, so no product of the copy over- or underflows)."""
SINGLE = {np.dtype(np.float64): np.float32, np.dtype(np.complex128): np.complex64}
"""Double-precision dtypes and their single-precision counterparts."""


def sketch_operand(F: Array, X0: Array) -> Array:
    """``F`` itself, or a single-precision copy of it when the first sketch ``X0 = F Omega``
    (``(..., m, l)``, in ``F``'s precision) shows that single-precision passes resolve it (see
    the module docstring).

    Examples
    --------
    >>> import numpy as np
    >>> from tcur.linalg.sketch_precision import sketch_operand
    >>> rng = np.random.default_rng(0)
    >>> F = rng.standard_normal((1, 2000, 600))
    >>> sketch_operand(F, F @ rng.standard_normal((1, 600, 20))).dtype
    dtype('float32')
    >>> H = 1.0 / (np.arange(2000)[:, None] + np.arange(600)[None, :] + 1.0)  # Hilbert
    >>> sketch_operand(H[None], H[None] @ rng.standard_normal((1, 600, 20))).dtype
    dtype('float64')
    """
    eligible = is_numpy(F) and F.dtype in SINGLE and not isinstance(F, np.memmap)
    if not (eligible and F.size >= MIN_ENTRIES and F.nbytes // 2 <= MAX_COPY_BYTES):
        return F
    return F.astype(SINGLE[F.dtype]) if resolved_in_single(X0) else F


def resolved_in_single(X0: np.ndarray) -> bool:
    """Whether the sketch ``X0`` is condition-bounded (:data:`MAX_CONDITION`) and of a safe
    magnitude (:data:`SAFE_MAGNITUDE`); ``False`` for zero or non-finite sketches."""
    peak = float(np.max(np.abs(X0))) if X0.size else 0.0
    if not 1.0 / SAFE_MAGNITUDE <= peak <= SAFE_MAGNITUDE:
        return False
    scaled = X0 / peak
    eigenvalues = np.linalg.eigvalsh(hermitian(np, scaled) @ scaled)
    smallest, largest = float(np.min(eigenvalues[..., 0])), float(np.max(eigenvalues[..., -1]))
    return smallest > 0 and largest <= MAX_CONDITION**2 * smallest


def in_precision_of(X: Array, F: Array) -> Array:
    """``X`` in ``F``'s dtype (a copy only when they differ)."""
    return X if X.dtype == F.dtype else X.astype(F.dtype)
