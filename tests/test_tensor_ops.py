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


@given(shape=st.lists(st.integers(1, 4), min_size=1, max_size=4).map(tuple), data=st.data())
def test_multi_mode_dot_with_vectors_matches_tensorly(
    shape: tuple[int, ...], data: st.DataObject
) -> None:
    # vectors remove their mode and the later modes shift down; modes may come in any order
    T = _tensor(shape)
    modes = data.draw(st.permutations(range(len(shape))))
    modes = modes[: data.draw(st.integers(1, len(shape)))]
    factors = []
    for k, mode in enumerate(modes):
        if data.draw(st.booleans()):
            factors.append(_tensor((shape[mode],), seed=k + 1))
        else:
            factors.append(_tensor((data.draw(st.integers(1, 3)), shape[mode]), seed=k + 1))
    expected = tl.tenalg.multi_mode_dot(T, factors, modes=list(modes))
    got = multi_mode_dot(T, factors, modes=modes)
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, atol=1e-12)
    got_t = multi_mode_dot(torch.as_tensor(T), [torch.as_tensor(f) for f in factors], modes)
    np.testing.assert_allclose(got_t.numpy(), expected, atol=1e-12)


def test_multi_mode_dot_vector_chain_examples() -> None:
    T = _tensor((2, 3, 4, 5))
    u, v = _tensor((2,), 1), _tensor((4,), 2)
    M = _tensor((6, 3), 3)
    # u removes mode 0, so M (mode 1 of T) acts on axis 0 of the intermediate result
    np.testing.assert_allclose(
        multi_mode_dot(T, [u, M], modes=[0, 1]),
        np.einsum("abcd,a,eb->ecd", T, u, M),
        atol=1e-12,
    )
    np.testing.assert_allclose(
        multi_mode_dot(T, [v, u, M], modes=[2, 0, -3]),
        np.einsum("abcd,c,a,eb->ed", T, v, u, M),
        atol=1e-12,
    )
    # repeated matrix modes apply in list order, as tensorly
    M2 = _tensor((2, 6), 4)
    np.testing.assert_allclose(
        multi_mode_dot(T, [M, M2], modes=[1, 1]),
        tl.tenalg.multi_mode_dot(T, [M, M2], modes=[1, 1]),
        atol=1e-12,
    )
    # every mode contracted: a 0-D result
    vecs = [_tensor((d,), k) for k, d in enumerate(T.shape)]
    assert multi_mode_dot(T, vecs).shape == ()


def test_multi_mode_dot_bad_chains() -> None:
    T = _tensor((2, 3, 4))
    with pytest.raises(ValueError, match=r"matrices\[0\] is a vector, which removes mode 1"):
        multi_mode_dot(T, [np.ones(3), np.ones((2, 3))], modes=[1, 1])
    with pytest.raises(ValueError, match=r"matrices\[1\] has shape \(2, 5\).*T.shape\[2\] = 4"):
        multi_mode_dot(T, [np.ones(2), np.ones((2, 5))], modes=[0, 2])
    with pytest.raises(ValueError, match=r"modes\[1\]=3 is out of range"):
        multi_mode_dot(T, [np.ones(2), np.ones(4)], modes=[0, 3])
    with pytest.raises(TypeError, match="matrices must be a sequence of arrays"):
        multi_mode_dot(T, np.ones((2, 2)))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"matrices\[0\] must be 1-D or 2-D"):
        multi_mode_dot(T, [np.ones((2, 2, 2))])
