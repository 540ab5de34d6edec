"""Finding the weight matrices to adapt, splitting fused projections and grouping them.

Supported modules are ``torch.nn.Linear`` (weight ``(out, in)``) and transformers' ``Conv1D``
(GPT-2; weight ``(in, out)``, used here transposed so every slice is ``(out, in)``).
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


def is_supported(module: nn.Module) -> bool:
    """True for the module types an adapter can wrap."""
    return isinstance(module, nn.Linear) or is_conv1d(module)


def out_in_weight(module: nn.Module) -> torch.Tensor:
    """The module's weight as an ``(out, in)`` view (``Conv1D`` transposed; no copy)."""
    weight = module.weight
    if not isinstance(weight, torch.Tensor):
        raise TypeError(f"{type(module).__name__}.weight is not a tensor")
    return weight.T if is_conv1d(module) else weight


@dataclass(frozen=True)
class TargetSlice:
    """One ``(out, in)`` matrix to adapt: a whole module or one part of a split fused one."""

    name: str
    module: nn.Module
    part: int = 0
    n_parts: int = 1

    @property
    def label(self) -> str:
        """``name`` or ``name[part]`` for a part of a split module."""
        return self.name if self.n_parts == 1 else f"{self.name}[{self.part}]"

    @property
    def shape(self) -> tuple[int, int]:
        """``(d_out, d_in)`` of this slice."""
        d_out, d_in = out_in_weight(self.module).shape
        return d_out // self.n_parts, d_in

    def weight(self) -> torch.Tensor:
        """The slice of the module's ``(out, in)`` weight (a view)."""
        d_out = self.shape[0]
        return out_in_weight(self.module)[self.part * d_out : (self.part + 1) * d_out]


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
    """The weight slices to adapt, in module order, fused projections split as requested."""
    slices = []
    for name, module in match_modules(model, target_modules, "target_modules"):
        if not is_supported(module):
            raise TypeError(
                f"target module {name!r} is a {type(module).__name__}; only torch.nn.Linear and "
                "transformers Conv1D can be adapted"
            )
        parts = _parts_of(name, split_fused or {})
        d_out = out_in_weight(module).shape[0]
        if d_out % parts:
            raise ValueError(
                f"split_fused asks for {parts} parts of {name!r} but its output size {d_out} is "
                "not divisible by that"
            )
        slices += [TargetSlice(name, module, p, parts) for p in range(parts)]
    return slices


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
    """Group ``slices`` by name, shape or a callable; every group has a single shape."""
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
