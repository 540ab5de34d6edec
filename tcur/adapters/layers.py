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

Precision: in a float16/bfloat16 model ``dU`` is float32 (``autocast_adapter_dtype=True``, the
default of both configs; ``C``/``R`` keep the weights' dtype). The update is computed in float32
(:func:`tcur.adapters.forward.compute_dtype`) on every call and rounded to the layer's dtype only
when it is added: the factored sum ``base(x) + update`` is rounded once, the materialized weight
``W_k + Delta_k`` is summed in float32 and rounded once.

Per-pass cache: a forward pass builds a group's small operands ``A`` and ``G`` once (both
strategies) and each layer forms only what it needs from them (its factored update, or its own
``(d_out, d_in)`` slice of the update); a full ``(d_out, d_in, n3)`` update is never held. The
materialized strategy without dropout runs through
:func:`tcur.adapters.merged_linear.merged_linear`, so no layer's merged weight is kept from the
forward pass to the backward pass either.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from tcur.adapters.fingerprint import combined_digest
from tcur.adapters.forward import (
    GroupDims,
    choose_strategy,
    compute_dtype,
    delta_from_operands,
    factored_apply,
    factored_operands,
    full_delta,
    shifted_left,
)
from tcur.adapters.merged_linear import merged_linear
from tcur.adapters.targets import is_conv1d

IDENTITY_BUFFERS = ("index_rows", "index_cols", "scale_bits", "config_sha256", "weights_sha256")
"""The buffers of a :class:`TCURGroup` that ``load_state_dict`` compares instead of copying."""


@dataclass
class PassCounter:
    """Forward passes of the adapted model so far (a forward pre-hook on the model calls start).

    ``shared`` says whether a group's operands may be built once per pass and shared by its
    layers. Under activation (gradient) checkpointing they may not: a checkpointed block is run
    again in the backward pass and must then record exactly what it recorded the first time, so
    every layer builds its own operands (a little more work per layer, same values).
    """

    value: int = 0
    shared: bool = True

    def start(self, model: nn.Module) -> None:
        """A new forward pass of ``model`` begins.

        Sharing is off while ``model`` trains with a module whose ``gradient_checkpointing``
        attribute is ``True`` (transformers' convention, set by
        ``gradient_checkpointing_enable()``; set it on a block checkpointed by hand, too).
        """
        self.value += 1
        self.shared = not (
            model.training
            and any(getattr(m, "gradient_checkpointing", False) is True for m in model.modules())
        )


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
    digests : sequence of bytes
        SHA-256 of each member's base weight (:func:`tcur.adapters.fingerprint.weight_digest`).
    config_sha256 : bytes
        :func:`tcur.adapters.fingerprint.config_digest` of the config.
    dtype : torch.dtype, optional
        Dtype of ``dU`` (default ``C``'s; ``apply`` passes float32 for half-precision weights).

    Notes
    -----
    What defines the adapter is kept in buffers, so it travels with ``state_dict``:
    ``index_rows``/``index_cols`` (int64), ``scale_bits`` (the float64 bits of ``scale``, as
    int64, so that ``.half()`` cannot round it), ``config_sha256`` and ``weights_sha256``
    (the digest of all members' base weights), both uint8. ``load_state_dict`` refuses a
    ``state_dict`` whose values differ from this group's (another base model, other indices,
    another scale or config), with a ``ValueError`` naming the group and the entry, before it
    copies anything (a pre-hook on the adapted model, :func:`check_identity`).
    """

    C: torch.Tensor
    R: torch.Tensor
    index_rows: torch.Tensor
    index_cols: torch.Tensor
    scale_bits: torch.Tensor
    config_sha256: torch.Tensor
    weights_sha256: torch.Tensor

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
        digests: Sequence[bytes] = (),
        config_sha256: bytes = b"",
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        self.register_buffer("C", C)
        self.register_buffer("R", R)
        shape = (C.shape[1], R.shape[0], C.shape[2])
        self.dU = nn.Parameter(C.new_zeros(shape, dtype=dtype or C.dtype))
        self.members = list(members)
        self.scale = float(scale)
        self.key = key
        self.member_digests = list(digests)
        identity = {
            "index_rows": torch.tensor(list(rows), dtype=torch.int64),
            "index_cols": torch.tensor(list(cols), dtype=torch.int64),
            "scale_bits": torch.tensor(self.scale, dtype=torch.float64).view(torch.int64),
            "config_sha256": _bytes_tensor(config_sha256),
            "weights_sha256": _bytes_tensor(combined_digest(self.member_digests)),
        }
        for name, value in identity.items():
            self.register_buffer(name, value.to(C.device))
        self._caches: dict[str, _PassCache] = {}
        self.passes = PassCounter()

    @property
    def rows(self) -> list[int]:
        """The selected rows (``R = W[rows, :, :]``)."""
        return [int(i) for i in self.index_rows.tolist()]

    @property
    def cols(self) -> list[int]:
        """The selected columns (``C = W[:, cols, :]``)."""
        return [int(i) for i in self.index_cols.tolist()]

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
        dtype = compute_dtype(torch.promote_types(self.C.dtype, self.dU.dtype))
        return self.C.to(dtype), self.dU.to(dtype), self.R.to(dtype)

    def _operands(self) -> tuple[torch.Tensor, torch.Tensor]:
        return factored_operands(*self._factors(), self.scale)

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
        if not self.passes.shared:
            return build()
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

    def delta_slice(self, k: int, *, fresh: bool = False) -> torch.Tensor:
        """Slice ``k`` of the update, ``B_k @ A`` (``(d_out, d_in)``, compute dtype).

        ``(A, G)`` are built once per forward pass for the whole group (``fresh``: built now, not
        cached); only this slice is formed, so no ``(d_out, d_in, n3)`` tensor is ever held.
        """
        A, G = self._operands() if fresh else self._per_pass("operands", k, self._operands)
        return delta_from_operands(A, G, k)

    def slice_factors(self, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``(B_k, A)`` with ``Delta_k = B_k @ A`` (compute dtype); ``(A, G)`` shared per pass."""
        A, G = self._per_pass("operands", k, self._operands)
        return shifted_left(G, k), A

    def update(self, x: torch.Tensor, k: int) -> torch.Tensor:
        """``x @ Delta_k^T`` in the factored form (compute dtype); ``(A, G)`` shared per pass."""
        A, G = self._per_pass("operands", k, self._operands)
        return factored_apply(x.to(G.dtype), A, G, k)


def _bytes_tensor(data: bytes) -> torch.Tensor:
    return torch.tensor(list(data), dtype=torch.uint8)


def check_identity(module: nn.Module, state_dict: Mapping[str, Any], prefix: str) -> None:
    """``ValueError`` if ``state_dict`` (keys under ``prefix``) defines ``module`` differently.

    ``module`` is a :class:`TCURGroup`; the adapted model's ``load_state_dict`` pre-hook calls
    this for every group before anything is copied.
    """
    for name in IDENTITY_BUFFERS:
        incoming = state_dict.get(prefix + name)
        if incoming is None:
            continue
        own = getattr(module, name)
        same = tuple(incoming.shape) == tuple(own.shape) and torch.equal(
            incoming.to(own.device, own.dtype), own
        )
        if not same:
            raise ValueError(
                f"load_state_dict: entry {prefix + name!r} differs from this model's adapter "
                f"group {getattr(module, 'key', '?')!r}: the state_dict comes from an adapter "
                "built on other base weights, rows/columns, scale or config"
            )


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
        pieces = [g.delta_slice(k, fresh=fresh) for g, k in self.parts]
        return pieces[0] if len(pieces) == 1 else torch.cat(pieces, dim=0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.merged:
            return self.base_layer(x)
        strategy = self.resolve_strategy(x)
        dropout = self.training and isinstance(self.adapter_dropout, nn.Dropout)
        if strategy == "materialized" and not dropout:  # no merged weight kept for backward
            factors = tuple(t for g, k in self.parts for t in g.slice_factors(k))
            weight = _tensor(self.base_layer, "weight")
            bias = _optional_tensor(self.base_layer, "bias")
            return merged_linear(x, weight, bias, factors, transposed=is_conv1d(self.base_layer))
        out = self.base_layer(x)
        h = self.adapter_dropout(x)
        if strategy == "materialized":
            delta = self.delta()
            update = F.linear(h.to(delta.dtype), delta)
        else:
            pieces = [g.update(h, k) for g, k in self.parts]
            update = pieces[0] if len(pieces) == 1 else torch.cat(pieces, dim=-1)
        if update.dtype == out.dtype:
            return out + update
        return (out.to(update.dtype) + update).to(out.dtype)  # one rounding of the sum

    def _weight_plus(self, delta: torch.Tensor, sign: float) -> torch.Tensor:
        """Base weight (native layout) plus ``sign * delta``, summed in the compute dtype."""
        weight = _tensor(self.base_layer, "weight")
        native = delta.T if is_conv1d(self.base_layer) else delta
        total = torch.add(weight.to(delta.dtype), native, alpha=sign)
        return total.to(weight.dtype).contiguous()

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
