"""From texts to padded batches: tokenizing, padding, batch orders, model calling conventions.

A tokenizer is any callable ``tokenizer(texts, truncation=True, max_length=n)`` returning a
mapping with ``"input_ids"`` (lists of token ids), such as a transformers tokenizer; batches are
padded here with ``tokenizer.pad_token_id`` (or 0 when it is ``None``), so tokenizers without a
pad token work too. Models follow the transformers calling convention:
``model(input_ids=..., attention_mask=...)`` returns an object with ``.logits`` or the logits.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

Tokenizer = Callable[..., Any]
"""A callable ``tokenizer(texts, truncation=True, max_length=n) -> {"input_ids": [[...], ...]}``."""


def tokenize(tokenizer: Tokenizer, texts: Sequence[str], max_length: int) -> list[list[int]]:
    """Token ids of every text, truncated to ``max_length`` (texts checked first)."""
    if isinstance(texts, str):
        raise TypeError("texts must be a sequence of strings, got a single str")
    texts = list(texts)
    if not texts:
        raise ValueError("texts must not be empty")
    bad = next((t for t in texts if not isinstance(t, str)), None)
    if bad is not None:
        raise TypeError(f"texts must hold strings, got {type(bad).__name__}: {bad!r}")
    check_positive(max_length, "max_length")
    ids = tokenizer(texts, truncation=True, max_length=max_length)["input_ids"]
    return [list(map(int, row)) for row in ids]


def pad_id(tokenizer: Tokenizer) -> int:
    """The tokenizer's ``pad_token_id``, or 0 when it has none."""
    pad = getattr(tokenizer, "pad_token_id", None)
    return 0 if pad is None else int(pad)


def padded(
    encoded: list[list[int]], batch: list[int], pad: int, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(input_ids, attention_mask)`` of the examples ``batch``, right-padded with ``pad``."""
    rows = [encoded[i] for i in batch]
    width = max(1, max(len(r) for r in rows))
    input_ids = torch.full((len(rows), width), pad, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        input_ids[i, : len(row)] = torch.tensor(row, dtype=torch.long)
        mask[i, : len(row)] = 1
    return input_ids.to(device), mask.to(device)


def shuffled_batches(
    n_examples: int, batch_size: int, generator: torch.Generator
) -> Iterator[list[int]]:
    """One epoch of example indices in random order, ``batch_size`` at a time."""
    order = torch.randperm(n_examples, generator=generator).tolist()
    for begin in range(0, n_examples, batch_size):
        yield order[begin : begin + batch_size]


def length_sorted_batches(
    encoded: list[list[int]], size: int, progress: bool, desc: str
) -> Iterator[list[int]]:
    """Batches of indices of similar length (less padding), for order-free evaluation."""
    check_positive(size, "batch_size")
    order = sorted(range(len(encoded)), key=lambda i: len(encoded[i]))
    chunks = [order[begin : begin + size] for begin in range(0, len(order), size)]
    yield from tqdm(chunks, desc=desc, disable=not progress, leave=False)


def logits_of(output: Any) -> torch.Tensor:
    """``output.logits`` or ``output`` itself; ``TypeError`` if neither is a tensor."""
    logits = getattr(output, "logits", output)
    if not isinstance(logits, torch.Tensor):
        raise TypeError(
            f"model output must be a tensor or have .logits, got {type(output).__name__}"
        )
    return logits


def device_of(model: nn.Module) -> torch.device:
    """Device of the model's first parameter (CPU for a model without parameters)."""
    first = next(model.parameters(), None)
    return first.device if first is not None else torch.device("cpu")


@contextlib.contextmanager
def _mode(model: nn.Module, flag: bool) -> Iterator[None]:
    previous = model.training
    model.train(flag)
    try:
        yield
    finally:
        model.train(previous)


def train_mode(model: nn.Module) -> contextlib.AbstractContextManager[None]:
    """``model.train()`` inside, the previous mode restored after."""
    return _mode(model, True)


def eval_mode(model: nn.Module) -> contextlib.AbstractContextManager[None]:
    """``model.eval()`` inside, the previous mode restored after."""
    return _mode(model, False)


def check_positive(value: int, name: str) -> None:
    """``TypeError`` unless ``value`` is an int, ``ValueError`` unless it is >= 1."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {value!r} ({type(value).__name__})")
    if value < 1:
        raise ValueError(f"{name} must be >= 1, got {value}")
