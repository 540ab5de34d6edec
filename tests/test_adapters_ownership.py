"""Ownership: every group lives once, in ``model.tcur_groups`` at the root, never inside a block."""

from __future__ import annotations

import copy

import pytest
import torch
from adapter_models import tiny_encoder

from tcur.adapters import TCURGroups, TCURLoRAConfig, adapter_groups, apply, plan, unload
from tcur.adapters import model as model_module
from tcur.adapters.groups import PassCounter

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


def test_the_container_owns_the_pass_counter_and_the_hooks() -> None:
    """One pass counter per container, shared by its groups; its hooks go with ``unload``."""
    model = _adapted()
    container = model.tcur_groups
    assert all(group.passes is container.passes for group in adapter_groups(model))
    assert len(model._forward_pre_hooks) == 1 and len(model._load_state_dict_pre_hooks) == 1
    before = container.passes.value
    model(torch.randn(2, 3, 12))
    assert container.passes.value == before + 1
    clone = copy.deepcopy(model)  # the copy counts its own passes
    clone(torch.randn(2, 3, 12))
    assert clone.tcur_groups.passes.value == before + 2 and container.passes.value == before + 1
    assert all(g.passes is clone.tcur_groups.passes for g in adapter_groups(clone))
    unload(model)
    assert not model._forward_pre_hooks and not model._load_state_dict_pre_hooks


def test_work_before_the_model_changes_runs_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """Per ``apply``: one stack of weights per group, one sharding check, one match of
    ``modules_to_save`` (issue 18: the stacks were built twice, the checks ran twice)."""
    calls: dict[str, int] = {}

    def counted(module: object, name: str) -> None:
        original = getattr(module, name)

        def wrapper(*args: object, **kwargs: object) -> object:
            calls[name] = calls.get(name, 0) + 1
            return original(*args, **kwargs)

        monkeypatch.setattr(module, name, wrapper)

    counted(plan, "stacked_weights")
    counted(plan, "match_modules")
    counted(model_module, "check_not_sharded")
    model = apply(tiny_encoder(seed=0), CONFIG)
    assert calls == {"stacked_weights": 3, "match_modules": 1, "check_not_sharded": 1}
    assert len(adapter_groups(model)) == 3


class _ClassFlag(torch.nn.Linear):
    gradient_checkpointing = True


class _PropertyFlag(torch.nn.Linear):
    @property
    def gradient_checkpointing(self) -> bool:
        return True


@pytest.mark.parametrize("how", ["none", "instance", "class", "property", "false"])
def test_pass_counter_sees_gradient_checkpointing_however_it_is_set(how: str) -> None:
    """Operands are not shared across a training pass with checkpointing, however it is set."""
    inner = {"class": _ClassFlag, "property": _PropertyFlag}.get(how, torch.nn.Linear)(4, 4)
    if how in ("instance", "false"):
        inner.gradient_checkpointing = how == "instance"
    model = torch.nn.Sequential(torch.nn.Sequential(inner))
    counter = PassCounter()
    counter.start(model.train())
    assert counter.shared is (how in ("none", "false"))
    counter.start(model.eval())
    assert counter.shared
