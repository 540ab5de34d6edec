"""Causal language models: next-token training and perplexity."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from tcur.adapters.training.batching import (
    Tokenizer,
    device_of,
    eval_mode,
    length_sorted_batches,
    logits_of,
    pad_id,
    padded,
    tokenize,
)
from tcur.adapters.training.loop import (
    EpochEnd,
    TrainingArguments,
    TrainResult,
    resolve,
    train,
)

CAUSAL_LM_DEFAULTS = TrainingArguments(batch_size=8, max_length=128)
"""Defaults of :func:`train_causal_lm` (longer documents, smaller batches)."""


def train_causal_lm(
    model: nn.Module,
    tokenizer: Tokenizer,
    texts: Sequence[str],
    *,
    args: TrainingArguments | None = None,
    on_epoch_end: EpochEnd | None = None,
    **options: Any,
) -> TrainResult:
    """Fine-tune a causal language model on next-token prediction (AdamW, linear schedule).

    Each text is one training sequence, truncated to ``max_length`` tokens; padding positions
    are excluded from the loss. ``args``, ``on_epoch_end`` and ``**options`` are as in
    :func:`~tcur.adapters.training.train_classifier` (defaults :data:`CAUSAL_LM_DEFAULTS`).

    Returns
    -------
    TrainResult

    Examples
    --------
    >>> import torch
    >>> from tcur.adapters.training import perplexity, train_causal_lm
    >>> class Chars:
    ...     pad_token_id = None
    ...     def __call__(self, texts, truncation=True, max_length=16):
    ...         return {"input_ids": [[ord(c) - 97 for c in t[:max_length]] for t in texts]}
    >>> class Bigram(torch.nn.Module):
    ...     def __init__(self):
    ...         super().__init__()
    ...         self.table = torch.nn.Embedding(26, 26)
    ...     def forward(self, input_ids, attention_mask):
    ...         return self.table(input_ids)
    >>> model, texts = Bigram(), ["abcabcabc"] * 8
    >>> before = perplexity(model, Chars(), texts)
    >>> _ = train_causal_lm(model, Chars(), texts, epochs=20, lr=0.3, batch_size=4,
    ...                     progress=False)
    >>> perplexity(model, Chars(), texts) < before / 5
    True
    """
    settings = resolve(args, CAUSAL_LM_DEFAULTS, **options)
    encoded = tokenize(tokenizer, texts, settings.max_length)
    check_sequences(encoded)
    pad = pad_id(tokenizer)

    def loss_of(batch: list[int]) -> torch.Tensor:
        input_ids, mask = padded(encoded, batch, pad, device_of(model))
        total, count = next_token_nll(model, input_ids, mask)
        return total / count

    return train(model, loss_of, len(encoded), settings, desc="train LM", on_epoch_end=on_epoch_end)


@torch.no_grad()
def perplexity(
    model: nn.Module,
    tokenizer: Tokenizer,
    texts: Sequence[str],
    *,
    batch_size: int = 8,
    max_length: int = 128,
    progress: bool = False,
) -> float:
    """Perplexity ``exp(mean next-token negative log-likelihood)`` over all tokens of ``texts``.

    The mean is over every predicted token of every text (not a mean of per-text perplexities);
    each text is truncated to ``max_length`` tokens and contributes ``length - 1`` predictions.
    A model that predicts the uniform distribution over ``V`` tokens has perplexity ``V``.

    Examples
    --------
    >>> import torch
    >>> from tcur.adapters.training import perplexity
    >>> class Chars:
    ...     pad_token_id = None
    ...     def __call__(self, texts, truncation=True, max_length=16):
    ...         return {"input_ids": [[ord(c) - 97 for c in t[:max_length]] for t in texts]}
    >>> class Uniform(torch.nn.Module):
    ...     def forward(self, input_ids, attention_mask):
    ...         return torch.zeros(*input_ids.shape, 26)
    >>> round(perplexity(Uniform(), Chars(), ["hello", "world"]), 6)
    26.0
    """
    encoded = tokenize(tokenizer, texts, max_length)
    check_sequences(encoded)
    pad = pad_id(tokenizer)
    total, count = 0.0, 0
    with eval_mode(model):
        for batch in length_sorted_batches(encoded, batch_size, progress, "perplexity"):
            input_ids, mask = padded(encoded, batch, pad, device_of(model))
            nll, n = next_token_nll(model, input_ids, mask)
            total += float(nll)
            count += int(n)
    return math.exp(total / count)


def next_token_nll(
    model: nn.Module, input_ids: torch.Tensor, mask: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed next-token NLL over the unpadded positions, and the number of predictions."""
    logits = logits_of(model(input_ids=input_ids, attention_mask=mask))[:, :-1]
    targets = input_ids[:, 1:]
    keep = (mask[:, 1:] * mask[:, :-1]).bool()
    nll = nn.functional.cross_entropy(logits[keep].float(), targets[keep], reduction="sum")
    return nll, keep.sum()


def check_sequences(encoded: list[list[int]]) -> None:
    """``ValueError`` if no text has the two tokens a prediction needs."""
    if all(len(row) < 2 for row in encoded):
        raise ValueError("every text has fewer than 2 tokens: nothing to predict")
