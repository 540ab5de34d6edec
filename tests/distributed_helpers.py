"""Running a test function in several gloo processes with a hard time limit."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import torch.multiprocessing as mp


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
