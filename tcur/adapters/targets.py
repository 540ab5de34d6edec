"""Finding the weight matrices to adapt, splitting fused projections and grouping them.

Supported modules, and how their update reaches the output:

- ``torch.nn.Linear`` (weight ``(out, in)``) and transformers' ``Conv1D`` (GPT-2; weight
  ``(in, out)``, used here transposed so every slice is ``(out, in)``): the module is wrapped and
  its wrapper adds the update (either forward strategy).
- ``torch.nn.MultiheadAttention``: its ``forward`` (and PyTorch's fused inference path) reads
  ``in_proj_weight`` (or ``q_proj_weight``/``k_proj_weight``/``v_proj_weight`` when the key and
  value sizes differ) and ``out_proj.weight`` directly and never calls ``out_proj``. Targeting
  the attention module adapts all of them; targeting its ``out_proj`` adapts that one. Either way
  the attention module is the *host*: its wrapper runs the original ``forward`` with ``W + Delta``
  substituted for each adapted weight (:func:`torch.func.functional_call`), so the update is
  always materialized, and ``forward="factored"`` or ``dropout > 0`` (dropout on the adapter's
  own input, which a substituted weight does not have) are refused for such targets.

Everything else (``nn.Embedding``, convolutions, containers, ...) is refused by
:func:`find_targets` with a ``ValueError`` naming the module and the reason.
"""

from __future__ import annotations

import difflib
import re
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn


def conv1d_type() -> type | None:
    """transformers' ``Conv1D`` class if transformers is already imported (never imports it)."""
    module = sys.modules.get("transformers.pytorch_utils")
    return getattr(module, "Conv1D", None)


def is_conv1d(module: nn.Module) -> bool:
    """True for a transformers ``Conv1D`` (weight stored as ``(in, out)``)."""
    kind = conv1d_type()
    return kind is not None and isinstance(module, kind)


ATTENTION_WEIGHTS = ("in_proj_weight", "q_proj_weight", "k_proj_weight", "v_proj_weight")
"""Input-projection weights of ``nn.MultiheadAttention`` (those not ``None`` are adapted)."""


def unsupported_reason(module: nn.Module) -> str:
    """Why ``module`` cannot be adapted (for the ``ValueError`` of :func:`find_targets`)."""
    supported = (
        "tcur adapts nn.Linear, transformers Conv1D and nn.MultiheadAttention (its input "
        "projections and out_proj)"
    )
    if isinstance(module, nn.Embedding):
        return (
            "an embedding looks rows of its weight up instead of multiplying by it, so there is "
            f"no (out, in) matrix product for a CUR update to join; {supported}"
        )
    if isinstance(module, nn.modules.conv._ConvNd):
        return (
            "a convolution's weight is an (out, in, *kernel) tensor, not the (out, in) matrix "
            f"that CUR selects rows and columns of; {supported}"
        )
    return f"it is not a layer with an (out, in) weight matrix; {supported} (target those inside)"


def own_forward(module: nn.Module) -> str | None:
    """The class name of an ``nn.Linear``/``Conv1D`` subclass that overrides ``forward`` (its
    output need not be ``x W^T + b``), else ``None``.

    Examples
    --------
    >>> import torch
    >>> from tcur.adapters.targets import own_forward
    >>> class Halved(torch.nn.Linear):
    ...     def forward(self, x):
    ...         return super().forward(x) / 2
    >>> own_forward(Halved(2, 2)), own_forward(torch.nn.Linear(2, 2))
    ('Halved', None)
    """
    if isinstance(module, nn.Linear):
        base: Any = nn.Linear
    elif is_conv1d(module):
        base = conv1d_type()
    else:
        return None
    return type(module).__name__ if type(module).forward is not base.forward else None


def layer_strategy(module: nn.Module, forward: str) -> str:
    """The forward strategy a wrapped ``module`` runs with the configured ``forward``: always
    ``"factored"`` (``module(x)`` plus the update) for a layer with its own ``forward``
    (:func:`own_forward`), which the materialized product ``x (W + Delta)^T + b`` would bypass."""
    return "factored" if own_forward(module) is not None else forward


def _recomputed_by_hook(owner: nn.Module, attr: str) -> bool:
    """True if a forward pre-hook of the old ``torch.nn.utils.weight_norm`` / ``spectral_norm``
    recomputes ``owner.<attr>`` before every call."""
    from torch.nn.utils.spectral_norm import SpectralNorm
    from torch.nn.utils.weight_norm import WeightNorm

    return any(
        isinstance(hook, (WeightNorm, SpectralNorm)) and hook.name == attr
        for hook in owner._forward_pre_hooks.values()
    )


def merge_obstacle(module: nn.Module, site: str) -> str | None:
    """Why adding an update into the weight at ``site`` of the wrapped ``module`` would not give
    the adapted layer's outputs (the reason, for a ``ValueError``), or ``None``.

    A weight computed by a parametrization (``weight_norm``, ``spectral_norm``, ...) is rebuilt
    from its original at every access, so an update added into it is lost; a layer with its
    own ``forward`` (:func:`own_forward`) need not compute ``x W^T + b``.
    """
    owner, attr = site_owner(module, site)
    if torch.nn.utils.parametrize.is_parametrized(owner, attr) or _recomputed_by_hook(owner, attr):
        return (
            f"its {attr} is recomputed (a parametrization or hook: weight_norm, spectral_norm, "
            "...) at every call, so an update added into it would be lost; remove that first "
            f"(torch.nn.utils.parametrize.remove_parametrizations(module, {attr!r}), or "
            "torch.nn.utils.remove_weight_norm) or keep the adapter unmerged"
        )
    kind = own_forward(module) if site == "weight" else None
    if kind is not None:
        return (
            f"{kind} overrides forward, so its output is not x W^T + b and a merged weight would "
            "not reproduce the base output plus the update; keep the adapter unmerged"
        )
    return None


def optional_tensor(module: nn.Module, name: str) -> torch.Tensor | None:
    """``module.<name>`` if it is a tensor, else ``None`` (a missing bias, say)."""
    value = getattr(module, name, None)
    return value if isinstance(value, torch.Tensor) else None


def site_owner(module: nn.Module, site: str) -> tuple[nn.Module, str]:
    """``(submodule, attribute)`` that holds the tensor at path ``site`` under ``module``."""
    prefix, _, attr = site.rpartition(".")
    return (module.get_submodule(prefix) if prefix else module), attr


def site_tensor(module: nn.Module, site: str) -> torch.Tensor:
    """The tensor at path ``site`` under ``module`` (``"weight"``, ``"out_proj.weight"``).

    Examples
    --------
    >>> import torch
    >>> from tcur.adapters.targets import site_tensor
    >>> attention = torch.nn.MultiheadAttention(4, 1)
    >>> tuple(site_tensor(attention, "out_proj.weight").shape)
    (4, 4)
    """
    owner, attr = site_owner(module, site)
    value = optional_tensor(owner, attr)
    if value is None:
        raise TypeError(f"{type(owner).__name__} has no tensor attribute {attr!r}")
    return value


def site_transposed(module: nn.Module, site: str) -> bool:
    """True if the weight at ``site`` under ``module`` is stored ``(in, out)`` (``Conv1D``)."""
    return site == "weight" and is_conv1d(module)


@dataclass(frozen=True)
class TargetSlice:
    """One ``(out, in)`` matrix to adapt: a whole weight or one part of a split fused one.

    ``module.<attr>`` is the weight (``attr="weight"`` for ``Linear``/``Conv1D``, e.g.
    ``"in_proj_weight"`` for an attention module). ``host`` is the path of the module that is
    wrapped to apply the update when that is not ``module`` itself (an attention module hosting
    its ``out_proj``; ``None``: ``module`` is wrapped).
    """

    name: str
    module: nn.Module
    part: int = 0
    n_parts: int = 1
    attr: str = "weight"
    host: str | None = None

    @property
    def weight_label(self) -> str:
        """The module path, or ``path.attr`` for a weight not called ``weight``."""
        return self.name if self.attr == "weight" else f"{self.name}.{self.attr}"

    @property
    def label(self) -> str:
        """:attr:`weight_label`, or ``weight_label[part]`` for a part of a split weight."""
        base = self.weight_label
        return base if self.n_parts == 1 else f"{base}[{self.part}]"

    @property
    def host_name(self) -> str:
        """Path of the module that is wrapped to apply this slice's update."""
        return self.name if self.host is None else self.host

    @property
    def substituted(self) -> bool:
        """True if the update reaches the output by substituting ``W + Delta`` in the host."""
        return isinstance(self.module, nn.MultiheadAttention) or self.host is not None

    @property
    def site(self) -> str:
        """Path of the weight relative to the host module (``"weight"``, ``"out_proj.weight"``)."""
        if self.host is None or self.host == self.name:
            return self.attr
        return f"{self.name[len(self.host) + 1 :]}.{self.attr}"

    @property
    def transposed(self) -> bool:
        """True if the stored weight is ``(in, out)`` (transformers ``Conv1D``)."""
        return self.attr == "weight" and is_conv1d(self.module)

    def parameter(self) -> torch.Tensor:
        """The whole stored weight (not split, not transposed)."""
        weight = getattr(self.module, self.attr)
        if not isinstance(weight, torch.Tensor):
            raise TypeError(f"{self.weight_label} is not a tensor")
        return weight

    @property
    def shape(self) -> tuple[int, int]:
        """``(d_out, d_in)`` of this slice."""
        weight = self.parameter()
        d_out, d_in = weight.T.shape if self.transposed else weight.shape
        return d_out // self.n_parts, d_in

    def weight(self) -> torch.Tensor:
        """The slice of the ``(out, in)`` weight (a view)."""
        return self.part_of(self.parameter())

    def part_of(self, tensor: torch.Tensor) -> torch.Tensor:
        """This slice of ``tensor``, a tensor laid out like the stored weight (e.g. its
        gradient): transposed to ``(out, in)`` and cut to this part (a view)."""
        whole = tensor.T if self.transposed else tensor
        d_out = self.shape[0]
        return whole[self.part * d_out : (self.part + 1) * d_out]


def name_matches(name: str, pattern: str) -> bool:
    """PEFT's rule for a list entry: the exact path or a dotted suffix of it."""
    return name == pattern or name.endswith("." + pattern)


def _similar(pattern: str, names: Sequence[str]) -> str:
    candidates = sorted({n.rsplit(".", 1)[-1] for n in names if n} | set(names))
    close = difflib.get_close_matches(pattern, candidates, n=5, cutoff=0.5)
    return ", ".join(repr(c) for c in close) if close else "none"


def match_modules(
    model: nn.Module, patterns: str | Sequence[str], field: str
) -> list[tuple[str, nn.Module]]:
    """Modules of ``model`` selected by ``patterns`` (regex string or list of names), in order.

    A module reachable under several names matches if any of them does and is returned once,
    under its first name in ``model.named_modules()``. Raises ``ValueError`` for a list entry
    that matches nothing (naming it and listing similar module names), a regex that matches
    nothing or does not compile.
    """
    named = [(n, m) for n, m in model.named_modules(remove_duplicate=False) if n]
    names = [n for n, _ in named]
    if isinstance(patterns, str):
        regex = _compile(patterns, field)
        hits = [m for n, m in named if regex.fullmatch(n)]
        if not hits:
            raise ValueError(f"{field} regex {patterns!r} matched no module of the model")
    else:
        for pattern in patterns:
            if not any(name_matches(n, pattern) for n in names):
                raise ValueError(
                    f"{field} entry {pattern!r} matches no module of the model; "
                    f"similar module names: {_similar(pattern, names)}"
                )
        hits = [m for n, m in named if any(name_matches(n, p) for p in patterns)]
    chosen = {id(m): m for m in hits}
    return [(n, m) for n, m in model.named_modules() if n and id(m) in chosen]


def _compile(pattern: str, field: str) -> re.Pattern[str]:
    try:
        return re.compile(pattern)
    except re.error as exc:
        raise ValueError(f"{field} regex {pattern!r} does not compile: {exc}") from None


def find_targets(
    model: nn.Module, target_modules: str | Sequence[str], split_fused: dict[str, int] | None
) -> list[TargetSlice]:
    """The weight slices to adapt, in module order, fused projections split as requested.

    A matched ``nn.MultiheadAttention`` contributes its input projection(s) and ``out_proj``;
    a matched ``out_proj`` of one contributes itself, hosted by the attention module (module
    docstring). A weight matched twice (the attention module and its ``out_proj``) is adapted
    once. ``split_fused`` entries are matched against :attr:`TargetSlice.weight_label`, e.g.
    ``{"in_proj_weight": 3}`` splits an attention module's fused q/k/v. Raises ``ValueError``
    naming the module for a module that cannot be adapted (:func:`unsupported_reason`) and for a
    split that does not divide the output size.

    Examples
    --------
    >>> import torch
    >>> from tcur.adapters.targets import find_targets
    >>> net = torch.nn.ModuleDict({"attn": torch.nn.MultiheadAttention(8, 2)})
    >>> [(s.label, s.site, s.shape) for s in find_targets(net, ["attn"], {"in_proj_weight": 3})]
    ... # doctest: +NORMALIZE_WHITESPACE
    [('attn.in_proj_weight[0]', 'in_proj_weight', (8, 8)),
     ('attn.in_proj_weight[1]', 'in_proj_weight', (8, 8)),
     ('attn.in_proj_weight[2]', 'in_proj_weight', (8, 8)),
     ('attn.out_proj', 'out_proj.weight', (8, 8))]
    """
    parents = {
        id(child): (path, parent)
        for path, parent in model.named_modules()
        for child in parent.children()
    }
    slices: list[TargetSlice] = []
    seen: set[tuple[int, str]] = set()
    for name, module in match_modules(model, target_modules, "target_modules"):
        for whole in _weights_of(name, module, parents):
            if (id(whole.module), whole.attr) in seen:
                continue
            seen.add((id(whole.module), whole.attr))
            parts = _parts_of(whole.weight_label, split_fused or {})
            d_out = whole.shape[0]
            if d_out % parts:
                raise ValueError(
                    f"split_fused asks for {parts} parts of {whole.weight_label!r} but its output "
                    f"size {d_out} is not divisible by that"
                )
            slices += [
                TargetSlice(whole.name, whole.module, p, parts, whole.attr, whole.host)
                for p in range(parts)
            ]
    return slices


def check_splits_used(split_fused: dict[str, int], slices: Sequence[TargetSlice]) -> None:
    """``ValueError`` for a ``split_fused`` key that matches none of the target weights of
    ``slices`` (a typo would otherwise leave a fused weight adapted whole, silently)."""
    labels = [s.weight_label for s in slices if s.part == 0]
    for pattern in split_fused:
        if not any(name_matches(label, pattern) for label in labels):
            close = difflib.get_close_matches(pattern, labels, n=3)
            hint = f"; did you mean {', '.join(map(repr, close))}?" if close else ""
            raise ValueError(
                f"split_fused key {pattern!r} matches none of the target weights "
                f"({', '.join(map(repr, labels[:8]))}{', ...' if len(labels) > 8 else ''}){hint}"
            )


def _weights_of(
    name: str, module: nn.Module, parents: dict[int, tuple[str, nn.Module]]
) -> list[TargetSlice]:
    """The whole weights a matched module stands for (``ValueError`` if it cannot be adapted)."""
    if isinstance(module, nn.MultiheadAttention):
        found = [
            TargetSlice(name, module, attr=attr, host=name)
            for attr in ATTENTION_WEIGHTS
            if getattr(module, attr, None) is not None
        ]
        out_proj = module.out_proj
        if not isinstance(out_proj, nn.Linear):
            raise ValueError(
                f"target module {name!r}: its out_proj is a {type(out_proj).__name__}, not an "
                "nn.Linear, so it cannot be adapted"
            )
        return [*found, TargetSlice(f"{name}.out_proj", out_proj, host=name)]
    if isinstance(module, nn.Linear) or is_conv1d(module):
        host, parent = parents.get(id(module), ("", None))
        if isinstance(parent, nn.MultiheadAttention) and parent.out_proj is module:
            if not host:
                raise ValueError(
                    f"target module {name!r} is the out_proj of the model's root attention "
                    "module; wrap the attention in a parent module to adapt it"
                )
            return [TargetSlice(name, module, host=host)]
        return [TargetSlice(name, module)]
    raise ValueError(
        f"target module {name!r} is a {type(module).__name__} and cannot be adapted: "
        f"{unsupported_reason(module)}"
    )


def _parts_of(name: str, split_fused: dict[str, int]) -> int:
    for pattern, parts in split_fused.items():
        if name_matches(name, pattern):
            return parts
    return 1


def name_key(label: str) -> str:
    """Group key of ``group_by="name"``: the label with layer numbers replaced by ``*``."""
    return re.sub(r"(?<![^.])\d+(?![^.\[])", "*", label)


def group_targets(
    slices: Sequence[TargetSlice], group_by: str | Callable[[str, Any], str]
) -> dict[str, list[TargetSlice]]:
    """Group ``slices`` by name, shape or a callable; every group has a single shape.

    ``group_by="callable"`` (the marker a saved callable leaves, :mod:`tcur.adapters.config`)
    is refused with a ``ValueError``: the rule itself was not saved.
    """
    if group_by == "callable":
        raise ValueError(
            "group_by='callable' marks a config read back from a file whose groups a callable "
            "made; the callable is not saved, so pass it again (group_by=<your function>) to "
            "apply, or use tcur.adapters.load, which takes the saved groups"
        )
    groups: dict[str, list[TargetSlice]] = {}
    for s in slices:
        groups.setdefault(_key(s, group_by), []).append(s)
    for key, members in groups.items():
        _check_one_shape(key, members)
    return groups


def _key(s: TargetSlice, group_by: str | Callable[[str, Any], str]) -> str:
    if callable(group_by):
        key = group_by(s.label, s.module)
        if not isinstance(key, str) or not key:
            raise TypeError(f"group_by must return a non-empty str key, got {key!r} for {s.label}")
        return key
    if group_by == "shape":
        return "x".join(str(d) for d in s.shape)
    return name_key(s.label)


def _check_one_shape(key: str, members: Sequence[TargetSlice]) -> None:
    first = members[0]
    for other in members[1:]:
        if other.shape != first.shape:
            raise ValueError(
                f"group {key!r} mixes weight shapes: {first.label} is {first.shape} but "
                f"{other.label} is {other.shape}; use group_by='shape' or a callable"
            )
