"""tCURLoRA / CURLoRA layers: exactness at init, training signal, strategies, structure, merging."""

from __future__ import annotations

import copy

import pytest
import torch
from adapter_models import tiny_encoder, tiny_gpt2

from tcur.adapters import (
    CURLoRAConfig,
    TCURLoRAConfig,
    adapter_groups,
    adapter_layers,
    apply,
    merge,
    trainable_parameters,
    unload,
    unmerge,
)
from tcur.adapters.layers import TCURLayer
from tcur.linalg.tproduct import to_fourier

TARGETS = ["query", "value", "up", "down"]


def _configs(forward: str) -> list[CURLoRAConfig | TCURLoRAConfig]:
    return [
        TCURLoRAConfig(TARGETS, rank=2, n_rows=3, n_cols=4, forward=forward),
        TCURLoRAConfig(TARGETS, rank=3, select="leverage", group_by="shape", forward=forward),
        CURLoRAConfig(TARGETS, rank=3, forward=forward),
    ]


def _inputs(dtype: torch.dtype = torch.float64) -> torch.Tensor:
    return torch.randn(2, 5, 12, generator=torch.Generator().manual_seed(1), dtype=dtype)


def _randomize(model: torch.nn.Module, std: float = 1.0) -> None:
    generator = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for group in adapter_groups(model):
            group.dU.copy_(std * torch.randn(group.dU.shape, generator=generator))


@pytest.mark.parametrize("forward", ["factored", "materialized", "auto"])
@pytest.mark.parametrize("which", range(3))
def test_output_equals_base_model_at_init(forward: str, which: int) -> None:
    base = tiny_encoder()
    x = _inputs(torch.float32)
    model = apply(copy.deepcopy(base), _configs(forward)[which])
    assert torch.equal(model(x), base(x))
    model.train()
    assert torch.equal(model(x), base(x))


def test_curlora_has_one_rank_by_rank_dU_per_matrix() -> None:
    model = apply(tiny_encoder(), CURLoRAConfig(TARGETS, rank=3))
    groups = adapter_groups(model)
    assert len(groups) == 12 and all(tuple(g.dU.shape) == (3, 3, 1) for g in groups)
    assert trainable_parameters(model)[0] == 12 * 9
    first = model.layers[0].up.base_layer.weight
    assert torch.equal(groups[2].C[:, :, 0], first[:, groups[2].cols])
    assert torch.equal(groups[2].R[:, :, 0], first[groups[2].rows, :])


def test_trainable_count_is_dU_per_group_plus_modules_to_save() -> None:
    base = tiny_encoder(n_layers=3)
    config = TCURLoRAConfig(TARGETS, rank=2, n_rows=3, n_cols=4, modules_to_save=["classifier"])
    model = apply(copy.deepcopy(base), config)
    head = sum(p.numel() for p in base.classifier.parameters())
    total = sum(p.numel() for p in base.parameters())
    assert trainable_parameters(model) == (4 * (4 * 3 * 3) + head, total + 4 * 4 * 3 * 3)
    shapes = {g.key: tuple(g.dU.shape) for g in adapter_groups(model)}
    assert shapes == {f"layers.*.{t}": (4, 3, 3) for t in TARGETS}
    frozen = [n for n, p in model.named_parameters() if p.requires_grad and "dU" not in n]
    assert all(n.startswith("classifier.") for n in frozen) and len(frozen) == 2


@pytest.mark.parametrize("forward", ["factored", "materialized"])
def test_gradcheck_dU_float64(forward: str) -> None:
    model = apply(
        tiny_encoder(d=6, n_layers=2, dtype=torch.float64),
        TCURLoRAConfig(["query", "down"], rank=2, forward=forward),
    )
    _randomize(model, 0.1)
    groups = adapter_groups(model)
    x = torch.randn(1, 3, 6, dtype=torch.float64)

    def run(*dUs: torch.Tensor) -> torch.Tensor:
        params = {f"{n}": dU for n, dU in zip(_dU_names(model), dUs, strict=True)}
        return torch.func.functional_call(model, params, (x,))

    inputs = tuple(g.dU.detach().clone().requires_grad_(True) for g in groups)
    assert torch.autograd.gradcheck(run, inputs)


def _dU_names(model: torch.nn.Module) -> list[str]:
    return [n for n, _ in model.named_parameters() if n.endswith(".dU")]


@pytest.mark.parametrize("forward", ["factored", "materialized"])
def test_dU_receives_gradient_and_a_step_changes_the_output(forward: str) -> None:
    base = tiny_encoder()
    model = apply(copy.deepcopy(base), TCURLoRAConfig(TARGETS, rank=2, forward=forward))
    x = _inputs(torch.float32)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    loss = torch.nn.functional.cross_entropy(model(x), torch.tensor([0, 1]))
    loss.backward()
    for group in adapter_groups(model):
        assert group.dU.grad is not None and float(group.dU.grad.abs().max()) > 0
    optimizer.step()
    assert not torch.allclose(model(x), base(x))
    assert all(not p.requires_grad for n, p in model.named_parameters() if "base_layer" in n)


@pytest.mark.parametrize("which", range(3))
def test_factored_and_materialized_agree_float64(which: int) -> None:
    x = _inputs()
    outputs, grads = [], []
    for forward in ("factored", "materialized"):
        model = apply(tiny_encoder(dtype=torch.float64), _configs(forward)[which])
        _randomize(model)
        out = model(x)
        out.square().sum().backward()
        outputs.append(out.detach())
        grads.append(torch.cat([g.dU.grad.reshape(-1) for g in adapter_groups(model)]))
    scale = float(outputs[0].abs().max())
    assert float((outputs[0] - outputs[1]).abs().max()) <= 1e-10 * scale
    assert float((grads[0] - grads[1]).abs().max()) <= 1e-10 * float(grads[0].abs().max())


def test_auto_strategy_follows_cost_model_and_matches() -> None:
    model = apply(tiny_encoder(dtype=torch.float64), TCURLoRAConfig(TARGETS, rank=4))
    _randomize(model)
    layer = adapter_layers(model)[0][1]
    with torch.no_grad():
        assert layer.resolve_strategy(torch.zeros(1, 1, 12)) == "factored"
        assert layer.resolve_strategy(torch.zeros(64, 128, 12)) == "materialized"
    x = _inputs()
    reference = model(x)
    for _, lay in adapter_layers(model):
        lay.strategy = "factored"
    torch.testing.assert_close(model(x), reference, rtol=1e-12, atol=1e-12)


def test_stacked_update_has_tcur_structure() -> None:
    rank = 3
    model = apply(
        tiny_encoder(dtype=torch.float64), TCURLoRAConfig(["up"], rank=rank, forward="factored")
    )
    _randomize(model)
    group = adapter_groups(model)[0]
    with torch.no_grad():
        delta_hat = to_fourier(group.full_delta())
        C_hat, R_hat = to_fourier(group.C), to_fourier(group.R)
    for D, C, R in zip(delta_hat, C_hat, R_hat, strict=True):
        assert int(torch.linalg.matrix_rank(D)) <= rank
        col_proj = C @ torch.linalg.pinv(C)
        row_proj = torch.linalg.pinv(R) @ R
        torch.testing.assert_close(col_proj @ D, D, rtol=1e-9, atol=1e-9)
        torch.testing.assert_close(D @ row_proj, D, rtol=1e-9, atol=1e-9)
    weights = torch.stack([blk.up.base_layer.weight for blk in model.layers], dim=2)
    assert torch.equal(group.C, weights[:, group.cols, :])
    assert torch.equal(group.R, weights[group.rows, :, :])


def test_each_slice_uses_its_own_frontal_slice() -> None:
    model = apply(
        tiny_encoder(dtype=torch.float64), TCURLoRAConfig(["query"], rank=2, forward="factored")
    )
    _randomize(model)
    group = adapter_groups(model)[0]
    delta = group.full_delta().detach()
    x = torch.randn(4, 12, dtype=torch.float64)
    for k, block in enumerate(model.layers):
        layer = block.query
        expected = torch.nn.functional.linear(x, layer.base_layer.weight + delta[:, :, k])
        torch.testing.assert_close(layer(x) - layer.base_layer.bias, expected)


@pytest.mark.parametrize("forward", ["factored", "materialized"])
def test_gradient_accumulation_over_two_forward_passes(forward: str) -> None:
    model = apply(
        tiny_encoder(dtype=torch.float64), TCURLoRAConfig(TARGETS, rank=2, forward=forward)
    )
    _randomize(model, 0.1)
    x1, x2 = _inputs(), _inputs() + 1.0
    model(x1).sum().backward()
    model(x2).sum().backward()
    accumulated = [g.dU.grad.clone() for g in adapter_groups(model)]
    for group in adapter_groups(model):
        group.dU.grad = None
    (model(x1).sum() + model(x2).sum()).backward()
    for acc, group in zip(accumulated, adapter_groups(model), strict=True):
        torch.testing.assert_close(acc, group.dU.grad)
    for group in adapter_groups(model):  # calling a layer directly, without the model's hook
        group.dU.grad = None
    layer = model.layers[0].query
    layer(x1).sum().backward()
    layer(x1).sum().backward()
    assert layer.parts[0][0].dU.grad is not None


def test_merge_unmerge_unload() -> None:
    base = tiny_encoder(dtype=torch.float64)
    x = _inputs()
    model = apply(copy.deepcopy(base), TCURLoRAConfig(TARGETS, rank=2))
    _randomize(model)
    with torch.no_grad():
        adapted = model(x)
        merge(model)
        merge(model)  # a second merge must not add the update twice
        torch.testing.assert_close(model(x), adapted)
        assert all(layer.merged for _, layer in adapter_layers(model))
        unmerge(model)
        torch.testing.assert_close(model(x), adapted)
        restored = unload(copy.deepcopy(model))
        torch.testing.assert_close(restored(x), base(x))
        assert not restored._forward_pre_hooks and len(model._forward_pre_hooks) == 1
        merged = unload(model, merge=True)
        torch.testing.assert_close(merged(x), adapted)
    assert not any(isinstance(m, TCURLayer) for m in merged.modules())
    assert all(p.requires_grad for p in merged.parameters())
    assert set(merged.state_dict()) == set(base.state_dict())


def test_safe_merge_refuses_non_finite_and_changes_nothing() -> None:
    model = apply(tiny_encoder(), TCURLoRAConfig(TARGETS, rank=2))
    weights = {n: p.clone() for n, p in model.named_parameters() if "base_layer" in n}
    with torch.no_grad():
        adapter_groups(model)[-1].dU[0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="not finite"):
        merge(model)
    assert all(torch.equal(p, weights[n]) for n, p in model.named_parameters() if n in weights)
    assert not any(layer.merged for _, layer in adapter_layers(model))


@pytest.mark.parametrize("half", [torch.bfloat16, torch.float16])
def test_buffers_follow_dtype_and_half_computes_update_in_float32(half: torch.dtype) -> None:
    model = apply(tiny_encoder(), TCURLoRAConfig(TARGETS, rank=2, forward="factored"))
    _randomize(model, 0.5)
    x = _inputs(torch.float32)
    reference = model.double()(x.double())
    group = adapter_groups(model)[0]
    assert group.C.dtype == group.R.dtype == group.dU.dtype == torch.float64
    for forward in ("factored", "materialized"):
        low = copy.deepcopy(model).to(half)
        for _, layer in adapter_layers(low):
            layer.strategy = forward
        assert adapter_groups(low)[0].C.dtype == half
        out = low(x.to(half))
        assert out.dtype == half
        torch.testing.assert_close(out.double(), reference, rtol=0.1, atol=0.1)
        update = adapter_groups(low)[0].full_delta()
        assert update.dtype == torch.float32


def test_group_by_shape_and_callable() -> None:
    model = apply(tiny_encoder(), TCURLoRAConfig(TARGETS, rank=2, group_by="shape"))
    keys = {g.key: len(g.members) for g in adapter_groups(model)}
    assert keys == {"12x12": 6, "24x12": 3, "12x24": 3}

    def by_block(label: str, module: torch.nn.Module) -> str:
        return "attention" if label.endswith(("query", "value")) else label

    model = apply(
        tiny_encoder(), TCURLoRAConfig(["query", "value", "up"], rank=2, group_by=by_block)
    )
    sizes = sorted(len(g.members) for g in adapter_groups(model))
    assert sizes == [1, 1, 1, 6]


@pytest.mark.parametrize("forward", ["factored", "materialized"])
def test_tiny_gpt2_conv1d_with_split_c_attn(forward: str) -> None:
    base = tiny_gpt2()
    ids = torch.randint(0, 64, (2, 7), generator=torch.Generator().manual_seed(0))
    config = TCURLoRAConfig(
        ["c_attn", "c_proj"], rank=2, split_fused={"c_attn": 3}, forward=forward
    )
    model = apply(copy.deepcopy(base), config)
    assert torch.equal(model(ids).logits, base(ids).logits)
    keys = [g.key for g in adapter_groups(model)]
    assert keys == [
        "transformer.h.*.attn.c_attn[0]",
        "transformer.h.*.attn.c_attn[1]",
        "transformer.h.*.attn.c_attn[2]",
        "transformer.h.*.attn.c_proj",
        "transformer.h.*.mlp.c_proj",
    ]
    group = adapter_groups(model)[1]  # the keys of both blocks, transposed to (out, in)
    k_weights = [blk.attn.c_attn.base_layer.weight.T[32:64] for blk in model.transformer.h]
    assert torch.equal(group.C, torch.stack(k_weights, dim=2)[:, group.cols, :])
    _randomize(model, 0.05)
    with torch.no_grad():
        adapted = model(ids).logits
        for _, layer in adapter_layers(model):
            layer.strategy = "materialized" if forward == "factored" else "factored"
        torch.testing.assert_close(model(ids).logits, adapted, rtol=1e-4, atol=1e-5)
        merge(model)
        torch.testing.assert_close(model(ids).logits, adapted, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (TCURLoRAConfig(["qeury"], rank=2), r"'qeury'.*similar module names: 'query'"),
        (TCURLoRAConfig(r".*\.attention", rank=2), "matched no module"),
        (TCURLoRAConfig(["query"], rank=13), "rank=13 is too large"),
        (TCURLoRAConfig(["query"], rank=2, n_cols=20), "n_cols=20 is too large"),
        (
            TCURLoRAConfig([r"up", "down"], rank=2, group_by=lambda n, m: "all"),
            "mixes weight shapes",
        ),
        (TCURLoRAConfig(["layers"], rank=2), "is a ModuleList"),
        (TCURLoRAConfig(["query"], rank=2, split_fused={"query": 5}), "not divisible"),
    ],
)
def test_bad_configs_are_refused_with_clear_errors(config: TCURLoRAConfig, message: str) -> None:
    model = tiny_encoder()
    before = _snapshot(model)
    with pytest.raises((ValueError, TypeError), match=message):
        apply(model, config)
    _assert_unchanged(model, before)


def _snapshot(model: torch.nn.Module) -> tuple[object, ...]:
    """State, flags, module structure, hooks and attributes: what a refused apply must keep."""
    state = {k: v.clone() for k, v in model.state_dict().items()}
    flags = {n: p.requires_grad for n, p in model.named_parameters()}
    kinds = [(n, type(m).__name__) for n, m in model.named_modules(remove_duplicate=False)]
    return state, flags, kinds, len(model._forward_pre_hooks), set(vars(model))


def _assert_unchanged(model: torch.nn.Module, before: tuple[object, ...]) -> None:
    after = _snapshot(model)
    state, old_state = after[0], before[0]
    assert isinstance(state, dict) and isinstance(old_state, dict)
    assert state.keys() == old_state.keys()
    assert all(torch.equal(state[k], old_state[k]) for k in state)
    assert after[1:] == before[1:]


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (
            TCURLoRAConfig(TARGETS, rank=2, modules_to_save=["clasifier"]),
            r"modules_to_save entry 'clasifier'.*similar module names: 'classifier'",
        ),
        (TCURLoRAConfig(["query", "up"], rank=2, n_rows=13), "n_rows=13 is too large"),
        (TCURLoRAConfig(["query", "down"], rank=2, n_cols=13), "n_cols=13 is too large"),
    ],
)
def test_apply_is_transactional_and_a_corrected_retry_works(
    bad: TCURLoRAConfig, message: str
) -> None:
    """Every check runs before the first module is replaced (here the failing check comes late:
    after the targets were found, or for the second of two groups)."""
    base = tiny_encoder()
    model = copy.deepcopy(base)
    before = _snapshot(model)
    with pytest.raises(ValueError, match=message):
        apply(model, bad)
    _assert_unchanged(model, before)
    fixed = TCURLoRAConfig(TARGETS, rank=2, modules_to_save=["classifier"])
    apply(model, fixed)
    assert torch.equal(model(_inputs(torch.float32)), base(_inputs(torch.float32)))
    assert len(adapter_layers(model)) == 12


@pytest.mark.parametrize("scaling", ["normalized", "plain"])
def test_a_dead_adapter_on_zero_columns_is_refused_and_the_model_unchanged(scaling: str) -> None:
    # Zero selected columns or rows make C * dU * R and its gradient zero whatever dU: an
    # adapter that never trains, whatever the scaling.
    model = tiny_encoder()
    with torch.no_grad():
        model.layers[2].down.weight.zero_()  # a zero-initialised projection
    before = _snapshot(model)
    config = TCURLoRAConfig(TARGETS, rank=2, group_by=lambda n, m: n, scaling=scaling)
    with pytest.raises(ValueError, match=r"group 'layers\.2\.down'.*all zero.*never train"):
        apply(model, config)
    _assert_unchanged(model, before)


def test_zero_selected_rows_of_a_nonzero_weight_are_refused() -> None:
    model = torch.nn.Sequential(torch.nn.Linear(6, 6))
    with torch.no_grad():
        model[0].weight.zero_()
        model[0].weight[0, 0] = 1.0  # rank one: most rows are zero
    config = CURLoRAConfig(["0"], rank=2, select="uniform", seed=0, scaling="plain")
    with pytest.raises(ValueError, match=r"selected (rows|columns) of its weights .* all zero"):
        for seed in range(20):  # a uniform pick of 2 of 6 rows misses row 0 most of the time
            apply(copy.deepcopy(model), CURLoRAConfig(**{**config.__dict__, "seed": seed}))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"target_modules": "(query"}, r"target_modules regex '\(query' does not compile"),
        ({"modules_to_save": "[head"}, r"modules_to_save regex '\[head' does not compile"),
        ({"alpha": float("inf")}, "alpha must be finite"),
        ({"alpha": -float("inf")}, "alpha must be finite"),
        ({"autocast_adapter_dtype": 1}, "autocast_adapter_dtype must be True or False"),
    ],
)
def test_config_refuses_bad_regex_and_non_finite_alpha(
    kwargs: dict[str, object], message: str
) -> None:
    values: dict[str, object] = {"target_modules": ["query"], **kwargs}
    with pytest.raises((ValueError, TypeError), match=message):
        TCURLoRAConfig(**values)  # type: ignore[arg-type]
    with pytest.raises((ValueError, TypeError), match=message):
        CURLoRAConfig(**values)  # type: ignore[arg-type]


class _Aliased(torch.nn.Module):
    """One Linear reachable as ``first`` and ``second`` (applied twice), then a head."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.first = torch.nn.Linear(8, 8)
        self.second = self.first
        self.head = torch.nn.Linear(8, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.tanh(self.second(torch.tanh(self.first(x)))))


@pytest.mark.parametrize("name", ["first", "second"])
def test_a_module_reachable_under_two_names_is_one_target(name: str) -> None:
    model = _Aliased()
    base = copy.deepcopy(model)
    apply(model, CURLoRAConfig([name], rank=2, alpha=0.5))
    assert model.first is model.second and isinstance(model.first, TCURLayer)
    assert [g.members for g in adapter_groups(model)] == [["first"]]
    _randomize(model)
    x = torch.randn(3, 8)
    layer = model.first
    expected_weight = layer.base_layer.weight + layer.delta().detach()
    lin = torch.nn.Linear(8, 8)
    with torch.no_grad():
        lin.weight.copy_(expected_weight)
        lin.bias.copy_(layer.base_layer.bias)
        expected = model.head(torch.tanh(lin(torch.tanh(lin(x)))))
        torch.testing.assert_close(model(x), expected)
        merge(model)
        torch.testing.assert_close(model(x), expected)
    restored = unload(model)
    assert restored.first is restored.second and isinstance(restored.first, torch.nn.Linear)
    torch.testing.assert_close(restored(x), base(x))


def test_two_targets_sharing_one_weight_are_refused_naming_both() -> None:
    model = tiny_encoder()
    model.layers[1].query.weight = model.layers[0].query.weight  # tied weights
    before = _snapshot(model)
    with pytest.raises(ValueError, match=r"'layers\.0\.query' and 'layers\.1\.query' share one"):
        apply(model, TCURLoRAConfig(["query"], rank=2))
    _assert_unchanged(model, before)


def test_merge_refuses_a_weight_tied_to_another_module() -> None:
    model = tiny_encoder()
    model.layers[2].query.weight = model.layers[2].value.weight  # like lm_head and embeddings
    apply(model, TCURLoRAConfig(["layers.2.value"], rank=2))
    _randomize(model)
    x = _inputs(torch.float32)
    with torch.no_grad():
        adapted = model(x)
        weights = {n: p.clone() for n, p in model.named_parameters()}
        tied = r"'layers\.2\.value' is tied to module 'layers\.2\.query'"
        with pytest.raises(ValueError, match=tied):
            merge(model)
        assert all(torch.equal(p, weights[n]) for n, p in model.named_parameters())
        assert not any(layer.merged for _, layer in adapter_layers(model))
        torch.testing.assert_close(model(x), adapted)


def test_merge_and_unmerge_without_adapters_raise_like_unload() -> None:
    model = tiny_encoder()
    for action, name in ((merge, "merge"), (unmerge, "unmerge")):
        with pytest.raises(ValueError, match=f"cannot {name}: model has no tcur adapters"):
            action(model)
    with pytest.raises(ValueError, match="model has no tcur adapters"):
        unload(model)


def test_mixed_shapes_in_a_name_group() -> None:
    model = tiny_encoder()
    model.layers[1].query = torch.nn.Linear(12, 12, bias=False)
    model.layers[2].query = torch.nn.Linear(12, 8)
    with pytest.raises(ValueError, match=r"group 'layers\.\*\.query' mixes weight shapes"):
        apply(model, TCURLoRAConfig(["query"], rank=2))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"rank": 0}, "rank must be >= 1"),
        ({"rank": 4, "n_rows": 2}, "n_rows=2 must be >= rank=4"),
        ({"select": "best"}, "unknown select='best'"),
        ({"forward": "fast"}, "unknown forward='fast'"),
        ({"group_by": "size"}, "unknown group_by='size'"),
        ({"dropout": 1.0}, "dropout must be"),
        ({"alpha": float("nan")}, "alpha must be"),
        ({"scaling": "rs"}, "unknown scaling='rs'"),
        ({"target_modules": []}, "target_modules must be"),
    ],
)
def test_config_validation(kwargs: dict[str, object], message: str) -> None:
    values: dict[str, object] = {"target_modules": ["query"], **kwargs}
    with pytest.raises((ValueError, TypeError), match=message):
        TCURLoRAConfig(**values)  # type: ignore[arg-type]


def test_apply_twice_is_refused_and_configs_round_trip() -> None:
    config = TCURLoRAConfig(TARGETS, rank=2, split_fused={"up": 2}, modules_to_save="classifier")
    model = apply(tiny_encoder(), config)
    with pytest.raises(ValueError, match="already has tcur adapters"):
        apply(model, config)
    assert TCURLoRAConfig.from_dict(config.to_dict()) == config
    assert CURLoRAConfig.from_dict(CURLoRAConfig(["q"]).to_dict()) == CURLoRAConfig(["q"])
    with pytest.raises(ValueError, match="unknown TCURLoRAConfig field"):
        TCURLoRAConfig.from_dict({**config.to_dict(), "lora_r": 8})


def test_scaling_normalized_divides_by_norms_of_C_and_R() -> None:
    plain = apply(tiny_encoder(), TCURLoRAConfig(["up"], rank=2, alpha=3.0, scaling="plain"))
    norm = apply(tiny_encoder(), TCURLoRAConfig(["up"], rank=2, alpha=3.0))
    group = adapter_groups(norm)[0]
    stack = torch.stack([blk.up.base_layer.weight for blk in norm.layers], dim=2)
    norms = torch.linalg.vector_norm(group.C) * torch.linalg.vector_norm(group.R)
    expected = 3.0 * float(torch.linalg.vector_norm(stack) / 3**0.5 / norms)
    assert adapter_groups(plain)[0].scale == 3.0
    assert group.scale == pytest.approx(expected, rel=1e-6)


def test_dropout_is_applied_to_adapter_input_only_in_training() -> None:
    model = apply(tiny_encoder(), TCURLoRAConfig(TARGETS, rank=2, dropout=0.5))
    _randomize(model)
    x = _inputs(torch.float32)
    model.eval()
    first = model(x)
    torch.testing.assert_close(model(x), first)
    model.train()
    torch.manual_seed(0)
    assert not torch.allclose(model(x), first)


@pytest.mark.parametrize("half", [torch.bfloat16, torch.float16])
def test_half_precision_model_keeps_float32_dU_and_adam_steps(half: torch.dtype) -> None:
    """An AdamW step of 1e-4 on a dU entry of 0.5 survives (in bfloat16 it would round away)."""

    def one_step(config: TCURLoRAConfig) -> torch.Tensor:
        model = apply(tiny_encoder(dtype=half), config)
        group = adapter_groups(model)[0]
        with torch.no_grad():
            group.dU.fill_(0.5)
        optimizer = torch.optim.AdamW([group.dU], lr=1e-4, weight_decay=0.0)
        model(_inputs(half)).float().square().sum().backward()
        optimizer.step()
        return group.dU.detach()

    kept = one_step(TCURLoRAConfig(["query"], rank=2))
    assert kept.dtype == torch.float32
    moved = (kept.double() - 0.5).abs()
    assert float(moved.min()) > 0.5e-4 and float(moved.max()) < 2e-4
    rounded = one_step(TCURLoRAConfig(["query"], rank=2, autocast_adapter_dtype=False))
    assert rounded.dtype == half and bool((rounded == 0.5).all())  # the failure it prevents


def _as_half_adapter(model: torch.nn.Module, half: torch.dtype) -> torch.nn.Module:
    """``model`` with base weights, C and R in ``half`` and dU kept in float32."""
    low = copy.deepcopy(model)
    masters = [g.dU.detach().clone() for g in adapter_groups(low)]
    low.to(half)
    for group, master in zip(adapter_groups(low), masters, strict=True):
        group.dU.data = master
    return low


def _hidden(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The last block's output (many numbers, unlike the two logits)."""
    for block in model.layers:  # type: ignore[union-attr]
        x = block(x)
    return x


def _relative_error(got: torch.Tensor, reference: torch.Tensor) -> float:
    return float((got.double() - reference.double()).norm() / reference.double().norm())


@pytest.mark.parametrize("half", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("forward", ["factored", "materialized", "auto"])
def test_half_precision_error_is_close_to_the_base_models_own(
    half: torch.dtype, forward: str
) -> None:
    """Adapted half model vs adapted float32 model: within 1.3x the base model's half error.

    Measured ratios are 1.03-1.11 (rounding ``W_k + Delta_k`` once more in the materialized
    strategy adds one rounding of the weights, ``sqrt(3/2) = 1.22`` at worst)."""
    base = tiny_encoder(d=48, n_layers=3)
    config = TCURLoRAConfig(TARGETS, rank=4, forward=forward)
    model = apply(copy.deepcopy(base), config)
    _randomize(model, 0.3)
    low_base, low = copy.deepcopy(base).to(half), _as_half_adapter(model, half)
    assert adapter_groups(low)[0].dU.dtype == torch.float32
    for tokens in (1, 16, 256):
        # 16 sequences: enough numbers for a stable error norm even at one token each
        x = torch.randn(16, tokens, 48, generator=torch.Generator().manual_seed(tokens))
        x = x.to(half).float()  # one input that both precisions represent exactly
        with torch.no_grad():
            base_error = _relative_error(_hidden(low_base, x.to(half)), _hidden(base, x))
            adapted, reference = _hidden(low, x.to(half)), _hidden(model, x)
            ratio = _relative_error(adapted, reference) / base_error
            assert adapted.dtype == half
            assert ratio <= 1.3, (tokens, ratio)
            assert _relative_error(reference, _hidden(base, x)) > 10 * base_error  # update matters


@pytest.mark.parametrize("forward", ["factored", "materialized"])
def test_per_pass_cache_never_holds_a_full_update(forward: str) -> None:
    model = apply(tiny_encoder(d=16, n_layers=4), TCURLoRAConfig(TARGETS, rank=2, forward=forward))
    _randomize(model, 0.1)
    model(torch.randn(2, 5, 16)).sum().backward()
    for group in adapter_groups(model):
        d = group.dims
        cached = [t for c in group._caches.values() for t in c.value]
        assert cached, "the pass built its operands"
        assert all(t.numel() < d.d_out * d.d_in for t in cached)
