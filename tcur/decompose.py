"""``tcur.decompose``: one entry point that picks the decomposition from the input's order."""

from __future__ import annotations

from typing import Any

from tcur._backend import Array, as_float_array, check_choice
from tcur.linalg.cur import CUR, cur

METHODS = ("auto", "matrix", "tproduct", "chidori", "fiber")


def decompose(x: Array, rank: Any = None, *, method: str = "auto", **options: Any) -> Any:
    """CUR-type decomposition of a matrix or tensor.

    Parameters
    ----------
    x : array
        2-D: matrix CUR (:func:`tcur.linalg.cur`). 3-D: tensor CUR under the t-product
        (:func:`tcur.linalg.tcur`) unless ``method`` says otherwise. N-D (N >= 3) with
        ``method="chidori"`` or ``"fiber"``: mode-wise CUR.
    rank : int or sequence of int, optional
        Target rank (per mode for the mode-wise methods). Default: ``min(x.shape) // 2`` (at
        least 1) for matrix and t-CUR.
    method : {"auto", "matrix", "tproduct", "chidori", "fiber"}
    **options
        Passed on to the chosen function (``select``, ``middle``, ``n_rows``, ``seed``, ...).

    Returns
    -------
    CUR, TCUR or TuckerCUR

    Examples
    --------
    >>> import numpy as np
    >>> import tcur
    >>> A = np.outer(np.arange(1.0, 5.0), np.arange(1.0, 4.0))
    >>> d = tcur.decompose(A, 1)
    >>> bool(np.allclose(d.reconstruct(), A))
    True
    """
    check_choice(method, "method", METHODS)
    x = as_float_array(x, "x", min_ndim=2)
    if method == "auto":
        method = "matrix" if x.ndim == 2 else "tproduct"
    if method == "matrix":
        as_float_array(x, "x", ndim=2, finite=False)
        return _matrix(x, rank, options)
    if method == "tproduct":
        from tcur.linalg.tensor_cur import tcur

        as_float_array(x, "x", ndim=3, finite=False)
        return tcur(x, _default_rank(x, rank), **options)
    from tcur.linalg.modewise import chidori_cur, fiber_cur

    if rank is None:
        rank = [max(1, s // 2) for s in x.shape]
    return (chidori_cur if method == "chidori" else fiber_cur)(x, rank, **options)


def _default_rank(x: Array, rank: Any) -> Any:
    return max(1, min(x.shape[:2]) // 2) if rank is None else rank


def _matrix(x: Array, rank: Any, options: dict[str, Any]) -> CUR:
    return cur(x, _default_rank(x, rank), **options)
