"""Adapter modules: :class:`TCURGroup` (a shared t-CUR update), :class:`TCURLayer` (the wrapper).

A :class:`TCURGroup` holds the frozen buffers ``C: (d_out, n_cols, n3)`` and
``R: (n_rows, d_in, n3)`` and the trainable ``dU: (n_cols, n_rows, n3)`` (zero at the start).
CURLoRA is the case ``n3 = 1``. A :class:`TCURLayer` replaces an ``nn.Linear`` or ``Conv1D``, keeps
it as ``base_layer`` and adds the update of one or more ``(group, slice)`` parts (several parts when
a fused projection was split; they are stacked along the output). A :class:`TCURAttention`
replaces an ``nn.MultiheadAttention``, whose forward reads its weights itself: it runs that
forward with ``W + Delta`` substituted for each adapted weight (:func:`substituted_forward`).
Both derive from :class:`AdapterLayer` (``sites``: weight path -> parts; merge and unmerge).
``nn.TransformerEncoderLayer``'s fused inference path, which reads ``linear1.weight`` and the
attention weights directly, is kept off layers that hold adapters (:func:`guard_fast_paths`).
The PEFT layers (:mod:`tcur.adapters.peft`) run the same forward functions
(:func:`linear_forward`, :func:`substituted_forward`).

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

from tcur.adapters.fingerprint import (
    code_dtype,
    combined_digest,
    comparison_rounding,
    dtype_code,
    incomparable,
)
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
from tcur.adapters.merged_linear import add_update, merged_linear, merged_weight
from tcur.adapters.targets import is_conv1d

IDENTITY_BUFFERS = (
    "index_rows",
    "index_cols",
    "scale_bits",
    "config_sha256",
    "weights_sha256",
    "weights_sha256_f16",
    "weights_dtype",
)
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
        Inside ``torch.compile`` nothing is counted (:meth:`TCURGroup._per_pass` does not share
        there), so the compiled graph does not depend on, and is not recompiled for, the count.
        """
        if torch.compiler.is_compiling():
            return
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
    digests, digests_f16 : sequence of bytes
        SHA-256 of each member's base weight rounded to bfloat16 / float16
        (:func:`tcur.adapters.fingerprint.weight_digest`).
    weights_dtype : torch.dtype, optional
        Dtype of the base weights the digests were taken of (default ``C``'s).
    config_sha256 : bytes
        :func:`tcur.adapters.fingerprint.config_digest` of the config.
    dtype : torch.dtype, optional
        Dtype of ``dU`` (default ``C``'s; ``apply`` passes float32 for half-precision weights).

    Notes
    -----
    What defines the adapter is kept in buffers, so it travels with ``state_dict``:
    ``index_rows``/``index_cols`` (int64), ``scale_bits`` (the float64 bits of ``scale``, as
    int64, so that ``.half()`` cannot round it), ``config_sha256``, ``weights_sha256`` and
    ``weights_sha256_f16`` (the digests of all members' base weights), all uint8, and
    ``weights_dtype`` (their dtype, :data:`~tcur.adapters.fingerprint.DTYPE_CODES`). The weights
    are compared after rounding to the lower precision of the two sides
    (:func:`~tcur.adapters.fingerprint.comparison_rounding`). ``load_state_dict`` refuses a
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
    weights_sha256_f16: torch.Tensor
    weights_dtype: torch.Tensor

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
        digests_f16: Sequence[bytes] = (),
        config_sha256: bytes = b"",
        dtype: torch.dtype | None = None,
        weights_dtype: torch.dtype | None = None,
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
        self.member_digests_f16 = list(digests_f16)
        identity = {
            "index_rows": torch.tensor(list(rows), dtype=torch.int64),
            "index_cols": torch.tensor(list(cols), dtype=torch.int64),
            "scale_bits": torch.tensor(self.scale, dtype=torch.float64).view(torch.int64),
            "config_sha256": _bytes_tensor(config_sha256),
            "weights_sha256": _bytes_tensor(combined_digest(self.member_digests)),
            "weights_sha256_f16": _bytes_tensor(combined_digest(self.member_digests_f16)),
            "weights_dtype": torch.tensor(
                [dtype_code(weights_dtype or C.dtype)], dtype=torch.uint8
            ),
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

        Under ``torch.compile`` every call builds its own value: a cache keyed by a Python pass
        count would make the compiled code guard on that count and recompile on every pass
        (the compiler may still merge the repeated work; the values are the same).
        """
        if torch.compiler.is_compiling() or not self.passes.shared:
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


_IDENTITY_MEANING = {
    "index_rows": "other selected rows",
    "index_cols": "other selected columns",
    "scale_bits": "another scale",
    "config_sha256": "another config (a field other than forward, dropout, "
    "autocast_adapter_dtype and exact_unmerge differs)",
}


def check_identity(module: nn.Module, state_dict: dict[str, Any], prefix: str) -> None:
    """``ValueError`` if ``state_dict`` (keys under ``prefix``) defines ``module`` differently.

    ``module`` is a :class:`TCURGroup`; the adapted model's ``load_state_dict`` pre-hook calls
    this for every group before anything is copied. The message names the entry and what it
    means (other rows, columns, scale, config or base weights). Base weights are compared after
    rounding both sides to the lower of their precisions
    (:func:`~tcur.adapters.fingerprint.comparison_rounding`); a float16 / bfloat16 pair that
    differs is reported as a dtype difference. An accepted ``state_dict`` leaves the group's own
    identity buffers in place (they describe this model's base weights).
    """
    if not isinstance(module, TCURGroup):
        raise TypeError(f"check_identity needs a TCURGroup, got {type(module).__name__}")
    group = f"adapter group {module.key!r}"
    for name, meaning in _IDENTITY_MEANING.items():
        incoming = state_dict.get(prefix + name)
        if incoming is not None and not _same(incoming, getattr(module, name)):
            raise ValueError(
                f"load_state_dict: entry {prefix + name!r} differs from this model's {group}: "
                f"the state_dict comes from an adapter built with {meaning}"
            )
    code = state_dict.get(prefix + "weights_dtype")
    saved = code_dtype(int(code.reshape(-1)[0])) if isinstance(code, torch.Tensor) else None
    own = code_dtype(int(module.weights_dtype.reshape(-1)[0]))
    rounding = comparison_rounding(saved, own)
    name = "weights_sha256_f16" if rounding == torch.float16 else "weights_sha256"
    incoming = state_dict.get(prefix + name)
    if incoming is not None and not _same(incoming, getattr(module, name)):
        if incomparable(saved, own):
            raise ValueError(
                f"load_state_dict: entry {prefix + name!r}: this model's {group} was built on "
                f"{own} weights and the state_dict's on {saved} weights, and neither dtype is a "
                "rounding of the other, so the base weights cannot be matched; load it into a "
                "float32 model (or one of the state_dict's dtype) instead"
            )
        rounded = f" (compared after rounding both to {rounding})" if saved != own else ""
        raise ValueError(
            f"load_state_dict: entry {prefix + name!r} differs from this model's {group}: "
            f"the state_dict comes from an adapter built on other base weights{rounded}"
        )
    for key in IDENTITY_BUFFERS:  # keep this model's own identity
        if prefix + key in state_dict:
            state_dict[prefix + key] = getattr(module, key).detach().clone()


def _same(incoming: Any, own: torch.Tensor) -> bool:
    return (
        isinstance(incoming, torch.Tensor)
        and tuple(incoming.shape) == tuple(own.shape)
        and torch.equal(incoming.to(own.device, own.dtype), own)
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


Parts = list[tuple[TCURGroup, int]]
"""The ``(group, slice)`` parts of one adapted weight, in output order."""


def parts_delta(parts: Parts, *, fresh: bool = False) -> torch.Tensor:
    """The ``(out, in)`` update of one weight from its parts (compute dtype)."""
    pieces = [g.delta_slice(k, fresh=fresh) for g, k in parts]
    return pieces[0] if len(pieces) == 1 else torch.cat(pieces, dim=0)


def parts_factors(parts: Parts) -> tuple[torch.Tensor, ...]:
    """``(B_1, A_1, B_2, A_2, ...)`` of one weight's parts (:mod:`tcur.adapters.merged_linear`)."""
    return tuple(t for g, k in parts for t in g.slice_factors(k))


def parts_update(parts: Parts, x: torch.Tensor) -> torch.Tensor:
    """``x @ Delta^T`` of one weight's parts in the factored form (compute dtype)."""
    pieces = [g.update(x, k) for g, k in parts]
    return pieces[0] if len(pieces) == 1 else torch.cat(pieces, dim=-1)


def site_tensor(module: nn.Module, site: str) -> torch.Tensor:
    """The tensor at path ``site`` under ``module`` (``"weight"``, ``"out_proj.weight"``)."""
    owner, attr = site_owner(module, site)
    return _tensor(owner, attr)


def site_owner(module: nn.Module, site: str) -> tuple[nn.Module, str]:
    """``(submodule, attribute)`` that holds the tensor at path ``site`` under ``module``."""
    prefix, _, attr = site.rpartition(".")
    return (module.get_submodule(prefix) if prefix else module), attr


def linear_strategy(
    strategy: str, parts: Parts, x: torch.Tensor, training: bool, dropout: nn.Module
) -> str:
    """The strategy of one layer call: the configured one, or the cost model's choice."""
    if strategy != "auto":
        return strategy
    tokens = x.numel() // max(x.shape[-1], 1)
    grad = torch.is_grad_enabled() and any(g.dU.requires_grad for g, _ in parts)
    active = training and isinstance(dropout, nn.Dropout)
    return choose_strategy([g.dims for g, _ in parts], tokens, grad, active)


def linear_forward(
    base_layer: nn.Module,
    parts: Parts,
    x: torch.Tensor,
    strategy: str,
    dropout: nn.Module,
    training: bool,
) -> torch.Tensor:
    """``base_layer(x)`` plus the update of ``parts``: the forward pass of both hosts' layers.

    ``strategy`` is resolved (``"factored"`` or ``"materialized"``). Materialized without
    active dropout runs through :func:`~tcur.adapters.merged_linear.merged_linear`, which keeps
    no merged weight for the backward pass; with dropout the base layer sees ``x`` and the
    update the dropped-out input. The sum is rounded once to the base output's dtype.
    """
    active_dropout = training and isinstance(dropout, nn.Dropout)
    if strategy == "materialized" and not active_dropout:
        weight = _tensor(base_layer, "weight")
        bias = _optional_tensor(base_layer, "bias")
        factors = parts_factors(parts)
        return merged_linear(x, weight, bias, factors, transposed=is_conv1d(base_layer))
    out = base_layer(x)
    h = dropout(x)
    if strategy == "materialized":
        delta = parts_delta(parts)
        update = F.linear(h.to(delta.dtype), delta)
    else:
        update = parts_update(parts, h)
    if update.dtype == out.dtype:
        return out + update
    return (out.to(update.dtype) + update).to(out.dtype)  # one rounding of the sum


def substituted_forward(
    base_layer: nn.Module, sites: Mapping[str, torch.Tensor], args: Any, kwargs: Any
) -> Any:
    """Run ``base_layer`` with the tensors at the paths of ``sites`` replaced (not mutated).

    The way an update reaches a module whose forward reads its weights itself
    (``nn.MultiheadAttention``; :mod:`tcur.adapters.targets`): ``sites`` maps a weight's path
    to ``W + Delta`` and :func:`torch.func.functional_call` runs the module's own forward with
    it, so gradients flow to the adapter and PyTorch's fused inference path (taken without
    gradients) uses the adapted weights too.
    """
    return torch.func.functional_call(base_layer, dict(sites), tuple(args), dict(kwargs))


class AttentionAttributes:
    """Read-only views of a wrapped ``nn.MultiheadAttention``'s settings.

    ``nn.TransformerEncoderLayer`` and ``nn.TransformerEncoder`` read these from their
    ``self_attn`` to decide on their fused inference path; the weights themselves are not
    exposed (reading them directly would bypass the adapter).
    """

    base_layer: nn.Module

    @property
    def _attention(self) -> nn.MultiheadAttention:
        base = self.base_layer
        if not isinstance(base, nn.MultiheadAttention):
            raise TypeError(f"base_layer is a {type(base).__name__}, not nn.MultiheadAttention")
        return base

    @property
    def embed_dim(self) -> int:
        """As ``nn.MultiheadAttention.embed_dim``."""
        return int(self._attention.embed_dim)

    @property
    def kdim(self) -> int:
        """As ``nn.MultiheadAttention.kdim``."""
        return int(self._attention.kdim)

    @property
    def vdim(self) -> int:
        """As ``nn.MultiheadAttention.vdim``."""
        return int(self._attention.vdim)

    @property
    def num_heads(self) -> int:
        """As ``nn.MultiheadAttention.num_heads``."""
        return int(self._attention.num_heads)

    @property
    def head_dim(self) -> int:
        """As ``nn.MultiheadAttention.head_dim``."""
        return int(self._attention.head_dim)

    @property
    def batch_first(self) -> bool:
        """As ``nn.MultiheadAttention.batch_first``."""
        return bool(self._attention.batch_first)

    @property
    def _qkv_same_embed_dim(self) -> bool:
        return bool(self._attention._qkv_same_embed_dim)

    @property
    def add_zero_attn(self) -> bool:
        """As ``nn.MultiheadAttention.add_zero_attn``."""
        return bool(self._attention.add_zero_attn)

    @property
    def in_proj_bias(self) -> torch.Tensor | None:
        """As ``nn.MultiheadAttention.in_proj_bias`` (biases are not adapted)."""
        return _optional_tensor(self.base_layer, "in_proj_bias")

    @property
    def bias_k(self) -> torch.Tensor | None:
        """As ``nn.MultiheadAttention.bias_k``."""
        return _optional_tensor(self.base_layer, "bias_k")

    @property
    def bias_v(self) -> torch.Tensor | None:
        """As ``nn.MultiheadAttention.bias_v``."""
        return _optional_tensor(self.base_layer, "bias_v")


class AdapterLayer(nn.Module):
    """Base of the native adapter modules: a base layer and the parts of each adapted weight.

    ``sites`` maps a weight's path under ``base_layer`` (``"weight"``, ``"in_proj_weight"``,
    ``"out_proj.weight"``) to its parts. Merging adds each update into its weight; by default a
    copy of every weight is kept while merged so that unmerging restores it bit for bit
    (:meth:`merge_updates`).
    """

    def __init__(self, base_layer: nn.Module) -> None:
        super().__init__()
        self.base_layer = base_layer
        self.sites: dict[str, Parts] = {}
        self.merged = False
        self._originals: dict[str, torch.Tensor] = {}

    def add_part(self, group: TCURGroup, k: int, site: str = "weight") -> None:
        """Add the next output part of weight ``site``: slice ``k`` of ``group`` (by reference)."""
        self.sites.setdefault(site, []).append((group, k))

    @property
    def parts(self) -> Parts:
        """The parts of the weight called ``weight`` (``[]`` if it is not adapted)."""
        return self.sites.get("weight", [])

    def extra_repr(self) -> str:
        sites = "; ".join(
            f"{site}: " + ", ".join(g.members[k] for g, k in parts)
            for site, parts in self.sites.items()
        )
        return f"merged={self.merged}, sites=[{sites}]"

    def site_transposed(self, site: str) -> bool:
        """True if the weight at ``site`` is stored ``(in, out)`` (``Conv1D``)."""
        return site == "weight" and is_conv1d(self.base_layer)

    def site_delta(self, site: str, *, fresh: bool = False) -> torch.Tensor:
        """The ``(out, in)`` update of the weight at ``site`` (compute dtype)."""
        return parts_delta(self.sites[site], fresh=fresh)

    def site_deltas(self) -> dict[str, torch.Tensor]:
        """Every adapted weight's update, computed fresh (merge)."""
        return {site: self.site_delta(site, fresh=True) for site in self.sites}

    @torch.no_grad()
    def merge_updates(self, deltas: Mapping[str, torch.Tensor], keep_original: bool) -> None:
        """Add ``deltas`` into the weights in place; keep copies of them if ``keep_original``.

        With the copies :meth:`unmerge_updates` puts back exactly the weights of merge time
        (memory: one copy of every adapted weight, held only while merged). Without them it
        subtracts the update again, which restores the weights within one rounding of their
        dtype.
        """
        for site, delta in deltas.items():
            weight = site_tensor(self.base_layer, site)
            if keep_original:
                self._originals[site] = weight.detach().clone()
            weight.copy_(add_update(weight, delta, self.site_transposed(site)))
        self.merged = True

    @torch.no_grad()
    def unmerge_updates(self) -> None:
        """Undo :meth:`merge_updates`: restore the kept copies, or subtract the updates."""
        for site in self.sites:
            weight = site_tensor(self.base_layer, site)
            original = self._originals.pop(site, None)
            if original is None:
                delta = self.site_delta(site, fresh=True)
                original = add_update(weight, delta, self.site_transposed(site), sign=-1.0)
            weight.copy_(original)
        self.merged = False


class TCURLayer(AdapterLayer):
    """A wrapped ``nn.Linear``/``Conv1D``: ``base_layer(x)`` plus the t-CUR update of its parts.

    Parameters
    ----------
    base_layer : nn.Module
        The frozen original layer.
    dropout : float
        Dropout probability on the adapter input.
    strategy : {"auto", "factored", "materialized"}
        Forward strategy (:mod:`tcur.adapters.forward`).

    Examples
    --------
    >>> import torch
    >>> from tcur.adapters import CURLoRAConfig, TCURLayer, apply
    >>> model = apply(torch.nn.Sequential(torch.nn.Linear(6, 4)), CURLoRAConfig(["0"], rank=2))
    >>> isinstance(model[0], TCURLayer), model[0].in_features, model[0].out_features
    (True, 6, 4)
    """

    def __init__(self, base_layer: nn.Module, dropout: float, strategy: str) -> None:
        super().__init__(base_layer)
        self.adapter_dropout: nn.Module = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.strategy = strategy

    @property
    def in_features(self) -> int:
        """Input size of the base layer (as ``nn.Linear.in_features``)."""
        weight = _tensor(self.base_layer, "weight")
        return int(weight.shape[0 if self.site_transposed("weight") else 1])

    @property
    def out_features(self) -> int:
        """Output size of the base layer (as ``nn.Linear.out_features``)."""
        weight = _tensor(self.base_layer, "weight")
        return int(weight.shape[1 if self.site_transposed("weight") else 0])

    def extra_repr(self) -> str:
        slices = ", ".join(f"{g.members[k]}" for g, k in self.parts)
        return f"strategy={self.strategy!r}, merged={self.merged}, slices=[{slices}]"

    def resolve_strategy(self, x: torch.Tensor) -> str:
        """The strategy for input ``x``: the configured one, or the cost model's choice."""
        return linear_strategy(self.strategy, self.parts, x, self.training, self.adapter_dropout)

    def delta(self, *, fresh: bool = False) -> torch.Tensor:
        """The ``(out, in)`` update of this layer (compute dtype); ``fresh`` bypasses the cache."""
        return parts_delta(self.parts, fresh=fresh)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.merged:
            return self.base_layer(x)
        strategy = self.resolve_strategy(x)
        return linear_forward(
            self.base_layer, self.parts, x, strategy, self.adapter_dropout, self.training
        )


class TCURAttention(AttentionAttributes, AdapterLayer):
    """A wrapped ``nn.MultiheadAttention`` running with ``W + Delta`` for each adapted weight.

    Called like the attention module (same arguments, same outputs). Each call forms the
    adapted weights (:func:`~tcur.adapters.merged_linear.merged_weight`) and runs the module's
    own ``forward`` with them (:func:`substituted_forward`); merged, it runs the base module.

    Parameters
    ----------
    base_layer : nn.MultiheadAttention
        The frozen original module.

    Examples
    --------
    >>> import torch
    >>> from tcur.adapters import TCURLoRAConfig, apply
    >>> class Net(torch.nn.Module):
    ...     def __init__(self):
    ...         super().__init__()
    ...         self.attn = torch.nn.MultiheadAttention(8, 2, batch_first=True)
    ...     def forward(self, x):
    ...         return self.attn(x, x, x, need_weights=False)[0]
    >>> net = apply(Net(), TCURLoRAConfig(["attn"], rank=2))
    >>> type(net.attn).__name__, list(net.attn.sites)
    ('TCURAttention', ['in_proj_weight', 'out_proj.weight'])
    """

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        if self.merged:
            return self.base_layer(*args, **kwargs)
        weights = {
            site: merged_weight(site_tensor(self.base_layer, site), parts_factors(parts), False)
            for site, parts in self.sites.items()
        }
        return substituted_forward(self.base_layer, weights, args, kwargs)


def _slow_path(module: nn.Module, args: Any) -> None:
    """Forward pre-hook that only exists to keep PyTorch off its fused encoder path."""


def guard_fast_paths(model: nn.Module, is_adapter: Callable[[nn.Module], bool]) -> list[Any]:
    """Keep PyTorch's fused transformer paths off the layers that hold adapters.

    In inference ``nn.TransformerEncoderLayer`` calls one fused kernel that reads
    ``linear1.weight``, ``self_attn.in_proj_weight``, ... directly, skipping any wrapper; it
    takes its ordinary path (which calls ``self.linear1`` etc.) whenever a forward (pre-)hook
    is attached to the layer or a submodule, so every encoder layer holding an adapter gets a
    no-op pre-hook. ``nn.TransformerEncoder`` can also turn padded inputs into nested tensors
    for that path, which the ordinary path of its layers does not take: its
    ``use_nested_tensor`` is switched off. Returns the handles to undo both
    (:func:`release_fast_paths`).
    """
    undo: list[Any] = []
    for module in model.modules():
        if not any(is_adapter(m) for m in module.modules()):
            continue
        if isinstance(module, nn.TransformerEncoderLayer):
            undo.append(module.register_forward_pre_hook(_slow_path))
        elif isinstance(module, nn.TransformerEncoder) and module.use_nested_tensor:
            module.use_nested_tensor = False
            undo.append(module)
    return undo


def release_fast_paths(undo: Sequence[Any]) -> None:
    """Undo :func:`guard_fast_paths`."""
    for item in undo:
        if isinstance(item, nn.TransformerEncoder):
            item.use_nested_tensor = True
        else:
            item.remove()


def _optional_tensor(module: nn.Module, name: str) -> torch.Tensor | None:
    value = getattr(module, name, None)
    return value if isinstance(value, torch.Tensor) else None


def _tensor(module: nn.Module, name: str) -> torch.Tensor:
    value = _optional_tensor(module, name)
    if value is None:
        raise TypeError(f"{type(module).__name__} has no tensor attribute {name!r}")
    return value
