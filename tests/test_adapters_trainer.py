"""transformers.Trainer trains tcur-adapted and PEFT-wrapped models and resumes exactly.

4 optimizer steps straight must give the same ``dU`` as 2 steps, a checkpoint, and a resumed run
of the last 2 (constant learning rate, no dropout, float64, a tiny BERT built from a config).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch

transformers = pytest.importorskip("transformers")
pytest.importorskip("accelerate")
pytest.importorskip("peft")

from peft import get_peft_model  # noqa: E402
from test_adapters_peft import tiny_bert  # noqa: E402
from transformers import Trainer, TrainingArguments  # noqa: E402

from tcur.adapters import TCURLoRAConfig, adapter_groups, apply  # noqa: E402
from tcur.adapters.peft import TCURLoRAPeftConfig  # noqa: E402

STEPS = 4


class Sentences(torch.utils.data.Dataset[dict[str, torch.Tensor]]):
    """Eight random token sequences with binary labels."""

    def __init__(self) -> None:
        generator = torch.Generator().manual_seed(3)
        self.ids = torch.randint(0, 50, (8, 6), generator=generator)
        self.labels = torch.randint(0, 2, (8,), generator=generator)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        ids = self.ids[i]
        return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": self.labels[i]}


def _tcur_model() -> torch.nn.Module:
    config = TCURLoRAConfig(["query", "value"], rank=3, modules_to_save=["classifier"])
    return apply(tiny_bert(), config)


def _peft_model() -> torch.nn.Module:
    config = TCURLoRAPeftConfig(target_modules=["query", "value"], rank=3, task_type="SEQ_CLS")
    return get_peft_model(tiny_bert(), config)


def _train(
    model: torch.nn.Module, out: Path, resume: Path | None = None, checkpointing: bool = False
) -> None:
    args = TrainingArguments(
        gradient_checkpointing=checkpointing,
        output_dir=str(out),
        max_steps=STEPS,
        per_device_train_batch_size=2,
        learning_rate=2e-2,
        lr_scheduler_type="constant",
        warmup_steps=0,
        save_strategy="steps",
        save_steps=2,
        logging_strategy="no",
        report_to=[],
        use_cpu=True,
        seed=7,
        dataloader_num_workers=0,
        disable_tqdm=True,
    )
    trainer = Trainer(model=model, args=args, train_dataset=Sentences())
    trainer.train(resume_from_checkpoint=str(resume) if resume is not None else None)


def _dUs(model: torch.nn.Module) -> list[torch.Tensor]:
    return [g.dU.detach().clone() for g in adapter_groups(model)]


@pytest.mark.parametrize("build", [_tcur_model, _peft_model], ids=["apply", "peft"])
def test_trainer_resume_continues_exactly(
    build: Callable[[], torch.nn.Module], tmp_path: Path
) -> None:
    straight = build()
    start = _dUs(straight)
    _train(straight, tmp_path / "straight")
    expected = _dUs(straight)
    assert len(expected) == 2
    assert all(not torch.equal(a, b) for a, b in zip(expected, start, strict=True))
    checkpoint = tmp_path / "straight" / "checkpoint-2"
    assert (checkpoint / "optimizer.pt").is_file() and (checkpoint / "trainer_state.json").is_file()

    resumed = build()
    _train(resumed, tmp_path / "resumed", resume=checkpoint)
    for ours, theirs in zip(_dUs(resumed), expected, strict=True):
        torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-12)


@pytest.mark.parametrize("build", [_tcur_model, _peft_model], ids=["apply", "peft"])
def test_gradient_checkpointing_gives_the_same_training(
    build: Callable[[], torch.nn.Module], tmp_path: Path
) -> None:
    """A checkpointed block runs again in backward; the adapters must record the same both times."""
    plain, checkpointed = build(), build()
    _train(plain, tmp_path / "plain")
    _train(checkpointed, tmp_path / "checkpointed", checkpointing=True)
    for ours, theirs in zip(_dUs(checkpointed), _dUs(plain), strict=True):
        torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-12)
