"""``basis="gradient"``: calibration gradients, the bases they give, save/load, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from adapter_models import tiny_encoder
from torch import nn

from tcur.adapters import (
    CURLoRAConfig,
    TCURLoRAConfig,
    adapter_groups,
    apply,
    load,
    loss_gradients,
    merge,
    save,
    unmerge,
)
from tcur.adapters.fingerprint import config_digest
from tcur.linalg import tprod, tsvd, ttranspose

TARGETS = ["query", "value", "up", "down"]


def _batches(count: int = 3, seed: int = 1) -> list[tuple[torch.Tensor, torch.Tensor]]:
    generator = torch.Generator().manual_seed(seed)
    return [
        (torch.randn(4, 5, 12, generator=generator), torch.randint(0, 2, (4,), generator=generator))
        for _ in range(count)
    ]


def _loss(model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    x, y = batch
    return nn.functional.cross_entropy(model(x), y)


def _adapted(config: CURLoRAConfig | TCURLoRAConfig, seed: int = 0) -> nn.Module:
    model = tiny_encoder(seed)
    return apply(model, config, gradients=loss_gradients(model, config, _batches(), _loss))


def _stacked_gradient(model: nn.Module, names: list[str]) -> torch.Tensor:
    """The loss gradient of ``names`` (module paths) summed by hand, stacked as slices."""
    weights = [model.get_submodule(n).weight for n in names]
    total = [torch.zeros_like(w, dtype=torch.float64) for w in weights]
    model.eval()
    for batch in _batches():
        for acc, g in zip(total, torch.autograd.grad(_loss(model, batch), weights), strict=True):
            acc += g
    return torch.stack(total, dim=2)


def test_loss_gradients_sum_the_batches_and_leave_the_model_as_it_was() -> None:
    model = tiny_encoder(0)
    model.train()
    model.layers[0].up.weight.requires_grad_(False)
    config = TCURLoRAConfig(["query", "up"], rank=2, basis="gradient")
    flags = {n: p.requires_grad for n, p in model.named_parameters()}
    grads = loss_gradients(model, config, _batches(), _loss)
    assert model.training
    assert {n: p.requires_grad for n, p in model.named_parameters()} == flags
    assert all(p.grad is None for p in model.parameters())
    names = [f"layers.{i}.{kind}" for kind in ("query", "up") for i in range(3)]
    assert sorted(grads) == sorted(names)
    for name in names:
        expected = _stacked_gradient(tiny_encoder(0), [name])[:, :, 0]
        torch.testing.assert_close(grads[name].double(), expected, rtol=1e-5, atol=1e-7)


def test_bases_are_the_leading_t_singular_vectors_of_the_gradient_stack() -> None:
    config = TCURLoRAConfig(["query"], rank=2, n_cols=3, basis="gradient")
    model = _adapted(config)
    (group,) = adapter_groups(model)
    G = _stacked_gradient(tiny_encoder(0), [f"layers.{i}.query" for i in range(3)])
    C, R = group.C.double(), group.R.double()
    assert C.shape == (12, 3, 3) and R.shape == (2, 12, 3)
    eye = torch.zeros(3, 3, 3, dtype=torch.float64)
    eye[:, :, 0] = torch.eye(3)
    torch.testing.assert_close(tprod(ttranspose(C), C), eye, atol=1e-5, rtol=0)
    for basis, k in ((C, 3), (ttranspose(R), 2)):  # projector error = truncated t-SVD's
        side = G if basis is C else ttranspose(G)
        projected = tprod(basis, tprod(ttranspose(basis), side))
        U, S, V = tsvd(side, k)
        best = tprod(U, S, ttranspose(V))
        error = torch.linalg.vector_norm(side - projected)
        floor = torch.linalg.vector_norm(side - best)
        assert error <= floor * (1 + 1e-4) + 1e-6 * torch.linalg.vector_norm(side)


def test_matrix_bases_are_the_leading_singular_vectors() -> None:
    config = CURLoRAConfig(["layers.1.query"], rank=2, basis="gradient")
    model = _adapted(config)
    (group,) = adapter_groups(model)
    G = _stacked_gradient(tiny_encoder(0), ["layers.1.query"])[:, :, 0]
    U, _, Vh = torch.linalg.svd(G)
    # same spans: the projections onto the leading pairs are the identity on the bases
    C, R = group.C[:, :, 0].double(), group.R[:, :, 0].double()
    torch.testing.assert_close(U[:, :2] @ (U[:, :2].T @ C), C, atol=1e-5, rtol=0)
    torch.testing.assert_close((R @ Vh[:2].T) @ Vh[:2], R, atol=1e-5, rtol=0)


def test_starts_as_the_base_model_trains_merges_and_round_trips(tmp_path: Path) -> None:
    config = TCURLoRAConfig(TARGETS, rank=2, basis="gradient", modules_to_save=["classifier"])
    x = torch.randn(2, 5, 12)
    before = tiny_encoder(0)(x)
    model = _adapted(config)
    torch.testing.assert_close(model(x), before, rtol=0, atol=0)
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    for batch in _batches(4, seed=7):
        optimizer.zero_grad()
        _loss(model, batch).backward()
        optimizer.step()
    trained = model(x).detach()
    assert not torch.allclose(trained, before)
    save(model, tmp_path)
    meta = json.loads((tmp_path / "adapter_config.json").read_text())
    assert meta["format_version"] == 3 and meta["config"]["basis"] == "gradient"
    assert all(g["rows"] == [] and g["cols"] == [] for g in meta["groups"])
    loaded = load(tiny_encoder(0), tmp_path)
    torch.testing.assert_close(loaded(x), trained, rtol=0, atol=0)
    merge(loaded)
    torch.testing.assert_close(loaded(x), trained, rtol=1e-5, atol=1e-6)
    unmerge(loaded)
    with pytest.raises(ValueError, match="differs from the base model"):
        load(tiny_encoder(1), tmp_path)


def test_split_fused_parts_take_their_own_rows_of_the_gradient() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 12), nn.Tanh(), nn.Linear(12, 1))
    config = TCURLoRAConfig(["0"], rank=2, basis="gradient", split_fused={"0": 3}, group_by="shape")
    batches = [torch.randn(8, 6) for _ in range(2)]
    grads = loss_gradients(model, config, batches, lambda m, x: m(x).pow(2).mean())
    model = apply(model, config, gradients=grads)
    (group,) = adapter_groups(model)
    G = torch.stack(grads["0"].double().split(4, dim=0), dim=2)  # parts as slices
    projected = tprod(group.C.double(), tprod(ttranspose(group.C.double()), G))
    U, S, V = tsvd(G, 2)
    floor = torch.linalg.vector_norm(G - tprod(U, S, ttranspose(V)))
    assert torch.linalg.vector_norm(G - projected) <= floor * (1 + 1e-4) + 1e-7


def test_state_dicts_carry_their_bases_and_share_the_scale() -> None:
    config = TCURLoRAConfig(TARGETS, rank=2, basis="gradient")
    first = _adapted(config)
    model = tiny_encoder(0)
    other = apply(  # another calibration: other bases, the same scale
        model, config, gradients=loss_gradients(model, config, _batches(seed=5), _loss)
    )
    generator = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for group in adapter_groups(first):
            group.dU.copy_(torch.randn(group.dU.shape, generator=generator))
    x = torch.randn(2, 5, 12)
    assert [g.scale for g in adapter_groups(first)] == [g.scale for g in adapter_groups(other)]
    state = first.state_dict()
    only_cores = {k: v for k, v in state.items() if k.endswith(".dU")}
    with pytest.raises(ValueError, match=r"has no 'tcur_groups\.0\.C'"):
        other.load_state_dict(only_cores, strict=False)
    other.load_state_dict(state)
    torch.testing.assert_close(other(x), first(x), rtol=0, atol=0)


def test_columns_basis_digest_is_that_of_adapters_saved_before_the_field() -> None:
    data = TCURLoRAConfig(TARGETS, rank=2).to_dict()
    older = {k: v for k, v in data.items() if k != "basis"}
    assert config_digest(data) == config_digest(older)
    assert config_digest({**data, "basis": "gradient"}) != config_digest(older)


def test_version_2_files_still_load(tmp_path: Path) -> None:
    config = TCURLoRAConfig(TARGETS, rank=2)
    model = apply(tiny_encoder(0), config)
    save(model, tmp_path)
    for name in ("adapter_config.json", "adapter_manifest.json"):
        path = tmp_path / name
        data = json.loads(path.read_text())
        data["format_version"] = 2
        data.get("config", {}).pop("basis", None)
        path.write_text(json.dumps(data))
    manifest = json.loads((tmp_path / "adapter_manifest.json").read_text())
    from tcur.adapters.fingerprint import file_digest

    manifest["files"]["adapter_config.json"]["sha256"] = file_digest(
        (tmp_path / "adapter_config.json").read_bytes()
    )
    (tmp_path / "adapter_manifest.json").write_text(json.dumps(manifest))
    x = torch.randn(2, 5, 12)
    torch.testing.assert_close(load(tiny_encoder(0), tmp_path)(x), model(x), rtol=0, atol=0)


def _edit_saved(directory: Path, edit_config, edit_tensors=None, manifest_version=None) -> None:
    from safetensors.torch import load_file, save_file

    from tcur.adapters.fingerprint import file_digest

    meta = json.loads((directory / "adapter_config.json").read_text())
    edit_config(meta)
    (directory / "adapter_config.json").write_text(json.dumps(meta))
    if edit_tensors is not None:
        tensors = load_file(directory / "adapter.safetensors")
        edit_tensors(tensors)
        save_file(tensors, directory / "adapter.safetensors")
    manifest = json.loads((directory / "adapter_manifest.json").read_text())
    for name in ("adapter_config.json", "adapter.safetensors"):
        manifest["files"][name]["sha256"] = file_digest((directory / name).read_bytes())
    if manifest_version is not None:
        manifest["format_version"] = manifest_version
    (directory / "adapter_manifest.json").write_text(json.dumps(manifest))


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            dict(edit_config=lambda m: m.update(format_version=2), manifest_version=2),
            "format_version 2 has no basis='gradient'",
        ),
        (dict(edit_config=lambda m: None, manifest_version=2), "differs from the manifest's 2"),
        (
            dict(
                edit_config=lambda m: None,
                edit_tensors=lambda t: t.update({"groups.1.R": torch.zeros_like(t["groups.1.R"])}),
            ),
            r"tensor 'groups\.1\.R' is zero",
        ),
    ],
)
def test_inconsistent_gradient_adapter_files_are_refused(tmp_path: Path, edit, message) -> None:
    save(_adapted(TCURLoRAConfig(TARGETS, rank=2, basis="gradient")), tmp_path)
    _edit_saved(tmp_path, **edit)
    with pytest.raises(ValueError, match=message):
        load(tiny_encoder(0), tmp_path)


def test_saved_bases_are_checked_on_load(tmp_path: Path) -> None:
    save(_adapted(TCURLoRAConfig(TARGETS, rank=2, basis="gradient")), tmp_path)
    from safetensors.torch import load_file, save_file

    from tcur.adapters.fingerprint import file_digest

    tensors = load_file(tmp_path / "adapter.safetensors")
    tensors["groups.0.C"] = tensors["groups.0.C"][:, :1].contiguous()
    save_file(tensors, tmp_path / "adapter.safetensors")
    manifest = json.loads((tmp_path / "adapter_manifest.json").read_text())
    manifest["files"]["adapter.safetensors"]["sha256"] = file_digest(
        (tmp_path / "adapter.safetensors").read_bytes()
    )
    (tmp_path / "adapter_manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match=r"tensor 'groups\.0\.C' has shape"):
        load(tiny_encoder(0), tmp_path)


def _gradients(config: TCURLoRAConfig) -> dict[str, torch.Tensor]:
    return loss_gradients(tiny_encoder(0), config, _batches(), _loss)


@pytest.mark.parametrize(
    ("edit", "error", "message"),
    [
        (lambda g: None, ValueError, "basis='gradient' needs gradients="),
        (lambda g: [1, 2], TypeError, "gradients must be a mapping"),
        (
            lambda g: {k: v for k, v in g.items() if k != "layers.2.query"},
            ValueError,
            "no entry for target weight 'layers.2.query'",
        ),
        (
            lambda g: {**g, "layers.0.query": g["layers.0.query"][:3]},
            ValueError,
            r"gradients\['layers.0.query'\] has shape \(3, 12\)",
        ),
        (
            lambda g: {**g, "layers.0.query": g["layers.0.query"] * float("nan")},
            ValueError,
            "NaN or infinite",
        ),
        (
            lambda g: {**g, "layers.0.query": g["layers.0.query"].long()},
            TypeError,
            "must be a floating tensor",
        ),
        (
            lambda g: {k: torch.zeros_like(v) for k, v in g.items()},
            ValueError,
            "gradient of its weights is zero",
        ),
        (
            lambda g: {k: torch.empty_like(v, device="meta") for k, v in g.items()},
            ValueError,
            "on the meta device",
        ),
    ],
)
def test_bad_gradients_are_refused_before_the_model_changes(edit, error, message) -> None:
    config = TCURLoRAConfig(["query"], rank=2, basis="gradient")
    model = tiny_encoder(0)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    kinds = [type(m) for m in model.modules()]
    with pytest.raises(error, match=message):
        apply(model, config, gradients=edit(_gradients(config)))
    assert [type(m) for m in model.modules()] == kinds
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())
    assert not hasattr(model, "tcur_groups")


def test_gradients_with_the_columns_basis_are_refused() -> None:
    config = TCURLoRAConfig(["query"], rank=2, basis="gradient")
    with pytest.raises(ValueError, match="does not use them"):
        apply(tiny_encoder(0), TCURLoRAConfig(["query"], rank=2), gradients=_gradients(config))


def test_bad_calibration_input_is_named() -> None:
    config = TCURLoRAConfig(["query"], rank=2, basis="gradient")
    model = tiny_encoder(0)
    with pytest.raises(ValueError, match="batches is empty"):
        loss_gradients(model, config, [], _loss)
    with pytest.raises(ValueError, match=r"floating scalar tensor, got a torch\.float32 tensor of"):
        loss_gradients(model, config, _batches(1), lambda m, b: m(b[0]))
    with pytest.raises(ValueError, match=r"floating scalar tensor, got 1\.0 \(float\)"):
        loss_gradients(model, config, _batches(1), lambda m, b: 1.0)
    with pytest.raises(ValueError, match=r"floating scalar tensor, got a torch\.int64 tensor"):
        loss_gradients(model, config, _batches(1), lambda m, b: torch.tensor(3))
    with pytest.raises(TypeError, match="loss must be a callable"):
        loss_gradients(model, config, _batches(1), "cross_entropy")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="does not depend on the target weights"):
        loss_gradients(model, config, _batches(1), lambda m, b: _loss(m, b).detach())
    assert all(p.requires_grad for p in model.parameters())
    adapted = _adapted(config)
    with pytest.raises(ValueError, match="needs the base model"):
        loss_gradients(adapted, config, _batches(1), _loss)


def test_calibration_keeps_module_modes_runs_under_no_grad_and_sums_half_in_float32() -> None:
    config = TCURLoRAConfig(["query"], rank=2, basis="gradient")
    model = tiny_encoder(0)
    model.train()
    model.layers[0].eval()
    modes = [m.training for m in model.modules()]
    with torch.no_grad():
        grads = loss_gradients(model, config, _batches(), _loss)
    assert [m.training for m in model.modules()] == modes
    expected = _stacked_gradient(tiny_encoder(0), ["layers.0.query"])[:, :, 0]
    torch.testing.assert_close(grads["layers.0.query"].double(), expected, rtol=1e-5, atol=1e-7)
    half = loss_gradients(
        tiny_encoder(0, dtype=torch.bfloat16),
        config,
        [(x.bfloat16(), y) for x, y in _batches()],
        lambda m, b: _loss(m, b).float(),
    )
    assert all(g.dtype == torch.float32 for g in half.values())


def test_an_interrupted_calibration_gives_the_model_back_as_it_was() -> None:
    model = tiny_encoder(0)
    model.train()

    def interrupted(m: nn.Module, batch: object) -> torch.Tensor:
        raise KeyboardInterrupt

    config = TCURLoRAConfig(["query"], rank=2, basis="gradient")
    with pytest.raises(KeyboardInterrupt):
        loss_gradients(model, config, _batches(1), interrupted)
    assert model.training and all(p.requires_grad for p in model.parameters())


def test_counts_beyond_the_singular_vectors_and_unknown_bases_are_refused() -> None:
    with pytest.raises(ValueError, match="n_rows=13 is too large"):
        config = TCURLoRAConfig(["up"], rank=2, n_rows=13, basis="gradient")
        apply(tiny_encoder(0), config, gradients=_gradients(config))
    with pytest.raises(ValueError, match="unknown basis='svd'"):
        TCURLoRAConfig(["up"], rank=2, basis="svd")


def test_wrapper_refuses_the_gradient_basis_with_its_own_message() -> None:
    from tcur.adapters import TCURLoRAModel

    with pytest.raises(ValueError, match="TCURLoRAModel does not take basis='gradient'"):
        TCURLoRAModel(tiny_encoder(0), 2, 2, 2, ["query"], basis="gradient")


def test_conv1d_gradients_are_transposed_and_split_like_the_weights(tmp_path: Path) -> None:
    from adapter_models import tiny_gpt2

    config = TCURLoRAConfig(
        ["c_attn"], rank=2, basis="gradient", split_fused={"c_attn": 3}, group_by="shape"
    )
    ids = torch.randint(0, 64, (2, 8), generator=torch.Generator().manual_seed(0))
    grads = loss_gradients(tiny_gpt2(), config, [ids], lambda m, b: m(input_ids=b, labels=b).loss)
    model = apply(tiny_gpt2(), config, gradients=grads)
    (group,) = adapter_groups(model)
    parts = [  # Conv1D stores (in, out): each part is a block of the transposed gradient's rows
        grads[f"transformer.h.{layer}.attn.c_attn"].double().T.split(32, dim=0)[part]
        for layer in range(2)
        for part in range(3)
    ]
    G = torch.stack(parts, dim=2)
    C = group.C.double()
    U, S, V = tsvd(G, 2)
    floor = torch.linalg.vector_norm(G - tprod(U, S, ttranspose(V)))
    error = torch.linalg.vector_norm(G - tprod(C, tprod(ttranspose(C), G)))
    assert error <= floor * (1 + 1e-4) + 1e-6 * torch.linalg.vector_norm(G)
    save(model, tmp_path)
    logits = model(input_ids=ids).logits
    torch.testing.assert_close(load(tiny_gpt2(), tmp_path)(input_ids=ids).logits, logits)
