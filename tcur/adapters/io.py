"""Saving and loading adapters: ``adapter_config.json`` + ``adapter.safetensors``, never pickle.

The JSON file holds the config, the tcur version and, per group, its key, member modules, slice
shape, selected rows and columns, scale and a fingerprint of the frozen ``C`` and ``R``. The
safetensors file holds each group's ``dU`` (``groups.<i>.dU``) and the ``modules_to_save``
parameters (``modules_to_save.<parameter path>``). Both are written into a temporary directory
that is then renamed into place, so a crash never leaves a half-written adapter.

The fingerprint of a tensor is its Frobenius norm and its inner products with eight fixed random
unit directions, multiplied by ``sqrt(numel)`` so that they are of order ``norm``. Rounding the
base weights to float16/bfloat16 moves them by well under 1 % of the norm, while another base
model moves them by order of the norm, so ``load`` compares them with a 2 % tolerance.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from tcur.adapters.config import CURLoRAConfig, TCURLoRAConfig
from tcur.adapters.layers import TCURGroup
from tcur.adapters.model import adapter_config, adapter_groups, inject, is_adapted, unload
from tcur.adapters.plan import AdapterConfig, GroupSpec, build_group, check_counts
from tcur.adapters.targets import TargetSlice, find_targets, match_modules

CONFIG_FILE = "adapter_config.json"
WEIGHTS_FILE = "adapter.safetensors"
FORMAT_VERSION = 1
FINGERPRINT_TOL = 0.02
_CONFIG_TYPES: dict[str, type[CURLoRAConfig] | type[TCURLoRAConfig]] = {
    "CURLoRA": CURLoRAConfig,
    "tCURLoRA": TCURLoRAConfig,
}


def fingerprint(t: torch.Tensor) -> list[float]:
    """``[norm, 8 scaled random projections]`` of ``t`` (module docstring), in float64."""
    flat = t.detach().to("cpu", torch.float64).reshape(-1).numpy()
    directions = np.random.default_rng(20240607).standard_normal((8, flat.size))
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    return [float(np.linalg.norm(flat)), *(np.sqrt(flat.size) * (directions @ flat)).tolist()]


def _fingerprint_mismatch(saved: list[float], current: list[float]) -> bool:
    norm = max(abs(saved[0]), abs(current[0]), np.finfo(np.float64).tiny)
    return bool(np.max(np.abs(np.asarray(saved) - np.asarray(current))) > FINGERPRINT_TOL * norm)


def _group_record(group: TCURGroup) -> dict[str, Any]:
    dims = group.dims
    return {
        "key": group.key,
        "members": group.members,
        "shape": [dims.d_out, dims.d_in],
        "rows": group.rows,
        "cols": group.cols,
        "scale": group.scale,
        "fingerprint": {"C": fingerprint(group.C), "R": fingerprint(group.R)},
    }


def _modules_to_save(model: nn.Module, config: AdapterConfig) -> dict[str, torch.Tensor]:
    if config.modules_to_save is None:
        return {}
    tensors = {}
    for name, module in match_modules(model, config.modules_to_save, "modules_to_save"):
        for pname, parameter in module.named_parameters():
            tensors[f"modules_to_save.{name}.{pname}"] = parameter.detach()
    return tensors


def save(model: nn.Module, directory: str | os.PathLike[str]) -> Path:
    """Write the adapters of ``model`` to ``directory`` (created or atomically replaced).

    Parameters
    ----------
    model : torch.nn.Module
        A model adapted with :func:`tcur.adapters.apply` (or :func:`load`).
    directory : path

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
    ['adapter.safetensors', 'adapter_config.json']
    """
    from tcur import __version__

    config = adapter_config(model)
    groups = adapter_groups(model)
    meta = {
        "format_version": FORMAT_VERSION,
        "tcur_version": __version__,
        "adapter_type": "CURLoRA" if isinstance(config, CURLoRAConfig) else "tCURLoRA",
        "config": config.to_dict(),
        "groups": [_group_record(g) for g in groups],
    }
    tensors = {f"groups.{i}.dU": g.dU.detach() for i, g in enumerate(groups)}
    tensors.update(_modules_to_save(model, config))
    tensors = {k: v.to("cpu").contiguous() for k, v in tensors.items()}
    return _write_atomically(Path(directory), meta, tensors)


def _write_atomically(target: Path, meta: dict[str, Any], tensors: dict[str, torch.Tensor]) -> Path:
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        (staging / CONFIG_FILE).write_text(json.dumps(meta, indent=2) + "\n")
        save_file(tensors, str(staging / WEIGHTS_FILE), metadata={"format": "pt"})
        old = None
        if target.exists():
            old = target.parent / f".{target.name}.old-{staging.name.rsplit('-', 1)[-1]}"
            target.rename(old)
        staging.rename(target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    return target


def _read_meta(directory: Path) -> tuple[dict[str, Any], AdapterConfig]:
    path = directory / CONFIG_FILE
    if not path.is_file():
        raise ValueError(f"{directory} holds no {CONFIG_FILE}")
    meta = json.loads(path.read_text())
    if meta.get("format_version") != FORMAT_VERSION:
        raise ValueError(
            f"{path}: format_version {meta.get('format_version')!r} is not {FORMAT_VERSION}"
        )
    kind = meta.get("adapter_type")
    if kind not in _CONFIG_TYPES:
        raise ValueError(f"{path}: unknown adapter_type {kind!r}")
    return meta, _CONFIG_TYPES[kind].from_dict(meta["config"])


def _spec_from_record(
    index: int, record: dict[str, Any], slices: dict[str, TargetSlice], config: AdapterConfig
) -> GroupSpec:
    key = record["key"]
    members = []
    for label in record["members"]:
        if label not in slices:
            raise ValueError(f"group {index} ({key!r}): module {label!r} is not in the model")
        members.append(slices[label])
    shape = tuple(record["shape"])
    for target in members:
        if target.shape != shape:
            raise ValueError(
                f"group {index} ({key!r}): {target.label} has shape {target.shape}, saved {shape}"
            )
    check_counts(key, members[0].shape, config)
    for name, values, limit in (
        ("rows", record["rows"], shape[0]),
        ("cols", record["cols"], shape[1]),
    ):
        if not all(isinstance(v, int) and 0 <= v < limit for v in values):
            raise ValueError(f"group {index} ({key!r}): saved {name} out of range 0..{limit - 1}")
    return GroupSpec(key, members, list(record["rows"]), list(record["cols"]))


def _check_fingerprint(index: int, group: TCURGroup, record: dict[str, Any]) -> None:
    for name, tensor in (("C", group.C), ("R", group.R)):
        if _fingerprint_mismatch(record["fingerprint"][name], fingerprint(tensor)):
            raise ValueError(
                f"group {index} ({group.key!r}): the frozen {name} of this model does not match "
                "the saved fingerprint; the adapter was trained on a different base model"
            )


def _load_tensors(model: nn.Module, groups: list[TCURGroup], path: Path) -> None:
    tensors = load_file(str(path))
    expected = {f"groups.{i}.dU": g.dU for i, g in enumerate(groups)}
    parameters = dict(model.named_parameters())
    for key in _modules_to_save(model, adapter_config(model)):
        expected[key] = parameters[key.removeprefix("modules_to_save.")]
    missing = sorted(set(expected) - set(tensors))
    extra = sorted(set(tensors) - set(expected))
    if missing or extra:
        first = missing[0] if missing else extra[0]
        raise ValueError(f"{path}: tensor {first!r} is {'missing' if missing else 'unexpected'}")
    for key, parameter in expected.items():
        if tuple(tensors[key].shape) != tuple(parameter.shape):
            raise ValueError(
                f"{path}: tensor {key!r} has shape {tuple(tensors[key].shape)}, "
                f"the model expects {tuple(parameter.shape)}"
            )
    with torch.no_grad():
        for key, parameter in expected.items():
            parameter.copy_(tensors[key])


def load(model: nn.Module, directory: str | os.PathLike[str]) -> nn.Module:
    """Add the adapters saved in ``directory`` to the base ``model`` (in place) and return it.

    The config, every group's member modules and shapes, the saved indices and the fingerprint
    of the frozen ``C``/``R`` are checked before the model is changed; the first mismatch raises
    ``ValueError`` naming it (an adapter trained on another base model is refused).

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
    ValueError: group 0 ('0'): the frozen C of this model does not match the saved fingerprint; ...
    """
    directory = Path(directory)
    meta, config = _read_meta(directory)
    if is_adapted(model):
        raise ValueError("model already has tcur adapters; load into the base model")
    split = config.split_fused if isinstance(config, TCURLoRAConfig) else None
    slices = {s.label: s for s in find_targets(model, config.target_modules, split)}
    built = []
    for index, record in enumerate(meta["groups"]):
        spec = _spec_from_record(index, record, slices, config)
        group = build_group(spec, config, scale=float(record["scale"]))
        _check_fingerprint(index, group, record)
        built.append((group, spec))
    inject(model, config, built)
    try:
        _load_tensors(model, [g for g, _ in built], directory / WEIGHTS_FILE)
    except BaseException:
        unload(model)
        raise
    return model
