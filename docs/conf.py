"""Sphinx configuration for the tcur documentation.

``make docs`` builds it with warnings as errors. Nothing here executes notebooks, trains models
or touches the network. Two kinds of pages are written at build time, so they never go stale and
never break the build: the API reference pages (``api_pages``, from each package's ``__all__``)
and the body of the Results page (``results_page``, from whatever ``benchmarks/results/`` holds).
"""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import tcur  # the checkout under ``make docs`` (PYTHONPATH=.), else the installed one

DOCS = Path(__file__).resolve().parent


def _sibling(name: str) -> ModuleType:
    """The module ``<name>.py`` next to this file, imported from its file (no ``sys.path``)."""
    spec = importlib.util.spec_from_file_location(name, DOCS / f"{name}.py")
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import {DOCS / name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


api_pages = _sibling("api_pages")
results_page = _sibling("results_page")

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
