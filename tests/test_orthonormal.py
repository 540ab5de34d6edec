"""Orthonormal bases of thin host blocks: orthonormal to round-off at every conditioning."""

from __future__ import annotations

import numpy as np
import pytest

from tcur.linalg.orthonormal import (
    GRAM_CONDITION_EXPONENT,
    ONE_ROUND_CONDITION,
    dominant_directions,
    gram_rounds,
    numerical_range,
    orthonormal_columns,
    spectral_range_factor,
)


def _conditioned(rng: np.random.Generator, shape: tuple[int, ...], condition: float) -> np.ndarray:
    """A batch of blocks with singular values from 1 down to ``1 / condition``."""
    *batch, m, l = shape
    left = np.linalg.qr(rng.standard_normal((*batch, m, l)))[0]
    right = np.linalg.qr(rng.standard_normal((*batch, l, l)))[0]
    return (left * np.geomspace(1.0, 1.0 / condition, l)) @ right


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("condition", [1.0, 0.5 * ONE_ROUND_CONDITION, 1e3, 1e6, 1e12])
def test_orthonormal_columns_are_orthonormal_and_span_the_block(
    condition: float, dtype: type
) -> None:
    # One Gram round below ONE_ROUND_CONDITION, two above it, Householder QR where the Gram
    # matrix cannot resolve the directions: each must give orthonormal columns spanning Y.
    l = 30
    Y = _conditioned(np.random.default_rng(0), (2000, l), condition).astype(dtype)
    Q = orthonormal_columns(Y)
    eps = float(np.finfo(dtype).eps)
    kept = Q[:, np.linalg.norm(Q, axis=0) > 0.5]
    one_round = condition**2 if condition <= ONE_ROUND_CONDITION else 1.0  # one round: cond^2 eps
    assert np.linalg.norm(kept.T @ kept - np.eye(kept.shape[1])) <= 10 * l * eps * one_round
    residual = Y - Q @ (Q.T @ Y)
    assert np.linalg.norm(residual) <= 100 * l * eps * np.linalg.norm(Y)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("fraction", [1e-3, 0.5])
def test_gram_rounds_factor_well_conditioned_blocks_to_round_off(
    dtype: type, fraction: float
) -> None:
    # Below its condition limit the Gram route must be as good as Householder QR: Q orthonormal
    # and Q T = X to a few eps, on a batch (the Fourier slices of a tensor).
    eps = float(np.finfo(dtype).eps)
    condition = fraction * eps ** (-GRAM_CONDITION_EXPONENT)
    X = _conditioned(np.random.default_rng(1), (3, 2000, 40), condition).astype(dtype)
    rounds = gram_rounds(X)
    assert rounds is not None
    Q, T = rounds
    l = X.shape[-1]
    identity = np.swapaxes(Q, -1, -2) @ Q - np.eye(l)
    assert np.max(np.linalg.norm(identity, axis=(-2, -1))) <= 10 * l * eps
    residual = np.linalg.norm(X - Q @ T, axis=(-2, -1)) / np.linalg.norm(X, axis=(-2, -1))
    assert np.max(residual) <= 10 * l * eps


@pytest.mark.parametrize(
    "block",
    [
        np.ones((2000, 40)),  # rank 1
        np.zeros((2000, 40)),
        np.full((2000, 40), 1e300),  # the Gram matrix overflows
        np.full((2000, 40), np.nan),
        np.eye(2000, 40) + 1j,  # complex: Householder is faster
        np.eye(1000, 8),  # short: Householder is faster
        np.eye(2000, 120),  # not tall enough
    ],
)
def test_gram_rounds_leave_other_blocks_to_householder(block: np.ndarray) -> None:
    assert gram_rounds(block) is None


def test_gram_rounds_leave_ill_conditioned_blocks_and_other_kinds_to_householder() -> None:
    rng = np.random.default_rng(2)
    limit = np.finfo(np.float64).eps ** (-GRAM_CONDITION_EXPONENT)
    assert gram_rounds(_conditioned(rng, (2000, 40), 4 * limit)) is None
    torch = pytest.importorskip("torch")
    assert gram_rounds(torch.randn(2000, 40, dtype=torch.float64)) is None


@pytest.mark.parametrize("condition", [10.0, 1e12])
def test_spectral_range_factor_is_the_svd_on_either_route(condition: float) -> None:
    # Gram route (condition 10) or Householder (1e12): X = Q diag(s) v^H with orthonormal Q and
    # s the singular values of X.
    X = _conditioned(np.random.default_rng(3), (2000, 40), condition)
    assert (gram_rounds(X) is not None) == (condition < 100)
    Q, T, s = spectral_range_factor(np, X)
    eps = float(np.finfo(np.float64).eps)
    assert np.allclose(s, np.linalg.svd(X, compute_uv=False), rtol=0, atol=100 * eps)
    assert np.linalg.norm(Q.T @ Q - np.eye(40)) <= 100 * eps
    assert np.linalg.norm(X - Q @ T) <= 100 * eps * np.linalg.norm(X)
    assert np.allclose(np.linalg.norm(T, axis=1), s, rtol=0, atol=100 * eps)  # T = diag(s) v^H


def test_gram_rounds_leave_tiny_and_integer_blocks_to_householder_quietly() -> None:
    # pyproject turns warnings into errors: a Gram matrix whose limit underflows must not divide
    # by zero, and integers (no eps) must fall back, not raise.
    X = np.random.default_rng(0).standard_normal((2000, 10)).astype(np.float32)
    assert gram_rounds(X * np.float32(2.0**-77)) is None
    integers = np.random.default_rng(0).integers(0, 9, (2000, 10))
    assert gram_rounds(integers) is None
    Q, T, _ = spectral_range_factor(np, integers)
    assert np.allclose(Q @ T, integers)


def _gapped(rng: np.random.Generator, shape: tuple[int, int], complex_: bool) -> np.ndarray:
    """A block whose singular values fall by 2x per direction (clear gaps, condition 2^k)."""
    m, c = shape
    left = rng.standard_normal((m, min(m, c))) + (
        1j * rng.standard_normal((m, min(m, c))) if complex_ else 0
    )
    right = rng.standard_normal((min(m, c), c))
    q = np.linalg.qr(left)[0]
    return (q * 0.5 ** np.arange(min(m, c))) @ np.linalg.qr(right.T)[0].T


@pytest.mark.parametrize("complex_", [False, True])
@pytest.mark.parametrize("shape", [(40, 90), (90, 40)])  # B B^H and B^H B routes
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_dominant_directions_span_the_leading_singular_subspace(
    shape: tuple[int, int], complex_: bool, dtype: type
) -> None:
    # The Gram route must give the SVD's leading subspace with orthonormal columns (a dropped
    # conj or 1/sqrt(w) fails this), the same span as the Householder route it replaces.
    B = _gapped(np.random.default_rng(1), shape, complex_)
    B = B.astype(np.result_type(dtype, B.dtype))
    count = 6
    U = dominant_directions(B, count)
    exact = numerical_range(np, B.astype(np.complex128)[None])[0][:, :count]
    eps = float(np.finfo(dtype).eps)
    assert U.shape == (shape[0], count)
    assert np.linalg.norm(U.conj().T @ U - np.eye(count)) <= 100 * eps * count
    projector_gap = U @ U.conj().T - exact @ exact.conj().T
    assert np.linalg.norm(projector_gap) <= 1e3 * eps * count


def test_dominant_directions_of_a_rank_deficient_block_zero_what_round_off_decides() -> None:
    # Rank 3 asked for 5 directions: the Gram route declines (w_5 ~ 0) and the last two columns
    # are zero, as numerical_range gives them, so pivots past the rank fall back to norms.
    rng = np.random.default_rng(2)
    B = rng.standard_normal((50, 3)) @ rng.standard_normal((3, 70))
    U = dominant_directions(B, 5)
    assert np.allclose(np.linalg.norm(U, axis=0), [1, 1, 1, 0, 0])
    assert np.allclose(U @ U.T @ B, B)


@pytest.mark.parametrize("power", [-530, 500])  # Gram entries subnormal / overflowing
def test_dominant_directions_do_not_depend_on_the_scale(power: int) -> None:
    B = _gapped(np.random.default_rng(3), (40, 90), False)
    U = dominant_directions(B, 6)
    assert np.allclose(dominant_directions(np.ldexp(B, power), 6), U, rtol=0, atol=1e-14)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_dominant_directions_near_the_gram_threshold_keep_the_documented_accuracy(
    dtype: type,
) -> None:
    # s_count just above eps^(1/4) s_1 with a small gap to the next: the Gram route is taken and
    # its span error is within a small multiple of eps ||B||^2 / (s_k^2 - s_{k+1}^2).
    eps = float(np.finfo(dtype).eps)
    s_k = 2 * eps**0.25
    s = np.array([1.0, 0.5, 0.25, s_k, s_k / 1.17, s_k / 4, s_k / 8])
    rng = np.random.default_rng(4)
    left = np.linalg.qr(rng.standard_normal((60, s.size)))[0]
    right = np.linalg.qr(rng.standard_normal((50, s.size)))[0]
    B = ((left * s) @ right.T).astype(dtype)
    U = dominant_directions(B, 4)
    exact = left[:, :4]
    bound = eps / (s[3] ** 2 - s[4] ** 2)
    assert np.linalg.norm(U.T @ U - np.eye(4)) <= 100 * eps * 4
    assert np.linalg.norm(U @ U.T - exact @ exact.T) <= 10 * bound


def test_dominant_directions_reject_bad_arguments() -> None:
    B = np.ones((5, 4))
    with pytest.raises(TypeError, match="float16"):
        dominant_directions(B.astype(np.float16), 2)
    for count in (-1, 5):
        with pytest.raises(ValueError, match=f"got {count}"):
            dominant_directions(B, count)
