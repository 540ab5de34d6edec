"""``benchmarks/run_all.py`` (discovery, --quick pass-through, failures) and the README renderer."""

from __future__ import annotations

import ast
import json
import re
import sys
from pathlib import Path
from types import ModuleType

import pytest

BENCH_DIR = Path(__file__).resolve().parent.parent / "benchmarks"


@pytest.fixture(scope="module")
def run_all() -> ModuleType:
    import run_all as module  # benchmarks/ is on pytest's pythonpath (pyproject.toml)

    return module


@pytest.fixture(scope="module")
def readme() -> ModuleType:
    import _readme as module

    return module


SCRIPT = """
import json, sys
from pathlib import Path

def main(argv=None):
    out = Path(__file__).parent / "results"
    out.mkdir(exist_ok=True)
    payload = {{"machine": {{"date": "2026-01-01 00:00 UTC", "cpu_count": 2}},
               "argv": list(argv), "rows": [{{"method": "{name}", "error": 0.125}}]}}
    (out / "{name}.json").write_text(json.dumps(payload))
    {extra}
"""


def _script(directory: Path, name: str, extra: str = "") -> Path:
    path = directory / f"{name}.py"
    path.write_text(SCRIPT.format(name=name, extra=extra))
    return path


def _results(directory: Path, name: str) -> dict[str, object]:
    return json.loads((directory / "results" / f"{name}.json").read_text())  # type: ignore[no-any-return]


def test_discover_finds_only_benchmark_scripts(run_all: ModuleType, tmp_path: Path) -> None:
    for name in ("bench_b", "finetune_a", "bench_a", "_common", "helper", "bench_notes"):
        _script(tmp_path, name)
    (tmp_path / "bench_notes.py").rename(tmp_path / "bench_notes.txt")
    (tmp_path / "bench_dir.py").mkdir()
    found = [p.name for p in run_all.discover(tmp_path)]
    assert found == ["bench_a.py", "bench_b.py", "finetune_a.py"]


def test_project_scripts_define_main_taking_argv(run_all: ModuleType) -> None:
    scripts = run_all.discover(BENCH_DIR)
    assert scripts, "no benchmark scripts found in benchmarks/"
    for path in scripts:
        tree = ast.parse(path.read_text())
        mains = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "main"]
        assert mains, f"{path.name} has no top-level main()"
        assert mains[0].args.args, f"{path.name}: main must take argv"
        text = path.read_text()
        assert "--quick" in text or "base_parser(" in text, f"{path.name} has no --quick flag"


@pytest.mark.parametrize(("argv", "expected"), [([], []), (["--quick"], ["--quick"])])
def test_runs_every_script_and_passes_quick(
    run_all: ModuleType, tmp_path: Path, argv: list[str], expected: list[str]
) -> None:
    _script(tmp_path, "bench_x")
    _script(tmp_path, "finetune_y")
    assert run_all.main(argv, directory=tmp_path) == 0
    for name in ("bench_x", "finetune_y"):
        assert _results(tmp_path, name)["argv"] == expected
        assert run_all.module_name(tmp_path / f"{name}.py") not in sys.modules
    record = _results(tmp_path, "run_all")
    assert [s["script"] for s in record["scripts"]] == ["bench_x.py", "finetune_y.py"]  # type: ignore[index, union-attr]
    assert {s["status"] for s in record["scripts"]} == {"ok"}  # type: ignore[index, union-attr]
    assert record["quick"] is bool(expected)
    text = (tmp_path / "README.md").read_text()
    assert "## bench_x" in text and "## finetune_y" in text and "## run_all" in text
    assert re.search(
        r"\| finetune_y.py \| ok in \d+ s \| n/a \| runs without error \| yes \|", text
    )


def test_a_failing_script_is_reported_and_the_rest_still_run(
    run_all: ModuleType, tmp_path: Path
) -> None:
    _script(tmp_path, "bench_a", extra="raise RuntimeError('broken on purpose')")
    _script(tmp_path, "bench_b", extra="raise SystemExit(3)")
    _script(tmp_path, "bench_c")
    assert run_all.main([], directory=tmp_path) == 1
    scripts = {s["script"]: s for s in _results(tmp_path, "run_all")["scripts"]}  # type: ignore[union-attr]
    assert scripts["bench_a.py"]["status"] == "failed"
    assert "broken on purpose" in scripts["bench_a.py"]["error"]
    assert "status 3" in scripts["bench_b.py"]["error"]
    assert scripts["bench_c.py"]["status"] == "ok"
    assert (tmp_path / "results" / "bench_c.json").exists()


def test_script_without_main_fails_clearly(run_all: ModuleType, tmp_path: Path) -> None:
    (tmp_path / "bench_nomain.py").write_text("X = 1\n")
    outcome = run_all.run_script(tmp_path / "bench_nomain.py", quick=False)
    assert outcome.status == "failed" and "no main(argv)" in outcome.error


def test_only_and_readme_only(run_all: ModuleType, tmp_path: Path) -> None:
    _script(tmp_path, "bench_one")
    _script(tmp_path, "bench_two")
    assert run_all.main(["--only", "two"], directory=tmp_path) == 0
    assert not (tmp_path / "results" / "bench_one.json").exists()
    assert (tmp_path / "results" / "bench_two.json").exists()
    (tmp_path / "README.md").unlink()
    assert run_all.main(["--readme-only"], directory=tmp_path) == 0
    assert (tmp_path / "README.md").exists()
    assert not (tmp_path / "results" / "bench_one.json").exists()
    with pytest.raises(SystemExit, match="matches no benchmark script"):
        run_all.main(["--only", "nothing"], directory=tmp_path)


def _headline_payload() -> dict:
    return {
        "machine": {"date": "2026-11-29 05:00 UTC", "platform": "Linux-x", "cpu_count": 2},
        "headline": {
            "question": "Is A faster than B?",
            "rows": [
                {
                    "method": "A vs B",
                    "figure": "2 ms vs 6 ms",
                    "ratio": "3.0x faster",
                    "target": ">= 2x",
                    "met": True,
                },
                {"method": "A|C", "figure": "0.5", "ratio": None, "target": None, "met": None},
            ],
            "answer": "A is faster.",
        },
        "runs": [{"method": "lora", "accuracy": [0.7, 0.72]}],
    }


def test_readme_shows_question_headline_plot_and_machine(
    readme: ModuleType, tmp_path: Path
) -> None:
    results = tmp_path / "results"
    results.mkdir()
    (results / "finetune_demo.json").write_text(json.dumps(_headline_payload()))
    (results / "finetune_demo_accuracy.png").write_bytes(b"\x89PNG")
    (results / "orphan.png").write_bytes(b"\x89PNG")
    (results / "broken.json").write_text("{not json")
    text = readme.render(results, tmp_path)
    assert "**Question.** Is A faster than B?" in text
    assert "| method | measured | ratio to the alternative | target | met? |" in text
    assert "| A vs B | 2 ms vs 6 ms | 3.0x faster | >= 2x | yes |" in text
    assert "| A\\|C | 0.5 | n/a | n/a | n/a |" in text
    assert "A is faster." in text
    assert "machine: Linux-x, 2 CPU cores; date: 2026-11-29 05:00 UTC" in text
    assert "Raw data: [finetune_demo.json](results/finetune_demo.json)" in text
    assert "![finetune_demo_accuracy](results/finetune_demo_accuracy.png)" in text
    assert "lora" not in text and "0.72" not in text  # raw records are linked, not dumped
    assert "## orphan" in text and "broken.json could not be read" in text


def test_readme_without_headline_falls_back_to_title_and_scalars(
    readme: ModuleType, tmp_path: Path
) -> None:
    payload = {"benchmark": "t-product timings", "n": 12345, "runs": [{"x": 1}], "ok": True}
    (tmp_path / "bench_x.json").write_text(json.dumps(payload))
    text = readme.render(tmp_path, tmp_path)
    assert "**Question.** t-product timings" in text
    assert "| n | 12,345 |" in text and "| ok | True |" in text and "| x |" not in text
    assert "machine and date not recorded in this file" in text


def test_readme_plots_go_to_the_longest_matching_result(readme: ModuleType, tmp_path: Path) -> None:
    for stem, date in (("bench_t", "2026-01-01"), ("bench_t_quick", "2026-02-02")):
        (tmp_path / f"{stem}.json").write_text(json.dumps({"machine": {"date": date}}))
        (tmp_path / f"{stem}.png").write_bytes(b"\x89PNG")
    text = readme.render(tmp_path, tmp_path)
    quick = text.index("## bench_t_quick")
    assert text.index("![bench_t_quick]") > quick > text.index("![bench_t]")
    assert text.count("![bench_t_quick]") == 1


def test_results_page_renders_the_same_sections(tmp_path: Path) -> None:
    import results_render

    (tmp_path / "bench_a.json").write_text(json.dumps(_headline_payload()))
    (tmp_path / "bench_a.png").write_bytes(b"\x89PNG")
    rst = results_render.to_rst(results_render.sections(tmp_path), tmp_path)
    assert "bench\\_a\n--------\n" in rst and "**Question.** Is A faster than B?" in rst
    assert (
        "   * - A vs B\n     - 2 ms vs 6 ms\n     - 3.0x faster\n     - \\>= 2x\n     - yes" in rst
    )
    assert ".. figure:: bench_a.png" in rst and ":download:`bench_a.json <bench_a.json>`" in rst


def test_readme_without_results(readme: ModuleType, tmp_path: Path) -> None:
    assert "No results yet" in readme.render(tmp_path / "missing", tmp_path)
