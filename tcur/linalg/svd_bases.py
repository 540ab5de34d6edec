"""Leading singular vectors for index selection: exact SVD or randomized SVD, of a dense
array (:func:`singular_vectors`) or of a matrix seen through products
(:func:`operator_singular_vectors`). The one home of singular-vector finding; the ``tol=`` range
finder is in :mod:`tcur.linalg.tolerance`.

Selection never needs gradients, so the input is detached. The work runs where the array lives
(GPU included) and the small ``(n, k)`` bases come back to the host as NumPy arrays.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tcur._backend import Array, is_torch, make_rng, namespace, spawn_rngs, to_numpy
from tcur.linalg.orthonormal import hermitian, orthonormal_columns, qr_basis
from tcur.linalg.pivoting import gaussian
from tcur.validation import check_choice

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
    with np.errstate(over="ignore"):  # singular values beyond the dtype: see orthonormal's check
        u, s, vh = xp.linalg.svd(a, full_matrices=False)
    return u[:, :k], s[:k], vh[:k, :]


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
    q = qr_basis(xp, a @ omega)
    a_h = xp.conj(a.T) if xp.isdtype(a.dtype, "complex floating") else a.T
    for _ in range(power_iters):
        q = qr_basis(xp, a @ qr_basis(xp, a_h @ q))
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


def batched_singular_vectors(
    F: Array, k: int, *, svd: str = "auto", seed: Any = 0, oversample: int = 10
) -> tuple[Array, Array]:
    """Leading ``k`` left and right singular vectors of every matrix of a batch ``F``
    (``(b, m, n)``), where ``F`` lives: ``(U, V)`` of shapes ``(b, m, k)`` and ``(b, n, k)``.

    The rule of :func:`singular_vectors` (``"auto"``: randomized for large matrices), computed
    for the whole batch at once, so a GPU caller reads the bases back in one transfer.

    Examples
    --------
    >>> import numpy as np
    >>> from tcur.linalg.svd_bases import batched_singular_vectors
    >>> U, V = batched_singular_vectors(np.random.default_rng(0).standard_normal((3, 8, 6)), 2)
    >>> U.shape, V.shape
    ((3, 8, 2), (3, 6, 2))
    """
    check_choice(svd, "svd", SVD_METHODS)
    F = _detach(F)
    xp = namespace(F)
    randomized = svd == "randomized" or (
        svd == "auto" and _use_randomized(F.shape[1:], k, oversample)
    )
    if randomized:
        rng = make_rng(seed)
        Q = qr_basis(xp, F @ gaussian(rng, (F.shape[0], F.shape[2], k + oversample), F))
        Fh = hermitian(xp, F)
        for _ in range(2):
            Q = qr_basis(xp, F @ qr_basis(xp, Fh @ Q))
        return sketched_singular_vectors(Q, Fh @ Q, k)
    u, _, vh = xp.linalg.svd(F, full_matrices=False)
    return u[..., :k], hermitian(xp, vh[..., :k, :])


def sketched_singular_vectors(Q: Array, Y: Array, k: int) -> tuple[Array, Array]:
    """Leading ``k`` left and right singular vectors ``(U, V)`` of each sketched factorization
    ``Q_j Y_j^H`` (``Q``: ``(b, m, l)`` orthonormal, ``Y = F^H Q``: ``(b, n, l)``), where they
    live: the last step of a randomized SVD, no pass over ``F``.

    Examples
    --------
    >>> import numpy as np
    >>> from tcur.linalg.svd_bases import sketched_singular_vectors
    >>> F = np.random.default_rng(0).standard_normal((1, 6, 5))
    >>> Q = np.linalg.qr(F)[0]  # the whole range: the factorization is exact
    >>> U, V = sketched_singular_vectors(Q, np.swapaxes(F, 1, 2) @ Q, 2)
    >>> bool(np.allclose(np.abs(U[0].T @ np.linalg.svd(F[0])[0][:, :2]), np.eye(2)))
    True
    """
    xp = namespace(Q)
    ub, _, vh = xp.linalg.svd(hermitian(xp, Y), full_matrices=False)
    return (Q @ ub)[..., :k], hermitian(xp, vh[..., :k, :])


def operator_randomized_svd(
    A: Any, k: int, seed: Any, power_iters: int = 2, oversample: int = 10
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Leading ``k`` singular triplets ``(U_k, s_k, V_k)`` (``V_k``: ``n x k``) of an operator:
    Gaussian range finder with ``k + 10`` columns and ``power_iters`` power iterations
    (``2 + 2 * power_iters`` passes); the operator form of :func:`singular_vectors`."""
    (rng,) = spawn_rngs(seed, 1)
    size = min(k + oversample, min(A.shape))
    omega = rng.standard_normal((A.shape[1], size)).astype(A.dtype, copy=False)
    Q = orthonormal_columns(A.times(omega))
    for _ in range(power_iters):
        Q = orthonormal_columns(A.times(orthonormal_columns(A.adjoint_times(Q))))
    v, s, wh = np.linalg.svd(A.adjoint_times(Q), full_matrices=False)  # A^H Q = (Q^H A)^H
    return (Q @ wh.conj().T)[:, :k], s[:k], v[:, :k]


def _arpack_svd(A: Any, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    import scipy.sparse.linalg  # deferred: keeps `import tcur` fast

    op = scipy.sparse.linalg.LinearOperator(
        A.shape,
        matvec=lambda x: A.times(np.reshape(x, (-1, 1)))[:, 0],
        rmatvec=lambda x: A.adjoint_times(np.reshape(x, (-1, 1)))[:, 0],
        matmat=A.times,
        rmatmat=A.adjoint_times,
        dtype=A.dtype,
    )
    u, s, vh = scipy.sparse.linalg.svds(op, k=k, random_state=0)
    order = np.argsort(-s)
    return u[:, order], s[order], vh[order].conj().T


def operator_singular_vectors(
    A: Any, k: int, *, svd: str, seed: Any
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`singular_vectors` of a matrix seen only through products (an
    :class:`tcur.linalg.products.Operator`: ``shape``, ``dtype``, ``times``, ``adjoint_times``):
    ARPACK for ``svd="exact"`` (when ``k < min(A.shape)``), else
    :func:`operator_randomized_svd`."""
    if svd == "exact" and k < min(A.shape):
        return _arpack_svd(A, k)
    return operator_randomized_svd(A, k, seed)
