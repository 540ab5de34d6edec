"""Properties of the t-product algebra: tprod, ttranspose, teye, tinv, tpinv."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from tcur.linalg import teye, tinv, tpinv, tprod, ttranspose
from tcur.linalg.tproduct import SHORT_TUBE_MAX
from tcur.testing import low_tubal_rank_tensor, tubal_tensors

EPS = np.finfo(np.float64).eps
seeds = st.integers(0, 2**32 - 1)
sides = st.integers(1, 6)
tubes = st.integers(1, 7)


def gaussian(seed: int, *shape: int, complex_: bool = False) -> np.ndarray:
    rng = np.random.default_rng(seed)
    out = rng.standard_normal(shape)
    return out + 1j * rng.standard_normal(shape) if complex_ else out


def bcirc(A: np.ndarray) -> np.ndarray:
    """Block-circulant matrix of A: block (i, j) is the frontal slice (i - j) mod n3."""
    n1, n2, n3 = A.shape
    out = np.zeros((n1 * n3, n2 * n3), dtype=A.dtype)
    for i in range(n3):
        for j in range(n3):
            out[i * n1 : (i + 1) * n1, j * n2 : (j + 1) * n2] = A[:, :, (i - j) % n3]
    return out


def unfold_tubes(B: np.ndarray) -> np.ndarray:
    """Frontal slices of B stacked vertically."""
    return np.concatenate([B[:, :, k] for k in range(B.shape[2])], axis=0)


def fold_tubes(M: np.ndarray, n1: int, n3: int) -> np.ndarray:
    return np.stack([M[k * n1 : (k + 1) * n1] for k in range(n3)], axis=2)


def close(x: np.ndarray, y: np.ndarray, scale: float = 1.0) -> None:
    x, y = np.asarray(x), np.asarray(y)
    tol = 100 * EPS * max(x.size, 1) * max(scale, np.abs(y).max(initial=1.0))
    np.testing.assert_allclose(x, y, rtol=0, atol=tol)


@given(seeds, sides, sides, sides, tubes, st.booleans())
def test_tprod_equals_block_circulant_definition(
    seed: int, n1: int, n2: int, n4: int, n3: int, complex_: bool
) -> None:
    A = gaussian(seed, n1, n2, n3, complex_=complex_)
    B = gaussian(seed + 1, n2, n4, n3)
    expected = fold_tubes(bcirc(A) @ unfold_tubes(B), n1, n3)
    got = tprod(A, B)
    assert got.shape == (n1, n4, n3)
    assert np.iscomplexobj(got) == complex_
    close(got, expected, scale=n2 * n3)


@pytest.mark.parametrize("n3", [1, 2, 5, 6, SHORT_TUBE_MAX, SHORT_TUBE_MAX + 1, 40])
def test_tprod_time_domain_sum(n3: int) -> None:
    # Covers both code paths: real DFT as a matrix product (short tubes) and the real FFT.
    A, B = gaussian(0, 3, 4, n3), gaussian(1, 4, 2, n3)
    expected = np.zeros((3, 2, n3))
    for a in range(n3):
        for b in range(n3):
            expected[:, :, (a + b) % n3] += A[:, :, a] @ B[:, :, b]
    close(tprod(A, B), expected, scale=4 * n3)


@given(seeds, sides, sides, sides, sides, tubes)
def test_associativity(seed: int, n1: int, n2: int, n4: int, n5: int, n3: int) -> None:
    A, B, C = (
        gaussian(seed, n1, n2, n3),
        gaussian(seed + 1, n2, n4, n3),
        gaussian(seed + 2, n4, n5, n3),
    )
    left = tprod(tprod(A, B), C)
    close(tprod(A, tprod(B, C)), left, scale=n2 * n4 * n3)
    close(tprod(A, B, C), left, scale=n2 * n4 * n3)


@given(seeds, sides, sides, tubes, st.booleans())
def test_identity(seed: int, n1: int, n2: int, n3: int, complex_: bool) -> None:
    A = gaussian(seed, n1, n2, n3, complex_=complex_)
    close(tprod(teye(n1, n3, like=A), A), A)
    close(tprod(A, teye(n2, n3, like=A)), A)


@given(seeds, sides, sides, sides, tubes, st.booleans())
def test_transpose_rule(seed: int, n1: int, n2: int, n4: int, n3: int, complex_: bool) -> None:
    A = gaussian(seed, n1, n2, n3, complex_=complex_)
    B = gaussian(seed + 1, n2, n4, n3, complex_=complex_)
    close(ttranspose(tprod(A, B)), tprod(ttranspose(B), ttranspose(A)), scale=n2 * n3)
    close(ttranspose(ttranspose(A)), A)


@given(seeds, st.integers(1, 6), tubes, st.floats(1.0, 100.0))
def test_tinv_is_two_sided_inverse(seed: int, n: int, n3: int, cond: float) -> None:
    A = low_tubal_rank_tensor(seed, n, n, n3, n, cond)
    X = tinv(A)
    eye = teye(n, n3)
    close(tprod(A, X), eye, scale=cond * n3)
    close(tprod(X, A), eye, scale=cond * n3)


def penrose_residuals(A: np.ndarray, X: np.ndarray) -> list[float]:
    def norm(x: np.ndarray) -> float:
        return float(np.linalg.norm(x))

    AX, XA = tprod(A, X), tprod(X, A)
    return [
        norm(tprod(AX, A) - A) / norm(A),
        norm(tprod(XA, X) - X) / norm(X),
        norm(ttranspose(AX) - AX) / max(norm(AX), 1.0),
        norm(ttranspose(XA) - XA) / max(norm(XA), 1.0),
    ]


@given(tubal_tensors(max_side=6, max_tubes=6))
def test_tpinv_penrose_conditions(pair: tuple[np.ndarray, int]) -> None:
    A, _ = pair
    X = tpinv(A)
    assert X.shape == (A.shape[1], A.shape[0], A.shape[2])
    tol = 1e4 * EPS * max(A.shape) * A.shape[2] * 100.0  # cond <= 100
    assert max(penrose_residuals(A, X)) < tol


@given(seeds, sides, sides, tubes)
def test_tpinv_penrose_conditions_complex(seed: int, n1: int, n2: int, n3: int) -> None:
    A = gaussian(seed, n1, n2, n3, complex_=True)
    assert max(penrose_residuals(A, tpinv(A))) < 1e-9


def test_tpinv_equals_tinv_when_invertible() -> None:
    A = low_tubal_rank_tensor(3, 4, 4, 5, 4, 10.0)
    close(tpinv(A), tinv(A), scale=10.0)


def test_tpinv_drops_roundoff_slices() -> None:
    # A tubal-rank-1 tensor plus round-off: the cutoff is global, so noise is not inverted.
    A = low_tubal_rank_tensor(0, 5, 4, 4, 1) + 1e-18 * gaussian(1, 5, 4, 4)
    X = tpinv(A)
    assert np.linalg.norm(X) < 10.0
    assert tpinv(np.zeros((3, 2, 4))).shape == (2, 3, 4)
    assert not tpinv(np.zeros((3, 2, 4))).any()


def test_float32_and_torch_match_numpy() -> None:
    A = low_tubal_rank_tensor(0, 4, 4, 5, 4, 5.0)
    B = gaussian(1, 4, 3, 5)
    At, Bt = torch.as_tensor(A), torch.as_tensor(B)
    for f, args, targs in (
        (tprod, (A, B), (At, Bt)),
        (tinv, (A,), (At,)),
        (tpinv, (B,), (Bt,)),
        (ttranspose, (B,), (Bt,)),
    ):
        got = f(*targs)
        assert isinstance(got, torch.Tensor) and got.dtype == torch.float64
        close(got.numpy(), f(*args), scale=10.0)
    assert tprod(A.astype(np.float32), B.astype(np.float32)).dtype == np.float32
    assert tpinv(At.float()).dtype == torch.float32
    assert teye(2, 3, like=At.float()).dtype == torch.float32


def test_gradcheck_tprod_tinv_tpinv() -> None:
    rng = np.random.default_rng(0)
    A = torch.tensor(low_tubal_rank_tensor(0, 2, 2, 3, 2, 3.0), requires_grad=True)
    B = torch.tensor(rng.standard_normal((2, 3, 3)), requires_grad=True)
    C = torch.tensor(rng.standard_normal((3, 2, 2)), requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b: tprod(a, b), (A, B), fast_mode=True)
    assert torch.autograd.gradcheck(tinv, (A,), fast_mode=True)
    assert torch.autograd.gradcheck(tpinv, (C,), fast_mode=True)
    long_tube = torch.tensor(rng.standard_normal((2, 2, SHORT_TUBE_MAX + 1)), requires_grad=True)
    assert torch.autograd.gradcheck(lambda a: tprod(a, a), (long_tube,), fast_mode=True)


def test_bad_inputs() -> None:
    A = np.ones((2, 3, 4))
    with pytest.raises(ValueError, match="3-D"):
        tprod(np.ones((2, 3)), A)
    with pytest.raises(ValueError, match=r"\(2, 3, 4\).*\(3, 2, 5\)"):
        tprod(A, np.ones((3, 2, 5)))
    with pytest.raises(ValueError, match=r"\(2, 3, 4\).*\(2, 2, 4\)"):
        tprod(A, np.ones((2, 2, 4)))
    with pytest.raises(ValueError, match=r"operand 1.*operand 2"):
        tprod(np.ones((2, 2, 4)), np.ones((2, 2, 4)), np.ones((3, 2, 4)))
    with pytest.raises(TypeError, match="mix"):
        tprod(A, torch.ones((3, 2, 4), dtype=torch.float64))
    with pytest.raises(ValueError, match="NaN"):
        tprod(A, np.full((3, 2, 4), np.nan))
    with pytest.raises(ValueError, match="square"):
        tinv(A)
    with pytest.raises(ValueError, match="Fourier slice 0 is singular"):
        tinv(low_tubal_rank_tensor(0, 3, 3, 4, 2))
    with pytest.raises(ValueError, match="rtol"):
        tpinv(A, rtol=-1.0)
    with pytest.raises(ValueError, match="n3"):
        teye(2, 0)


def test_integer_input_becomes_float64() -> None:
    A = np.arange(8).reshape(2, 2, 2)
    assert tprod(A, A).dtype == np.float64
    close(tprod(A, A), tprod(A.astype(float), A.astype(float)), scale=50.0)
