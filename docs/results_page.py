"""Write the body of the docs Results page from ``benchmarks/results/`` (called from ``conf.py``).

The sections come from ``benchmarks/results_render.py``, the renderer ``benchmarks/README.md``
uses too: per benchmark the question, the headline table, the plots, machine and date, and a
download link to the raw JSON. Unreadable files are reported on the page instead of failing the
build.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


def _renderer() -> ModuleType:
    """``benchmarks/results_render.py``, imported from its file (``sys.path`` is left alone)."""
    loaded = sys.modules.get("results_render")
    if loaded is not None:
        return loaded
    spec = importlib.util.spec_from_file_location(
        "results_render", BENCHMARKS / "results_render.py"
    )
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import {BENCHMARKS / 'results_render.py'}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up here
    spec.loader.exec_module(module)
    return module


_render = _renderer()
sections, to_rst = _render.sections, _render.to_rst


def render(results_dir: Path, docs_dir: Path) -> str:
    """reST for every result in ``results_dir``; paths are written relative to ``docs_dir``."""
    found = sections(results_dir)
    if not found:
        return (
            "No benchmark results are present in ``benchmarks/results/`` yet. Run ``make bench`` "
            "and rebuild the documentation.\n"
        )
    return to_rst(found, docs_dir)


def write(results_dir: Path, target: Path) -> None:
    """Write the rendered page body to ``target`` (only when its text changes)."""
    text = render(results_dir, target.parent.parent)
    target.parent.mkdir(parents=True, exist_ok=True)
    if not target.exists() or target.read_text(encoding="utf-8") != text:
        target.write_text(text, encoding="utf-8")
