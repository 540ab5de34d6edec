"""The training loop: AdamW over the trainable parameters, one linear schedule, seeded RNG.

:func:`train` is shared by every task: it takes a ``loss_of(batch_indices)`` closure, so the
classification and language-model files only say how a batch becomes a loss. All settings travel
in one :class:`TrainingArguments`; :func:`resolve` builds it from keyword overrides.

Reproducibility: batch order uses its own generator and everything else (dropout) the global RNG,
seeded with ``seed`` inside :func:`isolated_rng`, which forks the CPU RNG and the RNG of every
device of the current accelerator (all CUDA devices, for example), so the caller's RNG state is
the same afterwards on every device.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from tcur.adapters.training.batching import check_positive, shuffled_batches, train_mode


@dataclass(frozen=True)
class TrainingArguments:
    """Settings of :func:`train` (checked on construction; errors name the field).

    Attributes
    ----------
    epochs : int
        Passes over the data (a partial last epoch when ``max_steps`` stops earlier).
    lr, weight_decay : float
        AdamW learning rate (peak of the schedule) and weight decay.
    batch_size, max_length : int
        Examples per step and the truncation length in tokens (batches are padded to their
        longest example).
    seed : int
        Seeds batch order and dropout.
    warmup_ratio : float
        Fraction of all steps over which the learning rate rises linearly from 0; it then
        decays linearly to 0 at the last step of the whole run (one schedule for all epochs).
    max_grad_norm : float or None
        Clip the gradient norm to this value (``None``: no clipping).
    max_steps : int or None
        Stop after this many optimizer steps in total.
    progress : bool
        Show a tqdm progress bar.

    Examples
    --------
    >>> from tcur.adapters.training import TrainingArguments
    >>> TrainingArguments(epochs=3).total_steps(n_examples=100)
    12
    """

    epochs: int = 1
    lr: float = 1e-3
    batch_size: int = 32
    max_length: int = 48
    seed: int = 0
    weight_decay: float = 0.0
    warmup_ratio: float = 0.1
    max_grad_norm: float | None = 1.0
    max_steps: int | None = None
    progress: bool = True

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "max_length"):
            check_positive(getattr(self, name), name)
        if self.max_steps is not None:
            check_positive(self.max_steps, "max_steps")
        if not (isinstance(self.lr, (int, float)) and math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"lr must be a positive finite number, got {self.lr!r}")
        if not 0.0 <= self.warmup_ratio < 1.0:
            raise ValueError(f"warmup_ratio must be in [0, 1), got {self.warmup_ratio}")

    def steps_per_epoch(self, n_examples: int) -> int:
        """Optimizer steps of one full pass over ``n_examples``."""
        return math.ceil(n_examples / self.batch_size)

    def total_steps(self, n_examples: int) -> int:
        """Optimizer steps of the whole run (``max_steps`` caps it)."""
        total = self.epochs * self.steps_per_epoch(n_examples)
        return total if self.max_steps is None else min(total, self.max_steps)


def resolve(args: TrainingArguments | None, defaults: TrainingArguments, **options: Any) -> Any:
    """``args`` (or ``defaults``) with the keyword ``options`` replaced; unknown names: TypeError.

    Examples
    --------
    >>> from tcur.adapters.training import TrainingArguments
    >>> from tcur.adapters.training.loop import resolve
    >>> resolve(None, TrainingArguments(batch_size=8), lr=0.5).batch_size
    8
    """
    base = args if args is not None else defaults
    names = {f.name for f in dataclasses.fields(TrainingArguments)}
    unknown = sorted(set(options) - names)
    if unknown:
        raise TypeError(f"unknown training option(s): {', '.join(unknown)}")
    return dataclasses.replace(base, **options)


@dataclass(frozen=True)
class TrainResult:
    """What a training loop measured.

    Attributes
    ----------
    steps : int
        Optimizer steps taken.
    losses : list of float
        Training loss of every step, in order.
    step_times_ms : list of float
        Wall time of every step (forward, backward, optimizer update) in milliseconds.
    total_time_s : float
        Wall time of the whole loop in seconds (tokenization included).
    """

    steps: int
    losses: list[float] = field(repr=False)
    step_times_ms: list[float] = field(repr=False)
    total_time_s: float

    @property
    def step_time_ms(self) -> float:
        """Median step time in milliseconds, the first (warm-up) step excluded when possible."""
        times = sorted(self.step_times_ms[1:] or self.step_times_ms)
        if not times:
            return float("nan")
        mid = len(times) // 2
        return times[mid] if len(times) % 2 else 0.5 * (times[mid - 1] + times[mid])


EpochEnd = Callable[[int, TrainResult], None]
"""``on_epoch_end(epoch, result)``: ``epoch`` counts from 1; ``result`` covers that epoch only."""


def linear_schedule(total_steps: int, warmup_ratio: float) -> Callable[[int], float]:
    """Learning-rate factor of step ``i``: linear warm-up, then linear decay to 0."""
    warmup = int(warmup_ratio * total_steps)

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup))

    return factor


@contextlib.contextmanager
def isolated_rng(seed: int) -> Iterator[None]:
    """Seed every RNG with ``seed`` inside, restore the caller's states (all devices) after."""
    accelerator = torch.accelerator.current_accelerator()
    device_type = accelerator.type if accelerator is not None else "cuda"
    module = torch.get_device_module(device_type)
    count = module.device_count() if accelerator is not None else 0
    with torch.random.fork_rng(devices=list(range(count)), device_type=device_type):
        torch.manual_seed(seed)  # the CPU and every device
        yield


def train(
    model: nn.Module,
    loss_of: Callable[[list[int]], torch.Tensor],
    n_examples: int,
    args: TrainingArguments,
    *,
    desc: str = "train",
    on_epoch_end: EpochEnd | None = None,
) -> TrainResult:
    """Minimise ``loss_of(batch)`` with one AdamW optimizer and one schedule for the whole run.

    ``on_epoch_end`` is called after every epoch (also a partial last one), inside the loop,
    so an evaluation there sees the model mid-run; the model is put back into training mode
    afterwards.
    """
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("model has no trainable parameters (every requires_grad is False)")
    total_steps = args.total_steps(n_examples)
    optimizer = torch.optim.AdamW(params, lr=args.lr, weight_decay=args.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, linear_schedule(total_steps, args.warmup_ratio)
    )
    losses: list[float] = []
    times: list[float] = []
    start = time.perf_counter()
    bar = tqdm(total=total_steps, desc=desc, disable=not args.progress, leave=False)
    with isolated_rng(args.seed), train_mode(model):
        order = torch.Generator().manual_seed(args.seed)
        for epoch in range(1, args.epochs + 1):
            first = len(losses)
            for batch in shuffled_batches(n_examples, args.batch_size, order):
                if len(losses) == total_steps:
                    break
                tick = time.perf_counter()
                losses.append(_step(loss_of(batch), params, optimizer, args, len(losses)))
                scheduler.step()
                times.append(1000.0 * (time.perf_counter() - tick))
                bar.update(1)
                bar.set_postfix(loss=f"{losses[-1]:.4f}", refresh=False)
            if len(losses) == first:
                break
            if on_epoch_end is not None:
                on_epoch_end(epoch, _result(losses[first:], times[first:], start))
                model.train()
    bar.close()
    return _result(losses, times, start)


def _step(
    loss: torch.Tensor,
    params: list[nn.Parameter],
    optimizer: torch.optim.Optimizer,
    args: TrainingArguments,
    index: int,
) -> float:
    value = float(loss.detach())
    if not math.isfinite(value):
        raise FloatingPointError(f"training loss became {value} at step {index}")
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if args.max_grad_norm is not None:
        nn.utils.clip_grad_norm_(params, args.max_grad_norm)
    optimizer.step()
    return value


def _result(losses: list[float], times: list[float], start: float) -> TrainResult:
    return TrainResult(len(losses), list(losses), list(times), time.perf_counter() - start)
