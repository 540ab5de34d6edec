"""The materialized forward as one autograd function that keeps no merged weight for backward.

``y = x (W + Delta)^T + b`` with the update in its factored form ``Delta = [B_1 A_1; B_2 A_2;
...]`` (one ``B_p @ A_p`` block of output rows per part of a layer). Autograd through
``F.linear(x, W + Delta)`` would keep the merged ``(d_out, d_in)`` weight of every layer alive from
the forward pass to the backward pass; :func:`merged_linear` keeps only ``x`` and the small factors
and forms the merged weight again, one layer at a time, in backward. The arithmetic is that of the
plain composition: ``W + Delta`` summed in the factors' dtype and rounded once to ``W``'s dtype,
the products in the dtype the forward pass ran in (autocast's, if active).

Gradients: ``dx = g (W + Delta)``, ``dDelta = g^T x`` (then ``dB_p = dDelta_p A_p^T`` and
``dA_p = B_p^T dDelta_p``), ``dW = dDelta`` in ``W``'s layout and ``db = sum g``, each only when
asked for. First-order only (``once_differentiable``).
"""

from __future__ import annotations

from typing import Any

import torch
from torch.autograd.function import once_differentiable
from torch.nn import functional as F


def add_update(
    weight: torch.Tensor,
    delta: torch.Tensor,
    transposed: bool = False,
    sign: float = 1.0,
) -> torch.Tensor:
    """``W + sign * Delta`` in ``W``'s layout and dtype, summed in ``Delta``'s dtype.

    The one place an update meets a base weight: the materialized forward pass, the weights an
    attention module runs with, merge and unmerge all use it. ``delta`` is ``(d_out, d_in)``;
    ``transposed`` for a ``Conv1D`` weight (``(d_in, d_out)``). The sum is rounded once.

    Examples
    --------
    >>> import torch
    >>> from tcur.adapters.merged_linear import add_update
    >>> W = torch.zeros(2, 3, dtype=torch.bfloat16)
    >>> add_update(W, torch.ones(3, 2), transposed=True, sign=-1.0)
    tensor([[-1., -1., -1.],
            [-1., -1., -1.]], dtype=torch.bfloat16)
    """
    native = delta.T if transposed else delta
    return torch.add(weight.to(delta.dtype), native, alpha=sign).to(weight.dtype)


def factored_delta(factors: tuple[torch.Tensor, ...]) -> torch.Tensor:
    """``Delta = [B_1 A_1; B_2 A_2; ...]`` from ``factors = (B_1, A_1, B_2, A_2, ...)``."""
    pairs = zip(factors[0::2], factors[1::2], strict=True)
    blocks = [B @ A for B, A in pairs]
    return blocks[0] if len(blocks) == 1 else torch.cat(blocks, dim=0)


def merged_weight(
    weight: torch.Tensor, factors: tuple[torch.Tensor, ...], transposed: bool
) -> torch.Tensor:
    """``W + Delta`` in ``W``'s layout and dtype, summed in the factors' dtype.

    ``factors`` is ``(B_1, A_1, B_2, A_2, ...)``; ``transposed`` for a ``Conv1D`` weight
    (``(d_in, d_out)``).
    """
    return add_update(weight, factored_delta(factors), transposed)


def _apply(x: torch.Tensor, weight: torch.Tensor, bias: Any, transposed: bool) -> torch.Tensor:
    if not transposed:
        return F.linear(x, weight, bias)
    flat = x.reshape(-1, x.shape[-1])
    out = torch.addmm(bias, flat, weight) if bias is not None else flat @ weight
    return out.view(*x.shape[:-1], weight.shape[1])


class _MergedLinear(torch.autograd.Function):
    @staticmethod
    def forward(
        ctx: Any,
        x: torch.Tensor,
        weight: torch.Tensor,
        bias: torch.Tensor | None,
        transposed: bool,
        *factors: torch.Tensor,
    ) -> torch.Tensor:
        out = _apply(x, merged_weight(weight, factors, transposed), bias, transposed)
        ctx.transposed, ctx.has_bias = transposed, bias is not None
        ctx.save_for_backward(x, weight, *factors)
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        x, weight, *factors = ctx.saved_tensors
        needs = ctx.needs_input_grad
        dtype = grad.dtype  # the dtype the forward products ran in
        g = grad.reshape(-1, grad.shape[-1])
        grad_x = grad_w = grad_b = None
        if needs[0]:
            total = merged_weight(weight, tuple(factors), ctx.transposed).to(dtype)
            grad_x = (g @ (total.T if ctx.transposed else total)).view(x.shape).to(x.dtype)
            del total
        wants_factors = any(needs[4:])
        grad_factors: list[torch.Tensor | None] = [None] * len(factors)
        if needs[1] or wants_factors:
            grad_delta = g.T @ x.reshape(-1, x.shape[-1]).to(dtype)  # (d_out, d_in)
            if needs[1]:
                grad_w = (grad_delta.T if ctx.transposed else grad_delta).to(weight.dtype)
            if wants_factors:
                grad_factors = _factor_grads(grad_delta, factors, needs[4:])
        if ctx.has_bias and needs[2]:
            grad_b = g.sum(dim=0)
        return grad_x, grad_w, grad_b, None, *grad_factors


def _factor_grads(
    grad_delta: torch.Tensor, factors: list[torch.Tensor], needs: tuple[bool, ...]
) -> list[torch.Tensor | None]:
    """``(dB_1, dA_1, ...)`` from ``dDelta`` split by the parts' output rows."""
    out: list[torch.Tensor | None] = []
    start = 0
    for i in range(0, len(factors), 2):
        B, A = factors[i], factors[i + 1]
        part = grad_delta[start : start + B.shape[0]].to(B.dtype)
        start += B.shape[0]
        out.append(part @ A.T if needs[i] else None)
        out.append(B.T @ part if needs[i + 1] else None)
    return out


def merged_linear(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    factors: tuple[torch.Tensor, ...],
    *,
    transposed: bool = False,
) -> torch.Tensor:
    """``x @ (W + Delta)^T + bias`` (``Conv1D`` layout with ``transposed``), ``Delta`` from
    ``factors = (B_1, A_1, ...)``; see :mod:`tcur.adapters.merged_linear`.

    Examples
    --------
    >>> import torch
    >>> from tcur.adapters.merged_linear import merged_linear
    >>> W, B, A = torch.randn(4, 3), torch.randn(4, 2), torch.randn(2, 3)
    >>> x = torch.randn(5, 3)
    >>> torch.allclose(merged_linear(x, W, None, (B, A)), x @ (W + B @ A).T, atol=1e-6)
    True
    """
    out: torch.Tensor = _MergedLinear.apply(x, weight, bias, transposed, *factors)
    return out
