"""Orthonormal range bases and the stable form of a CUR: one home for both.

Every CUR in tcur (matrix, t-CUR per Fourier slice, sparse and Dask) is evaluated through
orthonormal bases of its factors. With ``C = Q_C T_C`` and ``R^H = Q_R T_R`` (:func:`range_factor`:
Householder QR, then the SVD of the small triangular factor, directions of round-off size
dropped), ``C U R = Q_C (T_C U T_R^H) Q_R^H``. The small middle matrix ``T_C U T_R^H`` can be
formed without ever multiplying by ``U``'s large entries:

- ``middle="optimal"``: ``C pinv(C) A pinv(R) R = Q_C (Q_C^H A Q_R) Q_R^H``, the orthogonal
  projection of ``A`` onto the chosen columns and rows.
- ``middle="pinv"``: ``C pinv(A[rows][:, cols]) R = Q_C pinv(Q_C[rows]) R`` (interpolation on
  ``C``'s range through the chosen rows; when fewer rows than columns are kept, the transposed
  form ``C pinv(Q_R[cols]^H) Q_R^H``). Both identities hold whenever ``T_C`` and ``T_R`` have
  full rank, i.e. after the round-off directions are dropped.

:class:`Projection` holds ``(Q_C, M, Q_R)``; its :meth:`Projection.value` has an error of a few
``eps ||A||``, whereas the explicit product ``C @ U @ R`` amplifies round-off by the condition
numbers of ``C`` and ``R`` (1e-4 on a Hilbert matrix whose SVD tail is 1e-16; see
:mod:`tcur.linalg.matrix_cur`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.linalg

from tcur._backend import (
    POWER_OF_TWO_ADVICE,
    Array,
    binary_scale,
    eps,
    is_dask,
    is_numpy,
    namespace,
    take,
    thin_factorization,
)
from tcur.linalg.pinv import pinv


def hermitian(xp: Any, X: Array) -> Array:
    """Conjugate transpose of the last two axes (no copy for real input)."""
    transposed = xp.matrix_transpose(X)
    return xp.conj(transposed) if xp.isdtype(X.dtype, "complex floating") else transposed


def adjoint(X: Any) -> Any:
    """Conjugate transpose of the last two axes of any array tcur computes on (Dask included)."""
    if is_dask(X):
        return X.conj().T
    return hermitian(namespace(X), X)


def qr_basis(xp: Any, Y: Array, against: Array | None = None) -> Array:
    """Orthonormal basis of the range of ``Y`` (``(..., m, l)``) by Householder QR, where ``Y``
    lives; with ``against``, that basis's range is first projected out (twice: stable
    Gram-Schmidt), so the result extends it.

    Examples
    --------
    >>> import numpy as np
    >>> from tcur.linalg.orthonormal import qr_basis
    >>> Q = qr_basis(np, np.random.default_rng(0).standard_normal((6, 2)))
    >>> bool(np.allclose(Q.T @ Q, np.eye(2)))
    True
    """
    for _ in range(2 if against is not None else 1):
        if against is not None:
            Y = Y - against @ (hermitian(xp, against) @ Y)
        rounds = gram_rounds(Y)
        if rounds is None:
            with thin_factorization(Y):
                rounds = xp.linalg.qr(Y)
        Y = rounds[0]
    return Y


GRAM_CONDITION_EXPONENT = 0.25
""":func:`gram_rounds` orthonormalizes a block whose condition number is at most
``eps^-GRAM_CONDITION_EXPONENT`` (8,192 in float64, 54 in float32), where its Gram matrix
resolves every direction to about ``sqrt(eps)``; beyond it, Householder QR."""
GRAM_MIN_ROWS = 2000
GRAM_MIN_ASPECT = 20
""":func:`gram_rounds` takes real blocks of at least :data:`GRAM_MIN_ROWS` rows and this many
times as many rows as columns. Measured at one thread against Householder QR: 3x faster at
40,000 x 50, 4x at 4,000 x 10, 1.7x at 4,000 x 50; even at 1,000 rows; 2x slower at 320 x 50
(two small eigendecompositions are its fixed cost); complex blocks (the Fourier slices of a
t-CUR) were slower at every shape tried."""


def gram_rounds(X: Array) -> tuple[Array, Array] | None:
    """``(Q, T)`` with ``X = Q T`` and ``Q`` orthonormal to about ``eps``, by two rounds of Gram
    orthonormalization (``Q <- Q V w^(-1/2)`` from ``eigh(Q^H Q) = (w, V)``), for a real NumPy
    block ``X`` (``(..., m, k)``, tall enough: :data:`GRAM_MIN_ASPECT`) whose every matrix is well
    conditioned (see :data:`GRAM_CONDITION_EXPONENT`); ``None`` otherwise (other array kinds,
    where the test would read the device; complex, short, ill-conditioned, rank-deficient, zero
    or non-finite blocks): Householder QR's case.

    Four products with the ``m x k`` block, where LAPACK's Householder QR and its ``Q`` run
    partly on matrix-vector kernels (and slow down with more threads).

    Examples
    --------
    >>> import numpy as np
    >>> from tcur.linalg.orthonormal import gram_rounds
    >>> X = np.random.default_rng(0).standard_normal((2000, 40))
    >>> Q, T = gram_rounds(X)
    >>> bool(np.allclose(Q.T @ Q, np.eye(40))), bool(np.allclose(Q @ T, X))
    (True, True)
    >>> gram_rounds(np.ones((2000, 40))) is None  # rank 1
    True
    """
    rows = X.shape[-2]
    tall = rows >= GRAM_MIN_ROWS and rows >= GRAM_MIN_ASPECT * X.shape[-1] > 0
    if not (is_numpy(X) and tall and X.dtype in (np.float32, np.float64)):
        return None
    limit = eps(X) ** (2 * GRAM_CONDITION_EXPONENT)  # smallest w_min / w_max allowed
    Q, T = X, None
    for _ in range(2):
        with np.errstate(over="ignore", under="ignore", invalid="ignore"):
            gram = hermitian(np, Q) @ Q
        if not np.all(np.isfinite(gram)):
            return None
        w, V = np.linalg.eigh(gram)
        top = w[..., -1:]
        if not (np.all(w[..., :1] > 0) and np.all(w[..., :1] >= limit * top)):
            return None  # (w > 0 also where limit * top underflows)
        root = np.sqrt(w)
        Q = Q @ (V / root[..., None, :])
        step = root[..., :, None] * hermitian(np, V)
        T = step if T is None else step @ T
    return Q, T


INTERPOLATION_CUTOFF = 10
"""Directions kept for interpolation (the ``"pinv"`` middle): singular values above this many
``eps * s_max``. The pivoting cutoff (:func:`roundoff_factor` ``* eps``) drops real content of
ill-conditioned float32 columns (1.67x the stability bound on a 150 x 100 Hilbert matrix; 0.28x
with this)."""


def range_factor(
    xp: Any, X: Array, *, drop: bool = True, cutoff: float | None = None
) -> tuple[Array, Array]:
    """``(Q, T)`` with ``X = Q T`` up to round-off, ``Q`` orthonormal on its kept columns.

    ``X`` is ``(..., m, k)`` with ``k <= m``. Householder QR ``X = Q0 R``, then the SVD
    ``R = u s v^H``: ``Q = Q0 u`` and ``T = s v^H``. With ``drop`` (default) the directions whose
    singular value is at round-off level (``<= f * eps * s_max``, ``f`` the
    :func:`roundoff_factor`, ``s_max`` over the whole batch) are set to zero in both, so a
    rank-deficient ``X`` contributes only its numerical range (what pivoting and interpolation
    need); without it ``Q`` keeps every direction (still orthonormal: an orthogonal projection
    onto it is as stable, and it captures what the columns hold down to round-off). ``cutoff``
    replaces the factor ``f`` of that threshold.

    Examples
    --------
    >>> import numpy as np
    >>> from tcur.linalg.orthonormal import range_factor
    >>> Q, T = range_factor(np, np.array([[1.0, 2.0], [2.0, 4.0], [0.0, 0.0]]))
    >>> np.round(np.abs(Q), 6).tolist()
    [[0.447214, 0.0], [0.894427, 0.0], [0.0, 0.0]]
    >>> bool(np.allclose(Q @ T, [[1.0, 2.0], [2.0, 4.0], [0.0, 0.0]]))
    True
    """
    Q, T, s = spectral_range_factor(xp, X)
    return without_roundoff(xp, Q, T, s, cutoff) if drop else (Q, T)


def spectral_range_factor(xp: Any, X: Array) -> tuple[Array, Array, Array]:
    """``(Q, T, s)``: :func:`range_factor` of ``X`` with every direction kept, and the singular
    values ``s`` of ``X`` (``T = diag(s) v^H``), from which :func:`without_roundoff` drops the
    round-off directions at any cutoff later."""
    rounds = gram_rounds(X)
    with thin_factorization(X):
        with np.errstate(over="ignore", invalid="ignore"):  # overflow: checked on the factors
            Q0, R = rounds if rounds is not None else xp.linalg.qr(X)
            _check_no_overflow(R)
            u, s, vh = xp.linalg.svd(R, full_matrices=False)
        _check_no_overflow(s)
    return Q0 @ u, xp.astype(s[..., :, None], vh.dtype) * vh, s


def _check_no_overflow(R: Array) -> None:
    """``ValueError`` if a NumPy factor (the triangular one, or the singular values) is not
    finite (LAPACK's SVD can loop forever on Inf; torch's raises): the factored block's norm is
    beyond its dtype's range, or it held NaN/Inf that ``check_finite=False`` let through."""
    if is_numpy(R) and not np.isfinite(R).all():
        raise ValueError(
            f"a factor of the input's columns is not finite in {R.dtype}: the input holds NaN or "
            "Inf (check_finite=False skips the scan that names them), or it is too large for "
            f"{R.dtype} (norm beyond {np.finfo(R.dtype).max:.3g}); if so, "
            + POWER_OF_TWO_ADVICE.format(name="it")
        )


def without_roundoff(
    xp: Any, Q: Array, T: Array, s: Array, cutoff: float | None = None
) -> tuple[Array, Array]:
    """``(Q, T)`` of :func:`spectral_range_factor` with the directions whose singular value is
    ``<= c * eps * s_max`` set to zero (``s_max`` over the whole batch; ``c = cutoff``, by
    default :func:`roundoff_factor`). ``Q`` and ``T`` themselves, not copies, when every
    direction is kept and they are NumPy arrays (a torch tensor would be read back to tell)."""
    keep = kept_directions(xp, Q, s, cutoff)
    if is_numpy(keep) and bool(np.all(keep == 1)):
        return Q, T
    return Q * xp.astype(keep, Q.dtype)[..., None, :], xp.astype(keep[..., :, None], T.dtype) * T


def kept_directions(xp: Any, Q: Array, s: Array, cutoff: float | None = None) -> Array:
    """1 for each direction :func:`without_roundoff` keeps, 0 for those it drops (``s``'s
    dtype)."""
    factor = roundoff_factor(Q) if cutoff is None else cutoff
    return xp.astype(s > factor * eps(Q) * xp.max(s), s.dtype)


def roundoff_factor(Q: Array) -> float:
    """The default round-off level of a range factor ``Q`` (``(..., m, k)``) in multiples of
    ``eps * s_max``: ``max(m, k)`` up to 100, then ``10 sqrt(max(m, k))``, the growth of
    Householder QR's typical backward error. ``max(m, k)`` itself cut real content of tall
    blocks: 2.9e-4 in float32 at 2,400 rows, where a Matern kernel's CUR then stayed at 3.8e-4
    error against an SVD tail of 1e-6 (1.2e-4 with this level)."""
    size = max(Q.shape[-2:])
    return float(min(size, 10 * math.sqrt(size)))


def numerical_range(xp: Any, X: Array) -> Array:
    """Orthonormal range bases of ``X`` (``(..., m, k)``, ``k <= m``): the ``Q`` of
    :func:`range_factor`, round-off directions set to zero, so the pivots chosen on it do not
    depend on round-off.

    Examples
    --------
    >>> import numpy as np
    >>> from tcur.linalg.orthonormal import numerical_range
    >>> Q = numerical_range(np, np.ones((4, 2)))
    >>> np.round(np.abs(Q), 6).tolist()
    [[0.5, 0.0], [0.5, 0.0], [0.5, 0.0], [0.5, 0.0]]
    """
    return range_factor(xp, X)[0]


DOMINANT_GAP_EXPONENT = 0.25
""":func:`dominant_directions` takes the Gram route when the ``count``-th singular value is at
least ``eps`` to this power times the largest (1.2e-4 in float64): its directions are then
accurate to ``eps^(3/4)`` of the largest over the gap, far below what pivots on them resolve."""


def dominant_directions(B: np.ndarray, count: int) -> np.ndarray:
    """The ``count`` leading left singular vectors of a host block ``B`` (``n x c``, float32,
    float64 or complex), round-off directions zeroed: :func:`numerical_range`'s first ``count``
    columns.

    From the eigendecomposition of the smaller Gram matrix (``B B^H`` or ``B^H B``, of ``B``
    scaled by a power of two so that its squares neither over- nor underflow) when the ``count``
    directions are well above round-off (:data:`DOMINANT_GAP_EXPONENT`); else through
    :func:`numerical_range` (Householder QR and an SVD). The Gram eigenvectors are the singular
    vectors in the same order, but less accurate: the error of the ``k``-th is about
    ``eps ||B||^2 / (s_k^2 - s_{k+1}^2)`` against the SVD's ``eps ||B|| / (s_k - s_{k+1})``, i.e.
    larger by up to ``||B|| / s_k <= eps^-DOMINANT_GAP_EXPONENT`` (54 in float32, 8,192 in
    float64): at most ``eps^(3/4) ||B|| / (s_k - s_{k+1})``. Pivoting only needs the span to
    that accuracy: every t-CUR rule's error is unchanged by it on ``bench_tcur``. From ``B^H B``
    the vectors ``B v / s`` are orthonormal only to ``eps (s_1 / s_k)^2``, and one Cholesky-QR
    step makes them orthonormal to ``eps``. The Gram route is 2-4x faster on the stacked
    Fourier-slice bases of a t-CUR (``320 x 400``: 6 ms against 16 ms).

    Raises
    ------
    TypeError
        If ``B`` is not float32, float64, complex64 or complex128.
    ValueError
        If ``count`` is not in ``[0, min(n, c)]``.

    Examples
    --------
    >>> import numpy as np
    >>> from tcur.linalg.orthonormal import dominant_directions
    >>> B = np.random.default_rng(0).standard_normal((30, 8)) * 0.5 ** np.arange(8)
    >>> U = dominant_directions(B, 3)
    >>> u = np.linalg.svd(B)[0][:, :3]
    >>> bool(np.allclose(U @ U.T, u @ u.T))
    True
    """
    if B.dtype not in (np.float32, np.float64, np.complex64, np.complex128):
        raise TypeError(f"B must be float32, float64 or complex, got dtype {B.dtype}")
    rows, cols = B.shape
    if not 0 <= count <= min(rows, cols):
        raise ValueError(f"count must be in [0, {min(rows, cols)}], got {count}")
    peak = float(np.max(np.abs(B))) if B.size else 0.0
    if count > 0 and 0 < peak < np.inf:
        scaled = B / B.real.dtype.type(binary_scale(peak))
        wide = cols > rows
        gram = scaled @ hermitian(np, scaled) if wide else hermitian(np, scaled) @ scaled
        w, V = np.linalg.eigh(gram)
        top, vectors = w[::-1][:count], V[:, ::-1][:, :count]
        if top[-1] > 0 and top[-1] >= eps(B) ** (2 * DOMINANT_GAP_EXPONENT) * top[0]:
            return vectors if wide else _reorthonormalized(scaled @ vectors / np.sqrt(top))
    return numerical_range(np, B[None])[0][:, :count]


def _reorthonormalized(U: np.ndarray) -> np.ndarray:
    """``U`` (columns orthonormal to about ``eps cond^2``) made orthonormal to ``eps`` by one
    Cholesky-QR step, which keeps each column's direction up to that error and their order."""
    lower = np.linalg.cholesky(hermitian(np, U) @ U)
    return scipy.linalg.solve_triangular(lower, hermitian(np, U), lower=True).conj().T


ONE_ROUND_CONDITION = 100.0
"""Up to this condition number :func:`orthonormal_columns` stops after one Gram round, whose
columns are then orthonormal to about ``cond^2 eps`` (1e-12 in float64)."""


def orthonormal_columns(Y: np.ndarray) -> np.ndarray:
    """Orthonormal basis (C order, ``Y``'s dtype) of the range of a tall host block ``Y``
    (``m x l``), the fast way when it is safe.

    Two rounds of Gram orthonormalization (``Q <- Q V w^(-1/2)`` from ``eig(Q^H Q) = (w, V)``,
    computed in double precision; one round when ``Y``'s condition number is at most
    :data:`ONE_ROUND_CONDITION`): two products with the ``m x l`` block per round, cheaper than
    a Householder QR and its Fortran-order copies. The Gram matrix squares the condition number,
    so it resolves only singular values above about ``sqrt(l eps)`` of the largest; when ``Y`` has
    smaller ones (the sketch of a smooth kernel or a Hilbert matrix beyond rank ~8), the basis is
    :func:`numerical_range` instead (Householder QR: directions down to round-off). When the Gram
    matrix over- or underflows (entries beyond about ``1e+-240``) ``Y`` is first divided by a
    power of two near its largest entry.

    Examples
    --------
    >>> import numpy as np
    >>> from tcur.linalg.orthonormal import orthonormal_columns
    >>> Y = np.random.default_rng(0).standard_normal((50, 4)) * [1.0, 1e-3, 1e-9, 1e-12]
    >>> Q = orthonormal_columns(Y)
    >>> bool(np.allclose(Q.T @ Q, np.eye(4))), bool(np.allclose(Q @ (Q.T @ Y), Y, atol=1e-25))
    (True, True)
    """
    Q = np.asarray(Y, dtype=np.result_type(Y.dtype, np.float64))
    with np.errstate(over="ignore", under="ignore", invalid="ignore"):
        gram = Q.conj().T @ Q
    top = float(np.max(gram.diagonal().real)) if gram.size else 0.0
    if not (math.isfinite(top) and top > 2.0**-800):  # rare: rescale, then form it again
        peak = float(np.max(np.abs(Q))) if Q.size else 0.0
        if not peak > 0:
            return np.zeros_like(Y)
        Q = Q / binary_scale(peak)
        gram = Q.conj().T @ Q
    for second in (False, True):
        w, V = np.linalg.eigh(gram)
        keep = w > Q.shape[1] * float(np.finfo(w.dtype).eps) * w[-1]
        if not (second or keep.all()):  # the Gram matrix cannot resolve the small directions
            return np.ascontiguousarray(numerical_range(np, Q), dtype=Y.dtype)
        Q = Q @ (V * np.where(keep, 1.0 / np.sqrt(np.where(keep, w, 1.0)), 0.0))
        if not second and w[0] >= ONE_ROUND_CONDITION**-2 * w[-1]:
            break  # orthonormal to about cond^2 eps already
        if not second:
            gram = Q.conj().T @ Q
    return np.ascontiguousarray(Q, dtype=Y.dtype)


@dataclass(frozen=True)
class MeasuredProjection:
    """What a selection measured of the CUR it chose, for the middle to reuse instead of factoring
    ``C`` and ``R`` again and passing over ``A`` once more.

    ``left = (Q_C, T_C, s_C)`` and ``right = (Q_R, T_R, s_R)`` are :func:`spectral_range_factor`
    of ``C`` and ``R^H`` (every direction kept), ``core = Q_C^H A Q_R``; leading axes are the
    selection's batch (one matrix, or the Fourier slices of a tensor).
    """

    left: tuple[Array, Array, Array]
    right: tuple[Array, Array, Array]
    core: Array

    def first(self) -> MeasuredProjection:
        """The same for the first matrix of the batch (a matrix CUR's batch of one)."""
        left = tuple(x[0, ...] for x in self.left)
        right = tuple(x[0, ...] for x in self.right)
        return MeasuredProjection(left, right, self.core[0, ...])


@dataclass(frozen=True)
class Projection:
    """A CUR in orthonormal coordinates: ``left @ core @ right^H``.

    ``left`` (``Q_C``, ``(..., m, a)``) and ``right`` (``Q_R``, ``(..., n, b)``) have orthonormal
    (or zero) columns spanning ``C``'s and ``R^H``'s numerical ranges; ``core`` is ``(..., a, b)``.
    Leading axes are Fourier slices for t-CUR. See :mod:`tcur.linalg.orthonormal`.
    """

    left: Array
    core: Array
    right: Array

    def value(self) -> Array:
        """``left @ core @ right^H`` (lazy for a Dask ``left``)."""
        return self.left @ (self.core @ adjoint(self.right))

    def squared_norm(self) -> float:
        """``||left @ core @ right^H||_F^2 = ||core||_F^2`` (the bases are orthonormal)."""
        xp = namespace(self.core)
        return float(xp.sum(xp.abs(self.core) ** 2))


def interpolation_projection(
    xp: Any,
    left: tuple[Array, Array, Array],
    right: tuple[Array, Array, Array],
    rows: Array,
    cols: Array,
    U: Array,
    capped: bool,
    cutoff: float,
) -> Projection:
    """The stable form of ``C U R`` for ``U = pinv(A[rows][:, cols])`` (relative ``cutoff``),
    from the
    :func:`spectral_range_factor` ``left`` of ``C`` and ``right`` of ``R^H``, without multiplying
    by ``U`` where possible.

    With at least as many rows as columns, ``T_C pinv(Q_C[rows] T_C) = pinv(Q_C[rows])`` when
    ``Q_C[rows]`` has full column rank (pivots of ``C``'s range give a well-conditioned one,
    whatever the conditioning of ``C``), so the core is ``pinv(Q_C[rows]) T_R^H``; otherwise,
    symmetrically, ``T_C pinv(Q_R[cols]^H)``. The ranges keep the directions above
    :data:`INTERPOLATION_CUTOFF` ``eps`` (what ill-conditioned float32 columns hold), but
    interpolating through ``Q_C[rows]`` multiplies what ``C``'s range misses by up to
    ``1 / s_min(Q_C[rows])``, and the rows need not resolve directions that close to round-off
    (they were pivoted on a range cut at :func:`roundoff_factor` ``eps``, relative to another
    block's largest singular value). So when some kept direction is resolved below
    :data:`RESOLVED`, the ranges are cut ten times higher, from that level up to ``U``'s own
    ``cutoff``: on a float32 Matern kernel with ``2 r`` rows, ``s_min`` fell to 6e-5 at ranks 30,
    37 and 52 and gave up to 70x the stability bound; Hilbert, Cauchy and the other kernels stay
    above 0.05. When the block is rank-deficient (rows or columns that miss part of the range),
    no cut resolves it, or ``U`` was ``capped`` below the intersection's size, the identity does
    not hold and the core is formed from ``U`` itself."""
    wide = rows.shape[-1] < cols.shape[-1]
    side = right if wide else left
    for cut in _interpolation_cuts(side[0], cutoff):
        Q_C, T_C = without_roundoff(xp, *left, cut)
        Q_R, T_R = without_roundoff(xp, *right, cut)
        if wide:
            block, kept = hermitian(xp, take(Q_R, cols, axis=Q_R.ndim - 2)), T_R
        else:
            block, kept = take(Q_C, rows, axis=Q_C.ndim - 2), T_C
        if capped or bool(xp.any(_ranks(xp, block) < _ranks(xp, kept))):
            break
        count = xp.sum(kept_directions(xp, side[0], side[2], cut), axis=-1)
        if _resolved(xp, block, count):
            core = T_C @ pinv(block) if wide else pinv(block) @ hermitian(xp, T_R)
            return Projection(Q_C, core, Q_R)
    return Projection(Q_C, T_C @ U @ hermitian(xp, T_R), Q_R)


def _interpolation_cuts(Q: Array, cutoff: float) -> list[float]:
    """:data:`INTERPOLATION_CUTOFF`, then :func:`roundoff_factor` and ten times more each step,
    while the relative level stays below ``cutoff`` (multiples of ``eps``)."""
    cuts, cut, unit = [float(INTERPOLATION_CUTOFF)], roundoff_factor(Q), eps(Q)
    while cut * unit < cutoff:
        cuts.append(cut)
        cut *= 10
    return cuts


RESOLVED = 1e-2
"""Smallest singular value of the interpolation block ``Q_C[rows]`` (orthonormal ``Q_C``) that
:func:`interpolation_projection` accepts on the :data:`INTERPOLATION_CUTOFF` ranges."""


def _resolved(xp: Any, block: Array, count: Array) -> bool:
    """Whether each block has ``count`` singular values above :data:`RESOLVED`."""
    resolved = xp.astype(_ranks(xp, block, RESOLVED, relative=False), count.dtype)
    return not bool(xp.any(resolved < count))


def _ranks(xp: Any, X: Array, cutoff: float | None = None, *, relative: bool = True) -> Array:
    """Numerical rank of each matrix of a batch: singular values above ``cutoff`` (default the
    round-off level ``max(m, n) eps``) times the batch's largest, or above ``cutoff`` itself
    when not ``relative``."""
    s = xp.linalg.svdvals(X)
    level = max(X.shape[-2:]) * eps(X) if cutoff is None else cutoff
    return xp.sum(xp.astype(s > (level * xp.max(s) if relative else level), xp.int64), axis=-1)
