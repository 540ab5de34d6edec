"""From a config to adapter groups: targets, grouping, row/column selection, frozen C and R.

Everything here runs before a host changes the model, once per ``apply`` / ``get_peft_model`` /
``load``: :func:`check_not_sharded`, :func:`target_groups` (targets found and checked, then
grouped), :func:`check_tied_targets`, :func:`match_modules_to_save` (matched once, checked against
the targets, handed to the host) and :func:`build_groups`, which stacks each group's weights once
and from that one stack selects its indices (the only random step, seeded by
``config.seed + group index``), cuts ``C``/``R`` and computes the scale
(:func:`build_group`). ``load`` and PEFT's ``from_pretrained`` build the same groups from the
saved indices instead of selecting again (:func:`spec_from_record`, :func:`check_coverage`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from tcur._backend import as_float_array
from tcur.adapters.calibration import gradient_bases
from tcur.adapters.config import CURLoRAConfig, TCURLoRAConfig
from tcur.adapters.fingerprint import (
    code_dtype,
    comparison_rounding,
    config_digest,
    incomparable,
    weight_digest,
)
from tcur.adapters.groups import TCURGroup
from tcur.adapters.targets import (
    TargetSlice,
    check_splits_used,
    find_targets,
    group_targets,
    match_modules,
    own_forward,
)
from tcur.linalg.selection import select_matrix
from tcur.linalg.tensor_cur import select_tensor_indices

AdapterConfig = CURLoRAConfig | TCURLoRAConfig


@dataclass(frozen=True)
class GroupSpec:
    """A group before it is built: its key, its slices in tube order and the selected indices."""

    key: str
    slices: list[TargetSlice]
    rows: list[int]
    cols: list[int]

    @property
    def shape(self) -> tuple[int, int]:
        """``(d_out, d_in)`` of every slice."""
        return self.slices[0].shape


def counts(config: AdapterConfig) -> tuple[int, int]:
    """``(n_rows, n_cols)`` that ``config`` selects per group."""
    if isinstance(config, TCURLoRAConfig):
        assert config.n_rows is not None and config.n_cols is not None
        return config.n_rows, config.n_cols
    return config.rank, config.rank


def selected_counts(config: AdapterConfig) -> tuple[int, int]:
    """``(rows, columns)`` of the base weights that a group of ``config`` keeps: :func:`counts`,
    or none for ``basis="gradient"`` (its ``C``/``R`` are not rows and columns of ``W``)."""
    return (0, 0) if config.basis == "gradient" else counts(config)


def config_targets(model: nn.Module, config: AdapterConfig) -> list[TargetSlice]:
    """The target slices of ``config`` in ``model``, checked against its forward options.

    A weight hosted by substitution (an attention module's, :mod:`tcur.adapters.targets`) is
    always materialized and has no adapter input to drop out, so ``forward="factored"`` and
    ``dropout > 0`` are refused for it (``ValueError`` naming the weight) rather than ignored.
    """
    split = config.split_fused if isinstance(config, TCURLoRAConfig) else None
    slices = find_targets(model, config.target_modules, split)
    for s in slices:
        if s.parameter().is_meta:
            raise ValueError(
                f"target weight {s.weight_label!r} is on the meta device (no values): rows and "
                "columns are selected from the weights, so materialize the model first (e.g. "
                "model.to_empty(device=...) then load_state_dict, or from_pretrained) and then "
                "add the adapters"
            )
        if not s.substituted:
            continue
        why = ""
        if config.forward == "factored":
            why = "forward='factored' (use 'auto' or 'materialized')"
        elif config.dropout > 0:
            why = f"dropout={config.dropout} (use dropout=0 or leave this weight out)"
        if why:
            raise ValueError(
                f"target weight {s.weight_label!r} cannot be adapted with {why}: "
                f"{type(s.module).__name__ if s.host is None else 'nn.MultiheadAttention'} reads "
                "its weights directly, so the update is always materialized into the weight and "
                "has no input of its own to drop out"
            )
    return slices


def _check_own_forward(target: TargetSlice, config: AdapterConfig) -> None:
    """``ValueError`` for ``forward="materialized"`` on a layer with its own ``forward``, which the
    materialized product would bypass (:func:`tcur.adapters.targets.layer_strategy`)."""
    kind = own_forward(target.module)
    if kind is not None and config.forward == "materialized":
        raise ValueError(
            f"target {target.weight_label!r} cannot be adapted with forward='materialized': "
            f"{kind} overrides forward, and the materialized product x (W + Delta)^T + b would "
            "bypass it; use forward='auto' or 'factored' (its output plus the update)"
        )


def target_groups(model: nn.Module, config: AdapterConfig) -> dict[str, list[TargetSlice]]:
    """The groups of target slices: one per matrix for CURLoRA, by ``group_by`` for tCURLoRA.

    The path of a new selection (``apply``, ``get_peft_model``), which also refuses options that
    would be ignored: ``forward="materialized"`` on a layer with its own ``forward`` and a
    ``split_fused`` key that matches no target weight (an adapter saved with them still loads).
    """
    slices = config_targets(model, config)
    for target in slices:
        if not target.substituted:
            _check_own_forward(target, config)
    if isinstance(config, TCURLoRAConfig):
        check_splits_used(config.split_fused or {}, slices)
    if isinstance(config, TCURLoRAConfig):
        return group_targets(slices, config.group_by)
    return {s.label: [s] for s in slices}


def stacked_weights(slices: Sequence[TargetSlice]) -> torch.Tensor:
    """The slices' ``(out, in)`` weights stacked along a last (tube) axis, detached."""
    return torch.stack([s.weight().detach() for s in slices], dim=2)


def check_counts(key: str, shape: tuple[int, int], config: AdapterConfig) -> None:
    """``ValueError`` if ``rank``, ``n_rows`` or ``n_cols`` do not fit slices of ``shape``."""
    n_rows, n_cols = counts(config)
    d_out, d_in = shape
    limits = [
        ("rank", config.rank, min(shape)),
        ("n_rows", n_rows, d_out),
        ("n_cols", n_cols, d_in),
    ]
    if config.basis == "gradient":  # at most min(shape) singular vectors on either side
        limits += [("n_rows", n_rows, min(shape)), ("n_cols", n_cols, min(shape))]
    for name, value, limit in limits:
        if value > limit:
            raise ValueError(
                f"{name}={value} is too large for group {key!r}: its slices are {d_out} x {d_in}, "
                f"so {name} can be at most {limit}"
            )


def select(stack: torch.Tensor, config: AdapterConfig, seed: int) -> tuple[list[int], list[int]]:
    """Rows and columns of one group by the config's rule (matrix rule when ``n3 == 1``)."""
    n_rows, n_cols = counts(config)
    A = as_float_array(stack, "stacked weights", ndim=3)
    if isinstance(config, CURLoRAConfig):
        chosen = select_matrix(
            A[:, :, 0], config.rank, n_rows, n_cols, select=config.select, seed=seed
        )
        rows, cols = chosen.rows, chosen.cols
    else:
        rows, cols = select_tensor_indices(
            A, config.rank, n_rows, n_cols, select=config.select, seed=seed
        )
    return rows.tolist(), cols.tolist()


def build_groups(
    groups: Mapping[str, Sequence[TargetSlice]],
    config: AdapterConfig,
    gradients: Mapping[str, torch.Tensor] | None = None,
    *,
    bases_later: bool = False,
) -> list[tuple[TCURGroup, GroupSpec]]:
    """Select each group's rows and columns and build it, stacking its weights once.

    ``groups`` is :func:`target_groups`'s ``key -> slices``. Group ``i`` is selected with seed
    ``config.seed + i``; its one stack serves the selection, ``C``/``R`` and the scale, and is
    dropped before the next group's is made (peak memory: one group's stack). Every group's
    counts are checked before any selection runs. With ``basis="gradient"``, ``C``/``R`` come
    from the group's ``gradients`` instead (:func:`tcur.adapters.calibration.gradient_bases`;
    checked by :func:`tcur.adapters.calibration.check_gradients`) and no rows or columns are
    selected; ``bases_later=True`` builds them with :func:`pending_bases` instead (PEFT's
    ``get_peft_model``, where the gradients come after; the caller marks the groups with
    :meth:`~tcur.adapters.groups.TCURGroup.await_bases`).
    """
    for key, slices in groups.items():
        check_counts(key, slices[0].shape, config)
    built = []
    for index, (key, slices) in enumerate(groups.items()):
        stack = stacked_weights(slices)
        bases = None
        rows: list[int] = []
        cols: list[int] = []
        if config.basis == "gradient" and bases_later:
            bases = pending_bases(slices, config)
        elif config.basis == "gradient":
            if gradients is None:
                raise ValueError("basis='gradient' needs the targets' gradients (gradients=)")
            n_rows, n_cols = counts(config)
            bases = gradient_bases(slices, gradients, n_rows, n_cols, key)
        else:
            rows, cols = select(stack, config, config.seed + index)
        spec = GroupSpec(key, list(slices), rows, cols)
        built.append((build_group(spec, config, stack=stack, bases=bases), spec))
        del stack
    return built


def pending_bases(
    slices: Sequence[TargetSlice], config: AdapterConfig
) -> tuple[torch.Tensor, torch.Tensor]:
    """Zero ``C: (d_out, n_cols, n3)`` and ``R: (n_rows, d_in, n3)`` for a gradient-basis group
    whose bases are set later (:attr:`~tcur.adapters.groups.TCURGroup.bases_pending`)."""
    d_out, d_in = slices[0].shape
    n_rows, n_cols = counts(config)
    weight = slices[0].weight()
    n3 = len(slices)
    return weight.new_zeros(d_out, n_cols, n3), weight.new_zeros(n_rows, d_in, n3)


def scale_of(
    stack: torch.Tensor, C: torch.Tensor, R: torch.Tensor, config: AdapterConfig, key: str
) -> float:
    """The update multiplier ``s`` of a group (see :mod:`tcur.adapters.config`).

    ``"normalized"``: ``alpha * ||W||_F / (sqrt(n3) ||C||_F ||R||_F)`` with ``W`` the stack of the
    group's ``n3`` weights; ``"plain"``: ``alpha``. Gradient bases are t-orthonormal, so there
    ``||C||_F ||R||_F = sqrt(n_cols n_rows)`` exactly: the scale does not depend on how the bases
    round, and two adapters of one base model and config have the same scale whatever their
    calibration batches.
    """
    if config.scaling == "plain":
        return config.alpha
    norm = float(torch.linalg.vector_norm(stack.double())) / float(np.sqrt(stack.shape[2]))
    if config.basis == "gradient":
        norms = float(np.sqrt(C.shape[1] * R.shape[0]))
    else:
        norms = float(torch.linalg.vector_norm(C.double())) * float(
            torch.linalg.vector_norm(R.double())
        )
    if not np.isfinite(norms) or norms == 0.0:
        raise ValueError(
            f"group {key!r}: the selected C and R have norm product {norms}; "
            "scaling='normalized' needs them non-zero and finite (use scaling='plain' for huge "
            "weights)"
        )
    return config.alpha * norm / norms


def _check_live(C: torch.Tensor, R: torch.Tensor, key: str) -> None:
    """``ValueError`` if the selected columns ``C`` or rows ``R`` are all zero: the update
    ``C * dU * R`` and its gradient would then be zero whatever ``dU`` (an adapter that never
    trains)."""
    for name, block, what in (("C", C, "columns"), ("R", R, "rows")):
        if not bool(block.any()):
            raise ValueError(
                f"group {key!r}: the selected {what} of its weights ({name}) are all zero, so its "
                f"update C * dU * R would stay zero and dU would never train (a zero-initialised "
                "weight?); leave it out of target_modules, or select others (select=, seed=)"
            )


def build_group(
    spec: GroupSpec,
    config: AdapterConfig,
    scale: float | None = None,
    *,
    stack: torch.Tensor | None = None,
    bases: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> TCURGroup:
    """The adapter module of ``spec``: frozen ``C``/``R`` copies and a zero ``dU``.

    ``scale`` overrides the config's scaling rule (``load`` passes the saved value). ``dU`` is
    float32 when the weights are float16/bfloat16 and ``config.autocast_adapter_dtype`` is set.
    ``stack`` is :func:`stacked_weights` of ``spec.slices`` if the caller has it already
    (:func:`build_groups`); otherwise it is made here. ``bases`` are ``(C, R)`` when they are
    not the selected columns and rows (``basis="gradient"``: built, or read from a file).
    """
    if stack is None:
        stack = stacked_weights(spec.slices)
    if bases is None:
        C, R = stack[:, spec.cols, :], stack[spec.rows, :, :]
        if scale is None:  # a new selection (a saved adapter, dead or not, still loads)
            _check_live(C, R, spec.key)
    else:
        C, R = (b.to(stack.device, stack.dtype) for b in bases)
    members = [s.label for s in spec.slices]
    if scale is None:
        scale = scale_of(stack, C, R, config, spec.key)
    return TCURGroup(
        C,
        R,
        spec.rows,
        spec.cols,
        members,
        scale,
        key=spec.key,
        digests=[weight_digest(s.weight()) for s in spec.slices],
        digests_f16=[weight_digest(s.weight(), torch.float16) for s in spec.slices],
        config_sha256=config_digest(config.to_dict()),
        dtype=adapter_dtype(stack.dtype, config),
        weights_dtype=stack.dtype,
    )


def adapter_dtype(weight_dtype: torch.dtype, config: AdapterConfig) -> torch.dtype:
    """Dtype of the trainable ``dU``: float32 for half-precision weights unless opted out."""
    half = weight_dtype in (torch.float16, torch.bfloat16)
    return torch.float32 if half and config.autocast_adapter_dtype else weight_dtype


def check_coverage(records: Sequence[Mapping[str, Any]], slices: Mapping[str, TargetSlice]) -> None:
    """``ValueError`` unless saved group ``records`` hold every target slice exactly once.

    ``slices`` are this model's targets by label; a target no record holds (the model has more
    matching modules than the one the groups were selected on) is named.
    """
    saved = [label for record in records for label in record["members"]]
    if len(set(saved)) != len(saved):
        raise ValueError("saved groups: a module is a member of more than one group")
    extra = [label for label in slices if label not in set(saved)]
    if extra:
        raise ValueError(
            f"the config targets module {extra[0]!r} of this model, but no saved group holds it "
            "(the model has more target modules than the one the groups were selected on; a "
            "PEFT config keeps the groups of the first model it was used on): use a new config "
            "(or adapter) for this model"
        )


WEIGHT_DTYPES = {
    name: getattr(torch, name) for name in ("float32", "float16", "bfloat16", "float64")
}
"""The base weights' dtypes a group record names (``weights_dtype``)."""


def group_record(group: TCURGroup) -> dict[str, Any]:
    """The JSON record of a built group, as both hosts save it (``adapter_config.json``'s
    ``groups``): what rebuilds it from the base model, and the fingerprints of the weights it was
    built on (:mod:`tcur.adapters.fingerprint`), checked by :func:`check_base_weights`."""
    dims = group.dims
    return {
        "key": group.key,
        "members": group.members,
        "shape": [dims.d_out, dims.d_in],
        "rows": group.rows,
        "cols": group.cols,
        "scale": group.scale,
        "weights_sha256": [digest.hex() for digest in group.member_digests],
        "weights_sha256_f16": [digest.hex() for digest in group.member_digests_f16],
        "weights_dtype": str(code_dtype(int(group.weights_dtype[0]))).removeprefix("torch."),
    }


def check_base_weights(index: int, record: Mapping[str, Any], spec: GroupSpec) -> None:
    """``ValueError`` unless each member of ``spec`` has the base weight group ``record`` was
    built on (its SHA-256 after rounding both sides to the lower precision of the two,
    :func:`tcur.adapters.fingerprint.comparison_rounding`). Records without fingerprints (PEFT
    configs written before they were kept) are left to the state-dict check."""
    if "weights_sha256" not in record:
        return
    key, members = spec.key, spec.slices
    saved_dtype = WEIGHT_DTYPES.get(record.get("weights_dtype", ""))
    for k, target in enumerate(members):
        own_dtype = target.weight().dtype
        rounding = comparison_rounding(saved_dtype, own_dtype)
        if rounding == torch.float16 and "weights_sha256_f16" not in record:
            rounding = torch.bfloat16
        name = "weights_sha256_f16" if rounding == torch.float16 else "weights_sha256"
        if weight_digest(target.weight(), rounding).hex() == record[name][k]:
            continue
        if incomparable(saved_dtype, own_dtype):
            raise ValueError(
                f"group {index} ({key!r}): module {target.label!r} has {own_dtype} weights and "
                f"the adapter was built on {saved_dtype} weights; neither dtype is a rounding "
                "of the other, so the base weights cannot be matched: load the adapter into "
                f"a float32 (or {saved_dtype}) copy of the base model"
            )
        compared = str(rounding).removeprefix("torch.")
        raise ValueError(
            f"group {index} ({key!r}): the weight of module {target.label!r} differs from "
            f"the base model the adapter was built on (SHA-256 of the weight rounded to "
            f"{compared}): it belongs to a different base model (for a PEFT config, one that "
            "get_peft_model filled in for another model? pass a fresh config)"
        )


def spec_from_record(
    index: int,
    record: Mapping[str, Any],
    slices: Mapping[str, TargetSlice],
    config: AdapterConfig,
) -> GroupSpec:
    """The :class:`GroupSpec` of a saved group record, checked against this model's targets.

    The one validator of saved groups for both hosts (``tcur.adapters.load`` and PEFT's
    ``from_pretrained``/a config with ``groups``): every member is a target of this model, all
    have one shape (the record's ``shape`` if it has one), the config's counts fit it, and
    ``rows``/``cols`` are the config's number of distinct indices in range. ``ValueError``
    naming ``groups[index]`` and the field otherwise. The base weights' fingerprints are
    checked by the callers (``load`` per member, PEFT through the state dict).
    """
    key = record["key"]
    name = f"groups[{index}] ({key!r})"
    members = []
    for label in record["members"]:
        if label not in slices:
            raise ValueError(f"{name}: module {label!r} is not in the model")
        members.append(slices[label])
    shape = tuple(record.get("shape", members[0].shape))
    for target in members:
        if target.shape != shape:
            raise ValueError(f"{name}: {target.label} has shape {target.shape}, saved {shape}")
    d_out, d_in = shape
    check_counts(key, (d_out, d_in), config)
    n_rows, n_cols = selected_counts(config)
    chosen = {}
    for field_name, size, wanted in (("rows", d_out, n_rows), ("cols", d_in, n_cols)):
        values = list(record[field_name])
        valid = all(
            isinstance(v, int) and not isinstance(v, bool) and 0 <= v < size for v in values
        )
        if not valid or len(values) != wanted or len(set(values)) != len(values):
            raise ValueError(
                f"{name}: {field_name} must be {wanted} distinct indices in 0..{size - 1}, "
                f"got {values!r}"
            )
        chosen[field_name] = values
    return GroupSpec(key, members, chosen["rows"], chosen["cols"])


def check_not_sharded(model: nn.Module) -> None:
    """``ValueError`` if a parameter of ``model`` is a sharded ``DTensor`` (FSDP2, tensor parallel).

    Selecting rows and columns reads whole weights, so adapters go in before ``fully_shard``.
    """
    if not torch.distributed.is_available():
        return
    from torch.distributed.tensor import DTensor

    for name, parameter in model.named_parameters():
        if isinstance(parameter, DTensor):
            raise ValueError(
                f"parameter {name!r} is a sharded DTensor (placements {parameter.placements}); "
                "row/column selection needs whole weights: call tcur.adapters.apply (or load) "
                "before fully_shard / distribute_tensor"
            )


def check_tied_targets(slices: Sequence[TargetSlice]) -> None:
    """``ValueError`` naming both modules if two targets share one weight Parameter.

    Merging would add both updates into the one shared weight, so such a pair is refused when
    the adapters are applied (adapt one of the two).
    """
    owners: dict[int, str] = {}
    for target in slices:
        label = target.weight_label
        first = owners.setdefault(id(target.parameter()), label)
        if first != label:
            raise ValueError(
                f"target modules {first!r} and {label!r} share one weight Parameter "
                "(tied weights): merging would add both updates to it; target only one"
            )


def match_modules_to_save(
    model: nn.Module,
    modules_to_save: str | Sequence[str] | None,
    slices: Sequence[TargetSlice],
    *,
    must_match: bool = True,
) -> list[tuple[str, nn.Module]]:
    """The ``modules_to_save`` of ``model`` (``(name, module)``), checked against the targets.

    ``ValueError`` if an entry matches nothing (``must_match``) or if a matched module is,
    contains or lies inside a target: a module is either adapted (its weights frozen) or trained
    in full and saved with the adapter, not both. Runs before anything is changed; the host
    uses the returned modules instead of matching again. ``must_match=False`` skips entries that
    match no module (PEFT, which adds entries of its own, reports those itself).
    """
    if modules_to_save is None:
        return []
    if must_match:
        matched = match_modules(model, modules_to_save, "modules_to_save")
    else:
        patterns = [modules_to_save] if isinstance(modules_to_save, str) else modules_to_save
        found: dict[int, tuple[str, nn.Module]] = {}
        for pattern in patterns:  # PEFT's entries are names (suffix rule), one at a time
            try:
                hits = match_modules(model, [pattern], "modules_to_save")
            except ValueError:
                continue
            for name, module in hits:
                found.setdefault(id(module), (name, module))
        matched = [(n, m) for n, m in model.named_modules() if n and id(m) in found]
    targets: dict[int, str] = {}
    for s in slices:
        targets.setdefault(id(s.module), s.weight_label)
        if s.host is not None:
            targets.setdefault(id(model.get_submodule(s.host)), s.weight_label)
    for name, module in matched:
        for sub_name, sub in module.named_modules():
            if id(sub) in targets:
                relation = "is" if not sub_name else "contains"
                raise ValueError(
                    f"modules_to_save entry {name!r} {relation} the target "
                    f"{targets[id(sub)]!r} of target_modules: a module is either adapted or "
                    "trained in full and saved, not both; remove it from one of the two lists"
                )
    return matched
