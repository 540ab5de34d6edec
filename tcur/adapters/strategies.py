"""The forward strategies as objects: how one layer adds its update, and what that costs.

PEFT's ``LoraVariant`` habit: each strategy is a stateless object with its cost (the cost model
of :mod:`tcur.adapters.forward`) and its forward. Both hosts' layers (the native
:class:`~tcur.adapters.layers.TCURLayer` and PEFT's :class:`~tcur.adapters.peft.TCURPeftLayer`)
resolve a strategy per call (:func:`resolve_strategy`) and run it; they keep only their own
bookkeeping.

- :data:`FACTORED`: ``base(x) + (x @ A^T) @ B_k^T``; never forms a ``d_out x d_in`` matrix.
- :data:`MATERIALIZED`: the base layer run with ``W_k + Delta_k`` through
  :func:`~tcur.adapters.merged_linear.merged_linear`, which keeps no merged weight for the backward
  pass; with active dropout the base layer sees ``x`` and ``x_dropped @ Delta_k^T`` is added.

``"auto"`` picks the cheaper of the two for the call's shapes, token count, gradient mode and
dropout (:func:`cheapest`). Every strategy rounds the sum to the base output's dtype once.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import ClassVar

import torch
from torch import nn
from torch.nn import functional as F

from tcur.adapters.forward import GroupDims, factored_cost, materialized_cost
from tcur.adapters.groups import Parts, parts_delta, parts_factors, parts_update
from tcur.adapters.merged_linear import merged_linear
from tcur.adapters.targets import optional_tensor, site_tensor, site_transposed

__all__ = [
    "FACTORED",
    "MATERIALIZED",
    "STRATEGIES",
    "Factored",
    "Materialized",
    "Strategy",
    "cheapest",
    "choose_strategy",
    "resolve_strategy",
]


def dropout_active(dropout: nn.Module, training: bool) -> bool:
    """Whether ``dropout`` (an adapter's ``nn.Dropout`` or ``nn.Identity``) drops in this call."""
    return training and isinstance(dropout, nn.Dropout)


class Strategy(ABC):
    """How a ``Linear``/``Conv1D`` layer adds the update of its parts.

    Stateless: one instance per strategy (:data:`STRATEGIES`), shared by every layer.
    """

    name: ClassVar[str]

    @abstractmethod
    def cost(self, dims: GroupDims, tokens: int, grad: bool, dropout: bool) -> float:
        """Multiply-adds of one layer call (:mod:`tcur.adapters.forward`)."""

    @abstractmethod
    def update(self, parts: Parts, h: torch.Tensor) -> torch.Tensor:
        """``h @ Delta^T`` alone (compute dtype), ``h`` the adapter's (dropped-out) input."""

    def forward(
        self,
        base_layer: nn.Module,
        parts: Parts,
        x: torch.Tensor,
        dropout: nn.Module,
        training: bool,
    ) -> torch.Tensor:
        """``base_layer(x) + dropout(x) @ Delta^T``, the sum rounded once to the base's dtype."""
        out = base_layer(x)
        return add_rounded(out, self.update(parts, dropout(x)))

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class Factored(Strategy):
    """``(x @ A^T) @ B_k^T``: a LoRA of rank ``n3 * rank`` per token; no weight-sized tensor."""

    name = "factored"

    def cost(self, dims: GroupDims, tokens: int, grad: bool, dropout: bool) -> float:
        """:func:`~tcur.adapters.forward.factored_cost` (dropout does not change it)."""
        return factored_cost(dims, tokens, grad)

    def update(self, parts: Parts, h: torch.Tensor) -> torch.Tensor:
        """:func:`~tcur.adapters.groups.parts_update`."""
        return parts_update(parts, h)


class Materialized(Strategy):
    """``W_k + Delta_k`` formed per call (:func:`~tcur.adapters.merged_linear.merged_linear`)."""

    name = "materialized"

    def cost(self, dims: GroupDims, tokens: int, grad: bool, dropout: bool) -> float:
        """:func:`~tcur.adapters.forward.materialized_cost`."""
        return materialized_cost(dims, tokens, grad, dropout)

    def update(self, parts: Parts, h: torch.Tensor) -> torch.Tensor:
        """``h @ Delta^T`` with ``Delta`` formed (:func:`~tcur.adapters.groups.parts_delta`)."""
        delta = parts_delta(parts)
        return F.linear(h.to(delta.dtype), delta)

    def forward(
        self,
        base_layer: nn.Module,
        parts: Parts,
        x: torch.Tensor,
        dropout: nn.Module,
        training: bool,
    ) -> torch.Tensor:
        """The base layer with ``W + Delta``, or base plus update when dropout is active."""
        if dropout_active(dropout, training):
            return super().forward(base_layer, parts, x, dropout, training)
        weight = site_tensor(base_layer, "weight")
        bias = optional_tensor(base_layer, "bias")
        factors = parts_factors(parts)
        transposed = site_transposed(base_layer, "weight")
        return merged_linear(x, weight, bias, factors, transposed=transposed)


FACTORED = Factored()
MATERIALIZED = Materialized()
STRATEGIES: dict[str, Strategy] = {s.name: s for s in (FACTORED, MATERIALIZED)}
"""Every strategy by name; on equal costs ``"auto"`` takes the first (factored)."""


def cheapest(dims: Sequence[GroupDims], tokens: int, grad: bool, dropout: bool) -> Strategy:
    """The strategy with the lowest summed cost over ``dims`` (a layer's groups).

    ``dims`` lists the groups whose slices one layer uses (several for a split fused layer).
    """
    best: Strategy = FACTORED
    best_cost = float("inf")
    for strategy in STRATEGIES.values():  # a loop, not min(key=...): torch.compile traces it
        cost = sum(strategy.cost(d, tokens, grad, dropout) for d in dims)
        if cost < best_cost:
            best, best_cost = strategy, cost
    return best


def choose_strategy(dims: Sequence[GroupDims], tokens: int, grad: bool, dropout: bool) -> str:
    """The name of :func:`cheapest`: ``"factored"`` or ``"materialized"``.

    Examples
    --------
    >>> from tcur.adapters.forward import GroupDims
    >>> from tcur.adapters.strategies import choose_strategy
    >>> dims = [GroupDims(d_out=384, d_in=384, n_cols=16, n_rows=16, n3=6)]
    >>> choose_strategy(dims, tokens=16, grad=False, dropout=False)
    'factored'
    >>> choose_strategy(dims, tokens=4096, grad=False, dropout=False)
    'materialized'
    """
    return cheapest(dims, tokens, grad, dropout).name


def resolve_strategy(
    strategy: str, parts: Parts, x: torch.Tensor, training: bool, dropout: nn.Module
) -> Strategy:
    """The strategy of one layer call: the configured one, or for ``"auto"`` the cheapest.

    ``"auto"`` prices the call's token count (``x``'s elements over its last axis), whether
    gradients are being recorded for a ``dU`` and whether ``dropout`` is active.

    Examples
    --------
    >>> import torch
    >>> from tcur.adapters.strategies import resolve_strategy
    >>> resolve_strategy("materialized", [], torch.zeros(2, 3), False, torch.nn.Identity())
    Materialized()
    """
    if strategy != "auto":
        chosen = STRATEGIES.get(strategy)
        if chosen is None:
            raise ValueError(
                f"forward strategy {strategy!r} is not one of 'auto', {sorted(STRATEGIES)}"
            )
        return chosen
    tokens = x.numel() // max(x.shape[-1], 1)
    grad = torch.is_grad_enabled() and any(g.dU.requires_grad for g, _ in parts)
    return cheapest([g.dims for g, _ in parts], tokens, grad, dropout_active(dropout, training))


def add_rounded(out: torch.Tensor, update: torch.Tensor) -> torch.Tensor:
    """``out + update`` in the wider dtype, rounded once to ``out``'s dtype."""
    if update.dtype == out.dtype:
        return out + update
    return (out.to(update.dtype) + update).to(out.dtype)
