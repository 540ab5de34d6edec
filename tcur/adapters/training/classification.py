"""Sequence classification: cross-entropy training, predictions and accuracy."""

from __future__ import annotations

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

CLASSIFIER_DEFAULTS = TrainingArguments(batch_size=32, max_length=48)
"""Defaults of :func:`train_classifier` (short sentences)."""


def train_classifier(
    model: nn.Module,
    tokenizer: Tokenizer,
    train_texts: Sequence[str],
    train_labels: Sequence[int],
    *,
    args: TrainingArguments | None = None,
    on_epoch_end: EpochEnd | None = None,
    **options: Any,
) -> TrainResult:
    """Fine-tune a sequence classifier with cross-entropy, AdamW and a linear schedule.

    Only parameters with ``requires_grad=True`` are optimised, so the same loop trains a full
    model, a frozen encoder with a trainable head, or an adapter-wrapped model.

    Parameters
    ----------
    model : torch.nn.Module
        Returns class logits of shape ``(batch, n_classes)`` (or an object with ``.logits``).
    tokenizer : callable
        See :mod:`tcur.adapters.training.batching`.
    train_texts, train_labels : sequences
        Texts and integer class labels of equal length.
    args : TrainingArguments, optional
        All settings at once (default :data:`CLASSIFIER_DEFAULTS`).
    on_epoch_end : callable, optional
        ``on_epoch_end(epoch, epoch_result)`` after every epoch (e.g. an evaluation).
    **options
        Fields of :class:`~tcur.adapters.training.TrainingArguments` to override (``epochs``,
        ``lr``, ``batch_size``, ``max_length``, ``seed``, ``max_steps``, ``progress``, ...).

    Returns
    -------
    TrainResult

    Examples
    --------
    >>> import torch
    >>> from tcur.adapters.training import train_classifier
    >>> class Chars:  # a tokenizer: one id per character, 0 is padding
    ...     pad_token_id = 0
    ...     def __call__(self, texts, truncation=True, max_length=8):
    ...         return {"input_ids": [[ord(c) % 50 + 1 for c in t[:max_length]] for t in texts]}
    >>> class Bag(torch.nn.Module):
    ...     def __init__(self):
    ...         super().__init__()
    ...         self.emb = torch.nn.EmbeddingBag(51, 2, mode="sum")
    ...     def forward(self, input_ids, attention_mask):
    ...         return self.emb(input_ids, per_sample_weights=attention_mask.float())
    >>> texts, labels = ["aaa", "bbb"] * 8, [0, 1] * 8
    >>> result = train_classifier(Bag(), Chars(), texts, labels, epochs=5, lr=0.5,
    ...                           batch_size=4, progress=False)
    >>> result.steps
    20
    """
    settings = resolve(args, CLASSIFIER_DEFAULTS, **options)
    labels = check_labels(train_texts, train_labels, "train_labels")
    encoded = tokenize(tokenizer, train_texts, settings.max_length)
    pad = pad_id(tokenizer)

    def loss_of(batch: list[int]) -> torch.Tensor:
        input_ids, mask = padded(encoded, batch, pad, device_of(model))
        logits = logits_of(model(input_ids=input_ids, attention_mask=mask))
        return nn.functional.cross_entropy(logits, labels[batch].to(logits.device))

    return train(model, loss_of, len(encoded), settings, on_epoch_end=on_epoch_end)


@torch.no_grad()
def predict_classifier(
    model: nn.Module,
    tokenizer: Tokenizer,
    texts: Sequence[str],
    *,
    batch_size: int = 64,
    max_length: int = 48,
    progress: bool = False,
) -> torch.Tensor:
    """Predicted class (argmax of the logits) of every text, in eval mode.

    Returns
    -------
    torch.Tensor
        int64 tensor of shape ``(len(texts),)`` on the CPU.

    Examples
    --------
    >>> import torch
    >>> from tcur.adapters.training import predict_classifier
    >>> class Tok:
    ...     pad_token_id = 0
    ...     def __call__(self, texts, truncation=True, max_length=8):
    ...         return {"input_ids": [[len(t)] for t in texts]}
    >>> class LongIsOne(torch.nn.Module):
    ...     def forward(self, input_ids, attention_mask):
    ...         x = input_ids[:, :1].float()
    ...         return torch.cat([3 - x, x - 3], dim=1)
    >>> predict_classifier(LongIsOne(), Tok(), ["hi", "hello"]).tolist()
    [0, 1]
    """
    encoded = tokenize(tokenizer, texts, max_length)
    pad = pad_id(tokenizer)
    predictions, order = [], []
    with eval_mode(model):
        for batch in length_sorted_batches(encoded, batch_size, progress, "predict"):
            input_ids, mask = padded(encoded, batch, pad, device_of(model))
            logits = logits_of(model(input_ids=input_ids, attention_mask=mask))
            predictions.append(logits.argmax(dim=-1).cpu())
            order.extend(batch)
    result = torch.empty(len(encoded), dtype=torch.long)
    result[torch.tensor(order)] = torch.cat(predictions)
    return result


def evaluate_classifier(
    model: nn.Module,
    tokenizer: Tokenizer,
    texts: Sequence[str],
    labels: Sequence[int],
    *,
    batch_size: int = 64,
    max_length: int = 48,
    progress: bool = False,
) -> float:
    """Accuracy (fraction of correct predictions, in ``[0, 1]``) of a classifier on ``texts``.

    Examples
    --------
    >>> import torch
    >>> from tcur.adapters.training import evaluate_classifier
    >>> class Tok:
    ...     pad_token_id = 0
    ...     def __call__(self, texts, truncation=True, max_length=8):
    ...         return {"input_ids": [[len(t)] for t in texts]}
    >>> class LongIsOne(torch.nn.Module):
    ...     def forward(self, input_ids, attention_mask):
    ...         x = input_ids[:, :1].float()
    ...         return torch.cat([3 - x, x - 3], dim=1)
    >>> evaluate_classifier(LongIsOne(), Tok(), ["hi", "hello", "yo", "hey"], [0, 1, 1, 0])
    0.75
    """
    target = check_labels(texts, labels, "labels")
    predicted = predict_classifier(
        model, tokenizer, texts, batch_size=batch_size, max_length=max_length, progress=progress
    )
    return float((predicted == target).double().mean())


def check_labels(texts: Sequence[str], labels: Sequence[int], name: str) -> torch.Tensor:
    """``labels`` as an int64 tensor; errors name ``name`` (dtype, length, negative ids)."""
    target = torch.as_tensor(list(labels))
    if target.ndim != 1 or target.dtype.is_floating_point or target.dtype == torch.bool:
        raise TypeError(f"{name} must be a flat sequence of integer class ids, got {target.dtype}")
    if len(target) != len(texts):
        raise ValueError(f"{name} has {len(target)} entries but there are {len(texts)} texts")
    if len(target) and int(target.min()) < 0:
        raise ValueError(f"{name} must be >= 0, got {int(target.min())}")
    return target.long()
