"""Array-kind dispatch: NumPy, torch and any other array-API library.

Every public function follows one shape: resolve the backend from its arguments (:func:`namespace`),
validate and convert them (:func:`as_float_array` and friends), compute with the returned array-API
namespace ``xp``, and return arrays of the input's kind on the input's device.

NumPy and torch keep their native fast paths (plain indexing, host copies without DLPack). Any
other array that ``array-api-compat`` recognises (``array_api_strict``, JAX, CuPy, ...) is computed
on through its standard namespace: :func:`take` instead of mixed slice/integer-array indexing,
:func:`like` and :func:`index_array` to bring small host results back to the input's namespace and
device, and :func:`to_numpy` through DLPack for the host-side index selection.

torch is never imported here: a tensor can only exist if the user imported torch already, so it is
looked up in ``sys.modules``.
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
import types
import warnings
from typing import Any

import array_api_compat
import numpy as np

from tcur._threads import one_blas_thread
from tcur.validation import check_rank, check_seed

Array = Any
"""A NumPy ndarray, a torch Tensor or another array-API array."""


def is_torch(x: object) -> bool:
    """Return True if ``x`` is a torch tensor (without importing torch)."""
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(x, torch.Tensor)


def is_numpy(x: object) -> bool:
    """Return True for a NumPy array or scalar."""
    return isinstance(x, (np.ndarray, np.generic))


def is_foreign(x: object) -> bool:
    """True for an array-API array that is neither NumPy nor torch (``array_api_strict``, JAX,
    CuPy, Dask, ...): it is computed on through its standard namespace."""
    return not is_numpy(x) and not is_torch(x) and bool(array_api_compat.is_array_api_obj(x))


def is_sparse(x: object) -> bool:
    """True for a ``scipy.sparse`` array or matrix (without importing SciPy)."""
    sparse = sys.modules.get("scipy.sparse")
    return sparse is not None and bool(sparse.issparse(x))


def is_dask(x: object) -> bool:
    """True for a Dask array (without importing Dask)."""
    dask_array = sys.modules.get("dask.array")
    return dask_array is not None and isinstance(x, dask_array.Array)


def refuse_dask(x: object, name: str, function: str) -> None:
    """``TypeError`` for a Dask array given to a function without a lazy path (only matrix CUR
    has one, :mod:`tcur.linalg.lazy`)."""
    if is_dask(x):
        raise TypeError(
            f"{function} does not take Dask arrays ({name} is one); Dask input is supported by "
            f"matrix CUR (tcur.linalg.cur, tcur.decompose on 2-D input); pass {name}.compute()"
        )


def kind_name(x: object) -> str:
    """Name of the array kind of ``x`` for error messages."""
    if is_torch(x):
        return "torch.Tensor"
    return f"{type(x).__module__.split('.')[0]}.{type(x).__name__}"


def _kind(x: object) -> str:
    if is_torch(x):
        return "torch"
    if is_foreign(x):
        return array_api_compat.array_namespace(x).__name__
    return "numpy"


def namespace(*arrays: Array) -> Any:
    """Array-API namespace shared by ``arrays``; ``TypeError`` if array kinds are mixed."""
    present = [a for a in arrays if a is not None]
    if len({_kind(a) for a in present}) > 1:
        names = ", ".join(sorted({kind_name(a) for a in present}))
        raise TypeError(
            f"arguments mix array kinds ({names}); pass arrays of one kind (all NumPy, all "
            "torch, or all of one array-API library)"
        )
    return array_api_compat.array_namespace(*present)


def is_complex(x: Array) -> bool:
    """True if ``x`` (a NumPy array or torch tensor) has a complex dtype."""
    return bool(namespace(x).isdtype(x.dtype, "complex floating"))


def to_numpy(x: Array) -> np.ndarray:
    """Host NumPy copy of ``x`` (detached from autograd); no copy for NumPy input.

    Other array-API arrays go through DLPack after a move to the CPU (``to_device``), with
    :func:`numpy.asarray` as the fallback for libraries without DLPack.
    """
    if is_torch(x):
        return x.detach().cpu().numpy()
    if is_foreign(x):
        try:
            return np.from_dlpack(array_api_compat.to_device(x, "cpu"))
        except (TypeError, ValueError, AttributeError, RuntimeError, BufferError):
            return np.asarray(x)
    return np.asarray(x)


def host_arrays(*arrays: Array) -> list[np.ndarray]:
    """Host NumPy copies of ``arrays`` in one device-to-host transfer for torch tensors (they
    are flattened into one buffer of their promoted dtype, copied once, then split), so that a
    call on a GPU synchronises once, not once per array; :func:`to_numpy` of each otherwise.

    Examples
    --------
    >>> import numpy as np
    >>> from tcur._backend import host_arrays
    >>> [a.shape for a in host_arrays(np.ones((2, 3)), np.arange(4))]
    [(2, 3), (4,)]
    """
    if not arrays or not all(is_torch(a) for a in arrays):
        return [to_numpy(a) for a in arrays]
    torch = sys.modules["torch"]
    common = arrays[0].dtype
    for a in arrays[1:]:
        common = torch.promote_types(common, a.dtype)
    flat = torch.cat([a.detach().reshape(-1).to(common) for a in arrays]).cpu().numpy()
    out, start = [], 0
    for a in arrays:
        part = flat[start : start + a.numel()].reshape(tuple(a.shape))
        start += a.numel()
        target = np.dtype(str(a.dtype).removeprefix("torch."))
        out.append((part.real if target.kind != "c" else part).astype(target, copy=False))
    return out


def in_dtype(xp: Any, a: Array, dtype: Any) -> Array:
    """``a`` as ``dtype`` (a copy only when it differs).

    Examples
    --------
    >>> import numpy as np
    >>> from tcur._backend import in_dtype
    >>> a = np.ones(2)
    >>> in_dtype(np, a, np.float64) is a, in_dtype(np, a, np.float32).dtype
    (True, dtype('float32'))
    """
    return a if a.dtype == dtype else xp.astype(a, dtype)


def like(values: Any, ref: Array, dtype: Any = None) -> Array:
    """Convert host ``values`` to the array kind and device of ``ref`` (``dtype``: one of
    ``ref``'s namespace, or None to keep the values' dtype)."""
    if is_torch(ref):
        torch = sys.modules["torch"]
        host = np.asarray(values)
        if any(stride < 0 for stride in host.strides):
            # torch refuses negative strides; NumPy keeps them even on views it calls
            # contiguous (a reversed axis of length 1, e.g. from a size-1 tensor mode)
            host = host.copy()
        return torch.as_tensor(host, device=ref.device, dtype=dtype)
    if is_foreign(ref):
        xp = array_api_compat.array_namespace(ref)
        return xp.asarray(np.asarray(values), dtype=dtype, device=array_api_compat.device(ref))
    return np.asarray(values, dtype=dtype)


def index_array(indices: Any, ref: Array) -> Array:
    """Integer index array (int64) of ``ref``'s kind and device."""
    host = np.asarray(indices, dtype=np.int64)
    if is_torch(ref):
        return like(host, ref, dtype=sys.modules["torch"].int64)
    if is_foreign(ref):
        return like(host, ref, dtype=array_api_compat.array_namespace(ref).int64)
    return host


def take(x: Array, indices: Array, axis: int) -> Array:
    """``x`` restricted to ``indices`` (an :func:`index_array`) along ``axis``.

    Native indexing for NumPy and torch (the fast path, differentiable for torch); the standard
    ``xp.take`` for other array-API arrays, which need not support integer arrays mixed with
    slices.
    """
    if is_foreign(x):
        return array_api_compat.array_namespace(x).take(x, indices, axis=axis)
    return x[(slice(None),) * (axis % x.ndim) + (indices,)]


def _float_dtype_numpy(x: np.ndarray, name: str) -> np.ndarray:
    kind = x.dtype.kind
    if kind in "biu":
        return x.astype(np.float64)
    if kind == "f" and x.dtype.itemsize < 4:
        return x.astype(np.float32)
    if (kind == "f" and x.dtype.itemsize > 8) or (kind == "c" and x.dtype.itemsize > 16):
        raise TypeError(
            f"{name} has dtype {x.dtype} (long double), which NumPy's linear algebra does not "
            f"support; convert it with {name}.astype(numpy.float64) first"
        )
    if kind in "fc":
        return x
    raise TypeError(f"{name} must have a numeric dtype, got dtype {x.dtype}")


def _float_dtype_torch(x: Any, name: str) -> Any:
    torch = sys.modules["torch"]
    if x.device.type == "meta":
        raise ValueError(
            f"{name} is a torch tensor on the 'meta' device (shape {tuple(x.shape)}, dtype "
            f"{x.dtype}): it has a shape but no values to compute with; move it to a real "
            f"device first (e.g. {name}.to_empty(device='cpu') and fill it)"
        )
    if x.layout != torch.strided:
        raise TypeError(
            f"{name} is a torch tensor with layout {x.layout}; tcur computes on dense tensors: "
            f"pass {name}.to_dense() (or a scipy.sparse matrix, which tcur.decompose and cur "
            "read sparsely)"
        )
    if x.dtype in (torch.float16, torch.bfloat16):
        return x.to(torch.float32)
    if x.dtype == torch.complex32:
        return x.to(torch.complex64)
    if x.is_floating_point() or x.is_complex():
        return x
    return x.to(torch.float64)


def as_float_array(
    x: Any,
    name: str,
    *,
    ndim: int | tuple[int, ...] | None = None,
    min_ndim: int | None = None,
    finite: bool = True,
    factorized: bool = False,
    fourier: bool = False,
) -> Array:
    """Validate ``x`` and return it as a floating array of its own kind.

    Integers and booleans become float64, float16/bfloat16 become float32, float32/float64 and
    complex are kept. Non-array input is converted with :func:`numpy.asarray`. ``finite=False``
    skips the NaN/Inf scan (the ``check_finite=False`` of the public functions; on a GPU the
    scan is a device synchronisation). With ``factorized`` the scan is
    :func:`check_factorizable` (the input of a decomposition; ``fourier`` for the t-product's),
    in the same one pass.

    Raises
    ------
    TypeError
        If ``x`` has a non-numeric or long-double dtype, or is a NumPy masked array (its mask
        would be silently dropped).
    ValueError
        If ``x`` has the wrong number of dimensions, is empty, is a torch tensor on the
        ``meta`` device (no values), or (``finite=True``) holds NaN/Inf.
    """
    if is_torch(x):
        arr = _float_dtype_torch(x, name)
    elif is_foreign(x):
        arr = _float_dtype_generic(x, name)
    elif isinstance(x, np.ma.MaskedArray):
        raise TypeError(
            f"{name} is a numpy masked array; CUR needs every entry, so pass "
            f"{name}.filled(value) or {name}.data explicitly"
        )
    else:
        try:
            arr = np.asarray(x)
        except (TypeError, ValueError) as err:
            raise TypeError(f"{name} must be a NumPy array or torch tensor: {err}") from None
        arr = _float_dtype_numpy(arr, name)
    _check_ndim(arr, name, ndim, min_ndim)
    if arr.ndim > 0 and min(arr.shape) == 0:
        raise ValueError(f"{name} must not be empty, got shape {tuple(arr.shape)}")
    if finite and factorized:
        check_factorizable(arr, name, fourier=fourier)
    elif finite:
        check_finite(arr, name)
    return arr


def _float_dtype_generic(x: Any, name: str) -> Any:
    """Floating version of an array-API array, by the same rules as for NumPy."""
    xp = array_api_compat.array_namespace(x)
    if xp.isdtype(x.dtype, ("bool", "integral")):
        return xp.astype(x, xp.float64)
    if xp.isdtype(x.dtype, "real floating"):
        return x if xp.finfo(x.dtype).bits >= 32 else xp.astype(x, xp.float32)
    if xp.isdtype(x.dtype, "complex floating"):
        return x
    raise TypeError(f"{name} must have a numeric dtype, got dtype {x.dtype}")


def _check_ndim(
    arr: Array, name: str, ndim: int | tuple[int, ...] | None, min_ndim: int | None
) -> None:
    if ndim is not None:
        allowed = (ndim,) if isinstance(ndim, int) else ndim
        if arr.ndim not in allowed:
            wanted = " or ".join(f"{n}-D" for n in allowed)
            raise ValueError(
                f"{name} must be {wanted}, got {arr.ndim}-D array of shape {tuple(arr.shape)}"
            )
    if min_ndim is not None and arr.ndim < min_ndim:
        raise ValueError(
            f"{name} must have at least {min_ndim} dimensions, got shape {tuple(arr.shape)}"
        )


def check_finite(x: Array, name: str) -> None:
    """Raise ``ValueError`` if ``x`` holds NaN or Inf."""
    if is_torch(x):
        torch = sys.modules["torch"]
        data = x.detach()
        # A finite sum implies finite entries; isfinite().all() is ~10x slower on CPU tensors.
        ok = bool(torch.isfinite(data.sum())) or bool(torch.isfinite(data).all())
    elif is_foreign(x):
        xp = array_api_compat.array_namespace(x)
        ok = bool(xp.all(xp.isfinite(x)))
    else:
        ok = bool(np.isfinite(x).all())
    if not ok:
        raise ValueError(f"{name} must not contain NaN or Inf")


POWER_OF_TWO_ADVICE = (
    "divide {name} by a power of two first (e.g. {name} / 2**64, exact) and scale the result back"
)
"""The remedy an overflow refusal names."""


FACTORIZATION_HEADROOM = 2.0
""":func:`check_factorizable` refuses a norm (times ``sqrt(n3)`` for the t-product) above the
dtype's largest value over this factor."""


def check_factorizable(x: Array, name: str, *, fourier: bool = False) -> None:
    """Raise ``ValueError`` if ``x`` holds NaN or Inf, or if its factorizations would overflow.

    Every QR or SVD factor of a block of ``x`` has norm at most ``||x||_F``, and with
    ``fourier`` (a t-product method) the Fourier slices of a third-order ``x`` have norms up to
    ``sqrt(n3) ||x||_F`` (Parseval); ``x`` is refused when that bound exceeds the dtype's largest
    value over :data:`FACTORIZATION_HEADROOM` (LAPACK's SVD can loop forever on the Inf that
    follows). One pass in the common case: the squared norm as one dot product, finite and in
    range; otherwise the NaN/Inf scan and a norm scaled by a power of two decide.

    Examples
    --------
    >>> import numpy as np
    >>> from tcur._backend import check_factorizable
    >>> check_factorizable(np.full((3, 2), 1e300), "A")  # large, but factors are in range
    >>> check_factorizable(np.full((3, 2), 1.7e308), "A")
    Traceback (most recent call last):
    ...
    ValueError: A is too large for float64: its Frobenius norm (inf) ...
    """
    tube = x.shape[2] if fourier and x.ndim == 3 else 1
    largest = float(_finfo(x).max)
    limit = largest / (FACTORIZATION_HEADROOM * math.sqrt(tube))
    quick = _quick_norm(x)
    if math.isfinite(quick) and quick <= limit:
        return
    check_finite(x, name)
    xp = array_api_compat.array_namespace(x)
    with np.errstate(over="ignore", under="ignore"):
        norm, scale = scaled_norm(xp, x.detach() if is_torch(x) else x)
        value = float(norm) * float(scale)  # inf beyond every float
    if value > limit:
        times = f" times sqrt(n3) = {math.sqrt(tube):.3g}" if tube > 1 else ""
        raise ValueError(
            f"{name} is too large for {x.dtype}: its Frobenius norm ({value:.3g}){times} "
            f"exceeds 1/{FACTORIZATION_HEADROOM:g} of the largest value ({largest:.3g}), so its "
            f"factorizations would overflow; {POWER_OF_TWO_ADVICE.format(name=name)}"
        )


def scaled_norm(xp: Any, v: Array) -> tuple[Array, Array]:
    """``(n, p)`` with ``||v|| = n * p``: ``p`` a power of two near ``max|v|`` and ``n`` computed
    on ``v / p`` (entries below 2 in size), so squaring neither overflows nor underflows; where
    ``v`` lives, no host synchronisation.

    Examples
    --------
    >>> import numpy as np
    >>> from tcur._backend import scaled_norm
    >>> n, p = scaled_norm(np, np.array([3e300, 4e300]))
    >>> float(n * p) / 5e300
    1.0
    """
    p = power_of_two_below(xp, xp.max(xp.abs(v)))
    return xp.linalg.vector_norm(v / p), p


def _quick_norm(x: Array) -> float:
    """``||x||_F`` in ``x``'s own precision (Inf where its square overflows, NaN with NaN)."""
    if is_numpy(x):
        square = _flat_square(x)
        if square is None:
            return math.nan  # not contiguous: the exact path decides
        return math.sqrt(square) if square >= 0 else math.nan
    xp = array_api_compat.array_namespace(x)
    with np.errstate(all="ignore"):  # array-API libraries computing through NumPy
        return float(xp.linalg.vector_norm(x.detach() if is_torch(x) else x))


def _flat_square(F: Array) -> float | None:
    """``||F||_F^2`` of a contiguous NumPy array or torch tensor as one dot product of the
    flattened array (no temporary; Inf when it overflows, NaN with NaN), or ``None`` when ``F``
    is not contiguous."""
    if is_torch(F):
        if not F.is_contiguous():
            return None
        flat = F.detach().reshape(-1)
        return float(sys.modules["torch"].vdot(flat, flat).real)
    if not (F.flags.c_contiguous or F.flags.f_contiguous):
        return None
    flat = np.ravel(F, order="K")
    with np.errstate(over="ignore", under="ignore", invalid="ignore"):
        return float(np.real(np.vdot(flat, flat)))


def thin_factorization(x: Array) -> contextlib.AbstractContextManager[Any]:
    """Context for a factorization of a thin block (QR, pivoted QR, small SVD) of ``x``: one BLAS
    thread for NumPy input, nothing for other kinds.

    LAPACK's threaded QR of a tall, thin block is slower with more threads (measured here on a
    4000 x 60 block: 15 ms with one thread, 365 ms with two on a busy 2-core machine), while the
    large products around it gain from them, so the limit is scoped to each such call
    (threadpoolctl, about 50 microseconds per scope) and restored after it; it acts process-wide
    while active, so it is set from the main thread only (:mod:`tcur._threads`).

    Examples
    --------
    >>> import numpy as np
    >>> from tcur._backend import thin_factorization
    >>> with thin_factorization(np.ones((4, 2))):
    ...     q, r = np.linalg.qr(np.ones((4, 2)))
    """
    return one_blas_thread() if is_numpy(x) else contextlib.nullcontext()


def power_of_two_below(xp: Any, m: Array) -> Array:
    """``2**floor(log2(m))`` for a positive finite 0-D ``m``, else 1 (dividing by it is exact),
    computed where ``m`` lives (no host synchronisation); :func:`binary_scale` is the host form.

    Examples
    --------
    >>> import numpy as np
    >>> from tcur._backend import power_of_two_below
    >>> float(power_of_two_below(np, np.float64(3.0))), float(power_of_two_below(np, np.float64(0)))
    (2.0, 1.0)
    """
    ok = (m > 0) & xp.isfinite(m)
    safe = xp.where(ok, m, xp.ones_like(m))
    return xp.where(ok, 2.0 ** xp.floor(xp.log2(safe)), xp.ones_like(m))


def unit_scaled(F: Array) -> Array:
    """``F`` times a power of two that keeps its squared norms far from over- and underflow.

    Exact (a power of two), so the pivots are unchanged; without it the squared energies that
    rank the candidates overflow or underflow at 1e+-300 (float64) and 1e+-30 (float32). The
    factor brings the largest magnitude into ``[0.5, 1)``, applied in two half steps so that
    neither factor leaves the dtype's range, computed where ``F`` lives without reading the scale
    back (no device synchronisation). A NumPy ``F`` (or a torch tensor on the CPU, where reading
    a number back costs nothing) whose largest magnitude already lies within ``2^(+-w)``, ``w``
    an eighth of the dtype's exponent range (``2^+-128`` in float64, ``2^+-16`` in float32), is
    returned as it is: its squares are as safe, and two scaled copies of a large matrix cost
    more than a pass over it (torch, 4000 x 3000 at one thread: 150 ms of a 570 ms
    ``decompose``).

    >>> import numpy as np
    >>> from tcur._backend import unit_scaled
    >>> float(np.abs(unit_scaled(np.array([[3e300, -1e300]]))).max())  # doctest: +ELLIPSIS
    0.5...
    >>> A = np.array([[3.0, -1.0]])
    >>> unit_scaled(A) is A
    True
    """
    if reads_are_free(F) and _within_safe_range(F):
        return F
    xp = namespace(F)
    peak = xp.max(xp.abs(F))
    exponent = xp.log2(power_of_two_below(xp, peak)) + 1
    half = xp.floor(exponent / 2)
    two = xp.full_like(peak, 2.0)
    return (F * two ** (-half)) * two ** (half - exponent)


def reads_are_free(x: Array) -> bool:
    """True where reading a number of ``x`` back to Python costs no device synchronisation: a
    NumPy array or a torch tensor on the CPU (the default torch path keeps its reads from other
    devices few, :mod:`tcur.linalg.pivoting`).

    Examples
    --------
    >>> import numpy as np
    >>> from tcur._backend import reads_are_free
    >>> reads_are_free(np.ones(2))
    True
    """
    return is_numpy(x) or (is_torch(x) and x.device.type == "cpu")


def _within_safe_range(F: Array) -> bool:
    """Whether the Frobenius norm of a NumPy (or CPU torch) ``F`` (which bounds its largest
    magnitude above, and ``sqrt(size)`` times it below) lies within ``2^(+-w)`` (see
    :func:`unit_scaled`). One read of ``F``, no temporary: the norm's square is a dot product of
    the flattened array, whose over- or underflow only sends ``F`` to the exact scaling."""
    size = math.prod(F.shape)
    square = _flat_square(F) if size else None
    if square is None:
        return False
    limit = 2.0 ** (math.frexp(float(_finfo(F).max))[1] // 8)
    return size / limit**2 <= square <= limit**2


def binary_scale(peak: float) -> float:
    """A power of two near a finite ``peak >= 0`` (1.0 for 0): dividing by it is exact, and
    brings the largest entry into ``[0.5, 1)`` so squares neither over- nor underflow.

    Examples
    --------
    >>> from tcur._backend import binary_scale
    >>> binary_scale(3.0), binary_scale(0.0), 1e-300 / binary_scale(1e-300) < 1
    (4.0, 1.0, True)
    """
    return math.ldexp(1.0, math.frexp(peak)[1]) if peak > 0 else 1.0


def _finfo(x: Array) -> Any:
    """Floating-point limits of the (real part of the) dtype of ``x``, in its own library."""
    if is_torch(x):
        torch = sys.modules["torch"]
        return torch.finfo((x.real if x.is_complex() else x).dtype)
    if is_foreign(x):
        return array_api_compat.array_namespace(x).finfo(x.dtype)
    return np.finfo(np.asarray(x).dtype)


def eps(x: Array) -> float:
    """Machine epsilon of the (real part of the) dtype of ``x``."""
    return float(_finfo(x).eps)


def tiny(x: Array) -> float:
    """Smallest positive normal number of the (real part of the) dtype of ``x``."""
    return float(_finfo(x).smallest_normal)


def make_rng(seed: Any) -> np.random.Generator:
    """NumPy generator from ``None`` (fresh OS entropy), an int >= 0, a ``SeedSequence`` or a
    ``Generator`` (returned as is, host-side sampling)."""
    check_seed(seed)
    if isinstance(seed, np.random.Generator):
        return seed
    return np.random.default_rng(seed)


def spawn_rngs(seed: Any, n: int) -> list[np.random.Generator]:
    """``n`` statistically independent generators derived from ``seed``.

    Used where one call draws for several purposes (e.g. a sketch and the sampling), so that
    the streams never overlap: ``SeedSequence(seed).spawn(n)`` for an int, fresh OS entropy for
    ``None`` (random every call), ``Generator.spawn`` for a generator (which advances it).

    Examples
    --------
    >>> from tcur._backend import spawn_rngs
    >>> a, b = spawn_rngs(0, 2)
    >>> bool(a.random() != b.random())
    True
    >>> spawn_rngs(0, 2)[1].random() == spawn_rngs(0, 2)[1].random()
    True
    """
    check_seed(seed)
    count = check_rank(n, "n", 2**31)
    if isinstance(seed, np.random.Generator):
        return list(seed.spawn(count))
    sequence = seed if isinstance(seed, np.random.SeedSequence) else np.random.SeedSequence(seed)
    return [np.random.default_rng(child) for child in sequence.spawn(count)]


def warn_user(message: str, category: type[Warning]) -> None:
    """Issue a warning attributed to the first frame outside the ``tcur`` package: the user's
    line, whatever route (``decompose``, ``cur``, the sparse or Dask engine) led here."""
    package = os.path.dirname(os.path.abspath(__file__))
    level = 2
    frame: types.FrameType | None = sys._getframe(1)
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(package):
        level, frame = level + 1, frame.f_back
    warnings.warn(message, category, stacklevel=level)


def _is_ndarray(x: object) -> bool:
    return isinstance(x, np.ndarray)


def arrays_equal(a: Any, b: Any) -> bool:
    """True when ``a`` and ``b`` are the same kind of array (NumPy, torch, ``scipy.sparse``
    with its format, Dask, another array-API library) with the same shape, dtype and device
    and equal entries (NaN is unequal to itself, as in :func:`numpy.array_equal`).

    Anything that is not an array is compared with ``==``. A Dask comparison is computed.

    Examples
    --------
    >>> import numpy as np
    >>> from tcur._backend import arrays_equal
    >>> arrays_equal(np.arange(3.0), np.arange(3.0)), arrays_equal(np.arange(3.0), np.arange(3))
    (True, False)
    """
    if isinstance(a, (tuple, list)) or isinstance(b, (tuple, list)):
        return (
            type(a) is type(b)
            and len(a) == len(b)
            and all(arrays_equal(x, y) for x, y in zip(a, b, strict=True))
        )
    kinds = (is_sparse, is_torch, is_dask, _is_ndarray, is_foreign)
    kind_a = next((kind for kind in kinds if kind(a)), None)
    if kind_a is None:
        return not any(kind(b) for kind in kinds) and bool(a == b)
    if not kind_a(b) or type(a) is not type(b):
        return False
    if tuple(a.shape) != tuple(b.shape) or a.dtype != b.dtype:
        return False
    if is_sparse(a):
        return a.format == b.format and (a != b).nnz == 0
    if is_torch(a):
        return a.device == b.device and bool(sys.modules["torch"].equal(a, b))
    if _is_ndarray(a):
        return bool(np.array_equal(a, b))
    if is_dask(a):
        return bool((a == b).all().compute())
    xp = array_api_compat.array_namespace(a, b)
    return array_api_compat.device(a) == array_api_compat.device(b) and bool(xp.all(a == b))


def fields_equal(self: Any, other: Any) -> Any:
    """``__eq__`` for the result dataclasses, which hold arrays: the same class and
    :func:`arrays_equal` on every compared field (the generated ``__eq__`` compares tuples of
    arrays and raises NumPy's ambiguous-truth error). ``NotImplemented`` for another class.
    The classes set ``eq=False`` and assign this, so they stay unhashable as their arrays are.
    """
    import dataclasses

    if type(other) is not type(self):
        return NotImplemented
    return all(
        arrays_equal(getattr(self, f.name), getattr(other, f.name))
        for f in dataclasses.fields(self)
        if f.compare
    )
