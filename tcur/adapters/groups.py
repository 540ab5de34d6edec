"""Adapter groups: :class:`TCURGroup` (one shared t-CUR update), :class:`TCURGroups` (owner).

A :class:`TCURGroup` holds the frozen buffers ``C: (d_out, n_cols, n3)`` and
``R: (n_rows, d_in, n3)`` and the trainable ``dU: (n_cols, n_rows, n3)`` (zero at the start).
CURLoRA is the case ``n3 = 1``. A layer uses slice ``k`` of a group; the ``(group, slice)`` pairs
of one weight are its :data:`Parts` (several when a fused projection was split; they are stacked
along the output), and :func:`parts_delta`, :func:`parts_factors` and :func:`parts_update` form
what the forward strategies (:mod:`tcur.adapters.strategies`) need from them.

Ownership: every group of a model (of a PEFT adapter) is registered once, in a
:class:`TCURGroups` container at the root (native: ``model.tcur_groups``, ``state_dict`` keys
``tcur_groups.<i>.dU``/``C``/``R``; PEFT: on the tuner), so ``state_dict``, ``.to()``,
``deepcopy``, DDP and FSDP2 see each tensor once and no parameter belongs to a block. A layer
keeps plain (unregistered) references to its groups; FSDP2's per-block sharding (``fully_shard``
each block, then the root) therefore never splits a group across units: the root unit gathers the
groups for the whole forward and backward pass. The container also owns what both hosts wire to
the model (:meth:`TCURGroups.attach`): the pass counter's forward pre-hook and the
``load_state_dict`` pre-hook that checks the groups' identity.

Precision: in a float16/bfloat16 model ``dU`` is float32 (``autocast_adapter_dtype=True``, the
default of both configs; ``C``/``R`` keep the weights' dtype). The update is computed in float32
(:func:`tcur.adapters.forward.compute_dtype`) on every call and rounded to the layer's dtype only
when it is added.

Per-pass cache: a forward pass builds a group's small operands ``A`` and ``G`` once (both
strategies) and each layer forms only what it needs from them (its factored update, or its own
``(d_out, d_in)`` slice of the update); a full ``(d_out, d_in, n3)`` update is never held.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

from tcur.adapters.fingerprint import (
    code_dtype,
    combined_digest,
    comparison_rounding,
    dtype_code,
    incomparable,
)
from tcur.adapters.forward import (
    GroupDims,
    compute_dtype,
    delta_from_operands,
    factored_apply,
    factored_operands,
    full_delta,
    shifted_left,
)

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
        self.shared = not (model.training and any(_checkpointing(m) for m in model.modules()))

    def hook(self, model: nn.Module, args: Any) -> None:
        """The forward pre-hook form of :meth:`start` (a method of this plain object, not of a
        module, so that ``torch.compile`` traces it without wrapping the adapter's modules)."""
        self.start(model)


_ABSENT = object()
"""Marker for an attribute a module does not have."""


def _checkpointing(module: nn.Module) -> bool:
    """``module.gradient_checkpointing is True``, read without ``nn.Module.__getattr__``.

    Called for every module on every forward pass: the attribute is an instance attribute where
    it exists (transformers sets it in ``__init__``), so ``vars`` answers without the exception
    that ``getattr`` with a default costs a module lacking it; a class that defines it (a
    property, say) is asked in full.
    """
    value = vars(module).get("gradient_checkpointing", _ABSENT)
    if value is _ABSENT:
        if not _class_defines(type(module)):
            return False
        value = getattr(module, "gradient_checkpointing", False)
    return value is True


_CLASS_DEFINES: dict[type, bool] = {}


def _class_defines(kind: type) -> bool:
    """Whether class ``kind`` defines ``gradient_checkpointing`` (asked once per class)."""
    found = _CLASS_DEFINES.get(kind)
    if found is None:
        found = _CLASS_DEFINES[kind] = hasattr(kind, "gradient_checkpointing")
    return found


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

    ``bases_pending`` is set (:meth:`await_bases`) by a host that builds a gradient-basis group
    before its bases are known (PEFT's ``get_peft_model``/``from_pretrained``: zero ``C``/``R``
    placeholders). Such a group refuses to run (``RuntimeError``) until :meth:`set_bases` or a
    successfully loaded ``state_dict`` with its ``C`` and ``R`` gives them.
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
        self.bases_pending = False
        self._bases_source = ""

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

    def await_bases(self, source: str) -> None:
        """Mark the group's (zero) ``C``/``R`` as placeholders until :meth:`set_bases` or a loaded
        ``state_dict`` gives them; ``source`` says how (the message of the ``RuntimeError``)."""
        self.bases_pending = True
        self._bases_source = source

    def _load_from_state_dict(
        self,
        state_dict: Mapping[str, Any],
        prefix: str,
        local_metadata: dict[str, Any],
        strict: bool,
        missing_keys: list[str],
        unexpected_keys: list[str],
        error_msgs: list[str],
    ) -> None:
        """``nn.Module``'s copy; a group waiting for its bases has them once they were copied
        without error and are non-zero (a refused or failed load leaves it waiting)."""
        errors = len(error_msgs)
        super()._load_from_state_dict(
            state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
        )
        copied = len(error_msgs) == errors and all(prefix + n in state_dict for n in ("C", "R"))
        if self.bases_pending and copied and bool(self.C.any()) and bool(self.R.any()):
            self._bases_arrived()

    def set_bases(self, C: torch.Tensor, R: torch.Tensor) -> None:
        """Put computed gradient bases into a group built with its bases pending.

        ``C``/``R`` must have the shapes of the group's (zero) placeholders; they are copied in
        the placeholders' dtype and device. ``ValueError`` if the group is not waiting for its
        bases (a columns group, or one whose bases are set) or a shape differs.
        """
        if not self.bases_pending:
            raise ValueError(f"adapter group {self.key!r} is not waiting for its bases")
        for name, new in (("C", C), ("R", R)):
            own = getattr(self, name)
            if tuple(new.shape) != tuple(own.shape):
                raise ValueError(
                    f"adapter group {self.key!r}: {name} has shape {tuple(new.shape)}, "
                    f"expected {tuple(own.shape)}"
                )
        with torch.no_grad():
            self.C.copy_(C)
            self.R.copy_(R)
        self._bases_arrived()

    def _bases_arrived(self) -> None:
        """Leave the pending state; cached forms built from the placeholders are dropped."""
        self.bases_pending = False
        self._caches = {}

    def _factors(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if self.bases_pending:
            raise RuntimeError(
                f"adapter group {self.key!r} has gradient bases that are not computed yet: "
                f"call {self._bases_source or 'set_bases'} (or load a saved adapter) before "
                "running, merging or training it"
            )
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
    means (other rows, columns, scale, config or base weights). A group with gradient bases (no
    selected rows or columns) takes ``C`` and ``R`` from the ``state_dict`` with ``dU``; one that
    has ``dU`` without them, or zero or non-finite ones, is refused; a group waiting for its
    bases (:attr:`TCURGroup.bases_pending`) has them once they pass. Base weights are compared after
    rounding both sides to the lower of their precisions
    (:func:`~tcur.adapters.fingerprint.comparison_rounding`); a float16 / bfloat16 pair that
    differs is reported as a dtype difference. An accepted ``state_dict`` leaves the group's own
    identity buffers in place (they describe this model's base weights).
    """
    if not isinstance(module, TCURGroup):
        raise TypeError(f"check_identity needs a TCURGroup, got {type(module).__name__}")
    group = f"adapter group {module.key!r}"
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
    for name, meaning in _IDENTITY_MEANING.items():
        incoming = state_dict.get(prefix + name)
        if incoming is not None and not _same(incoming, getattr(module, name)):
            raise ValueError(
                f"load_state_dict: entry {prefix + name!r} differs from this model's {group}: "
                f"the state_dict comes from an adapter built with {meaning}"
            )
    if module.index_rows.numel() == 0:  # gradient bases
        _check_incoming_bases(module, state_dict, prefix)
    for key in IDENTITY_BUFFERS:  # keep this model's own identity
        if prefix + key in state_dict:
            state_dict[prefix + key] = getattr(module, key).detach().clone()


def _check_incoming_bases(module: TCURGroup, state_dict: dict[str, Any], prefix: str) -> None:
    """Gradient bases travel with ``dU``: both present, finite and non-zero (``ValueError``
    otherwise). A group waiting for its bases has them once the copy succeeded
    (:meth:`TCURGroup._load_from_state_dict`)."""
    group = f"adapter group {module.key!r}"
    keys = [prefix + n for n in ("C", "R")]
    present = [key for key in keys if key in state_dict]
    if not present and prefix + "dU" not in state_dict:
        return
    if len(present) < 2:
        missing = next(key for key in keys if key not in state_dict)
        raise ValueError(
            f"load_state_dict: {group} has gradient bases, which travel with dU, but the "
            f"state_dict has no {missing!r}: without them dU would act on this model's "
            "own bases"
        )
    for key in keys:
        incoming = state_dict[key]
        if not isinstance(incoming, torch.Tensor) or not incoming.is_floating_point():
            raise ValueError(f"load_state_dict: entry {key!r} of {group} is not a float tensor")
        if incoming.is_meta:
            continue  # nothing to check (shapes are load_state_dict's business)
        if not bool(torch.isfinite(incoming).all()) or not bool(incoming.any()):
            raise ValueError(
                f"load_state_dict: entry {key!r} of {group} is zero or not finite: gradient "
                "bases saved before they were computed (initialize_gradient_bases) cannot "
                "be used"
            )


def _same(incoming: Any, own: torch.Tensor) -> bool:
    return (
        isinstance(incoming, torch.Tensor)
        and tuple(incoming.shape) == tuple(own.shape)
        and torch.equal(incoming.to(own.device, own.dtype), own)
    )


class TCURGroups(nn.ModuleDict):
    """The adapter groups of one model (one PEFT adapter), keyed ``"0"``, ``"1"``, ... in build
    (and save) order; the owner of their pass counter and of the hooks both hosts need.

    Registered at the root: ``model.tcur_groups`` (:func:`tcur.adapters.apply`), or on the PEFT
    tuner per adapter. Its groups share one :class:`PassCounter`; :meth:`attach` wires it and the
    identity check to the model. Its ``forward`` returns its input unchanged, so that a container
    root such as ``nn.Sequential`` (which calls every child in turn) computes what it did before.

    Parameters
    ----------
    groups : mapping of str to TCURGroup, optional
    """

    def __init__(self, groups: Mapping[str, TCURGroup] | None = None) -> None:
        super().__init__(groups)
        self.passes = PassCounter()
        for group in self.values():
            if not isinstance(group, TCURGroup):
                raise TypeError(f"TCURGroups holds TCURGroup modules, not {type(group).__name__}")
            group.passes = self.passes
        self.path = ""
        self._handles: list[RemovableHandle] = []

    def attach(self, model: nn.Module, owner: nn.Module, path: str) -> None:
        """Wire the groups to ``model``; :meth:`detach` undoes it.

        - a forward pre-hook on ``model`` starts a new pass of the per-pass cache on every call
          (:meth:`PassCounter.start`);
        - a ``load_state_dict`` pre-hook on ``owner`` (the module this container is registered
          under, at ``path``: ``"tcur_groups"`` on the adapted model, ``"<groups>.<adapter>"`` on
          the PEFT tuner) refuses a ``state_dict`` whose groups were built differently, before
          anything is copied (:func:`check_identity`).
        """
        if self._handles:
            raise ValueError("these adapter groups are already attached to a model")
        self.path = path
        self._handles = [
            model.register_forward_pre_hook(self.passes.hook),
            owner.register_load_state_dict_pre_hook(self._check_state_dict),
        ]

    def detach(self) -> None:
        """Remove the hooks that :meth:`attach` installed."""
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def _check_state_dict(
        self, module: nn.Module, state_dict: dict[str, Any], prefix: str, *_: Any
    ) -> None:
        for name, group in self.items():
            if isinstance(group, TCURGroup):
                check_identity(group, state_dict, f"{prefix}{self.path}.{name}.")

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
