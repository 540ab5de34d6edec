"""tCURLoRA and CURLoRA as PEFT methods: ``peft.get_peft_model(model, TCURLoRAPeftConfig(...))``.

Importing this module (never done by ``import tcur.adapters``) registers two PEFT types,
``"TCURLORA"`` and ``"CURLORA"``. :func:`peft.get_peft_model` then returns an ordinary
``PeftModel`` whose target layers are :class:`TCURPeftLayer` (``Linear``/``Conv1D``; the
native layer's strategies, :mod:`tcur.adapters.strategies`, so the same outputs and
saved-for-backward memory) and :class:`TCURPeftAttention`
(``nn.MultiheadAttention``, run with the adapted weights substituted) and whose groups'
``C``, ``R``, ``dU`` live in one container on the tuner, the root
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
- The selection is written into the config (``groups``: key, members, rows, cols, scale and the
  base weights' fingerprints per group, the record of :func:`tcur.adapters.plan.group_record`),
  so ``adapter_config.json`` carries it and ``from_pretrained`` rebuilds the same ``C`` and
  ``R`` from the base weights without selecting again; a model whose weights differ from the
  fingerprints (a config reused on another model) is refused. ``C`` and ``R`` are therefore not
  saved (non-persistent buffers); ``adapter_model.safetensors`` holds ``dU`` and the group's
  identity buffers, which loading checks against the rebuilt groups.
- ``inject_adapter_in_model`` (no ``PeftModel``) is refused by PEFT for tuners with shared state,
  as for TinyLoRA and VeRA.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator, Mapping, Sequence
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

from tcur.adapters.calibration import check_gradients, gradient_bases
from tcur.adapters.config import CURLoRAConfig, TCURLoRAConfig
from tcur.adapters.groups import Parts, TCURGroup, TCURGroups, parts_delta
from tcur.adapters.layers import (
    AttentionAttributes,
    LinearFeatures,
    Sites,
    adapted_weights,
    add_into,
    check_mergeable,
    guard_fast_paths,
    release_fast_paths,
    substituted_forward,
    weight_copies,
)
from tcur.adapters.plan import (
    AdapterConfig,
    GroupSpec,
    build_group,
    build_groups,
    check_base_weights,
    check_coverage,
    check_not_sharded,
    config_targets,
    counts,
    group_record,
    match_modules_to_save,
    pending_bases,
    spec_from_record,
    target_groups,
)
from tcur.adapters.strategies import Strategy, resolve_strategy
from tcur.adapters.targets import layer_strategy, site_tensor, site_transposed

if Version(peft.__version__) < Version("0.21"):
    raise ImportError(
        f"tcur.adapters.peft needs peft >= 0.21 (tuner state-dict hooks), not {peft.__version__}"
    )

__all__ = [
    "CURLoRAPeftConfig",
    "CURLoRATuner",
    "TCURLoRAPeftConfig",
    "TCURLoRATuner",
    "TCURPeftAttention",
    "TCURPeftBase",
    "TCURPeftLayer",
    "TCURPeftType",
    "TCURTuner",
    "initialize_gradient_bases",
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
    exact_unmerge: bool = True
    basis: str = "columns"
    groups: list[dict[str, Any]] | None = field(default=None, repr=False)

    tcur_type: ClassVar[type[CURLoRAConfig] | type[TCURLoRAConfig]]
    peft_kind: ClassVar[TCURPeftType]

    def __post_init__(self) -> None:
        super().__post_init__()
        self.peft_type = self.peft_kind
        if isinstance(self.target_modules, set):
            self.target_modules = sorted(self.target_modules)
        if callable(getattr(self, "group_by", None)):
            raise TypeError(
                "group_by must be 'name' or 'shape' in a PEFT config: a callable cannot be "
                "written to adapter_config.json (use tcur.adapters.apply/save for callables)"
            )
        tcur = self.tcur_config()  # every tcur field is checked here, naming the field
        for name in tcur.__dataclass_fields__:  # NumPy scalars -> Python numbers (JSON)
            if name not in ("modules_to_save", "target_modules"):
                setattr(self, name, getattr(tcur, name))

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
    ``autocast_adapter_dtype``, ``exact_unmerge``, ``basis``) mean what they mean there, with
    the same defaults; PEFT's fields (``task_type``, ``inference_mode``,
    ``base_model_name_or_path``, ...) what they mean in PEFT. With ``basis="gradient"`` the
    bases come after ``get_peft_model``, from :func:`initialize_gradient_bases` (as PEFT's EVA
    initialisation does), and are saved in ``adapter_model.safetensors``.
    ``modules_to_save`` is handled by PEFT (a trained copy per adapter, saved with it).
    ``groups`` is filled in by ``get_peft_model`` with each group's selected rows and columns,
    scale and base-weight fingerprints; a config that has them reuses them instead of selecting
    again (this is how ``from_pretrained`` rebuilds the saved adapter), on a model with the same
    base weights only (``ValueError`` otherwise: pass a fresh config to adapt another model).

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


class TCURPeftBase(nn.Module, BaseTunerLayer):
    """What both PEFT tuner layers share: per-adapter sites, dropout, strategy, merge/unmerge.

    Per adapter it keeps the ``(group, slice)`` parts of each adapted weight (references to
    groups owned by the tuner, never submodules), a dropout module, the forward strategy and
    whether merging keeps a copy of the weights (``exact_unmerge``).

    Parameters
    ----------
    base_layer : nn.Module
    adapter_name : str
    sites : dict of str to list of (TCURGroup, int)
        ``weight path under base_layer -> parts`` for ``adapter_name``, parts in output order.
    dropout : float
    strategy : {"auto", "factored", "materialized"}
    exact_unmerge : bool
    """

    adapter_layer_names = ("tcur_dropout", "tcur_dU")
    other_param_names = ("tcur_sites", "tcur_strategy", "tcur_exact_unmerge")

    def __init__(
        self,
        base_layer: nn.Module,
        adapter_name: str,
        sites: Sites,
        dropout: float,
        strategy: str,
        exact_unmerge: bool = True,
    ) -> None:
        super().__init__()
        self.base_layer = base_layer
        self.tcur_dropout = nn.ModuleDict()
        self.tcur_sites: dict[str, Sites] = {}
        self.tcur_strategy: dict[str, str] = {}
        self.tcur_exact_unmerge: dict[str, bool] = {}
        self._disable_adapters = False
        self.merged_adapters: list[str] = []
        self._tcur_originals: tuple[int, dict[str, torch.Tensor]] | None = None
        self._active_adapter = adapter_name
        self.update_layer(adapter_name, sites, dropout, strategy, exact_unmerge)

    def update_layer(
        self,
        adapter_name: str,
        sites: Sites,
        dropout: float,
        strategy: str,
        exact_unmerge: bool = True,
    ) -> None:
        """Add (or replace) the update of ``adapter_name``."""
        self.tcur_sites[adapter_name] = {site: list(parts) for site, parts in sites.items()}
        self.tcur_strategy[adapter_name] = layer_strategy(self.base_layer, strategy)
        self.tcur_exact_unmerge[adapter_name] = exact_unmerge
        self.tcur_dropout[adapter_name] = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.set_adapter(self.active_adapters)

    @property
    def tcur_dU(self) -> nn.ModuleDict:
        """``adapter -> the groups this layer uses`` (PEFT sees the shared ``dU`` through it).

        A view built on each access, never registered on this layer (the groups belong to the
        tuner: one owner for ``state_dict`` and FSDP2). PEFT's per-layer code reads the
        ``adapter_layer_names`` of a layer: ``get_layer_status``/``get_model_status`` report
        each adapter's ``requires_grad`` and devices from it, and the layer's ``set_adapter``,
        ``enable_adapters`` and ``set_requires_grad`` switch the shared ``dU`` through it, as
        PEFT's TinyLoRA does with its shared ``tinylora_v``. Deleting from the view changes
        nothing; the adapter's entry in ``tcur_sites`` (what the view is built from) goes.
        """
        view = nn.ModuleDict()
        for name, sites in self.tcur_sites.items():
            groups = {id(g): g for parts in sites.values() for g, _ in parts}
            view[name] = nn.ModuleList(groups.values())
        return view

    def _move_adapter_to_device_of_base_layer(
        self, adapter_name: str, device: torch.device | None = None
    ) -> None:
        """Move ``adapter_name``'s groups to ``device`` (default: the base weights').

        PEFT calls this after loading with ``low_cpu_mem_usage``. Unlike PEFT's version it
        keeps the groups' dtypes (``dU`` stays float32 next to half-precision weights,
        ``autocast_adapter_dtype``); the layer's own dropout modules hold no tensors.
        """
        if device is None:
            device = site_tensor(self.base_layer, next(iter(self.tcur_sites[adapter_name]))).device
        if device.type == "meta":
            return  # nothing to move to: the base weights are not materialized yet
        for group in self.tcur_dU[adapter_name].modules():
            if isinstance(group, TCURGroup):
                group.to(device)

    @property
    def tcur_parts(self) -> dict[str, Parts]:
        """``adapter -> parts`` of the weight called ``weight`` (the ``Linear``/``Conv1D`` case)."""
        return {a: sites["weight"] for a, sites in self.tcur_sites.items() if "weight" in sites}

    def _active(self) -> list[str]:
        """The active adapters this layer has (PEFT's ``active_adapters``, read directly: the
        forward pass asks on every call)."""
        names = self._active_adapter
        return [n for n in ([names] if isinstance(names, str) else names) if n in self.tcur_sites]

    def site_delta(self, adapter_name: str, site: str, *, fresh: bool = False) -> torch.Tensor:
        """The ``(out, in)`` update of ``adapter_name`` for the weight at ``site``."""
        return parts_delta(self.tcur_sites[adapter_name][site], fresh=fresh)

    def _deltas(self, adapter_name: str) -> dict[str, torch.Tensor]:
        sites = self.tcur_sites[adapter_name]
        return {site: self.site_delta(adapter_name, site, fresh=True) for site in sites}

    def check_mergeable(self, adapter_names: Sequence[str]) -> None:
        """``ValueError`` if merging ``adapter_names`` into this layer's weights would not give
        its adapted outputs (:func:`tcur.adapters.layers.check_mergeable`)."""
        for name in adapter_names:
            sites = self.tcur_sites[name]
            members = ", ".join(g.members[k] for parts in sites.values() for g, k in parts)
            check_mergeable(self.base_layer, sites, f"{members} (adapter {name!r})")

    @torch.no_grad()
    def merge(self, safe_merge: bool = False, adapter_names: list[str] | None = None) -> None:
        """Add the updates of ``adapter_names`` (default: the active ones) into the base weights.

        ``safe_merge=True`` checks every update for NaN/Inf first and changes nothing if one is
        not finite (``ValueError``, PEFT's wording). The first merge keeps a copy of the
        weights when the adapter's ``exact_unmerge`` is set (the default), so that
        :meth:`unmerge` restores them bit for bit.
        """
        names = [n for n in check_adapters_to_merge(self, adapter_names) if n in self.tcur_sites]
        self.check_mergeable(names)
        deltas = {name: self._deltas(name) for name in names}
        if safe_merge:
            for name, updates in deltas.items():
                if not all(bool(torch.isfinite(d).all()) for d in updates.values()):
                    raise ValueError(
                        f"NaNs detected in the merged weights. The adapter {name} seems to be "
                        "broken"
                    )
        for name, updates in deltas.items():
            if self._tcur_originals is None and self.tcur_exact_unmerge[name]:
                copies = weight_copies(self.base_layer, list(updates))
                self._tcur_originals = (len(self.merged_adapters), copies)
            for site, delta in updates.items():
                add_into(self.base_layer, site, delta)
            self.merged_adapters.append(name)

    @torch.no_grad()
    def unmerge(self) -> None:
        """Undo the merges, last merged first: restore the kept copies or subtract the updates."""
        while self.merged_adapters:
            name = self.merged_adapters.pop()
            if self._tcur_originals is not None and self._tcur_originals[0] == len(
                self.merged_adapters
            ):
                for site, original in self._tcur_originals[1].items():
                    site_tensor(self.base_layer, site).copy_(original)
                self._tcur_originals = None
                continue
            for site, delta in self._deltas(name).items():
                add_into(self.base_layer, site, delta, sign=-1.0)


class TCURPeftLayer(LinearFeatures, TCURPeftBase):
    """A PEFT tuner layer around an ``nn.Linear``/``Conv1D``: base output plus each active adapter.

    PEFT's bookkeeping (disabled, merged, active adapters) around the native layer's strategies
    (:mod:`tcur.adapters.strategies`): the first active adapter runs its strategy's forward, as
    the native :class:`~tcur.adapters.TCURLayer` does (the materialized strategy keeps no
    weight-sized tensor for the backward pass); further active adapters add their strategies'
    updates to that output.

    Examples
    --------
    >>> import torch
    >>> from peft import get_peft_model
    >>> from tcur.adapters.peft import CURLoRAPeftConfig
    >>> class Net(torch.nn.Module):
    ...     def __init__(self):
    ...         super().__init__()
    ...         self.proj = torch.nn.Linear(6, 4)
    ...     def forward(self, x):
    ...         return self.proj(x)
    >>> model = get_peft_model(Net(), CURLoRAPeftConfig(target_modules=["proj"], rank=2))
    >>> layer = model.base_model.model.proj
    >>> type(layer).__name__, layer.in_features, layer.out_features
    ('TCURPeftLayer', 6, 4)
    """

    def _strategy(self, name: str, parts: Parts, x: torch.Tensor, dropout: nn.Module) -> Strategy:
        return resolve_strategy(self.tcur_strategy[name], parts, x, self.training, dropout)

    def delta(self, adapter_name: str, *, fresh: bool = False) -> torch.Tensor:
        """The ``(out, in)`` update of ``adapter_name`` (compute dtype)."""
        return self.site_delta(adapter_name, "weight", fresh=fresh)

    def get_delta_weight(self, adapter_name: str) -> torch.Tensor:
        """The update in the base weight's own layout and dtype (PEFT's name)."""
        delta = self.delta(adapter_name, fresh=True)
        native = delta.T if site_transposed(self.base_layer, "weight") else delta
        return native.to(site_tensor(self.base_layer, "weight").dtype)

    def forward(self, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        if kwargs:
            _refuse_adapter_names(kwargs)
        if self._disable_adapters:  # PEFT's disable_adapters / merged, read directly
            if self.merged_adapters:
                self.unmerge()
            return self.base_layer(x, *args, **kwargs)
        active = self._active()
        if self.merged_adapters or not active:
            return self.base_layer(x, *args, **kwargs)
        dropouts = self.tcur_dropout
        if args or kwargs:  # the base layer takes more than x: every update is added to it
            out, rest = self.base_layer(x, *args, **kwargs), active
        else:
            first, rest = active[0], active[1:]
            parts, dropout = self.tcur_sites[first]["weight"], dropouts[first]
            strategy = self._strategy(first, parts, x, dropout)
            out = strategy.forward(self.base_layer, parts, x, dropout, self.training)
        if not rest:
            return out
        total = out.to(torch.promote_types(out.dtype, torch.float32))
        for name in rest:
            parts, dropout = self.tcur_sites[name]["weight"], dropouts[name]
            total = total + self._strategy(name, parts, x, dropout).update(parts, dropout(x))
        return total.to(out.dtype)


class TCURPeftAttention(AttentionAttributes, TCURPeftBase):
    """A PEFT tuner layer around an ``nn.MultiheadAttention``: runs it with ``W + Delta``.

    The weights the attention module reads itself (``in_proj_weight``, ``out_proj.weight``, ...)
    are replaced for the call by the base weights plus every active adapter's update
    (:func:`~tcur.adapters.layers.substituted_forward`), so the adapters act in training, in
    evaluation and on PyTorch's fused inference path, and ``dU`` gets gradients.
    """

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        _refuse_adapter_names(kwargs)
        if self.disable_adapters:
            if self.merged:
                self.unmerge()
            return self.base_layer(*args, **kwargs)
        active = self._active()
        if self.merged or not active:
            return self.base_layer(*args, **kwargs)
        weights = adapted_weights(self.base_layer, [self.tcur_sites[name] for name in active])
        return substituted_forward(self.base_layer, weights, args, kwargs)

    def unload_and_optionally_merge_module(
        self, merge: bool, safe_merge: bool, adapter_names: list[str] | None
    ) -> nn.Module:
        """The attention module itself, the adapters merged first if ``merge`` (PEFT's hook)."""
        if merge:
            self.merge(safe_merge=safe_merge, adapter_names=adapter_names)
        return self.base_layer


def _refuse_adapter_names(kwargs: dict[str, Any]) -> None:
    if "adapter_names" in kwargs:
        raise TypeError(
            "tcur adapters do not support mixed adapter batches (forward(..., adapter_names=...)): "
            "a group's dU is shared by layers and rows cannot be routed per adapter; run one "
            "batch per adapter with set_adapter(), or use disable_adapter() for the base model"
        )


def _base_layers_view(model: nn.Module) -> list[tuple[nn.Module, str, TCURPeftBase]]:
    slots = []
    for parent in model.modules():
        for child_name, child in parent.named_children():
            if isinstance(child, TCURPeftBase):
                slots.append((parent, child_name, child))
    return slots


@contextmanager
def _base_layers_in_place(model: nn.Module) -> Iterator[None]:
    """Put every tcur PEFT layer's base layer back at its place for the duration."""
    slots = _base_layers_view(model)
    for parent, child_name, layer in slots:
        setattr(parent, child_name, layer.base_layer)
    try:
        yield
    finally:
        for parent, child_name, layer in slots:
            setattr(parent, child_name, layer)


def _rebuilt_group(spec: GroupSpec, config: AdapterConfig, scale: float) -> TCURGroup:
    """A saved group rebuilt from its record (gradient bases: zero until they load)."""
    bases = pending_bases(spec.slices, config) if config.basis == "gradient" else None
    return build_group(spec, config, scale=scale, bases=bases)


def _specs_from_records(
    model: nn.Module, config: AdapterConfig, records: Sequence[dict[str, Any]]
) -> list[GroupSpec]:
    """The saved groups of a config (``groups``) as specs, checked against ``model``."""
    slices = {s.label: s for s in config_targets(model, config)}
    specs = [spec_from_record(i, record, slices, config) for i, record in enumerate(records)]
    check_coverage(records, slices)
    for i, (record, spec) in enumerate(zip(records, specs, strict=True)):
        check_base_weights(i, record, spec)
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
    tuner_layer_cls = TCURPeftBase
    target_module_mapping = {}  # noqa: RUF012 (PEFT's attribute; no default targets)

    def __init__(
        self,
        model: nn.Module,
        config: Any,
        adapter_name: str,
        low_cpu_mem_usage: bool = False,
        state_dict: dict[str, torch.Tensor] | None = None,
    ) -> None:
        self._planned: dict[str, dict[str, list[tuple[str, int, TCURGroup, int]]]] = {}
        self._injecting: str | None = None
        self._fast_paths: list[Any] = []
        super().__init__(model, config, adapter_name, low_cpu_mem_usage, state_dict)

    @property
    def groups(self) -> nn.ModuleDict:
        """``adapter name -> TCURGroups`` (created on first use)."""
        if self.groups_attr not in self._modules:
            self.add_module(self.groups_attr, nn.ModuleDict())
        container = self._modules[self.groups_attr]
        assert isinstance(container, nn.ModuleDict)
        return container

    def _container(self, adapter_name: str) -> TCURGroups:
        container = self.groups[adapter_name]
        assert isinstance(container, TCURGroups)
        return container

    def _plan(self, model: nn.Module, config: _CURPeftFields, adapter_name: str) -> None:
        """Select (or rebuild from ``config.groups``) the groups and register them.

        The checks and the build of :mod:`tcur.adapters.plan`, once per adapter, as
        ``tcur.adapters.apply`` runs them (PEFT matches ``modules_to_save`` itself; here they are
        only checked against the targets).
        """
        tcur = config.tcur_config()
        later = tcur.basis == "gradient"  # initialize_gradient_bases or the saved adapter
        check_not_sharded(model)
        with _base_layers_in_place(model):
            built: list[tuple[TCURGroup, GroupSpec]]
            if config.groups is None:
                groups = target_groups(model, tcur)
                targets = [t for members in groups.values() for t in members]
                match_modules_to_save(model, config.modules_to_save, targets, must_match=False)
                built = build_groups(groups, tcur, bases_later=later)
            else:
                specs = _specs_from_records(model, tcur, config.groups)
                targets = [t for spec in specs for t in spec.slices]
                match_modules_to_save(model, config.modules_to_save, targets, must_match=False)
                scales = [float(r["scale"]) for r in config.groups]
                built = [
                    (_rebuilt_group(spec, tcur, s), spec)
                    for spec, s in zip(specs, scales, strict=True)
                ]
        planned: dict[str, list[tuple[str, int, TCURGroup, int]]] = {}
        source = (
            "tcur.adapters.peft.initialize_gradient_bases(peft_model, gradients, "
            f"adapter_name={adapter_name!r})"
        )
        for group, spec in built:
            for name in ("C", "R"):  # column bases: rebuilt from the base weights, not saved
                group.register_buffer(name, getattr(group, name), persistent=later)
            if later:
                group.await_bases(source)
            for k, target in enumerate(spec.slices):
                entry = (target.site, target.part, group, k)
                planned.setdefault(target.host_name, []).append(entry)
        config.groups = [group_record(g) for g, _ in built]
        self.groups[adapter_name] = TCURGroups({str(i): g for i, (g, _) in enumerate(built)})
        self._planned[adapter_name] = planned

    def merge_adapter(
        self, adapter_names: list[str] | None = None, safe_merge: bool = False
    ) -> None:
        """PEFT's ``merge_adapter``, after every tcur layer has checked that the merge would
        not be lost (:meth:`TCURPeftBase.check_mergeable`): a refused merge changes nothing."""
        self._check_mergeable(adapter_names)
        super().merge_adapter(adapter_names, safe_merge)

    def merge_and_unload(
        self,
        progressbar: bool = False,
        safe_merge: bool = False,
        adapter_names: list[str] | None = None,
    ) -> nn.Module:
        """PEFT's ``merge_and_unload``, after the check of :meth:`merge_adapter`."""
        self._check_mergeable(adapter_names)
        return super().merge_and_unload(progressbar, safe_merge, adapter_names)

    def _check_mergeable(self, adapter_names: list[str] | None) -> None:
        names = list(self.active_adapters if adapter_names is None else adapter_names)
        for module in self.model.modules():
            if isinstance(module, TCURPeftBase):
                module.check_mergeable([name for name in names if name in module.tcur_sites])

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
        self._container(adapter_name).attach(model, self, f"{self.groups_attr}.{adapter_name}")
        release_fast_paths(self._fast_paths)
        self._fast_paths = guard_fast_paths(model, lambda m: isinstance(m, TCURPeftBase))

    @contextmanager
    def _enable_peft_forward_hooks(self, *args: Any, **kwargs: Any) -> Iterator[None]:
        """Refuse ``adapter_names`` (mixed adapter batches) instead of ignoring it."""
        if kwargs.get("adapter_names") is not None:
            _refuse_adapter_names(kwargs)
        yield

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
        sites: Sites = {}
        for site, _, group, k in sorted(self._planned[adapter_name][current_key], key=_part):
            sites.setdefault(site, []).append((group, k))
        options = (peft_config.dropout, peft_config.forward, peft_config.exact_unmerge)
        if isinstance(target, TCURPeftBase):
            target.update_layer(adapter_name, sites, *options)
            return
        kind = TCURPeftAttention if isinstance(target, nn.MultiheadAttention) else TCURPeftLayer
        layer = kind(target, adapter_name, sites, *options)
        self._replace_module(parent, target_name, layer, target)

    def _replace_module(
        self, parent: nn.Module, child_name: str, new_module: nn.Module, child: nn.Module
    ) -> None:
        """Put ``new_module`` in place (tcur layers hold no parameters of their own to move).

        PEFT's version copies ``child.weight`` onto a returned base module, which an
        ``nn.MultiheadAttention`` does not have.
        """
        setattr(parent, child_name, new_module)

    def _set_group_grads(self, inference_mode: bool | None = None) -> None:
        for name, container in self.groups.items():
            frozen = (
                self.peft_config[name].inference_mode if inference_mode is None else inference_mode
            )
            trainable = name in self.active_adapters and not frozen
            for group in _members(container):
                group.dU.requires_grad_(trainable)

    def _enable_adapter_layers(self, enabled: bool = True) -> None:
        """PEFT's switch of every layer, plus the groups' ``dU``, which live on the tuner.

        Disabled: no ``dU`` trains. Enabled again: the active adapters' ``dU`` train unless
        their config is in ``inference_mode``.
        """
        super()._enable_adapter_layers(enabled)
        if enabled:
            self._set_group_grads()
            return
        for container in self.groups.values():
            for group in _members(container):
                group.dU.requires_grad_(False)

    def set_requires_grad(
        self, adapter_names: str | Sequence[str], requires_grad: bool = True
    ) -> None:
        """Turn gradients of the named adapters on or off, the shared ``dU`` included.

        Raises ``ValueError`` naming an adapter this model does not have.
        """
        names = [adapter_names] if isinstance(adapter_names, str) else list(adapter_names)
        unknown = [name for name in names if name not in self.groups]
        if unknown:
            raise ValueError(
                f"set_requires_grad: no adapter named {unknown[0]!r}; this model has "
                f"{sorted(self.groups)}"
            )
        super().set_requires_grad(names, requires_grad)
        for name in names:
            for group in _members(self.groups[name]):
                group.dU.requires_grad_(requires_grad)

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
        self._container(adapter_name).detach()
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
        if not merge:  # unload() gives back the base model: take merged updates out first
            for _, _, layer in _base_layers_view(self.model):
                if layer.merged:
                    layer.unmerge()
        model = super()._unload_and_optionally_merge(merge, progressbar, safe_merge, adapter_names)
        for name in list(self.groups):
            self._container(name).detach()
        release_fast_paths(self._fast_paths)
        self._fast_paths = []
        self.groups.clear()
        return model

    @classmethod
    def _get_adapter_state_dict(
        cls,
        model: nn.Module,
        config: PeftConfig,
        adapter_name: str,
        state_dict: dict[str, torch.Tensor],
        unwanted_adapter_names: list[str],
    ) -> dict[str, torch.Tensor]:
        """PEFT's selection of the adapter's entries (``save_pretrained``, Trainer checkpoints);
        ``ValueError`` for an adapter whose gradient bases are not computed yet (its file could
        not be loaded)."""
        tuner = getattr(model, "base_model", model)
        groups = tuner.groups if isinstance(tuner, TCURTuner) else nn.ModuleDict()
        pending = adapter_name in groups and any(
            g.bases_pending for g in _members(groups[adapter_name])
        )
        if pending:
            raise ValueError(
                f"adapter {adapter_name!r} has gradient bases that are not computed yet, so "
                "there is nothing to save: call tcur.adapters.peft.initialize_gradient_bases("
                f"peft_model, gradients, adapter_name={adapter_name!r}) first"
            )
        result: dict[str, torch.Tensor] = super()._get_adapter_state_dict(
            model, config, adapter_name, state_dict, unwanted_adapter_names
        )
        return result

    @classmethod
    def _remove_adapter_name_from_key(cls, key: str, adapter_name: str) -> str:
        marker = f"{cls.groups_attr}.{adapter_name}."
        if marker in key:
            return key.replace(marker, f"{cls.groups_attr}.", 1)
        result: str = super()._remove_adapter_name_from_key(key, adapter_name)
        return result


def _part(item: tuple[str, int, TCURGroup, int]) -> tuple[str, int]:
    return item[0], item[1]


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


def initialize_gradient_bases(
    model: nn.Module, gradients: Mapping[str, torch.Tensor], adapter_name: str = "default"
) -> None:
    """Compute the bases of a ``basis="gradient"`` adapter made by ``get_peft_model``.

    ``get_peft_model`` (or ``add_adapter``) builds such an adapter with its bases pending; it
    refuses to run until this function gives each group ``C``/``R``, the leading t-singular
    vectors of its weights' loss gradients (as :func:`tcur.adapters.apply` does with
    ``gradients=``). The gradients are taken on the base model, before wrapping, with
    :func:`tcur.adapters.loss_gradients` and ``config.tcur_config()``. ``save_pretrained``
    then saves the bases and ``PeftModel.from_pretrained`` loads them.

    Parameters
    ----------
    model : peft.PeftModel
        A model from ``get_peft_model`` with a tcur adapter (or its tuner, ``base_model``).
    gradients : mapping of str to torch.Tensor
        Target weight path (in the base model) to its summed loss gradient.
    adapter_name : str
        Which adapter (default ``"default"``).

    Raises
    ------
    TypeError
        ``model`` has no tcur tuner.
    ValueError
        No such adapter, an adapter without gradient bases or with its bases already set, or
        missing, misshaped or non-finite gradients (nothing is changed then).

    Examples
    --------
    >>> import torch
    >>> from peft import get_peft_model
    >>> from tcur.adapters import loss_gradients
    >>> from tcur.adapters.peft import TCURLoRAPeftConfig, initialize_gradient_bases
    >>> class Net(torch.nn.Module):
    ...     def __init__(self):
    ...         super().__init__()
    ...         self.layers = torch.nn.ModuleList(torch.nn.Linear(6, 6) for _ in range(3))
    ...     def forward(self, x):
    ...         for layer in self.layers:
    ...             x = torch.tanh(layer(x))
    ...         return x
    >>> model = Net()
    >>> config = TCURLoRAPeftConfig(target_modules=["layers.0", "layers.1", "layers.2"],
    ...                             rank=2, basis="gradient")
    >>> batches = [torch.randn(4, 6) for _ in range(2)]
    >>> grads = loss_gradients(model, config.tcur_config(), batches, lambda m, b: m(b).sum())
    >>> peft_model = get_peft_model(model, config)
    >>> initialize_gradient_bases(peft_model, grads)
    >>> peft_model(torch.randn(1, 6)).shape
    torch.Size([1, 6])
    """
    tuner = getattr(model, "base_model", model)
    if not isinstance(tuner, TCURTuner):
        raise TypeError(
            f"initialize_gradient_bases needs a PeftModel with a tcur adapter, got "
            f"{type(model).__name__}"
        )
    if adapter_name not in tuner.groups:
        raise ValueError(
            f"adapter_name={adapter_name!r}: this model has adapters {sorted(tuner.groups)}"
        )
    config = tuner.peft_config[adapter_name]
    assert isinstance(config, _CURPeftFields) and config.groups is not None  # a tcur tuner's
    tcur = config.tcur_config()
    if tcur.basis != "gradient":
        raise ValueError(
            f"adapter {adapter_name!r} has basis={tcur.basis!r}; only basis='gradient' takes "
            "gradients"
        )
    groups = _members(tuner.groups[adapter_name])
    if not all(group.bases_pending for group in groups):
        raise ValueError(f"adapter {adapter_name!r} has its gradient bases already")
    n_rows, n_cols = counts(tcur)
    with _base_layers_in_place(tuner.model):
        specs = _specs_from_records(tuner.model, tcur, config.groups)
        check_gradients(gradients, [t for spec in specs for t in spec.slices], tcur.basis)
        bases = [gradient_bases(s.slices, gradients, n_rows, n_cols, s.key) for s in specs]
    for group, (C, R) in zip(groups, bases, strict=True):
        group.set_bases(C, R)


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
