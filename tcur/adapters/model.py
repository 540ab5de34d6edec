"""Putting adapters into a model and taking them out: apply, merge, unmerge, unload, counts,
and the calibration gradients that ``basis="gradient"`` builds its adapters from.

:func:`apply` changes the model in place (and returns it): every parameter is frozen, each target
layer is replaced by a :class:`~tcur.adapters.layers.TCURLayer` that keeps the original as
``base_layer``, and only the groups' ``dU`` and the ``modules_to_save`` are trainable. The groups
are owned by one :class:`~tcur.adapters.groups.TCURGroups` container registered on the root as
``model.tcur_groups`` (see :mod:`tcur.adapters.groups`), so that FSDP2's per-block sharding never
splits a group. Row/column selection needs whole weights: apply before sharding (``fully_shard``)
or wrapping; :func:`apply` refuses sharded (``DTensor``) parameters. Unlike
PEFT, ``modules_to_save`` are trained in place (no copy is kept), so :func:`unload` leaves them
trained. A forward pre-hook on the model (installed by the container) starts every forward pass
with fresh per-pass operands.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from tcur.adapters.calibration import check_gradients
from tcur.adapters.groups import TCURGroup, TCURGroups
from tcur.adapters.layers import (
    AdapterLayer,
    TCURAttention,
    TCURLayer,
    check_mergeable,
    guard_fast_paths,
    release_fast_paths,
)
from tcur.adapters.plan import (
    AdapterConfig,
    GroupSpec,
    build_groups,
    check_not_sharded,
    check_tied_targets,
    config_targets,
    match_modules_to_save,
    target_groups,
)
from tcur.adapters.targets import site_owner

CONFIG_ATTR = "tcur_adapter_config"
GROUPS_ATTR = "tcur_groups"
_STATE_ATTR = "_tcur_adapter_state"


def apply(
    model: nn.Module,
    config: AdapterConfig,
    *,
    gradients: Mapping[str, torch.Tensor] | None = None,
) -> nn.Module:
    """Add CURLoRA or tCURLoRA adapters to ``model`` in place and return it.

    Parameters
    ----------
    model : torch.nn.Module
        The base model (not yet adapted).
    config : CURLoRAConfig or TCURLoRAConfig
    gradients : mapping of str to torch.Tensor, optional
        Required with ``config.basis == "gradient"`` (and refused otherwise): each target
        weight's loss gradient over a few calibration batches, from :func:`loss_gradients`.

    Returns
    -------
    torch.nn.Module
        ``model`` itself; at this point its outputs equal the base model's exactly.

    Examples
    --------
    >>> import torch
    >>> from tcur.adapters import TCURLoRAConfig, apply, trainable_parameters
    >>> torch.manual_seed(0) and None
    >>> model = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.ReLU(), torch.nn.Linear(8, 8))
    >>> x = torch.randn(3, 8)
    >>> before = model(x)
    >>> model = apply(model, TCURLoRAConfig(["0", "2"], rank=2, group_by="shape"))
    >>> torch.equal(model(x), before)
    True
    >>> trainable_parameters(model)  # one dU (2 x 2 x 2) next to 2 * 72 frozen base weights
    (8, 152)
    """
    if is_adapted(model):
        raise ValueError("model already has tcur adapters; call tcur.adapters.unload(model) first")
    check_not_sharded(model)
    groups = target_groups(model, config)  # finds and checks every target; changes nothing
    slices = [s for members in groups.values() for s in members]
    check_tied_targets(slices)
    checked = check_gradients(gradients, slices, config.basis)
    saved = match_modules_to_save(model, config.modules_to_save, slices)
    inject(model, config, build_groups(groups, config, checked), saved)
    return model


def loss_gradients(
    model: nn.Module,
    config: AdapterConfig,
    batches: Iterable[Any],
    loss: Callable[[nn.Module, Any], torch.Tensor],
) -> dict[str, torch.Tensor]:
    """The loss gradient of each target weight of ``config``, summed over ``batches``.

    Parameters
    ----------
    model : torch.nn.Module
        The base model (not yet adapted). It runs in eval mode (no dropout draw decides the
        bases) and is given back with every module's mode, every ``requires_grad`` flag and
        every ``.grad`` as they were. Gradients are recorded even inside ``torch.no_grad()``.
    config : CURLoRAConfig or TCURLoRAConfig
        Its ``target_modules`` (and ``split_fused``) say which weights.
    batches : iterable
        Calibration batches, e.g. the first few training batches.
    loss : callable
        ``loss(model, batch)``: a scalar tensor, e.g. ``lambda m, b: m(**b).loss``.

    Returns
    -------
    dict of str to torch.Tensor
        Weight path (as in the module tree: ``"encoder.layer.0.attention.self.query"``, or
        ``"path.attr"`` for a weight not called ``weight``) to the summed gradient, shaped like
        the stored weight (float32 for half-precision weights): what
        :func:`tcur.adapters.apply` takes as ``gradients``.

    Examples
    --------
    >>> import torch
    >>> from tcur.adapters import TCURLoRAConfig, apply, loss_gradients
    >>> torch.manual_seed(0) and None
    >>> net = torch.nn.Sequential(torch.nn.Linear(6, 6), torch.nn.Tanh(), torch.nn.Linear(6, 1))
    >>> config = TCURLoRAConfig(["0"], rank=2, basis="gradient")
    >>> batches = [torch.randn(8, 6) for _ in range(3)]
    >>> grads = loss_gradients(net, config, batches, lambda m, x: m(x).pow(2).mean())
    >>> sorted(grads), tuple(grads["0"].shape)
    (['0'], (6, 6))
    >>> net = apply(net, config, gradients=grads)
    """
    if not callable(loss):
        raise TypeError(f"loss must be a callable loss(model, batch), got {loss!r}")
    if is_adapted(model):
        raise ValueError("model already has tcur adapters; loss_gradients needs the base model")
    wrapped = next((n for n, m in model.named_modules() if "base_layer" in m._modules), None)
    if wrapped is not None:
        raise ValueError(
            f"model has PEFT adapter layers ({wrapped!r} wraps a base_layer); loss_gradients "
            "needs the base model: compute the gradients before get_peft_model"
        )
    weights = _target_weights(model, config)
    flags = {name: p.requires_grad for name, p in model.named_parameters()}
    modes = {module: module.training for module in model.modules()}
    total = {  # summed in at least float32: half-precision sums drift over many batches
        label: torch.zeros_like(w, dtype=torch.promote_types(w.dtype, torch.float32))
        for label, w in weights.items()
    }
    count = 0
    try:
        model.eval()
        for w in weights.values():
            w.requires_grad_(True)
        with torch.enable_grad():
            for batch in batches:
                value = _checked_loss(loss(model, batch))
                grads = torch.autograd.grad(value, list(weights.values()), allow_unused=True)
                for label, grad in zip(weights, grads, strict=True):
                    if grad is not None:
                        total[label] += grad
                count += 1
    finally:
        for module, mode in modes.items():
            module.training = mode
        for name, parameter in model.named_parameters():
            parameter.requires_grad_(flags[name])
    if count == 0:
        raise ValueError("batches is empty: the gradient bases need at least one batch")
    return total


def _target_weights(model: nn.Module, config: AdapterConfig) -> dict[str, torch.Tensor]:
    """Weight path -> stored weight of every target of ``config`` (each weight once)."""
    out: dict[str, torch.Tensor] = {}
    for target in config_targets(model, config):
        weight = target.parameter()
        if not weight.is_floating_point():
            raise TypeError(f"target weight {target.weight_label!r} is not floating point")
        out.setdefault(target.weight_label, weight)
    return out


def _checked_loss(value: Any) -> torch.Tensor:
    """``value`` if it is a floating scalar tensor that autograd can differentiate."""
    if not isinstance(value, torch.Tensor) or value.numel() != 1 or not value.is_floating_point():
        raise ValueError(
            f"loss(model, batch) must return a floating scalar tensor, got {_describe(value)}"
        )
    if not value.requires_grad:
        raise ValueError(
            "loss(model, batch) returned a tensor that does not depend on the target weights "
            "(detached, or computed under torch.no_grad inside loss?)"
        )
    return value


def _describe(value: Any) -> str:
    if isinstance(value, torch.Tensor):
        return f"a {value.dtype} tensor of shape {tuple(value.shape)}"
    return f"{value!r} ({type(value).__name__})"


def is_adapted(model: nn.Module) -> bool:
    """True if :func:`apply` (or ``load``) added adapters to ``model``."""
    return hasattr(model, CONFIG_ATTR)


def full_tensor(tensor: torch.Tensor) -> torch.Tensor:
    """``tensor`` itself, or the whole tensor of a sharded ``DTensor`` (FSDP2).

    Gathering a ``DTensor`` is a collective: every rank must call this, in the same order.

    Examples
    --------
    >>> import torch
    >>> from tcur.adapters.model import full_tensor
    >>> t = torch.ones(2)
    >>> full_tensor(t) is t
    True
    """
    gather = getattr(tensor, "full_tensor", None)
    if gather is None:
        return tensor
    whole: torch.Tensor = gather()
    return whole


def adapter_config(model: nn.Module) -> AdapterConfig:
    """The config ``model`` was adapted with; ``ValueError`` if it has no adapters."""
    if not is_adapted(model):
        raise ValueError("model has no tcur adapters (use tcur.adapters.apply first)")
    config: AdapterConfig = getattr(model, CONFIG_ATTR)
    return config


def inject(
    model: nn.Module,
    config: AdapterConfig,
    built: Sequence[tuple[TCURGroup, GroupSpec]],
    modules_to_save: Sequence[tuple[str, nn.Module]] = (),
) -> None:
    """Freeze ``model``, wrap the target layers with the built groups and set up training flags.

    The caller has checked everything (:mod:`tcur.adapters.plan`: not sharded, targets,
    ``modules_to_save`` matched into ``modules_to_save``, which train). The groups are registered,
    in the order of ``built``, in a :class:`~tcur.adapters.groups.TCURGroups` on the root
    (``model.tcur_groups``), which attaches its hooks to the model
    (:meth:`~tcur.adapters.groups.TCURGroups.attach`). A target reachable under several names is
    replaced under all of them by one layer.
    """
    if hasattr(model, GROUPS_ATTR):
        raise ValueError(f"model already has an attribute {GROUPS_ATTR!r}; cannot add adapters")
    flags = {name: p.requires_grad for name, p in model.named_parameters()}
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    for name, sites in _sites_by_host(built).items():
        base = model.get_submodule(name)
        layer: AdapterLayer
        if isinstance(base, nn.MultiheadAttention):
            layer = TCURAttention(base)
        else:
            layer = TCURLayer(base, config.dropout, config.forward)
        for site, parts in sites.items():
            for _, group, k in sorted(parts, key=lambda item: item[0]):
                layer.add_part(group, k, site)
        _replace(model, name, layer)
    container = TCURGroups({str(i): group for i, (group, _) in enumerate(built)})
    model.add_module(GROUPS_ATTR, container)
    for _, module in modules_to_save:
        module.requires_grad_(True)
    container.attach(model, model, GROUPS_ATTR)
    fast_paths = guard_fast_paths(model, lambda m: isinstance(m, AdapterLayer))
    setattr(model, CONFIG_ATTR, config)
    setattr(model, _STATE_ATTR, {"requires_grad": flags, "fast_paths": fast_paths})


def _sites_by_host(
    built: Sequence[tuple[TCURGroup, GroupSpec]],
) -> dict[str, dict[str, list[tuple[int, TCURGroup, int]]]]:
    """``host path -> weight site -> [(part, group, slice)]`` of the built groups."""
    hosts: dict[str, dict[str, list[tuple[int, TCURGroup, int]]]] = {}
    for group, spec in built:
        for k, target in enumerate(spec.slices):
            sites = hosts.setdefault(target.host_name, {})
            sites.setdefault(target.site, []).append((target.part, group, k))
    return hosts


def _replace(model: nn.Module, name: str, new: nn.Module) -> None:
    """Put ``new`` wherever the module at ``name`` sits (every alias of it)."""
    old = model.get_submodule(name)
    slots = [
        (parent, key)
        for _, parent in model.named_modules(remove_duplicate=False)
        for key, child in parent._modules.items()
        if child is old
    ]
    for parent, key in slots:
        setattr(parent, key, new)


def adapter_layers(model: nn.Module) -> list[tuple[str, AdapterLayer]]:
    """``(name, layer)`` of every adapter layer of ``model`` (:class:`TCURLayer`,
    :class:`~tcur.adapters.layers.TCURAttention`), in module order."""
    return [(n, m) for n, m in model.named_modules() if isinstance(m, AdapterLayer)]


def adapter_groups(model: nn.Module) -> list[TCURGroup]:
    """Every adapter group of ``model`` once, in module order (the order ``save`` uses).

    ``model`` may be the adapted model or a wrapper around it (DDP, FSDP2, a PEFT model): the
    groups are found wherever their :class:`~tcur.adapters.layers.TCURGroups` sits.
    """
    seen: dict[int, TCURGroup] = {}
    for module in model.modules():
        if isinstance(module, TCURGroup):
            seen.setdefault(id(module), module)
    return list(seen.values())


def trainable_parameters(model: nn.Module) -> tuple[int, int]:
    """``(trainable, total)`` parameter counts (shared parameters counted once).

    Examples
    --------
    >>> import torch
    >>> from tcur.adapters import trainable_parameters
    >>> trainable_parameters(torch.nn.Linear(3, 2))
    (8, 8)
    """
    params = list(model.parameters())
    trainable = sum(p.numel() for p in params if p.requires_grad)
    return trainable, sum(p.numel() for p in params)


def print_trainable_parameters(model: nn.Module) -> None:
    """Print ``trainable params: ... || all params: ... || trainable%: ...`` like PEFT.

    Examples
    --------
    >>> import torch
    >>> from tcur.adapters import print_trainable_parameters
    >>> print_trainable_parameters(torch.nn.Linear(3, 2))
    trainable params: 8 || all params: 8 || trainable%: 100.0000
    """
    trainable, total = trainable_parameters(model)
    share = 100.0 * trainable / total if total else 0.0
    print(f"trainable params: {trainable:,} || all params: {total:,} || trainable%: {share:.4f}")


@torch.no_grad()
@contextlib.contextmanager
def disable_adapters(model: nn.Module) -> Iterator[nn.Module]:
    """Context in which ``model`` computes as its base model (PEFT's ``disable_adapter()``).

    Every adapter layer returns its base layer's output inside the context and the adapter's
    again after it (also when the body raises); nothing is unloaded or copied. A merged model is
    refused: its base weights hold the update (:func:`unmerge` first). ``modules_to_save`` are
    trained in place by the native host (PEFT trains copies), so they keep their trained state
    inside the context.

    Examples
    --------
    >>> import torch
    >>> from tcur.adapters import TCURLoRAConfig, adapter_groups, apply, disable_adapters
    >>> net = apply(torch.nn.Sequential(torch.nn.Linear(6, 6), torch.nn.Linear(6, 6)),
    ...             TCURLoRAConfig(["0", "1"], rank=2))
    >>> with torch.no_grad():
    ...     _ = adapter_groups(net)[0].dU.fill_(1.0)
    >>> x = torch.randn(2, 6)
    >>> with disable_adapters(net):
    ...     base = net(x)
    >>> bool(torch.equal(base, net[1].base_layer(net[0].base_layer(x))))
    True
    """
    layers = _layers_or_raise(model, "disable")
    merged = [name for name, layer in layers if layer.merged]
    if merged:
        raise ValueError(
            f"cannot disable the adapters of a merged model ({merged[0]}); unmerge first"
        )
    for _, layer in layers:
        layer.disabled = True
    try:
        yield model
    finally:
        for _, layer in layers:
            layer.disabled = False


def merge(model: nn.Module, *, safe: bool = True) -> None:
    """Add every adapter's update into its base weight; merged layers run the base layer only.

    With ``safe=True`` all updates are computed and checked first, and nothing is changed if
    any is not finite (``ValueError`` naming the layer, worded as PEFT's). Already merged layers
    are skipped, so an update is never added twice. With the config's ``exact_unmerge=True``
    (default) a copy of every targeted weight is kept until :func:`unmerge` (memory: the
    targeted weights once more, only while merged). Training a merged model does not change its
    outputs; unmerge first.

    Examples
    --------
    >>> import torch
    >>> from tcur.adapters import CURLoRAConfig, apply, merge, unmerge
    >>> model = apply(torch.nn.Sequential(torch.nn.Linear(6, 6)), CURLoRAConfig(["0"], rank=2))
    >>> with torch.no_grad():
    ...     _ = model[0].parts[0][0].dU.fill_(0.5)
    ...     x = torch.randn(2, 6)
    ...     y = model(x)
    ...     merge(model)
    ...     merged_ok = torch.allclose(model(x), y, atol=1e-5)
    ...     unmerge(model)
    ...     unmerged_ok = torch.allclose(model(x), y, atol=1e-5)
    >>> merged_ok, unmerged_ok
    (True, True)
    """
    _merge_layers(model, safe)


def _layers_or_raise(model: nn.Module, action: str) -> list[tuple[str, AdapterLayer]]:
    layers = adapter_layers(model)
    if not layers:
        raise ValueError(
            f"cannot {action}: model has no tcur adapters (use tcur.adapters.apply first)"
        )
    return layers


def _check_untied(model: nn.Module, pending: Sequence[tuple[str, AdapterLayer]]) -> None:
    """``ValueError`` if a weight to merge into is also used by a module outside its layer."""
    weights: dict[int, tuple[str, nn.Module]] = {}
    for name, layer in pending:
        for site in layer.sites:
            owner, attr = site_owner(layer.base_layer, site)
            weights[id(getattr(owner, attr))] = (name, owner)
    for module_name, module in model.named_modules(remove_duplicate=False):
        for parameter in module._parameters.values():
            found = weights.get(id(parameter))
            if found is not None and module is not found[1]:
                raise ValueError(
                    f"refusing to merge: the weight of adapted layer {found[0]!r} is tied to "
                    f"module {module_name!r}; merging would change that module's outputs too"
                )


def _merge_layers(model: nn.Module, safe: bool) -> None:
    pending = [
        (name, layer) for name, layer in _layers_or_raise(model, "merge") if not layer.merged
    ]
    _check_untied(model, pending)
    for name, layer in pending:
        check_mergeable(layer.base_layer, layer.sites, name)
    deltas = [layer.site_deltas() for _, layer in pending]
    if safe:
        for (name, _), updates in zip(pending, deltas, strict=True):
            for site, delta in updates.items():
                if not bool(torch.isfinite(delta).all()):
                    where = name if site == "weight" else f"{name}.{site}"
                    raise ValueError(
                        f"NaNs detected in the merged weights. The adapter of layer {where!r} "
                        "seems to be broken: its update is not finite; nothing was merged"
                    )
    keep = keep_originals(model)
    for (_, layer), updates in zip(pending, deltas, strict=True):
        layer.merge_updates(updates, keep)


def keep_originals(model: nn.Module) -> bool:
    """Whether merging keeps a copy of the targeted weights (the config's ``exact_unmerge``)."""
    return bool(getattr(adapter_config(model), "exact_unmerge", True))


@torch.no_grad()
def unmerge(model: nn.Module) -> None:
    """Take out the updates that :func:`merge` added and re-enable the adapters.

    With the config's ``exact_unmerge=True`` (default) the weights kept at merge time are put
    back (bit for bit); with ``exact_unmerge=False`` the update is subtracted, which restores
    them within one rounding of their dtype.
    """
    for _, layer in _layers_or_raise(model, "unmerge"):
        if layer.merged:
            layer.unmerge_updates()


def unload(model: nn.Module, *, merge: bool = False) -> nn.Module:
    """Remove the adapters and return the plain model (in place), as PEFT's ``unload``.

    ``merge=False`` gives back the base model: merged layers are unmerged first, which restores
    their weights bit for bit with the config's ``exact_unmerge=True`` (the default) and within
    one rounding of their dtype with ``exact_unmerge=False``. ``merge=True`` keeps the adapters'
    effect in the weights (PEFT's ``merge_and_unload``). The parameters' ``requires_grad`` flags
    are restored to what they were before :func:`apply`.
    """
    adapter_config(model)
    state = getattr(model, _STATE_ATTR)
    with torch.no_grad():
        if merge:
            _merge_layers(model, safe=True)
        else:
            unmerge(model)
    for name, layer in adapter_layers(model):
        _replace(model, name, layer.base_layer)
    container = getattr(model, GROUPS_ATTR)
    if isinstance(container, TCURGroups):
        container.detach()
    delattr(model, GROUPS_ATTR)
    for name, parameter in model.named_parameters():
        parameter.requires_grad_(state["requires_grad"].get(name, True))
    release_fast_paths(state["fast_paths"])
    delattr(model, _STATE_ATTR)
    delattr(model, CONFIG_ATTR)
    return model
