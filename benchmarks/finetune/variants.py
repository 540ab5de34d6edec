"""tCURLoRA variants of issue 21, section 2: bases, transform along the layer axis, placement.

These live here, not in :mod:`tcur.adapters`, until one earns its place. Per group of target
weights (the same module name across layers, ``group_by="name"``, or the same shape,
``group_by="shape"``) the ``n3`` weights are stacked as frontal slices of ``W: (d_out, d_in, n3)``.
A group holds frozen bases ``L: (d_out, r, n3)`` and ``B: (r, d_in, n3)`` and a trainable core
``dU: (r, r, n3)`` (zero at the start, so the model starts as the base model) and adapts slice
``k`` by ``W_k + s * T^-1(T(L) . T(dU) . T(B))[:, :, k]``, where ``T`` transforms along the layer
axis and ``.`` multiplies matching transformed slices:

``transform``
    ``"fft"`` — the published t-product (real FFT; circulant coupling, as if the layer order
    were periodic); ``"dct"`` — the orthonormal DCT-II (real arithmetic, no wrap-around);
    ``"none"`` — no transform: one CUR-type adapter per layer that shares the group's rows and
    columns (``dU[:, :, k]`` only feeds layer ``k``); with ``basis="gradient_tsvd"`` each layer's
    bases are its own gradient's leading singular vectors, which is the library's per-matrix
    ``CURLoRAConfig(basis="gradient")`` (a test checks the spans; the multiplier differs: one
    per group here, one per layer there, so the layers' effective learning rates differ by
    their weight norms' ratios).
``basis``
    ``"raw"`` — the published method: ``L = W[:, cols, :]``, ``B = W[rows, :, :]`` with
    rows/columns chosen by the library's t-CUR selection (``tcur.linalg.tcur``, ``select``);
    ``"orthonormal"`` — orthonormal bases of the same spans (QR of every transformed slice of
    ``W[:, cols, :]`` and of ``W[rows, :, :]^T``); ``"gradient_columns"`` — the ``r`` columns and
    rows of ``W`` with the largest energy of the loss gradient summed over a few calibration
    batches (still actual columns and rows of ``W``); ``"gradient_tsvd"`` — the gradient's own
    subspace: the top ``r`` left/right singular vectors of every transformed slice of the
    gradient stack (LoRA-One / LoRA-SB's initialisation carried to the t-product).

The multiplier ``s`` follows the library's ``scaling="normalized"``:
``s = alpha * m * (||W||_F / sqrt(n3)) / (||L||_F ||B||_F)`` with time-domain norms, so the
bases' own scale cancels and one Adam step of size ``lr`` moves every weight by about
``alpha * lr`` times its norm; ``m = 1`` for the FFT and ``m = n3`` for the orthonormal DCT and
no transform. The unnormalized FFT's slice products grow with ``n3``: a core of unit norm gives
an update ``n3`` times larger than through the DCT or no transform (1,946 against 65 and 64 on
random bases, ``n3 = 30``). Until 2026-12-06 ``m`` was 1 for the DCT too, so its update was 30
times smaller than the FFT's at the same rate; those first DCT runs of the causal LM (validation
perplexity 71.0 / 65.1 at 3e-3 / 1e-2 with raw bases, 61.3 at 3e-3 with gradient bases, where the
FFT gave 56.7 and 55.3) were discarded. Bases that are not columns and rows
of ``W`` cannot be recomputed from the base model, so :func:`adapter_state` includes them.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn

TRANSFORMS = ("fft", "dct", "none")
BASES = ("raw", "orthonormal", "gradient_columns", "gradient_tsvd")
GRADIENT_BASES = ("gradient_columns", "gradient_tsvd")
BASIS_WORDS = {
    "raw": "columns/rows (published)",
    "orthonormal": "orthonormal column/row spans",
    "gradient_columns": "gradient-chosen columns/rows",
    "gradient_tsvd": "gradient t-SVD bases",
}
TRANSFORM_WORDS = {"fft": "FFT", "dct": "DCT", "none": "no transform"}


def family(basis: str, transform: str, where: str = "") -> str:
    """A variant's name in plots: its bases and transform (``where``: the placement, if any).

    Examples
    --------
    >>> family("gradient_tsvd", "fft", "q/v")
    'tCURLoRA: gradient t-SVD bases, FFT (q/v)'
    """
    suffix = f" ({where})" if where else ""
    return f"tCURLoRA: {BASIS_WORDS[basis]}, {TRANSFORM_WORDS[transform]}{suffix}"


Calibration = tuple[Sequence[Any], Callable[[nn.Module, Any], torch.Tensor]]
"""``(batches, loss)``: calibration batches and ``loss(model, batch)``, as
:func:`tcur.adapters.loss_gradients` takes them."""


@dataclass(frozen=True)
class VariantConfig:
    """Options of one tCURLoRA variant (see the module docstring).

    Parameters
    ----------
    target_modules : str or list of str
        A regex (full match on the module path) or names (exact path or dotted suffix) of the
        ``nn.Linear`` modules to adapt.
    rank : int
        ``r``: rows and columns (or basis vectors) per group; ``dU`` has ``r * r * n3`` entries.
    basis : {"raw", "orthonormal", "gradient_columns", "gradient_tsvd"}
    transform : {"fft", "dct", "none"}
    group_by : {"name", "shape"}
        Stack the same module name across layers, or every target of one shape.
    alpha : float
        Update multiplier on top of the normalized scale.
    select : str
        Selection rule of ``tcur.linalg.tcur`` for ``basis="raw"``/``"orthonormal"``.
    """

    target_modules: str | list[str]
    rank: int = 8
    basis: str = "raw"
    transform: str = "fft"
    group_by: str = "name"
    alpha: float = 1.0
    select: str = "leverage"
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.basis not in BASES:
            raise ValueError(f"unknown basis={self.basis!r}; valid: {', '.join(BASES)}")
        if self.transform not in TRANSFORMS:
            raise ValueError(
                f"unknown transform={self.transform!r}; valid: {', '.join(TRANSFORMS)}"
            )
        if self.group_by not in ("name", "shape"):
            raise ValueError(f"unknown group_by={self.group_by!r}; valid: name, shape")
        if isinstance(self.rank, bool) or not isinstance(self.rank, int) or self.rank < 1:
            raise ValueError(f"rank must be a positive int, got {self.rank!r}")

    def to_dict(self) -> dict[str, Any]:
        """The fields as a JSON-able dict."""
        return asdict(self)


def dct_matrix(n: int, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """The orthonormal DCT-II matrix ``D`` (``D @ D.T = I``), rows indexed by frequency.

    Examples
    --------
    >>> D = dct_matrix(5)
    >>> bool(torch.allclose(D @ D.T, torch.eye(5, dtype=D.dtype)))
    True
    """
    k = torch.arange(n, dtype=dtype)[:, None]
    j = torch.arange(n, dtype=dtype)[None, :]
    D = torch.cos(math.pi * (j + 0.5) * k / n) * math.sqrt(2.0 / n)
    D[0] /= math.sqrt(2.0)
    return D


class Transform:
    """A transform along one axis (default the last): ``forward`` and ``inverse``."""

    def __init__(self, kind: str, n3: int) -> None:
        self.kind, self.n3 = kind, n3
        self.matrix = dct_matrix(n3) if kind == "dct" else None

    def forward(self, x: torch.Tensor, dim: int = -1) -> torch.Tensor:
        """Transform axis ``dim`` (complex for ``"fft"``: ``n3 // 2 + 1`` slices)."""
        if self.kind == "fft":
            return torch.fft.rfft(x, dim=dim)
        if self.kind == "dct":
            assert self.matrix is not None
            return torch.tensordot(x, self.matrix.to(x), dims=([dim], [1])).movedim(-1, dim)
        return x

    def inverse(self, x_hat: torch.Tensor, dim: int = -1) -> torch.Tensor:
        """Back to the layer axis ``dim`` (real, ``n3`` slices)."""
        if self.kind == "fft":
            return torch.fft.irfft(x_hat, n=self.n3, dim=dim)
        if self.kind == "dct":
            assert self.matrix is not None
            return torch.tensordot(x_hat, self.matrix.to(x_hat), dims=([dim], [0])).movedim(-1, dim)
        return x_hat


class VariantGroup(nn.Module):
    """One group's frozen transformed bases and trainable core; :meth:`delta` is the update stack.

    The update is computed once per forward pass of the model (a forward pre-hook on the root
    calls :meth:`invalidate`) and shared by the group's layers. The bases are stored slice-first,
    ``(t, d_out, r)`` and ``(t, r, d_in)``, so the products are batched matrix products.
    """

    def __init__(
        self,
        L_hat: torch.Tensor,
        B_hat: torch.Tensor,
        transform: Transform,
        scale: float,
        members: list[str],
        indices: dict[str, list[int]] | None = None,
    ) -> None:
        super().__init__()
        self.transform = transform
        self.scale = scale
        self.members = members
        self.indices = indices or {}
        self.register_buffer("L_first", L_hat.permute(2, 0, 1).contiguous())
        self.register_buffer("B_first", B_hat.permute(2, 0, 1).contiguous())
        r = L_hat.shape[1]
        self.dU = nn.Parameter(torch.zeros(r, r, transform.n3, dtype=torch.float32))
        self._cache: torch.Tensor | None = None

    def invalidate(self) -> None:
        """Forget the cached update (called before every forward pass of the model)."""
        self._cache = None

    @property
    def L_hat(self) -> torch.Tensor:
        """The transformed left basis, ``(d_out, r, t)``."""
        return self.L_first.permute(1, 2, 0)

    @property
    def B_hat(self) -> torch.Tensor:
        """The transformed right basis, ``(r, d_in, t)``."""
        return self.B_first.permute(1, 2, 0)

    def slices(self) -> torch.Tensor:
        """The update slice-first, ``(n3, d_out, d_in)``, real (cached per forward pass)."""
        if self._cache is None:
            dU = self.dU.permute(2, 0, 1)
            dU_hat = self.transform.forward(dU, dim=0).to(self.L_first.dtype)
            core = self.L_first @ dU_hat @ self.B_first
            self._cache = self.scale * self.transform.inverse(core, dim=0).real.float()
        return self._cache

    def delta(self) -> torch.Tensor:
        """``s * T^-1(T(L) . T(dU) . T(B))``: ``(d_out, d_in, n3)``, real."""
        return self.slices().permute(1, 2, 0)


class VariantLinear(nn.Module):
    """``nn.Linear`` whose weight is ``W_k + group.delta()[:, :, k]``."""

    def __init__(self, base: nn.Linear, group: VariantGroup, k: int) -> None:
        super().__init__()
        self.base = base
        self.k = k
        self.__dict__["group"] = group  # owned by the root module, not by this layer

    @property
    def weight(self) -> torch.Tensor:
        """The frozen base weight (read by code that inspects the layer)."""
        return self.base.weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The base layer plus the group's update of slice ``k``."""
        delta = self.__dict__["group"].slices()[self.k].to(x.dtype)
        return nn.functional.linear(x, self.base.weight + delta, self.base.bias)


def find_linears(model: nn.Module, targets: str | Sequence[str]) -> dict[str, nn.Linear]:
    """The ``nn.Linear`` modules of ``model`` matched by ``targets`` (regex or names), in order."""
    out = {}
    for name, module in model.named_modules():
        if not isinstance(module, nn.Linear):
            continue
        if isinstance(targets, str):
            hit = re.fullmatch(targets, name) is not None
        else:
            hit = any(name == t or name.endswith("." + t) for t in targets)
        if hit:
            out[name] = module
    if not out:
        raise ValueError(f"target_modules={targets!r} matches no nn.Linear of the model")
    return out


def group_linears(linears: dict[str, nn.Linear], group_by: str) -> dict[str, list[str]]:
    """Group keys -> member module paths (in model order)."""
    groups: dict[str, list[str]] = {}
    for name, module in linears.items():
        if group_by == "name":  # the path after the layer index, e.g. "attention.self.query"
            key = re.sub(r"^.*?\.\d+\.", "", name)
        else:
            key = "x".join(map(str, module.weight.shape))
        groups.setdefault(key, []).append(name)
    return groups


def _orthonormal(x_hat: torch.Tensor, side: str) -> torch.Tensor:
    """QR of every transformed slice: columns (``side="left"``) or rows (``"right"``)."""
    slices = x_hat.permute(2, 0, 1)
    if side == "right":
        slices = slices.mH
    q, _ = torch.linalg.qr(slices)
    if side == "right":
        q = q.mH
    return q.permute(1, 2, 0).contiguous()


def _top(scores: torch.Tensor, r: int) -> list[int]:
    return sorted(torch.topk(scores, r).indices.tolist())


def build_bases(
    W: torch.Tensor,
    config: VariantConfig,
    transform: Transform,
    gradient: torch.Tensor | None,
    seed: int,
) -> tuple[torch.Tensor, torch.Tensor, dict[str, list[int]]]:
    """Transformed bases ``(L_hat, B_hat)`` of one group's stack ``W`` and their indices."""
    r = config.rank
    if config.basis in GRADIENT_BASES and gradient is None:
        raise ValueError(f"basis={config.basis!r} needs the loss gradient of the group")
    if config.basis == "gradient_tsvd":
        assert gradient is not None
        g_hat = transform.forward(gradient.double()).permute(2, 0, 1)
        U, _, Vh = torch.linalg.svd(g_hat, full_matrices=False)
        L_hat = U[:, :, :r].permute(1, 2, 0).contiguous()
        B_hat = Vh[:, :r, :].permute(1, 2, 0).contiguous()
        return L_hat, B_hat, {}
    if config.basis == "gradient_columns":
        assert gradient is not None
        energy = gradient.double().pow(2)
        cols = _top(energy.sum(dim=(0, 2)), r)
        rows = _top(energy.sum(dim=(1, 2)), r)
    else:
        from tcur.linalg import tcur

        found = tcur(W.double(), r, select=config.select, seed=seed)
        rows = [int(i) for i in found.rows]
        cols = [int(j) for j in found.cols]
    L_hat = transform.forward(W[:, cols, :].double())
    B_hat = transform.forward(W[rows, :, :].double())
    if config.basis == "orthonormal":
        L_hat, B_hat = _orthonormal(L_hat, "left"), _orthonormal(B_hat, "right")
    return L_hat, B_hat, {"rows": rows, "cols": cols}


def scale_of(
    W: torch.Tensor, L_hat: torch.Tensor, B_hat: torch.Tensor, t: Transform, alpha: float
) -> float:
    """The normalized multiplier ``s`` of the module docstring."""
    n3 = W.shape[2]
    w = float(torch.linalg.vector_norm(W.double())) / math.sqrt(n3)
    norm_l = float(torch.linalg.vector_norm(t.inverse(L_hat).real))
    norm_b = float(torch.linalg.vector_norm(t.inverse(B_hat).real))
    if not (norm_l > 0 and norm_b > 0):
        raise ValueError("a group's bases have zero norm (an all-zero weight or gradient?)")
    return alpha * (1 if t.kind == "fft" else n3) * w / (norm_l * norm_b)


def apply_variant(
    model: nn.Module,
    config: VariantConfig,
    seed: int = 0,
    calibration: Calibration | None = None,
) -> nn.Module:
    """Freeze ``model``, add one :class:`VariantGroup` per group of targets, return ``model``.

    The groups are owned by ``model.variant_groups`` (an ``nn.ModuleList`` at the root); every
    target ``nn.Linear`` is replaced by a :class:`VariantLinear`. Only the ``dU`` cores train
    (the caller unfreezes a head). ``calibration`` is required for the gradient bases: their
    gradients are :func:`tcur.adapters.loss_gradients` of the targets over it.
    """
    from tcur.adapters import CURLoRAConfig, loss_gradients

    torch.manual_seed(seed)
    linears = find_linears(model, config.target_modules)
    groups = group_linears(linears, config.group_by)
    grads: dict[str, torch.Tensor] = {}
    if config.basis in GRADIENT_BASES:
        if calibration is None:
            raise ValueError(f"basis={config.basis!r} needs calibration batches and a loss")
        targets = CURLoRAConfig(list(linears))  # names the weights: exact module paths
        grads = loss_gradients(model, targets, *calibration)
    model.requires_grad_(False)
    owned = nn.ModuleList()
    for index, (key, members) in enumerate(groups.items()):
        shapes = {tuple(linears[m].weight.shape) for m in members}
        if len(shapes) != 1:
            raise ValueError(f"group {key!r} mixes weight shapes {sorted(shapes)}")
        W = torch.stack([linears[m].weight.detach() for m in members], dim=2)
        gradient = torch.stack([grads[m] for m in members], dim=2) if grads else None
        transform = Transform(config.transform, len(members))
        L_hat, B_hat, indices = build_bases(W, config, transform, gradient, seed + index)
        scale = scale_of(W, L_hat, B_hat, transform, config.alpha)
        low = torch.complex64 if L_hat.is_complex() else torch.float32
        L_hat, B_hat = L_hat.to(low), B_hat.to(low)
        group = VariantGroup(L_hat, B_hat, transform, scale, members, indices)
        owned.append(group)
        for k, name in enumerate(members):
            parent_name, _, child = name.rpartition(".")
            parent = model.get_submodule(parent_name) if parent_name else model
            setattr(parent, child, VariantLinear(linears[name], group, k))
    model.variant_groups = owned

    def invalidate(*_: Any) -> None:
        for group in owned:
            group.invalidate()  # type: ignore[operator]

    model.register_forward_pre_hook(invalidate)
    return model


def adapter_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """What a user stores to rebuild the adapter: each ``dU``, plus the bases unless they are
    computed from actual columns and rows of the base weights (raw and orthonormal bases: then
    the indices suffice)."""
    out: dict[str, torch.Tensor] = {}
    for i, group in enumerate(model.variant_groups):  # type: ignore[union-attr]
        out[f"group{i}.dU"] = group.dU.detach().contiguous()
        if group.indices:
            for side, idx in group.indices.items():
                out[f"group{i}.{side}"] = torch.tensor(idx, dtype=torch.int32)
        else:
            for name in ("L_hat", "B_hat"):
                value = getattr(group, name)
                if value.is_complex():
                    value = torch.view_as_real(value)
                out[f"group{i}.{name}"] = value.float().contiguous()
    return out
