"""Test matrices with a decaying spectrum and no exact low rank."""

from __future__ import annotations

import numpy as np


def noisy_spectrum(seed: int, m: int, n: int, decay: float, noise: float) -> np.ndarray:
    """``U diag(decay^i) V^T + noise * G``: random orthonormal ``U``, ``V``, Gaussian ``G``."""
    rng = np.random.default_rng(seed)
    r = min(m, n)
    U, _ = np.linalg.qr(rng.standard_normal((m, r)))
    V, _ = np.linalg.qr(rng.standard_normal((n, r)))
    return (U * decay ** np.arange(r)) @ V.T + noise * rng.standard_normal((m, n))
