"""Nothing lost through save, load, merge and unmerge; configs take what users pass (issue 18 §3).

``modules_to_save`` buffers, overlap with the targets, exact unmerge in half precision, NumPy
scalars in configs, callables that cannot be saved, the meta device.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from adapter_models import TinyEncoder, tiny_encoder
from torch import nn

from tcur.adapters import (
    CURLoRAConfig,
    TCURLoRAConfig,
    adapter_groups,
    apply,
    load,
    merge,
    save,
    unload,
    unmerge,
)


def _bn_model() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(8, 8), nn.BatchNorm1d(8), nn.Tanh(), nn.Linear(8, 2))


def test_modules_to_save_keeps_batchnorm_running_statistics(tmp_path: Path) -> None:
    model = apply(_bn_model(), CURLoRAConfig(["0"], rank=2, modules_to_save=["1"]))
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    generator = torch.Generator().manual_seed(1)
    model.train()
    for _ in range(5):
        optimizer.zero_grad()
        model(torch.randn(16, 8, generator=generator) * 3 + 1).pow(2).mean().backward()
        optimizer.step()
    model.eval()
    x = torch.randn(4, 8, generator=generator)
    with torch.no_grad():
        expected = model(x)
    save(model, tmp_path)
    restored = load(_bn_model(), tmp_path).eval()
    with torch.no_grad():
        torch.testing.assert_close(restored(x), expected, rtol=0, atol=0)
    assert int(restored[1].num_batches_tracked) == 5


@pytest.mark.parametrize(
    ("modules_to_save", "relation"),
    [(["query"], "is"), (["layers.0"], "contains")],
)
def test_modules_to_save_overlapping_targets_is_refused_untouched(
    modules_to_save: list[str], relation: str
) -> None:
    model = tiny_encoder()
    before = {n: (p.clone(), p.requires_grad) for n, p in model.named_parameters()}
    config = TCURLoRAConfig(["query"], rank=2, modules_to_save=modules_to_save)
    with pytest.raises(
        ValueError, match=rf"modules_to_save entry '(layers\.0\.)?{modules_to_save[0]}' {relation}"
    ):
        apply(model, config)
    assert not hasattr(model, "tcur_groups")
    for name, parameter in model.named_parameters():
        assert (
            torch.equal(parameter, before[name][0]) and parameter.requires_grad == before[name][1]
        )


def test_peft_modules_to_save_overlapping_targets_is_refused_untouched() -> None:
    pytest.importorskip("peft")
    from peft import get_peft_model

    from tcur.adapters.peft import TCURLoRAPeftConfig

    model = tiny_encoder()
    config = TCURLoRAPeftConfig(target_modules=["query"], modules_to_save=["query"], rank=2)
    with pytest.raises(ValueError, match=r"modules_to_save entry 'layers\.0\.query' is the target"):
        get_peft_model(model, config)
    assert all(type(m).__module__ != "tcur.adapters.peft" for m in model.modules())
    assert all(p.requires_grad for p in model.parameters())


def _filled(model: nn.Module, std: float = 0.3) -> nn.Module:
    generator = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for group in adapter_groups(model):
            group.dU.copy_(torch.randn(group.dU.shape, generator=generator) * std)
    return model


def _weights(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_merge_unmerge_unload_is_bit_identical(
    dtype: torch.dtype, tmp_path: Path
) -> None:
    base = tiny_encoder(d=64, n_layers=2, dtype=dtype)
    original = _weights(base)
    model = _filled(apply(base, TCURLoRAConfig(["query", "value"], rank=4)))
    save(model, tmp_path)
    merge(model)
    merged = model.layers[0].query.base_layer.weight
    assert not torch.equal(merged, original["layers.0.query.weight"])
    unmerge(model)
    merge(model)
    plain = unload(model)  # merge=False: the merged updates are taken out again
    for key, value in plain.state_dict().items():
        assert torch.equal(value, original[key]), key
    restored = load(plain, tmp_path)  # the adapter saved before still fits this base
    assert len(adapter_groups(restored)) == 2


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_exact_unmerge_off_restores_within_one_rounding(dtype: torch.dtype) -> None:
    base = tiny_encoder(d=64, n_layers=2, dtype=dtype)
    original = base.layers[0].query.weight.detach().clone()
    config = TCURLoRAConfig(["query"], rank=4, exact_unmerge=False)
    model = _filled(apply(base, config))
    merge(model)
    merged = model.layers[0].query.base_layer.weight.detach().clone()
    unmerge(model)
    restored = model.layers[0].query.base_layer.weight.detach()
    error = (restored.double() - original.double()).abs()
    # one rounding of the merged sum: at most one unit in the last place of max(|W|, |W + D|)
    magnitude = torch.maximum(original.double().abs(), merged.double().abs())
    ulp = torch.finfo(dtype).eps * 2.0 ** torch.floor(torch.log2(magnitude.clamp_min(1e-30)))
    assert bool((error <= ulp).all())
    assert bool((error > 0).any())  # the opt-out is not exact (else the copy would be useless)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_peft_half_precision_merge_unmerge_unload_is_bit_identical(
    dtype: torch.dtype, tmp_path: Path
) -> None:
    pytest.importorskip("peft")
    from peft import PeftModel, get_peft_model

    from tcur.adapters.peft import TCURLoRAPeftConfig

    base = tiny_encoder(d=64, n_layers=2, dtype=dtype)
    original = _weights(base)
    model = _filled(get_peft_model(base, TCURLoRAPeftConfig(target_modules=["query"], rank=4)))
    model.save_pretrained(tmp_path)
    model.merge_adapter()
    model.unmerge_adapter()
    model.merge_adapter()
    plain = model.unload()
    for key, value in plain.state_dict().items():
        assert torch.equal(value, original[key]), key
    PeftModel.from_pretrained(plain, tmp_path)  # the adapter saved before still loads


def test_configs_accept_numpy_scalars() -> None:
    config = TCURLoRAConfig(
        ["query"],
        rank=np.int64(2),
        n_rows=np.int32(3),
        alpha=np.float32(1),
        dropout=np.float64(0.25),
        seed=np.int64(7),
        split_fused={"query": np.int64(1)},
    )
    values = (config.rank, config.n_rows, config.alpha, config.dropout, config.seed)
    assert values == (2, 3, 1.0, 0.25, 7)
    assert [type(v) for v in values] == [int, int, float, float, int]
    json.dumps(config.to_dict())
    cur = CURLoRAConfig(["query"], rank=np.int16(2), alpha=np.float16(0.5), seed=np.uint8(1))
    assert (cur.rank, cur.alpha, cur.seed) == (2, 0.5, 1) and type(cur.seed) is int


@pytest.mark.parametrize(
    ("field", "value", "error"),
    [
        ("seed", "0", TypeError),
        ("seed", 1.0, TypeError),
        ("seed", np.bool_(True), TypeError),
        ("seed", -1, ValueError),
        ("alpha", "1", TypeError),
        ("alpha", np.bool_(True), TypeError),
        ("alpha", np.float32("nan"), ValueError),
        ("dropout", np.float64(1.5), ValueError),
        ("exact_unmerge", 1, TypeError),
        ("target_modules", 5, TypeError),
        ("target_modules", [], ValueError),
    ],
)
def test_config_errors_name_the_argument(field: str, value: Any, error: type[Exception]) -> None:
    options: dict[str, Any] = {"target_modules": ["query"], "rank": 2, field: value}
    with pytest.raises(error, match=field):
        TCURLoRAConfig(**options)


def test_peft_config_numpy_scalars_and_callable_group_by(tmp_path: Path) -> None:
    pytest.importorskip("peft")
    from peft import get_peft_model

    from tcur.adapters.peft import TCURLoRAPeftConfig

    config = TCURLoRAPeftConfig(
        target_modules=["query"], rank=np.int64(2), alpha=np.float32(1), seed=np.int64(0)
    )
    assert type(config.rank) is int and type(config.alpha) is float and type(config.seed) is int
    get_peft_model(tiny_encoder(), config).save_pretrained(tmp_path)  # JSON-serializable
    with pytest.raises(TypeError, match=r"group_by .*callable cannot be written"):
        TCURLoRAPeftConfig(target_modules=["query"], group_by=lambda label, module: "all")  # type: ignore[arg-type]


def test_callable_group_by_state_dicts_exchange_between_apply_and_load(tmp_path: Path) -> None:
    def one_group(label: str, module: nn.Module) -> str:
        return "all"

    applied = _filled(
        apply(tiny_encoder(), TCURLoRAConfig(["query", "value"], rank=2, group_by=one_group))
    )
    save(applied, tmp_path)
    loaded = load(tiny_encoder(), tmp_path)
    assert loaded.tcur_adapter_config.group_by == "callable"
    loaded.load_state_dict(applied.state_dict())
    applied.load_state_dict(loaded.state_dict())
    with pytest.raises(ValueError, match="group_by='callable' marks a config"):
        apply(tiny_encoder(), loaded.tcur_adapter_config)


def test_meta_device_model_gets_a_clear_error() -> None:
    with torch.device("meta"):
        model = TinyEncoder()
    with pytest.raises(ValueError, match=r"'layers\.0\.query' is on the meta device"):
        apply(model, TCURLoRAConfig(["query"], rank=2))
    assert not hasattr(model, "tcur_groups")


def test_unmerge_after_training_while_merged_restores_the_base() -> None:
    """The kept copy is what comes back, whatever dU did meanwhile."""
    base = tiny_encoder(dtype=torch.bfloat16)
    original = _weights(base)
    model = _filled(apply(copy.deepcopy(base), TCURLoRAConfig(["query"], rank=2)))
    merge(model)
    _filled(model, std=1.0)
    plain = unload(model)
    for key, value in plain.state_dict().items():
        assert torch.equal(value, original[key]), key
