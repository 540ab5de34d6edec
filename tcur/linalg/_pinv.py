"""Batched Moore–Penrose pseudo-inverse with an absolute cutoff and an optional rank cap.

Shared by the CUR middle factor (:func:`tcur.linalg.cur.middle_pinv`) and the t-product
pseudo-inverse (:func:`tcur.linalg.tpinv`). Capping the rank is what keeps ``U = pinv(W)``
stable when the intersection ``W`` is oversampled: its trailing singular values then carry only
noise, and inverting them multiplies that noise (Hamm & Huang 2021, stability of CUR).
"""

from __future__ import annotations

import sys

from tcur._backend import Array, is_torch, namespace, to_numpy


def largest_singular_value(W: Array) -> float:
    """Largest singular value over all matrices of the (batched) ``W``, as a host float."""
    xp = namespace(W)
    data = W.detach() if is_torch(W) else W
    return float(to_numpy(xp.max(xp.linalg.svdvals(data)))) if W.size else 0.0


def truncated_pinv(W: Array, atol: float, rank: int | None = None) -> Array:
    """Pseudo-inverse of each matrix of ``W`` (..., m, n) from its singular values ``> atol``.

    At most ``rank`` singular values per matrix are kept when ``rank`` is given. Differentiable
    for torch input (torch's own ``pinv`` when no rank cap applies, else through the SVD).
    """
    capped = rank is not None and rank < min(W.shape[-2:])
    if is_torch(W) and not capped:
        return sys.modules["torch"].linalg.pinv(W, atol=atol, rtol=0.0)
    xp = namespace(W)
    u, s, vh = xp.linalg.svd(W, full_matrices=False)
    keep = s > atol
    if capped:
        position = xp.arange(s.shape[-1], device=getattr(s, "device", None))
        keep = keep & (position < rank)
    s_inv = xp.where(keep, 1.0 / xp.where(keep, s, xp.ones_like(s)), xp.zeros_like(s))
    v = xp.conj(xp.matrix_transpose(vh))
    return (v * s_inv[..., None, :]) @ xp.conj(xp.matrix_transpose(u))
