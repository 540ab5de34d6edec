"""``tcur.decompose``: one entry point that picks the decomposition from the input's order."""

from __future__ import annotations

from typing import Any

from tcur._backend import Array, as_float_array, is_dask, is_sparse, kind_name
from tcur.linalg.matrix_cur import cur, cur_of_array
from tcur.linalg.modewise import chidori_cur, fiber_cur
from tcur.linalg.options import DEFAULT_MIDDLE, DEFAULT_SELECT
from tcur.linalg.tensor_cur import tcur_of_array
from tcur.validation import check_choice, check_rank_or_tol

METHODS = ("auto", "matrix", "tproduct", "chidori", "fiber")


def decompose(
    x: Array,
    rank: Any = None,
    *,
    tol: float | None = None,
    method: str = "auto",
    check_finite: bool = True,
    **options: Any,
) -> Any:
    """CUR-type decomposition of a matrix or tensor.

    Parameters
    ----------
    x : array
        NumPy, torch or any array-API array; ``scipy.sparse`` and Dask arrays for matrix CUR
        (see :func:`tcur.linalg.cur`). 2-D: matrix CUR (:func:`tcur.linalg.cur`). 3-D: tensor
        CUR under the t-product (:func:`tcur.linalg.tcur`) unless ``method`` says otherwise.
        N-D (N >= 3) with ``method="chidori"`` or ``"fiber"``: mode-wise CUR.
    rank : int or sequence of int, optional
        Target rank (per mode for the mode-wise methods). Give exactly one of ``rank`` and
        ``tol`` (the mode-wise methods need ``rank``).
    tol : float, optional
        Relative Frobenius error target in ``(0, 1)`` instead of ``rank`` (matrix and t-CUR):
        the rank is found adaptively, the result's error is ``<= tol`` and the rank found is
        ``result.rank``. Giving both ``rank`` and ``tol`` is an error.
    method : {"auto", "matrix", "tproduct", "chidori", "fiber"}
    check_finite : bool
        Scan ``x`` for NaN/Inf once (default); ``False`` skips the scan.
    **options
        Passed on to the chosen function (``select``, ``middle``, ``n_rows``, ``seed``, ...).
        Defaults of matrix and t-CUR: ``select="sketch_qr"``, ``middle="optimal"``, exactly
        ``rank`` rows and columns (chosen on the benchmark suite of real matrices and tensors).

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
    >>> tcur.decompose(A, tol=1e-6).rank
    1
    """
    check_choice(method, "method", METHODS)
    if is_sparse(x) or is_dask(x):
        return _matrix_only(x, rank, tol, method, check_finite, options)
    fourier = method in ("auto", "tproduct")  # a 3-D x with "auto" is t-product input
    x = as_float_array(x, "x", min_ndim=2, finite=check_finite, factorized=True, fourier=fourier)
    if method == "auto":
        method = "matrix" if x.ndim == 2 else "tproduct"
    check_rank_or_tol(rank, tol)
    if tol is not None and method in ("chidori", "fiber"):
        raise ValueError(f"tol= is supported by the matrix and tproduct methods, not {method!r}")
    expected = {"matrix": 2, "tproduct": 3}.get(method)
    if expected is not None and x.ndim != expected:
        others = " (method='chidori' or 'fiber' decompose N-D tensors)" if x.ndim > 3 else ""
        raise ValueError(
            f"x must be {expected}-D for method={method!r}, got shape {tuple(x.shape)}{others}"
        )
    if method == "matrix":
        return cur_of_array(x, rank, tol=tol, **_with_defaults(options))
    if method == "tproduct":
        return tcur_of_array(x, rank, tol=tol, **_with_defaults(options))
    fit = chidori_cur if method == "chidori" else fiber_cur
    return fit(x, rank, check_finite=False, **options)


def _with_defaults(options: dict[str, Any]) -> dict[str, Any]:
    """``options`` of :func:`tcur.linalg.cur` / :func:`tcur.linalg.tcur` with their defaults
    filled in; an unknown name raises the ``TypeError`` a call of those functions would."""
    defaults = {
        "n_rows": None,
        "n_cols": None,
        "select": DEFAULT_SELECT,
        "middle": DEFAULT_MIDDLE,
        "seed": None,
        "svd": "auto",
        "rtol": None,
    }
    unknown = sorted(set(options) - set(defaults))
    if unknown:
        raise TypeError(f"decompose() got unexpected keyword argument(s): {', '.join(unknown)}")
    return defaults | options


def _matrix_only(
    x: Any, rank: Any, tol: Any, method: str, check_finite: bool, options: dict[str, Any]
) -> Any:
    """``scipy.sparse`` and Dask input: matrix CUR only (:mod:`tcur.linalg.sparse`,
    :mod:`tcur.linalg.lazy`)."""
    if method not in ("auto", "matrix") or x.ndim != 2:
        raise ValueError(
            f"{kind_name(x)} input supports matrix CUR only (2-D, method='auto' or 'matrix'), "
            f"got method={method!r} and shape {tuple(x.shape)}"
        )
    return cur(x, rank, tol=tol, check_finite=check_finite, **options)
