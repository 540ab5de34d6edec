"""Plain-PyTorch training and evaluation loops for sequence classification and causal LMs.

These loops are what the adapters' ``finetune``/``evaluate`` methods, the examples and the
benchmarks share: AdamW over the parameters that require gradients, one linear learning-rate
schedule with warm-up for the whole run, gradient clipping, tqdm progress bars and measured step
times. One concept per module: ``loop`` (:class:`TrainingArguments`, :func:`train`, the schedule
and the RNG isolation), ``batching`` (tokenizing, padding, batch orders, model calling
conventions), ``classification`` and ``causal_lm`` (how a batch becomes a loss, and the metrics).

Every loop is reproducible from its ``seed``: batch order and dropout use RNG streams seeded
inside a fork of the CPU RNG and of every accelerator device's RNG, so the caller's RNG state is
left untouched.
"""

from tcur.adapters.training.causal_lm import perplexity, train_causal_lm
from tcur.adapters.training.classification import (
    evaluate_classifier,
    predict_classifier,
    train_classifier,
)
from tcur.adapters.training.loop import TrainingArguments, TrainResult, train

__all__ = [
    "TrainResult",
    "TrainingArguments",
    "evaluate_classifier",
    "perplexity",
    "predict_classifier",
    "train",
    "train_causal_lm",
    "train_classifier",
]
