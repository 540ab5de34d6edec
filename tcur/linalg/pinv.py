"""The Moore–Penrose pseudo-inverse used across tcur, with one cutoff name: ``rtol``.

One SVD per call: singular values at or below ``rtol * s_max`` are dropped, where ``s_max`` is
the largest singular value over *all* matrices of a batch (so a Fourier slice of a t-product
tensor that is pure round-off is dropped, not amplified), and at most ``rank`` are kept when a
rank cap is given. Capping the rank is what keeps an oversampled CUR intersection stable: its
trailing singular values then carry only noise, and inverting them multiplies that noise (Hamm &
Huang 2021). Used by the CUR middle factors (:func:`tcur.linalg.cur`), the t-product
pseudo-inverse (:func:`tcur.linalg.tpinv`) and the mode-wise CURs.

For torch input the result is differentiable, with closed-form backward passes that stay finite
when singular values repeat (autograd through ``torch.linalg.svd`` divides by their differences
and gives NaN). Without a rank cap: the derivative of the pseudo-inverse (Golub & Pereyra 1973).
With a cap: the derivative of the truncated pseudo-inverse ``V_k S_k^-1 U_k^H``, which divides
only by ``s_i^2 - s_j^2`` for a kept ``s_i`` and a dropped ``s_j``, so it is finite whenever the
cut falls in a gap (``s_k > s_{k+1}``); at a tie across the cut the truncated pseudo-inverse
itself is not a differentiable (or even well-defined) function of ``W``.
"""

from __future__ import annotations

import sys
from typing import Any

from tcur._backend import Array, eps, is_torch, namespace
from tcur.validation import check_rtol


def default_rtol(W: Array) -> float:
    """Default relative cutoff for ``W`` (..., m, n): ``max(m, n) * eps(dtype)``."""
    return max(W.shape[-2:]) * eps(W)


def pinv(W: Array, rtol: float | None = None, rank: int | None = None) -> Array:
    """Pseudo-inverse of each matrix of ``W`` (..., m, n) from one SVD.

    Parameters
    ----------
    W : array of shape (..., m, n)
        NumPy array or torch tensor (real or complex); a batch shares one cutoff.
    rtol : float, optional
        Relative cutoff: singular values ``<= rtol * s_max`` are dropped (default
        :func:`default_rtol`). Validated by :func:`check_rtol`.
    rank : int, optional
        Keep at most this many singular values per matrix (truncated pseudo-inverse).

    Returns
    -------
    array of shape (..., n, m)

    Examples
    --------
    >>> import numpy as np
    >>> from tcur.linalg.pinv import pinv
    >>> W = np.diag([2.0, 1.0, 1e-20])
    >>> np.diag(pinv(W)).tolist()
    [0.5, 1.0, 0.0]
    >>> np.diag(pinv(W, rank=1)).tolist()
    [0.5, 0.0, 0.0]
    """
    rtol = check_rtol(rtol)
    cutoff = default_rtol(W) if rtol is None else rtol
    xp = namespace(W)
    capped = rank is not None and rank < min(W.shape[-2:])
    if is_torch(W) and W.requires_grad:
        if capped:
            return _torch_truncated_pinv_function().apply(W, cutoff, rank)
        return _torch_pinv_function().apply(W, cutoff)
    u, s, vh = xp.linalg.svd(W, full_matrices=False)
    return _from_svd(xp, u, s, vh, cutoff, rank if capped else None)


def _from_svd(xp: Any, u: Array, s: Array, vh: Array, cutoff: float, rank: int | None) -> Array:
    keep = s > cutoff * xp.max(s)
    if rank is not None:
        position = xp.arange(s.shape[-1], device=getattr(s, "device", None))
        keep = keep & (position < rank)
    s_inv = xp.where(keep, 1.0 / xp.where(keep, s, xp.ones_like(s)), xp.zeros_like(s))
    v = xp.conj(xp.matrix_transpose(vh))
    return (v * s_inv[..., None, :]) @ xp.conj(xp.matrix_transpose(u))


def _torch_pinv_function() -> Any:
    """A ``torch.autograd.Function``: forward by one SVD, backward by Golub–Pereyra."""
    torch = sys.modules["torch"]

    class _Pinv(torch.autograd.Function):  # type: ignore[name-defined]
        @staticmethod
        def forward(ctx: Any, W: Any, cutoff: float) -> Any:
            u, s, vh = torch.linalg.svd(W, full_matrices=False)
            X = _from_svd(namespace(W), u, s, vh, cutoff, None)
            ctx.save_for_backward(W, X)
            return X

        @staticmethod
        def backward(ctx: Any, G: Any) -> Any:
            W, X = ctx.saved_tensors
            Xh, Gh = X.mH, G.mH
            # d<G, X> for dX = -X dW X + X X^H dW^H (I - W X) + (I - X W) dW^H X^H X.
            eye_m = torch.eye(W.shape[-2], dtype=W.dtype, device=W.device)
            eye_n = torch.eye(W.shape[-1], dtype=W.dtype, device=W.device)
            grad = -Xh @ G @ Xh
            grad = grad + (eye_m - W @ X) @ Gh @ X @ Xh
            grad = grad + Xh @ X @ Gh @ (eye_n - X @ W)
            return grad, None

    return _Pinv


def _truncated_pinv_vjp(W: Any, G: Any, cutoff: float, rank: int) -> Any:
    """Gradient with respect to ``W`` of ``Re <G, X>`` for ``X = pinv(W)`` truncated to ``rank``.

    In full singular bases ``W = U S V^H`` (``U``: m x m, ``V``: n x n, ``s`` padded with zeros
    to ``q = max(m, n)``), with ``e_ab = u_a^H dW v_b`` and ``K`` the kept indices, the
    differential ``D = V^H dX U`` is ``D_ab = -e_ab / (s_a s_b)`` for ``a, b`` in ``K``;
    ``(s_a e_ab + s_b conj(e_ba)) / (s_b (s_b^2 - s_a^2))`` for ``a`` dropped, ``b`` kept;
    ``(s_b e_ab + s_a conj(e_ba)) / (s_a (s_a^2 - s_b^2))`` for ``a`` kept, ``b`` dropped; 0
    between dropped indices (first-order rotations of the kept singular vectors into the dropped
    ones; rotations among the kept ones cancel in ``X``). The adjoint of that map is returned.
    """
    torch = sys.modules["torch"]
    m, n = W.shape[-2:]
    q = max(m, n)
    u, s, vh = torch.linalg.svd(W, full_matrices=True)
    real = s.dtype
    pad = torch.zeros((*s.shape[:-1], q - s.shape[-1]), dtype=real, device=s.device)
    s = torch.cat([s, pad], dim=-1)
    position = torch.arange(q, device=s.device)
    kept = (s > cutoff * s.amax(dim=-1, keepdim=True)) & (position < rank)
    s_safe = torch.where(kept, s, torch.ones_like(s))  # only kept values are divided by
    # G_hat[a, b] = v_a^H G u_b, zero-padded to q x q
    g = vh @ G @ u
    g = torch.nn.functional.pad(g, (0, q - m, 0, q - n))
    s_a, s_b = s[..., :, None], s[..., None, :]
    k_a, k_b = kept[..., :, None], kept[..., None, :]
    sk_a, sk_b = s_safe[..., :, None], s_safe[..., None, :]
    both = k_a & k_b
    left = ~k_a & k_b  # a dropped, b kept
    right = k_a & ~k_b  # a kept, b dropped
    gap_left = torch.where(left, sk_b * (s_b**2 - s_a**2), torch.ones_like(s_a * s_b))
    gap_right = torch.where(right, sk_a * (s_a**2 - s_b**2), torch.ones_like(s_a * s_b))
    zero = torch.zeros_like(g)
    direct = torch.where(both, -g / (sk_a * sk_b), zero)
    direct = direct + torch.where(left, s_a * g / gap_left, zero)
    direct = direct + torch.where(right, s_b * g / gap_right, zero)
    swapped = torch.where(left, s_b * g.conj() / gap_left, zero)
    swapped = swapped + torch.where(right, s_a * g.conj() / gap_right, zero)
    e_hat = direct + swapped.mT
    return u @ e_hat[..., :m, :n] @ vh


def _torch_truncated_pinv_function() -> Any:
    """A ``torch.autograd.Function``: the truncated pseudo-inverse by one SVD, backward by
    :func:`_truncated_pinv_vjp` (finite for repeated singular values on either side of the cut).
    """
    torch = sys.modules["torch"]

    class _TruncatedPinv(torch.autograd.Function):  # type: ignore[name-defined]
        @staticmethod
        def forward(ctx: Any, W: Any, cutoff: float, rank: int) -> Any:
            u, s, vh = torch.linalg.svd(W, full_matrices=False)
            ctx.save_for_backward(W)
            ctx.cutoff, ctx.rank = cutoff, rank
            return _from_svd(namespace(W), u, s, vh, cutoff, rank)

        @staticmethod
        def backward(ctx: Any, G: Any) -> Any:
            (W,) = ctx.saved_tensors
            return _truncated_pinv_vjp(W, G, ctx.cutoff, ctx.rank), None, None

    return _TruncatedPinv
