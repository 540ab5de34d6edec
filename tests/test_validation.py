"""Bad input gets a clear error naming the argument and the value; import stays light."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

import tcur
from tcur.linalg import cur, relative_error

A = np.random.default_rng(0).standard_normal((6, 5))


@pytest.mark.parametrize(
    ("kwargs", "error", "pattern"),
    [
        ({"rank": 0}, ValueError, "rank must be >= 1, got 0"),
        ({"rank": 6}, ValueError, "rank=6 exceeds"),
        ({"rank": 2.0}, TypeError, r"rank must be an integer, got 2.0"),
        ({"rank": True}, TypeError, "rank must be an integer"),
        ({"rank": 2, "n_rows": 7}, ValueError, "n_rows=7 exceeds"),
        ({"rank": 2, "n_cols": 6}, ValueError, "n_cols=6 exceeds"),
        ({"rank": 3, "n_cols": 2}, ValueError, "must be >= rank=3"),
        (
            {"rank": 2, "select": "magic"},
            ValueError,
            "unknown select='magic'; valid names are .*deim",
        ),
        ({"rank": 2, "middle": "svd"}, ValueError, "unknown middle='svd'; valid names are .*pinv"),
        ({"rank": 2, "svd": "fast"}, ValueError, "unknown svd='fast'"),
        ({"rank": 2, "select": "uniform", "seed": "x"}, TypeError, "seed must be None"),
    ],
)
def test_bad_arguments(kwargs: dict, error: type[Exception], pattern: str) -> None:
    with pytest.raises(error, match=pattern):
        cur(A, **kwargs)


@pytest.mark.parametrize(
    ("x", "error", "pattern"),
    [
        (np.ones(4), ValueError, r"A must be 2-D, got 1-D array of shape \(4,\)"),
        (np.ones((2, 2, 2)), ValueError, "A must be 2-D, got 3-D"),
        (np.ones((0, 3)), ValueError, r"A must not be empty, got shape \(0, 3\)"),
        (np.array([[1.0, np.nan], [0.0, 1.0]]), ValueError, "A must not contain NaN or Inf"),
        (np.array([[1.0, np.inf], [0.0, 1.0]]), ValueError, "A must not contain NaN or Inf"),
        (torch.tensor([[1.0, float("nan")], [0.0, 1.0]]), ValueError, "NaN or Inf"),
        (np.array([["a", "b"], ["c", "d"]]), TypeError, "A must have a numeric dtype"),
        ("not an array", TypeError, "numeric dtype"),
    ],
)
def test_bad_arrays(x: object, error: type[Exception], pattern: str) -> None:
    with pytest.raises(error, match=pattern):
        cur(x, 1)


def test_mixed_kinds_are_refused() -> None:
    with pytest.raises(TypeError, match="mix array kinds"):
        relative_error(A, torch.as_tensor(A))


def test_decompose_rejects_unknown_method_and_bad_ndim() -> None:
    with pytest.raises(ValueError, match="unknown method='svd'"):
        tcur.decompose(A, 2, method="svd")
    with pytest.raises(ValueError, match="x must have at least 2 dimensions"):
        tcur.decompose(np.ones(3), 1)
    with pytest.raises(ValueError, match="x must be 2-D"):
        tcur.decompose(np.ones((2, 2, 2)), 1, method="matrix")


def test_decompose_matrix_defaults_and_passes_options() -> None:
    d = tcur.decompose(A, 3, select="leverage", middle="optimal", n_rows=4)
    expected = cur(A, 3, select="leverage", middle="optimal", n_rows=4)
    np.testing.assert_array_equal(d.rows, expected.rows)
    np.testing.assert_allclose(d.U, expected.U)
    for kwargs in ({}, {"rank": 2, "tol": 0.1}):
        with pytest.raises(ValueError, match="exactly one of rank and tol"):
            tcur.decompose(A, **kwargs)
    with pytest.raises(ValueError, match="exactly one of rank and tol"):
        tcur.decompose(np.ones((3, 3, 3)), method="chidori")


def test_relative_error_of_zero_reference_is_zero_or_inf() -> None:
    assert float(relative_error(np.zeros(3), np.array([3.0, 4.0, 0.0]))) == np.inf
    assert float(relative_error(np.zeros(3), np.zeros(3))) == 0.0
    with pytest.raises(ValueError, match="same shape"):
        relative_error(np.zeros(3), np.zeros(4))


def test_import_does_not_pull_torch() -> None:
    code = (
        "import sys, tcur; tcur.decompose([[1.0, 2.0], [2.0, 4.0]], 1); "
        "print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
