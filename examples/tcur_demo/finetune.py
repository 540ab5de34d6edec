"""Demo step 2: fine-tune the real all-MiniLM-L6-v2 on Rotten Tomatoes, four ways.

Every method trains a new linear head on the model's mean-pooled sentence embedding
(:mod:`tcur_demo.classifier`) from the same seeded initialisation, on the same sentences, with the
same loop (:func:`tcur.adapters.training.train_classifier`: AdamW, linear warm-up and decay,
gradient clipping). The methods, their configurations and learning rates are those of the
frontier (:mod:`tcur_demo.frontier`): head only, tCURLoRA (:data:`TCURLORA`), PEFT LoRA r1 (the
smallest LoRA, the budget closest to tCURLoRA's) and LoRA r8. The demo trains one seed on a
subset of the frontier's training sentences, so its accuracies are noisy and lower than the
frontier's 3-seed means, which are printed beside them.
"""

from __future__ import annotations

import math
import textwrap
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from tcur_demo.frontier import Frontier, closing_sentence
from tcur_demo.report import format_table

HEAD = "classifier"

TCURLORA = "tcurlora_r32"
"""The frontier entry whose tCURLoRA configuration and learning rate the demo trains (rank 32
on query/value: the budget matched with LoRA r1 on the frontier)."""


def build_head_only(model: Any, config: dict[str, Any]) -> Any:
    """Freeze the encoder: only the head trains."""
    model.encoder.requires_grad_(False)
    return model


def build_tcurlora(model: Any, config: dict[str, Any]) -> Any:
    """tcur's tCURLoRA with the frontier's configuration; the head trains in full."""
    from tcur.adapters import TCURLoRAConfig, apply

    return apply(model, TCURLoRAConfig(modules_to_save=[HEAD], seed=0, **config))


def build_peft(model: Any, config: dict[str, Any]) -> Any:
    """A PEFT method: ``config["kind"]`` names the PEFT config class, the rest are its fields."""
    import peft

    fields = {k: v for k, v in config.items() if k != "kind"}
    peft_config = getattr(peft, config["kind"])(modules_to_save=[HEAD], **fields)
    with warnings.catch_warnings():  # PEFT calls a transformers API deprecated for v6
        warnings.simplefilter("ignore", FutureWarning)
        return peft.get_peft_model(model, peft_config)


PEFT_NAMES = {"Lora": "LoRA", "Vera": "VeRA"}
"""Printed names of PEFT config classes (``LoraConfig`` -> ``LoRA``)."""


@dataclass(frozen=True)
class Method:
    """A method of step 2: its ``summary.json`` prefix, frontier entry and builder."""

    name: str
    frontier_key: str
    build: Callable[[Any, dict[str, Any]], Any]

    def label(self, config: dict[str, Any]) -> str:
        """Printed name, e.g. ``"tCURLoRA r32"``.

        Examples
        --------
        >>> METHODS[1].label({"rank": 32}), METHODS[2].label({"kind": "LoraConfig", "r": 1})
        ('tCURLoRA r32', 'LoRA r1')
        """
        if self.build is build_head_only:
            return "head only"
        if self.build is build_tcurlora:
            return f"tCURLoRA r{config['rank']}"
        kind = str(config["kind"]).removesuffix("Config")
        return f"{PEFT_NAMES.get(kind, kind)} r{config['r']}"


METHODS = (
    Method("head_only", "head_only", build_head_only),
    Method("tcurlora", TCURLORA, build_tcurlora),
    Method("lora_r1", "lora_r1", build_peft),
    Method("lora_r8", "lora_r8", build_peft),
)
"""Step 2's methods, in the printed order."""


@dataclass(frozen=True)
class Budget:
    """How much data and compute every method gets (batch and length: the frontier's)."""

    train_size: int
    test_size: int
    batch_size: int = 16
    max_length: int = 40
    epochs: int = 1


QUICK_SIZES = (96, 64)
"""``--quick``: training and test sentences (6 steps of 16 per method: a smoke run)."""
FULL_SIZES = (1600, 1000)
"""Default: 100 steps of 16 per method, tested on the frontier's 1,000 test sentences."""


def budget(frontier: Frontier, quick: bool) -> Budget:
    """The demo's budget: its sizes, the frontier's batch size and truncation length."""
    train_size, test_size = QUICK_SIZES if quick else FULL_SIZES
    return Budget(train_size, test_size, frontier.batch_size, frontier.max_length)


@dataclass(frozen=True)
class Outcome:
    """What fine-tuning one method gave."""

    name: str
    label: str
    lr: float
    trainable: int
    total: int
    head: int
    accuracy: float
    step_time_ms: float
    train_time_s: float
    losses: list[float] = field(repr=False)

    @property
    def adapter(self) -> int:
        """Trainable parameters outside the classification head."""
        return self.trainable - self.head

    def summary(self) -> dict[str, Any]:
        """The method's entries of ``summary.json`` (prefixed by its name)."""
        return {
            f"{self.name}_accuracy": self.accuracy,
            f"{self.name}_params": self.adapter,
            f"{self.name}_trainable_params": self.trainable,
            f"{self.name}_lr": self.lr,
            f"{self.name}_step_ms": self.step_time_ms,
            f"{self.name}_train_s": self.train_time_s,
            f"{self.name}_label": self.label,
        }


def finetune(
    method: Method,
    config: dict[str, Any],
    lr: float,
    model: Any,
    tokenizer: Any,
    train: Any,
    test: Any,
    budget: Budget,
    progress: bool = False,
) -> Outcome:
    """Adapt ``model`` with ``method``, train on ``train``, return test accuracy and costs.

    ``train`` and ``test`` have ``.texts`` and ``.labels``
    (:class:`tcur_demo.datasets.LabelledTexts`).
    """
    from tcur.adapters import trainable_parameters
    from tcur.adapters.training import evaluate_classifier, train_classifier

    head = sum(p.numel() for p in getattr(model, HEAD).parameters())
    model = method.build(model, config)
    trainable, total = trainable_parameters(model)
    result = train_classifier(
        model,
        tokenizer,
        train.texts,
        train.labels,
        epochs=budget.epochs,
        lr=lr,
        batch_size=budget.batch_size,
        max_length=budget.max_length,
        seed=0,
        progress=progress,
    )
    accuracy = evaluate_classifier(
        model, tokenizer, test.texts, test.labels, max_length=budget.max_length, progress=progress
    )
    return Outcome(
        method.name,
        method.label(config),
        lr,
        trainable,
        total,
        head,
        accuracy,
        result.step_time_ms,
        result.total_time_s,
        result.losses,
    )


HEADERS = ("method", "lr", "adapter params", "step ms", "accuracy: demo", "frontier (3 seeds)")


def table(outcomes: Sequence[Outcome], frontier: Frontier) -> str:
    """The printed comparison: the demo's single seed beside the frontier's 3-seed means."""
    rows = []
    for o in outcomes:
        f = frontier[_key(o.name)]
        rows.append(
            [
                o.label,
                f"{o.lr:g}",
                o.adapter,
                o.step_time_ms,
                f"{100 * o.accuracy:.1f}%",
                f"{100 * f.accuracy_mean:.1f} +- {100 * f.accuracy_std:.1f}%",
            ]
        )
    return format_table(HEADERS, rows)


def _key(name: str) -> str:
    return next(m.frontier_key for m in METHODS if m.name == name)


def noise_points(accuracy: float, n: int) -> float:
    """Binomial standard error of an accuracy measured on ``n`` sentences, in points.

    Examples
    --------
    >>> round(noise_points(0.8, 1000), 2)
    1.26
    """
    return 100.0 * math.sqrt(accuracy * (1.0 - accuracy) / n)


def base_classifier(seed: int) -> Any:
    """all-MiniLM-L6-v2 with a new 2-class head on its mean-pooled embedding, head from ``seed``."""
    import torch
    from transformers import AutoModel
    from transformers.utils import logging

    from tcur_demo.classifier import MeanPoolClassifier
    from tcur_demo.datasets import minilm_path

    verbosity, bars = logging.get_verbosity(), logging.is_progress_bar_enabled()
    logging.set_verbosity_error()  # the unused pooler weights are expected
    logging.disable_progress_bar()  # no "Loading weights" bar
    try:
        encoder = AutoModel.from_pretrained(minilm_path(), add_pooling_layer=False)
    finally:
        logging.set_verbosity(verbosity)
        if bars:
            logging.enable_progress_bar()
    torch.manual_seed(seed)
    return MeanPoolClassifier(encoder, n_classes=2)


def load_data(size: Budget) -> tuple[Any, Any, Any]:
    """Tokenizer, training and test sentences (the frontier's split, seed 0)."""
    from transformers import AutoTokenizer

    from tcur_demo.datasets import minilm_path, rotten_tomatoes

    parts = rotten_tomatoes(seed=0)
    tokenizer = AutoTokenizer.from_pretrained(minilm_path())
    return tokenizer, parts.train.head(size.train_size), parts.test.head(size.test_size)


def run(
    frontier: Frontier,
    quick: bool,
    progress: bool = False,
    echo: Callable[[str], None] = print,
) -> list[Outcome]:
    """Fine-tune with every method and print the comparison; returns the outcomes."""
    size = budget(frontier, quick)
    tokenizer, train, test = load_data(size)
    intro = (
        f"{len(train):,} of the frontier's {frontier.train_size:,} training sentences, "
        f"{size.epochs} epoch of batches of {size.batch_size}, one seed; accuracy on "
        f"{len(test):,} held-out test sentences; learning rates: the frontier's choices."
    )
    echo(textwrap.fill(intro, width=100))
    outcomes = []
    for method in METHODS:
        entry = frontier[method.frontier_key]
        label = method.label(entry.config)
        model = base_classifier(seed=0)
        outcome = finetune(
            method, entry.config, entry.lr, model, tokenizer, train, test, size, progress
        )
        echo(
            f"  {label:<13} lr {entry.lr:<6g} accuracy {100 * outcome.accuracy:.1f}% "
            f"({outcome.train_time_s:.0f} s)"
        )
        outcomes.append(outcome)
    echo("")
    echo(table(outcomes, frontier))
    return outcomes


def closing(frontier: Frontier) -> str:
    """The demo's closing sentence, computed from the frontier's 3-seed means."""
    labels = {m.name: m.label(frontier[m.frontier_key].config) for m in METHODS}
    entries = {m.name: frontier[m.frontier_key] for m in METHODS}
    return closing_sentence(
        entries["head_only"],
        entries["tcurlora"],
        labels["tcurlora"],
        entries["lora_r1"],
        labels["lora_r1"],
        entries["lora_r8"],
        labels["lora_r8"],
        frontier.train_size,
    )


def conclusion(outcomes: Sequence[Outcome], frontier: Frontier, test_size: int) -> list[str]:
    """How noisy the demo's figures are, then :func:`closing`."""
    noise = max(noise_points(o.accuracy, test_size) for o in outcomes)
    steps = max(len(o.losses) for o in outcomes)
    frontier_steps = math.ceil(frontier.train_size / frontier.batch_size)
    noise_line = (
        f"One seed on {test_size:,} test sentences carries up to +-{noise:.1f} points of "
        f"binomial noise, after {steps} training steps instead of the frontier's "
        f"{frontier_steps}; the conclusion rests on the frontier's means:"
    )
    return [textwrap.fill(noise_line, width=100), closing(frontier)]
