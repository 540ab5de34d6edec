"""Gradient bases (``basis="gradient"``): checking the targets' loss gradients, and the bases.

:func:`tcur.adapters.loss_gradients` sums the loss gradient of every target weight of a config
over a few calibration batches; :func:`check_gradients` checks them against the targets before
a model is changed, and :func:`gradient_bases` turns one group's stack of them into
frozen ``C`` and ``R``: its leading left and right t-singular vectors (:func:`tcur.linalg.tsvd`;
plain singular vectors for one matrix). The trained core ``dU`` then moves the weights first
along the directions that the task's loss pulls them (LoRA-One / LoRA-SB's initialisation,
carried to the t-product), instead of along the base weights' own columns and rows.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from tcur.adapters.targets import TargetSlice
from tcur.linalg import tsvd, ttranspose

__all__ = ["check_gradients", "gradient_bases"]


def check_gradients(
    gradients: Any, slices: Sequence[TargetSlice], basis: str
) -> Mapping[str, torch.Tensor] | None:
    """``gradients`` checked against the config's basis and its target ``slices``.

    ``None`` for ``basis="columns"`` (where passing gradients is a ``ValueError``: they would be
    ignored); for ``basis="gradient"`` a mapping holding, for every target weight, a finite
    floating tensor of that weight's stored shape (``ValueError``/``TypeError`` naming the
    weight otherwise). Nothing is changed.
    """
    if basis != "gradient":
        if gradients is not None:
            raise ValueError(
                f"gradients were given but the config has basis={basis!r}, which does not "
                "use them; set basis='gradient' or leave gradients out"
            )
        return None
    if gradients is None:
        raise ValueError(
            "basis='gradient' needs gradients=: the loss gradient of every target weight "
            "(tcur.adapters.loss_gradients(model, config, batches, loss))"
        )
    if not isinstance(gradients, Mapping):
        raise TypeError(
            f"gradients must be a mapping weight path -> tensor, got {type(gradients).__name__}"
        )
    for target in slices:
        label = target.weight_label
        grad = gradients.get(label)
        if grad is None:
            raise ValueError(f"gradients has no entry for target weight {label!r}")
        if not isinstance(grad, torch.Tensor) or not grad.is_floating_point():
            raise TypeError(f"gradients[{label!r}] must be a floating tensor, got {grad!r}")
        if grad.is_meta:
            raise ValueError(f"gradients[{label!r}] is on the meta device (it has no values)")
        shape = tuple(target.parameter().shape)
        if tuple(grad.shape) != shape:
            raise ValueError(
                f"gradients[{label!r}] has shape {tuple(grad.shape)}; the weight has {shape}"
            )
        if not bool(torch.isfinite(grad).all()):
            raise ValueError(f"gradients[{label!r}] has NaN or infinite entries")
    return gradients


def gradient_bases(
    slices: Sequence[TargetSlice],
    gradients: Mapping[str, torch.Tensor],
    n_rows: int,
    n_cols: int,
    key: str,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(C, R)`` of one group: the leading t-singular vectors of its gradient stack.

    ``C: (d_out, n_cols, n3)`` holds the ``n_cols`` leading left t-singular vectors and
    ``R: (n_rows, d_in, n3)`` the t-transpose of the ``n_rows`` leading right ones, of
    ``G = [g_1, ..., g_n3]`` (each member's gradient, cut like its weight), computed in float64
    and returned in the weights' dtype on their device. ``ValueError`` if ``G`` is zero (no
    target weight of the group reaches the loss).
    """
    weight = slices[0].weight()
    stack = torch.stack(
        [s.part_of(gradients[s.weight_label]).detach().to("cpu", torch.float64) for s in slices],
        dim=2,
    )
    if not bool(stack.any()):
        raise ValueError(
            f"group {key!r}: the loss gradient of its weights is zero over the calibration "
            "batches (do these modules reach the loss?); gradient bases need a non-zero gradient"
        )
    U, _, V = tsvd(stack, max(n_rows, n_cols))
    C = U[:, :n_cols, :]
    R = ttranspose(V[:, :n_rows, :])
    return (
        C.to(weight.device, weight.dtype).contiguous(),
        R.to(weight.device, weight.dtype).contiguous(),
    )
