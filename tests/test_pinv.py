"""The one pseudo-inverse (``tcur.linalg.pinv``): rtol name and validation, one SVD, autograd;
and cur/tcur/decompose scanning each input once (``check_finite``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch

import tcur
import tcur._backend
from tcur.linalg import cur, tpinv
from tcur.linalg import tcur as tensor_cur
from tcur.linalg.pinv import pinv
from tcur.testing import low_rank_matrix, low_tubal_rank_tensor

A = low_rank_matrix(0, 9, 7, 3)
T = low_tubal_rank_tensor(0, 6, 5, 3, 2)

RTOL_USERS: list[tuple[str, Callable[[Any], Any]]] = [
    ("pinv", lambda r: pinv(A, r)),
    ("tpinv", lambda r: tpinv(T, r)),
    ("cur", lambda r: cur(A, 3, rtol=r, seed=0)),
    ("cur pinv middle", lambda r: cur(A, 3, rtol=r, middle="pinv", seed=0)),
    ("tcur", lambda r: tensor_cur(T, 2, rtol=r, seed=0)),
    ("decompose", lambda r: tcur.decompose(A, 3, rtol=r, seed=0)),
]


@pytest.mark.parametrize(("label", "call"), RTOL_USERS, ids=[u[0] for u in RTOL_USERS])
@pytest.mark.parametrize(
    ("bad", "error"),
    [
        (-1e-3, ValueError),
        (float("nan"), ValueError),
        (float("inf"), ValueError),
        ("1e-8", TypeError),
        (True, TypeError),
        ([1e-8], TypeError),
    ],
)
def test_rtol_is_validated_by_name(
    label: str, call: Callable[[Any], Any], bad: Any, error: type
) -> None:
    with pytest.raises(error, match="rtol"):
        call(bad)


@pytest.mark.parametrize(("label", "call"), RTOL_USERS, ids=[u[0] for u in RTOL_USERS])
def test_rtol_accepts_numpy_scalars_and_zero(label: str, call: Callable[[Any], Any]) -> None:
    call(np.float32(1e-6))
    call(0)


def test_rcond_is_no_longer_a_keyword() -> None:
    with pytest.raises(TypeError):
        tpinv(T, rcond=1e-8)  # type: ignore[call-arg]


def test_rtol_cutoff_is_relative_to_the_largest_singular_value_of_the_batch() -> None:
    W = np.stack([np.diag([1.0, 1e-3]), np.diag([1e-2, 1e-6])])
    X = pinv(W, 1e-4)
    np.testing.assert_allclose(X[0], np.diag([1.0, 1e3]))
    np.testing.assert_allclose(X[1], np.diag([1e2, 0.0]))  # 1e-6 <= 1e-4 * 1 dropped
    np.testing.assert_allclose(pinv(W, 0.0, rank=1)[0], np.diag([1.0, 0.0]))


def test_one_svd_per_pseudo_inverse(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[int, ...]] = []
    original = np.linalg.svd

    def counting(a: Any, *args: Any, **kwargs: Any) -> Any:
        calls.append(np.shape(a))
        return original(a, *args, **kwargs)

    monkeypatch.setattr(np.linalg, "svd", counting)
    pinv(A)
    assert len(calls) == 1
    calls.clear()
    tpinv(T, rank=1)
    assert len(calls) == 1
    calls.clear()
    W = A[:3, :3]
    pinv(W, 1e-3, rank=2)
    assert len(calls) == 1


@pytest.mark.parametrize("dtype", [torch.float64, torch.complex128])
@pytest.mark.parametrize("shape", [(5, 3), (3, 5), (2, 4, 4)])
def test_gradcheck(dtype: torch.dtype, shape: tuple[int, ...]) -> None:
    W = torch.randn(*shape, dtype=dtype, generator=torch.Generator().manual_seed(0))
    W.requires_grad_(True)
    assert torch.autograd.gradcheck(pinv, (W,))


def test_torch_matches_torch_pinv_and_repeated_singular_values_have_finite_gradients() -> None:
    W = torch.eye(4, dtype=torch.float64, requires_grad=True)  # all singular values equal
    X = pinv(W)
    X.sum().backward()
    assert W.grad is not None and bool(torch.isfinite(W.grad).all())
    V = torch.randn(6, 4, dtype=torch.float64)
    torch.testing.assert_close(pinv(V), torch.linalg.pinv(V))


# decompose scans its own argument x once (and names it), then hands the checked array on.
SCANNED: list[tuple[str, Callable[..., Any], list[str]]] = [
    ("cur", lambda **kw: cur(A, 3, seed=0, **kw), ["A"]),
    ("cur pinv", lambda **kw: cur(A, 3, middle="pinv", seed=0, **kw), ["A"]),
    ("cur tol", lambda **kw: cur(A, tol=0.1, seed=0, **kw), ["A"]),
    ("tcur", lambda **kw: tensor_cur(T, 2, seed=0, **kw), ["A"]),
    ("tcur tol", lambda **kw: tensor_cur(T, tol=0.1, seed=0, **kw), ["A"]),
    ("decompose 2-D", lambda **kw: tcur.decompose(A, 3, seed=0, **kw), ["x"]),
    ("decompose 3-D", lambda **kw: tcur.decompose(T, 2, seed=0, **kw), ["x"]),
    ("decompose tol", lambda **kw: tcur.decompose(T, tol=0.1, seed=0, **kw), ["x"]),
    ("decompose torch", lambda **kw: tcur.decompose(torch.as_tensor(A), 3, seed=0, **kw), ["x"]),
]


@pytest.mark.parametrize(("label", "call", "expected"), SCANNED, ids=[c[0] for c in SCANNED])
def test_cur_tcur_decompose_scan_each_input_once(
    scans: list[str], label: str, call: Callable[..., Any], expected: list[str]
) -> None:
    d = call()
    d.reconstruct()
    assert scans == expected


@pytest.mark.parametrize(("label", "call", "expected"), SCANNED, ids=[c[0] for c in SCANNED])
def test_check_finite_false_skips_the_scan(
    scans: list[str], label: str, call: Callable[..., Any], expected: list[str]
) -> None:
    call(check_finite=False)
    assert scans == []


@pytest.mark.parametrize("call", [cur, tensor_cur, tcur.decompose])
def test_nan_is_refused_by_name(call: Callable[..., Any]) -> None:
    X = (A if call is cur else T).copy()
    X.flat[3] = np.nan
    with pytest.raises(ValueError, match="must not contain NaN"):
        call(X, 2)
