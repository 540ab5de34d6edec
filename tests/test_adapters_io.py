"""Saving and loading adapters: round trips, a non-destructive crash-safe save, a strict load."""

from __future__ import annotations

import copy
import json
import math
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from adapter_models import tiny_encoder, tiny_gpt2
from safetensors.torch import load as load_bytes
from safetensors.torch import save as save_bytes

from tcur.adapters import (
    CURLoRAConfig,
    TCURLoRAConfig,
    adapter_groups,
    adapter_layers,
    apply,
    load,
    save,
)
from tcur.adapters import io as adapter_io
from tcur.adapters.fingerprint import file_digest

TARGETS = ["query", "value", "up", "down"]
OWN_FILES = ["adapter.safetensors", "adapter_config.json", "adapter_manifest.json"]


def _trained(config: CURLoRAConfig | TCURLoRAConfig, seed: int = 0, dtype=torch.float32):
    model = apply(tiny_encoder(seed, dtype=dtype), config)
    generator = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for group in adapter_groups(model):
            group.dU.copy_(torch.randn(group.dU.shape, generator=generator))
        if config.modules_to_save is not None:
            for parameter in model.classifier.parameters():
                parameter.add_(1.0)
    return model


def _x() -> torch.Tensor:
    return torch.randn(2, 5, 12, generator=torch.Generator().manual_seed(2))


def _out(model: torch.nn.Module) -> torch.Tensor:
    with torch.no_grad():
        return model(_x())


def _snapshot(model: torch.nn.Module) -> tuple[Any, ...]:
    """Everything a refused load must leave as it was."""
    state = {k: v.clone() for k, v in model.state_dict().items()}
    flags = {n: p.requires_grad for n, p in model.named_parameters()}
    kinds = [(n, type(m).__name__) for n, m in model.named_modules()]
    return state, flags, kinds, len(model._forward_pre_hooks), set(vars(model))


def _assert_unchanged(model: torch.nn.Module, snapshot: tuple[Any, ...]) -> None:
    state, flags, kinds, hooks, attributes = _snapshot(model)
    assert state.keys() == snapshot[0].keys()
    assert all(torch.equal(state[k], snapshot[0][k]) for k in state)
    assert (flags, kinds, hooks, attributes) == snapshot[1:]


def _rewrite(directory: Path, name: str, data: bytes) -> None:
    """Replace one saved file and record its new checksum, as a consistent but bad save would."""
    (directory / name).write_bytes(data)
    manifest = json.loads((directory / "adapter_manifest.json").read_text())
    manifest["files"][name]["sha256"] = file_digest(data)
    (directory / "adapter_manifest.json").write_text(json.dumps(manifest))


def _edit_meta(directory: Path, edit: Callable[[dict[str, Any]], None]) -> None:
    meta = json.loads((directory / "adapter_config.json").read_text())
    edit(meta)
    _rewrite(directory, "adapter_config.json", json.dumps(meta).encode())


@pytest.mark.parametrize(
    "config",
    [
        TCURLoRAConfig(TARGETS, rank=2, n_cols=3, modules_to_save=["classifier"]),
        TCURLoRAConfig(TARGETS, rank=2, select="inverse_norm", group_by="shape", seed=5),
        CURLoRAConfig(TARGETS, rank=3, modules_to_save="classifier"),
    ],
)
def test_round_trip_restores_outputs(tmp_path: Path, config: TCURLoRAConfig) -> None:
    model = _trained(config)
    path = save(model, tmp_path / "adapter")
    assert sorted(p.name for p in path.iterdir()) == OWN_FILES
    restored = load(tiny_encoder(0), path)
    torch.testing.assert_close(_out(restored), _out(model), rtol=0, atol=0)
    for ours, theirs in zip(adapter_groups(restored), adapter_groups(model), strict=True):
        assert (ours.rows, ours.cols, ours.members) == (theirs.rows, theirs.cols, theirs.members)
    trainable = [n for n, p in restored.named_parameters() if p.requires_grad]
    assert trainable == [n for n, p in model.named_parameters() if p.requires_grad]


def test_config_file_contents(tmp_path: Path) -> None:
    config = TCURLoRAConfig(TARGETS, rank=2, modules_to_save=["classifier"])
    save(_trained(config), tmp_path)
    meta = json.loads((tmp_path / "adapter_config.json").read_text())
    assert meta["adapter_type"] == "tCURLoRA" and meta["tcur_version"]
    assert TCURLoRAConfig.from_dict(meta["config"]) == config
    first = meta["groups"][0]
    assert first["key"] == "layers.*.query" and first["shape"] == [12, 12]
    assert first["members"] == [f"layers.{i}.query" for i in range(3)]
    assert len(first["rows"]) == len(first["cols"]) == 2
    assert len(first["weights_sha256"]) == 3 and len(set(first["weights_sha256"])) == 3
    tensors = load_bytes((tmp_path / "adapter.safetensors").read_bytes())
    assert set(tensors) == {f"groups.{i}.dU" for i in range(4)} | {
        "modules_to_save.classifier.weight",
        "modules_to_save.classifier.bias",
    }
    manifest = json.loads((tmp_path / "adapter_manifest.json").read_text())
    for name in ("adapter_config.json", "adapter.safetensors"):
        assert manifest["files"][name]["sha256"] == file_digest((tmp_path / name).read_bytes())


def test_another_base_model_is_refused(tmp_path: Path) -> None:
    save(_trained(TCURLoRAConfig(TARGETS, rank=2)), tmp_path)
    other = tiny_encoder(seed=1)
    before = _snapshot(other)
    with pytest.raises(ValueError, match=r"weight of module 'layers\.0\.query' differs"):
        load(other, tmp_path)
    _assert_unchanged(other, before)


def test_a_change_outside_the_selected_rows_and_columns_is_refused(tmp_path: Path) -> None:
    """The fingerprint covers every entry of every target weight, not only C and R."""
    model = _trained(TCURLoRAConfig(TARGETS, rank=2))
    save(model, tmp_path)
    group = next(g for g in adapter_groups(model) if g.key == "layers.*.value")
    i = next(i for i in range(12) if i not in group.rows)
    j = next(j for j in range(12) if j not in group.cols)
    base = tiny_encoder(0)
    with torch.no_grad():
        base.layers[1].value.weight[i, j] += 0.05
    before = _snapshot(base)
    with pytest.raises(ValueError, match=r"module 'layers\.1\.value' differs"):
        load(base, tmp_path)
    _assert_unchanged(base, before)


def test_float32_and_bfloat16_copies_of_one_base_are_accepted(tmp_path: Path) -> None:
    model = _trained(TCURLoRAConfig(TARGETS, rank=2))
    save(model, tmp_path / "fp32")
    restored = load(tiny_encoder(0).to(torch.bfloat16), tmp_path / "fp32")
    assert adapter_groups(restored)[0].dU.dtype == torch.float32  # fp32 master weights
    out = restored(_x().to(torch.bfloat16)).float()
    torch.testing.assert_close(out, _out(model), rtol=0.1, atol=0.1)
    half = _trained(TCURLoRAConfig(TARGETS, rank=2), dtype=torch.bfloat16)
    save(half, tmp_path / "bf16")
    assert load(tiny_encoder(0), tmp_path / "bf16") is not None


def test_missing_module_shape_mismatch_and_extra_targets(tmp_path: Path) -> None:
    save(_trained(TCURLoRAConfig(TARGETS, rank=2)), tmp_path)
    shallow = tiny_encoder(0, n_layers=2)
    with pytest.raises(ValueError, match=r"module 'layers\.2\.query' is not in the model"):
        load(shallow, tmp_path)
    wide = tiny_encoder(0, d=16)
    with pytest.raises(
        ValueError, match=r"layers\.0\.query has shape \(16, 16\), saved \(12, 12\)"
    ):
        load(wide, tmp_path)
    deep = tiny_encoder(0, n_layers=4)
    with pytest.raises(ValueError, match=r"targets module 'layers\.3\.query'.*no saved group"):
        load(deep, tmp_path)
    assert not adapter_layers(deep)


def test_save_writes_only_its_own_files_and_keeps_the_rest(tmp_path: Path) -> None:
    run = tmp_path / "run1"
    (run / "checkpoint-500").mkdir(parents=True)
    (run / "checkpoint-500" / "optimizer.pt").write_bytes(b"opt")
    (run / "trainer_state.json").write_text('{"step": 500}')
    (run / "adapter_notes.txt").write_text("mine")
    save(_trained(TCURLoRAConfig(["query"], rank=2)), run)
    save(_trained(TCURLoRAConfig(TARGETS, rank=2)), run)  # a second save overwrites only ours
    names = sorted(p.name for p in run.iterdir())
    assert names == sorted(
        [*OWN_FILES, "adapter_notes.txt", "checkpoint-500", "trainer_state.json"]
    )
    assert (run / "checkpoint-500" / "optimizer.pt").read_bytes() == b"opt"
    assert (run / "trainer_state.json").read_text() == '{"step": 500}'
    assert len(json.loads((run / "adapter_config.json").read_text())["groups"]) == 4
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run1"]


def test_save_to_a_path_that_is_a_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "adapter"
    path.write_text("not a directory")
    with pytest.raises(ValueError, match="is an existing file, not a directory"):
        save(_trained(TCURLoRAConfig(["query"], rank=2)), path)
    assert path.read_text() == "not a directory"
    with pytest.raises(ValueError, match=r"its parent .*adapter' is a file"):
        save(_trained(TCURLoRAConfig(["query"], rank=2)), path / "inside")
    assert path.read_text() == "not a directory"


def test_save_into_another_programs_adapter_folder_is_refused(tmp_path: Path) -> None:
    # PEFT writes an adapter_config.json of its own; saving would overwrite it.
    folder = tmp_path / "peft_adapter"
    folder.mkdir()
    (folder / "adapter_config.json").write_text('{"peft_type": "LORA"}')
    with pytest.raises(ValueError, match=r"not a tcur adapter's .*PEFT adapter"):
        save(_trained(TCURLoRAConfig(["query"], rank=2)), folder)
    assert (folder / "adapter_config.json").read_text() == '{"peft_type": "LORA"}'
    assert sorted(p.name for p in folder.iterdir()) == ["adapter_config.json"]


@pytest.mark.parametrize("hard_crash", [False, True])
@pytest.mark.parametrize("failing_call", [1, 2, 3])
def test_a_crash_during_save_leaves_the_old_or_the_new_adapter(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, failing_call: int, hard_crash: bool
) -> None:
    """``os.replace`` fails on its n-th call (3 calls: manifest, then the two data files).

    ``hard_crash`` also disables every clean-up (a killed process runs no ``finally``).
    """
    old, new = _trained(TCURLoRAConfig(["query"], rank=2)), _trained(TCURLoRAConfig(TARGETS, 2))
    save(old, tmp_path)
    (tmp_path / "trainer_state.json").write_text("{}")
    real_replace, calls = os.replace, []

    def flaky_replace(src: Any, dst: Any) -> None:
        calls.append(dst)
        if len(calls) == failing_call:
            raise OSError("simulated crash")
        real_replace(src, dst)

    monkeypatch.setattr(adapter_io.os, "replace", flaky_replace)
    if hard_crash:
        monkeypatch.setattr(Path, "unlink", lambda self, missing_ok=False: None)
    with pytest.raises(OSError, match="simulated crash"):
        save(new, tmp_path)
    monkeypatch.undo()
    restored = _out(load(tiny_encoder(0), tmp_path))
    expected = _out(old) if failing_call == 1 else _out(new)  # the manifest is the commit
    torch.testing.assert_close(restored, expected, rtol=0, atol=0)
    assert (tmp_path / "trainer_state.json").read_text() == "{}"
    save(old, tmp_path)  # the next save succeeds and leaves no temporary files behind
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([*OWN_FILES, "trainer_state.json"])
    torch.testing.assert_close(_out(load(tiny_encoder(0), tmp_path)), _out(old), rtol=0, atol=0)


def test_changed_or_missing_files_are_refused(tmp_path: Path) -> None:
    save(_trained(TCURLoRAConfig(TARGETS, rank=2)), tmp_path)
    weights = tmp_path / "adapter.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[:-10])  # truncated, manifest not updated
    with pytest.raises(ValueError, match=r"adapter\.safetensors: missing or its SHA-256 differs"):
        load(tiny_encoder(0), tmp_path)
    _rewrite(tmp_path, "adapter.safetensors", data[:-10])  # truncated, checksum "consistent"
    with pytest.raises(ValueError, match=r"adapter\.safetensors: not a valid safetensors file"):
        load(tiny_encoder(0), tmp_path)
    (tmp_path / "adapter_manifest.json").unlink()
    with pytest.raises(ValueError, match=r"holds no adapter_manifest\.json"):
        load(tiny_encoder(0), tmp_path)
    (tmp_path / "adapter_manifest.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"adapter_manifest\.json: malformed JSON"):
        load(tiny_encoder(0), tmp_path)
    with pytest.raises(ValueError, match=r"holds no adapter_manifest\.json"):
        load(tiny_encoder(0), tmp_path / "nowhere")


def _drop(field: str) -> Callable[[dict[str, Any]], None]:
    return lambda meta: meta["groups"][0].pop(field)


def _set(field: str, value: Any) -> Callable[[dict[str, Any]], None]:
    return lambda meta: meta["groups"][0].__setitem__(field, value)


def _set_config(field: str, value: Any) -> Callable[[dict[str, Any]], None]:
    return lambda meta: meta["config"].__setitem__(field, value)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda meta: meta.pop("groups"), r"field 'groups' is missing"),
        (lambda meta: meta.__setitem__("groups", {}), r"field 'groups' must be list"),
        (lambda meta: meta.__setitem__("format_version", 99), "format_version 99"),
        (lambda meta: meta.__setitem__("adapter_type", "LoRA"), "adapter_type' is unknown"),
        (_set_config("rank", "eight"), r"field 'config' is invalid: rank must be an integer"),
        (_set_config("lora_r", 8), r"field 'config' is invalid: unknown TCURLoRAConfig field"),
        (_set_config("n_rows", 3), r"'groups\[0\]\.rows' has 2 entries but the config selects 3"),
        (_drop("rows"), r"field 'groups\[0\]\.rows' is missing"),
        (_drop("weights_sha256"), r"field 'groups\[0\]\.weights_sha256' is missing"),
        (_set("rows", [0, 0]), r"'groups\[0\]\.rows' must hold distinct ints in 0\.\.11"),
        (_set("cols", [0, 12]), r"'groups\[0\]\.cols' must hold distinct ints"),
        (_set("cols", [0, True]), r"'groups\[0\]\.cols' must hold distinct ints"),
        (_set("scale", math.nan), r"'groups\[0\]\.scale' must be finite"),
        (_set("scale", "1.0"), r"'groups\[0\]\.scale' must be int or float"),
        (_set("members", []), r"'groups\[0\]\.members' must be a non-empty list"),
        (_set("shape", [12]), r"'groups\[0\]\.shape' must be two positive ints"),
        (_set("weights_sha256", ["ab"] * 3), r"one hex SHA-256 per member"),
    ],
)
def test_bad_config_fields_are_refused_and_model_left_unchanged(
    tmp_path: Path, edit: Callable[[dict[str, Any]], None], message: str
) -> None:
    save(_trained(TCURLoRAConfig(TARGETS, rank=2)), tmp_path)
    _edit_meta(tmp_path, edit)
    base = tiny_encoder(0)
    before = _snapshot(base)
    with pytest.raises(ValueError, match=message) as info:
        load(base, tmp_path)
    assert "adapter_config.json" in str(info.value)
    _assert_unchanged(base, before)


def test_malformed_config_json_is_refused(tmp_path: Path) -> None:
    save(_trained(TCURLoRAConfig(TARGETS, rank=2)), tmp_path)
    _rewrite(tmp_path, "adapter_config.json", b'{"format_version": 2,')
    with pytest.raises(ValueError, match=r"adapter_config\.json: malformed JSON"):
        load(tiny_encoder(0), tmp_path)
    _rewrite(tmp_path, "adapter_config.json", b"[1, 2]")
    with pytest.raises(ValueError, match=r"adapter_config\.json: expected a JSON object"):
        load(tiny_encoder(0), tmp_path)


def _replace_tensor(key: str, value: torch.Tensor | None) -> Callable[[dict], None]:
    def edit(tensors: dict[str, torch.Tensor]) -> None:
        if value is None:
            del tensors[key]
        else:
            tensors[key] = value

    return edit


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (_replace_tensor("groups.1.dU", torch.zeros(5, 5, 3)), r"shape \(5, 5, 3\)"),
        (_replace_tensor("groups.1.dU", None), r"'groups\.1\.dU' is missing"),
        (_replace_tensor("groups.9.dU", torch.zeros(2, 2, 3)), r"'groups\.9\.dU' is unexpected"),
        (_replace_tensor("groups.1.dU", torch.ones(2, 2, 3, dtype=torch.int32)), "dtype"),
        (_replace_tensor("groups.1.dU", torch.ones(2, 2, 3, dtype=torch.bool)), "dtype"),
        (_replace_tensor("groups.1.dU", torch.ones(2, 2, 3, dtype=torch.complex64)), "dtype"),
        (
            _replace_tensor("groups.2.dU", torch.full((2, 2, 3), math.nan)),
            r"'groups\.2\.dU' has NaN or infinite",
        ),
        (
            _replace_tensor("modules_to_save.classifier.bias", torch.tensor([math.inf, 0.0])),
            r"'modules_to_save\.classifier\.bias' has NaN or infinite",
        ),
    ],
)
def test_bad_tensors_are_refused_and_model_left_unchanged(
    tmp_path: Path, edit: Callable[[dict], None], message: str
) -> None:
    save(_trained(TCURLoRAConfig(TARGETS, rank=2, modules_to_save=["classifier"])), tmp_path)
    tensors = load_bytes((tmp_path / "adapter.safetensors").read_bytes())
    edit(tensors)
    _rewrite(tmp_path, "adapter.safetensors", save_bytes(tensors))
    base = tiny_encoder(0)
    before = _snapshot(base)
    with pytest.raises(ValueError, match=message) as info:
        load(base, tmp_path)
    assert "adapter.safetensors" in str(info.value)
    _assert_unchanged(base, before)


def test_load_refuses_an_adapted_model(tmp_path: Path) -> None:
    model = _trained(TCURLoRAConfig(TARGETS, rank=2))
    save(model, tmp_path)
    with pytest.raises(ValueError, match="already has tcur adapters"):
        load(model, tmp_path)


def test_gpt2_split_round_trip(tmp_path: Path) -> None:
    config = TCURLoRAConfig(["c_attn", "c_proj"], rank=2, split_fused={"c_attn": 3})
    model = apply(tiny_gpt2(), config)
    with torch.no_grad():
        for group in adapter_groups(model):
            group.dU.normal_(std=0.1)
    save(model, tmp_path)
    restored = load(tiny_gpt2(), tmp_path)
    ids = torch.randint(0, 64, (2, 6), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(restored(ids).logits, model(ids).logits, rtol=0, atol=0)


def test_state_dict_of_another_base_or_other_indices_is_refused() -> None:
    config = TCURLoRAConfig(TARGETS, rank=2)
    model = _trained(config)
    same = apply(tiny_encoder(0), config)
    same.load_state_dict(model.state_dict())
    torch.testing.assert_close(_out(same), _out(model), rtol=0, atol=0)
    for other in (
        apply(tiny_encoder(1), config),  # other base weights
        apply(tiny_encoder(0), TCURLoRAConfig(TARGETS, rank=2, select="uniform", seed=4)),
        apply(tiny_encoder(0), TCURLoRAConfig(TARGETS, rank=2, alpha=2.0)),  # other scale
    ):
        before = _snapshot(other)
        with pytest.raises(ValueError, match=r"load_state_dict: entry 'tcur_groups\.0\."):
            other.load_state_dict(model.state_dict())
        _assert_unchanged(other, before)
    names = {k.rsplit(".", 1)[-1] for k in model.state_dict() if k.startswith("tcur_groups.0.")}
    assert names >= {"index_rows", "index_cols", "scale_bits", "config_sha256", "weights_sha256"}


def _distributed_worker(rank: int, store: str, directory: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=2)
    try:
        model = apply(tiny_encoder(0), TCURLoRAConfig(["query"], rank=2))
        with torch.no_grad():
            adapter_groups(model)[0].dU.fill_(float(rank + 1))  # rank 0: ones, rank 1: twos
        save(model, directory)
        # every rank returns only once rank 0's adapter is complete and loadable
        restored = load(tiny_encoder(0), directory)
        assert float(adapter_groups(restored)[0].dU.max()) == 1.0
        # a failure on rank 0 reaches every rank (no rank waits forever)
        kind, message = (
            (ValueError, "is an existing file") if rank == 0 else (RuntimeError, "rank 0 failed")
        )
        with pytest.raises(kind, match=message):
            save(model, f"{directory}/adapter_config.json")
        dist.barrier()
    finally:
        dist.destroy_process_group()


def test_under_torch_distributed_only_rank_0_writes(tmp_path: Path) -> None:
    directory = tmp_path / "adapter"
    context = mp.spawn(
        _distributed_worker,
        args=(str(tmp_path / "store"), str(directory)),
        nprocs=2,
        join=False,
    )
    deadline = time.monotonic() + 60.0
    while not context.join(timeout=1.0):
        if time.monotonic() > deadline:
            for process in context.processes:
                process.kill()
            pytest.fail("the two-process save did not finish within 60 s (a rank is waiting)")
    assert sorted(p.name for p in directory.iterdir()) == OWN_FILES


def test_a_deep_copy_saves_like_the_original(tmp_path: Path) -> None:
    model = _trained(TCURLoRAConfig(TARGETS, rank=2))
    twin = copy.deepcopy(model)
    save(twin, tmp_path)
    torch.testing.assert_close(_out(load(tiny_encoder(0), tmp_path)), _out(model), rtol=0, atol=0)
