"""Every module kind a PEFT LoRA user targets either works on both hosts or is refused.

Both hosts: the native ``tcur.adapters.apply`` and PEFT's ``get_peft_model`` with the tcur PEFT
configs. "Works" means: zero ``dU`` gives the base model's outputs, a non-zero ``dU`` changes
them, and ``dU`` gets a gradient, in train and in eval mode (``nn.TransformerEncoderLayer``
takes PyTorch's fused path in eval mode, which reads weights directly).
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from adapter_models import attention_net, encoder_net, tiny_encoder
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
from tcur.adapters.layers import TCURAttention, TCURLayer

peft = pytest.importorskip("peft")
from peft import PeftModel, get_peft_model  # noqa: E402

from tcur.adapters.peft import (  # noqa: E402
    CURLoRAPeftConfig,
    TCURLoRAPeftConfig,
    TCURPeftAttention,
    TCURPeftLayer,
)

HOSTS = ("native", "peft")
KINDS = ("tcur", "cur")


def _adapt(
    model: nn.Module, host: str, kind: str, targets: list[str], **options: object
) -> nn.Module:
    if host == "native":
        config = (TCURLoRAConfig if kind == "tcur" else CURLoRAConfig)(targets, rank=2, **options)  # type: ignore[arg-type]
        return apply(model, config)
    peft_cls = TCURLoRAPeftConfig if kind == "tcur" else CURLoRAPeftConfig
    return get_peft_model(model, peft_cls(target_modules=targets, rank=2, **options))  # type: ignore[arg-type]


def _gpt2() -> nn.Module:
    pytest.importorskip("transformers")
    from adapter_models import tiny_gpt2

    return tiny_gpt2()


class _Logits(nn.Module):
    """GPT-2's logits as a plain tensor (same call as the other models)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.model(ids).logits
        return out


CASES: dict[str, tuple[Callable[[], nn.Module], list[str], Callable[[], torch.Tensor]]] = {
    "linear": (lambda: tiny_encoder().eval(), ["query", "up"], lambda: torch.randn(2, 5, 12)),
    "conv1d": (
        lambda: _Logits(_gpt2()),
        ["c_attn", "c_proj"],
        lambda: torch.randint(0, 64, (2, 6)),
    ),
    "attention": (attention_net, ["attn"], lambda: torch.randn(2, 5, 16)),
    "attention_out_proj": (attention_net, ["out_proj"], lambda: torch.randn(2, 5, 16)),
    "encoder_linears": (encoder_net, ["linear1", "linear2"], lambda: torch.randn(2, 5, 16)),
    "encoder_attention": (encoder_net, ["self_attn"], lambda: torch.randn(2, 5, 16)),
    "encoder_all": (
        encoder_net,
        ["self_attn", "linear1", "linear2"],
        lambda: torch.randn(2, 5, 16),
    ),
}


@pytest.mark.parametrize("mode", ["train", "eval"])
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("host", HOSTS)
@pytest.mark.parametrize("case", sorted(CASES))
def test_adapter_changes_output_and_trains(case: str, host: str, kind: str, mode: str) -> None:
    build, targets, inputs = CASES[case]
    torch.manual_seed(3)
    x = inputs()
    base = build().train(mode == "train")
    with torch.no_grad():
        expected = base(x)
    model = _adapt(copy.deepcopy(base), host, kind, targets).train(mode == "train")
    groups = adapter_groups(model)
    assert groups
    with torch.no_grad():
        at_zero = model(x)
    # the fused inference path of the base and the ordinary path differ by rounding only
    torch.testing.assert_close(at_zero, expected, rtol=0, atol=1e-5)
    with torch.no_grad():
        for group in groups:
            group.dU.fill_(1.0)
        changed = model(x)
    assert float((changed - expected).abs().max()) > 1e-3
    weights = torch.randn(changed.shape, generator=torch.Generator().manual_seed(0))
    (model(x) * weights).sum().backward()
    for group in groups:
        assert group.dU.grad is not None and float(group.dU.grad.abs().max()) > 0


@pytest.mark.parametrize("host", HOSTS)
def test_attention_layers_are_wrapped_whole(host: str) -> None:
    model = _adapt(encoder_net(), host, "tcur", ["out_proj", "linear1"])
    attention = TCURAttention if host == "native" else TCURPeftAttention
    linear = TCURLayer if host == "native" else TCURPeftLayer
    kinds = {
        n.rsplit(".", 1)[-1]: type(m)
        for n, m in model.named_modules()
        if n.endswith(("self_attn", "linear1"))
    }
    assert kinds == {"self_attn": attention, "linear1": linear}
    keys = [g.key for g in adapter_groups(model)]
    assert keys == ["enc.layers.*.self_attn.out_proj", "enc.layers.*.linear1"]


@pytest.mark.parametrize(
    ("module", "reason"),
    [
        (nn.Embedding(10, 4), "looks rows of its weight up"),
        (nn.Conv2d(3, 4, 3), r"\(out, in, \*kernel\) tensor"),
        (nn.Sequential(nn.Linear(4, 4)), "not a layer with an"),
        (nn.LayerNorm(4), "not a layer with an"),
    ],
)
@pytest.mark.parametrize("host", HOSTS)
def test_unsupported_modules_are_refused(host: str, module: nn.Module, reason: str) -> None:
    model = nn.ModuleDict({"thing": module, "proj": nn.Linear(4, 4)})
    before = copy.deepcopy(model.state_dict())
    message = (
        rf"target module 'thing' is a {type(module).__name__} and cannot be adapted: .*{reason}"
    )
    with pytest.raises(ValueError, match=message):
        _adapt(model, host, "tcur", ["thing", "proj"])
    assert all(isinstance(m, (nn.ModuleDict, type(module), nn.Linear)) for m in model.modules())
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key])


@pytest.mark.parametrize("host", HOSTS)
@pytest.mark.parametrize(
    ("options", "what"),
    [({"forward": "factored"}, "forward='factored'"), ({"dropout": 0.1}, "dropout=0.1")],
)
def test_attention_weights_refuse_factored_and_dropout(
    host: str, options: dict[str, object], what: str
) -> None:
    message = rf"target weight 'attn.in_proj_weight' cannot be adapted with {what}"
    with pytest.raises(ValueError, match=message):
        _adapt(attention_net(), host, "tcur", ["attn"], **options)
    _adapt(encoder_net(), host, "tcur", ["linear1"], **options)  # plain Linear: fine


def test_split_fused_in_proj_into_query_key_value() -> None:
    config = TCURLoRAConfig(["self_attn"], rank=2, split_fused={"in_proj_weight": 3})
    model = apply(encoder_net(), config)
    keys = [g.key for g in adapter_groups(model)]
    assert keys == [f"enc.layers.*.self_attn.in_proj_weight[{i}]" for i in range(3)] + [
        "enc.layers.*.self_attn.out_proj"
    ]
    assert all(tuple(g.dU.shape) == (2, 2, 2) for g in adapter_groups(model))


def _filled(model: nn.Module) -> nn.Module:
    generator = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for group in adapter_groups(model):
            group.dU.copy_(torch.randn(group.dU.shape, generator=generator))
    return model


def test_attention_merge_unmerge_unload_save_load_native(tmp_path: Path) -> None:
    x = torch.randn(2, 5, 16)
    base = encoder_net()
    originals = {k: v.clone() for k, v in base.state_dict().items()}
    model = _filled(apply(copy.deepcopy(base), TCURLoRAConfig(["self_attn", "linear2"], rank=2)))
    with torch.no_grad():
        adapted = model(x)
        save(model, tmp_path)
        merge(model)
        torch.testing.assert_close(model(x), adapted, rtol=0, atol=1e-5)
        unmerge(model)
        torch.testing.assert_close(model(x), adapted, rtol=0, atol=0)
        restored = load(encoder_net(), tmp_path)
        torch.testing.assert_close(restored(x), adapted, rtol=0, atol=0)
    plain = unload(model)
    assert not any(isinstance(m, (TCURAttention, TCURLayer)) for m in plain.modules())
    assert all(not m._forward_pre_hooks for m in plain.modules())  # fast-path guard removed
    for key, value in plain.state_dict().items():
        assert torch.equal(value, originals[key]), key


def test_attention_peft_save_load_and_merge_and_unload(tmp_path: Path) -> None:
    x = torch.randn(2, 5, 16)
    model = _filled(
        get_peft_model(encoder_net(), TCURLoRAPeftConfig(target_modules=["self_attn"], rank=2))
    )
    with torch.no_grad():
        adapted = model(x)
    model.save_pretrained(tmp_path)
    restored = PeftModel.from_pretrained(encoder_net(), tmp_path)
    with torch.no_grad():
        torch.testing.assert_close(restored(x), adapted, rtol=0, atol=0)
        merged = restored.merge_and_unload()
        assert isinstance(merged.enc.layers[0].self_attn, nn.MultiheadAttention)
        assert all(not m._forward_pre_hooks for m in merged.modules())
        torch.testing.assert_close(merged(x), adapted, rtol=0, atol=1e-5)


@pytest.mark.filterwarnings("ignore:The PyTorch API of nested tensors:UserWarning")
@pytest.mark.parametrize("host", HOSTS)
def test_encoder_stack_with_padding_mask_uses_the_adapter(host: str) -> None:
    """``nn.TransformerEncoder`` would turn padded input into nested tensors for its fused path."""
    x = torch.randn(2, 5, 16)
    mask = torch.tensor([[False] * 5, [False] * 3 + [True] * 2])
    base = encoder_net(nested=True)
    with torch.no_grad():
        expected = base(x, src_key_padding_mask=mask)
    model = _filled(_adapt(copy.deepcopy(base), host, "tcur", ["linear1", "self_attn"]))
    with torch.no_grad():
        out = model(x, src_key_padding_mask=mask)
    keep = ~mask  # padded positions are not compared (the fused path zeroes them)
    assert float((out - expected)[keep].abs().max()) > 1e-3
    stack = model.get_submodule("base_model.model.enc" if host == "peft" else "enc")
    assert stack.use_nested_tensor is False


class _Halved(nn.Linear):
    """A Linear subclass with its own forward (its output is not x W^T + b)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x) * 0.5


def _old_style(norm: Callable[[nn.Module], nn.Module]) -> nn.Module:
    with warnings.catch_warnings():  # torch.nn.utils.weight_norm is deprecated
        warnings.simplefilter("ignore", FutureWarning)
        return norm(nn.Linear(8, 8))


class _TwoLayers(nn.Module):
    def __init__(self, mid: nn.Module) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.inp, self.mid, self.out = nn.Linear(8, 8), mid, nn.Linear(8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(torch.tanh(self.mid(torch.tanh(self.inp(x)))))


def _merge_all(model: nn.Module, host: str) -> None:
    if host == "native":
        merge(model)
    else:
        model.merge_and_unload()  # type: ignore[operator]


@pytest.mark.parametrize("host", HOSTS)
@pytest.mark.parametrize(
    ("build", "reason"),
    [
        (lambda: nn.utils.parametrizations.weight_norm(nn.Linear(8, 8)), "recomputed"),
        (lambda: nn.utils.parametrizations.spectral_norm(nn.Linear(8, 8)), "recomputed"),
        (lambda: _old_style(nn.utils.weight_norm), "recomputed"),  # a forward pre-hook
        (lambda: _old_style(nn.utils.spectral_norm), "recomputed"),
        (lambda: _Halved(8, 8), "_Halved overrides forward"),
    ],
)
def test_merging_into_a_weight_the_layer_does_not_use_directly_is_refused(
    host: str, build: Callable[[], nn.Module], reason: str
) -> None:
    # A merged update would be lost (a parametrized weight is recomputed at every access) or
    # would not give the adapted output (a layer with its own forward); nothing may change.
    model = _adapt(_TwoLayers(build()).eval(), host, "cur", ["inp", "mid"])  # spectral_norm: eval
    for group in model.modules():
        if hasattr(group, "dU") and isinstance(group.dU, nn.Parameter):
            with torch.no_grad():
                group.dU.normal_()
    x = torch.randn(3, 8)
    with torch.no_grad():
        expected = model(x)
        with pytest.raises(ValueError, match=rf"refusing to merge adapted layer .*mid.*{reason}"):
            _merge_all(model, host)
        assert torch.equal(model(x), expected)
        assert not torch.allclose(expected, _TwoLayers(build()).eval()(x))  # the adapter is active


@pytest.mark.parametrize("host", HOSTS)
def test_a_layer_with_its_own_forward_runs_it_at_every_batch_size(host: str) -> None:
    # The materialized product x (W + Delta)^T + b (the cost model's choice at many tokens)
    # would bypass the subclass's forward: such a layer always adds the update to its output.
    torch.manual_seed(1)
    x = torch.randn(4096, 8)
    base = nn.Sequential(_Halved(8, 8), nn.Tanh(), nn.Linear(8, 4))
    with torch.no_grad():
        expected = base(x)
        model = _adapt(base, host, "cur", ["0"])
        assert torch.equal(model(x), expected)
    with pytest.raises(ValueError, match=r"_Halved overrides forward.*forward='auto' or"):
        _adapt(nn.Sequential(_Halved(8, 8)), host, "cur", ["0"], forward="materialized")


@pytest.mark.parametrize("host", HOSTS)
def test_a_split_fused_key_that_matches_no_target_weight_is_refused(host: str) -> None:
    # A typo would otherwise adapt the fused in_proj_weight whole, silently.
    with pytest.raises(ValueError, match=r"split_fused key 'in_proj_weigth' matches none.*mean"):
        _adapt(attention_net(), host, "tcur", ["attn"], split_fused={"in_proj_weigth": 3})


def test_peft_merges_a_named_adapter_beside_one_that_cannot_merge() -> None:
    # Adapter 'normed' sits on a weight_norm layer (its merge would be lost); merging 'plain' by
    # name must still work, and merging 'normed' must be refused with nothing changed.
    model = _TwoLayers(nn.utils.parametrizations.weight_norm(nn.Linear(8, 8))).eval()
    peft_model = get_peft_model(model, CURLoRAPeftConfig(target_modules=["mid"], rank=2), "normed")
    peft_model.add_adapter("plain", CURLoRAPeftConfig(target_modules=["inp"], rank=2))
    with torch.no_grad():
        for group in peft_model.base_model.groups["plain"].values():
            group.dU.normal_()
        peft_model.set_adapter("plain")
        x = torch.randn(3, 8)
        expected = peft_model(x)
        with pytest.raises(ValueError, match=r"adapter 'normed'.*recomputed"):
            peft_model.merge_adapter(adapter_names=["normed"])
        assert torch.equal(peft_model(x), expected)
        merged = peft_model.merge_and_unload(adapter_names=["plain"])
        torch.testing.assert_close(merged(x), expected)
