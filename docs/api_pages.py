"""Write the API reference pages from the packages' ``__all__`` lists.

Called from ``conf.py`` on every build, so the reference always lists exactly the public names
that exist: each page covers one public package, with one section per implementing module (the
module's docstring, then an autosummary table whose entries get their own pages generated from
the numpydoc docstrings).
"""

from __future__ import annotations

import importlib
import inspect
from pathlib import Path
from types import ModuleType

PAGES = {
    "tcur": (
        "tcur",
        "The top-level package: one entry point that picks the decomposition from the input. "
        "``tcur.__version__`` holds the version string; ``import tcur`` never imports torch.",
    ),
    "tcur.linalg": (
        "tcur.linalg",
        "Pure math on NumPy arrays and torch tensors: every function returns the input's array "
        "kind on the input's device, keeps its float dtype, and lets torch autograd flow through "
        "everything that is differentiable (index selection is not).",
    ),
    "tcur.testing": (
        "tcur.testing",
        "Helpers for testing code that uses tcur: Hypothesis strategies for matrices and tensors "
        "of a known rank, and reconstruction assertions. Needs Hypothesis.",
    ),
    "tcur.adapters": (
        "tcur.adapters",
        "Parameter-efficient fine-tuning of PyTorch models with CUR (CURLoRA, per weight matrix) "
        "and tensor CUR (tCURLoRA, one shared tensor per group of layers). Needs torch.",
    ),
}

TITLES = {
    "tcur.decompose": "Decomposition entry point",
    "tcur.linalg.cur": "Matrix CUR",
    "tcur.linalg.selection": "Index selection",
    "tcur.linalg.tproduct": "t-product algebra",
    "tcur.linalg.tsvd": "t-SVD and tubal rank",
    "tcur.linalg.tensor_cur": "Tensor CUR (t-CUR)",
    "tcur.linalg.modewise": "Mode-wise CUR (Chidori and Fiber)",
    "tcur.linalg.tensor_ops": "Unfolding and n-mode products",
    "tcur.linalg.errors": "Error measures",
    "tcur.testing.strategies": "Hypothesis strategies",
    "tcur.testing.assertions": "Assertions",
}
"""Section titles for known modules, in display order; other modules follow, titled by name."""


def write(api_dir: Path) -> list[str]:
    """Write one ``<package>.rst`` per entry of :data:`PAGES`; return the page names."""
    api_dir.mkdir(parents=True, exist_ok=True)
    for package in PAGES:
        _write_if_changed(api_dir / f"{package}.rst", render(package))
    return list(PAGES)


def filename_map() -> dict[str, str]:
    """Generated-page names for objects whose names differ only in case (``cur`` and ``CUR``).

    Keeps the generated files distinct on case-insensitive file systems.
    """
    full = []
    for package in PAGES:
        try:
            full += [f"{package}.{n}" for n in public_names(importlib.import_module(package))]
        except ImportError:
            continue
    lowered = [n.lower() for n in full]
    return {n: f"{n}-class" for n in full if lowered.count(n.lower()) > 1 and not n.islower()}


def public_names(module: ModuleType) -> list[str]:
    """Names of ``module.__all__`` that the reference documents (not dunders, not modules)."""
    names = getattr(module, "__all__", [])
    return [
        n
        for n in names
        if not n.startswith("__") and not inspect.ismodule(getattr(module, n, None))
    ]


def render(package: str) -> str:
    """reST of the reference page of ``package``."""
    title, intro = PAGES[package]
    out = [f"{title}\n{'=' * len(title)}\n\n.. currentmodule:: {package}\n\n{intro}\n\n"]
    try:
        module = importlib.import_module(package)
    except ImportError as exc:
        return out[0] + f"This package could not be imported while building the docs: {exc}\n"
    groups = _group(module, public_names(module))
    if not groups:
        return out[0] + "No public names yet.\n"
    for source in _ordered(groups):
        out.append(_section(package, source, groups[source]))
    return "".join(out)


def _group(module: ModuleType, names: list[str]) -> dict[str, list[str]]:
    groups: dict[str, list[str]] = {}
    for name in names:
        obj = getattr(module, name, None)
        if obj is None:
            continue
        source = getattr(obj, "__module__", None) if callable(obj) else None
        if not isinstance(source, str) or not source.startswith(module.__name__):
            source = module.__name__
        groups.setdefault(source, []).append(name)
    return groups


def _ordered(groups: dict[str, list[str]]) -> list[str]:
    known = [m for m in TITLES if m in groups]
    return known + [m for m in groups if m not in TITLES]


def _section(package: str, source: str, names: list[str]) -> str:
    title = TITLES.get(source, source)
    lines = [title, "-" * len(title), ""]
    if source != package:
        lines += [f".. automodule:: {source}", "   :no-members:", "   :no-index:", ""]
        lines += [f".. currentmodule:: {package}", ""]  # automodule moved it to ``source``
    lines += [".. autosummary::", "   :toctree: generated", "   :nosignatures:", ""]
    lines += [f"   {name}" for name in names]
    return "\n".join(lines) + "\n\n"


def _write_if_changed(path: Path, text: str) -> None:
    if not path.exists() or path.read_text(encoding="utf-8") != text:
        path.write_text(text, encoding="utf-8")
