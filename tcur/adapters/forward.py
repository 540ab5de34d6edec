"""The t-CUR update in two forward strategies, and the cost model that picks between them.

A group stacks ``n3`` weights ``W_k: (d_out, d_in)``; its update is
``Delta = s * C * dU * R`` (t-product) with ``C: (d_out, c, n3)``, ``dU: (c, r, n3)``,
``R: (r, d_in, n3)``. Write ``G = s * C * dU: (d_out, r, n3)``. Because
``(G * R)[:, :, k] = sum_e G[:, :, (k - e) mod n3] @ R[:, :, e]``, layer ``k`` maps tokens ``x`` to

    ``x @ Delta_k^T = (x @ A^T) @ B_k^T``,  ``A = [R_0; ...; R_{n3-1}]: (n3 r, d_in)``,
    ``B_k = [G_k, G_{k-1}, ..., G_{k-n3+1}]: (d_out, n3 r)``,

a LoRA of rank ``n3 * r`` whose up-projection is a circular shift of ``G``'s slices. (The
Fourier form ``Delta_k = (1/n3) sum_f w^(f k) Ghat_f Rhat_f`` costs ``n3 // 2 + 1`` complex
rank-``r`` products per token, about twice as much, so the time-domain form is used.)

``"factored"`` uses that form and never builds a ``d_out x d_in`` matrix. ``"materialized"``
forms layer ``k``'s own slice ``Delta_k = B_k @ A`` and runs the base layer with ``W_k + Delta_k``
(summed in the compute dtype). In both strategies a forward pass builds ``A`` and ``G`` once for
the whole group and every layer of the group reuses them; no strategy ever holds all of
``Delta``. The strategies themselves, objects with these costs and their forward, are in
:mod:`tcur.adapters.strategies`. ``"auto"`` compares the costs below for the layer's token count
``T``, in multiply-adds; ``b = 3`` when gradients are being recorded (a backward pass costs about
two forward passes), else ``b = 1``; ``F = n3 // 2 + 1``; ``g = 4 * F * d_out * c * r / n3`` is the
layer's share of building ``G`` (``F`` complex products of ``d_out x c`` by ``c x r``, shared by
the group's ``n3`` layers):

- factored: ``T * n3 * r * (d_in + d_out) + g`` without gradients; with them
  ``T * n3 * r * (2 d_in + 3 d_out) + 3 g`` (forward ``x A^T`` and ``z B_k^T``; backward
  ``g B_k``, ``g^T z`` for ``B_k`` and ``dz A`` for ``x``; ``A``, rows of the frozen weights,
  needs no gradient). Counting ``3x`` the forward instead overstated it by 20-33% on SmolLM2's
  ``q_proj``/``v_proj`` and sent ``v_proj`` to the slower strategy.
- materialized, without dropout: ``b' * n3 * r * d_out * d_in + b * g`` (the product
  ``B_k @ A``; ``b' = 3`` with gradients: the backward pass forms it again instead of keeping
  the merged weight alive, :mod:`tcur.adapters.merged_linear`, and ``dB_k = dDelta_k A^T`` is
  one more; else 1)
  ``+ E * d_out * d_in * (2 if gradients else 1)`` (forming ``W_k + Delta_k``, again in the
  backward pass: memory-bound passes) ``+ T * d_in * d_out`` when gradients are recorded (the
  gradient of the merged weight, which a frozen base never needs).
- materialized with active dropout: the base layer sees ``x`` and the update the dropped-out
  input, so no merged weight is formed: ``b * (n3 * r * d_out * d_in + g + T * d_in * d_out)``.

``E =`` :data:`ELEMENTWISE_COST` converts one element of memory-bound work into multiply-adds of
a matrix product; it is fitted by ``benchmarks/bench_adapters.py`` (least squares over the
measured times of both strategies). The base layer's own work is the same for both and is left
out. In inference materialising wins once ``T`` exceeds about ``d_out * d_in / (d_in + d_out)``
(plus the ``E`` term); in training only when ``3 * n3 * r * (d_in + d_out) > d_in * d_out``
(roughly: the extra ``B_k @ A`` and ``E`` terms push it further).
``benchmarks/bench_adapters.py`` compares the predicted and measured crossovers.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.nn import functional as F

ELEMENTWISE_COST = 10.5
"""Multiply-adds that one element of a memory-bound pass is worth (``E`` in the module docstring).

Fitted, not chosen: ``benchmarks/bench_adapters.py`` times the merge ``W + Delta`` and the build
product ``B_k @ A`` on 256..2048-wide slices and takes the ratio of the two slopes (ms per element
over ms per multiply-add). On this project's 2-core CPU, shared with other jobs, the median over
seven rounds was 10.5 (rounds 9.9-11.1) and runs under heavier load gave 7-11; a later run on the
quiet machine, where the matrix products ran faster, gave 15.4 (13-22; the current
``results/bench_adapters.json``, ``elementwise_fit``). The constant is the shared-machine value;
for rank-8 groups of six layers (``n3 r = 48``) 10.5 against 15.4 moves the predicted inference
crossover ``T ~ (n3 r + E) d_out d_in / (n3 r (d_in + d_out))`` by 8%."""


@dataclass(frozen=True)
class GroupDims:
    """Sizes in the cost model: slice ``(d_out, d_in)``, ``n_cols``, ``n_rows`` and ``n3``."""

    d_out: int
    d_in: int
    n_cols: int
    n_rows: int
    n3: int


def left_factor_share(dims: GroupDims) -> float:
    """One layer's share of building ``G = s * C * dU`` (built once per pass per group)."""
    n_freq = dims.n3 // 2 + 1
    return 4 * n_freq * dims.d_out * dims.n_cols * dims.n_rows / dims.n3


def factored_cost(dims: GroupDims, tokens: int, grad: bool) -> float:
    """Multiply-adds of the factored update for one layer call (module docstring)."""
    b = 3 if grad else 1
    width = dims.n3 * dims.n_rows
    # Forward x A^T and z B_k^T; backward dz = g B_k, dB_k = g^T z and dx = dz A (A is frozen).
    per_token = width * (2 * dims.d_in + 3 * dims.d_out if grad else dims.d_in + dims.d_out)
    return float(tokens * per_token + b * left_factor_share(dims))


def materialized_cost(
    dims: GroupDims,
    tokens: int,
    grad: bool,
    dropout: bool,
    elementwise_cost: float = ELEMENTWISE_COST,
) -> float:
    """Multiply-adds of the materialized update for one layer call (module docstring).

    ``elementwise_cost`` is ``E`` (default :data:`ELEMENTWISE_COST`; the benchmark passes other
    values while it fits it).
    """
    b = 3 if grad else 1
    weight = dims.d_out * dims.d_in
    product, share = dims.n3 * dims.n_rows * weight, left_factor_share(dims)
    if dropout:
        return float(b * (product + share + tokens * weight))
    rebuilt = 3 if grad else 1  # B_k @ A in forward, again in backward, and dB_k = dDelta_k A^T
    merge = elementwise_cost * weight * (2 if grad else 1)
    return float(rebuilt * product + b * share + merge + (tokens * weight if grad else 0))


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """Dtype the update is computed in: float32 for half precision, else ``dtype``."""
    return torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype


def left_factor(C: torch.Tensor, dU: torch.Tensor, scale: float) -> torch.Tensor:
    """``G = scale * C * dU`` (t-product), shape ``(d_out, r, n3)``.

    The real FFT along the tube axis is called through ``torch.fft`` directly (what
    :func:`tcur.linalg.tproduct.to_fourier` does for a torch tensor), so the adapter's forward
    pass has no array-namespace lookup that ``torch.compile`` would have to break its graph on.
    """
    n3 = C.shape[2]
    spectrum = torch.fft.rfft(C, dim=-1).movedim(-1, 0) @ torch.fft.rfft(dU, dim=-1).movedim(-1, 0)
    return torch.fft.irfft(spectrum.movedim(0, -1), n=n3, dim=-1) * scale


def full_delta(C: torch.Tensor, dU: torch.Tensor, R: torch.Tensor, scale: float) -> torch.Tensor:
    """``Delta = scale * C * dU * R`` (t-product), shape ``(d_out, d_in, n3)``.

    ``G = scale * C * dU`` goes through the Fourier domain (small); ``G * R`` in the time domain
    as one matrix product of the block-circulant ``[B_0; ...; B_{n3-1}]`` with ``A`` (module
    docstring), which beats an FFT over ``d_out * d_in`` tubes by far. Every frontal slice of the
    result is contiguous in memory.

    Examples
    --------
    >>> import torch
    >>> from tcur.adapters.forward import full_delta
    >>> from tcur.linalg import tprod
    >>> C, dU, R = torch.randn(5, 2, 3), torch.randn(2, 2, 3), torch.randn(2, 4, 3)
    >>> torch.allclose(full_delta(C, dU, R, 0.5), 0.5 * tprod(C, dU, R), atol=1e-5)
    True
    """
    G = left_factor(C, dU, scale)
    d_out, _, n3 = G.shape
    circulant = torch.cat([shifted_left(G, k) for k in range(n3)], dim=0)
    slices = (circulant @ stacked_rows(R)).reshape(n3, d_out, R.shape[1])
    return slices.permute(1, 2, 0)


def stacked_rows(R: torch.Tensor) -> torch.Tensor:
    """``A = [R_0; R_1; ...]: (n3 * r, d_in)``, the down-projection of the factored form."""
    r, d_in, n3 = R.shape
    return R.permute(2, 0, 1).reshape(n3 * r, d_in)


def shifted_left(G: torch.Tensor, k: int) -> torch.Tensor:
    """``B_k = [G_k, G_{k-1}, ..., G_{k-n3+1}]: (d_out, n3 * r)`` (indices mod ``n3``)."""
    d_out, r, n3 = G.shape
    order = torch.remainder(k - torch.arange(n3, device=G.device), n3)
    return G.index_select(2, order).permute(0, 2, 1).reshape(d_out, n3 * r)


def delta_from_operands(A: torch.Tensor, G: torch.Tensor, k: int) -> torch.Tensor:
    """Slice ``k`` of the update, ``Delta_k = B_k @ A: (d_out, d_in)``, from ``(A, G)``."""
    return shifted_left(G, k) @ A


def factored_operands(
    C: torch.Tensor, dU: torch.Tensor, R: torch.Tensor, scale: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(A, G)``: down-projection ``A`` and ``G = scale * C * dU`` (shared by a group)."""
    return stacked_rows(R), left_factor(C, dU, scale)


def factored_apply(x: torch.Tensor, A: torch.Tensor, G: torch.Tensor, k: int) -> torch.Tensor:
    """``x @ Delta_k^T = (x @ A^T) @ B_k^T`` from :func:`factored_operands`."""
    return F.linear(F.linear(x, A), shifted_left(G, k))


def factored_update(
    x: torch.Tensor, C: torch.Tensor, dU: torch.Tensor, R: torch.Tensor, k: int, scale: float
) -> torch.Tensor:
    """``x @ Delta_k^T`` without forming ``Delta_k`` (all tensors in one dtype).

    Examples
    --------
    >>> import torch
    >>> from tcur.adapters.forward import factored_update, full_delta
    >>> C, dU, R = torch.randn(5, 2, 3), torch.randn(2, 2, 3), torch.randn(2, 4, 3)
    >>> x = torch.randn(7, 4)
    >>> expected = x @ full_delta(C, dU, R, 2.0)[:, :, 1].T
    >>> torch.allclose(factored_update(x, C, dU, R, 1, 2.0), expected, atol=1e-4)
    True
    """
    return factored_apply(x, *factored_operands(C, dU, R, scale), k)
