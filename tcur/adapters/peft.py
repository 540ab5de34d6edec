"""tCURLoRA and CURLoRA as PEFT methods: ``peft.get_peft_model(model, TCURLoRAPeftConfig(...))``.

Importing this module (never done by ``import tcur.adapters``) registers two PEFT types,
``"TCURLORA"`` and ``"CURLORA"``. :func:`peft.get_peft_model` then returns an ordinary
``PeftModel`` whose target layers are :class:`TCURPeftLayer` (tcur's update, tcur's forward
strategies) and whose groups' ``C``, ``R``, ``dU`` live in one container on the tuner, the root
of the ``PeftModel`` (``base_model.tcurlora_groups.<adapter>.<i>``; CURLoRA: ``curlora_groups``),
as PEFT's own TinyLoRA keeps its shared vectors. PEFT's machinery works on it:
``print_trainable_parameters``, training, ``disable_adapter()``, ``save_pretrained`` /
``PeftModel.from_pretrained`` (``adapter_config.json`` + ``adapter_model.safetensors``),
``merge_adapter`` / ``unmerge_adapter`` / ``merge_and_unload`` / ``unload``, several named
adapters (``add_adapter``, ``set_adapter``, ``delete_adapter``) and ``modules_to_save``.

How it is hosted (PEFT 0.21, pinned in ``constraints.txt``):

- PEFT's :func:`peft.utils.register_peft_method` only accepts names of its own closed
  ``PeftType`` enum, so the two types are a ``str`` enum of tcur's (:class:`TCURPeftType`) put
  into PEFT's public type-to-class mappings directly, which is what that function does inside.
- A group spans layers, but PEFT creates layers one at a time; the tuner therefore selects every
  group's rows and columns on the whole model before PEFT's injection loop
  (:meth:`TCURTuner.inject_adapter`) and the loop only wraps the planned modules.
- The selection is written into the config (``groups``: key, members, rows, cols, scale per
  group), so ``adapter_config.json`` carries it and ``from_pretrained`` rebuilds the same ``C``
  and ``R`` from the base weights without selecting again. ``C`` and ``R`` are therefore not
  saved (non-persistent buffers); ``adapter_model.safetensors`` holds ``dU`` and the group's
  identity buffers, which loading checks against the rebuilt groups.
- ``inject_adapter_in_model`` (no ``PeftModel``) is refused by PEFT for tuners with shared state,
  as for TinyLoRA and VeRA.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, ClassVar

import peft
import torch
from packaging.version import Version
from peft import PeftConfig
from peft.mapping import (
    PEFT_TYPE_TO_CONFIG_MAPPING,
    PEFT_TYPE_TO_PREFIX_MAPPING,
    PEFT_TYPE_TO_TUNER_MAPPING,
)
from peft.tuners.tuners_utils import BaseTuner, BaseTunerLayer, check_adapters_to_merge
from torch import nn
from torch.nn import functional as F

from tcur.adapters.config import CURLoRAConfig, TCURLoRAConfig
from tcur.adapters.forward import choose_strategy
from tcur.adapters.layers import PassCounter, TCURGroup, TCURGroups, check_identity
from tcur.adapters.model import check_not_sharded
from tcur.adapters.plan import AdapterConfig, GroupSpec, build_group, check_counts, counts, plan
from tcur.adapters.targets import find_targets, is_conv1d

if Version(peft.__version__) < Version("0.21"):
    raise ImportError(
        f"tcur.adapters.peft needs peft >= 0.21 (tuner state-dict hooks), not {peft.__version__}"
    )

__all__ = [
    "CURLoRAPeftConfig",
    "CURLoRATuner",
    "TCURLoRAPeftConfig",
    "TCURLoRATuner",
    "TCURPeftLayer",
    "TCURPeftType",
    "TCURTuner",
    "register",
]


class TCURPeftType(str, enum.Enum):
    """The PEFT types that tcur adds (``peft_type`` in ``adapter_config.json``)."""

    TCURLORA = "TCURLORA"
    CURLORA = "CURLORA"


@dataclass
class _CURPeftFields(PeftConfig):
    """Fields shared by both PEFT configs; see :class:`TCURLoRAPeftConfig`."""

    target_modules: list[str] | str | None = None
    rank: int = 8
    alpha: float = 1.0
    scaling: str = "normalized"
    dropout: float = 0.0
    modules_to_save: list[str] | None = None
    forward: str = "auto"
    seed: int = 0
    groups: list[dict[str, Any]] | None = field(default=None, repr=False)

    tcur_type: ClassVar[type[CURLoRAConfig] | type[TCURLoRAConfig]]
    peft_kind: ClassVar[TCURPeftType]

    def __post_init__(self) -> None:
        super().__post_init__()
        self.peft_type = self.peft_kind
        if isinstance(self.target_modules, set):
            self.target_modules = sorted(self.target_modules)
        self.tcur_config()  # every tcur field is checked here, naming the field

    def tcur_config(self) -> AdapterConfig:
        """The tcur config with these fields (``modules_to_save`` is PEFT's business: ``None``)."""
        if self.target_modules is None:
            raise ValueError(f"{type(self).__name__} needs target_modules (names or a regex)")
        names = [f for f in self.tcur_type.__dataclass_fields__ if f != "modules_to_save"]
        values = {name: getattr(self, name) for name in names}
        return self.tcur_type(**values)


@dataclass
class TCURLoRAPeftConfig(_CURPeftFields):
    """:class:`~tcur.adapters.TCURLoRAConfig` as a PEFT config (``peft.get_peft_model``).

    The tcur fields (``target_modules``, ``rank``, ``n_rows``, ``n_cols``, ``select``,
    ``group_by`` (``"name"`` or ``"shape"``; a callable cannot be saved as JSON), ``alpha``,
    ``scaling``, ``dropout``, ``modules_to_save``, ``forward``, ``seed``, ``split_fused``,
    ``autocast_adapter_dtype``) mean what they mean there, with the same defaults; PEFT's fields
    (``task_type``, ``inference_mode``, ``base_model_name_or_path``, ...) what they mean in PEFT.
    ``modules_to_save`` is handled by PEFT (a trained copy per adapter, saved with it).
    ``groups`` is filled in by ``get_peft_model`` with each group's selected rows and columns
    and scale; a config that has them reuses them instead of selecting again (this is how
    ``from_pretrained`` rebuilds the saved adapter).

    Examples
    --------
    >>> from tcur.adapters.peft import TCURLoRAPeftConfig
    >>> config = TCURLoRAPeftConfig(target_modules=["query", "value"], rank=4, task_type="SEQ_CLS")
    >>> config.peft_type.value, config.n_rows, config.select
    ('TCURLORA', 4, 'leverage')
    """

    n_rows: int | None = None
    n_cols: int | None = None
    select: str = "leverage"
    group_by: str = "name"
    split_fused: dict[str, int] | None = None
    autocast_adapter_dtype: bool = True

    tcur_type = TCURLoRAConfig
    peft_kind = TCURPeftType.TCURLORA

    def __post_init__(self) -> None:
        super().__post_init__()
        tcur = self.tcur_config()
        assert isinstance(tcur, TCURLoRAConfig)
        self.n_rows, self.n_cols = tcur.n_rows, tcur.n_cols


@dataclass
class CURLoRAPeftConfig(_CURPeftFields):
    """:class:`~tcur.adapters.CURLoRAConfig` as a PEFT config (fields as in the tCURLoRA one).

    Examples
    --------
    >>> from tcur.adapters.peft import CURLoRAPeftConfig
    >>> CURLoRAPeftConfig(target_modules=["query"], rank=4).peft_type.value
    'CURLORA'
    """

    select: str = "inverse_norm"
    autocast_adapter_dtype: bool = True

    tcur_type = CURLoRAConfig
    peft_kind = TCURPeftType.CURLORA


Parts = list[tuple[TCURGroup, int]]


class TCURPeftLayer(nn.Module, BaseTunerLayer):
    """A PEFT tuner layer around an ``nn.Linear``/``Conv1D``: base output plus each active adapter.

    Per adapter it keeps the ``(group, slice)`` parts of its update (references to groups owned
    by the tuner, never submodules), a dropout module and the forward strategy.

    Parameters
    ----------
    base_layer : nn.Module
    adapter_name : str
    parts : list of (TCURGroup, int)
        The output parts of this layer for ``adapter_name``, in output order.
    dropout : float
    strategy : {"auto", "factored", "materialized"}
    """

    adapter_layer_names = ("tcur_dropout",)
    other_param_names = ("tcur_parts", "tcur_strategy")

    def __init__(
        self, base_layer: nn.Module, adapter_name: str, parts: Parts, dropout: float, strategy: str
    ) -> None:
        super().__init__()
        self.base_layer = base_layer
        self.tcur_dropout = nn.ModuleDict()
        self.tcur_parts: dict[str, Parts] = {}
        self.tcur_strategy: dict[str, str] = {}
        self._disable_adapters = False
        self.merged_adapters: list[str] = []
        self._active_adapter = adapter_name
        self.update_layer(adapter_name, parts, dropout, strategy)

    def update_layer(self, adapter_name: str, parts: Parts, dropout: float, strategy: str) -> None:
        """Add (or replace) the update of ``adapter_name``."""
        self.tcur_parts[adapter_name] = list(parts)
        self.tcur_strategy[adapter_name] = strategy
        self.tcur_dropout[adapter_name] = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.set_adapter(self.active_adapters)

    def _strategy(self, name: str, x: torch.Tensor) -> str:
        strategy = self.tcur_strategy[name]
        if strategy != "auto":
            return strategy
        parts = self.tcur_parts[name]
        tokens = x.numel() // max(x.shape[-1], 1)
        grad = torch.is_grad_enabled() and any(g.dU.requires_grad for g, _ in parts)
        dropout = self.training and isinstance(self.tcur_dropout[name], nn.Dropout)
        return choose_strategy([g.dims for g, _ in parts], tokens, grad, dropout)

    def delta(self, adapter_name: str, *, fresh: bool = False) -> torch.Tensor:
        """The ``(out, in)`` update of ``adapter_name`` (compute dtype)."""
        pieces = [g.delta_slice(k, fresh=fresh) for g, k in self.tcur_parts[adapter_name]]
        return pieces[0] if len(pieces) == 1 else torch.cat(pieces, dim=0)

    def _base_weight(self) -> torch.Tensor:
        weight = self.base_layer.weight
        if not isinstance(weight, torch.Tensor):
            raise TypeError(f"{type(self.base_layer).__name__}.weight is not a tensor")
        return weight

    def get_delta_weight(self, adapter_name: str) -> torch.Tensor:
        """The update in the base weight's own layout and dtype (PEFT's name)."""
        delta = self.delta(adapter_name, fresh=True)
        native = delta.T if is_conv1d(self.base_layer) else delta
        return native.to(self._base_weight().dtype)

    def _update(self, name: str, x: torch.Tensor) -> torch.Tensor:
        h = self.tcur_dropout[name](x)
        if self._strategy(name, x) == "materialized":
            delta = self.delta(name)
            return F.linear(h.to(delta.dtype), delta)
        pieces = [g.update(h, k) for g, k in self.tcur_parts[name]]
        return pieces[0] if len(pieces) == 1 else torch.cat(pieces, dim=-1)

    def forward(self, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        if self.disable_adapters:
            if self.merged:
                self.unmerge()
            return self.base_layer(x, *args, **kwargs)
        out = self.base_layer(x, *args, **kwargs)
        if self.merged:
            return out
        active = [name for name in self.active_adapters if name in self.tcur_parts]
        if not active:
            return out
        total = out.to(torch.promote_types(out.dtype, torch.float32))
        for name in active:
            total = total + self._update(name, x)
        return total.to(out.dtype)

    @torch.no_grad()
    def _add_to_weight(self, adapter_name: str, sign: float) -> None:
        weight = self._base_weight()
        delta = self.delta(adapter_name, fresh=True)
        native = delta.T if is_conv1d(self.base_layer) else delta
        weight.copy_((weight.to(native.dtype) + sign * native).to(weight.dtype))

    def merge(self, safe_merge: bool = False, adapter_names: list[str] | None = None) -> None:
        """Add the updates of ``adapter_names`` (default: the active ones) into the base weight.

        ``safe_merge=True`` checks every update for NaN/Inf first and changes nothing if one is
        not finite (``ValueError`` naming the adapter).
        """
        names = [n for n in check_adapters_to_merge(self, adapter_names) if n in self.tcur_parts]
        if safe_merge:
            for name in names:
                if not bool(torch.isfinite(self.delta(name, fresh=True)).all()):
                    raise ValueError(
                        f"refusing to merge adapter {name!r}: its update is not finite"
                    )
        for name in names:
            self._add_to_weight(name, 1.0)
            self.merged_adapters.append(name)

    def unmerge(self) -> None:
        """Subtract the merged updates again, last merged first."""
        while self.merged_adapters:
            self._add_to_weight(self.merged_adapters.pop(), -1.0)


def _base_layers_view(model: nn.Module) -> list[tuple[nn.Module, str, TCURPeftLayer]]:
    slots = []
    for parent in model.modules():
        for child_name, child in parent.named_children():
            if isinstance(child, TCURPeftLayer):
                slots.append((parent, child_name, child))
    return slots


@contextmanager
def _base_layers_in_place(model: nn.Module) -> Iterator[None]:
    """Put every :class:`TCURPeftLayer`'s base layer back at its place for the duration."""
    slots = _base_layers_view(model)
    for parent, child_name, layer in slots:
        setattr(parent, child_name, layer.base_layer)
    try:
        yield
    finally:
        for parent, child_name, layer in slots:
            setattr(parent, child_name, layer)


def _specs_from_records(
    model: nn.Module, config: AdapterConfig, records: Sequence[dict[str, Any]]
) -> list[GroupSpec]:
    """The saved groups of a config (``groups``) as specs, checked against ``model``."""
    split = config.split_fused if isinstance(config, TCURLoRAConfig) else None
    slices = {s.label: s for s in find_targets(model, config.target_modules, split)}
    specs = []
    for index, record in enumerate(records):
        missing = [label for label in record["members"] if label not in slices]
        if missing:
            raise ValueError(
                f"groups[{index}] ({record['key']!r}): {missing[0]!r} is not in the model"
            )
        members = [slices[label] for label in record["members"]]
        name = f"groups[{index}] ({record['key']!r})"
        shapes = {m.shape for m in members}
        if len(shapes) != 1:
            raise ValueError(f"{name}: its members have several shapes {sorted(shapes)}")
        (d_out, d_in) = shapes.pop()
        check_counts(record["key"], (d_out, d_in), config)
        rows, cols = list(record["rows"]), list(record["cols"])
        for field_name, values, size, wanted in (
            ("rows", rows, d_out, counts(config)[0]),
            ("cols", cols, d_in, counts(config)[1]),
        ):
            valid = all(isinstance(v, int) and 0 <= v < size for v in values)
            if not valid or len(values) != wanted or len(set(values)) != len(values):
                raise ValueError(
                    f"{name}: {field_name} must be {wanted} distinct indices in 0..{size - 1}, "
                    f"got {values!r}"
                )
        specs.append(GroupSpec(record["key"], members, rows, cols))
    return specs


class TCURTuner(BaseTuner):
    """The PEFT tuner (``PeftModel.base_model``) of both configs.

    Owns every adapter's groups in ``self.<groups_attr>[adapter_name]`` (a
    :class:`~tcur.adapters.layers.TCURGroups`), so FSDP2's per-block sharding of the wrapped
    model never splits a group. Selects rows and columns before PEFT's injection loop
    (module docstring).
    """

    uses_shared_state = True
    prefix: str = "tcur_"
    groups_attr: ClassVar[str] = "tcur_groups"
    tuner_layer_cls = TCURPeftLayer
    target_module_mapping = {}  # noqa: RUF012 (PEFT's attribute; no default targets)

    def __init__(
        self,
        model: nn.Module,
        config: Any,
        adapter_name: str,
        low_cpu_mem_usage: bool = False,
        state_dict: dict[str, torch.Tensor] | None = None,
    ) -> None:
        self._planned: dict[str, dict[str, list[tuple[int, TCURGroup, int]]]] = {}
        self._injecting: str | None = None
        self._passes = PassCounter()
        super().__init__(model, config, adapter_name, low_cpu_mem_usage, state_dict)
        self._pass_hook = model.register_forward_pre_hook(self._start_pass)
        self.register_load_state_dict_pre_hook(self._check_state_dict)

    def _check_state_dict(self, module: nn.Module, state_dict: Any, prefix: str, *_: Any) -> None:
        """Refuse saved groups built on other base weights, indices, scale or config."""
        for adapter, container in self.groups.items():
            for i, group in container.named_children():
                check_identity(group, state_dict, f"{prefix}{self.groups_attr}.{adapter}.{i}.")

    def _start_pass(self, module: nn.Module, args: Any) -> None:
        self._passes.start(module)

    @property
    def groups(self) -> nn.ModuleDict:
        """``adapter name -> TCURGroups`` (created on first use)."""
        if self.groups_attr not in self._modules:
            self.add_module(self.groups_attr, nn.ModuleDict())
        container = self._modules[self.groups_attr]
        assert isinstance(container, nn.ModuleDict)
        return container

    def _plan(self, model: nn.Module, config: _CURPeftFields, adapter_name: str) -> None:
        """Select (or rebuild from ``config.groups``) the groups and register them."""
        tcur = config.tcur_config()
        check_not_sharded(model)
        with _base_layers_in_place(model):
            if config.groups is None:
                specs = plan(model, tcur)
                built = [(build_group(spec, tcur), spec) for spec in specs]
            else:
                specs = _specs_from_records(model, tcur, config.groups)
                scales = [float(r["scale"]) for r in config.groups]
                built = [
                    (build_group(spec, tcur, scale=s), spec)
                    for spec, s in zip(specs, scales, strict=True)
                ]
        planned: dict[str, list[tuple[int, TCURGroup, int]]] = {}
        for group, spec in built:
            for name in ("C", "R"):  # rebuilt from the base weights, never saved
                group.register_buffer(name, getattr(group, name), persistent=False)
            group.passes = self._passes
            for k, target in enumerate(spec.slices):
                planned.setdefault(target.name, []).append((target.part, group, k))
        config.groups = [
            {"key": s.key, "members": [t.label for t in s.slices], "rows": s.rows, "cols": s.cols}
            | {"scale": g.scale}
            for g, s in built
        ]
        self.groups[adapter_name] = TCURGroups({str(i): g for i, (g, _) in enumerate(built)})
        self._planned[adapter_name] = planned

    def inject_adapter(
        self,
        model: nn.Module,
        adapter_name: str,
        autocast_adapter_dtype: bool = True,
        low_cpu_mem_usage: bool = False,
        state_dict: dict[str, torch.Tensor] | None = None,
    ) -> None:
        """Plan the groups of ``adapter_name`` on the whole model, then run PEFT's injection."""
        config = self.peft_config[adapter_name]
        if not isinstance(config, _CURPeftFields):
            raise TypeError(f"{type(self).__name__} needs a tcur PEFT config, got {config!r}")
        self._plan(model, config, adapter_name)
        self._injecting = adapter_name
        try:
            super().inject_adapter(
                model,
                adapter_name,
                autocast_adapter_dtype=autocast_adapter_dtype,
                low_cpu_mem_usage=low_cpu_mem_usage,
                state_dict=state_dict,
            )
        except BaseException:
            del self.groups[adapter_name]
            raise
        finally:
            self._injecting = None
            self._planned.pop(adapter_name, None)

    def _check_target_module_exists(self, peft_config: Any, key: str) -> bool:  # type: ignore[override]
        """A module is a target if the plan of the adapter being injected wraps it."""
        return self._injecting is not None and key in self._planned[self._injecting]

    def _create_and_replace(  # type: ignore[override]
        self,
        peft_config: Any,
        adapter_name: str,
        target: nn.Module,
        target_name: str,
        parent: nn.Module,
        current_key: str,
        **kwargs: Any,
    ) -> None:
        parts = [(g, k) for _, g, k in sorted(self._planned[adapter_name][current_key], key=_part)]
        if isinstance(target, TCURPeftLayer):
            target.update_layer(adapter_name, parts, peft_config.dropout, peft_config.forward)
            return
        layer = TCURPeftLayer(target, adapter_name, parts, peft_config.dropout, peft_config.forward)
        self._replace_module(parent, target_name, layer, target)

    def _set_group_grads(self, inference_mode: bool | None = None) -> None:
        for name, container in self.groups.items():
            frozen = (
                self.peft_config[name].inference_mode if inference_mode is None else inference_mode
            )
            trainable = name in self.active_adapters and not frozen
            for group in _members(container):
                group.dU.requires_grad_(trainable)

    def _mark_only_adapters_as_trainable(self, model: nn.Module) -> None:
        super()._mark_only_adapters_as_trainable(model)
        self._set_group_grads()

    def set_adapter(self, adapter_name: str | list[str], inference_mode: bool = False) -> None:
        """Activate ``adapter_name``; only its ``dU`` trains (none in ``inference_mode``)."""
        super().set_adapter(adapter_name, inference_mode=inference_mode)
        self._set_group_grads(inference_mode)

    def delete_adapter(self, adapter_name: str) -> None:
        """Remove ``adapter_name`` from every layer and drop its groups."""
        super().delete_adapter(adapter_name)
        del self.groups[adapter_name]

    def _cast_adapter_dtype(self, adapter_name: str, autocast_adapter_dtype: bool = True) -> None:
        """``dU`` in float32 for half-precision weights unless PEFT's or the config's switch is off.

        ``get_peft_model(..., autocast_adapter_dtype=False)`` or the config's
        ``autocast_adapter_dtype=False`` keep ``dU`` in the weights' dtype.
        """
        super()._cast_adapter_dtype(adapter_name, autocast_adapter_dtype)
        if adapter_name not in self.groups:
            return
        own = getattr(self.peft_config[adapter_name], "autocast_adapter_dtype", True)
        upcast = autocast_adapter_dtype and own
        for group in _members(self.groups[adapter_name]):
            half = group.C.dtype in (torch.float16, torch.bfloat16)
            dtype = torch.float32 if upcast and half else group.C.dtype
            if group.dU.dtype != dtype:
                group.dU = nn.Parameter(group.dU.detach().to(dtype), group.dU.requires_grad)

    def _unload_and_optionally_merge(
        self,
        merge: bool = True,
        progressbar: bool = False,
        safe_merge: bool = False,
        adapter_names: list[str] | None = None,
    ) -> Any:
        model = super()._unload_and_optionally_merge(merge, progressbar, safe_merge, adapter_names)
        self._pass_hook.remove()
        self.groups.clear()
        return model

    @classmethod
    def _remove_adapter_name_from_key(cls, key: str, adapter_name: str) -> str:
        marker = f"{cls.groups_attr}.{adapter_name}."
        if marker in key:
            return key.replace(marker, f"{cls.groups_attr}.", 1)
        result: str = super()._remove_adapter_name_from_key(key, adapter_name)
        return result


def _part(item: tuple[int, TCURGroup, int]) -> int:
    return item[0]


def _members(container: nn.Module) -> list[TCURGroup]:
    return [m for m in container.children() if isinstance(m, TCURGroup)]


class TCURLoRATuner(TCURTuner):
    """The tuner of :class:`TCURLoRAPeftConfig` (groups in ``tcurlora_groups``)."""

    prefix = "tcurlora_"
    groups_attr = "tcurlora_groups"


class CURLoRATuner(TCURTuner):
    """The tuner of :class:`CURLoRAPeftConfig` (groups in ``curlora_groups``)."""

    prefix = "curlora_"
    groups_attr = "curlora_groups"


def register() -> None:
    """Make both types known to PEFT (idempotent; runs on import of this module)."""
    configs: dict[Any, Any] = PEFT_TYPE_TO_CONFIG_MAPPING
    tuners: dict[Any, Any] = PEFT_TYPE_TO_TUNER_MAPPING
    prefixes: dict[Any, Any] = PEFT_TYPE_TO_PREFIX_MAPPING
    for kind, config_cls, tuner_cls in (
        (TCURPeftType.TCURLORA, TCURLoRAPeftConfig, TCURLoRATuner),
        (TCURPeftType.CURLORA, CURLoRAPeftConfig, CURLoRATuner),
    ):
        configs[kind] = config_cls
        tuners[kind] = tuner_cls
        prefixes[kind] = tuner_cls.prefix


register()
