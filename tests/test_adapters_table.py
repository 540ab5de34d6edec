"""One test table for both hosts (issue 18 §5), in the manner of PEFT's ``test_custom_models.py``.

Rows are cases, a tiny model and a configuration: every model with tCURLoRA and with CURLoRA
(``MODEL_CASES``), and every further configuration (forward strategy, dropout,
``modules_to_save``) on the MLP and on the tiny BERT (``CONFIG_CASES``). Columns are generic
checks, each run on both hosts: the native ``tcur.adapters.apply`` and PEFT's
``get_peft_model`` with ``TCURLoRAPeftConfig``/``CURLoRAPeftConfig``.

Checks: training changes the output (and nothing but the adapter and ``modules_to_save``);
merge equals the unmerged output (dtype-scaled tolerance); unmerge restores it exactly; unload
leaves no adapter module (and the base weights, or the merged ones); save/load round trip
exact; disable-adapter gives the base output (PEFT's ``disable_adapter()``, the native
``disable_adapters(model)``); a bfloat16 model trains and merges with a float32
``dU``; gradient checkpointing gives the same gradients (the transformers models).

Models are built from code or configs with random weights (``adapter_models``), in float64
where exactness is asserted; inputs and targets come from seeded generators.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import torch
from adapter_models import encoder_net, mlp
from torch import nn

from tcur.adapters import (
    CURLoRAConfig,
    TCURGroup,
    TCURGroups,
    TCURLoRAConfig,
    adapter_groups,
    apply,
    disable_adapters,
    load,
    merge,
    save,
    unload,
    unmerge,
)
from tcur.adapters.layers import AdapterLayer

pytest.importorskip("transformers")
pytest.importorskip("peft")
from adapter_models import tiny_bert, tiny_gpt2, tiny_llama
from peft import PeftModel, get_peft_model
from peft.tuners.tuners_utils import BaseTunerLayer
from peft.utils import ModulesToSaveWrapper

from tcur.adapters.peft import CURLoRAPeftConfig, TCURLoRAPeftConfig

HOSTS = ("native", "peft")
Inputs = tuple[tuple[Any, ...], dict[str, Any]]


def _ids(generator: torch.Generator, causal: bool = False) -> Inputs:
    kwargs: dict[str, Any] = {"input_ids": torch.randint(0, 64, (2, 6), generator=generator)}
    if causal:
        kwargs["use_cache"] = False  # no cache warnings under gradient checkpointing
    return (), kwargs


@dataclass(frozen=True)
class ModelCase:
    """A tiny model, its target modules, its inputs and what it supports."""

    build: Callable[[], nn.Module]
    targets: list[str]
    inputs: Callable[[torch.Generator], Inputs]
    head: str | None = None  # the module that ``modules_to_save`` configurations train
    checkpointing: bool = False  # has transformers' gradient_checkpointing_enable()
    refuses: tuple[str, ...] = field(default=())  # configurations its targets refuse


MODELS: dict[str, ModelCase] = {
    "mlp": ModelCase(
        mlp,
        ["lin0", "lins.0", "lins.1"],
        lambda g: ((torch.randn(4, 10, generator=g),), {}),
        head="head",
    ),
    "bert": ModelCase(tiny_bert, ["query", "value"], _ids, head="classifier", checkpointing=True),
    "gpt2": ModelCase(
        tiny_gpt2, ["c_attn", "c_proj"], lambda g: _ids(g, causal=True), checkpointing=True
    ),
    "encoder": ModelCase(
        encoder_net,
        ["self_attn", "linear1", "linear2"],
        lambda g: ((torch.randn(2, 5, 16, generator=g),), {}),
        refuses=("factored", "dropout"),  # nn.MultiheadAttention's weights: materialized only
    ),
    "llama": ModelCase(
        tiny_llama,
        ["q_proj", "v_proj", "down_proj"],
        lambda g: _ids(g, causal=True),
        head="lm_head",
        checkpointing=True,
    ),
}

CONFIGS: dict[str, tuple[str, dict[str, Any]]] = {
    "tcur": ("tcur", {}),
    "cur": ("cur", {}),
    "tcur-factored": ("tcur", {"forward": "factored"}),
    "tcur-materialized": ("tcur", {"forward": "materialized"}),
    "cur-factored": ("cur", {"forward": "factored"}),
    "cur-materialized": ("cur", {"forward": "materialized"}),
    "tcur-dropout": ("tcur", {"dropout": 0.2}),
    "cur-dropout": ("cur", {"dropout": 0.2}),
    "tcur-save": ("tcur", {"modules_to_save": True}),
    "cur-save": ("cur", {"modules_to_save": True}),
}

MODEL_CASES = [f"{model}/{config}" for model in MODELS for config in ("tcur", "cur")]
CONFIG_CASES = [
    f"{model}/{config}" for model in ("mlp", "bert") for config in CONFIGS if "-" in config
]
CASES = MODEL_CASES + CONFIG_CASES
CHECKPOINT_CASES = [c for c in CASES if MODELS[c.split("/")[0]].checkpointing]


def _close(actual: torch.Tensor, expected: torch.Tensor) -> None:
    """Equal within rounding of their dtype, scaled to the size of ``expected``."""
    eps = torch.finfo(expected.dtype).eps
    scale = max(1.0, float(expected.abs().max()))
    factor = 8.0 if expected.dtype == torch.bfloat16 else 1e4
    torch.testing.assert_close(actual, expected, rtol=factor * eps, atol=factor * eps * scale)


def _output(model: nn.Module, inputs: Inputs, dtype: torch.dtype) -> torch.Tensor:
    args, kwargs = inputs
    args = tuple(a.to(dtype) if a.is_floating_point() else a for a in args)
    out = model(*args, **kwargs)
    if isinstance(out, torch.Tensor):
        return out
    logits: torch.Tensor = out.logits
    return logits


def _config(case: str, host: str) -> Any:
    model_name, config_name = case.split("/")
    spec = MODELS[model_name]
    kind, options = CONFIGS[config_name]
    options = dict(options, rank=2)
    if options.pop("modules_to_save", False):
        assert spec.head is not None
        options["modules_to_save"] = [spec.head]
    if host == "native":
        return (TCURLoRAConfig if kind == "tcur" else CURLoRAConfig)(spec.targets, **options)
    peft_cls = TCURLoRAPeftConfig if kind == "tcur" else CURLoRAPeftConfig
    return peft_cls(target_modules=spec.targets, **options)


def _adapt(base: nn.Module, case: str, host: str) -> nn.Module:
    """A copy of ``base`` with the case's adapter on ``host`` (``base`` is left untouched)."""
    model = copy.deepcopy(base)
    config = _config(case, host)
    return apply(model, config) if host == "native" else get_peft_model(model, config)


def _base_model(model: nn.Module, host: str) -> nn.Module:
    """The transformers model inside ``model`` (itself on the native host)."""
    return model if host == "native" else model.get_base_model()  # type: ignore[operator]


def _trainable(model: nn.Module) -> list[nn.Parameter]:
    return [p for p in model.parameters() if p.requires_grad]


def _train(model: nn.Module, inputs: Inputs, dtype: torch.dtype, steps: int = 3) -> None:
    """A few Adam steps towards a fixed random target (train mode: dropout on); ends in eval."""
    model.train()
    optimizer = torch.optim.Adam(_trainable(model), lr=0.05)
    target: torch.Tensor | None = None
    for _ in range(steps):
        optimizer.zero_grad()
        out = _output(model, inputs, dtype)
        if target is None:
            generator = torch.Generator().manual_seed(11)
            target = torch.randn(out.shape, generator=generator, dtype=torch.float64).to(dtype)
        (out.float() - target.float()).pow(2).mean().backward()
        optimizer.step()
    model.eval()


@dataclass
class Trained:
    base: nn.Module
    model: nn.Module
    inputs: Inputs
    base_out: torch.Tensor
    out: torch.Tensor  # the trained adapter's eval output


def _trained(case: str, host: str, dtype: torch.dtype = torch.float64) -> Trained:
    torch.manual_seed(0)
    base = MODELS[case.split("/")[0]].build().to(dtype).eval()
    inputs = MODELS[case.split("/")[0]].inputs(torch.Generator().manual_seed(1))
    model = _adapt(base, case, host)
    _train(model, inputs, dtype)
    with torch.no_grad():
        base_out = _output(base, inputs, dtype)
        out = _output(model, inputs, dtype)
    return Trained(base, model, inputs, base_out, out)


def _merge(model: nn.Module, host: str) -> None:
    merge(model) if host == "native" else model.merge_adapter()  # type: ignore[operator]


def _unmerge(model: nn.Module, host: str) -> None:
    unmerge(model) if host == "native" else model.unmerge_adapter()  # type: ignore[operator]


def _weights(model: nn.Module) -> dict[str, torch.Tensor]:
    """The base weights by their base-model names (PEFT's ``base_layer.`` removed)."""
    return {
        k.replace("base_layer.", "")
        .replace("original_module.", "")
        .removeprefix("base_model.model."): v.detach().clone()
        for k, v in model.state_dict().items()
        if "dU" not in k and "tcur" not in k and "curlora" not in k and "modules_to_save" not in k
    }


def _head_key(case: str, key: str) -> bool:
    head = MODELS[case.split("/")[0]].head
    return "save" in case and head is not None and key.startswith(head + ".")


@pytest.mark.parametrize("host", HOSTS)
@pytest.mark.parametrize("case", CASES)
def test_training_changes_the_output_and_only_the_adapter(case: str, host: str) -> None:
    torch.manual_seed(0)
    base = MODELS[case.split("/")[0]].build().double().eval()
    inputs = MODELS[case.split("/")[0]].inputs(torch.Generator().manual_seed(1))
    model = _adapt(base, case, host).eval()
    with torch.no_grad():
        base_out = _output(base, inputs, torch.float64)
        _close(_output(model, inputs, torch.float64), base_out)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(
        n.endswith("dU") or "head" in n or "classifier" in n for n in trainable
    )
    _train(model, inputs, torch.float64)
    with torch.no_grad():
        out = _output(model, inputs, torch.float64)
    # far above rounding (BERT's 0.02-std initialisation keeps its logits near 0.01)
    assert float((out - base_out).abs().max()) > 1e-4 * float(base_out.abs().max())
    assert all(float(g.dU.detach().abs().max()) > 0 for g in adapter_groups(model))
    before = _weights(base)
    for key, value in _weights(model).items():
        if not _head_key(case, key) or host == "peft":  # PEFT trains a copy of the head
            assert torch.equal(value, before[key]), key


@pytest.mark.parametrize("host", HOSTS)
@pytest.mark.parametrize("case", CASES)
def test_merge_equals_unmerged_and_unmerge_restores(case: str, host: str) -> None:
    t = _trained(case, host)
    weights = _weights(t.model)
    with torch.no_grad():
        _merge(t.model, host)
        merged = _output(t.model, t.inputs, torch.float64)
        changed = _weights(t.model)
        assert any(not torch.equal(changed[k], weights[k]) for k in weights)
        _close(merged, t.out)
        _unmerge(t.model, host)
        torch.testing.assert_close(_output(t.model, t.inputs, torch.float64), t.out, rtol=0, atol=0)
    for key, value in _weights(t.model).items():
        assert torch.equal(value, weights[key]), key


def _adapter_free(model: nn.Module) -> None:
    kinds = (AdapterLayer, BaseTunerLayer, ModulesToSaveWrapper, TCURGroup, TCURGroups)
    assert not [n for n, m in model.named_modules() if isinstance(m, kinds)]
    assert not [k for k in model.state_dict() if "dU" in k or "base_layer" in k]
    assert all(not m._forward_pre_hooks for m in model.modules())  # fast-path guards removed
    assert not hasattr(model, "tcur_groups")


@pytest.mark.parametrize("host", HOSTS)
@pytest.mark.parametrize("case", CASES)
def test_unload_leaves_no_adapter_module(case: str, host: str) -> None:
    t = _trained(case, host)
    copied = copy.deepcopy(t.model)
    if host == "native":
        plain, merged = unload(t.model), unload(copied, merge=True)
    else:
        plain, merged = t.model.unload(), copied.merge_and_unload()  # type: ignore[operator]
    for unloaded in (plain, merged):
        _adapter_free(unloaded)
    before = _weights(t.base)
    for key, value in plain.state_dict().items():
        if not _head_key(case, key):  # the trained head stays, as in PEFT
            assert torch.equal(value, before[key]), key
    with torch.no_grad():
        if "save" not in case:
            _close(_output(plain, t.inputs, torch.float64), t.base_out)
        _close(_output(merged, t.inputs, torch.float64), t.out)


@pytest.mark.parametrize("host", HOSTS)
@pytest.mark.parametrize("case", CASES)
def test_save_load_round_trip_is_exact(case: str, host: str, tmp_path: Path) -> None:
    t = _trained(case, host)
    fresh = copy.deepcopy(t.base)
    if host == "native":
        save(t.model, tmp_path)
        restored = load(fresh, tmp_path)
    else:
        t.model.save_pretrained(tmp_path)  # type: ignore[operator]
        restored = PeftModel.from_pretrained(fresh, tmp_path)
    restored.eval()
    with torch.no_grad():
        torch.testing.assert_close(
            _output(restored, t.inputs, torch.float64), t.out, rtol=0, atol=0
        )
    saved = {n: p for n, p in t.model.named_parameters() if p.requires_grad}
    loaded = dict(restored.named_parameters())
    for name, parameter in saved.items():
        assert torch.equal(loaded[name], parameter), name


@pytest.mark.parametrize("host", HOSTS)
@pytest.mark.parametrize("case", CASES)
def test_disable_adapter_gives_the_base_output(case: str, host: str) -> None:
    """PEFT's ``disable_adapter()``; natively ``tcur.adapters.disable_adapters(model)``."""
    if host == "native" and case.endswith("-save"):
        pytest.skip("native modules_to_save train in place: no untrained copy to fall back to")
    t = _trained(case, host)
    switch = disable_adapters(t.model) if host == "native" else t.model.disable_adapter()
    with torch.no_grad():
        with switch:  # type: ignore[attr-defined]
            disabled = _output(t.model, t.inputs, torch.float64)
        again = _output(t.model, t.inputs, torch.float64)
    _close(disabled, t.base_out)
    torch.testing.assert_close(again, t.out, rtol=0, atol=0)


@pytest.mark.parametrize("host", HOSTS)
@pytest.mark.parametrize("case", CASES)
def test_bfloat16_model_trains_with_a_float32_adapter(case: str, host: str) -> None:
    t = _trained(case, host, dtype=torch.bfloat16)
    groups = adapter_groups(t.model)
    assert groups and all(g.dU.dtype == torch.float32 for g in groups)
    assert all(float(g.dU.detach().abs().max()) > 0 for g in groups)
    assert t.out.dtype == torch.bfloat16 and bool(torch.isfinite(t.out).all())
    assert not torch.equal(t.out, t.base_out)
    with torch.no_grad():
        _merge(t.model, host)
        merged = _output(t.model, t.inputs, torch.bfloat16)
        _unmerge(t.model, host)
        restored = _output(t.model, t.inputs, torch.bfloat16)
    _close(merged, t.out)
    torch.testing.assert_close(restored, t.out, rtol=0, atol=0)


def _gradients(model: nn.Module, inputs: Inputs) -> dict[str, torch.Tensor]:
    model.train()
    model.zero_grad(set_to_none=True)
    torch.manual_seed(5)  # the same dropout masks in both runs
    _output(model, inputs, torch.float64).pow(2).sum().backward()
    grads = {n: p.grad for n, p in model.named_parameters() if p.requires_grad}
    assert all(g is not None for g in grads.values())
    return {n: g for n, g in grads.items() if g is not None}


@pytest.mark.parametrize("host", HOSTS)
@pytest.mark.parametrize("case", CHECKPOINT_CASES)
def test_gradient_checkpointing_gives_the_same_gradients(case: str, host: str) -> None:
    t = _trained(case, host)
    checkpointed = copy.deepcopy(t.model)
    _base_model(checkpointed, host).gradient_checkpointing_enable(  # type: ignore[operator]
        gradient_checkpointing_kwargs={"use_reentrant": False}
    )
    assert _base_model(checkpointed, host).is_gradient_checkpointing
    expected = _gradients(t.model, t.inputs)
    got = _gradients(checkpointed, t.inputs)
    assert expected.keys() == got.keys() and any(n.endswith("dU") for n in got)
    for name, grad in got.items():
        _close(grad, expected[name])


def test_native_disable_refuses_a_merged_model_and_restores_after_an_error() -> None:
    t = _trained(CASES[0], "native")
    merge(t.model)
    with pytest.raises(ValueError, match="unmerge first"), disable_adapters(t.model):
        pass
    unmerge(t.model)
    with pytest.raises(RuntimeError, match="inside"), disable_adapters(t.model):
        raise RuntimeError("inside")
    with torch.no_grad():
        torch.testing.assert_close(_output(t.model, t.inputs, torch.float64), t.out)
