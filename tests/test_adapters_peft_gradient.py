"""``basis="gradient"`` through PEFT: ``get_peft_model`` + ``initialize_gradient_bases``, the
same bases and outputs as the native host, save/load of the bases, and every refusal."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from adapter_models import tiny_encoder, tiny_gpt2
from torch import nn

peft = pytest.importorskip("peft")

from peft import PeftModel, get_peft_model  # noqa: E402
from peft.utils import set_peft_model_state_dict  # noqa: E402
from safetensors.torch import load_file, save_file  # noqa: E402

from tcur.adapters import adapter_groups, apply, loss_gradients  # noqa: E402
from tcur.adapters.peft import (  # noqa: E402
    CURLoRAPeftConfig,
    TCURLoRAPeftConfig,
    initialize_gradient_bases,
)

TARGETS = ["query", "value", "up"]


def _batches() -> list[tuple[torch.Tensor, torch.Tensor]]:
    generator = torch.Generator().manual_seed(1)
    return [
        (torch.randn(4, 5, 12, generator=generator), torch.randint(0, 2, (4,), generator=generator))
        for _ in range(3)
    ]


def _loss(model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    x, y = batch
    return nn.functional.cross_entropy(model(x), y)


def _config(kind: type = TCURLoRAPeftConfig, **kwargs: object) -> TCURLoRAPeftConfig:
    options: dict[str, object] = {"target_modules": TARGETS, "rank": 2, "basis": "gradient"}
    options.update(kwargs)
    return kind(**options)  # type: ignore[no-any-return]


def _gradients(config: TCURLoRAPeftConfig) -> dict[str, torch.Tensor]:
    return loss_gradients(tiny_encoder(0), config.tcur_config(), _batches(), _loss)


def _initialized(config: TCURLoRAPeftConfig) -> PeftModel:
    gradients = _gradients(config)
    model = get_peft_model(tiny_encoder(0), config)
    initialize_gradient_bases(model, gradients)
    return model


def _randomize(groups: list[nn.Module], seed: int = 3) -> None:
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for group in groups:
            group.dU.copy_(torch.randn(group.dU.shape, generator=generator))


def _peft_groups(model: PeftModel, adapter: str = "default") -> list[nn.Module]:
    return list(model.base_model.groups[adapter].values())


def _output(model: nn.Module) -> torch.Tensor:
    x = torch.randn(2, 5, 12, generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        out: torch.Tensor = model(x)
    return out


@pytest.mark.parametrize("kind", [TCURLoRAPeftConfig, CURLoRAPeftConfig])
def test_peft_gradient_bases_are_the_native_ones(kind: type) -> None:
    config = _config(kind)
    model = _initialized(config)
    native = apply(tiny_encoder(0), config.tcur_config(), gradients=_gradients(config))
    ours, theirs = _peft_groups(model), adapter_groups(native)
    assert len(ours) == len(theirs) > 0
    for a, b in zip(ours, theirs, strict=True):
        assert a.members == b.members and a.scale == b.scale and not a.bases_pending
        torch.testing.assert_close(a.C, b.C, rtol=0, atol=0)
        torch.testing.assert_close(a.R, b.R, rtol=0, atol=0)
    _randomize(ours)
    _randomize(theirs)
    torch.testing.assert_close(_output(model), _output(native))


def test_a_pending_adapter_refuses_to_run_merge_or_train() -> None:
    model = get_peft_model(tiny_encoder(0), _config())
    assert all(group.bases_pending for group in _peft_groups(model))
    with pytest.raises(RuntimeError, match="initialize_gradient_bases"):
        _output(model)
    with pytest.raises(RuntimeError, match="initialize_gradient_bases"):
        model.merge_adapter()
    with model.disable_adapter():  # the base model itself still runs
        torch.testing.assert_close(_output(model), _output(tiny_encoder(0)))


def test_saved_bases_load_back_with_from_pretrained(tmp_path: Path) -> None:
    model = _initialized(_config())
    _randomize(_peft_groups(model))
    expected = _output(model)
    model.save_pretrained(tmp_path)
    saved = load_file(tmp_path / "adapter_model.safetensors")
    assert any(key.endswith(".C") for key in saved) and any(key.endswith(".R") for key in saved)
    for low_cpu_mem_usage in (False, True):
        restored = PeftModel.from_pretrained(
            tiny_encoder(0), tmp_path, low_cpu_mem_usage=low_cpu_mem_usage
        )
        assert not any(group.bases_pending for group in _peft_groups(restored))
        torch.testing.assert_close(_output(restored), expected)
        with pytest.raises(ValueError, match="already"):
            initialize_gradient_bases(restored, _gradients(_config()))


def test_columns_adapters_still_save_no_bases(tmp_path: Path) -> None:
    model = get_peft_model(tiny_encoder(0), _config(basis="columns"))
    model.save_pretrained(tmp_path)
    saved = load_file(tmp_path / "adapter_model.safetensors")
    assert not any(key.endswith((".C", ".R")) for key in saved)


def test_a_pending_adapter_is_not_saved_and_zero_saved_bases_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="nothing to save"):
        get_peft_model(tiny_encoder(0), _config()).save_pretrained(tmp_path / "pending")
    assert not (tmp_path / "pending" / "adapter_model.safetensors").exists()
    _initialized(_config()).save_pretrained(tmp_path)
    path = tmp_path / "adapter_model.safetensors"
    saved = load_file(path)
    key = next(k for k in saved if k.endswith(".R"))
    save_file(saved | {key: torch.zeros_like(saved[key])}, path)
    with pytest.raises(ValueError, match="zero or not finite"):
        PeftModel.from_pretrained(tiny_encoder(0), tmp_path)


def test_a_refused_load_leaves_no_adapter_or_one_waiting_for_its_bases(tmp_path: Path) -> None:
    _initialized(_config()).save_pretrained(tmp_path)
    model = get_peft_model(tiny_encoder(1), _config(basis="columns"))
    before = _output(model)
    # The saved groups carry the base weights' fingerprints: refused before anything is built.
    with pytest.raises(ValueError, match="differs from the base model the adapter was built on"):
        model.load_adapter(tmp_path, adapter_name="x")
    assert "x" not in model.peft_config and "x" not in model.base_model.groups
    assert torch.equal(_output(model), before)
    # A config saved before the fingerprints were kept: the state dict's check refuses it.
    path = tmp_path / "adapter_config.json"
    saved = json.loads(path.read_text())
    saved["groups"] = [
        {k: v for k, v in g.items() if not k.startswith("weights_")} for g in saved["groups"]
    ]
    path.write_text(json.dumps(saved))
    with pytest.raises(ValueError, match="other base weights"):
        model.load_adapter(tmp_path, adapter_name="x")
    assert "x" in model.base_model.groups  # PEFT keeps the adapter of a failed load
    assert all(group.bases_pending for group in _peft_groups(model, "x"))
    model.set_adapter("x")
    with pytest.raises(RuntimeError, match="adapter_name='x'"):
        _output(model)


def test_a_failed_copy_leaves_that_group_waiting() -> None:
    source = _initialized(_config())
    state = dict(source.base_model.groups["default"].state_dict())
    last = max(int(key.split(".")[0]) for key in state)
    state[f"{last}.C"] = state[f"{last}.C"][1:]
    target = get_peft_model(tiny_encoder(0), _config())
    with pytest.raises(RuntimeError, match="size mismatch"):
        target.base_model.groups["default"].load_state_dict(state)
    assert _peft_groups(target)[last].bases_pending


def test_gradients_of_a_wrapped_model_are_refused_with_the_fix() -> None:
    config = _config()
    model = get_peft_model(tiny_encoder(0), config)
    with pytest.raises(ValueError, match="before get_peft_model"):
        loss_gradients(model, config.tcur_config(), _batches(), _loss)


def test_a_state_dict_without_the_bases_is_refused() -> None:
    source = _initialized(_config())
    state = {k: v for k, v in source.state_dict().items() if k.endswith(".dU")}
    target = get_peft_model(tiny_encoder(0), _config())
    with pytest.raises(ValueError, match="travel with dU"):
        set_peft_model_state_dict(target, state)
    assert all(group.bases_pending for group in _peft_groups(target))


def test_a_second_named_adapter_gets_its_own_bases() -> None:
    config = _config()
    model = _initialized(config)
    other = _config(rank=1)
    model.add_adapter("other", other)
    assert all(group.bases_pending for group in _peft_groups(model, "other"))
    model.set_adapter("other")
    with pytest.raises(RuntimeError, match="adapter_name='other'"):
        _output(model)
    initialize_gradient_bases(model, _gradients(other), adapter_name="other")
    assert not any(group.bases_pending for group in _peft_groups(model, "other"))


def test_conv1d_weights_get_the_native_bases() -> None:
    pytest.importorskip("transformers")
    config = TCURLoRAPeftConfig(target_modules=["c_attn"], rank=2, basis="gradient")
    ids = torch.randint(0, 64, (2, 6), generator=torch.Generator().manual_seed(0))

    def loss(model: nn.Module, batch: torch.Tensor) -> torch.Tensor:
        return model(input_ids=batch, labels=batch).loss  # type: ignore[no-any-return]

    gradients = loss_gradients(tiny_gpt2(0), config.tcur_config(), [ids], loss)
    model = get_peft_model(tiny_gpt2(0), config)
    initialize_gradient_bases(model, gradients)
    native = apply(tiny_gpt2(0), config.tcur_config(), gradients=gradients)
    for a, b in zip(_peft_groups(model), adapter_groups(native), strict=True):
        torch.testing.assert_close(a.C, b.C, rtol=0, atol=0)
        torch.testing.assert_close(a.R, b.R, rtol=0, atol=0)


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda m, g: initialize_gradient_bases(tiny_encoder(0), g), TypeError, "PeftModel"),
        (lambda m, g: initialize_gradient_bases(m, g, "nope"), ValueError, "adapter_name='nope'"),
        (lambda m, g: initialize_gradient_bases(m, {}), ValueError, "no entry"),
        (
            lambda m, g: initialize_gradient_bases(
                m, g | {"layers.0.query": g["layers.0.query"][1:]}
            ),
            ValueError,
            "has shape",
        ),
        (
            lambda m, g: initialize_gradient_bases(
                m, g | {"layers.1.up": torch.full_like(g["layers.1.up"], float("nan"))}
            ),
            ValueError,
            "NaN",
        ),
    ],
)
def test_bad_calls_are_refused_and_change_nothing(call, error, message) -> None:  # type: ignore[no-untyped-def]
    config = _config()
    gradients = _gradients(config)
    model = get_peft_model(tiny_encoder(0), config)
    with pytest.raises(error, match=message):
        call(model, gradients)
    assert all(group.bases_pending for group in _peft_groups(model))
    assert all(not group.C.any() for group in _peft_groups(model))


def test_a_columns_adapter_takes_no_gradients() -> None:
    model = get_peft_model(tiny_encoder(0), _config(basis="columns"))
    with pytest.raises(ValueError, match="only basis='gradient'"):
        initialize_gradient_bases(model, _gradients(_config()))
