"""unfold / fold / mode_dot / multi_mode_dot against tensorly's convention."""

from __future__ import annotations

import numpy as np
import pytest
import tensorly as tl
import torch
from hypothesis import given
from hypothesis import strategies as st

from tcur.linalg import fold, mode_dot, multi_mode_dot, unfold

shapes = st.lists(st.integers(1, 5), min_size=1, max_size=4).map(tuple)


def _tensor(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape)


@given(shape=shapes, data=st.data())
def test_unfold_matches_tensorly_and_fold_inverts_it(
    shape: tuple[int, ...], data: st.DataObject
) -> None:
    T = _tensor(shape)
    mode = data.draw(st.integers(0, len(shape) - 1))
    M = unfold(T, mode)
    np.testing.assert_array_equal(M, tl.unfold(T, mode))
    np.testing.assert_array_equal(fold(M, mode, shape), T)


@given(shape=shapes, data=st.data())
def test_mode_dot_matches_tensorly(shape: tuple[int, ...], data: st.DataObject) -> None:
    T = _tensor(shape)
    mode = data.draw(st.integers(0, len(shape) - 1))
    M = _tensor((data.draw(st.integers(1, 4)), shape[mode]), seed=1)
    np.testing.assert_allclose(mode_dot(T, M, mode), tl.tenalg.mode_dot(T, M, mode), atol=1e-12)
    v = M[0]
    np.testing.assert_allclose(mode_dot(T, v, mode), tl.tenalg.mode_dot(T, v, mode), atol=1e-12)


def test_multi_mode_dot_matches_tensorly_and_torch() -> None:
    core = _tensor((2, 3, 4))
    mats = [_tensor((5, 2), 1), _tensor((6, 3), 2), _tensor((7, 4), 3)]
    expected = tl.tenalg.multi_mode_dot(core, mats)
    np.testing.assert_allclose(multi_mode_dot(core, mats), expected, atol=1e-12)
    out_t = multi_mode_dot(torch.as_tensor(core), [torch.as_tensor(m) for m in mats])
    assert isinstance(out_t, torch.Tensor)
    np.testing.assert_allclose(out_t.numpy(), expected, atol=1e-12)
    np.testing.assert_allclose(
        multi_mode_dot(core, mats[1:], modes=[1, 2]),
        tl.tenalg.multi_mode_dot(core, mats[1:], modes=[1, 2]),
        atol=1e-12,
    )


def test_mode_dot_gradcheck() -> None:
    T = torch.randn(2, 3, 4, dtype=torch.float64, requires_grad=True)
    M = torch.randn(5, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b: mode_dot(a, b, 1), (T, M))


def test_bad_inputs_name_the_problem() -> None:
    T = _tensor((2, 3, 4))
    with pytest.raises(ValueError, match=r"M has shape \(5, 2\).*T.shape\[1\] = 3"):
        mode_dot(T, np.ones((5, 2)), 1)
    with pytest.raises(ValueError, match="mode=3 is out of range"):
        unfold(T, 3)
    with pytest.raises(ValueError, match="M has shape"):
        fold(np.ones((3, 7)), 1, (2, 3, 4))
    with pytest.raises(ValueError, match="one mode per matrix"):
        multi_mode_dot(T, [np.ones((2, 2))], modes=[0, 1])
    with pytest.raises(TypeError, match="mix array kinds"):
        mode_dot(T, torch.ones(5, 3), 1)
