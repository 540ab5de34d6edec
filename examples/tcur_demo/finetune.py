"""Demo step 2: fine-tune the real all-MiniLM-L6-v2 on Rotten Tomatoes with tCURLoRA and LoRA.

Both methods adapt the ``query`` and ``value`` projections of all six layers and train a new
linear head on the model's mean-pooled sentence embedding (:mod:`tcur_demo.classifier`), from
the same seeded head initialisation, on the same sentences, with the same loop
(:func:`tcur.adapters.training.train_classifier`: AdamW, linear schedule, tqdm bars). tCURLoRA
stacks the six ``query`` (and the six ``value``) weights into one ``384 x 384 x 6`` tensor each
and trains one ``8 x 8 x 6`` core per stack; PEFT LoRA trains rank-8 factors per matrix. The
budget is short (one epoch on a subset), so the accuracies show the trend on this machine, not
converged numbers; ``benchmarks/finetune_minilm_rt.py`` is the full comparison.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tcur_demo.report import format_table

TARGETS = ["query", "value"]
HEAD = "classifier"


@dataclass(frozen=True)
class Budget:
    """How much data and compute one method gets."""

    train_size: int
    test_size: int
    epochs: int = 1
    batch_size: int = 32
    max_length: int = 40


QUICK = Budget(train_size=960, test_size=500, batch_size=16)
"""``--quick``: 60 steps of 16 sentences per method, 500 test sentences."""
FULL = Budget(train_size=4800, test_size=1000)
"""Default: 150 steps of 32 sentences per method, the 1,000 held-out test sentences."""


def add_tcurlora(model: Any) -> Any:
    """tCURLoRA (rank 8, leverage-score rows/columns, grouped by name) on query/value + head."""
    from tcur.adapters import TCURLoRAConfig, apply

    config = TCURLoRAConfig(TARGETS, rank=8, select="leverage", modules_to_save=[HEAD])
    return apply(model, config)


def add_lora(model: Any) -> Any:
    """PEFT ``LoraConfig(r=8, lora_alpha=16)`` on query/value; the head trains in full."""
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(r=8, lora_alpha=16, target_modules=TARGETS, modules_to_save=[HEAD])
    with warnings.catch_warnings():  # PEFT calls a transformers API deprecated for v6
        warnings.simplefilter("ignore", FutureWarning)
        return get_peft_model(model, config)


@dataclass(frozen=True)
class Method:
    """A fine-tuning method: its name, its learning rate and how it wraps the base model."""

    name: str
    lr: float
    adapt: Callable[[Any], Any]


METHODS = (Method("tCURLoRA", 3e-2, add_tcurlora), Method("LoRA", 3e-3, add_lora))
"""The two methods with the learning rates that the validation split picked for them in
``benchmarks/finetune_minilm_rt.py`` (same model, head and data). The library's normalized
scaling makes tCURLoRA's learning rates larger than LoRA's (:mod:`tcur.adapters.config`)."""


@dataclass(frozen=True)
class Outcome:
    """What fine-tuning one method gave."""

    method: str
    trainable: int
    total: int
    head: int
    accuracy: float
    step_time_ms: float
    train_time_s: float
    losses: list[float]

    @property
    def adapter(self) -> int:
        """Trainable parameters outside the classification head."""
        return self.trainable - self.head


def finetune(
    method: Method,
    model: Any,
    tokenizer: Any,
    train: Any,
    test: Any,
    budget: Budget,
    seed: int = 0,
) -> Outcome:
    """Adapt ``model`` with ``method``, train on ``train``, return test accuracy and costs.

    ``train`` and ``test`` have ``.texts`` and ``.labels``
    (:class:`tcur_demo.datasets.LabelledTexts`).
    """
    from tcur.adapters import trainable_parameters
    from tcur.adapters.training import evaluate_classifier, train_classifier

    head = sum(p.numel() for p in getattr(model, HEAD).parameters())
    model = method.adapt(model)
    trainable, total = trainable_parameters(model)
    result = train_classifier(
        model,
        tokenizer,
        train.texts,
        train.labels,
        epochs=budget.epochs,
        lr=method.lr,
        batch_size=budget.batch_size,
        max_length=budget.max_length,
        seed=seed,
    )
    accuracy = evaluate_classifier(
        model, tokenizer, test.texts, test.labels, max_length=budget.max_length, progress=True
    )
    return Outcome(
        method.name,
        trainable,
        total,
        head,
        accuracy,
        result.step_time_ms,
        result.total_time_s,
        result.losses,
    )


def table(outcomes: Sequence[Outcome]) -> str:
    """The printed comparison: parameters, accuracy and time of every method."""
    headers = [
        "method",
        "trainable params",
        "of which adapter",
        "trainable %",
        "test accuracy",
        "step ms",
        "train s",
    ]
    rows = [
        [
            o.method,
            o.trainable,
            o.adapter,
            100.0 * o.trainable / o.total,
            o.accuracy,
            o.step_time_ms,
            o.train_time_s,
        ]
        for o in outcomes
    ]
    return format_table(headers, rows)


def plot(outcomes: Sequence[Outcome], path: Path, title: str) -> Path:
    """PNG with the training-loss curves and accuracy vs trainable parameters (log x)."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import NullFormatter

    fig = Figure(figsize=(10, 4), layout="constrained")
    losses, scatter = fig.subplots(1, 2)
    for o in outcomes:
        losses.plot(range(1, len(o.losses) + 1), _smooth(o.losses), label=o.method)
        scatter.scatter([o.trainable], [o.accuracy], s=40)
        scatter.annotate(
            f"{o.method}: {o.accuracy:.3f}",
            (o.trainable, o.accuracy),
            textcoords="offset points",
            xytext=(0, 8),
            ha="center",
        )
    losses.set(xlabel="step", ylabel="training loss (moving average of 10)", title="training")
    losses.legend()
    counts = [o.trainable for o in outcomes]
    scatter.axhline(0.5, color="grey", linestyle="--", linewidth=1, label="chance")
    scatter.set(
        xscale="log",
        xlim=(min(counts) / 4, max(counts) * 4),
        ylim=(0.45, min(1.0, max(o.accuracy for o in outcomes) + 0.08)),
        xlabel="trainable parameters (adapter + head)",
        ylabel="test accuracy",
        title="result",
    )
    scatter.xaxis.set_minor_formatter(NullFormatter())
    scatter.legend(loc="lower right")
    fig.suptitle(title)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    return path


def _smooth(values: Sequence[float], window: int = 10) -> list[float]:
    """Trailing moving average (shorter at the start)."""
    out, total = [], 0.0
    for i, value in enumerate(values):
        total += value - (values[i - window] if i >= window else 0.0)
        out.append(total / min(i + 1, window))
    return out


def base_classifier(seed: int) -> Any:
    """all-MiniLM-L6-v2 with a new 2-class head on its mean-pooled embedding, head from ``seed``."""
    import torch
    from transformers import AutoModel
    from transformers.utils import logging

    from tcur_demo.classifier import MeanPoolClassifier
    from tcur_demo.datasets import minilm_path

    verbosity = logging.get_verbosity()
    logging.set_verbosity_error()  # the unused pooler weights are expected
    try:
        encoder = AutoModel.from_pretrained(minilm_path(), add_pooling_layer=False)
    finally:
        logging.set_verbosity(verbosity)
    torch.manual_seed(seed)
    return MeanPoolClassifier(encoder, n_classes=2)


def run(quick: bool, out_dir: Path, echo: Callable[[str], None] = print) -> list[Outcome]:
    """Fine-tune with every method, print the table and write ``out_dir/finetune_minilm.png``."""
    from transformers import AutoTokenizer

    from tcur_demo.datasets import minilm_path, rotten_tomatoes

    budget = QUICK if quick else FULL
    parts = rotten_tomatoes(seed=0)
    train, test = parts.train.head(budget.train_size), parts.test.head(budget.test_size)
    tokenizer = AutoTokenizer.from_pretrained(minilm_path())
    echo(
        f"{len(train)} training sentences, {budget.epochs} epoch(s) of batches of "
        f"{budget.batch_size}; accuracy on {len(test)} held-out test sentences"
    )
    outcomes = []
    for method in METHODS:
        echo(f"-- {method.name} (lr {method.lr:g})")
        outcome = finetune(method, base_classifier(seed=0), tokenizer, train, test, budget)
        echo(f"   test accuracy {outcome.accuracy:.3f} after {outcome.train_time_s:.0f} s")
        outcomes.append(outcome)
    echo(table(outcomes))
    title = f"all-MiniLM-L6-v2 on Rotten Tomatoes ({len(train)} sentences, 1 seed)"
    echo(f"plot: {plot(outcomes, out_dir / 'finetune_minilm.png', title)}")
    return outcomes
