"""Unfolding, folding and n-mode products (tensorly's convention)."""

from __future__ import annotations

from collections.abc import Sequence

from tcur._backend import Array, as_float_array, namespace


def _check_mode(mode: int, ndim: int, name: str = "mode") -> int:
    if isinstance(mode, bool) or not isinstance(mode, int):
        raise TypeError(f"{name} must be an integer, got {mode!r}")
    if not -ndim <= mode < ndim:
        raise ValueError(f"{name}={mode} is out of range for a tensor with {ndim} dimensions")
    return mode % ndim


def unfold(T: Array, mode: int) -> Array:
    """Mode-``mode`` unfolding (matricization) of a tensor.

    Uses tensorly's convention: axis ``mode`` is moved to the front, then the tensor is reshaped
    in C order to ``(T.shape[mode], -1)``.

    Parameters
    ----------
    T : array of shape (I_0, ..., I_{N-1})
        NumPy array or torch tensor.
    mode : int
        The axis that becomes the rows.

    Returns
    -------
    array of shape (I_mode, prod of the other sizes)

    Examples
    --------
    >>> import numpy as np
    >>> from tcur.linalg import unfold
    >>> T = np.arange(24.0).reshape(2, 3, 4)
    >>> unfold(T, 1).shape
    (3, 8)
    """
    T = as_float_array(T, "T", min_ndim=1, finite=False)
    xp = namespace(T)
    mode = _check_mode(mode, T.ndim)
    return xp.reshape(xp.moveaxis(T, mode, 0), (T.shape[mode], -1))


def fold(M: Array, mode: int, shape: Sequence[int]) -> Array:
    """Inverse of :func:`unfold`: refold a matrix into a tensor of the given ``shape``.

    Examples
    --------
    >>> import numpy as np
    >>> from tcur.linalg import fold, unfold
    >>> T = np.arange(24.0).reshape(2, 3, 4)
    >>> bool((fold(unfold(T, 2), 2, T.shape) == T).all())
    True
    """
    M = as_float_array(M, "M", ndim=2, finite=False)
    xp = namespace(M)
    shape = tuple(int(s) for s in shape)
    mode = _check_mode(mode, len(shape))
    front = (shape[mode], *shape[:mode], *shape[mode + 1 :])
    expected = (shape[mode], int(_prod(front[1:])))
    if tuple(M.shape) != expected:
        raise ValueError(
            f"M has shape {tuple(M.shape)} but unfolding mode {mode} of a tensor of shape "
            f"{shape} has shape {expected}"
        )
    return xp.moveaxis(xp.reshape(M, front), 0, mode)


def _prod(values: Sequence[int]) -> int:
    out = 1
    for v in values:
        out *= v
    return out


def mode_dot(T: Array, M: Array, mode: int) -> Array:
    """n-mode product ``T x_mode M``: multiply mode ``mode`` of ``T`` by the matrix ``M``.

    ``M`` has shape ``(J, T.shape[mode])``; the result has ``J`` in place of ``T.shape[mode]``.
    A 1-D ``M`` (a vector) contracts the mode away, as in tensorly.

    Examples
    --------
    >>> import numpy as np
    >>> from tcur.linalg import mode_dot
    >>> T = np.ones((2, 3, 4))
    >>> mode_dot(T, np.ones((5, 3)), 1).shape
    (2, 5, 4)
    """
    T = as_float_array(T, "T", min_ndim=1, finite=False)
    M = as_float_array(M, "M", ndim=(1, 2), finite=False)
    xp = namespace(T, M)
    mode = _check_mode(mode, T.ndim)
    inner = M.shape[-1]
    if inner != T.shape[mode]:
        raise ValueError(
            f"shape mismatch in mode_dot: M has shape {tuple(M.shape)}, so its last size {inner} "
            f"must equal T.shape[{mode}] = {T.shape[mode]} (T has shape {tuple(T.shape)})"
        )
    if T.dtype != M.dtype:
        dtype = xp.result_type(T.dtype, M.dtype)
        T, M = xp.astype(T, dtype), xp.astype(M, dtype)
    moved = xp.moveaxis(T, mode, -1)
    if M.ndim == 1:
        return moved @ M
    return xp.moveaxis(moved @ M.T, -1, mode)


def multi_mode_dot(
    T: Array, matrices: Sequence[Array], modes: Sequence[int] | None = None
) -> Array:
    """Chain of n-mode products ``T x_{modes[0]} matrices[0] x_{modes[1]} matrices[1] ...``.

    ``modes`` defaults to ``0, 1, ..., len(matrices) - 1``.

    Examples
    --------
    >>> import numpy as np
    >>> from tcur.linalg import multi_mode_dot
    >>> core = np.ones((2, 2, 2))
    >>> factors = [np.ones((4, 2)), np.ones((5, 2)), np.ones((6, 2))]
    >>> multi_mode_dot(core, factors).shape
    (4, 5, 6)
    """
    matrices = list(matrices)
    modes = list(range(len(matrices))) if modes is None else list(modes)
    if len(modes) != len(matrices):
        raise ValueError(
            f"got {len(matrices)} matrices but {len(modes)} modes; pass one mode per matrix"
        )
    out = T
    for M, mode in zip(matrices, modes, strict=True):
        out = mode_dot(out, M, mode)
    return out
