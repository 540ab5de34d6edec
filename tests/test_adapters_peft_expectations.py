"""What PEFT's own tuner tests expect of a tuner, re-checked for tcur (issue 18 §4).

Layer sizes, disabling adapters, ``set_requires_grad`` and ``get_model_status`` with the shared
``dU``, mixed adapter batches, dtype-tolerant fingerprints, a config reused on another model,
``torch.compile``.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import torch
from adapter_models import tiny_encoder
from torch import nn

from tcur.adapters import TCURLoRAConfig, adapter_groups, apply, load, save
from tcur.adapters import plan as plan_module

peft = pytest.importorskip("peft")
from peft import PeftModel, get_peft_model  # noqa: E402

from tcur.adapters.peft import CURLoRAPeftConfig, TCURLoRAPeftConfig  # noqa: E402


def _peft(model: nn.Module, **options: Any) -> PeftModel:
    config = TCURLoRAPeftConfig(**{"target_modules": ["query", "value"], "rank": 2, **options})
    return get_peft_model(model, config)


def _dU_flags(model: nn.Module) -> list[bool]:
    return [g.dU.requires_grad for g in adapter_groups(model)]


@pytest.mark.parametrize("host", ["native", "peft"])
def test_layers_expose_in_and_out_features(host: str) -> None:
    pytest.importorskip("transformers")
    from adapter_models import tiny_gpt2

    models = [tiny_encoder(), tiny_gpt2()]
    targets = [["up"], ["c_attn"]]
    expected = [(12, 24), (32, 96)]  # Linear (out, in) = (24, 12); Conv1D (in, out) = (32, 96)
    for model, target, sizes in zip(models, targets, expected, strict=True):
        if host == "native":
            adapted = apply(model, TCURLoRAConfig(target, rank=2))
        else:
            adapted = get_peft_model(model, CURLoRAPeftConfig(target_modules=target, rank=2))
        name = next(n for n, _ in adapted.named_modules() if n.endswith(target[0]))
        layer = adapted.get_submodule(name)
        assert (layer.in_features, layer.out_features) == sizes


def test_disable_adapter_layers_and_context_freeze_the_shared_dU() -> None:
    model = _peft(tiny_encoder())
    assert _dU_flags(model) == [True, True]
    model.base_model.disable_adapter_layers()
    assert _dU_flags(model) == [False, False]
    model.base_model.enable_adapter_layers()
    assert _dU_flags(model) == [True, True]
    with model.disable_adapter():
        assert _dU_flags(model) == [False, False]
        assert model.get_nb_trainable_parameters()[0] == 0
    assert _dU_flags(model) == [True, True]


def test_set_requires_grad_reaches_the_shared_dU() -> None:
    model = _peft(tiny_encoder())
    model.add_adapter("other", TCURLoRAPeftConfig(target_modules=["query"], rank=2))
    model.set_requires_grad("default", False)
    assert _dU_flags(model) == [False, False, False]  # "other" is not active: not trainable
    model.set_requires_grad(["default", "other"], True)
    assert _dU_flags(model) == [True, True, True]
    model.set_requires_grad("other", False)
    assert _dU_flags(model) == [True, True, False]
    with pytest.raises(ValueError, match="no adapter named 'nope'"):
        model.set_requires_grad("nope", True)


def _status(model: PeftModel) -> tuple[dict[str, Any], dict[str, list[str]]]:
    status = model.get_model_status()
    layers = model.get_layer_status()
    for layer in layers:  # every layer agrees with the model-wide answer
        for name, flag in layer.requires_grad.items():
            assert flag == status.requires_grad[name], layer.name
        for name, devices in layer.devices.items():
            assert devices == status.devices[name], layer.name
    return dict(status.requires_grad), dict(status.devices)


def test_model_and_layer_status_report_the_shared_dU() -> None:
    """``get_model_status``/``get_layer_status``: requires_grad and devices per adapter."""
    model = _peft(tiny_encoder())
    model.add_adapter("other", TCURLoRAPeftConfig(target_modules=["query"], rank=2))
    cpu = {"default": ["cpu"], "other": ["cpu"]}
    assert _status(model) == ({"default": True, "other": False}, cpu)
    with model.disable_adapter():
        assert _status(model) == ({"default": False, "other": False}, cpu)
    assert _status(model) == ({"default": True, "other": False}, cpu)
    model.set_requires_grad(["default", "other"], True)
    assert _status(model) == ({"default": True, "other": True}, cpu)
    model.set_requires_grad("default", False)
    assert _status(model) == ({"default": False, "other": True}, cpu)
    model.base_model.set_adapter("other")
    assert _status(model) == ({"default": False, "other": True}, cpu)
    model.delete_adapter("default")
    assert _status(model) == ({"other": True}, {"other": ["cpu"]})
    # the view that shows dU to PEFT is not registered: state_dict keys are unchanged
    assert not [k for k in model.state_dict() if "tcur_dU" in k]
    assert sum(1 for k in model.state_dict() if k.endswith(".dU")) == 1


@pytest.mark.parametrize("low_cpu_mem_usage", [False, True])
def test_status_of_a_loaded_adapter_and_its_dtype(tmp_path: Path, low_cpu_mem_usage: bool) -> None:
    """Loaded frozen or trainable; PEFT's device move keeps ``dU`` float32 in bfloat16 models."""
    _peft(tiny_encoder(dtype=torch.bfloat16)).save_pretrained(tmp_path)
    for trainable in (False, True):
        loaded = PeftModel.from_pretrained(
            tiny_encoder(dtype=torch.bfloat16),
            tmp_path,
            is_trainable=trainable,
            low_cpu_mem_usage=low_cpu_mem_usage,
        )
        assert _status(loaded) == ({"default": trainable}, {"default": ["cpu"]})
        layer = loaded.base_model.model.layers[0].query
        layer._move_adapter_to_device_of_base_layer("default")
        assert [g.dU.dtype for g in adapter_groups(loaded)] == [torch.float32] * 2


def test_mixed_adapter_batches_are_refused_not_ignored() -> None:
    model = _peft(tiny_encoder())
    x = torch.randn(2, 5, 12)
    with pytest.raises(TypeError, match="mixed adapter batches"):
        model(x, adapter_names=["default", "__base__"])


def _base_copy(dtype: torch.dtype) -> nn.Module:
    return tiny_encoder(d=64).to(dtype)


def _trained_fp32() -> nn.Module:
    model = apply(tiny_encoder(d=64), TCURLoRAConfig(["query"], rank=2))
    with torch.no_grad():
        for group in adapter_groups(model):
            group.dU.normal_(generator=torch.Generator().manual_seed(0))
    return model


def test_float32_adapter_loads_on_float16_copy_native(tmp_path: Path) -> None:
    trained = _trained_fp32()
    save(trained, tmp_path)
    x = torch.randn(2, 5, 64)
    with torch.no_grad():
        expected = trained(x)
    half = load(_base_copy(torch.float16), tmp_path)
    assert half.layers[0].query.base_layer.weight.dtype == torch.float16
    # the state_dict of the float32 model loads too (identity compared in float16)
    copy.deepcopy(half).load_state_dict(trained.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(half.float()(x), expected, rtol=0, atol=5e-3)


def test_float32_adapter_loads_on_float16_copy_peft(tmp_path: Path) -> None:
    model = _peft(tiny_encoder(d=64))
    model.save_pretrained(tmp_path)
    PeftModel.from_pretrained(_base_copy(torch.float16), tmp_path)
    PeftModel.from_pretrained(_base_copy(torch.bfloat16), tmp_path)


def test_dtype_pairs_that_cannot_match_name_the_dtypes(tmp_path: Path) -> None:
    bf16 = apply(tiny_encoder(d=64, dtype=torch.bfloat16), TCURLoRAConfig(["query"], rank=2))
    save(bf16, tmp_path)
    with pytest.raises(ValueError, match=r"torch\.float16 weights .* built on torch\.bfloat16"):
        load(_base_copy(torch.float16), tmp_path)
    other = tiny_encoder(d=64, seed=1).to(torch.float16)
    save(_trained_fp32(), tmp_path / "fp32")
    with pytest.raises(ValueError, match=r"rounded to float16.*different base model"):
        load(other, tmp_path / "fp32")


def test_state_dict_identity_errors_say_what_differs() -> None:
    first = apply(tiny_encoder(), TCURLoRAConfig(["query"], rank=2, scaling="plain"))
    nudged = tiny_encoder()
    with torch.no_grad():
        nudged.layers[1].query.weight[0, 0] += 0.05  # same selection, other weights
    other_weights = apply(nudged, TCURLoRAConfig(["query"], rank=2, scaling="plain"))
    with pytest.raises(ValueError, match=r"weights_sha256.*built on other base weights"):
        first.load_state_dict(other_weights.state_dict())
    other_config = apply(tiny_encoder(), TCURLoRAConfig(["query"], rank=2, scaling="plain", seed=3))
    with pytest.raises(ValueError, match=r"config_sha256.*built with another config"):
        first.load_state_dict(other_config.state_dict())


def test_config_reused_on_another_model_is_refused() -> None:
    config = TCURLoRAPeftConfig(target_modules=["query"], rank=2)
    get_peft_model(tiny_encoder(n_layers=2), config)
    with pytest.raises(ValueError, match=r"targets module 'layers\.2\.query'.*no saved group"):
        get_peft_model(tiny_encoder(n_layers=3), config)


@pytest.mark.parametrize("host", ["native", "peft"])
def test_torch_compile_does_not_recompile(host: str) -> None:
    """One graph per mode (training, inference), none after the first call of each."""
    import torch._dynamo

    torch._dynamo.reset()
    graphs = [0]
    aot_eager = torch._dynamo.lookup_backend("aot_eager")

    def counting(gm: torch.fx.GraphModule, inputs: list[torch.Tensor]) -> Any:
        graphs[0] += 1
        return aot_eager(gm, inputs)

    model: nn.Module = tiny_encoder()
    if host == "native":
        model = apply(model, TCURLoRAConfig(["query", "value"], rank=2))
    else:
        model = _peft(model)
    compiled = torch.compile(model, backend=counting)
    x = torch.randn(2, 5, 12)
    counts = []
    model.train()
    for _ in range(3):
        compiled(x).sum().backward()
        counts.append(graphs[0])
    model.eval()
    for _ in range(3):
        with torch.no_grad():
            compiled(x)
        counts.append(graphs[0])
    assert counts[0] >= 1 and counts[1] == counts[2] == counts[0]
    assert counts[4] == counts[5] == counts[3]
    assert all(g.dU.grad is not None for g in adapter_groups(model))


def test_peft_containers_own_their_hooks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each adapter's groups: one stack per group, one counter, hooks removed with the adapter."""
    stacks = [0]
    original = plan_module.stacked_weights

    def counted(*args: Any) -> Any:
        stacks[0] += 1
        return original(*args)

    monkeypatch.setattr(plan_module, "stacked_weights", counted)
    model = _peft(tiny_encoder())
    assert stacks[0] == 2  # query and value: two groups, each stacked once
    base = model.base_model.model
    tuner = model.base_model
    model.add_adapter("other", TCURLoRAPeftConfig(target_modules=["query"], rank=2))
    assert len(base._forward_pre_hooks) == 2 and len(tuner._load_state_dict_pre_hooks) == 2
    containers = dict(tuner.tcurlora_groups.items())
    for container in containers.values():
        assert all(g.passes is container.passes for g in container.values())
    before = containers["default"].passes.value
    model(torch.randn(2, 5, 12))
    assert containers["default"].passes.value == before + 1
    model.delete_adapter("other")
    assert len(base._forward_pre_hooks) == 1 and len(tuner._load_state_dict_pre_hooks) == 1
    plain = model.unload()
    assert not plain._forward_pre_hooks and not tuner._load_state_dict_pre_hooks
