"""Saving and loading adapters: round trips, validation, refusal of another base model."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch
from adapter_models import tiny_encoder, tiny_gpt2
from safetensors.torch import load_file, save_file

from tcur.adapters import (
    CURLoRAConfig,
    TCURLoRAConfig,
    adapter_groups,
    adapter_layers,
    apply,
    load,
    save,
)

TARGETS = ["query", "value", "up", "down"]


def _trained(config: CURLoRAConfig | TCURLoRAConfig, seed: int = 0) -> torch.nn.Module:
    model = apply(tiny_encoder(seed), config)
    generator = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for group in adapter_groups(model):
            group.dU.copy_(torch.randn(group.dU.shape, generator=generator))
        if config.modules_to_save is not None:
            for parameter in model.classifier.parameters():
                parameter.add_(1.0)
    return model


def _x() -> torch.Tensor:
    return torch.randn(2, 5, 12, generator=torch.Generator().manual_seed(2))


@pytest.mark.parametrize(
    "config",
    [
        TCURLoRAConfig(TARGETS, rank=2, n_cols=3, modules_to_save=["classifier"]),
        TCURLoRAConfig(TARGETS, rank=2, select="inverse_norm", group_by="shape", seed=5),
        CURLoRAConfig(TARGETS, rank=3, modules_to_save="classifier"),
    ],
)
def test_round_trip_restores_outputs(tmp_path: Path, config: TCURLoRAConfig) -> None:
    model = _trained(config)
    path = save(model, tmp_path / "adapter")
    assert sorted(p.name for p in path.iterdir()) == ["adapter.safetensors", "adapter_config.json"]
    restored = load(tiny_encoder(0), path)
    with torch.no_grad():
        torch.testing.assert_close(restored(_x()), model(_x()), rtol=0, atol=0)
    for ours, theirs in zip(adapter_groups(restored), adapter_groups(model), strict=True):
        assert (ours.rows, ours.cols, ours.members) == (theirs.rows, theirs.cols, theirs.members)
    trainable = [n for n, p in restored.named_parameters() if p.requires_grad]
    assert trainable == [n for n, p in model.named_parameters() if p.requires_grad]


def test_config_file_contents(tmp_path: Path) -> None:
    config = TCURLoRAConfig(TARGETS, rank=2, modules_to_save=["classifier"])
    save(_trained(config), tmp_path)
    meta = json.loads((tmp_path / "adapter_config.json").read_text())
    assert meta["adapter_type"] == "tCURLoRA" and meta["tcur_version"]
    assert TCURLoRAConfig.from_dict(meta["config"]) == config
    first = meta["groups"][0]
    assert first["key"] == "layers.*.query" and first["shape"] == [12, 12]
    assert first["members"] == [f"layers.{i}.query" for i in range(3)]
    assert len(first["rows"]) == len(first["cols"]) == 2
    assert set(first["fingerprint"]) == {"C", "R"}
    tensors = load_file(str(tmp_path / "adapter.safetensors"))
    assert set(tensors) == {f"groups.{i}.dU" for i in range(4)} | {
        "modules_to_save.classifier.weight",
        "modules_to_save.classifier.bias",
    }


def test_another_base_model_is_refused(tmp_path: Path) -> None:
    save(_trained(TCURLoRAConfig(TARGETS, rank=2)), tmp_path)
    other = tiny_encoder(seed=1)
    with pytest.raises(ValueError, match=r"group 0 \('layers\.\*\.query'\).*fingerprint"):
        load(other, tmp_path)
    assert not adapter_layers(other)


def test_half_precision_base_is_accepted(tmp_path: Path) -> None:
    model = _trained(TCURLoRAConfig(TARGETS, rank=2))
    save(model, tmp_path)
    restored = load(tiny_encoder(0).to(torch.bfloat16), tmp_path)
    assert adapter_groups(restored)[0].dU.dtype == torch.bfloat16
    out = restored(_x().to(torch.bfloat16)).float()
    torch.testing.assert_close(out, model(_x()).detach(), rtol=0.1, atol=0.1)


def test_missing_module_and_shape_mismatch(tmp_path: Path) -> None:
    save(_trained(TCURLoRAConfig(TARGETS, rank=2)), tmp_path)
    shallow = tiny_encoder(0, n_layers=2)
    with pytest.raises(ValueError, match=r"module 'layers\.2\.query' is not in the model"):
        load(shallow, tmp_path)
    wide = tiny_encoder(0, d=16)
    with pytest.raises(
        ValueError, match=r"layers\.0\.query has shape \(16, 16\), saved \(12, 12\)"
    ):
        load(wide, tmp_path)


def test_corrupt_weights_are_refused_and_model_left_unchanged(tmp_path: Path) -> None:
    save(_trained(TCURLoRAConfig(TARGETS, rank=2)), tmp_path)
    tensors = load_file(str(tmp_path / "adapter.safetensors"))
    tensors["groups.1.dU"] = torch.zeros(5, 5, 3)
    save_file(tensors, str(tmp_path / "adapter.safetensors"))
    base = tiny_encoder(0)
    reference = copy.deepcopy(base)
    with pytest.raises(ValueError, match=r"'groups\.1\.dU' has shape \(5, 5, 3\)"):
        load(base, tmp_path)
    assert not adapter_layers(base)
    assert all(p.requires_grad for p in base.parameters())
    torch.testing.assert_close(base(_x()), reference(_x()))
    del tensors["groups.1.dU"]
    save_file(tensors, str(tmp_path / "adapter.safetensors"))
    with pytest.raises(ValueError, match=r"'groups\.1\.dU' is missing"):
        load(base, tmp_path)


def test_save_replaces_existing_directory_atomically(tmp_path: Path) -> None:
    target = tmp_path / "adapter"
    save(_trained(TCURLoRAConfig(["query"], rank=2)), target)
    (target / "stale.txt").write_text("old")
    save(_trained(TCURLoRAConfig(TARGETS, rank=2)), target)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adapter"]
    assert not (target / "stale.txt").exists()
    assert len(json.loads((target / "adapter_config.json").read_text())["groups"]) == 4


def test_load_refuses_adapted_model_and_unknown_format(tmp_path: Path) -> None:
    model = _trained(TCURLoRAConfig(TARGETS, rank=2))
    save(model, tmp_path)
    with pytest.raises(ValueError, match="already has tcur adapters"):
        load(model, tmp_path)
    meta = json.loads((tmp_path / "adapter_config.json").read_text())
    meta["format_version"] = 99
    (tmp_path / "adapter_config.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="format_version 99"):
        load(tiny_encoder(0), tmp_path)
    with pytest.raises(ValueError, match=r"holds no adapter_config\.json"):
        load(tiny_encoder(0), tmp_path / "nowhere")


def test_gpt2_split_round_trip(tmp_path: Path) -> None:
    config = TCURLoRAConfig(["c_attn", "c_proj"], rank=2, split_fused={"c_attn": 3})
    model = apply(tiny_gpt2(), config)
    with torch.no_grad():
        for group in adapter_groups(model):
            group.dU.normal_(std=0.1)
    save(model, tmp_path)
    restored = load(tiny_gpt2(), tmp_path)
    ids = torch.randint(0, 64, (2, 6), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(restored(ids).logits, model(ids).logits, rtol=0, atol=0)
