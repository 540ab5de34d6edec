"""The methods of the fine-tuning frontier (:mod:`finetune.minilm_rt`): names, builders, budgets.

In the frontier every method adapts the same model, all-MiniLM-L6-v2 with a linear classifier on its
mean-pooled embedding (``tcur_demo.classifier.MeanPoolClassifier``); the classifier always trains
(PEFT: ``modules_to_save=["classifier"]``). The builders also serve the causal-LM benchmark (no
``classifier``: only the adapter trains). Every builder is called as ``build(model, config, seed,
context)``; ``context`` (the experiment, or ``None``) gives the gradient bases (of
:mod:`finetune.variants` and of the library's ``basis="gradient"``) their calibration batches and
loss. :func:`build_model` applies the options every method shares (``head_lr_scale``). A
:class:`Method` holds the builder that turns the fresh model into the trainable one, the
configuration, the first learning-rate grid (three values on the ladder of :func:`lr_ladder`;
:mod:`finetune.protocol` extends it when the best is at an edge) and, for the plot, the family
whose members are joined by a line.

:func:`methods` lists them in the order the runs are scheduled: the most informative first.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

QV = ["query", "value"]
ALL_LINEAR = r".*\.layer\.\d+\..*\.(query|key|value|dense)"
"""q/k/v, attention output, FFN up (``intermediate.dense``) and down (``output.dense``)."""

Builder = Callable[[Any, dict[str, Any], int, Any], Any]
"""``build(model, config, seed, context)`` -> the model to train."""


@dataclass(frozen=True)
class Method:
    """One method: JSON name, builder, configuration, first lr grid and plot family."""

    name: str
    build: Builder
    config: dict[str, Any] = field(default_factory=dict)
    grid: tuple[float, ...] = (1e-3, 3e-3, 1e-2)
    family: str | None = None
    label: str = ""

    def describe(self) -> str:
        """The method in words (for the JSON)."""
        return self.label or self.name

    @property
    def title(self) -> str:
        """The short name tables and plots show: its family and rank, else its name.

        Examples
        --------
        >>> Method("lora_r8", build_full, {"r": 8}, family="LoRA (q/v)").title
        'LoRA (q/v) r8'
        >>> Method("full", build_full).title
        'full'
        """
        if self.family is None:
            return self.name
        rank = self.config.get("rank", self.config.get("r"))
        return self.family if rank is None else f"{self.family} r{rank}"


def lr_ladder(value: float, steps: int) -> float:
    """The learning rate ``steps`` rungs from ``value`` on the 1-3-10 ladder.

    Examples
    --------
    >>> lr_ladder(1e-2, 1), lr_ladder(3e-2, 1), lr_ladder(1e-2, -1)
    (0.03, 0.1, 0.003)
    """
    mantissa = 1 if f"{value:.0e}".startswith("1") else 3
    exponent = int(f"{value:.0e}".split("e")[1])
    rung = 2 * exponent + (mantissa == 3) + steps
    return float(f"{1 if rung % 2 == 0 else 3}e{rung // 2}")


def build_head_only(model: Any, config: dict[str, Any], seed: int, context: Any = None) -> Any:
    """Freeze the encoder; only the classifier trains."""
    model.encoder.requires_grad_(False)
    return model


def build_full(model: Any, config: dict[str, Any], seed: int, context: Any = None) -> Any:
    """Every parameter trains."""
    return model


def build_peft(model: Any, config: dict[str, Any], seed: int, context: Any = None) -> Any:
    """A PEFT method: ``config["kind"]`` names the PEFT config class, the rest are its fields.

    The ``classifier`` (when the model has one) is in ``modules_to_save``.
    """
    import peft

    fields = {k: v for k, v in config.items() if k != "kind"}
    if hasattr(model, "classifier"):
        fields["modules_to_save"] = ["classifier"]
    peft_config = getattr(peft, config["kind"])(**fields)
    return peft.get_peft_model(model, peft_config)


def _head(model: Any) -> list[str] | None:
    return ["classifier"] if hasattr(model, "classifier") else None


def build_curlora(model: Any, config: dict[str, Any], seed: int, context: Any = None) -> Any:
    """tcur's per-matrix CURLoRA (``basis="gradient"``: as in :func:`build_tcurlora`)."""
    from tcur.adapters import CURLoRAConfig

    return _apply_library(
        model, CURLoRAConfig(modules_to_save=_head(model), seed=seed, **config), context
    )


def build_tcurlora(model: Any, config: dict[str, Any], seed: int, context: Any = None) -> Any:
    """tcur's tCURLoRA (one shared tensor adapter per group of weights).

    ``basis="gradient"`` takes its gradients over ``context.calibration()``
    (:func:`tcur.adapters.loss_gradients`), the batches the variants' gradient bases use.
    """
    from tcur.adapters import TCURLoRAConfig

    return _apply_library(
        model, TCURLoRAConfig(modules_to_save=_head(model), seed=seed, **config), context
    )


def _apply_library(model: Any, config: Any, context: Any) -> Any:
    from tcur.adapters import apply, loss_gradients

    gradients = None
    if config.basis == "gradient":
        gradients = loss_gradients(model, config, *context.calibration())
    return apply(model, config, gradients=gradients)


def build_variant(model: Any, config: dict[str, Any], seed: int, context: Any = None) -> Any:
    """A tCURLoRA variant of :mod:`finetune.variants` (``config``: its ``VariantConfig`` fields).

    The gradient bases take their calibration batches and loss from ``context.calibration()``.
    """
    from finetune.variants import VariantConfig, apply_variant

    calibration = context.calibration() if hasattr(context, "calibration") else None
    model = apply_variant(model, VariantConfig(**config), seed, calibration)
    if hasattr(model, "classifier"):
        model.classifier.requires_grad_(True)
    return model


def scale_head_lr(model: Any, factor: float) -> None:
    """Give the ``classifier`` an effective learning rate ``factor`` times the adapter's.

    Adam's step is invariant to the gradient's scale, so the head is reparametrized as
    ``W = factor * W'`` (``torch.nn.utils.parametrize``) with ``W'`` trained: one step of size
    ``lr`` in ``W'`` moves ``W`` by ``factor * lr``. Weight and bias both; the outputs at the start
    are unchanged.
    """
    import torch
    from torch.nn.utils import parametrize

    class Scale(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return factor * x

        def right_inverse(self, x: torch.Tensor) -> torch.Tensor:
            return x / factor

    head = model.classifier
    for name in ("weight", "bias"):
        if getattr(head, name, None) is not None:
            parametrize.register_parametrization(head, name, Scale())


def build_model(method: Method, model: Any, seed: int, context: Any = None) -> Any:
    """``method``'s builder on ``model``, then the shared options of its config.

    ``head_lr_scale`` (optional): see :func:`scale_head_lr`; the other entries go to the builder.
    """
    config = dict(method.config)
    head_lr_scale = config.pop("head_lr_scale", None)
    built = method.build(model, config, seed, context)
    if head_lr_scale is not None:
        scale_head_lr(built, float(head_lr_scale))
    return built


def build_reference(model: Any, config: dict[str, Any], seed: int, context: Any = None) -> Any:
    """The published tCURLoRA code's behaviour, reproduced on the query/value stacks.

    Per group the weights are stacked along the tube axis and taken to the Fourier domain; the
    ``rank`` columns and then rows with the largest norms summed over the Fourier slices are
    selected; ``U_k = pinv(W_k[rows][:, cols])`` per Fourier slice becomes an ``nn.Parameter``
    kept in a Python list (never registered on the model, so no optimizer sees it), and the
    weights are overwritten through ``.data`` with ``W - W_frozen + W_U``, where both terms are the
    inverse transform of ``C U R`` (equal, because ``U`` starts at ``U_frozen``). Everything but
    the classifier is frozen. ``model.reference_u`` keeps the U parameters so a run can show that
    they never received a gradient. A model without a ``classifier`` (the causal LM) has nothing
    left to train: it stays the base model, which is what the published code trains there.
    """
    import torch

    model.requires_grad_(False)
    if hasattr(model, "classifier"):
        model.classifier.requires_grad_(True)
    root = getattr(model, "encoder", model)
    u_parameters = []
    for name in config["target_modules"]:
        linears = [m for n, m in root.named_modules() if n.endswith(f".{name}")]
        stack = torch.stack([m.weight.data for m in linears], dim=-1)
        hat = torch.fft.fft(stack, dim=-1)
        cols = hat.abs().pow(2).sum(0).sqrt().sum(-1).topk(config["rank"]).indices
        rows = hat[:, cols].abs().pow(2).sum(1).sqrt().sum(-1).topk(config["rank"]).indices
        c_hat, r_hat = hat[:, cols, :], hat[rows, :, :]
        u_frozen = torch.linalg.pinv(hat[rows][:, cols].permute(2, 0, 1))
        u_param = torch.nn.Parameter(u_frozen.clone())
        u_parameters.append(u_param)

        def rebuild(u: Any, c_hat: Any = c_hat, r_hat: Any = r_hat) -> Any:
            slices = c_hat.permute(2, 0, 1) @ u @ r_hat.permute(2, 0, 1)
            return torch.fft.ifft(slices.permute(1, 2, 0), dim=-1).real

        new = stack - rebuild(u_frozen) + rebuild(u_param.detach())
        for k, linear in enumerate(linears):
            linear.weight.data = new[:, :, k].contiguous().to(linear.weight.dtype)
    model.reference_u = u_parameters
    return model


def _tcur(rank: int, grid: tuple[float, ...]) -> Method:
    return Method(
        f"tcurlora_r{rank}",
        build_tcurlora,
        {"target_modules": QV, "rank": rank, "group_by": "name"},
        grid,
        "tCURLoRA (query/value)",
        f"tCURLoRA on query/value, one tensor per name (n3 = 6), rank {rank}",
    )


def _lora(rank: int) -> Method:
    return Method(
        f"lora_r{rank}",
        build_peft,
        {"kind": "LoraConfig", "r": rank, "lora_alpha": 2 * rank, "target_modules": QV},
        (1e-3, 3e-3, 1e-2),
        "LoRA (query/value)",
        f"PEFT LoRA on query/value, r={rank}, lora_alpha={2 * rank}",
    )


def methods() -> dict[str, Method]:
    """Every method by JSON name, in scheduling order (most informative first)."""
    table = [
        Method("head_only", build_head_only, {}, (3e-3, 1e-2, 3e-2), None, "classifier only"),
        Method("full", build_full, {}, (1e-5, 3e-5, 1e-4), None, "every weight"),
        _lora(8),
        _tcur(8, (3e-3, 1e-2, 3e-2)),
        Method(
            "tcurlora_all_linear",
            build_tcurlora,
            {"target_modules": ALL_LINEAR, "rank": 8, "group_by": "shape"},
            (1e-3, 3e-3, 1e-2),
            None,
            "tCURLoRA on every linear layer of the encoder, one tensor per shape, rank 8",
        ),
        _lora(1),
        _tcur(32, (3e-3, 1e-2, 3e-2)),
        Method(
            "vera",
            build_peft,
            {"kind": "VeraConfig", "r": 256, "target_modules": QV},
            (3e-3, 1e-2, 3e-2),
            None,
            "PEFT VeRA on query/value, r=256 (shared frozen random projections)",
        ),
        Method(
            "fourierft",
            build_peft,
            {
                "kind": "FourierFTConfig",
                "n_frequency": 1000,
                "scaling": 150.0,
                "target_modules": QV,
            },
            (1e-2, 3e-2, 1e-1),
            None,
            "PEFT FourierFT on query/value, 1000 spectral coefficients per matrix, scaling 150",
        ),
        _tcur(4, (3e-3, 1e-2, 3e-2)),
        _tcur(16, (3e-3, 1e-2, 3e-2)),
        Method(
            "curlora",
            build_curlora,
            {"target_modules": QV, "rank": 8},
            (1e-2, 3e-2, 1e-1),
            None,
            "tcur CURLoRA on query/value, rank 8 (one 8x8 core per matrix)",
        ),
        Method(
            "tcurlora_reference",
            build_reference,
            {"target_modules": QV, "rank": 8},
            (3e-3, 1e-2, 3e-2),
            None,
            "the published tCURLoRA code's behaviour (U outside the autograd graph, never trained)",
        ),
    ]
    return {m.name: m for m in table}


def trainable_state(model: Any) -> dict[str, Any]:
    """The parameters that train, detached and contiguous, by name."""
    return {
        name: p.detach().contiguous().clone()
        for name, p in model.named_parameters()
        if p.requires_grad
    }


def load_trainable_state(model: Any, state: dict[str, Any]) -> None:
    """Put a :func:`trainable_state` back; ``KeyError`` for a name ``model`` does not have."""
    params = dict(model.named_parameters())
    unknown = sorted(set(state) - set(params))
    if unknown:
        raise KeyError(f"saved parameters not in the model: {', '.join(unknown[:5])}")
    for name, value in state.items():
        params[name].data.copy_(value)


def adapter_file_bytes(method: Method, model: Any) -> int:
    """Bytes on disk of what a user stores to rebuild the tuned model from the base model.

    PEFT methods: ``save_pretrained``; CURLoRA/tCURLoRA: :func:`tcur.adapters.save`; the others
    (head only, the reference, full fine-tuning): the trained tensors as one safetensors file.
    """
    from safetensors.torch import save_file

    with tempfile.TemporaryDirectory() as tmp:
        if method.build is build_peft:
            model.save_pretrained(tmp)
        elif method.build in (build_curlora, build_tcurlora):
            from tcur.adapters import save

            save(model, tmp)
        elif method.build is build_variant:
            from finetune.variants import adapter_state

            head = {k: v for k, v in trainable_state(model).items() if "variant_groups" not in k}
            save_file({**adapter_state(model), **head}, os.path.join(tmp, "adapter.safetensors"))
        else:
            save_file(trainable_state(model), os.path.join(tmp, "weights.safetensors"))
        return sum(p.stat().st_size for p in Path(tmp).rglob("*") if p.is_file())
