"""Unfolding, folding and n-mode products (tensorly's convention)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from tcur._backend import Array, as_float_array, in_dtype, namespace
from tcur.validation import check_sizes, is_integer


def _check_mode(mode: Any, ndim: int, name: str = "mode") -> int:
    if not is_integer(mode):
        raise TypeError(f"{name} must be an integer, got {mode!r} ({type(mode).__name__})")
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

    ``shape`` is a list, tuple or 1-D integer array of positive (Python or NumPy) integers.

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
    shape = check_sizes(shape, "shape")
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


def _check_inner(T: Array, M: Array, mode: int, label: str) -> None:
    inner = M.shape[-1]
    if inner != T.shape[mode]:
        raise ValueError(
            f"shape mismatch in mode_dot: {label} has shape {tuple(M.shape)}, so its last size "
            f"{inner} must equal T.shape[{mode}] = {T.shape[mode]} (T has shape {tuple(T.shape)})"
        )


def _contract(xp: Any, T: Array, M: Array, mode: int) -> Array:
    """``T x_mode M`` for validated arrays of one dtype (a vector ``M`` removes the mode)."""
    moved = xp.moveaxis(T, mode, -1)
    if M.ndim == 1:
        return moved @ M
    return xp.moveaxis(moved @ M.T, -1, mode)


def mode_dot(T: Array, M: Array, mode: int, *, check_finite: bool = True) -> Array:
    """n-mode product ``T x_mode M``: multiply mode ``mode`` of ``T`` by the matrix ``M``.

    ``M`` has shape ``(J, T.shape[mode])``; the result has ``J`` in place of ``T.shape[mode]``.
    A 1-D ``M`` (a vector) contracts the mode away, as in tensorly. ``check_finite=False``
    skips the NaN/Inf scan of ``T`` and ``M``.

    Examples
    --------
    >>> import numpy as np
    >>> from tcur.linalg import mode_dot
    >>> T = np.ones((2, 3, 4))
    >>> mode_dot(T, np.ones((5, 3)), 1).shape
    (2, 5, 4)
    """
    T = as_float_array(T, "T", min_ndim=1, finite=check_finite)
    M = as_float_array(M, "M", ndim=(1, 2), finite=check_finite)
    xp = namespace(T, M)
    mode = _check_mode(mode, T.ndim)
    _check_inner(T, M, mode, "M")
    dtype = xp.result_type(T.dtype, M.dtype)
    return _contract(xp, in_dtype(xp, T, dtype), in_dtype(xp, M, dtype), mode)


def _sorted_modes(modes: list[int], matrices: list[Array]) -> list[tuple[int, int]]:
    """``(mode, position)`` pairs in mode order (stable); a vector's mode must not repeat."""
    for i, (M, mode) in enumerate(zip(matrices, modes, strict=True)):
        if M.ndim == 1 and modes.count(mode) > 1:
            raise ValueError(
                f"matrices[{i}] is a vector, which removes mode {mode}, but mode {mode} appears "
                f"{modes.count(mode)} times in modes={modes}"
            )
    return sorted(((mode, i) for i, mode in enumerate(modes)), key=lambda pair: pair[0])


def multi_mode_dot(
    T: Array,
    matrices: Sequence[Array],
    modes: Sequence[int] | None = None,
    *,
    check_finite: bool = True,
) -> Array:
    """Chain of n-mode products ``T x_{modes[0]} matrices[0] x_{modes[1]} matrices[1] ...``.

    ``modes`` (default ``0, 1, ..., len(matrices) - 1``) refer to the modes of ``T``. As in
    tensorly's ``multi_mode_dot``, the products are applied in increasing mode order (stable
    for repeated modes) and a vector contracts its mode away, so the modes after it shift down
    by one. A vector's mode may not repeat. Each array is validated once
    (``check_finite=False`` skips the NaN/Inf scans).

    Examples
    --------
    >>> import numpy as np
    >>> from tcur.linalg import multi_mode_dot
    >>> core = np.ones((2, 2, 2))
    >>> factors = [np.ones((4, 2)), np.ones((5, 2)), np.ones((6, 2))]
    >>> multi_mode_dot(core, factors).shape
    (4, 5, 6)
    >>> multi_mode_dot(core, [np.ones(2), np.ones((5, 2))], modes=[0, 2]).shape
    (2, 5)
    """
    T = as_float_array(T, "T", min_ndim=1, finite=check_finite)
    if isinstance(matrices, (str, bytes)) or not isinstance(matrices, Sequence):
        raise TypeError(f"matrices must be a sequence of arrays, got {type(matrices).__name__}")
    mats = [
        as_float_array(M, f"matrices[{i}]", ndim=(1, 2), finite=check_finite)
        for i, M in enumerate(matrices)
    ]
    xp = namespace(T, *mats)
    given = list(range(len(mats))) if modes is None else list(modes)
    if len(given) != len(mats):
        raise ValueError(
            f"got {len(mats)} matrices but {len(given)} modes; pass one mode per matrix"
        )
    order = [_check_mode(m, T.ndim, f"modes[{i}]") for i, m in enumerate(given)]
    for i, (M, mode) in enumerate(zip(mats, order, strict=True)):
        if M.ndim == 1 or order.count(mode) == 1:
            _check_inner(T, M, mode, f"matrices[{i}]")
    dtype = xp.result_type(T.dtype, *(M.dtype for M in mats))
    out, removed = in_dtype(xp, T, dtype), 0
    for mode, i in _sorted_modes(order, mats):
        M = in_dtype(xp, mats[i], dtype)
        _check_inner(out, M, mode - removed, f"matrices[{i}]")
        out = _contract(xp, out, M, mode - removed)
        removed += M.ndim == 1
    return out
