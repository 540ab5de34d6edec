"""Leading singular vectors for index selection: exact SVD or randomized SVD.

Selection never needs gradients, so the input is detached. The work runs where the array lives
(GPU included) and the small ``(n, k)`` bases come back to the host as NumPy arrays.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tcur._backend import Array, check_choice, is_torch, make_rng, namespace, to_numpy

SVD_METHODS = ("auto", "exact", "randomized")

RANDOMIZED_MIN_DIM = 400
"""``svd="auto"`` goes randomized when the smaller side is at least this ..."""
RANDOMIZED_MAX_FRACTION = 0.25
"""... and the target rank plus oversampling is at most this fraction of it."""


def _detach(a: Array) -> Array:
    return a.detach() if is_torch(a) else a


def _use_randomized(shape: tuple[int, ...], k: int, oversample: int) -> bool:
    small = min(shape)
    return small >= RANDOMIZED_MIN_DIM and k + oversample <= RANDOMIZED_MAX_FRACTION * small


def _exact(a: Array, k: int) -> tuple[Array, Array, Array]:
    xp = namespace(a)
    u, s, vh = xp.linalg.svd(a, full_matrices=False)
    return u[:, :k], s[:k], vh[:k, :]


def _orthonormal(xp: Any, y: Array) -> Array:
    q, _ = xp.linalg.qr(y)
    return q


def _randomized(
    a: Array, k: int, oversample: int, power_iters: int, seed: Any
) -> tuple[Array, Array, Array]:
    """Halko–Martinsson–Tropp range finder with power iterations, then an exact small SVD."""
    xp = namespace(a)
    rng = make_rng(seed)
    n = a.shape[1]
    omega_host = rng.standard_normal((n, k + oversample))
    if is_torch(a):
        omega = xp.asarray(omega_host, dtype=a.dtype, device=a.device)
    else:
        omega = omega_host.astype(a.dtype, copy=False)
    q = _orthonormal(xp, a @ omega)
    a_h = xp.conj(a.T) if xp.isdtype(a.dtype, "complex floating") else a.T
    for _ in range(power_iters):
        q = _orthonormal(xp, a @ _orthonormal(xp, a_h @ q))
    b = xp.conj(q.T) @ a if xp.isdtype(a.dtype, "complex floating") else q.T @ a
    ub, s, vh = xp.linalg.svd(b, full_matrices=False)
    return (q @ ub)[:, :k], s[:k], vh[:k, :]


def singular_vectors(
    a: Array,
    k: int,
    *,
    svd: str = "auto",
    oversample: int = 10,
    power_iters: int = 2,
    seed: Any = 0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Leading ``k`` singular triplets of the matrix ``a`` as host arrays ``(U_k, s_k, V_k)``.

    ``V_k`` has shape ``(n, k)`` (right singular vectors as columns). ``svd="auto"`` uses the
    randomized SVD for large inputs (see :data:`RANDOMIZED_MIN_DIM`), else the exact one.
    """
    check_choice(svd, "svd", SVD_METHODS)
    a = _detach(a)
    randomized = svd == "randomized" or (svd == "auto" and _use_randomized(a.shape, k, oversample))
    if randomized:
        u, s, vh = _randomized(a, k, oversample, power_iters, seed)
    else:
        u, s, vh = _exact(a, k)
    v = to_numpy(vh).conj().T
    return to_numpy(u), to_numpy(s), v
