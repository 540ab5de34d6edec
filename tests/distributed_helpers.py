"""Multi-process tests: running workers with a hard time limit, and the shared adapted model and
batch whose one-process result the DDP and FSDP2 runs must reproduce."""

from __future__ import annotations

import os
import sys
import time
import traceback
from collections.abc import Callable
from typing import Any

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from adapter_models import tiny_encoder

from tcur.adapters import TCURLoRAConfig, adapter_groups, apply


def adapter_config(forward: str) -> TCURLoRAConfig:
    """tCURLoRA on query, value and the FFN up projection of :func:`tiny_encoder`, rank 2."""
    return TCURLoRAConfig(
        ["query", "value", "up"], rank=2, forward=forward, modules_to_save=["classifier"]
    )


def adapted_model(forward: str) -> torch.nn.Module:
    """The float64 tiny encoder adapted by :func:`adapter_config`, with a fixed random ``dU``
    (nonzero, so that every factor gets a gradient)."""
    model = apply(tiny_encoder(seed=0, dtype=torch.float64), adapter_config(forward))
    generator = torch.Generator().manual_seed(4)
    with torch.no_grad():
        for group in adapter_groups(model):
            noise = torch.randn(group.dU.shape, generator=generator, dtype=torch.float64)
            group.dU.copy_(0.3 * noise)
    return model


def fixed_batch() -> tuple[torch.Tensor, torch.Tensor]:
    """Four float64 sequences of three tokens for :func:`tiny_encoder`, with labels."""
    generator = torch.Generator().manual_seed(5)
    x = torch.randn(4, 3, 12, generator=generator, dtype=torch.float64)
    return x, torch.tensor([0, 1, 1, 0])


def run_workers(
    fn: Callable[..., None], args: tuple[Any, ...], nprocs: int, *, timeout: float
) -> None:
    """``fn(rank, *args)`` in ``nprocs`` spawned processes; kill them all after ``timeout`` s.

    A worker's exception is re-raised here (``torch.multiprocessing.ProcessRaisedException``);
    a hang (a collective that one rank never reaches) fails with ``TimeoutError`` instead of
    blocking the test run.
    """
    context = mp.start_processes(fn, args=args, nprocs=nprocs, join=False, start_method="spawn")
    deadline = time.monotonic() + timeout
    while not context.join(timeout=max(deadline - time.monotonic(), 0.1)):
        if time.monotonic() >= deadline:
            for process in context.processes:
                if process.is_alive():
                    process.kill()
            raise TimeoutError(f"{nprocs} workers of {fn.__name__} still running after {timeout} s")


def leave_cleanly() -> None:
    """End a worker whose work is done and whose ranks have all passed a final barrier.

    ``os._exit(0)`` skips the C++ teardown of the gloo group and of torch's threads, which now
    and then aborted a rank ("terminate called without an active exception", SIGABRT) after
    every result was already written: 2 of 2 FSDP tests errored that way in one clean-clone
    run. Everything the tests read is written and closed before the barrier.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def fail_loudly() -> None:
    """For a worker's ``except`` block: print its traceback, then tear the group down (the caller
    re-raises). The teardown can abort the process (see :func:`leave_cleanly`) before torch's
    spawn wrapper reports the exception, which would leave only "terminated with signal SIGABRT"
    in the test's failure; the traceback printed first survives that."""
    traceback.print_exc()
    sys.stderr.flush()
    dist.destroy_process_group()
