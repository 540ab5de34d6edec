"""Ownership: every group lives once, in ``model.tcur_groups`` at the root, never inside a block."""

from __future__ import annotations

import copy

import torch
from adapter_models import tiny_encoder

from tcur.adapters import TCURGroups, TCURLoRAConfig, adapter_groups, apply, unload

CONFIG = TCURLoRAConfig(["query", "value", "up"], rank=2, modules_to_save=["classifier"])


def _adapted() -> torch.nn.Module:
    model = apply(tiny_encoder(seed=0), CONFIG)
    with torch.no_grad():
        for group in adapter_groups(model):
            group.dU.normal_(std=0.3, generator=torch.Generator().manual_seed(2))
    return model


def test_groups_are_owned_by_the_root_and_by_no_block() -> None:
    model = _adapted()
    assert isinstance(model.tcur_groups, TCURGroups)
    assert list(model.tcur_groups.children()) == adapter_groups(model)
    keys = [k for k in model.state_dict() if k.rsplit(".", 1)[-1] in ("dU", "C", "R")]
    assert keys and all(k.startswith("tcur_groups.") for k in keys)
    for block in model.layers:  # what FSDP2's per-block fully_shard would own
        assert not any(n.endswith("dU") for n, _ in block.named_parameters())
    layer = model.layers[1].query
    assert layer.parts[0][0] is model.tcur_groups["0"]  # a reference, not a submodule
    assert not any(isinstance(m, TCURGroups) for m in layer.modules())


def test_deepcopy_and_to_keep_layers_pointing_at_the_owned_groups() -> None:
    model = _adapted()
    x = torch.randn(2, 3, 12)
    clone = copy.deepcopy(model)
    assert clone.layers[2].value.parts[0][0] is clone.tcur_groups["1"]
    assert clone.tcur_groups["1"] is not model.tcur_groups["1"]
    torch.testing.assert_close(clone(x), model(x), rtol=0, atol=0)
    with torch.no_grad():
        clone.tcur_groups["0"].dU.add_(1.0)  # changes the clone only
    assert not torch.allclose(clone(x), model(x))
    model.double()
    group = model.layers[0].query.parts[0][0]
    assert group.C.dtype == group.dU.dtype == torch.float64
    assert model(x.double()).dtype == torch.float64


def test_sequential_root_and_unload() -> None:
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(6, 6), torch.nn.Tanh(), torch.nn.Linear(6, 6))
    x = torch.randn(3, 6)
    before = net(x)
    apply(net, TCURLoRAConfig(["0", "2"], rank=2, group_by="shape"))
    assert torch.equal(net(x), before)  # the container at the end passes its input through
    assert isinstance(net[-1], TCURGroups)
    unload(net)
    assert len(net) == 3 and not hasattr(net, "tcur_groups")
    assert torch.equal(net(x), before)
