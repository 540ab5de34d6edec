"""The tCURLoRA variants (:mod:`finetune.variants`), the head learning-rate option and the paired
statistics of the report, on tiny models (no pretrained weights)."""

from __future__ import annotations

import copy
import dataclasses
import itertools

import finetune.methods as fm
import finetune.protocol as fp
import finetune.records as fr
import finetune.report as rep
import finetune.variants as fv
import pytest
import torch
from scipy import stats
from torch import nn

LAYERS, WIDTH = 4, 12


class Block(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.query = nn.Linear(WIDTH, WIDTH)
        self.value = nn.Linear(WIDTH, WIDTH // 2)
        self.out = nn.Linear(WIDTH // 2, WIDTH)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.out(torch.tanh(self.value(torch.tanh(self.query(x)))))


class Tiny(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.layers = nn.ModuleList(Block() for _ in range(LAYERS))
        self.classifier = nn.Linear(WIDTH, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.layers:
            x = block(x)
        return self.classifier(x)


def _model() -> Tiny:
    torch.manual_seed(0)
    return Tiny()


def _batch() -> torch.Tensor:
    return torch.randn(16, WIDTH, generator=torch.Generator().manual_seed(1))


def _loss(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return model(x).logsumexp(-1).mean()


def _gradients(model: nn.Module, weights: list[nn.Parameter]) -> list[torch.Tensor]:
    return list(torch.autograd.grad(_loss(model, _batch()), weights))


class Context:
    @staticmethod
    def calibration() -> tuple[list[torch.Tensor], object]:
        return [_batch()], _loss


COMBOS = list(itertools.product(fv.BASES, fv.TRANSFORMS))


@pytest.mark.parametrize(("basis", "transform"), COMBOS)
def test_starts_as_the_base_model_and_trains(basis: str, transform: str) -> None:
    base = _model()
    x = torch.randn(5, WIDTH)
    expected = base(x)
    config = {"target_modules": ["query", "value"], "rank": 3, "basis": basis}
    model = fm.build_variant(copy.deepcopy(base), {**config, "transform": transform}, 0, Context)
    torch.testing.assert_close(model(x), expected, rtol=0, atol=1e-6)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {
        "variant_groups.0.dU",
        "variant_groups.1.dU",
        "classifier.weight",
        "classifier.bias",
    }
    model(x).sum().backward()
    for group in model.variant_groups:
        assert group.dU.grad is not None and group.dU.grad.abs().sum() > 0
        assert group.dU.shape == (3, 3, LAYERS)
    with torch.no_grad():
        for group in model.variant_groups:
            group.dU.add_(0.1)
    assert not torch.allclose(model(x), expected)


def test_fft_raw_basis_is_the_published_t_product() -> None:
    from tcur.linalg import tprod

    model = fm.build_variant(_model(), {"target_modules": ["query"], "rank": 3}, 0, None)
    group = model.variant_groups[0]
    W = torch.stack([b.query.base.weight.detach() for b in model.layers], dim=2).double()
    rows, cols = group.indices["rows"], group.indices["cols"]
    with torch.no_grad():
        group.dU.copy_(torch.randn(3, 3, LAYERS))
    group.invalidate()
    expected = group.scale * tprod(W[:, cols, :], group.dU.detach().double(), W[rows, :, :])
    torch.testing.assert_close(group.delta().double(), expected, rtol=1e-4, atol=1e-6)


def test_no_transform_keeps_layers_apart_and_dct_is_orthonormal() -> None:
    model = fm.build_variant(
        _model(), {"target_modules": ["query"], "rank": 3, "transform": "none"}, 0, None
    )
    group = model.variant_groups[0]
    with torch.no_grad():
        group.dU[:, :, 2] = 1.0
    group.invalidate()
    delta = group.delta()
    assert delta[:, :, 2].abs().sum() > 0
    assert delta[:, :, [0, 1, 3]].abs().sum() == 0
    t = fv.Transform("dct", 5)
    x = torch.randn(3, 4, 5, dtype=torch.float64)
    torch.testing.assert_close(t.inverse(t.forward(x)), x)
    assert float(torch.linalg.vector_norm(t.forward(x))) == pytest.approx(
        float(torch.linalg.vector_norm(x))
    )


def test_a_unit_core_moves_the_weights_alike_through_every_transform() -> None:
    """The normalized scale makes one core step as large through each transform (the DCT's was
    ``n3`` times too small when it shared the FFT's multiplier)."""
    sizes = {}
    for transform in fv.TRANSFORMS:
        model = fm.build_variant(
            _model(), {"target_modules": ["query"], "rank": 3, "transform": transform}, 0, None
        )
        group = model.variant_groups[0]
        norms = []
        for seed in range(20):
            step = torch.randn(3, 3, LAYERS, generator=torch.Generator().manual_seed(seed))
            with torch.no_grad():
                group.dU.copy_(step / torch.linalg.vector_norm(step))
            group.invalidate()
            norms.append(float(torch.linalg.vector_norm(group.delta().detach())))
        sizes[transform] = sum(norms) / len(norms)
    assert max(sizes.values()) < 2 * min(sizes.values()), sizes


@pytest.mark.parametrize("transform", fv.TRANSFORMS)
def test_orthonormal_bases_span_the_selected_columns(transform: str) -> None:
    cfg = {"target_modules": ["query"], "rank": 3, "transform": transform}
    raw = fm.build_variant(_model(), cfg, 0, None).variant_groups[0]
    ortho = fm.build_variant(_model(), {**cfg, "basis": "orthonormal"}, 0, None)
    group = ortho.variant_groups[0]
    assert group.indices == raw.indices
    for k in range(group.L_hat.shape[2]):
        q, c = group.L_hat[:, :, k], raw.L_hat[:, :, k]
        eye = torch.eye(3, dtype=q.dtype)
        torch.testing.assert_close(q.mH @ q, eye, rtol=0, atol=1e-5)
        torch.testing.assert_close(q @ (q.mH @ c), c, rtol=1e-4, atol=1e-5)


def test_gradient_bases_follow_the_gradient() -> None:
    base = _model()
    grads = _gradients(base, [b.query.weight for b in base.layers])
    energy = torch.stack(grads, dim=2).pow(2)
    cfg = {"target_modules": ["query"], "rank": 3, "basis": "gradient_columns"}
    group = fm.build_variant(copy.deepcopy(base), cfg, 0, Context).variant_groups[0]
    assert group.indices["cols"] == sorted(energy.sum((0, 2)).topk(3).indices.tolist())
    assert group.indices["rows"] == sorted(energy.sum((1, 2)).topk(3).indices.tolist())
    with pytest.raises(ValueError, match="gradient"):
        fm.build_variant(copy.deepcopy(base), cfg, 0, None)
    tsvd = {**cfg, "basis": "gradient_tsvd", "transform": "dct"}
    group = fm.build_variant(copy.deepcopy(base), tsvd, 0, Context).variant_groups[0]
    assert group.indices == {}
    G_hat = fv.Transform("dct", LAYERS).forward(torch.stack(grads, dim=2).double())
    top = torch.linalg.svd(G_hat[:, :, 0]).U[:, 0].float()
    assert abs(float(top @ group.L_hat[:, 0, 0])) == pytest.approx(1.0, abs=1e-4)


def test_adapter_state_saves_bases_only_when_they_are_not_columns() -> None:
    raw = fm.build_variant(_model(), {"target_modules": ["query"], "rank": 3}, 0, None)
    assert set(fv.adapter_state(raw)) == {"group0.dU", "group0.rows", "group0.cols"}
    cfg = {"target_modules": ["query"], "rank": 3, "basis": "gradient_tsvd"}
    tsvd = fm.build_variant(_model(), cfg, 0, Context)
    assert set(fv.adapter_state(tsvd)) == {"group0.dU", "group0.L_hat", "group0.B_hat"}


def test_config_names_bad_options() -> None:
    with pytest.raises(ValueError, match="basis"):
        fv.VariantConfig(["query"], basis="qr")
    with pytest.raises(ValueError, match="transform"):
        fv.VariantConfig(["query"], transform="wavelet")
    with pytest.raises(ValueError, match="matches no"):
        fm.build_variant(_model(), {"target_modules": ["nothing"]}, 0, None)


def test_head_lr_scale_keeps_outputs_and_scales_the_step() -> None:
    method = fm.Method("h", fm.build_full, {"head_lr_scale": 10.0})
    base = _model()
    x = torch.randn(4, WIDTH)
    model = fm.build_model(method, copy.deepcopy(base), 0)
    torch.testing.assert_close(model(x), base(x))
    original = model.classifier.parametrizations.weight.original
    with torch.no_grad():
        original.add_(1e-3)
    delta = model.classifier.weight - base.classifier.weight
    torch.testing.assert_close(delta, torch.full_like(delta, 1e-2))


def test_perplexity_grid_chooses_the_lowest_and_nan_loses() -> None:
    budget = fp.Budget(10, 10, 10, 1, 4, 8, (0, 1), metric="perplexity")
    method = fm.Method("m", fm.build_full, {}, (1e-3, 3e-3, 1e-2))
    values = {1e-3: 30.0, 3e-3: 20.0, 1e-2: float("nan")}
    records = {fr.unit_id("m", lr, 0): {"validation_perplexity": v} for lr, v in values.items()}
    assert fp.grid_state(method, records, budget).chosen == 3e-3
    padded = dataclasses.replace(budget, grid_size=4)
    assert fp.grid_state(method, records, padded).missing == (3e-4,)


def test_paired_difference_signs_and_verdicts() -> None:
    lower = {"seeds_done": [0, 1, 2], "perplexity": [19.0, 19.5, 19.2]}
    higher = {"seeds_done": [0, 1, 2, 3], "perplexity": [20.0, 20.1, 20.0, 9.0]}
    d = rep.paired_difference(lower, higher, "perplexity")
    assert d is not None and d["n"] == 3 and d["mean"] > 0 and d["verdict"] == "beats"
    back = rep.paired_difference(higher, lower, "perplexity")
    assert back is not None and back["verdict"] == "below"
    near = {"seeds_done": [0, 1, 2], "accuracy": [0.800, 0.805, 0.798]}
    ref = {"seeds_done": [0, 1, 2], "accuracy": [0.801, 0.803, 0.800]}
    same = rep.paired_difference(near, ref)
    assert same is not None and same["verdict"] == "matches"
    assert rep.paired_difference(near, {"seeds_done": [0], "accuracy": [0.8]}) is None
    two = {"seeds_done": [0, 1], "accuracy": [0.805, 0.815]}  # equal differences: zero width
    assert rep.paired_difference(two, {"seeds_done": [0, 1], "accuracy": [0.8, 0.81]}) is None
    wide = rep.paired_difference(ref, {"seeds_done": [0, 1, 2], "accuracy": [0.79, 0.82, 0.80]})
    assert wide is not None and wide["ci95"][0] < -1 < wide["ci95"][1]
    assert wide["verdict"] == "undecided"  # neither matching nor shown to be below
    data = {"a": ref, "b": {"seeds_done": [0, 1, 2], "accuracy": [0.79, 0.82, 0.80]}}
    undecided = rep.comparisons(data, [rep.Claim("a", "b", need="matches")])["a vs b"]
    needed = undecided["seeds_to_decide"]  # at this mean and spread, the interval clears -1
    assert needed is not None and needed > 3
    assert rep.seeds_to_decide(undecided["mean"], undecided["std"], -1.0) == needed
    half = [stats.t.ppf(0.975, k - 1) * undecided["std"] / k**0.5 for k in (needed - 1, needed)]
    assert half[1] < undecided["mean"] + 1 <= half[0]  # the smallest such count
    claims = [rep.Claim("a", "b", need="matches"), rep.Claim("a", "missing")]
    table = rep.comparisons({"a": near, "b": ref}, claims)
    assert list(table) == ["a vs b"] and table["a vs b"]["met"] is True
    beats = rep.comparisons({"a": near, "b": ref}, [rep.Claim("a", "b")])
    assert beats["a vs b"]["met"] is False  # matching is not beating
    with pytest.raises(ValueError, match="need='beat'"):
        rep.Claim("a", "b", need="beat")
    with pytest.raises(ValueError, match="margin"):
        rep.Claim("a", "b", margin=float("nan"))
    by_three = rep.Claim("a", "b", margin=3.0)
    assert not by_three.met({"verdict": "beats", "mean": 2.9})
    assert by_three.met({"verdict": "beats", "mean": 3.1})


def test_library_gradient_basis_spans_what_the_variant_does() -> None:
    from tcur.adapters import adapter_groups
    from tcur.linalg import tprod, ttranspose

    cfg = {"target_modules": ["query"], "rank": 3}
    variant = fm.build_variant(_model(), {**cfg, "basis": "gradient_tsvd"}, 0, Context)
    library = fm.build_tcurlora(_model(), {**cfg, "basis": "gradient"}, 0, Context)
    (group,) = adapter_groups(library)
    L = fv.Transform("fft", LAYERS).inverse(variant.variant_groups[0].L_hat.cdouble())
    C = group.C.double()
    torch.testing.assert_close(tprod(C, ttranspose(C)), tprod(L, ttranspose(L)), atol=1e-5, rtol=0)


def test_the_per_layer_variant_is_the_library_curlora_with_gradient_bases() -> None:
    from tcur.adapters import adapter_groups

    cfg = {"target_modules": ["query"], "rank": 3}
    variant = fm.build_variant(
        _model(), {**cfg, "basis": "gradient_tsvd", "transform": "none"}, 0, Context
    )
    library = fm.build_curlora(_model(), {**cfg, "basis": "gradient"}, 0, Context)
    L = variant.variant_groups[0].L_hat.double()  # no transform: the bases themselves
    groups = adapter_groups(library)
    assert len(groups) == LAYERS  # one adapter per layer
    for k, group in enumerate(groups):
        C = group.C.double()[:, :, 0]
        torch.testing.assert_close(C @ C.T, L[:, :, k] @ L[:, :, k].T, atol=1e-5, rtol=0)
