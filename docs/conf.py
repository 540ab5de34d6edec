"""Sphinx configuration for the tcur documentation.

``make docs`` builds it with warnings as errors. Nothing here executes notebooks, trains models
or touches the network. Two kinds of pages are written at build time, so they never go stale and
never break the build: the API reference pages (``api_pages``, from each package's ``__all__``)
and the body of the Results page (``results_page``, from whatever ``benchmarks/results/`` holds).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

DOCS = Path(__file__).resolve().parent
sys.path.insert(0, str(DOCS))
sys.path.insert(0, str(DOCS.parent))  # document the checkout, whatever is installed

import api_pages  # noqa: E402  (next to this file)
import results_page  # noqa: E402

import tcur  # noqa: E402

project = "tcur"
author = "tcur developers"
copyright = "2026, tcur developers"
release = tcur.__version__
version = release

extensions = ["sphinx.ext.autodoc", "sphinx.ext.mathjax", "numpydoc"]

exclude_patterns = ["_build", "_generated"]
html_theme = "furo"
html_title = f"tcur {release}"
pygments_style = "sphinx"
pygments_dark_style = "monokai"

autodoc_typehints = "none"  # numpydoc's Parameters sections already state the types
autodoc_member_order = "bysource"
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_validation_checks: set[str] = set()

# No network during the build.
intersphinx_mapping: dict[str, tuple[str, None]] = {}

api_pages.write(DOCS / "api")
results_page.write(DOCS.parent / "benchmarks" / "results", DOCS / "_generated" / "results.inc")

_PARAM_LINE = re.compile(r"^(\s*\*{0,2}[\w, .]+ : )(.*\|.*)$")


def _escape_pipes_in_types(
    app: Any, what: str, name: str, obj: Any, options: Any, lines: list[str]
) -> None:
    """Treat ``|`` in numpydoc ``name : type`` lines as text, e.g. ``(|I_1|, ..., |I_N|)``.

    numpydoc copies type descriptions into reST verbatim, where ``|x|`` would be read as a
    substitution reference.
    """
    for i, line in enumerate(lines):
        match = _PARAM_LINE.match(line)
        if match:
            lines[i] = match.group(1) + match.group(2).replace("|", "\\|")


def setup(app: Any) -> None:
    """Run the pipe escaping before numpydoc rewrites the docstrings."""
    app.connect("autodoc-process-docstring", _escape_pipes_in_types, priority=100)
