"""Approximation error measures."""

from __future__ import annotations

from tcur._backend import Array, as_float_array, namespace, to_numpy


def relative_error(x: Array, approx: Array) -> Array:
    """Relative Frobenius error ``||x - approx|| / ||x||`` (0-D array of the input's kind).

    A zero ``x`` gives the absolute error ``||approx||`` instead of a division by zero.

    Examples
    --------
    >>> import numpy as np
    >>> from tcur.linalg import relative_error
    >>> float(relative_error(np.ones(4), np.zeros(4)))
    1.0
    """
    x = as_float_array(x, "x", finite=False)
    approx = as_float_array(approx, "approx", finite=False)
    xp = namespace(x, approx)
    if tuple(x.shape) != tuple(approx.shape):
        raise ValueError(
            f"x and approx must have the same shape, got {tuple(x.shape)} and {tuple(approx.shape)}"
        )
    diff = xp.linalg.vector_norm(xp.reshape(x - approx, (-1,)))
    norm = xp.linalg.vector_norm(xp.reshape(x, (-1,)))
    return diff / norm if float(to_numpy(norm)) > 0 else diff
