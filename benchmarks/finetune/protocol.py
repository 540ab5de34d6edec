"""The protocol of the fine-tuning frontier: data, one training run, and the schedule of runs.

Data: the 8,530 Rotten Tomatoes sentences are split once (seed 0) into 1,000 test, 1,000
validation and 6,530 training sentences (:func:`finetune.data.classification_splits`). Every method
trains on all training sentences with the same budget (epochs, batch size, truncation).

Learning rate, per method, on validation only: seed 0 is trained at the three rates of the
method's first grid; if the best validation accuracy is at an edge of the grid, the grid is
extended by the next rate beyond that edge (the 1-3-10 ladder), up to ``max_extensions`` times;
a grid that ends with fewer than ``grid_size`` rates is padded on the side of the best rate's
better neighbour, so that every method's final grid has the same size.
The best rate is then final; its seed-0 run (kept on disk) is evaluated once on the test split,
and seeds 1 and 2 train at that rate and are evaluated on validation and test. Seeds set the
classifier's initialisation, batch order and dropout (and a randomized selection rule's draw).

Schedule, most informative first: phase 1 runs every method's seed-0 grid and test evaluation
(in the order of :func:`finetune.methods.methods`), phase 2 the remaining seeds. :func:`pending`
lists the units whose inputs are ready; workers take them in that order (:mod:`finetune.records`).
"""

from __future__ import annotations

import copy
import gc
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from _common import peak_rss_mb, reset_peak_rss

from finetune.methods import (
    Method,
    adapter_file_bytes,
    build_model,
    load_trainable_state,
    lr_ladder,
    trainable_state,
)
from finetune.records import RecordStore, unit_id

HIGHER_IS_BETTER = {"accuracy": True, "perplexity": False}
"""The metrics a run can be judged by, and whether a larger value is better."""


def higher_is_better(metric: str) -> bool:
    """Whether a larger ``metric`` is better (:data:`HIGHER_IS_BETTER`); the one place that says.

    Examples
    --------
    >>> higher_is_better("accuracy"), higher_is_better("perplexity")
    (True, False)
    """
    if metric not in HIGHER_IS_BETTER:
        raise ValueError(f"unknown metric={metric!r}; valid: {', '.join(HIGHER_IS_BETTER)}")
    return HIGHER_IS_BETTER[metric]


@dataclass(frozen=True)
class Budget:
    """Sizes of the experiment (the same for every method)."""

    validation_size: int
    test_size: int
    train_size: int | None
    epochs: int
    batch_size: int
    max_length: int
    seeds: tuple[int, ...]
    max_extensions: int = 2
    grid_size: int = 3
    """Rates every method's final grid has at least: a grid that ends smaller is padded on the
    side of the best rate's better neighbour, so that no method gets more tuning than another."""
    metric: str = "accuracy"
    """What a run is judged by: ``"accuracy"`` (higher is better; records hold
    ``validation_accuracy``/``test_accuracy``) or ``"perplexity"`` (lower is better)."""
    task: str = "rotten_tomatoes"
    """Classification task of :data:`finetune.data.TASKS` (the causal LM ignores it)."""
    calibration_batches: int = 8
    """Batches (of ``batch_size``) whose loss gradient the gradient bases are built from."""

    def __post_init__(self) -> None:
        higher_is_better(self.metric)  # raises for an unknown metric

    @property
    def higher_is_better(self) -> bool:
        """Whether a larger metric is better."""
        return higher_is_better(self.metric)

    def rank_key(self, value: float) -> float:
        """Sort key: larger is better; NaN (a diverged run) is worst."""
        if value != value:  # NaN
            return float("-inf")
        return value if self.higher_is_better else -value


@dataclass(frozen=True)
class Unit:
    """One unit of work: a training run (``kind`` "grid" or "seed") or a test evaluation."""

    method: str
    lr: float
    seed: int
    kind: str

    @property
    def uid(self) -> str:
        """The unit's record id."""
        return unit_id(self.method, self.lr, self.seed, test=self.kind == "test")


@dataclass(frozen=True)
class GridState:
    """Where a method's learning-rate search stands."""

    grid: tuple[float, ...]
    missing: tuple[float, ...]
    chosen: float | None
    validation: dict[float, float]


def grid_state(method: Method, records: Mapping[str, Any], budget: Budget) -> GridState:
    """The method's seed-0 grid so far: the rates still to run, or the chosen rate."""
    seed = budget.seeds[0]
    grid, extensions = sorted(method.grid), 0
    while True:
        found = {lr: records.get(unit_id(method.name, lr, seed)) for lr in grid}
        missing = tuple(lr for lr, rec in found.items() if rec is None)
        key = f"validation_{budget.metric}"
        validation = {lr: rec[key] for lr, rec in found.items() if rec}
        untrained = [lr for lr, rec in found.items() if rec and rec.get("trainable_params") == 0]
        if untrained:  # nothing trains (the pretrained model): the rate cannot matter
            return GridState(tuple(grid), (), untrained[0], validation)
        if missing:
            return GridState(tuple(grid), missing, None, validation)
        best = max(grid, key=lambda lr: (budget.rank_key(validation[lr]), -lr))  # ties: smaller
        at_edge = best in (grid[0], grid[-1])
        if at_edge and extensions < budget.max_extensions:
            extensions += 1
            downward = best == grid[0]
        elif len(grid) < budget.grid_size:
            ranked = {lr: budget.rank_key(v) for lr, v in validation.items()}
            downward = _pad_downward(grid, ranked, best)
        else:
            return GridState(tuple(grid), (), best, validation)
        if downward:
            grid.insert(0, lr_ladder(grid[0], -1))
        else:
            grid.append(lr_ladder(grid[-1], 1))


def _pad_downward(grid: list[float], validation: Mapping[float, float], best: float) -> bool:
    """Whether a grid is padded below (else above): beyond the edge the best rate sits on, or
    for an interior best on the side of its better neighbour (ties: below)."""
    i = grid.index(best)
    if i in (0, len(grid) - 1):
        return i == 0
    return validation[grid[i - 1]] >= validation[grid[i + 1]]


def pending(
    methods: Sequence[Method], records: Mapping[str, Any], budget: Budget
) -> tuple[list[Unit], int]:
    """Units ready to run, in schedule order, and how many units are not finished at all."""
    first, later, unfinished = [], [], 0
    for method in methods:
        state = grid_state(method, records, budget)
        if state.chosen is None:
            units = [Unit(method.name, lr, budget.seeds[0], "grid") for lr in state.missing]
            first += units
            unfinished += len(units) + len(budget.seeds)  # their test and seed units wait
            continue
        test = Unit(method.name, state.chosen, budget.seeds[0], "test")
        seeds = [Unit(method.name, state.chosen, s, "seed") for s in budget.seeds[1:]]
        first += [u for u in [test] if u.uid not in records]
        later += [u for u in seeds if u.uid not in records]
        unfinished += sum(u.uid not in records for u in [test, *seeds])
    return first + later, unfinished


class Experiment:
    """The tokenizer, the pretrained encoder and the three splits; trains and evaluates runs.

    ``budget.task`` picks the classification task (:func:`finetune.data.classification_splits`).
    """

    metric = "accuracy"

    def __init__(self, budget: Budget, progress: bool = False) -> None:
        from transformers import AutoModel, AutoTokenizer

        from finetune.data import classification_splits, minilm_path

        self.budget, self.progress = budget, progress
        path = str(minilm_path())
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.encoder = AutoModel.from_pretrained(path)
        self.encoder.pooler = None  # unused: the classifier reads the mean-pooled states
        splits = classification_splits(
            budget.task,
            test_size=budget.test_size,
            validation_size=budget.validation_size,
            seed=0,
        )
        train = splits.train
        self.train = train.head(budget.train_size) if budget.train_size else train
        self.validation, self.test = splits.validation, splits.test

    def model(self, method: Method, seed: int) -> Any:
        """The pretrained encoder, a classifier initialised from ``seed``, built by ``method``."""
        import torch
        from tcur_demo.classifier import MeanPoolClassifier

        torch.manual_seed(seed)
        fresh = MeanPoolClassifier(copy.deepcopy(self.encoder), 2)
        return build_model(method, fresh, seed, self)

    def fit(self, method: Method, lr: float, seed: int) -> tuple[Any, dict[str, Any]]:
        """Train one run; the model and what training measured."""
        from tcur.adapters.training import train_classifier

        model = self.model(method, seed)
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
        head = sum(
            p.numel() for n, p in model.named_parameters() if p.requires_grad and "classifier" in n
        )
        gc.collect()
        reset_peak_rss()
        result = train_classifier(
            model,
            self.tokenizer,
            self.train.texts,
            self.train.labels,
            epochs=self.budget.epochs,
            lr=lr,
            batch_size=self.budget.batch_size,
            max_length=self.budget.max_length,
            seed=seed,
            progress=self.progress,
        )
        losses = np.asarray(result.losses)
        measured = {
            "trainable_params": trainable,
            "adapter_params": trainable - head,
            "steps": result.steps,
            "step_time_ms": result.step_time_ms,
            "train_time_s": result.total_time_s,
            "peak_rss_mb": peak_rss_mb(),
            "final_train_loss": float(losses[-max(1, len(losses) // 20) :].mean()),
            "finite_loss": bool(np.isfinite(losses).all()),
        }
        if hasattr(model, "reference_u"):
            measured["reference_u_received_gradient"] = any(
                u.grad is not None for u in model.reference_u
            )
        return model, measured

    def calibration(self) -> tuple[list[Any], Callable[[Any, Any], Any]]:
        """``(batches, loss)`` of the gradient bases: the first ``calibration_batches`` training
        batches (a fixed order, the same for every seed and method) and the cross-entropy of
        one, ``loss(model, batch)`` (what :func:`tcur.adapters.loss_gradients` takes)."""
        import torch

        from tcur.adapters.training.batching import logits_of, padded, tokenize

        size, n = self.budget.batch_size, self.budget.calibration_batches
        texts, labels = self.train.texts[: size * n], self.train.labels[: size * n]
        encoded = tokenize(self.tokenizer, texts, self.budget.max_length)
        pad = self.tokenizer.pad_token_id or 0
        batches = []
        for start in range(0, len(encoded), size):
            rows = list(range(start, min(start + size, len(encoded))))
            input_ids, mask = padded(encoded, rows, pad, torch.device("cpu"))
            batches.append((input_ids, mask, torch.tensor([labels[i] for i in rows])))

        def loss(model: Any, batch: Any) -> Any:
            input_ids, mask, target = batch
            logits = logits_of(model(input_ids=input_ids, attention_mask=mask))
            return torch.nn.functional.cross_entropy(logits, target)

        return batches, loss

    def evaluate(self, model: Any, split: str) -> float:
        """The metric (accuracy) of ``model`` on ``"validation"`` or ``"test"``."""
        return self.accuracy(model, split)

    def accuracy(self, model: Any, split: str) -> float:
        """Accuracy of ``model`` on ``"validation"`` or ``"test"``."""
        from tcur.adapters.training import evaluate_classifier

        data = self.validation if split == "validation" else self.test
        return evaluate_classifier(
            model,
            self.tokenizer,
            data.texts,
            data.labels,
            batch_size=64,
            max_length=self.budget.max_length,
        )


def run_unit(exp: Any, method: Method, unit: Unit, store: RecordStore) -> dict[str, Any]:
    """Do one unit and return its record (the caller stores it)."""
    start = time.time()
    record: dict[str, Any] = {"method": unit.method, "lr": unit.lr, "seed": unit.seed}
    record["kind"] = unit.kind
    if unit.kind == "test":
        model, retrained = _chosen_model(exp, method, unit, store)
        record["retrained"] = retrained
        record[f"test_{exp.metric}"] = exp.evaluate(model, "test")
        record["adapter_file_bytes"] = adapter_file_bytes(method, model)
        _drop_states(method, store)
    else:
        model, measured = exp.fit(method, unit.lr, unit.seed)
        record.update(measured)
        record[f"validation_{exp.metric}"] = exp.evaluate(model, "validation")
        if unit.kind == "seed":
            record[f"test_{exp.metric}"] = exp.evaluate(model, "test")
        else:
            _save_state(model, store.state_path(unit.uid))
    record["wall_s"] = time.time() - start
    record["load_average_1min"] = round(os.getloadavg()[0], 2)
    record["code"] = os.environ.get("TCUR_BENCH_CODE", "working tree")
    record["finished_utc"] = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime())
    del model
    gc.collect()
    return record


def _chosen_model(exp: Any, method: Method, unit: Unit, store: RecordStore) -> tuple[Any, bool]:
    """The chosen seed-0 run: its saved weights, or trained again when they are gone."""
    from safetensors.torch import load_file

    path = store.state_path(unit_id(unit.method, unit.lr, unit.seed))
    if path.exists():
        model = exp.model(method, unit.seed)
        load_trainable_state(model, load_file(str(path)))
        return model, False
    model, _ = exp.fit(method, unit.lr, unit.seed)
    return model, True


def _save_state(model: Any, path: Any) -> None:
    from safetensors.torch import save_file

    tmp = path.with_suffix(".tmp")
    save_file(trainable_state(model), str(tmp))
    os.replace(tmp, path)


def _drop_states(method: Method, store: RecordStore) -> None:
    for path in store.state_dir.glob(f"{method.name}__lr*__seed*.safetensors"):
        path.unlink(missing_ok=True)
