"""Hard test matrices: the families numerical analysts use to break low-rank algorithms.

Smooth kernels (Gaussian, exponential/Laplace, Matern 3/2) on points in 1-D and 2-D, Hilbert and
Cauchy matrices, Chebyshev-Vandermonde matrices, graded column scalings and exactly low-rank
matrices plus round-off-size noise. Their singular values decay from geometrically to
super-exponentially, so that at moderate ranks the selected columns are numerically dependent:
an algorithm that is accurate only when ``C`` and ``R`` are well conditioned fails here.

All functions return float64 NumPy arrays of the requested shape; cast them for other dtypes.

Examples
--------
>>> from tcur.testing.families import FAMILIES, family_matrix
>>> family_matrix("hilbert", 6, 4).shape
(6, 4)
>>> sorted(FAMILIES)[:3]
['cauchy', 'chebyshev_vandermonde', 'exponential_kernel']
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np


def _points(count: int) -> np.ndarray:
    return np.linspace(0.0, 1.0, count)


def _grid_points(count: int) -> np.ndarray:
    """``count`` points of a near-square grid in the unit square, shape ``(count, 2)``."""
    side = int(np.ceil(np.sqrt(count)))
    x, y = np.meshgrid(np.linspace(0.0, 1.0, side), np.linspace(0.0, 1.0, side))
    return np.stack([x.ravel(), y.ravel()], axis=1)[:count]


def _distances(m: int, n: int, dim: int) -> np.ndarray:
    if dim == 1:
        return np.abs(_points(m)[:, None] - _points(n)[None, :] * 0.97)
    p, q = _grid_points(m), _grid_points(n) * 0.97 + 0.01
    return np.linalg.norm(p[:, None, :] - q[None, :, :], axis=-1)


def gaussian_kernel(m: int, n: int, dim: int = 1, length: float = 0.2) -> np.ndarray:
    """``exp(-|x_i - y_j|^2 / (2 l^2))`` on points of ``[0, 1]^dim`` (super-exponential decay)."""
    return np.exp(-(_distances(m, n, dim) ** 2) / (2 * length**2))


def exponential_kernel(m: int, n: int, dim: int = 1, length: float = 0.3) -> np.ndarray:
    """Laplace kernel ``exp(-|x_i - y_j| / l)`` (algebraic decay)."""
    return np.exp(-_distances(m, n, dim) / length)


def matern_kernel(m: int, n: int, dim: int = 1, length: float = 0.3) -> np.ndarray:
    """Matern 3/2 kernel ``(1 + sqrt(3) d / l) exp(-sqrt(3) d / l)``."""
    scaled = np.sqrt(3.0) * _distances(m, n, dim) / length
    return (1.0 + scaled) * np.exp(-scaled)


def hilbert(m: int, n: int) -> np.ndarray:
    """``1 / (i + j + 1)``: singular values below ``1e-16`` of the largest from rank ~20."""
    return 1.0 / (np.arange(m)[:, None] + np.arange(n)[None, :] + 1.0)


def cauchy(m: int, n: int) -> np.ndarray:
    """``1 / (x_i + y_j)`` with interlaced positive points (a displacement-rank-1 matrix)."""
    x = np.linspace(0.1, 2.0, m)
    y = np.linspace(0.15, 2.05, n)
    return 1.0 / (x[:, None] + y[None, :])


def chebyshev_vandermonde(m: int, n: int) -> np.ndarray:
    """``T_j(x_i)``: Chebyshev polynomials of degree ``j < n`` at ``m`` points of ``[-1, 0.6]``
    (off the symmetric interval, so the columns become dependent quickly)."""
    x = np.linspace(-1.0, 0.6, m)
    return np.polynomial.chebyshev.chebvander(x, n - 1)


def graded_columns(m: int, n: int) -> np.ndarray:
    """A smooth kernel with columns scaled from 1 down to ``1e-12`` (graded scaling)."""
    return gaussian_kernel(m, n) * np.logspace(0, -12, n)[None, :]


def low_rank_plus_noise(m: int, n: int, rank: int = 8, noise: float = 1e-14) -> np.ndarray:
    """An exactly rank-``rank`` matrix plus ``noise`` times Gaussian entries (seeded)."""
    rng = np.random.default_rng(rank)
    rank = min(rank, m, n)
    core = rng.standard_normal((m, rank)) @ rng.standard_normal((rank, n))
    return core + noise * np.linalg.norm(core) / np.sqrt(m * n) * rng.standard_normal((m, n))


FAMILIES: dict[str, Callable[[int, int], np.ndarray]] = {
    "gaussian_kernel": gaussian_kernel,
    "gaussian_kernel_2d": lambda m, n: gaussian_kernel(m, n, dim=2),
    "exponential_kernel": exponential_kernel,
    "matern_kernel": matern_kernel,
    "matern_kernel_2d": lambda m, n: matern_kernel(m, n, dim=2),
    "hilbert": hilbert,
    "cauchy": cauchy,
    "chebyshev_vandermonde": chebyshev_vandermonde,
    "graded_columns": graded_columns,
    "low_rank_plus_noise": low_rank_plus_noise,
}
"""Name -> ``f(m, n)`` for every family of this module."""


def family_matrix(name: str, m: int, n: int) -> np.ndarray:
    """The ``m x n`` member of the family ``name`` (a key of :data:`FAMILIES`)."""
    if name not in FAMILIES:
        raise ValueError(f"name must be one of {sorted(FAMILIES)}, got {name!r}")
    return FAMILIES[name](m, n)


def family_stack(name: str, m: int, n: int, n3: int) -> np.ndarray:
    """``n3`` frontal slices that share their dominant subspaces: the family's matrix with
    smoothly varying column weights per slice, shape ``(m, n, n3)``.

    Examples
    --------
    >>> from tcur.testing.families import family_stack
    >>> family_stack("cauchy", 5, 4, 3).shape
    (5, 4, 3)
    """
    base = family_matrix(name, m, n)
    weights = 1.0 + 0.3 * np.cos(np.pi * np.outer(np.linspace(0, 1, n), np.arange(n3)) / n3)
    return base[:, :, None] * weights[None, :, :]
