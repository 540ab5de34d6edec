"""The t-CUR update math of both forward strategies and the cost model (Hypothesis)."""

from __future__ import annotations

import itertools

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from tcur.adapters.forward import (
    GroupDims,
    delta_from_operands,
    factored_cost,
    factored_operands,
    factored_update,
    full_delta,
    left_factor_share,
    materialized_cost,
)
from tcur.adapters.strategies import choose_strategy
from tcur.linalg import tprod

sizes = st.integers(1, 7)


@given(d_out=sizes, d_in=sizes, c=sizes, r=sizes, n3=st.integers(1, 6), seed=st.integers(0, 99))
def test_factored_update_equals_materialized_slice(
    d_out: int, d_in: int, c: int, r: int, n3: int, seed: int
) -> None:
    g = torch.Generator().manual_seed(seed)
    C = torch.randn(d_out, c, n3, generator=g, dtype=torch.float64)
    dU = torch.randn(c, r, n3, generator=g, dtype=torch.float64)
    R = torch.randn(r, d_in, n3, generator=g, dtype=torch.float64)
    x = torch.randn(2, 3, d_in, generator=g, dtype=torch.float64)
    delta = full_delta(C, dU, R, 0.7)
    reference = 0.7 * tprod(C, dU, R)
    scale = float(reference.abs().max()) + 1.0
    tol = 100 * torch.finfo(torch.float64).eps * scale * (c + r + n3)
    assert float((delta - reference).abs().max()) <= tol
    A, G = factored_operands(C, dU, R, 0.7)
    for k in range(n3):
        assert float((delta_from_operands(A, G, k) - delta[:, :, k]).abs().max()) <= tol
        expected = x @ delta[:, :, k].T
        got = factored_update(x, C, dU, R, k, 0.7)
        assert got.shape == (2, 3, d_out)
        assert float((got - expected).abs().max()) <= tol * (float(x.abs().max()) * d_in + 1)


@given(
    d_out=st.integers(1, 4096),
    d_in=st.integers(1, 4096),
    c=st.integers(1, 64),
    r=st.integers(1, 64),
    n3=st.integers(1, 64),
    grad=st.booleans(),
    dropout=st.booleans(),
)
def test_cost_model_switches_at_most_once_and_scales(
    d_out: int, d_in: int, c: int, r: int, n3: int, grad: bool, dropout: bool
) -> None:
    dims = GroupDims(d_out, d_in, c, r, n3)
    choices = [choose_strategy([dims], t, grad, dropout) for t in (1, 4, 16, 64, 256, 4096, 65536)]
    switches = sum(a != b for a, b in itertools.pairwise(choices))
    assert switches <= 1
    # per token, the factored update costs x A^T and z B_k^T, and with gradients also g B_k,
    # g^T z (for B_k) and dz A (for x); A (rows of the frozen weights) gets no gradient
    per_token_factored = factored_cost(dims, 101, grad) - factored_cost(dims, 100, grad)
    width = n3 * r
    expected = width * (2 * d_in + 3 * d_out) if grad else width * (d_in + d_out)
    assert per_token_factored == pytest.approx(expected)
    assert materialized_cost(dims, 0, grad, dropout) > 0
    # per token, materializing costs the merged weight's gradient, or with dropout the update's
    # own matmul (forward and backward) and no merged weight at all
    per_token = materialized_cost(dims, 11, grad, dropout) - materialized_cost(
        dims, 10, grad, dropout
    )
    b = 3 if grad else 1
    assert per_token == pytest.approx(d_in * d_out * (b if dropout else (1 if grad else 0)))
    merge_term = materialized_cost(dims, 0, grad, False, 10.0) - materialized_cost(
        dims, 0, grad, False, 0.0
    )
    assert merge_term == pytest.approx(10.0 * d_in * d_out * (2 if grad else 1))
    assert materialized_cost(dims, 0, grad, True, 10.0) == materialized_cost(dims, 0, grad, True, 0)
    # G is built once per pass for the group: both strategies charge each layer 1/n3 of it
    share = left_factor_share(dims)
    assert share == pytest.approx(4 * (n3 // 2 + 1) * d_out * c * r / n3)
    assert factored_cost(dims, 0, grad) == pytest.approx(b * share)
    built = b * (n3 * r * d_out * d_in + share)
    assert materialized_cost(dims, 0, grad, True) == pytest.approx(built)


def test_inference_materializes_for_many_tokens_and_training_may_not() -> None:
    dims = GroupDims(d_out=384, d_in=384, n_cols=8, n_rows=8, n3=6)
    assert choose_strategy([dims], 1, grad=False, dropout=False) == "factored"
    assert choose_strategy([dims], 10_000, grad=False, dropout=False) == "materialized"
    # training: factored costs 3 * n3 * r * (d_in + d_out) per token < d_in * d_out: never switch
    assert choose_strategy([dims], 10**7, grad=True, dropout=False) == "factored"
    wide = GroupDims(d_out=384, d_in=384, n_cols=32, n_rows=32, n3=6)
    assert choose_strategy([wide], 10**5, grad=True, dropout=False) == "materialized"
