"""Saving and loading adapters: ``adapter_config.json`` + ``adapter.safetensors``, never pickle.

The JSON file holds the config, the tcur version and, per group, its key, member modules, slice
shape, selected rows and columns, scale, the SHA-256 of every member's base weight rounded to
bfloat16 and to float16 and the weights' dtype (:mod:`tcur.adapters.fingerprint`: a float32
adapter loads on a bfloat16 or float16 copy of its base). The safetensors file holds each
group's ``dU`` (``groups.<i>.dU``; with ``basis="gradient"`` also its ``C`` and ``R``,
``groups.<i>.C``/``.R``, which cannot be recomputed from the base model; the JSON then records no
rows or columns) and the ``modules_to_save`` parameters and persistent
buffers, e.g. BatchNorm's running statistics (``modules_to_save.<path>``; files written before
buffers were saved, without ``"modules_to_save_buffers": true`` in the JSON, still load,
parameters only).
``adapter_manifest.json`` lists both files with their SHA-256 and is the commit point.

Writing. :func:`save` writes only these three files into the directory (created if needed) and
never deletes, moves or overwrites anything else there. Both data files are first written in full
to temporary files in the same directory; then the manifest is replaced (``os.replace``, atomic)
by one that names the new checksums and the temporary names; then each temporary file is
``os.replace``d onto its final name. :func:`load` takes, for each file, whichever of the final and
the temporary name has the manifest's checksum. So a crash at any point leaves a readable adapter:
the previous one (manifest not yet replaced) or the new one (manifest replaced), never a mix.
Temporary files that an interrupted save left behind (``.adapter*.<12 hex digits>.tmp``) are
removed by the next successful save; two saves into one directory at the same time are not
supported. Under ``torch.distributed`` only rank 0 writes; every rank returns (or raises) once
it is done.

Reading. :func:`load` validates everything before it touches the model: the checksums, the JSON
structure and types of every field, the config, each group's members, shapes, indices, counts and
scale, the base weights' checksums (naming the first module that differs) and every tensor's
presence, floating dtype, shape and finiteness. A refusal is a ``ValueError`` naming the file and
the field, and the model is left exactly as it was.
"""

from __future__ import annotations

import json
import math
import os
import re
import secrets
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors
from torch import nn

from tcur import __version__
from tcur.adapters.config import CURLoRAConfig, TCURLoRAConfig
from tcur.adapters.fingerprint import file_digest
from tcur.adapters.model import (
    adapter_config,
    adapter_groups,
    full_tensor,
    inject,
    is_adapted,
)
from tcur.adapters.plan import (
    WEIGHT_DTYPES,
    AdapterConfig,
    GroupSpec,
    build_group,
    check_base_weights,
    check_coverage,
    check_not_sharded,
    config_targets,
    counts,
    group_record,
    match_modules_to_save,
    selected_counts,
    spec_from_record,
)
from tcur.adapters.targets import TargetSlice, match_modules

CONFIG_FILE = "adapter_config.json"
WEIGHTS_FILE = "adapter.safetensors"
MANIFEST_FILE = "adapter_manifest.json"
FORMAT_VERSION = 3
READABLE_VERSIONS = (2, 3)
"""Version 3 added ``basis="gradient"`` (its ``C``/``R`` saved as ``groups.<i>.C``/``.R``, and
no rows or columns); a version-2 file is a version-3 file with the default basis."""
_CONFIG_TYPES: dict[str, type[CURLoRAConfig] | type[TCURLoRAConfig]] = {
    "CURLoRA": CURLoRAConfig,
    "tCURLoRA": TCURLoRAConfig,
}


def save(model: nn.Module, directory: str | os.PathLike[str]) -> Path:
    """Write the adapters of ``model`` into ``directory``, leaving every other file alone.

    Parameters
    ----------
    model : torch.nn.Module
        A model adapted with :func:`tcur.adapters.apply` (or :func:`load`).
    directory : path
        Created if missing; an existing file there is a ``ValueError``. Only
        ``adapter_config.json``, ``adapter.safetensors`` and ``adapter_manifest.json`` are
        written (module docstring: atomic, crash-safe, rank 0 only under torch.distributed).

    Returns
    -------
    pathlib.Path
        The directory.

    Examples
    --------
    >>> import tempfile, torch
    >>> from tcur.adapters import CURLoRAConfig, apply, save
    >>> model = apply(torch.nn.Sequential(torch.nn.Linear(6, 6)), CURLoRAConfig(["0"], rank=2))
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     path = save(model, tmp + "/adapter")
    ...     sorted(p.name for p in path.iterdir())
    ['adapter.safetensors', 'adapter_config.json', 'adapter_manifest.json']
    """
    target = Path(directory)
    config = adapter_config(model)
    tensors = _adapter_tensors(model, config)  # FSDP2: every rank takes part in the gather
    if not (dist.is_available() and dist.is_initialized()):
        _write_files(target, _serialize(model, config, tensors))
        return target
    message: list[str | None] = [None]
    if dist.get_rank() == 0:
        try:
            _write_files(target, _serialize(model, config, tensors))
        except Exception as exc:
            message = [f"{type(exc).__name__}: {exc}"]
            dist.broadcast_object_list(message, src=0)
            raise
    dist.broadcast_object_list(message, src=0)  # the others wait here for rank 0
    if message[0] is not None:
        raise RuntimeError(f"rank 0 failed to save the adapter to {target}: {message[0]}")
    return target


def _adapter_tensors(model: nn.Module, config: AdapterConfig) -> dict[str, torch.Tensor]:
    """Each group's ``dU`` (and ``C``/``R`` for gradient bases) and the ``modules_to_save``
    tensors, whole (DTensors gathered)."""
    tensors: dict[str, torch.Tensor] = {}
    for i, group in enumerate(adapter_groups(model)):
        tensors[f"groups.{i}.dU"] = group.dU
        if config.basis == "gradient":
            tensors.update({f"groups.{i}.C": group.C, f"groups.{i}.R": group.R})
    if config.modules_to_save is not None:
        matched = match_modules(model, config.modules_to_save, "modules_to_save")
        tensors.update(_modules_to_save(matched))
    return {k: full_tensor(v.detach()).to("cpu").contiguous() for k, v in tensors.items()}


def _serialize(
    model: nn.Module, config: AdapterConfig, tensors: dict[str, torch.Tensor]
) -> dict[str, bytes]:
    """The bytes of ``adapter_config.json`` and ``adapter.safetensors`` (``tensors`` gathered)."""
    groups = adapter_groups(model)
    meta = {
        "format_version": FORMAT_VERSION,
        "tcur_version": __version__,
        "adapter_type": "CURLoRA" if isinstance(config, CURLoRAConfig) else "tCURLoRA",
        "config": config.to_dict(),
        "groups": [group_record(g) for g in groups],
        "modules_to_save_buffers": True,
    }
    return {
        CONFIG_FILE: (json.dumps(meta, indent=2) + "\n").encode(),
        WEIGHTS_FILE: save_safetensors(tensors, metadata={"format": "pt"}),
    }


def _modules_to_save(
    modules: Sequence[tuple[str, nn.Module]], buffers: bool = True
) -> dict[str, torch.Tensor]:
    """``modules_to_save.<module>.<name>`` -> tensor: every parameter and, with ``buffers``,
    every persistent buffer (BatchNorm's running statistics) of the matched ``modules``."""
    tensors: dict[str, torch.Tensor] = {}
    for name, module in modules:
        for pname, parameter in module.named_parameters():
            tensors[f"modules_to_save.{name}.{pname}"] = parameter
        if buffers:
            state = module.state_dict(keep_vars=True)
            for bname, buffer in module.named_buffers():
                if bname in state:  # persistent buffers only
                    tensors[f"modules_to_save.{name}.{bname}"] = buffer
    return tensors


def _write_files(target: Path, files: Mapping[str, bytes]) -> None:
    """Stage every file, commit the manifest, then move the staged files into place."""
    _check_writable(target)
    target.mkdir(parents=True, exist_ok=True)
    token = secrets.token_hex(6)
    staged = {name: f".{name}.{token}.tmp" for name in files}
    try:
        for name, data in files.items():
            _write_durably(target / staged[name], data)
        entries = {n: {"sha256": file_digest(d), "staged": staged[n]} for n, d in files.items()}
        manifest = {"format_version": FORMAT_VERSION, "files": entries}
        manifest_tmp = target / f".{MANIFEST_FILE}.{token}.tmp"
        _write_durably(manifest_tmp, (json.dumps(manifest, indent=2) + "\n").encode())
        os.replace(manifest_tmp, target / MANIFEST_FILE)
        for name in files:
            os.replace(target / staged[name], target / name)
        _remove_stale(target)
    finally:
        for leftover in [*staged.values(), f".{MANIFEST_FILE}.{token}.tmp"]:
            if (target / leftover).exists() and not _committed(target, leftover):
                (target / leftover).unlink()
        _sync_directory(target)


def _check_writable(target: Path) -> None:
    """``ValueError`` if ``target`` cannot hold a saved adapter without harm: it, or the nearest
    existing folder above it, is a file; or it holds another program's ``adapter_config.json``
    (a PEFT adapter's: same file name, no ``adapter_manifest.json``), which saving would
    overwrite."""
    existing = next((p for p in (target, *target.parents) if p.exists()), None)
    if existing is not None and not existing.is_dir():
        where = "" if existing == target else f" (its parent {str(existing)!r} is a file)"
        raise ValueError(f"directory {str(target)!r} is an existing file, not a directory{where}")
    if (target / CONFIG_FILE).exists() and not (target / MANIFEST_FILE).exists():
        raise ValueError(
            f"directory {str(target)!r} holds an {CONFIG_FILE} that is not a tcur adapter's (no "
            f"{MANIFEST_FILE}; a PEFT adapter?), which saving would overwrite; choose another "
            "directory"
        )


_STAGED = re.compile(
    r"\.(" + "|".join(re.escape(n) for n in (CONFIG_FILE, WEIGHTS_FILE, MANIFEST_FILE)) + r")"
    r"\.[0-9a-f]{12}\.tmp"
)


def _remove_stale(target: Path) -> None:
    """Remove temporary files an earlier, interrupted :func:`save` left (only ours, by name)."""
    for path in target.iterdir():
        if _STAGED.fullmatch(path.name) and path.is_file():
            path.unlink()


def _committed(target: Path, staged_name: str) -> bool:
    """True if the manifest in ``target`` names ``staged_name`` (it must not be removed)."""
    try:
        entries = json.loads((target / MANIFEST_FILE).read_text())["files"]
        return any(entry.get("staged") == staged_name for entry in entries.values())
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return False


def _write_durably(path: Path, data: bytes) -> None:
    with open(path, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def _sync_directory(path: Path) -> None:
    if os.name != "posix":
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _read_manifest(directory: Path) -> tuple[int, dict[str, dict[str, str]]]:
    """The manifest's format version and its file entries, checked."""
    path = directory / MANIFEST_FILE
    if not path.is_file():
        raise ValueError(f"{directory} holds no {MANIFEST_FILE} (not a saved tcur adapter)")
    manifest = _parse_json(path.read_bytes(), path)
    version = manifest.get("format_version")
    if version not in READABLE_VERSIONS:
        raise ValueError(f"{path}: format_version {version!r} is not one of {READABLE_VERSIONS}")
    files = _field(manifest, "files", dict, path, "")
    for name in (CONFIG_FILE, WEIGHTS_FILE):
        entry = _field(files, name, dict, path, "files")
        _field(entry, "sha256", str, path, f"files.{name}")
        _field(entry, "staged", str, path, f"files.{name}")
    return version, files


def _read_verified(directory: Path, name: str, entry: Mapping[str, str]) -> bytes:
    """The contents of ``name`` (final or staged copy) whose SHA-256 the manifest records."""
    for candidate in (name, entry["staged"]):
        path = directory / Path(candidate).name
        if path.is_file():
            data = path.read_bytes()
            if file_digest(data) == entry["sha256"]:
                return data
    raise ValueError(
        f"{directory / name}: missing or its SHA-256 differs from {MANIFEST_FILE} "
        "(corrupt, truncated or changed after saving)"
    )


def _parse_json(data: bytes, path: Path) -> dict[str, Any]:
    try:
        value = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: malformed JSON ({exc})") from None
    if not isinstance(value, dict):
        raise ValueError(f"{path}: expected a JSON object, got {type(value).__name__}")
    return value


def _field(
    obj: Mapping[str, Any], name: str, kind: type | tuple[type, ...], path: Path, where: str
) -> Any:
    label = f"{where}.{name}" if where else name
    if name not in obj:
        raise ValueError(f"{path}: field {label!r} is missing")
    value = obj[name]
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        kinds = kind if isinstance(kind, tuple) else (kind,)
        expected = " or ".join(k.__name__ for k in kinds)
        raise ValueError(f"{path}: field {label!r} must be {expected}, got {value!r}")
    return value


def _parse_meta(data: bytes, path: Path) -> tuple[dict[str, Any], AdapterConfig]:
    meta = _parse_json(data, path)
    version = meta.get("format_version")
    if version not in READABLE_VERSIONS:
        raise ValueError(f"{path}: format_version {version!r} is not one of {READABLE_VERSIONS}")
    kind = _field(meta, "adapter_type", str, path, "")
    if kind not in _CONFIG_TYPES:
        raise ValueError(f"{path}: field 'adapter_type' is unknown: {kind!r}")
    raw = _field(meta, "config", dict, path, "")
    try:
        config = _CONFIG_TYPES[kind].from_dict(raw)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{path}: field 'config' is invalid: {exc}") from None
    if version == 2 and config.basis != "columns":
        raise ValueError(f"{path}: format_version 2 has no basis={config.basis!r}")
    groups = _field(meta, "groups", list, path, "")
    if not groups:
        raise ValueError(f"{path}: field 'groups' is empty")
    for index, record in enumerate(groups):
        _check_record(record, index, path, config)
    return meta, config


def _check_record(record: Any, index: int, path: Path, config: AdapterConfig) -> None:
    where = f"groups[{index}]"
    if not isinstance(record, dict):
        raise ValueError(f"{path}: field {where!r} must be an object, got {record!r}")
    _field(record, "key", str, path, where)
    members = _field(record, "members", list, path, where)
    if not members or not all(isinstance(m, str) for m in members):
        raise ValueError(f"{path}: field '{where}.members' must be a non-empty list of names")
    shape = _field(record, "shape", list, path, where)
    if len(shape) != 2 or not all(_is_int(v) and v >= 1 for v in shape):
        raise ValueError(f"{path}: field '{where}.shape' must be two positive ints, got {shape}")
    n_rows, n_cols = selected_counts(config)
    for name, count, limit in (("rows", n_rows, shape[0]), ("cols", n_cols, shape[1])):
        values = _field(record, name, list, path, where)
        if len(values) != count:
            raise ValueError(
                f"{path}: field '{where}.{name}' has {len(values)} entries but the config "
                f"selects {count}"
            )
        if not all(_is_int(v) and 0 <= v < limit for v in values) or len(set(values)) != count:
            raise ValueError(
                f"{path}: field '{where}.{name}' must hold distinct ints in 0..{limit - 1}"
            )
    scale = _field(record, "scale", (int, float), path, where)
    if not math.isfinite(scale):
        raise ValueError(f"{path}: field '{where}.scale' must be finite, got {scale!r}")
    for name in ("weights_sha256", "weights_sha256_f16"):
        if name == "weights_sha256_f16" and name not in record:
            continue  # written before float16 digests were kept
        digests = _field(record, name, list, path, where)
        if len(digests) != len(members) or not all(_is_hex_digest(d) for d in digests):
            raise ValueError(f"{path}: field '{where}.{name}' must hold one hex SHA-256 per member")
    if "weights_dtype" in record:
        dtype = _field(record, "weights_dtype", str, path, where)
        if WEIGHT_DTYPES.get(dtype) is None:
            raise ValueError(
                f"{path}: field '{where}.weights_dtype' must be one of {sorted(WEIGHT_DTYPES)}, "
                f"got {dtype!r}"
            )


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_hex_digest(value: Any) -> bool:
    hexdigits = "0123456789abcdef"
    return isinstance(value, str) and len(value) == 64 and all(c in hexdigits for c in value)


def _spec_from_record(
    index: int, record: dict[str, Any], slices: dict[str, TargetSlice], config: AdapterConfig
) -> GroupSpec:
    spec = spec_from_record(index, record, slices, config)
    check_base_weights(index, record, spec)
    return spec


def _parse_tensors(data: bytes, path: Path) -> dict[str, torch.Tensor]:
    try:
        return load_safetensors(data)
    except Exception as exc:  # safetensors raises its own error types for bad headers
        raise ValueError(f"{path}: not a valid safetensors file ({exc})") from None


def _check_tensors(
    tensors: Mapping[str, torch.Tensor], expected: Mapping[str, torch.Tensor], path: Path
) -> None:
    """Every tensor of ``expected`` is in ``tensors`` (and nothing else) with its shape, a dtype
    of the same kind (floating or not) and, if floating, only finite entries."""
    missing = sorted(set(expected) - set(tensors))
    extra = sorted(set(tensors) - set(expected))
    if missing or extra:
        first = missing[0] if missing else extra[0]
        raise ValueError(f"{path}: tensor {first!r} is {'missing' if missing else 'unexpected'}")
    for key, own in expected.items():
        tensor = tensors[key]
        floating = own.dtype.is_floating_point
        if tensor.dtype.is_floating_point != floating:
            kind = "a floating" if floating else "an integer or bool"
            raise ValueError(
                f"{path}: tensor {key!r} has dtype {tensor.dtype}; {kind} dtype is required"
            )
        if tuple(tensor.shape) != tuple(own.shape):
            raise ValueError(
                f"{path}: tensor {key!r} has shape {tuple(tensor.shape)}, the model expects "
                f"{tuple(own.shape)}"
            )
        if floating and not bool(torch.isfinite(tensor).all()):
            raise ValueError(f"{path}: tensor {key!r} has NaN or infinite entries")


def load(model: nn.Module, directory: str | os.PathLike[str]) -> nn.Module:
    """Add the adapters saved in ``directory`` to the base ``model`` (in place) and return it.

    Everything is validated before the model is changed (module docstring); the first problem
    raises ``ValueError`` naming the file and field, or the first base module whose weight
    differs from the one the adapter was saved from, and ``model`` stays exactly as it was.

    Examples
    --------
    >>> import tempfile, torch
    >>> from tcur.adapters import CURLoRAConfig, apply, load, save
    >>> torch.manual_seed(0) and None
    >>> base = torch.nn.Sequential(torch.nn.Linear(6, 6))
    >>> model = apply(torch.nn.Sequential(torch.nn.Linear(6, 6)), CURLoRAConfig(["0"], rank=2))
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     _ = save(model, tmp)
    ...     load(base, tmp)  # another random Linear: refused
    Traceback (most recent call last):
    ...
    ValueError: group 0 ('0'): the weight of module '0' differs from the base model ...
    """
    directory = Path(directory)
    if is_adapted(model):
        raise ValueError("model already has tcur adapters; load into the base model")
    check_not_sharded(model)  # the base weights are checked whole: load before fully_shard
    version, manifest = _read_manifest(directory)
    meta, config = _parse_meta(
        _read_verified(directory, CONFIG_FILE, manifest[CONFIG_FILE]), directory / CONFIG_FILE
    )
    if meta["format_version"] != version:
        raise ValueError(
            f"{directory / CONFIG_FILE}: format_version {meta['format_version']} differs from "
            f"the manifest's {version}"
        )
    slices = {s.label: s for s in config_targets(model, config)}
    check_coverage(meta["groups"], slices)
    matched = match_modules_to_save(model, config.modules_to_save, list(slices.values()))
    specs = [_spec_from_record(i, r, slices, config) for i, r in enumerate(meta["groups"])]
    weights_path = directory / WEIGHTS_FILE
    tensors = _parse_tensors(
        _read_verified(directory, WEIGHTS_FILE, manifest[WEIGHTS_FILE]), weights_path
    )
    buffers = meta.get("modules_to_save_buffers") is True  # files written before: parameters
    saved_modules = _modules_to_save(matched, buffers)
    expected = _expected_group_tensors(specs, config)
    expected.update(saved_modules)
    _check_tensors(tensors, expected, weights_path)
    built = [
        (
            build_group(
                spec, config, scale=float(record["scale"]), bases=_bases(tensors, i, weights_path)
            ),
            spec,
        )
        for i, (spec, record) in enumerate(zip(specs, meta["groups"], strict=True))
    ]
    with torch.no_grad():
        for i, (group, _) in enumerate(built):
            group.dU.copy_(tensors[f"groups.{i}.dU"])
    inject(model, config, built, matched)
    with torch.no_grad():
        for key, tensor in saved_modules.items():
            tensor.copy_(tensors[key])
    return model


def _expected_group_tensors(
    specs: Sequence[GroupSpec], config: AdapterConfig
) -> dict[str, torch.Tensor]:
    """Shape-only (meta) stand-ins of each group's saved tensors: ``dU``, and ``C``/``R`` for
    gradient bases."""
    n_rows, n_cols = counts(config)
    expected = {}
    for i, spec in enumerate(specs):
        (d_out, d_in), n3 = spec.shape, len(spec.slices)
        expected[f"groups.{i}.dU"] = torch.empty(n_cols, n_rows, n3, device="meta")
        if config.basis == "gradient":
            expected[f"groups.{i}.C"] = torch.empty(d_out, n_cols, n3, device="meta")
            expected[f"groups.{i}.R"] = torch.empty(n_rows, d_in, n3, device="meta")
    return expected


def _bases(
    tensors: Mapping[str, torch.Tensor], index: int, path: Path
) -> tuple[torch.Tensor, torch.Tensor] | None:
    """The saved ``(C, R)`` of group ``index`` if the adapter has gradient bases; ``ValueError``
    if one is zero (that adapter could never act)."""
    bases = tensors.get(f"groups.{index}.C"), tensors.get(f"groups.{index}.R")
    for name, basis in zip(("C", "R"), bases, strict=True):
        if basis is not None and not bool(basis.any()):
            raise ValueError(
                f"{path}: tensor 'groups.{index}.{name}' is zero (a basis must span something)"
            )
    C, R = bases
    return None if C is None or R is None else (C, R)
