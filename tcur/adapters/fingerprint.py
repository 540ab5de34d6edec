"""Checksums that tie an adapter to the base weights and the config it was built from.

An adapter's frozen ``C``/``R`` are copies of its target weights, and its ``dU`` only makes sense
next to them, so a saved adapter (and an adapted model's ``state_dict``) records a SHA-256 of every
target weight, together with the dtype the weights had. Two digests are kept, of the ``(out, in)``
weight rounded to **bfloat16** and to **float16** (row-major, little-endian), so that the common
precision round trips are recognised as the same base model: weights are compared after rounding
both sides to the lower of the two precisions (:func:`comparison_rounding`).

- float32 (or float64) against bfloat16, or two equal dtypes: bfloat16 digests. Rounding float32
  to bfloat16 is exact and idempotent, so a bfloat16 copy of a float32 model matches.
- float32 (or float64) against float16: float16 digests (a float16 copy is exactly the float16
  rounding of the float32 weights; the bfloat16 digest could differ through double rounding).
- float16 against bfloat16: neither is a rounding of the other, so only weights whose bfloat16
  roundings agree match; a refusal then says that the dtypes, not necessarily the weights, differ.

Records written before the dtype was kept have only the bfloat16 digest and are compared with it.
Any other change of a weight that survives the rounding is refused, anywhere in the matrix.

:func:`config_digest` hashes the fields of a config that define the adapter (everything except the
run-time options ``forward``, ``dropout``, ``autocast_adapter_dtype`` and ``exact_unmerge``).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from typing import Any

import torch

RUNTIME_FIELDS = ("forward", "dropout", "autocast_adapter_dtype", "exact_unmerge")
"""Config fields that change how an adapter runs, not what it is."""
LATER_DEFAULTS = {"basis": "columns"}
"""Defining fields added after adapters were first saved, with the value every earlier adapter
had: left out of the digest at that value, so earlier adapters' digests stay valid."""


DTYPE_CODES: dict[torch.dtype, int] = {
    torch.float32: 1,
    torch.float16: 2,
    torch.bfloat16: 3,
    torch.float64: 4,
}
"""Codes of the weights' dtype in an adapter group's ``weights_dtype`` buffer (0: not recorded)."""


def dtype_code(dtype: torch.dtype) -> int:
    """The :data:`DTYPE_CODES` entry of ``dtype`` (0 for any other dtype)."""
    return DTYPE_CODES.get(dtype, 0)


def code_dtype(code: int) -> torch.dtype | None:
    """Inverse of :func:`dtype_code` (``None`` for 0 or an unknown code)."""
    return next((dtype for dtype, c in DTYPE_CODES.items() if c == code), None)


def comparison_rounding(saved: torch.dtype | None, own: torch.dtype | None) -> torch.dtype:
    """The precision two weights are compared in: the lower of ``saved`` and ``own``.

    ``float16`` when one side is float16 and the other float32 or float64, else ``bfloat16``
    (also when a side is not recorded, ``None``). See the module docstring.

    Examples
    --------
    >>> import torch
    >>> from tcur.adapters.fingerprint import comparison_rounding
    >>> comparison_rounding(torch.float32, torch.float16)
    torch.float16
    >>> comparison_rounding(torch.float32, torch.bfloat16), comparison_rounding(None, torch.half)
    (torch.bfloat16, torch.bfloat16)
    """
    wide = (torch.float32, torch.float64)
    pair = {saved, own}
    if torch.float16 in pair and (saved in wide or own in wide):
        return torch.float16
    return torch.bfloat16


def incomparable(saved: torch.dtype | None, own: torch.dtype | None) -> bool:
    """True for a float16 / bfloat16 pair: neither weight is a rounding of the other."""
    return {saved, own} == {torch.float16, torch.bfloat16}


def weight_digest(weight: torch.Tensor, rounding: torch.dtype = torch.bfloat16) -> bytes:
    """SHA-256 of ``weight`` rounded to ``rounding`` (bfloat16 or float16; C order,
    little-endian), 32 bytes.

    Examples
    --------
    >>> import torch
    >>> from tcur.adapters.fingerprint import weight_digest
    >>> w = torch.randn(4, 3)
    >>> weight_digest(w) == weight_digest(w.to(torch.bfloat16))
    True
    >>> weight_digest(w, torch.float16) == weight_digest(w.half(), torch.float16)
    True
    >>> weight_digest(w) == weight_digest(w + 1.0)
    False
    """
    if rounding not in (torch.bfloat16, torch.float16):
        raise ValueError(f"rounding must be torch.bfloat16 or torch.float16, got {rounding}")
    canonical = weight.detach().to("cpu", torch.float32).to(rounding).contiguous()
    raw = canonical.view(torch.int16).numpy().astype("<i2", copy=False).tobytes()
    header = json.dumps(list(canonical.shape)).encode()
    if rounding == torch.float16:
        header = b"float16:" + header  # never equal to a bfloat16 digest
    return hashlib.sha256(header + b"\0" + raw).digest()


def combined_digest(parts: Iterable[bytes]) -> bytes:
    """SHA-256 over several digests, in order (the digest of a group of weights)."""
    sha = hashlib.sha256()
    for part in parts:
        sha.update(part)
    return sha.digest()


def config_digest(config_dict: Mapping[str, Any]) -> bytes:
    """SHA-256 of the defining fields of a config's ``to_dict()`` (canonical JSON).

    Examples
    --------
    >>> from tcur.adapters import TCURLoRAConfig
    >>> from tcur.adapters.fingerprint import config_digest
    >>> a = TCURLoRAConfig(["query"], rank=4).to_dict()
    >>> config_digest(a) == config_digest({**a, "forward": "factored"})
    True
    >>> config_digest(a) == config_digest({**a, "rank": 5})
    False
    """
    defining = {
        k: v
        for k, v in config_dict.items()
        if k not in RUNTIME_FIELDS and not (k in LATER_DEFAULTS and v == LATER_DEFAULTS[k])
    }
    text = json.dumps(defining, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).digest()


def file_digest(data: bytes) -> str:
    """Hex SHA-256 of file contents (the manifest's checksum)."""
    return hashlib.sha256(data).hexdigest()
