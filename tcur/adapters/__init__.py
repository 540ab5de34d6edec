"""Parameter-efficient fine-tuning with CUR (CURLoRA) and tensor CUR (tCURLoRA). PyTorch only.

PEFT habits: a config dataclass, target modules by name or regex, ``modules_to_save``, a print of
the trainable parameters, merge/unmerge/unload, and save/load of the adapter weights only.

One concept per module: ``config`` (the two configs and the scaling rule), ``targets`` (finding,
splitting and grouping target weights), ``plan`` (the checks before a model is changed, row/column
selection, frozen ``C``/``R``), ``forward`` (the update's algebra and the cost model),
``merged_linear`` (the materialized forward's autograd function and ``W +- Delta``), ``groups``
(the shared groups, their per-pass cache and their owner), ``strategies`` (the forward strategies
as objects: cost and forward), ``layers`` (the native modules and what both hosts' layers share),
``calibration`` (the gradient bases of ``basis="gradient"``), ``model`` (apply, merge, unmerge,
unload, counts, :func:`loss_gradients`), ``io`` (save/load), ``wrapper``
(the seed's :class:`TCURLoRAModel`) and ``training`` (plain-torch training/evaluation loops).
``peft`` (tCURLoRA and CURLoRA as PEFT methods) is imported only on request: ``import
tcur.adapters`` never imports PEFT.

>>> import torch
>>> from tcur.adapters import TCURLoRAConfig, apply, print_trainable_parameters
>>> net = torch.nn.Sequential(torch.nn.Linear(16, 16), torch.nn.Tanh(), torch.nn.Linear(16, 16))
>>> net = apply(net, TCURLoRAConfig(["0", "2"], rank=4, group_by="shape"))
>>> print_trainable_parameters(net)
trainable params: 32 || all params: 576 || trainable%: 5.5556
"""

from tcur.adapters.config import CURLoRAConfig, TCURLoRAConfig
from tcur.adapters.groups import TCURGroup, TCURGroups
from tcur.adapters.io import load, save
from tcur.adapters.layers import TCURLayer
from tcur.adapters.model import (
    adapter_groups,
    adapter_layers,
    apply,
    disable_adapters,
    loss_gradients,
    merge,
    print_trainable_parameters,
    trainable_parameters,
    unload,
    unmerge,
)
from tcur.adapters.wrapper import TCURLoRAModel

__all__ = [
    "CURLoRAConfig",
    "TCURGroup",
    "TCURGroups",
    "TCURLayer",
    "TCURLoRAConfig",
    "TCURLoRAModel",
    "adapter_groups",
    "adapter_layers",
    "apply",
    "disable_adapters",
    "load",
    "loss_gradients",
    "merge",
    "print_trainable_parameters",
    "save",
    "trainable_parameters",
    "unload",
    "unmerge",
]
