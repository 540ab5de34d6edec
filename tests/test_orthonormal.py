"""Orthonormal bases of thin host blocks: orthonormal to round-off at every conditioning."""

from __future__ import annotations

import numpy as np
import pytest

from tcur.linalg.orthonormal import ONE_ROUND_CONDITION, orthonormal_columns


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("condition", [1.0, 0.5 * ONE_ROUND_CONDITION, 1e3, 1e6, 1e12])
def test_orthonormal_columns_are_orthonormal_and_span_the_block(
    condition: float, dtype: type
) -> None:
    # One Gram round below ONE_ROUND_CONDITION, two above it, Householder QR where the Gram
    # matrix cannot resolve the directions: each must give orthonormal columns spanning Y.
    rng = np.random.default_rng(0)
    m, l = 2000, 30
    left = np.linalg.qr(rng.standard_normal((m, l)))[0]
    right = np.linalg.qr(rng.standard_normal((l, l)))[0]
    Y = ((left * np.geomspace(1.0, 1.0 / condition, l)) @ right).astype(dtype)
    Q = orthonormal_columns(Y)
    eps = float(np.finfo(dtype).eps)
    kept = Q[:, np.linalg.norm(Q, axis=0) > 0.5]
    one_round = condition**2 if condition <= ONE_ROUND_CONDITION else 1.0  # one round: cond^2 eps
    assert np.linalg.norm(kept.T @ kept - np.eye(kept.shape[1])) <= 10 * l * eps * one_round
    residual = Y - Q @ (Q.T @ Y)
    assert np.linalg.norm(residual) <= 100 * l * eps * np.linalg.norm(Y)
