"""Write the API reference pages from the packages' ``__all__`` lists.

Called from ``conf.py`` on every build, so the reference always lists exactly the public names
that exist. Each public package gets one page with one section per implementing module (the
module's docstring, then a table of its names with their summary lines); each name gets its own
page under ``api/generated/`` rendered by autodoc from its numpydoc docstring. Stale pages of
names that no longer exist are removed, so they never leave orphan documents behind.
"""

from __future__ import annotations

import importlib
import inspect
from pathlib import Path
from types import ModuleType
from typing import Any

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
        "everything that is differentiable (index selection is not). Arrays of any other "
        "array-API library (e.g. ``array_api_strict``) are computed on through their own "
        "namespace and come back in their kind. Matrix CUR also takes ``scipy.sparse`` matrices "
        "(C and R stay sparse, never densified) and Dask arrays (C and R lazy): 5 passes over "
        "``A`` for the default rule, 8 for the basis rules, 3 for the norm rules; see "
        ":doc:`../theory` (Array kinds and passes over the data).",
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
    "tcur.adapters.peft": (
        "tcur.adapters.peft",
        "tCURLoRA and CURLoRA as PEFT methods: importing this module registers them, so that "
        "``peft.get_peft_model`` takes their configs and returns an ordinary ``PeftModel``. "
        "Needs PEFT >= 0.21; ``import tcur.adapters`` never imports it.",
    ),
    "tcur.adapters.training": (
        "tcur.adapters.training",
        "Plain PyTorch training and evaluation loops used by the examples, benchmarks and "
        "tutorials: they optimise whatever parameters require gradients, so the same loop trains "
        "a full model, a classifier head, a tcur adapter or a PEFT adapter.",
    ),
}

TITLES = {
    "tcur.decomposition": "Decomposition entry point",
    "tcur.linalg.matrix_cur": "Matrix CUR",
    "tcur.linalg.results": "Result types (CUR, TCUR)",
    "tcur.linalg.selection": "Index selection",
    "tcur.linalg.tproduct": "t-product algebra",
    "tcur.linalg.tubal_svd": "t-SVD and tubal rank",
    "tcur.linalg.tensor_cur": "Tensor CUR (t-CUR)",
    "tcur.linalg.modewise": "Mode-wise CUR (Chidori and Fiber)",
    "tcur.linalg.tensor_ops": "Unfolding and n-mode products",
    "tcur.linalg.errors": "Error measures",
    "tcur.linalg.sparse": "Sparse input",
    "tcur.testing.strategies": "Hypothesis strategies for matrices",
    "tcur.testing.tensors": "Hypothesis strategies for tensors",
    "tcur.testing.assertions": "Assertions",
    "tcur.adapters.config": "Configuration",
    "tcur.adapters.model": "Applying, merging and unloading adapters",
    "tcur.adapters.io": "Saving and loading",
    "tcur.adapters.wrapper": "The TCURLoRAModel wrapper",
    "tcur.adapters.layers": "Adapter modules",
}
"""Section titles for known modules, in display order; other modules follow, titled by name."""

GENERATED = "generated"


def write(api_dir: Path) -> None:
    """Write ``<package>.rst`` for each of :data:`PAGES` and one page per public name."""
    out_dir = api_dir / GENERATED
    out_dir.mkdir(parents=True, exist_ok=True)
    pages = {f"{package}.rst": render(package) for package in PAGES}
    stubs = {f"{page}.rst": text for page, text in _stubs().items()}
    for name, text in pages.items():
        _write_if_changed(api_dir / name, text)
    for name, text in stubs.items():
        _write_if_changed(out_dir / name, text)
    for stale in out_dir.glob("*.rst"):
        if stale.name not in stubs:
            stale.unlink()


def public_names(module: ModuleType) -> list[str]:
    """Names the reference documents: ``__all__`` without dunders and submodules.

    A module without ``__all__`` contributes the functions and classes it defines whose names do
    not start with an underscore.
    """
    if not hasattr(module, "__all__"):
        return [
            n
            for n, obj in vars(module).items()
            if not n.startswith("_")
            and (inspect.isfunction(obj) or inspect.isclass(obj))
            and obj.__module__ == module.__name__
        ]
    return [
        n
        for n in module.__all__
        if not n.startswith("__") and not inspect.ismodule(getattr(module, n, None))
    ]


def documented() -> dict[str, list[str]]:
    """Public names per package, as documented; a package that fails to import has none."""
    out = {}
    for package in PAGES:
        module = _import(package)
        out[package] = [] if module is None else public_names(module)
    return out


def render(package: str) -> str:
    """reST of the reference page of ``package``."""
    title, intro = PAGES[package]
    head = f"{title}\n{'=' * len(title)}\n\n.. currentmodule:: {package}\n\n{intro}\n\n"
    module = _import(package)
    if module is None:
        return head + "This package could not be imported while the documentation was built.\n"
    groups = _group(module, public_names(module))
    if not groups:
        return head + "No public names yet.\n"
    sections = [_section(package, source, groups[source]) for source in _ordered(groups)]
    return head + "".join(sections)


def _import(package: str) -> ModuleType | None:
    try:
        return importlib.import_module(package)
    except ImportError:
        return None


def _group(module: ModuleType, names: list[str]) -> dict[str, list[str]]:
    groups: dict[str, list[str]] = {}
    for name in names:
        obj = getattr(module, name, None)
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
    lines = [] if source == package else [title, "-" * len(title), ""]
    if source != package:
        lines += [f".. automodule:: {source}", "   :no-members:", "   :no-index:", ""]
        lines += [f".. currentmodule:: {package}", ""]  # automodule moved it to ``source``
    lines += [".. list-table::", "   :widths: 25 75", ""]
    module = importlib.import_module(package)
    for name in names:
        lines += [f"   * - :py:obj:`{name}`", f"     - {_summary(getattr(module, name))}"]
    lines += ["", ".. toctree::", "   :hidden:", ""]
    lines += [f"   {GENERATED}/{_page_name(package, name)}" for name in names]
    return "\n".join(lines) + "\n\n"


def _summary(obj: Any) -> str:
    """The docstring's summary: its first paragraph, on one line (complete reST, never cut)."""
    doc = inspect.getdoc(obj) or ""
    paragraph = doc.strip().split("\n\n", 1)[0]
    return " ".join(paragraph.split()) or "(no docstring)"


def _stubs() -> dict[str, str]:
    out = {}
    for package, names in documented().items():
        module = importlib.import_module(package)
        for name in names:
            out[_page_name(package, name)] = _stub(package, name, getattr(module, name))
    return out


def _stub(package: str, name: str, obj: Any) -> str:
    full = f"{package}.{name}"
    if inspect.isclass(obj):
        directive = f".. autoclass:: {name}\n   :members:"
    elif callable(obj):
        directive = f".. autofunction:: {name}"
    else:
        directive = f".. autodata:: {name}"
    return f"{full}\n{'=' * len(full)}\n\n.. currentmodule:: {package}\n\n{directive}\n"


def _page_name(package: str, name: str) -> str:
    """Page name; classes get a suffix so ``cur`` and ``CUR`` differ on any file system."""
    obj = getattr(importlib.import_module(package), name, None)
    return f"{package}.{name}" + ("-class" if inspect.isclass(obj) else "")


def _write_if_changed(path: Path, text: str) -> None:
    if not path.exists() or path.read_text(encoding="utf-8") != text:
        path.write_text(text, encoding="utf-8")
