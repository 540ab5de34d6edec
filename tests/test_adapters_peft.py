"""tCURLoRA / CURLoRA as PEFT methods on a tiny BERT built from a config (nothing downloaded)."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

peft = pytest.importorskip("peft")
transformers = pytest.importorskip("transformers")

from peft import PeftModel, get_peft_model  # noqa: E402
from safetensors.torch import load_file  # noqa: E402

from tcur.adapters import CURLoRAConfig, TCURLoRAConfig  # noqa: E402
from tcur.adapters.peft import (  # noqa: E402
    CURLoRAPeftConfig,
    TCURLoRAPeftConfig,
    TCURPeftLayer,
)

TARGETS = ["query", "value"]


def tiny_bert(seed: int = 0) -> torch.nn.Module:
    """A 3-layer BERT classifier (hidden 16) from a config, in eval mode, float64."""
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=50,
        hidden_size=16,
        num_hidden_layers=3,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=16,
        num_labels=2,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )
    return BertForSequenceClassification(config).double().eval()


def _inputs() -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    ids = torch.randint(0, 50, (4, 7), generator=generator)
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}


def _config(**kwargs: object) -> TCURLoRAPeftConfig:
    options: dict[str, object] = {"target_modules": TARGETS, "rank": 3, "task_type": "SEQ_CLS"}
    options.update(kwargs)
    return TCURLoRAPeftConfig(**options)  # type: ignore[arg-type]


def _logits(model: torch.nn.Module) -> torch.Tensor:
    with torch.no_grad():
        out: torch.Tensor = model(**_inputs()).logits
    return out


def _train(model: torch.nn.Module, steps: int = 3) -> None:
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=5e-2)
    labels = torch.tensor([0, 1, 1, 0])
    for _ in range(steps):
        optimizer.zero_grad()
        model(**_inputs(), labels=labels).loss.backward()
        optimizer.step()
    model.eval()


def _groups(model: PeftModel, adapter: str = "default") -> list[torch.nn.Module]:
    container = getattr(model.base_model, model.base_model.groups_attr)
    return list(container[adapter].values())


@pytest.fixture(params=["auto", "factored", "materialized"])
def trained(request: pytest.FixtureRequest) -> tuple[PeftModel, torch.Tensor]:
    """A trained tiny-BERT PEFT model, once per forward strategy, and the base logits."""
    base_logits = _logits(tiny_bert())
    model = get_peft_model(tiny_bert(), _config(forward=request.param))
    assert torch.equal(_logits(model), base_logits)  # zero dU: exactly the base model
    _train(model)
    return model, base_logits


def test_config_fields_match_tcur_configs() -> None:
    for peft_cls, tcur_cls in (
        (TCURLoRAPeftConfig, TCURLoRAConfig),
        (CURLoRAPeftConfig, CURLoRAConfig),
    ):
        ours = {f.name: f.default for f in dataclasses.fields(peft_cls)}
        for f in dataclasses.fields(tcur_cls):
            assert f.name in ours, f"{peft_cls.__name__} lacks {f.name}"
            if f.default is not dataclasses.MISSING and f.name != "target_modules":
                assert ours[f.name] == f.default, f.name
    with pytest.raises(ValueError, match="rank"):
        TCURLoRAPeftConfig(target_modules=TARGETS, rank=0)
    with pytest.raises(ValueError, match="target_modules"):
        TCURLoRAPeftConfig(rank=2)


def test_groups_live_on_the_tuner_and_layers_are_tcur(
    trained: tuple[PeftModel, torch.Tensor],
) -> None:
    model, _ = trained
    layers = [m for m in model.modules() if isinstance(m, TCURPeftLayer)]
    assert len(layers) == 6
    groups = _groups(model)
    assert [g.key for g in groups] == [
        "bert.encoder.layer.*.attention.self.query",
        "bert.encoder.layer.*.attention.self.value",
    ]
    assert all(tuple(g.dU.shape) == (3, 3, 3) for g in groups)
    dU_names = [n for n, p in model.named_parameters() if n.endswith(".dU")]
    assert dU_names == [f"base_model.tcurlora_groups.default.{i}.dU" for i in range(2)]
    assert all(not p.requires_grad for n, p in model.named_parameters() if "base_layer" in n)


def test_print_trainable_parameters_counts_dU_and_classifier(
    trained: tuple[PeftModel, torch.Tensor], capsys: pytest.CaptureFixture[str]
) -> None:
    model, _ = trained
    trainable, total = model.get_nb_trainable_parameters()
    classifier = 16 * 2 + 2  # the classifier copy PEFT trains for SEQ_CLS
    assert trainable == 2 * 27 + classifier
    model.print_trainable_parameters()
    assert f"trainable params: {trainable:,}" in capsys.readouterr().out
    assert total == sum(p.numel() for p in model.parameters())


def test_training_changes_outputs_and_disable_adapter_gives_base(
    trained: tuple[PeftModel, torch.Tensor],
) -> None:
    model, base_logits = trained
    assert all(float(g.dU.detach().abs().max()) > 0 for g in _groups(model))
    adapted = _logits(model)
    assert not torch.allclose(adapted, base_logits, atol=1e-6)
    with model.disable_adapter():
        torch.testing.assert_close(_logits(model), base_logits, rtol=0, atol=0)
    torch.testing.assert_close(_logits(model), adapted, rtol=0, atol=0)


def test_save_pretrained_and_from_pretrained(
    trained: tuple[PeftModel, torch.Tensor], tmp_path: Path
) -> None:
    model, _ = trained
    adapted = _logits(model)
    model.save_pretrained(tmp_path)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["README.md", "adapter_config.json", "adapter_model.safetensors"]
    meta = json.loads((tmp_path / "adapter_config.json").read_text())
    assert meta["peft_type"] == "TCURLORA" and len(meta["groups"]) == 2
    tensors = load_file(str(tmp_path / "adapter_model.safetensors"))
    assert "base_model.tcurlora_groups.0.dU" in tensors  # adapter name stripped, as PEFT does
    assert not any(k.endswith((".C", ".R")) for k in tensors)  # rebuilt from the base weights
    restored = PeftModel.from_pretrained(tiny_bert(), tmp_path)
    torch.testing.assert_close(_logits(restored), adapted, rtol=0, atol=1e-12)
    for ours, theirs in zip(_groups(model), _groups(restored), strict=True):
        assert torch.equal(ours.C, theirs.C) and torch.equal(ours.dU, theirs.dU)
    assert not any(p.requires_grad for p in restored.parameters())  # PEFT's inference default
    trainable = PeftModel.from_pretrained(tiny_bert(), tmp_path, is_trainable=True)
    names = {n for n, p in trainable.named_parameters() if p.requires_grad}
    assert {f"base_model.tcurlora_groups.default.{i}.dU" for i in range(2)} <= names
    lazy = PeftModel.from_pretrained(tiny_bert(), tmp_path, low_cpu_mem_usage=True)
    torch.testing.assert_close(_logits(lazy), adapted, rtol=0, atol=1e-12)


def test_from_pretrained_refuses_other_base_weights(
    trained: tuple[PeftModel, torch.Tensor], tmp_path: Path
) -> None:
    model, _ = trained
    model.save_pretrained(tmp_path)
    with pytest.raises(ValueError, match=r"differs from the base model the adapter was built on"):
        PeftModel.from_pretrained(tiny_bert(seed=1), tmp_path)
    # A config saved before the groups carried fingerprints: the state dict's check refuses it.
    path = tmp_path / "adapter_config.json"
    saved = json.loads(path.read_text())
    saved["groups"] = [
        {k: v for k, v in group.items() if not k.startswith("weights_")}
        for group in saved["groups"]
    ]
    path.write_text(json.dumps(saved))
    with pytest.raises(ValueError, match=r"weights_sha256.*built on other base weights"):
        PeftModel.from_pretrained(tiny_bert(seed=1), tmp_path)


def test_merge_and_unload_keeps_outputs_and_removes_layers(
    trained: tuple[PeftModel, torch.Tensor],
) -> None:
    model, _ = trained
    adapted = _logits(model)
    model.merge_adapter()
    torch.testing.assert_close(_logits(model), adapted, rtol=0, atol=1e-10)
    model.unmerge_adapter()
    torch.testing.assert_close(_logits(model), adapted, rtol=0, atol=1e-10)
    merged = model.merge_and_unload()
    assert not any(isinstance(m, TCURPeftLayer) for m in merged.modules())
    assert not any("tcurlora" in n for n, _ in merged.named_parameters())
    torch.testing.assert_close(_logits(merged), adapted, rtol=0, atol=1e-10)


def test_second_named_adapter(trained: tuple[PeftModel, torch.Tensor], tmp_path: Path) -> None:
    model, base_logits = trained
    first = _logits(model)
    model.add_adapter("other", _config(rank=2, target_modules=["query"]))
    model.set_adapter("other")
    assert [tuple(g.dU.shape) for g in _groups(model, "other")] == [(2, 2, 3)]
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert "base_model.tcurlora_groups.other.0.dU" in trainable
    assert not any(".default." in n and n.endswith(".dU") for n in trainable)
    torch.testing.assert_close(_logits(model), base_logits, rtol=0, atol=0)  # zero dU
    _train(model, steps=2)
    second = _logits(model)
    assert not torch.allclose(second, first, atol=1e-6)
    model.set_adapter("default")
    torch.testing.assert_close(_logits(model), first, rtol=0, atol=0)
    model.save_pretrained(tmp_path)  # one folder per extra adapter, as PEFT does
    restored = PeftModel.from_pretrained(tiny_bert(), tmp_path)
    restored.load_adapter(str(tmp_path / "other"), adapter_name="other")
    restored.set_adapter("other")
    torch.testing.assert_close(_logits(restored), second, rtol=0, atol=1e-12)
    model.delete_adapter("other")
    assert set(model.base_model.tcurlora_groups) == {"default"}


def test_curlora_peft_and_gpt2_conv1d(tmp_path: Path) -> None:
    from adapter_models import tiny_gpt2

    ids = torch.randint(0, 64, (2, 6), generator=torch.Generator().manual_seed(2))
    base = tiny_gpt2()
    with torch.no_grad():
        expected = base(ids).logits
    model = get_peft_model(
        tiny_gpt2(), CURLoRAPeftConfig(target_modules=["c_attn", "c_fc"], rank=4)
    )
    groups = list(model.base_model.curlora_groups["default"].values())
    assert len(groups) == 4 and all(g.dU.shape[2] == 1 for g in groups)
    with torch.no_grad():
        for g in groups:
            g.dU.normal_(std=0.5)
        adapted = model(ids).logits
    assert not torch.allclose(adapted, expected, atol=1e-4)
    model.save_pretrained(tmp_path)
    restored = PeftModel.from_pretrained(tiny_gpt2(), tmp_path)
    with torch.no_grad():
        torch.testing.assert_close(restored(ids).logits, adapted, rtol=1e-5, atol=1e-5)
        merged = restored.merge_and_unload()
        torch.testing.assert_close(merged(ids).logits, adapted, rtol=1e-4, atol=1e-4)


def test_import_tcur_adapters_does_not_import_peft() -> None:
    code = "import sys, tcur.adapters; print('peft' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_from_pretrained_validates_the_saved_selection(
    trained: tuple[PeftModel, torch.Tensor], tmp_path: Path
) -> None:
    model, _ = trained
    model.save_pretrained(tmp_path)
    path = tmp_path / "adapter_config.json"
    meta = json.loads(path.read_text())
    meta["groups"][1]["rows"][0] = 99
    path.write_text(json.dumps(meta))
    with pytest.raises(
        ValueError, match=r"groups\[1\] .*rows must be 3 distinct indices in 0\.\.15"
    ):
        PeftModel.from_pretrained(tiny_bert(), tmp_path)


@pytest.mark.parametrize(
    ("peft_switch", "config_switch", "expected"),
    [(True, True, torch.float32), (False, True, torch.bfloat16), (True, False, torch.bfloat16)],
)
def test_dU_dtype_in_a_bfloat16_model(
    peft_switch: bool, config_switch: bool, expected: torch.dtype
) -> None:
    base = tiny_bert().to(torch.bfloat16)
    config = _config(autocast_adapter_dtype=config_switch)
    model = get_peft_model(base, config, autocast_adapter_dtype=peft_switch)
    groups = _groups(model)
    assert all(g.dU.dtype == expected and g.C.dtype == torch.bfloat16 for g in groups)
    model.train()
    out = model(**_inputs(), labels=torch.tensor([0, 1, 1, 0]))
    out.loss.backward()
    assert out.logits.dtype == torch.bfloat16
    assert all(g.dU.grad is not None and g.dU.grad.dtype == expected for g in groups)


def test_what_peft_refuses_for_tcur_adapters(trained: tuple[PeftModel, torch.Tensor]) -> None:
    """Documented limits: no injection without a PeftModel, one PEFT type per model."""
    from peft import LoraConfig, inject_adapter_in_model

    with pytest.raises(ValueError, match="shared state"):
        inject_adapter_in_model(_config(), tiny_bert())
    model, _ = trained
    with pytest.raises(ValueError, match=r"different PEFT type|peft type"):
        model.add_adapter("second", LoraConfig(target_modules=["query"], task_type="SEQ_CLS"))


class _Stack(torch.nn.Module):
    """``n`` square ``Linear`` layers with ``tanh`` between them."""

    def __init__(self, d: int, n: int) -> None:
        super().__init__()
        self.layers = torch.nn.ModuleList(torch.nn.Linear(d, d) for _ in range(n))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = torch.tanh(layer(x))
        return x


def _saved_for_backward_bytes(model: torch.nn.Module, x: torch.Tensor) -> int:
    """Bytes of the tensors autograd keeps for backward, beyond parameters and buffers."""
    own = {t.untyped_storage().data_ptr() for t in [*model.parameters(), *model.buffers()]}
    saved: dict[int, int] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in own:
            saved[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        out = model(x)
    out.sum().backward()
    return sum(saved.values())


@pytest.mark.parametrize("strategy", ["auto", "factored", "materialized"])
def test_both_hosts_keep_the_same_bytes_for_backward(strategy: str) -> None:
    """The PEFT layer runs the native forward: same saved tensors for every strategy.

    (Before, the PEFT layer kept every layer's ``(d, d)`` update for backward with
    ``forward="materialized"``: 61.3 MiB against the native 9.3 MiB on 16 layers of 1024.)
    """
    from tcur.adapters import apply

    d, n = 64, 6
    x = torch.randn(4, d)
    torch.manual_seed(0)
    targets = [f"layers.{i}" for i in range(n)]
    native = apply(_Stack(d, n), TCURLoRAConfig(targets, rank=4, forward=strategy))
    torch.manual_seed(0)
    hosted = get_peft_model(
        _Stack(d, n),
        TCURLoRAPeftConfig(target_modules=targets, rank=4, forward=strategy),
    )
    ours, theirs = _saved_for_backward_bytes(native, x), _saved_for_backward_bytes(hosted, x)
    assert abs(theirs - ours) <= 0.05 * ours
    weight_bytes = d * d * 4
    if strategy == "materialized":  # no per-layer update or merged weight is kept
        assert ours < (n - 1) * weight_bytes


def test_a_config_filled_in_for_one_model_is_refused_on_another() -> None:
    # get_peft_model writes the selected groups (rows, columns, scale) into the config; reusing
    # that config on a model with other weights would silently reuse them, with a scale made
    # for other weight norms. The groups carry the weights' fingerprints, so it is refused.
    config = _config()
    get_peft_model(tiny_bert(0), config)
    assert config.groups is not None and "weights_sha256" in config.groups[0]
    with pytest.raises(ValueError, match=r"differs from the base model .*fresh config"):
        get_peft_model(tiny_bert(1), config)
    same = get_peft_model(tiny_bert(0), config)  # the same base weights: the same groups
    fresh = get_peft_model(tiny_bert(0), _config())
    assert torch.equal(_logits(same), _logits(fresh))
    assert [g.rows for g in same.base_model.groups["default"].values()] == [
        g.rows for g in fresh.base_model.groups["default"].values()
    ]
