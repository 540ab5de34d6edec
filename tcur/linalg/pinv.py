"""The Moore–Penrose pseudo-inverse used across tcur, with one cutoff name: ``rtol``.

One SVD per call: singular values at or below ``rtol * s_max`` are dropped, where ``s_max`` is
the largest singular value over *all* matrices of a batch (so a Fourier slice of a t-product
tensor that is pure round-off is dropped, not amplified), and at most ``rank`` are kept when a
rank cap is given. Capping the rank is what keeps an oversampled CUR intersection stable: its
trailing singular values then carry only noise, and inverting them multiplies that noise (Hamm &
Huang 2021). Used by the CUR middle factors (:func:`tcur.linalg.cur`), the t-product
pseudo-inverse (:func:`tcur.linalg.tpinv`) and the mode-wise CURs.

For torch input the result is differentiable. Without a rank cap the backward pass uses the
closed-form derivative of the pseudo-inverse (Golub & Pereyra 1973), which stays finite when
singular values repeat; with a cap it flows through the SVD.
"""

from __future__ import annotations

import math
import sys
from typing import Any

import numpy as np

from tcur._backend import Array, eps, is_torch, namespace


def check_rtol(rtol: Any) -> float | None:
    """Validate the pseudo-inverse cutoff ``rtol``: ``None`` or a finite number ``>= 0``.

    Examples
    --------
    >>> from tcur.linalg.pinv import check_rtol
    >>> check_rtol(1e-8)
    1e-08
    >>> check_rtol(-1.0)
    Traceback (most recent call last):
    ...
    ValueError: rtol must be a finite number >= 0, got -1.0
    """
    if rtol is None:
        return None
    if isinstance(rtol, bool) or not isinstance(rtol, (int, float, np.integer, np.floating)):
        raise TypeError(f"rtol must be a number or None, got {rtol!r} ({type(rtol).__name__})")
    value = float(rtol)
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"rtol must be a finite number >= 0, got {rtol!r}")
    return value


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
    if is_torch(W) and W.requires_grad and not capped:
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
