"""Adapter modules: :class:`TCURGroup` (a shared t-CUR update), :class:`TCURLayer` (the wrapper).

A :class:`TCURGroup` holds the frozen buffers ``C: (d_out, n_cols, n3)`` and
``R: (n_rows, d_in, n3)`` and the trainable ``dU: (n_cols, n_rows, n3)`` (zero at the start).
CURLoRA is the case ``n3 = 1``. A :class:`TCURLayer` replaces an ``nn.Linear`` or ``Conv1D``, keeps
it as ``base_layer`` and adds the update of one or more ``(group, slice)`` parts (several parts when
a fused projection was split; they are stacked along the output).

Ownership: every group of a model is registered once, in a :class:`TCURGroups` container on the
model's root (attribute ``tcur_groups``; ``state_dict`` keys ``tcur_groups.<i>.dU``/``C``/``R``),
so ``state_dict``, ``.to()``, ``deepcopy``, DDP and FSDP2 see each tensor once and no parameter
belongs to a block. A layer keeps plain (unregistered) references to its groups in ``parts``;
FSDP2's per-block sharding (``fully_shard`` each block, then the root) therefore never splits a
group across units: the root unit gathers the groups for the whole forward and backward pass.

Precision: the update is computed in float32 when the weights are float16/bfloat16
(:func:`tcur.adapters.forward.compute_dtype`) and cast back to the layer's dtype at the end.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from tcur.adapters.forward import (
    GroupDims,
    choose_strategy,
    compute_dtype,
    factored_apply,
    factored_operands,
    full_delta,
)
from tcur.adapters.targets import is_conv1d


@dataclass
class PassCounter:
    """Forward passes of the adapted model so far (a forward pre-hook on the model bumps it)."""

    value: int = 0


@dataclass
class _PassCache:
    key: tuple[object, ...]
    value: Any
    used: set[int] = field(default_factory=set)


class TCURGroup(nn.Module):
    """One t-CUR adapter shared by the ``n3`` weight slices of a group.

    Parameters
    ----------
    C : torch.Tensor of shape (d_out, n_cols, n3)
        Frozen selected columns of the stacked weights.
    R : torch.Tensor of shape (n_rows, d_in, n3)
        Frozen selected rows.
    rows, cols : sequence of int
        The selected indices (kept for saving).
    members : sequence of str
        Labels of the slices, in tube order.
    scale : float
        Multiplier ``s`` of the update ``s * C * dU * R``.
    key : str
        The group's name (its ``group_by`` key).
    """

    C: torch.Tensor
    R: torch.Tensor

    def __init__(
        self,
        C: torch.Tensor,
        R: torch.Tensor,
        rows: list[int],
        cols: list[int],
        members: list[str],
        scale: float,
        *,
        key: str,
    ) -> None:
        super().__init__()
        self.register_buffer("C", C)
        self.register_buffer("R", R)
        self.dU = nn.Parameter(C.new_zeros(C.shape[1], R.shape[0], C.shape[2]))
        self.rows, self.cols, self.members = list(rows), list(cols), list(members)
        self.scale = float(scale)
        self.key = key
        self._caches: dict[str, _PassCache] = {}
        self.passes = PassCounter()

    @property
    def dims(self) -> GroupDims:
        """Sizes for the cost model."""
        d_out, n_cols, n3 = self.C.shape
        return GroupDims(d_out, self.R.shape[1], n_cols, self.R.shape[0], n3)

    def extra_repr(self) -> str:
        d = self.dims
        return (
            f"key={self.key!r}, slice=({d.d_out}, {d.d_in}), n_cols={d.n_cols}, "
            f"n_rows={d.n_rows}, n3={d.n3}"
        )

    def _factors(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        dtype = compute_dtype(self.dU.dtype)
        return self.C.to(dtype), self.dU.to(dtype), self.R.to(dtype)

    def full_delta(self) -> torch.Tensor:
        """The whole update ``s * C * dU * R`` of shape ``(d_out, d_in, n3)`` (computed fresh)."""
        return full_delta(*self._factors(), self.scale)

    def __getstate__(self) -> dict[str, Any]:
        """Copies and pickles never carry the per-pass cache (it may hold autograd graphs)."""
        state = self.__dict__.copy()
        state["_caches"] = {}
        return state

    def _per_pass(self, kind: str, k: int, build: Callable[[], Any]) -> Any:
        """``build()`` once per forward pass for the whole group, then shared by its layers.

        The value is rebuilt when a new forward pass of the model started (``passes``, shared
        with the model's pre-hook), when ``dU`` changed, when dtype, device or grad mode differ,
        or when slice ``k`` already used it (a layer called on its own twice: never reuse an
        autograd graph that a backward pass may have freed).
        """
        key = (
            self.passes.value,
            torch.is_grad_enabled(),
            self.dU._version,
            self.dU.dtype,
            self.dU.device,
        )
        cache = self._caches.get(kind)
        if cache is None or cache.key != key or k in cache.used:
            cache = _PassCache(key, build())
            self._caches[kind] = cache
        cache.used.add(k)
        return cache.value

    def delta_slice(self, k: int) -> torch.Tensor:
        """Slice ``k`` of the update, materialized once per forward pass for the whole group."""
        delta: torch.Tensor = self._per_pass("delta", k, self.full_delta)
        return delta[:, :, k]

    def update(self, x: torch.Tensor, k: int) -> torch.Tensor:
        """``x @ Delta_k^T`` in the factored form (compute dtype); ``(A, G)`` shared per pass."""
        A, G = self._per_pass(
            "factored", k, lambda: factored_operands(*self._factors(), self.scale)
        )
        return factored_apply(x.to(G.dtype), A, G, k)


class TCURGroups(nn.ModuleDict):
    """The adapter groups of one model, keyed ``"0"``, ``"1"``, ... in build (and save) order.

    Registered on the root model by :func:`tcur.adapters.apply`. Its ``forward`` returns its
    input unchanged, so that a container root such as ``nn.Sequential`` (which calls every child
    in turn) computes what it did before.
    """

    def forward(self, x: Any) -> Any:
        """``x`` itself (a pass-through; see the class docstring)."""
        return x


class TCURLayer(nn.Module):
    """A wrapped ``nn.Linear``/``Conv1D``: ``base_layer(x)`` plus the t-CUR update of its parts.

    Parameters
    ----------
    base_layer : nn.Module
        The frozen original layer.
    dropout : float
        Dropout probability on the adapter input.
    strategy : {"auto", "factored", "materialized"}
        Forward strategy (:mod:`tcur.adapters.forward`).
    """

    def __init__(self, base_layer: nn.Module, dropout: float, strategy: str) -> None:
        super().__init__()
        self.base_layer = base_layer
        self.adapter_dropout: nn.Module = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.strategy = strategy
        self.merged = False
        self.parts: list[tuple[TCURGroup, int]] = []

    def add_part(self, group: TCURGroup, k: int) -> None:
        """Append the next output part: slice ``k`` of ``group`` (a reference, not a submodule)."""
        self.parts.append((group, k))

    def extra_repr(self) -> str:
        slices = ", ".join(f"{g.members[k]}" for g, k in self.parts)
        return f"strategy={self.strategy!r}, merged={self.merged}, slices=[{slices}]"

    def resolve_strategy(self, x: torch.Tensor) -> str:
        """The strategy for input ``x``: the configured one, or the cost model's choice."""
        if self.strategy != "auto":
            return self.strategy
        tokens = x.numel() // max(x.shape[-1], 1)
        grad = torch.is_grad_enabled() and any(g.dU.requires_grad for g, _ in self.parts)
        dropout = self.training and isinstance(self.adapter_dropout, nn.Dropout)
        return choose_strategy([g.dims for g, _ in self.parts], tokens, grad, dropout)

    def delta(self, *, fresh: bool = False) -> torch.Tensor:
        """The ``(out, in)`` update of this layer (compute dtype); ``fresh`` bypasses the cache."""
        pieces = [g.full_delta()[:, :, k] if fresh else g.delta_slice(k) for g, k in self.parts]
        return pieces[0] if len(pieces) == 1 else torch.cat(pieces, dim=0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.merged:
            return self.base_layer(x)
        strategy = self.resolve_strategy(x)
        dropout = self.training and isinstance(self.adapter_dropout, nn.Dropout)
        if strategy == "materialized" and not dropout:
            return self._run_base(x, self._weight_plus(self.delta(), sign=1.0))
        out = self.base_layer(x)
        h = self.adapter_dropout(x)
        if strategy == "materialized":
            delta = self.delta()
            update = F.linear(h.to(delta.dtype), delta)
        else:
            pieces = [g.update(h, k) for g, k in self.parts]
            update = pieces[0] if len(pieces) == 1 else torch.cat(pieces, dim=-1)
        return out + update.to(out.dtype)

    def _weight_plus(self, delta: torch.Tensor, sign: float) -> torch.Tensor:
        """Base weight (native layout) plus ``sign * delta``, summed in the compute dtype."""
        weight = _tensor(self.base_layer, "weight")
        native = delta.T if is_conv1d(self.base_layer) else delta
        total = weight.to(delta.dtype) + sign * native
        return total.to(weight.dtype).contiguous()

    def _run_base(self, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        """The base layer's own computation with ``weight`` (native layout) in place of its own."""
        bias = _optional_tensor(self.base_layer, "bias")
        if not is_conv1d(self.base_layer):
            return F.linear(x, weight, bias)
        flat = x.reshape(-1, x.shape[-1])
        out = torch.addmm(bias, flat, weight) if bias is not None else flat @ weight
        return out.view(*x.shape[:-1], weight.shape[1])

    @torch.no_grad()
    def apply_delta(self, delta: torch.Tensor, sign: float) -> None:
        """Add ``sign * delta`` (``(out, in)``) into the base weight in place (merge/unmerge)."""
        _tensor(self.base_layer, "weight").copy_(self._weight_plus(delta, sign))


def _optional_tensor(module: nn.Module, name: str) -> torch.Tensor | None:
    value = getattr(module, name, None)
    return value if isinstance(value, torch.Tensor) else None


def _tensor(module: nn.Module, name: str) -> torch.Tensor:
    value = _optional_tensor(module, name)
    if value is None:
        raise TypeError(f"{type(module).__name__} has no tensor attribute {name!r}")
    return value
