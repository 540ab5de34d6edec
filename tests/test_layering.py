"""The package's layering: imports go downward only, so no module imports tcur inside a function
(a function-local import is how an import cycle hides)."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import tcur

PACKAGE = Path(tcur.__file__).parent


def function_local_tcur_imports(source: str, name: str) -> list[str]:
    """``name:line module`` for each import of tcur inside a function of ``source``."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        for inner in ast.walk(node):
            modules = []
            if isinstance(inner, ast.ImportFrom):
                modules = [inner.module or ""]
            elif isinstance(inner, ast.Import):
                modules = [alias.name for alias in inner.names]
            found += [f"{name}:{inner.lineno} {m}" for m in modules if m.split(".")[0] == "tcur"]
    return found


def test_no_function_local_imports_of_tcur() -> None:
    found = [
        hit
        for path in sorted(PACKAGE.rglob("*.py"))
        for hit in function_local_tcur_imports(path.read_text(encoding="utf-8"), path.name)
    ]
    assert found == []


def test_the_detector_finds_a_hidden_import() -> None:
    source = "import numpy\n\ndef f():\n    import numpy\n    from tcur.linalg import cur\n"
    assert function_local_tcur_imports(source, "probe.py") == ["probe.py:5 tcur.linalg"]


def test_no_module_is_shadowed_by_a_function_of_its_name() -> None:
    # ``import tcur.linalg.cur as m`` once gave the function ``cur``, not its module.
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        if parts[-1] in ("__init__", "__main__") or parts[1] in ("adapters", "testing"):
            continue  # torch / Hypothesis packages: imported by their own tests
        module = importlib.import_module(".".join(parts))
        parent = importlib.import_module(".".join(parts[:-1]))
        assert getattr(parent, parts[-1]) is module, ".".join(parts)
