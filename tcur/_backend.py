"""NumPy / PyTorch dispatch.

Every public function follows one shape: resolve the backend from its arguments (:func:`namespace`),
validate and convert them (:func:`as_float_array` and friends), compute with the returned array-API
namespace ``xp``, and return arrays of the input's kind on the input's device.

torch is never imported here: a tensor can only exist if the user imported torch already, so it is
looked up in ``sys.modules``.
"""

from __future__ import annotations

import sys
from typing import Any

import array_api_compat
import numpy as np

Array = Any
"""A NumPy ndarray or a torch Tensor."""


def is_torch(x: object) -> bool:
    """Return True if ``x`` is a torch tensor (without importing torch)."""
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(x, torch.Tensor)


def kind_name(x: object) -> str:
    """Name of the array kind of ``x`` for error messages."""
    return "torch.Tensor" if is_torch(x) else type(x).__name__


def namespace(*arrays: Array) -> Any:
    """Array-API namespace shared by ``arrays``; ``TypeError`` if NumPy and torch are mixed."""
    present = [a for a in arrays if a is not None]
    kinds = {is_torch(a) for a in present}
    if len(kinds) > 1:
        names = ", ".join(sorted({kind_name(a) for a in present}))
        raise TypeError(f"arguments mix array kinds ({names}); pass all NumPy or all torch")
    return array_api_compat.array_namespace(*present)


def to_numpy(x: Array) -> np.ndarray:
    """Host NumPy copy of ``x`` (detached from autograd); no copy for NumPy input."""
    if is_torch(x):
        return x.detach().cpu().numpy()
    return np.asarray(x)


def like(values: Any, ref: Array, dtype: Any = None) -> Array:
    """Convert host ``values`` to the array kind and device of ``ref``."""
    if is_torch(ref):
        torch = sys.modules["torch"]
        return torch.as_tensor(np.asarray(values), device=ref.device, dtype=dtype)
    return np.asarray(values, dtype=dtype)


def index_array(indices: Any, ref: Array) -> Array:
    """Integer index array (int64) of ``ref``'s kind and device."""
    host = np.asarray(indices, dtype=np.int64)
    if is_torch(ref):
        return like(host, ref, dtype=sys.modules["torch"].int64)
    return host


def _float_dtype_numpy(x: np.ndarray, name: str) -> np.ndarray:
    kind = x.dtype.kind
    if kind in "biu":
        return x.astype(np.float64)
    if kind == "f" and x.dtype.itemsize < 4:
        return x.astype(np.float32)
    if kind in "fc":
        return x
    raise TypeError(f"{name} must have a numeric dtype, got dtype {x.dtype}")


def _float_dtype_torch(x: Any, name: str) -> Any:
    torch = sys.modules["torch"]
    if x.dtype in (torch.float16, torch.bfloat16):
        return x.to(torch.float32)
    if x.is_floating_point() or x.is_complex():
        return x
    if x.dtype == torch.bool or not x.is_floating_point():
        return x.to(torch.float64)
    raise TypeError(f"{name} must have a numeric dtype, got dtype {x.dtype}")  # pragma: no cover


def as_float_array(
    x: Any,
    name: str,
    *,
    ndim: int | tuple[int, ...] | None = None,
    min_ndim: int | None = None,
    finite: bool = True,
) -> Array:
    """Validate ``x`` and return it as a floating array of its own kind.

    Integers and booleans become float64, float16/bfloat16 become float32, float32/float64 and
    complex are kept. Non-array input is converted with :func:`numpy.asarray`.

    Raises
    ------
    TypeError
        If ``x`` has a non-numeric dtype.
    ValueError
        If ``x`` has the wrong number of dimensions, is empty, or (``finite=True``) holds NaN/Inf.
    """
    if is_torch(x):
        arr = _float_dtype_torch(x, name)
    else:
        try:
            arr = np.asarray(x)
        except (TypeError, ValueError) as err:
            raise TypeError(f"{name} must be a NumPy array or torch tensor: {err}") from None
        arr = _float_dtype_numpy(arr, name)
    _check_ndim(arr, name, ndim, min_ndim)
    if arr.ndim > 0 and min(arr.shape) == 0:
        raise ValueError(f"{name} must not be empty, got shape {tuple(arr.shape)}")
    if finite:
        check_finite(arr, name)
    return arr


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
    else:
        ok = bool(np.isfinite(x).all())
    if not ok:
        raise ValueError(f"{name} must not contain NaN or Inf")


def check_rank(rank: Any, name: str, upper: int) -> int:
    """Validate an integer rank-like argument in ``1..upper`` and return it as ``int``."""
    if isinstance(rank, bool) or not isinstance(rank, (int, np.integer)):
        raise TypeError(f"{name} must be an integer, got {rank!r} ({type(rank).__name__})")
    if rank < 1:
        raise ValueError(f"{name} must be >= 1, got {rank}")
    if rank > upper:
        raise ValueError(f"{name}={rank} exceeds the largest value allowed here ({upper})")
    return int(rank)


def check_choice(value: Any, name: str, choices: tuple[str, ...]) -> str:
    """Validate a string option against ``choices``."""
    if value not in choices:
        raise ValueError(f"unknown {name}={value!r}; valid names are {', '.join(choices)}")
    return str(value)


def eps(x: Array) -> float:
    """Machine epsilon of the (real part of the) dtype of ``x``."""
    if is_torch(x):
        torch = sys.modules["torch"]
        real = x.real if x.is_complex() else x
        return float(torch.finfo(real.dtype).eps)
    return float(np.finfo(np.asarray(x).dtype).eps)


def make_rng(seed: Any) -> np.random.Generator:
    """NumPy generator from ``None``, an int or an existing generator (host-side sampling)."""
    if isinstance(seed, np.random.Generator):
        return seed
    if seed is None or (isinstance(seed, (int, np.integer)) and not isinstance(seed, bool)):
        return np.random.default_rng(seed)
    raise TypeError(f"seed must be None, an int or a numpy.random.Generator, got {seed!r}")
