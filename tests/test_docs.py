"""The documentation: its examples run, its code matches the API, its generated pages are complete.

The Sphinx build itself runs in ``make docs``; these tests cover what the build cannot see: that
the examples in the pages give the printed results, that the (not executed) fine-tuning code only
imports names that exist, and that the page generators list every public name and survive
missing or malformed benchmark results.
"""

from __future__ import annotations

import ast
import doctest
import importlib
import json
import re
import sys
from pathlib import Path

import api_pages  # docs/ is on pytest's pythonpath (pyproject.toml)
import pytest
import results_page

DOCS = Path(__file__).resolve().parents[1] / "docs"

DOCTESTED = ["getting_started.rst", "tutorials/decompositions.rst"]
CODE_ONLY = [
    "tutorials/finetuning.rst",
    "tutorials/peft_comparison.rst",
    "tutorials/training_peft_trainer_fsdp.rst",
]


@pytest.mark.parametrize("page", DOCTESTED)
def test_page_examples_run(page: str) -> None:
    if page == "tutorials/decompositions.rst":
        pytest.importorskip("sklearn")  # its data: load_digits, sample images (examples extra)
        pytest.importorskip("PIL")
    flags = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
    result = doctest.testfile(str(DOCS / page), module_relative=False, optionflags=flags)
    assert result.attempted > 0
    assert result.failed == 0


def _python_blocks(page: str) -> list[str]:
    text = (DOCS / page).read_text(encoding="utf-8")
    blocks = re.findall(r"\.\. code-block:: python\n\n((?:(?:   .*)?\n)+)", text)
    return ["\n".join(line[3:] for line in block.splitlines()) for block in blocks]


@pytest.mark.parametrize("page", CODE_ONLY)
def test_page_code_imports_existing_names(page: str) -> None:
    blocks = _python_blocks(page)
    assert blocks, f"no python code blocks found in {page}"
    checked = 0
    for block in blocks:
        tree = ast.parse(block)  # every block is valid Python
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("tcur"):
                module = importlib.import_module(node.module or "")
                for alias in node.names:
                    assert hasattr(module, alias.name), f"{page}: {node.module}.{alias.name}"
                    checked += 1
    assert checked > 0


@pytest.mark.parametrize("package", list(api_pages.PAGES))
def test_api_page_lists_every_public_name(package: str) -> None:
    module = importlib.import_module(package)
    page = api_pages.render(package)
    names = [n for n in getattr(module, "__all__", []) if not n.startswith("__")]
    names = [n for n in names if not isinstance(getattr(module, n), type(sys))]
    for name in names or api_pages.public_names(module):
        assert f":py:obj:`{name}`" in page, f"{package}.{name} is missing from the API reference"


def test_api_stubs_cover_all_pages(tmp_path: Path) -> None:
    (tmp_path / "generated").mkdir()
    (tmp_path / "generated" / "tcur.linalg.gone.rst").write_text("stale\n")
    api_pages.write(tmp_path)
    stubs = {p.stem for p in (tmp_path / "generated").glob("*.rst")}
    assert "tcur.linalg.gone" not in stubs
    assert {"tcur.linalg.cur", "tcur.linalg.CUR-class", "tcur.decompose"} <= stubs
    linalg = (tmp_path / "tcur.linalg.rst").read_text()
    for stub in (s for s in stubs if s.startswith("tcur.linalg.")):
        assert f"generated/{stub}" in linalg


def test_results_page_without_results(tmp_path: Path) -> None:
    text = results_page.render(tmp_path / "missing", tmp_path)
    assert "make bench" in text


def test_results_page_renders_headline_machine_and_plots(tmp_path: Path) -> None:
    results = tmp_path / "benchmarks" / "results"
    results.mkdir(parents=True)
    payload = {
        "machine": {"date": "2026-01-01 00:00 UTC", "cpu_count": 2},
        "headline": {
            "question": "Is tcur faster?",
            "rows": [
                {
                    "method": "tcur vs lora",
                    "figure": "0.81",
                    "ratio": "2x",
                    "target": None,
                    "met": True,
                }
            ],
        },
        "runs": [{"method": "lora", "accuracy": [0.81, 0.8]}],
    }
    (results / "bench_a.json").write_text(json.dumps(payload))
    (results / "bench_a_plot.png").write_bytes(b"")
    (results / "broken.json").write_text("{not json")
    (results / "orphan.png").write_bytes(b"")
    (results / "bench_a_quick.json").write_text(json.dumps({"date": "2026-01-02", "n": 3}))
    (results / "bench_a_quick.png").write_bytes(b"")
    text = results_page.render(results, tmp_path / "docs")
    quick = text.index("bench\\_a\\_quick (quick run")
    assert text.index("bench\\_a\n") < quick < text.index("bench_a_quick.png")
    assert text.index("bench_a_plot.png") < quick and "date: 2026-01-02" in text
    assert "2026-01-01 00:00 UTC" in text and "2 CPU cores" in text
    assert "**Question.** Is tcur faster?" in text and "   * - tcur vs lora" in text
    assert "0.8, " not in text  # the records are linked, not dumped
    assert ".. figure:: ../benchmarks/results/bench_a_plot.png" in text
    assert "broken.json could not be read" in text and "orphan.png" in text


def test_results_page_escapes_markup(tmp_path: Path) -> None:
    (tmp_path / "r.json").write_text(json.dumps({"note": "*a* `b` |c| d_ <e>", "n": None}))
    text = results_page.render(tmp_path, tmp_path)
    assert "\\*a\\* \\`b\\` \\|c\\| d\\_ \\<e>" in text
    assert "n/a" in text
