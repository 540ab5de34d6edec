"""Write the body of the docs Results page from ``benchmarks/results/`` (called from ``conf.py``).

The sections come from ``benchmarks/results_render.py``, the renderer ``benchmarks/README.md``
uses too: per benchmark the question, the headline table, the plots, machine and date, and a
download link to the raw JSON. Unreadable files are reported on the page instead of failing the
build.
"""

from __future__ import annotations

import sys
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"
if str(BENCHMARKS) not in sys.path:
    sys.path.insert(0, str(BENCHMARKS))

from results_render import sections, to_rst  # noqa: E402


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
