"""Checksums that tie an adapter to the base weights and the config it was built from.

An adapter's frozen ``C``/``R`` are copies of its target weights, and its ``dU`` only makes sense
next to them, so a saved adapter (and an adapted model's ``state_dict``) records a SHA-256 of every
target weight. The digest is taken of the ``(out, in)`` weight rounded to **bfloat16**, row-major,
little-endian. Rounding first makes the digest survive the common precision round trips: an adapter
saved from a float32 model is accepted on the bfloat16 copy of the same model and the other way
round (rounding float32 to bfloat16 is exact and idempotent). Any other change of a weight that
survives bfloat16 rounding is refused, anywhere in the matrix. A float16 copy of a float32 model
is *not* guaranteed to match (rounding through float16 first can land on another bfloat16 value);
save and load in float16 on both sides, or use float32/bfloat16.

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


def weight_digest(weight: torch.Tensor) -> bytes:
    """SHA-256 of ``weight`` rounded to bfloat16 (C order, little-endian), 32 bytes.

    Examples
    --------
    >>> import torch
    >>> from tcur.adapters.fingerprint import weight_digest
    >>> w = torch.randn(4, 3)
    >>> weight_digest(w) == weight_digest(w.to(torch.bfloat16))
    True
    >>> weight_digest(w) == weight_digest(w + 1.0)
    False
    """
    canonical = weight.detach().to("cpu", torch.float32).to(torch.bfloat16).contiguous()
    raw = canonical.view(torch.int16).numpy().astype("<i2", copy=False).tobytes()
    header = json.dumps(list(canonical.shape)).encode()
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
    defining = {k: v for k, v in config_dict.items() if k not in RUNTIME_FIELDS}
    text = json.dumps(defining, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).digest()


def file_digest(data: bytes) -> str:
    """Hex SHA-256 of file contents (the manifest's checksum)."""
    return hashlib.sha256(data).hexdigest()
