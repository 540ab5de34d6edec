"""The materialized forward's autograd function: exact gradients, no merged weight kept."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from adapter_models import tiny_encoder, tiny_gpt2

from tcur.adapters import TCURLoRAConfig, adapter_groups, apply
from tcur.adapters.merged_linear import merged_linear

D_IN, PARTS = 5, (3, 4)  # two parts of 3 and 4 output rows, as a split fused projection


def _inputs(transposed: bool, bias: bool) -> tuple[Any, ...]:
    gen = torch.Generator().manual_seed(0)

    def rand(*shape: int, grad: bool = True) -> torch.Tensor:
        t = torch.randn(*shape, generator=gen, dtype=torch.float64)
        return t.requires_grad_(grad)

    d_out = sum(PARTS)
    weight = rand(*((D_IN, d_out) if transposed else (d_out, D_IN)))
    factors = tuple(t for rows in PARTS for t in (rand(rows, 2), rand(2, D_IN)))
    return rand(2, 3, D_IN), weight, rand(d_out) if bias else None, factors


@pytest.mark.parametrize("transposed", [False, True])
@pytest.mark.parametrize("bias", [False, True])
def test_gradcheck_in_float64(transposed: bool, bias: bool) -> None:
    x, weight, b, factors = _inputs(transposed, bias)

    def f(x: torch.Tensor, weight: torch.Tensor, b: Any, *factors: torch.Tensor) -> torch.Tensor:
        return merged_linear(x, weight, b, factors, transposed=transposed)

    assert torch.autograd.gradcheck(f, (x, weight, b, *factors))


@pytest.mark.parametrize("transposed", [False, True])
def test_equals_the_plain_composition_in_value_and_gradient(transposed: bool) -> None:
    x, weight, b, factors = _inputs(transposed, bias=True)
    delta = torch.cat([B @ A for B, A in zip(factors[0::2], factors[1::2], strict=True)])
    total = weight + (delta.T if transposed else delta)
    plain = (x @ total + b) if transposed else torch.nn.functional.linear(x, total, b)
    ours = merged_linear(x, weight, b, factors, transposed=transposed)
    torch.testing.assert_close(ours, plain, rtol=1e-12, atol=1e-12)
    inputs = (x, weight, b, *factors)
    want = torch.autograd.grad(plain.square().sum(), inputs)
    got = torch.autograd.grad(ours.square().sum(), inputs)
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g, w, rtol=1e-10, atol=1e-10)


def _saved(model: torch.nn.Module, x: Any) -> list[tuple[tuple[int, ...], int]]:
    """Shape and storage address of every tensor autograd saves for backward."""
    saved: list[tuple[tuple[int, ...], int]] = []

    def pack(t: torch.Tensor) -> torch.Tensor:
        saved.append((tuple(t.shape), t.data_ptr()))
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = model(x) if isinstance(x, torch.Tensor) else model(**x)
    loss = out.square().mean() if isinstance(out, torch.Tensor) else out.logits.square().mean()
    loss.backward()
    return saved


@pytest.mark.parametrize("kind", ["encoder", "gpt2"])
def test_training_keeps_no_merged_weight_until_backward(kind: str) -> None:
    if kind == "encoder":
        base, targets = tiny_encoder(seed=0), ["query", "value", "up"]
        x: Any = torch.randn(2, 3, 12)
    else:
        base, targets = tiny_gpt2(seed=0), ["c_attn", "c_fc"]
        x = {"input_ids": torch.randint(0, 64, (2, 5))}
    model = apply(base, TCURLoRAConfig(targets, rank=2, forward="materialized"))
    with torch.no_grad():
        for group in adapter_groups(model):
            group.dU.normal_()
    bases = [m.base_layer.weight for m in model.modules() if hasattr(m, "base_layer")]
    shapes, own = {tuple(w.shape) for w in bases}, {p.data_ptr() for p in model.parameters()}
    merged = [(shape, ptr) for shape, ptr in _saved(model, x) if shape in shapes]
    # weights themselves may be saved (no new memory), but no new weight-sized tensor
    assert merged and all(ptr in own for _, ptr in merged), merged
    assert all(g.dU.grad is not None and g.dU.grad.abs().sum() > 0 for g in adapter_groups(model))
