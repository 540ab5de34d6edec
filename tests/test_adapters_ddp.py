"""DistributedDataParallel: two gloo processes on the CPU give the one-process gradients."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.distributed as dist
from distributed_helpers import (
    adapted_model,
    fail_loudly,
    fixed_batch,
    leave_cleanly,
    run_workers,
)
from safetensors.torch import load_file, save_file

WORLD = 2
FORWARDS = ("factored", "materialized")


def _grads(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.requires_grad}


def _step(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> None:
    torch.nn.functional.cross_entropy(model(x), y).backward()


def _worker(rank: int, store: str, out: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=WORLD)
    try:
        for forward in FORWARDS:
            model = torch.nn.parallel.DistributedDataParallel(adapted_model(forward))
            x, y = fixed_batch()
            half = x.shape[0] // WORLD
            part = slice(rank * half, (rank + 1) * half)
            for _ in range(2):  # two passes: gradient accumulation under DDP
                _step(model, x[part], y[part])
            if rank == 0:
                save_file(_grads(model.module), f"{out}/{forward}.safetensors")
        dist.barrier()  # nobody tears the group down while the other rank still works
    except BaseException:
        fail_loudly()
        raise
    leave_cleanly()


def test_ddp_gradients_equal_single_process_on_combined_batch(tmp_path: Path) -> None:
    run_workers(_worker, (str(tmp_path / "store"), str(tmp_path)), WORLD, timeout=120)
    for forward in FORWARDS:
        distributed = load_file(str(tmp_path / f"{forward}.safetensors"))
        model = adapted_model(forward)
        x, y = fixed_batch()
        for _ in range(2):
            _step(model, x, y)
        single = _grads(model)
        assert set(distributed) == set(single)
        assert any(name.endswith("dU") for name in single)
        for name, grad in single.items():
            torch.testing.assert_close(distributed[name], grad, rtol=1e-10, atol=1e-12)
