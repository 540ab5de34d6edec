"""Plain-PyTorch training and evaluation loops for sequence classification and causal LMs.

These loops are what the adapters' ``finetune``/``evaluate`` methods, the examples and the
benchmarks share: AdamW over the parameters that require gradients, a linear learning-rate schedule
with warm-up, gradient clipping, tqdm progress bars and measured step times.

Models follow the transformers calling convention: ``model(input_ids=..., attention_mask=...)``
returns either an object with a ``.logits`` attribute or the logits tensor itself. A tokenizer is
any callable ``tokenizer(texts, truncation=True, max_length=n)`` returning a mapping with
``"input_ids"`` (lists of token ids), such as a transformers tokenizer; batches are padded here with
``tokenizer.pad_token_id`` (or 0 when it is ``None``), so tokenizers without a pad token work too.

Every loop is reproducible from its ``seed``: batch order and dropout use RNG streams seeded
inside a :func:`torch.random.fork_rng` block, so the caller's global RNG state is left untouched.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

Tokenizer = Callable[..., Any]
"""A callable ``tokenizer(texts, truncation=True, max_length=n) -> {"input_ids": [[...], ...]}``."""


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


def train_classifier(
    model: nn.Module,
    tokenizer: Tokenizer,
    train_texts: Sequence[str],
    train_labels: Sequence[int],
    *,
    epochs: int = 1,
    lr: float = 1e-3,
    batch_size: int = 32,
    max_length: int = 48,
    seed: int = 0,
    weight_decay: float = 0.0,
    warmup_ratio: float = 0.1,
    max_grad_norm: float | None = 1.0,
    max_steps: int | None = None,
    progress: bool = True,
) -> TrainResult:
    """Fine-tune a sequence classifier with cross-entropy, AdamW and a linear schedule.

    Only parameters with ``requires_grad=True`` are optimised, so the same loop trains a full
    model, a frozen encoder with a trainable head, or an adapter-wrapped model.

    Parameters
    ----------
    model : torch.nn.Module
        Returns class logits of shape ``(batch, n_classes)`` (or an object with ``.logits``).
    tokenizer : callable
        See the module docstring.
    train_texts, train_labels : sequences
        Texts and integer class labels of equal length.
    epochs : int
        Passes over the data (a partial last epoch when ``max_steps`` stops earlier).
    lr, weight_decay : float
        AdamW learning rate (peak of the schedule) and weight decay.
    batch_size, max_length : int
        Sentences per step and the truncation length in tokens (batches are padded to their
        longest sentence).
    seed : int
        Seeds batch order and dropout.
    warmup_ratio : float
        Fraction of the steps over which the learning rate rises linearly from 0; it then decays
        linearly to 0.
    max_grad_norm : float or None
        Clip the gradient norm to this value (``None``: no clipping).
    max_steps : int or None
        Stop after this many steps.
    progress : bool
        Show a tqdm progress bar.

    Returns
    -------
    TrainResult

    Examples
    --------
    >>> import torch
    >>> from tcur.adapters.training import evaluate_classifier, train_classifier
    >>> class Words:  # a tokenizer: one id per character, 0 is padding
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
    >>> result = train_classifier(Bag(), Words(), texts, labels, epochs=5, lr=0.5,
    ...                           batch_size=4, progress=False)
    >>> result.steps
    20
    """
    labels = _check_labels(train_texts, train_labels, "train_labels")
    _check_training_args(epochs, lr, batch_size, max_length, max_steps)
    encoded = _tokenize(tokenizer, train_texts, max_length)
    pad_id = _pad_id(tokenizer)

    def loss_of(batch: list[int]) -> torch.Tensor:
        input_ids, mask = _pad([encoded[i] for i in batch], pad_id, _device(model))
        logits = _logits(model(input_ids=input_ids, attention_mask=mask))
        return nn.functional.cross_entropy(logits, labels[batch].to(logits.device))

    return _train_loop(
        model,
        loss_of,
        len(encoded),
        epochs=epochs,
        lr=lr,
        batch_size=batch_size,
        seed=seed,
        weight_decay=weight_decay,
        warmup_ratio=warmup_ratio,
        max_grad_norm=max_grad_norm,
        max_steps=max_steps,
        progress=progress,
        desc="train",
    )


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
    _check_positive(batch_size, "batch_size")
    encoded = _tokenize(tokenizer, texts, max_length)
    pad_id = _pad_id(tokenizer)
    predictions, order = [], []
    with _eval_mode(model):
        for batch in _progress(_chunks(encoded, batch_size), progress, "predict"):
            input_ids, mask = _pad([encoded[i] for i in batch], pad_id, _device(model))
            logits = _logits(model(input_ids=input_ids, attention_mask=mask))
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
    target = _check_labels(texts, labels, "labels")
    predicted = predict_classifier(
        model, tokenizer, texts, batch_size=batch_size, max_length=max_length, progress=progress
    )
    return float((predicted == target).double().mean())


def train_causal_lm(
    model: nn.Module,
    tokenizer: Tokenizer,
    texts: Sequence[str],
    *,
    epochs: int = 1,
    lr: float = 1e-3,
    batch_size: int = 8,
    max_length: int = 128,
    seed: int = 0,
    weight_decay: float = 0.0,
    warmup_ratio: float = 0.1,
    max_grad_norm: float | None = 1.0,
    max_steps: int | None = None,
    progress: bool = True,
) -> TrainResult:
    """Fine-tune a causal language model on next-token prediction (AdamW, linear schedule).

    Each text is one training sequence, truncated to ``max_length`` tokens; padding positions
    are excluded from the loss. Parameters are as in :func:`train_classifier`.

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
    _check_training_args(epochs, lr, batch_size, max_length, max_steps)
    encoded = _tokenize(tokenizer, texts, max_length)
    _check_sequences(encoded)
    pad_id = _pad_id(tokenizer)

    def loss_of(batch: list[int]) -> torch.Tensor:
        input_ids, mask = _pad([encoded[i] for i in batch], pad_id, _device(model))
        total, count = _next_token_nll(model, input_ids, mask)
        return total / count

    return _train_loop(
        model,
        loss_of,
        len(encoded),
        epochs=epochs,
        lr=lr,
        batch_size=batch_size,
        seed=seed,
        weight_decay=weight_decay,
        warmup_ratio=warmup_ratio,
        max_grad_norm=max_grad_norm,
        max_steps=max_steps,
        progress=progress,
        desc="train LM",
    )


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
    _check_positive(batch_size, "batch_size")
    encoded = _tokenize(tokenizer, texts, max_length)
    _check_sequences(encoded)
    pad_id = _pad_id(tokenizer)
    total, count = 0.0, 0
    with _eval_mode(model):
        for batch in _progress(_chunks(encoded, batch_size), progress, "perplexity"):
            input_ids, mask = _pad([encoded[i] for i in batch], pad_id, _device(model))
            nll, n = _next_token_nll(model, input_ids, mask)
            total += float(nll)
            count += int(n)
    return math.exp(total / count)


def _train_loop(
    model: nn.Module,
    loss_of: Callable[[list[int]], torch.Tensor],
    n_examples: int,
    *,
    epochs: int,
    lr: float,
    batch_size: int,
    seed: int,
    weight_decay: float,
    warmup_ratio: float,
    max_grad_norm: float | None,
    max_steps: int | None,
    progress: bool,
    desc: str,
) -> TrainResult:
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("model has no trainable parameters (every requires_grad is False)")
    if not 0.0 <= warmup_ratio < 1.0:
        raise ValueError(f"warmup_ratio must be in [0, 1), got {warmup_ratio}")
    steps_per_epoch = math.ceil(n_examples / batch_size)
    total_steps = epochs * steps_per_epoch
    if max_steps is not None:
        total_steps = min(total_steps, max_steps)
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, _linear_schedule(total_steps, warmup_ratio)
    )
    losses: list[float] = []
    times: list[float] = []
    start = time.perf_counter()
    bar = tqdm(total=total_steps, desc=desc, disable=not progress, leave=False)
    with torch.random.fork_rng(devices=[]), _train_mode(model):
        torch.manual_seed(seed)
        order = torch.Generator().manual_seed(seed)
        for batch in _batches(n_examples, batch_size, epochs, order):
            if len(losses) == total_steps:
                break
            tick = time.perf_counter()
            optimizer.zero_grad(set_to_none=True)
            loss = loss_of(batch)
            value = float(loss.detach())
            if not math.isfinite(value):
                raise FloatingPointError(f"training loss became {value} at step {len(losses)}")
            loss.backward()
            if max_grad_norm is not None:
                nn.utils.clip_grad_norm_(params, max_grad_norm)
            optimizer.step()
            scheduler.step()
            times.append(1000.0 * (time.perf_counter() - tick))
            losses.append(value)
            bar.update(1)
            bar.set_postfix(loss=f"{losses[-1]:.4f}", refresh=False)
    bar.close()
    return TrainResult(len(losses), losses, times, time.perf_counter() - start)


def _linear_schedule(total_steps: int, warmup_ratio: float) -> Callable[[int], float]:
    warmup = int(warmup_ratio * total_steps)

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup))

    return factor


def _batches(
    n_examples: int, batch_size: int, epochs: int, generator: torch.Generator
) -> Iterator[list[int]]:
    for _ in range(epochs):
        order = torch.randperm(n_examples, generator=generator).tolist()
        for begin in range(0, n_examples, batch_size):
            yield order[begin : begin + batch_size]


def _chunks(encoded: list[list[int]], size: int) -> list[list[int]]:
    """Batches of indices of similar length (less padding); evaluation does not depend on order."""
    order = sorted(range(len(encoded)), key=lambda i: len(encoded[i]))
    return [order[begin : begin + size] for begin in range(0, len(order), size)]


def _progress(chunks: list[list[int]], enabled: bool, desc: str) -> Iterator[list[int]]:
    yield from tqdm(chunks, desc=desc, disable=not enabled, leave=False)


def _next_token_nll(
    model: nn.Module, input_ids: torch.Tensor, mask: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed next-token NLL over the unpadded positions, and the number of predictions."""
    logits = _logits(model(input_ids=input_ids, attention_mask=mask))[:, :-1]
    targets = input_ids[:, 1:]
    keep = (mask[:, 1:] * mask[:, :-1]).bool()
    nll = nn.functional.cross_entropy(logits[keep].float(), targets[keep], reduction="sum")
    return nll, keep.sum()


def _tokenize(tokenizer: Tokenizer, texts: Sequence[str], max_length: int) -> list[list[int]]:
    if isinstance(texts, str):
        raise TypeError("texts must be a sequence of strings, got a single str")
    texts = list(texts)
    if not texts:
        raise ValueError("texts must not be empty")
    bad = next((t for t in texts if not isinstance(t, str)), None)
    if bad is not None:
        raise TypeError(f"texts must hold strings, got {type(bad).__name__}: {bad!r}")
    _check_positive(max_length, "max_length")
    ids = tokenizer(texts, truncation=True, max_length=max_length)["input_ids"]
    return [list(map(int, row)) for row in ids]


def _pad(rows: list[list[int]], pad_id: int, device: torch.device) -> tuple[Any, Any]:
    width = max(1, max(len(r) for r in rows))
    input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        input_ids[i, : len(row)] = torch.tensor(row, dtype=torch.long)
        mask[i, : len(row)] = 1
    return input_ids.to(device), mask.to(device)


def _pad_id(tokenizer: Tokenizer) -> int:
    pad = getattr(tokenizer, "pad_token_id", None)
    return 0 if pad is None else int(pad)


def _logits(output: Any) -> torch.Tensor:
    logits = getattr(output, "logits", output)
    if not isinstance(logits, torch.Tensor):
        raise TypeError(
            f"model output must be a tensor or have .logits, got {type(output).__name__}"
        )
    return logits


def _device(model: nn.Module) -> torch.device:
    first = next(model.parameters(), None)
    return first.device if first is not None else torch.device("cpu")


class _Mode:
    """Context manager that sets ``model.train(flag)`` and restores the previous mode."""

    def __init__(self, model: nn.Module, flag: bool) -> None:
        self.model, self.flag = model, flag
        self.previous = model.training

    def __enter__(self) -> None:
        self.model.train(self.flag)

    def __exit__(self, *exc: object) -> None:
        self.model.train(self.previous)


def _train_mode(model: nn.Module) -> _Mode:
    return _Mode(model, True)


def _eval_mode(model: nn.Module) -> _Mode:
    return _Mode(model, False)


def _check_labels(texts: Sequence[str], labels: Sequence[int], name: str) -> torch.Tensor:
    target = torch.as_tensor(list(labels))
    if target.ndim != 1 or target.dtype.is_floating_point or target.dtype == torch.bool:
        raise TypeError(f"{name} must be a flat sequence of integer class ids, got {target.dtype}")
    if len(target) != len(texts):
        raise ValueError(f"{name} has {len(target)} entries but there are {len(texts)} texts")
    if len(target) and int(target.min()) < 0:
        raise ValueError(f"{name} must be >= 0, got {int(target.min())}")
    return target.long()


def _check_sequences(encoded: list[list[int]]) -> None:
    if all(len(row) < 2 for row in encoded):
        raise ValueError("every text has fewer than 2 tokens: nothing to predict")


def _check_training_args(
    epochs: int, lr: float, batch_size: int, max_length: int, max_steps: int | None
) -> None:
    _check_positive(epochs, "epochs")
    _check_positive(batch_size, "batch_size")
    _check_positive(max_length, "max_length")
    if max_steps is not None:
        _check_positive(max_steps, "max_steps")
    if not (isinstance(lr, (int, float)) and math.isfinite(lr) and lr > 0):
        raise ValueError(f"lr must be a positive finite number, got {lr!r}")


def _check_positive(value: int, name: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {value!r} ({type(value).__name__})")
    if value < 1:
        raise ValueError(f"{name} must be >= 1, got {value}")
