"""FSDP2 (``fully_shard`` per block, then the root): two gloo processes on the CPU.

Two AdamW steps on the two halves of a batch must give the one-process result on the whole batch.
``save`` called on every rank gathers the sharded ``dU`` and writes on rank 0; ``load`` goes into
the base model before sharding. ``apply`` and ``load`` refuse sharded weights (selection and the
base-weight check need whole weights, so adapters go in first). The same holds for a tiny BERT
wrapped by PEFT, saved with ``save_pretrained`` from a ``torch.distributed.checkpoint`` full state
dict. Both runs share one start of the two processes (a module fixture).
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
from adapter_models import tiny_encoder
from distributed_helpers import (
    adapted_model,
    adapter_config,
    fail_loudly,
    fixed_batch,
    leave_cleanly,
    run_workers,
)
from safetensors.torch import load_file, save_file

from tcur.adapters import adapter_groups, apply, load, save

WORLD = 2
FORWARDS = ("factored", "materialized")
STEPS = 2

pytestmark = pytest.mark.skipif(not dist.is_available(), reason="needs torch.distributed")


def _train(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> None:
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-2, weight_decay=0.01)
    for _ in range(STEPS):
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()


def _trainable(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Whole trainable tensors (``full_tensor`` gathers a DTensor; every rank must call it)."""
    out = {}
    for name, p in model.named_parameters():
        if p.requires_grad:
            full = p.full_tensor() if hasattr(p, "full_tensor") else p
            out[name] = full.detach().clone()
    return out


def _shard(model: torch.nn.Module) -> None:
    from torch.distributed.fsdp import fully_shard

    for block in model.layers:
        fully_shard(block)
    fully_shard(model)


def _worker(rank: int, store: str, out: str, with_peft: bool) -> None:
    """Both runs in one process group (one start-up of the two processes)."""
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=WORLD)
    try:
        _encoder_run(rank, out)
        if with_peft:
            _peft_run(rank, out)
        dist.barrier()  # nobody tears the group down while the other rank still works
    except BaseException:
        fail_loudly()
        raise
    leave_cleanly()


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("fsdp")
    with_peft = all(importlib.util.find_spec(m) is not None for m in ("peft", "transformers"))
    run_workers(_worker, (str(out / "store"), str(out), with_peft), WORLD, timeout=180)
    return out


def _encoder_run(rank: int, out: str) -> None:
    x, y = fixed_batch()
    half = x.shape[0] // WORLD
    part = slice(rank * half, (rank + 1) * half)
    for forward in FORWARDS:
        model = adapted_model(forward)
        _shard(model)
        _train(model, x[part], y[part])
        trained = _trainable(model)
        save(model, f"{out}/adapter-{forward}")  # every rank; rank 0 writes
        restored = load(tiny_encoder(seed=0, dtype=torch.float64), f"{out}/adapter-{forward}")
        _shard(restored)
        with torch.no_grad():
            gap = float((restored(x) - model(x)).abs().max())
        if rank == 0:
            save_file(trained, f"{out}/{forward}.safetensors")
            Path(f"{out}/{forward}-gap.json").write_text(json.dumps(gap))
    messages = {}
    for name, add in (
        ("apply", lambda m: apply(m, adapter_config("auto"))),
        ("load", lambda m: load(m, f"{out}/adapter-factored")),
    ):
        sharded = tiny_encoder(seed=0, dtype=torch.float64)
        _shard(sharded)
        try:
            add(sharded)
            messages[name] = None
        except ValueError as exc:
            messages[name] = str(exc)
    if rank == 0:
        Path(f"{out}/sharded.json").write_text(json.dumps(messages))


def test_fsdp2_per_block_adamw_equals_single_process_on_whole_batch(run_dir: Path) -> None:
    x, y = fixed_batch()
    for forward in FORWARDS:
        distributed = load_file(str(run_dir / f"{forward}.safetensors"))
        model = adapted_model(forward)
        start = _trainable(model)
        _train(model, x, y)
        single = _trainable(model)
        assert set(distributed) == set(single)
        names = [n for n in single if n.endswith(".dU")]
        assert names and all(n.startswith("tcur_groups.") for n in names)
        for name, value in single.items():
            assert not torch.equal(value, start[name]), f"{name} did not train"
            torch.testing.assert_close(distributed[name], value, rtol=0, atol=1e-8)
        restored = load(tiny_encoder(seed=0, dtype=torch.float64), run_dir / f"adapter-{forward}")
        for ours, theirs in zip(adapter_groups(restored), adapter_groups(model), strict=True):
            torch.testing.assert_close(ours.dU, theirs.dU, rtol=0, atol=1e-8)
        assert json.loads((run_dir / f"{forward}-gap.json").read_text()) < 1e-12
    for message in json.loads((run_dir / "sharded.json").read_text()).values():
        assert message is not None and "sharded DTensor" in message
        assert "before fully_shard" in message


def _peft_model() -> torch.nn.Module:
    from peft import get_peft_model
    from test_adapters_peft import tiny_bert

    from tcur.adapters.peft import TCURLoRAPeftConfig

    config = TCURLoRAPeftConfig(target_modules=["query", "value"], rank=3, task_type="SEQ_CLS")
    model = get_peft_model(tiny_bert(), config)
    generator = torch.Generator().manual_seed(6)
    with torch.no_grad():
        for group in adapter_groups(model):
            group.dU.copy_(torch.randn(group.dU.shape, generator=generator, dtype=torch.float64))
    return model


def _peft_batch() -> dict[str, torch.Tensor]:
    ids = torch.randint(0, 50, (4, 7), generator=torch.Generator().manual_seed(8))
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": ids[:, 0] % 2}


def _train_peft(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> None:
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-2)
    for _ in range(STEPS):
        optimizer.zero_grad()
        model(**batch).loss.backward()
        optimizer.step()


def _peft_run(rank: int, out: str) -> None:
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict
    from torch.distributed.fsdp import fully_shard

    model = _peft_model()
    for block in model.base_model.model.bert.encoder.layer:
        fully_shard(block)
    fully_shard(model)
    half = {k: v[rank * 2 : (rank + 1) * 2] for k, v in _peft_batch().items()}
    _train_peft(model, half)
    trained = _trainable(model)
    options = StateDictOptions(full_state_dict=True, cpu_offload=True)
    full = get_model_state_dict(model, options=options)  # every rank; rank 0 gets it
    if rank == 0:
        save_file(trained, f"{out}/peft.safetensors")
        model.save_pretrained(f"{out}/peft-adapter", state_dict=full)


def test_fsdp2_per_block_on_a_peft_model_equals_single_process(run_dir: Path) -> None:
    pytest.importorskip("peft")
    pytest.importorskip("transformers")
    distributed = load_file(str(run_dir / "peft.safetensors"))
    model = _peft_model()
    start = _trainable(model)
    _train_peft(model, _peft_batch())
    single = _trainable(model)
    assert set(distributed) == set(single)
    assert sum(n.endswith(".dU") for n in single) == 2
    for name, value in single.items():
        assert not torch.equal(value, start[name]), f"{name} did not train"
        torch.testing.assert_close(distributed[name], value, rtol=0, atol=1e-8)
    from peft import PeftModel
    from test_adapters_peft import tiny_bert

    restored = PeftModel.from_pretrained(tiny_bert(), run_dir / "peft-adapter")
    for ours, theirs in zip(adapter_groups(restored), adapter_groups(model), strict=True):
        torch.testing.assert_close(ours.dU, theirs.dU, rtol=0, atol=1e-8)
