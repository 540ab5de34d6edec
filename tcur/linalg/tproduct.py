"""The t-product algebra of third-order tensors (Kilmer & Martin 2011).

Tensors have shape ``(n1, n2, n3)``; frontal slices are ``A[:, :, k]`` and the tube axis is the
last one. The t-product is the block-circulant product, computed in the Fourier domain: a DFT
along the tube axis turns it into independent products of matching frontal slices. Real input
uses the real DFT (``n3 // 2 + 1`` slices, inverse with ``n=n3``); the slice products are batched
matmuls.

In :func:`tprod`, real tensors with short tubes (``n3 <= SHORT_TUBE_MAX``, the usual case: a
handful of stacked layers or channels) apply the real DFT as one matrix product with the
``(n3, n3)`` real DFT matrix, which directly yields the real and imaginary parts of every Fourier
slice as contiguous real matrices; each complex slice product is then done with real GEMMs
(``n3 // 2 + 1 + 3 * ((n3 - 1) // 2)`` real products in all, against ``4 * n3`` for a complex
product of every slice). This avoids the transposing copy that an FFT along the last axis followed
by a batched matmul needs, which dominates on CPUs for large slices. Longer tubes and complex
input take the FFT.
"""

from __future__ import annotations

import sys
from typing import Any

import numpy as np
from array_api_compat import device as device_of

from tcur._backend import Array, as_float_array, eps, is_complex, is_torch, namespace, to_numpy
from tcur.linalg.pinv import pinv
from tcur.validation import check_rank, check_rtol

SHORT_TUBE_MAX = 32
"""Real tubes up to this length use the real DFT as a matrix product in :func:`tprod`."""


def to_fourier(A: Array, *, real: bool | None = None) -> Array:
    """Fourier-domain slices, batched first: shape ``(n_freq, n1, n2)``.

    Real input gives the ``n3 // 2 + 1`` non-redundant slices of the real FFT; complex input all
    ``n3`` slices. ``real=False`` forces the full complex spectrum of a real ``A`` (to combine
    it with complex tensors); ``real=True`` on complex input is an error. The t-product of ``A``
    and ``B`` is ``to_fourier(A) @ to_fourier(B)`` mapped back with :func:`from_fourier`. No
    validation: pass a checked 3-D float or complex array.

    Examples
    --------
    >>> import numpy as np
    >>> from tcur.linalg.tproduct import from_fourier, to_fourier
    >>> A = np.random.default_rng(0).standard_normal((2, 3, 4))
    >>> F = to_fourier(A)
    >>> F.shape
    (3, 2, 3)
    >>> bool(np.allclose(from_fourier(F, 4, real=True), A))
    True
    """
    xp = namespace(A)
    complex_input = is_complex(A)
    if real and complex_input:
        raise ValueError("real=True needs a real tensor, got a complex one")
    if real is False and not complex_input:
        A = xp.astype(A, xp.complex128 if A.dtype == xp.float64 else xp.complex64)
    spectrum = xp.fft.fft(A, axis=-1) if is_complex(A) else xp.fft.rfft(A, axis=-1)
    return xp.moveaxis(spectrum, -1, 0)


def from_fourier(F: Array, n3: int, real: bool) -> Array:
    """Inverse of :func:`to_fourier`: ``(n_freq, n1, n2)`` slices back to ``(n1, n2, n3)``.

    ``real=True`` reads ``F`` as the ``n3 // 2 + 1`` slices of a real tensor's real FFT (inverse
    real FFT with ``n=n3``); ``real=False`` as all ``n3`` slices (inverse complex FFT).
    """
    xp = namespace(F)
    spectrum = xp.moveaxis(F, 0, -1)
    if real:
        return xp.fft.irfft(spectrum, n=n3, axis=-1)
    return xp.fft.ifft(spectrum, n=n3, axis=-1)


def _check_pair(A: Array, B: Array, position: int) -> None:
    if A.shape[1] != B.shape[0] or A.shape[2] != B.shape[2]:
        raise ValueError(
            f"t-product needs A: (n1, n2, n3) and B: (n2, n4, n3); operand {position} has shape "
            f"{tuple(A.shape)} and operand {position + 1} has shape {tuple(B.shape)}"
        )


def tprod(A: Array, B: Array, *more: Array, check_finite: bool = True) -> Array:
    """t-product ``A * B (* more...)`` of third-order tensors.

    ``(A * B)[:, :, k] = sum_{a + b = k mod n3} A[:, :, a] @ B[:, :, b]``.

    Parameters
    ----------
    A : array of shape (n1, n2, n3)
    B : array of shape (n2, n4, n3)
    *more : further tensors, multiplied left to right.
    check_finite : bool
        Raise ``ValueError`` on NaN/Inf entries; ``False`` skips the scans (each a device
        synchronisation on a GPU), e.g. for operands already checked.

    Returns
    -------
    array of shape (n1, n4, n3), real when all inputs are real.

    Examples
    --------
    >>> import numpy as np
    >>> from tcur.linalg import teye, tprod
    >>> A = np.arange(12.0).reshape(2, 2, 3)
    >>> bool(np.allclose(tprod(A, teye(2, 3, like=A)), A))
    True
    """
    operands = [
        as_float_array(t, f"operand {i}", ndim=3, finite=check_finite)
        for i, t in enumerate((A, B, *more))
    ]
    xp = namespace(*operands)
    for i in range(len(operands) - 1):
        _check_pair(operands[i], operands[i + 1], i)
    dtype = xp.result_type(*operands)
    operands = [t if t.dtype == dtype else xp.astype(t, dtype) for t in operands]
    real = not is_complex(operands[0])
    n3 = operands[0].shape[2]
    if real and n3 <= SHORT_TUBE_MAX:
        return _tprod_real_dft(xp, operands)
    result = to_fourier(operands[0])
    for t in operands[1:]:
        result = result @ to_fourier(t)
    return from_fourier(result, n3, real)


def _dft_matrices(xp: Any, n3: int, like: Array) -> tuple[Array, Array]:
    """Forward and inverse real DFT matrices, both ``(n_re + n_im, n3)``.

    Rows ``0..n_re-1`` give the real parts of Fourier slices ``0..n3//2``; the following ``n_im``
    rows the imaginary parts of slices ``1..n_im`` (``n_im = (n3 - 1) // 2``; the zero-frequency
    and Nyquist slices of a real tensor are real).
    """
    n_re, n_im = n3 // 2 + 1, (n3 - 1) // 2
    t = np.arange(n3)
    angle_re = 2 * np.pi * np.outer(np.arange(n_re), t) / n3
    angle_im = 2 * np.pi * np.outer(np.arange(1, n_im + 1), t) / n3
    forward = np.concatenate([np.cos(angle_re), -np.sin(angle_im)])
    weights = np.where((np.arange(n_re) == 0) | (2 * np.arange(n_re) == n3), 1.0, 2.0)
    inverse = np.concatenate([np.cos(angle_re) * weights[:, None], -2.0 * np.sin(angle_im)]) / n3
    device = device_of(like)
    return (
        xp.asarray(forward, dtype=like.dtype, device=device),
        xp.asarray(inverse, dtype=like.dtype, device=device),
    )


def _spectrum(xp: Any, A: Array, forward: Array) -> tuple[Array, Array]:
    """Real and imaginary parts of the Fourier slices, ``(n_re, n1, n2)`` and ``(n_im, n1, n2)``."""
    n1, n2, n3 = A.shape
    S = xp.reshape(forward @ xp.reshape(A, (n1 * n2, n3)).T, (-1, n1, n2))
    n_re = n3 // 2 + 1
    return S[:n_re, ...], S[n_re:, ...]


def _spectral_product(
    xp: Any, a: tuple[Array, Array], b: tuple[Array, Array]
) -> tuple[Array, Array]:
    """Slice-wise complex product in real arithmetic: ``n_re + 3 * n_im`` real GEMMs."""
    (a_re, a_im), (b_re, b_im) = a, b
    n_im, n4 = a_im.shape[0], b_re.shape[2]
    real_part = a_re @ b_re
    if n_im == 0:
        return real_part, real_part[1:1, ...]
    mixed = a_im @ xp.concat([b_im, b_re[1 : n_im + 1, ...]], axis=2)
    re = xp.concat(
        [
            real_part[:1, ...],
            real_part[1 : n_im + 1, ...] - mixed[:, :, :n4],
            real_part[n_im + 1 :, ...],
        ],
        axis=0,
    )
    return re, a_re[1 : n_im + 1, ...] @ b_im + mixed[:, :, n4:]


def _tprod_real_dft(xp: Any, operands: list[Array]) -> Array:
    n1, n3 = operands[0].shape[0], operands[0].shape[2]
    forward, inverse = _dft_matrices(xp, n3, operands[0])
    spectrum = _spectrum(xp, operands[0], forward)
    for t in operands[1:]:
        spectrum = _spectral_product(xp, spectrum, _spectrum(xp, t, forward))
    stacked = xp.concat(spectrum, axis=0)
    n4 = stacked.shape[2]
    return xp.reshape(xp.reshape(stacked, (stacked.shape[0], n1 * n4)).T @ inverse, (n1, n4, n3))


def ttranspose(A: Array) -> Array:
    """t-transpose: (conjugate-)transpose each frontal slice, reverse slices ``1..n3-1``.

    Pure data movement: NaN/Inf entries are moved, not checked.

    Examples
    --------
    >>> import numpy as np
    >>> from tcur.linalg import ttranspose
    >>> A = np.random.default_rng(0).standard_normal((2, 3, 4))
    >>> bool(np.allclose(ttranspose(ttranspose(A)), A))
    True
    """
    A = as_float_array(A, "A", ndim=3, finite=False)
    xp = namespace(A)
    sliced = xp.permute_dims(A, (1, 0, 2))
    if is_complex(A):
        sliced = xp.conj(sliced)
    order = [0, *range(A.shape[2] - 1, 0, -1)]
    return xp.take(sliced, xp.asarray(order, device=device_of(A)), axis=2)


def teye(n: int, n3: int, *, like: Array | None = None, dtype: Any = None) -> Array:
    """Identity tensor ``(n, n, n3)``: first frontal slice the identity matrix, the others zero.

    ``like`` fixes the array kind, device and (unless ``dtype`` is given) dtype. ``n`` and ``n3``
    are positive Python or NumPy integers.

    Examples
    --------
    >>> from tcur.linalg import teye
    >>> teye(2, 3)[:, :, 0]
    array([[1., 0.],
           [0., 1.]])
    """
    n, n3 = check_rank(n, "n", sys.maxsize), check_rank(n3, "n3", sys.maxsize)
    if like is None:
        if dtype is not None and not isinstance(dtype, (np.dtype, type, str)):
            raise TypeError(
                f"teye: dtype={dtype!r} is not a NumPy dtype; for another array kind pass "
                "like= an array of that kind (e.g. teye(n, n3, like=x, dtype=torch.float32))"
            )
        out = np.zeros((n, n, n3), dtype=dtype or np.float64)
        out[:, :, 0] = np.eye(n, dtype=out.dtype)
        return out
    xp = namespace(like)
    dt = like.dtype if dtype is None else dtype
    # Concatenated, not assigned into: some array-API libraries (JAX) have immutable arrays.
    first = xp.eye(n, dtype=dt, device=device_of(like))[:, :, None]
    rest = xp.zeros((n, n, n3 - 1), dtype=dt, device=device_of(like))
    return xp.concat([first, rest], axis=2)


def fourier_weights(n3: int, n_freq: int) -> np.ndarray:
    """Multiplicity of each stored Fourier slice in the full spectrum (NumPy float64 vector).

    For the real FFT (``n_freq = n3 // 2 + 1``) every slice except the zero-frequency one and,
    for even ``n3``, the Nyquist one stands for itself and its complex conjugate (weight 2). For a
    full spectrum (``n_freq = n3``) all weights are 1. Sums over the full spectrum are
    ``sum(weights * per_slice_values)``.

    Examples
    --------
    >>> from tcur.linalg.tproduct import fourier_weights
    >>> fourier_weights(6, 4).tolist(), fourier_weights(5, 3).tolist()
    ([1.0, 2.0, 2.0, 1.0], [1.0, 2.0, 2.0])
    """
    weights = np.ones(n_freq)
    if n_freq != n3:
        weights[1:] = 2.0
        if n3 % 2 == 0:
            weights[-1] = 1.0
    return weights


def _fourier_checked(A: Array, name: str, check_finite: bool) -> tuple[Array, Array, bool]:
    """Validated ``A``, its Fourier slices, and whether it is real."""
    A = as_float_array(A, name, ndim=3, finite=check_finite)
    return A, to_fourier(A), not is_complex(A)


def tinv(A: Array, *, check_finite: bool = True) -> Array:
    """Inverse under the t-product: ``tprod(A, tinv(A)) == tprod(tinv(A), A) == teye``.

    Each Fourier slice of ``A`` is inverted. ``A`` must have square frontal slices and every
    Fourier slice must be nonsingular.

    Parameters
    ----------
    A : array of shape (n, n, n3)
    check_finite : bool
        Raise ``ValueError`` on NaN/Inf entries; ``False`` skips the scan.

    Returns
    -------
    array of shape (n, n, n3)

    Raises
    ------
    ValueError
        If the frontal slices are not square, a Fourier slice is singular to working
        precision (its condition number exceeds ``1 / (n * eps)``), or the inverse is not
        representable in the dtype (a smallest singular value below ``1 / max``).

    Examples
    --------
    >>> import numpy as np
    >>> from tcur.linalg import teye, tinv, tprod
    >>> A = np.random.default_rng(0).standard_normal((3, 3, 4))
    >>> bool(np.allclose(tprod(A, tinv(A)), teye(3, 4)))
    True
    """
    A, F, real = _fourier_checked(A, "A", check_finite)
    n1, n2, n3 = A.shape
    if n1 != n2:
        raise ValueError(f"tinv needs square frontal slices, got A of shape {tuple(A.shape)}")
    _check_invertible(F, n1)
    return from_fourier(namespace(F).linalg.inv(F), n3, real)


def _check_invertible(F: Array, n: int) -> None:
    s = to_numpy(namespace(F).linalg.svdvals(F.detach() if is_torch(F) else F))
    limit = n * eps(F) * s[:, 0]
    bad = np.flatnonzero(s[:, -1] <= limit)
    if bad.size:
        k = int(bad[0])
        raise ValueError(
            f"A is not invertible under the t-product: Fourier slice {k} is singular "
            f"(smallest singular value {s[k, -1]:.3e}, largest {s[k, 0]:.3e}); use tpinv"
        )
    largest = float(np.finfo(s.dtype).max)
    beyond = np.flatnonzero(s[:, -1] < 1.0 / largest)  # 1 / s_min is not a float of this dtype
    if beyond.size:
        k = int(beyond[0])
        raise ValueError(
            f"the inverse of A is not representable in {s.dtype}: Fourier slice {k} has smallest "
            f"singular value {s[k, -1]:.3e}, so its inverse has norm above {largest:.3e}; "
            "scale A by a power of two first (exact) and the inverse by the same power"
        )


def tpinv(
    A: Array, rtol: float | None = None, *, rank: int | None = None, check_finite: bool = True
) -> Array:
    """Moore–Penrose pseudo-inverse under the t-product.

    Each Fourier slice is pseudo-inverted; singular values at or below
    ``rtol * s_max`` are treated as zero, where ``s_max`` is the largest singular value over
    *all* Fourier slices (so a slice that is pure round-off is dropped, not amplified). With
    ``rank``, at most ``rank`` singular values per Fourier slice are kept (a truncated
    t-pseudo-inverse, used by the t-CUR middle factor). The untruncated result ``X`` satisfies
    the four Penrose conditions ``A*X*A = A``, ``X*A*X = X``, ``(A*X)^T = A*X`` and
    ``(X*A)^T = X*A`` under the t-product and t-transpose.

    Parameters
    ----------
    A : array of shape (n1, n2, n3)
    rtol : float, optional
        Relative cutoff (the name NumPy and SciPy use); default ``max(n1, n2) * eps(dtype)``.
        Negative, NaN, Inf or non-numeric values raise.
    rank : int, optional
        Keep at most this many singular values per Fourier slice.
    check_finite : bool
        Raise ``ValueError`` on NaN/Inf entries; ``False`` skips the scan.

    Returns
    -------
    array of shape (n2, n1, n3)

    Examples
    --------
    >>> import numpy as np
    >>> from tcur.linalg import tpinv, tprod
    >>> A = np.random.default_rng(0).standard_normal((4, 2, 3))
    >>> X = tpinv(A)
    >>> X.shape
    (2, 4, 3)
    >>> bool(np.allclose(tprod(A, X, A), A))
    True
    """
    A, F, real = _fourier_checked(A, "A", check_finite)
    n1, n2, n3 = A.shape
    rtol = check_rtol(rtol)
    if rank is not None:
        check_rank(rank, "rank", min(n1, n2))
    return from_fourier(pinv(F, rtol, rank), n3, real)
