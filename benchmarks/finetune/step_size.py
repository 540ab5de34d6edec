"""Size of one optimizer step of tCURLoRA across rank, n3 and target kind (all-MiniLM-L6-v2).

The question behind tCURLoRA's default ``scaling="normalized"``: does one Adam step of
learning rate ``lr`` change the model by the same amount whatever the rank, the number of
stacked slices ``n3`` and the kind of layer adapted? If not, a learning rate tuned for one
configuration may be wrong for another. (It answers the first step only: the learning rates the
fine-tuning frontier chooses over whole runs are the test that matters.)

For each configuration the adapter is applied to all-MiniLM-L6-v2 with a fresh classifier, the
loss of one batch of Rotten Tomatoes training sentences is differentiated, and Adam's first step
is taken exactly: with bias correction it moves every entry of ``dU`` by ``lr * sign(grad)``.
Two sizes are reported per unit learning rate: the relative change of each adapted weight,
``||dW_k|| / (lr ||W_k||)`` (mean over the group's slices), and the relative change of the
mean-pooled sentence embedding of the batch at ``lr = 1e-3`` (small enough to be linear).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from _common import base_parser, prepare, write_json

from finetune.methods import ALL_LINEAR, QV

LR = 1e-3
KINDS = {
    "query": r".*\.attention\.self\.query",
    "key": r".*\.attention\.self\.key",
    "value": r".*\.attention\.self\.value",
    "attention output": r".*\.attention\.output\.dense",
    "FFN up": r".*\.intermediate\.dense",
    "FFN down": r".*\.layer\.\d+\.output\.dense",
}


def configurations(quick: bool) -> dict[str, dict[str, Any]]:
    """Name -> TCURLoRAConfig fields of every configuration measured."""
    ranks = (4, 8) if quick else (4, 8, 16, 32)
    out = {f"query/value r{r}": {"target_modules": QV, "rank": r} for r in ranks}
    out["all linear r8, by shape (n3 = 24 and 6)"] = {
        "target_modules": ALL_LINEAR,
        "rank": 8,
        "group_by": "shape",
    }
    out["all linear r8, by name (n3 = 6)"] = {"target_modules": ALL_LINEAR, "rank": 8}
    if not quick:
        out.update({f"{k} only r8": {"target_modules": v, "rank": 8} for k, v in KINDS.items()})
    return out


def measure(model: Any, weights: dict[str, Any], batch: Any, labels: Any) -> dict[str, Any]:
    """Relative weight and embedding change of Adam's first step (see the module docstring)."""
    import torch

    from tcur.adapters import adapter_groups

    loss = torch.nn.functional.cross_entropy(model(**batch), labels)
    loss.backward()
    groups = adapter_groups(model)
    weight_steps = []
    with torch.no_grad():
        for group in groups:
            group.dU.copy_(-torch.sign(group.dU.grad))
            delta = group.full_delta()
            group.dU.zero_()
            base = weights[group.key]
            per_slice = torch.linalg.vector_norm(delta, dim=(0, 1))
            weight_steps.append(
                float((per_slice / torch.linalg.vector_norm(base, dim=(0, 1))).mean())
            )
        model.eval()
        before = model.embed(batch["input_ids"], batch["attention_mask"])
        for group in groups:
            group.dU.copy_(-LR * torch.sign(group.dU.grad))
        after = model.embed(batch["input_ids"], batch["attention_mask"])
    return {
        "weight_step_per_lr": sum(weight_steps) / len(weight_steps),
        "weight_step_per_lr_by_group": weight_steps,
        "embedding_change_per_1e-3": float((after - before).norm() / before.norm()),
    }


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Measure every configuration and write ``results/finetune_step_size.json``."""
    parser = base_parser(__doc__)
    parser.add_argument("--batch", type=int, default=32, help="sentences in the batch")
    args = parser.parse_args(argv)
    prepare(args.threads)
    import copy

    import torch
    from tcur_demo.classifier import MeanPoolClassifier
    from transformers import AutoModel, AutoTokenizer

    from finetune.data import classification_splits, minilm_path
    from tcur.adapters import TCURLoRAConfig, apply
    from tcur.adapters.plan import stacked_weights, target_groups

    path = str(minilm_path())
    tokenizer, encoder = AutoTokenizer.from_pretrained(path), AutoModel.from_pretrained(path)
    train = classification_splits("rotten_tomatoes", seed=0).train.head(args.batch)
    batch = tokenizer(
        list(train.texts), padding=True, truncation=True, max_length=40, return_tensors="pt"
    )
    batch = {k: batch[k] for k in ("input_ids", "attention_mask")}
    labels = torch.tensor(train.labels)
    rows = {}
    for name, fields in configurations(args.quick).items():
        torch.manual_seed(0)
        model = MeanPoolClassifier(copy.deepcopy(encoder), 2)
        config = TCURLoRAConfig(modules_to_save=["classifier"], **fields)
        weights = {k: stacked_weights(v) for k, v in target_groups(model, config).items()}
        model = apply(model, config)
        rows[name] = {"config": fields, **measure(model, weights, batch, labels)}
        print(
            f"{name:45s} {rows[name]['weight_step_per_lr']:.3f} "
            f"{rows[name]['embedding_change_per_1e-3']:.2e}",
            flush=True,
        )
    payload = {
        "headline": headline(rows),
        "model": "all-MiniLM-L6-v2 + linear classifier on the mean-pooled embedding",
        "batch": f"the first {args.batch} Rotten Tomatoes training sentences (split seed 0)",
        "step": "Adam's first step: every dU entry moves by lr * sign(grad)",
        "configurations": rows,
    }
    write_json("finetune_step_size" + ("_quick" if args.quick else ""), payload)
    return payload


def headline(rows: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """One row per configuration, relative to query/value at rank 8."""
    ref = rows.get("query/value r8") or next(iter(rows.values()))
    out = []
    for name, row in rows.items():
        ratio = row["embedding_change_per_1e-3"] / ref["embedding_change_per_1e-3"]
        out.append(
            {
                "method": name,
                "figure": f"weight step {row['weight_step_per_lr']:.2f} lr |W|, embedding "
                f"change {row['embedding_change_per_1e-3']:.2e} at lr 1e-3",
                "ratio": f"{ratio:.2f}x the embedding change of query/value r8",
                "target": "within 2x of query/value r8",
                "met": bool(0.5 <= ratio <= 2.0),
            }
        )
    return {
        "question": "Does one Adam step of tCURLoRA (default normalized scaling) change "
        "all-MiniLM-L6-v2 by the same amount whatever the rank, n3 and layer kind?",
        "rows": out,
    }


if __name__ == "__main__":
    main()
