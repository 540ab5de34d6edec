"""``check_finite=`` and validation cost (issue 9, section 5), and module boundaries.

The NaN/Inf scan is a device synchronisation on a GPU, so every public function scans each of
its input arrays exactly once, internal calls never scan again, and ``check_finite=False`` skips
the scans altogether. The scans are counted by wrapping :func:`tcur._backend.check_finite`.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import tcur
import tcur._backend
from tcur.linalg import (
    chidori_cur,
    deim,
    fiber_cur,
    leverage_scores,
    mode_dot,
    multi_mode_dot,
    qdeim,
    relative_error,
    tinv,
    tpinv,
    tprod,
    tsvd,
    tubal_rank,
)
from tcur.testing import low_multilinear_rank_tensor, low_rank_matrix, low_tubal_rank_tensor
from tcur.testing.strategies import orthonormal

T3 = low_tubal_rank_tensor(0, 5, 4, 3, 2)
SQ = np.random.default_rng(0).standard_normal((4, 4, 3))
TM = low_multilinear_rank_tensor(0, (5, 6, 4), (2, 2, 2))
A = low_rank_matrix(0, 8, 6, 3)
V = orthonormal(np.random.default_rng(0), 7, 3)


CASES: list[tuple[str, Callable[..., Any], list[str]]] = [
    (
        "tprod",
        lambda **kw: tprod(T3, np.ones((4, 2, 3)), np.ones((2, 3, 3)), **kw),
        ["operand 0", "operand 1", "operand 2"],
    ),
    ("tinv", lambda **kw: tinv(SQ, **kw), ["A"]),
    ("tpinv", lambda **kw: tpinv(T3, **kw), ["A"]),
    ("tpinv rank", lambda **kw: tpinv(T3, rank=1, **kw), ["A"]),
    ("tsvd", lambda **kw: tsvd(T3, **kw), ["A"]),
    ("tsvd rank", lambda **kw: tsvd(T3, 1, **kw), ["A"]),
    ("tubal_rank", lambda **kw: tubal_rank(T3, **kw), ["A"]),
    ("chidori_cur", lambda **kw: chidori_cur(TM, 2, **kw), ["T"]),
    ("fiber_cur", lambda **kw: fiber_cur(TM, 2, **kw), ["T"]),
    ("fiber_cur uniform", lambda **kw: fiber_cur(TM, 2, select="uniform", seed=0, **kw), ["T"]),
    ("leverage_scores", lambda **kw: leverage_scores(A, 2, axis=1, **kw), ["A"]),
    ("deim", lambda **kw: deim(V, **kw), ["V"]),
    ("qdeim", lambda **kw: qdeim(V, **kw), ["V"]),
    ("mode_dot", lambda **kw: mode_dot(TM, np.ones((2, 6)), 1, **kw), ["T", "M"]),
    (
        "multi_mode_dot",
        lambda **kw: multi_mode_dot(TM, [np.ones((2, 5)), np.ones(6), np.ones((3, 4))], **kw),
        ["T", "matrices[0]", "matrices[1]", "matrices[2]"],
    ),
    ("relative_error", lambda **kw: relative_error(A, A + 1.0, **kw), ["x"]),
]


@pytest.mark.parametrize(("label", "call", "expected"), CASES, ids=[c[0] for c in CASES])
def test_each_input_is_scanned_once(
    scans: list[str], label: str, call: Callable[..., Any], expected: list[str]
) -> None:
    call()
    assert scans == expected


@pytest.mark.parametrize(("label", "call", "expected"), CASES, ids=[c[0] for c in CASES])
def test_check_finite_false_skips_every_scan(
    scans: list[str], label: str, call: Callable[..., Any], expected: list[str]
) -> None:
    call(check_finite=False)
    assert scans == []


def test_results_reconstruct_without_scanning(scans: list[str]) -> None:
    d = chidori_cur(TM, 2, check_finite=False)
    d.reconstruct()
    assert scans == []


def test_torch_inputs_are_scanned_once(scans: list[str]) -> None:
    t = torch.as_tensor(T3, dtype=torch.float32)
    tsvd(t)
    fiber_cur(torch.as_tensor(TM), 2)
    assert scans == ["A", "T"]


@pytest.mark.parametrize(
    ("name", "call"),
    [
        ("operand 1", lambda x: tprod(T3, x[:4, :2])),
        ("A", lambda x: tinv(x[:4, :4])),
        ("A", lambda x: tpinv(x)),
        ("A", lambda x: tsvd(x)),
        ("A", lambda x: tubal_rank(x)),
        ("T", lambda x: chidori_cur(x, 1)),
        ("T", lambda x: fiber_cur(x, 1)),
        ("A", lambda x: leverage_scores(x[:, :, 0], 1, axis=0)),
        ("V", lambda x: deim(x[:, :2, 0])),
        ("V", lambda x: qdeim(x[:, :2, 0])),
        ("M", lambda x: mode_dot(T3, x[:2, :4, 0], 1)),
        (r"matrices\[0\]", lambda x: multi_mode_dot(T3, [x[:2, :5, 0]])),
        ("x", lambda x: relative_error(x, x)),
    ],
)
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nan_and_inf_are_refused_by_name(name: str, call: Callable[[Any], Any], bad: float) -> None:
    x = low_tubal_rank_tensor(1, 5, 5, 3, 2)
    x[1, 1, 0] = bad
    with pytest.raises(ValueError, match=rf"^{name} must not contain NaN or Inf$"):
        call(x)
    with pytest.raises(ValueError, match=rf"^{name} must not contain NaN or Inf$"):
        call(torch.as_tensor(x))


def test_unchecked_nan_propagates_instead_of_raising() -> None:
    x = T3.copy()
    x[0, 0, 0] = np.nan
    assert np.isnan(tprod(x, np.ones((4, 2, 3)), check_finite=False)).any()
    assert np.isnan(mode_dot(x, np.ones((2, 4)), 1, check_finite=False)).any()


# --- module boundaries ---------------------------------------------------------------------

PACKAGE = Path(tcur.__file__).parent


def _modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_private_name_is_imported_across_modules(path: Path) -> None:
    tree = ast.parse(path.read_text())
    private = [
        f"from {node.module} import {alias.name} (line {node.lineno})"
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("tcur")
        for alias in node.names
        if re.match(r"_[^_]", alias.name)
    ]
    assert private == []


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_module_constants_are_defined_before_use(path: Path) -> None:
    tree = ast.parse(path.read_text())
    defined: dict[str, int] = {}
    for node in tree.body:
        targets = node.targets if isinstance(node, ast.Assign) else []
        if isinstance(node, ast.AnnAssign):
            targets = [node.target]
        for target in targets:
            if isinstance(target, ast.Name) and target.id.isupper():
                defined.setdefault(target.id, node.lineno)
    late = sorted(
        f"{node.id} used on line {node.lineno}, defined on line {defined[node.id]}"
        for node in ast.walk(tree)
        if isinstance(node, ast.Name)
        and isinstance(node.ctx, ast.Load)
        and node.id in defined
        and node.lineno < defined[node.id]
    )
    assert late == []
