"""The middle of a dense CUR: the explicit factor ``U`` and the stable form, from one pair of
orthonormal range factors (matrices, or batches of Fourier slices for t-CUR)."""

from __future__ import annotations

from typing import Any

from tcur._backend import Array, eps, is_torch, namespace, take
from tcur.linalg.options import explicit_rtol
from tcur.linalg.orthonormal import (
    MeasuredProjection,
    Projection,
    hermitian,
    interpolation_projection,
    spectral_range_factor,
)
from tcur.linalg.pinv import pinv


def _detached(x: Array) -> Array:
    return x.detach() if is_torch(x) else x


def middle_factors(
    A: Array,
    C: Array,
    R: Array,
    rows: Array,
    cols: Array,
    *,
    middle: str,
    rank: int,
    rtol: float | None,
    measured: MeasuredProjection | None = None,
) -> tuple[Array, Projection]:
    """``(U, form)`` of the CUR of ``A`` (``(..., m, n)``) with ``C = A[..., cols]`` and
    ``R = A[..., rows, :]``.

    ``U`` is ``pinv(C) A pinv(R)`` (``middle="optimal"``) or ``pinv(A[rows][:, cols])`` capped
    at ``rank`` singular values (``"pinv"``), with the cutoff :func:`tcur.linalg.options.
    explicit_rtol`; for torch input it is differentiable. ``form`` is the stable
    :class:`tcur.linalg.orthonormal.Projection` of the same decomposition (never differentiated).
    ``measured``: the range factors of ``C`` and ``R^H`` and ``Q_C^H A Q_R`` when the selection
    already computed them (then neither is factored again, nor is ``A`` read again).

    Examples
    --------
    >>> import numpy as np
    >>> from tcur.linalg.middle import middle_factors
    >>> A = np.arange(12.0).reshape(4, 3)  # rank 2
    >>> rows, cols = np.array([0, 3]), np.array([0, 2])
    >>> U, form = middle_factors(A, A[:, cols], A[rows], rows, cols, middle="optimal", rank=2,
    ...                          rtol=None)
    >>> bool(np.allclose(A[:, cols] @ U @ A[rows], A)), bool(np.allclose(form.value(), A))
    (True, True)
    """
    xp = namespace(A)
    cutoff = explicit_rtol(rtol, eps(A))
    if measured is None:
        left = spectral_range_factor(xp, _detached(C))
        right = spectral_range_factor(xp, hermitian(xp, _detached(R)))
    else:
        left, right = measured.left, measured.right
    if middle == "pinv":  # interpolation needs the numerical ranges; projection does not
        W = take(R, cols, axis=R.ndim - 1)
        U = pinv(W, cutoff, rank=rank)
        capped = rank < min(W.shape[-2:])
        form = interpolation_projection(xp, left, right, rows, cols, _detached(U), capped, cutoff)
        return U, form
    (Q_C, T_C, _), (Q_R, T_R, _) = left, right
    core = (hermitian(xp, Q_C) @ _detached(A)) @ Q_R if measured is None else measured.core
    if is_torch(A) and A.requires_grad:
        U = pinv(C, cutoff) @ (A @ pinv(R, cutoff))
    else:
        U = explicit_optimal(T_C, core, T_R, cutoff)
    return U, Projection(Q_C, core, Q_R)


def explicit_optimal(T_C: Array, core: Array, T_R: Array, cutoff: float) -> Array:
    """``pinv(C) A pinv(R)`` from the range factors ``C = Q_C T_C``, ``R^H = Q_R T_R`` and
    ``core = Q_C^H A Q_R``: ``pinv(T_C) core pinv(T_R^H)``, with the cutoff ``pinv`` would use on
    ``C`` and ``R`` themselves (they share their singular values with ``T_C`` and ``T_R``)."""
    xp: Any = namespace(core)
    return pinv(T_C, cutoff) @ core @ pinv(hermitian(xp, T_R), cutoff)
