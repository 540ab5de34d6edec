"""Adapter modules of the native host: :class:`TCURLayer` and :class:`TCURAttention`.

A :class:`TCURLayer` replaces an ``nn.Linear`` or ``Conv1D``, keeps it as ``base_layer`` and adds
the update of one or more ``(group, slice)`` parts (:data:`~tcur.adapters.groups.Parts`; several
parts when a fused projection was split, stacked along the output) with a forward strategy
(:mod:`tcur.adapters.strategies`). A :class:`TCURAttention` replaces an
``nn.MultiheadAttention``, whose forward reads its weights itself: it runs that forward with
``W + Delta`` substituted for each adapted weight (:func:`adapted_weights`,
:func:`substituted_forward`). Both derive from :class:`AdapterLayer` (``sites``: weight path ->
parts; merge and unmerge). ``nn.TransformerEncoderLayer``'s fused inference path, which reads
``linear1.weight`` and the attention weights directly, is kept off layers that hold adapters
(:func:`guard_fast_paths`).

What both hosts share lives here and in the modules it names, once: the strategies' forward
(:mod:`tcur.adapters.strategies`), the substituted weights (:func:`adapted_weights`), writing
``W +- Delta`` into a weight (:func:`add_into`), the layer sizes (:class:`LinearFeatures`) and
the attention module's settings (:class:`AttentionAttributes`). The PEFT layers
(:mod:`tcur.adapters.peft`) add only PEFT's per-adapter bookkeeping. The groups themselves, their
ownership and their per-pass cache are described in :mod:`tcur.adapters.groups`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from tcur.adapters.groups import Parts, TCURGroup, parts_delta
from tcur.adapters.merged_linear import add_update
from tcur.adapters.strategies import Strategy, resolve_strategy
from tcur.adapters.targets import (
    layer_strategy,
    merge_obstacle,
    optional_tensor,
    site_tensor,
    site_transposed,
)

Sites = dict[str, Parts]
"""``weight path under the host -> parts`` (``"weight"``, ``"in_proj_weight"``, ...)."""


def adapted_weights(
    base_layer: nn.Module, adapters: Sequence[Mapping[str, Parts]]
) -> dict[str, torch.Tensor]:
    """``W + Delta`` for every weight that one of ``adapters`` (each ``site -> parts``) adapts.

    Several adapters adapting one weight add the sum of their updates. The weights an attention
    host runs with (:func:`substituted_forward`); summed in the compute dtype and rounded once
    (:func:`~tcur.adapters.merged_linear.add_update`).
    """
    weights: dict[str, torch.Tensor] = {}
    for site in dict.fromkeys(site for sites in adapters for site in sites):
        deltas = [parts_delta(sites[site]) for sites in adapters if site in sites]
        total = deltas[0] if len(deltas) == 1 else torch.stack(deltas).sum(dim=0)
        weight = site_tensor(base_layer, site)
        weights[site] = add_update(weight, total, site_transposed(base_layer, site))
    return weights


@torch.no_grad()
def add_into(base_layer: nn.Module, site: str, delta: torch.Tensor, sign: float = 1.0) -> None:
    """Write ``W + sign * Delta`` into the weight at ``site`` in place (merge and unmerge)."""
    weight = site_tensor(base_layer, site)
    weight.copy_(add_update(weight, delta, site_transposed(base_layer, site), sign=sign))


def check_mergeable(base_layer: nn.Module, sites: Iterable[str], layer: str) -> None:
    """``ValueError`` naming ``layer`` if an update added into one of its weights at ``sites``
    would not give the adapted outputs (:func:`tcur.adapters.targets.merge_obstacle`); merging
    hosts call it before they change anything."""
    for site in sites:
        reason = merge_obstacle(base_layer, site)
        if reason is not None:
            where = layer if site == "weight" else f"{layer}.{site}"
            raise ValueError(f"refusing to merge adapted layer {where!r}: {reason}")


def weight_copies(base_layer: nn.Module, sites: Sequence[str]) -> dict[str, torch.Tensor]:
    """Copies of the weights at ``sites``, kept while merged so that unmerging is exact."""
    return {site: site_tensor(base_layer, site).detach().clone() for site in sites}


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


class LinearFeatures:
    """``in_features``/``out_features`` of a wrapped ``nn.Linear``/``Conv1D`` (both hosts)."""

    base_layer: nn.Module

    @property
    def in_features(self) -> int:
        """Input size of the base layer (as ``nn.Linear.in_features``)."""
        weight = site_tensor(self.base_layer, "weight")
        return int(weight.shape[0 if site_transposed(self.base_layer, "weight") else 1])

    @property
    def out_features(self) -> int:
        """Output size of the base layer (as ``nn.Linear.out_features``)."""
        weight = site_tensor(self.base_layer, "weight")
        return int(weight.shape[1 if site_transposed(self.base_layer, "weight") else 0])


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
        return optional_tensor(self.base_layer, "in_proj_bias")

    @property
    def bias_k(self) -> torch.Tensor | None:
        """As ``nn.MultiheadAttention.bias_k``."""
        return optional_tensor(self.base_layer, "bias_k")

    @property
    def bias_v(self) -> torch.Tensor | None:
        """As ``nn.MultiheadAttention.bias_v``."""
        return optional_tensor(self.base_layer, "bias_v")


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
        self.sites: Sites = {}
        self.merged = False
        self.disabled = False
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
        return site_transposed(self.base_layer, site)

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
        if keep_original:
            self._originals = weight_copies(self.base_layer, list(deltas))
        for site, delta in deltas.items():
            add_into(self.base_layer, site, delta)
        self.merged = True

    @torch.no_grad()
    def unmerge_updates(self) -> None:
        """Undo :meth:`merge_updates`: restore the kept copies, or subtract the updates."""
        for site in self.sites:
            original = self._originals.pop(site, None)
            if original is None:
                add_into(self.base_layer, site, self.site_delta(site, fresh=True), sign=-1.0)
            else:
                site_tensor(self.base_layer, site).copy_(original)
        self.merged = False


class TCURLayer(LinearFeatures, AdapterLayer):
    """A wrapped ``nn.Linear``/``Conv1D``: ``base_layer(x)`` plus the t-CUR update of its parts.

    Parameters
    ----------
    base_layer : nn.Module
        The frozen original layer.
    dropout : float
        Dropout probability on the adapter input.
    strategy : {"auto", "factored", "materialized"}
        Forward strategy (:mod:`tcur.adapters.strategies`).

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
        self.strategy = layer_strategy(base_layer, strategy)

    def extra_repr(self) -> str:
        slices = ", ".join(f"{g.members[k]}" for g, k in self.parts)
        return f"strategy={self.strategy!r}, merged={self.merged}, slices=[{slices}]"

    def resolve_strategy(self, x: torch.Tensor) -> str:
        """The strategy's name for input ``x``: the configured one, or the cost model's choice."""
        return self._strategy(x).name

    def _strategy(self, x: torch.Tensor) -> Strategy:
        return resolve_strategy(self.strategy, self.parts, x, self.training, self.adapter_dropout)

    def delta(self, *, fresh: bool = False) -> torch.Tensor:
        """The ``(out, in)`` update of this layer (compute dtype); ``fresh`` bypasses the cache."""
        return parts_delta(self.parts, fresh=fresh)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.merged or self.disabled:
            return self.base_layer(x)
        strategy = self._strategy(x)
        return strategy.forward(self.base_layer, self.parts, x, self.adapter_dropout, self.training)


class TCURAttention(AttentionAttributes, AdapterLayer):
    """A wrapped ``nn.MultiheadAttention`` running with ``W + Delta`` for each adapted weight.

    Called like the attention module (same arguments, same outputs). Each call forms the
    adapted weights (:func:`adapted_weights`) and runs the module's own ``forward`` with them
    (:func:`substituted_forward`); merged, it runs the base module.

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
        if self.merged or self.disabled:
            return self.base_layer(*args, **kwargs)
        weights = adapted_weights(self.base_layer, [self.sites])
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
