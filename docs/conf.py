"""Sphinx configuration for the tcur documentation.

``make docs`` builds it with warnings as errors. Nothing here executes notebooks, trains models
or touches the network. Two kinds of pages are written at build time, so they never go stale and
never break the build: the API reference pages (``api_pages``, from each package's ``__all__``)
and the body of the Results page (``results_page``, from whatever ``benchmarks/results/`` holds).
"""

from __future__ import annotations

import sys
from pathlib import Path

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

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "numpydoc",
]

exclude_patterns = ["_build", "_generated", "**.ipynb_checkpoints"]
templates_path = ["_templates"]
html_theme = "furo"
html_title = f"tcur {release}"
pygments_style = "sphinx"
pygments_dark_style = "monokai"

# API reference: one page per public name, generated from the numpydoc docstrings.
autosummary_generate = True
autosummary_imported_members = True
autosummary_filename_map = api_pages.filename_map()
autodoc_typehints = "none"  # numpydoc's Parameters sections already state the types
autodoc_member_order = "bysource"
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_attributes_as_param_list = False
numpydoc_validation_checks: set[str] = set()

# No network during the build.
intersphinx_mapping: dict[str, tuple[str, None]] = {}

api_pages.write(DOCS / "api")
results_page.write(DOCS.parent / "benchmarks" / "results", DOCS / "_generated" / "results.inc")
