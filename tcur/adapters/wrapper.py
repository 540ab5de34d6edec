"""The seed project's convenience wrapper :class:`TCURLoRAModel` (tCURLoRA in one line).

It builds a :class:`~tcur.adapters.TCURLoRAConfig` from the seed's argument names, applies it,
and trains and evaluates with the plain-torch loops of :mod:`tcur.adapters.training`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from torch import nn

from tcur.adapters.config import TCURLoRAConfig
from tcur.adapters.io import load, save
from tcur.adapters.model import adapter_config, apply, print_trainable_parameters
from tcur.adapters.targets import name_matches
from tcur.adapters.training import (
    TrainingArguments,
    TrainResult,
    evaluate_classifier,
    perplexity,
    train_causal_lm,
    train_classifier,
)
from tcur.validation import check_choice

TASKS = ("classification", "causal_lm")
DEFAULT_TARGETS: tuple[tuple[str, ...], ...] = (
    ("query", "value"),  # BERT family
    ("q_proj", "v_proj"),  # LLaMA, Mistral, OPT, ...
    ("c_attn",),  # GPT-2
    ("q_lin", "v_lin"),  # DistilBERT
)
HEADS = ("classifier", "score")
Dataset = Mapping[str, Sequence[Any]] | Sequence[Any]


_ARGUMENT_NAMES = {"rank": "tensor_rank", "n_rows": "num_rows", "n_cols": "num_columns"}
"""The config fields :class:`TCURLoRAModel` sets from arguments of other names."""


def _in_wrapper_terms(message: str) -> str:
    """``message`` of a config or ``apply`` error with the fields named as the wrapper's arguments
    (``n_rows=2 must be >= rank=4`` -> ``num_rows=2 must be >= tensor_rank=4``)."""
    return re.sub(
        r"\b(rank|n_rows|n_cols)\b(?==| can be| must)",
        lambda match: _ARGUMENT_NAMES[match.group(1)],
        message,
    )


def default_targets(model: nn.Module) -> list[str]:
    """The first known attention-projection names that all occur in ``model``."""
    names = [n for n, _ in model.named_modules() if n]
    for candidates in DEFAULT_TARGETS:
        if all(any(name_matches(n, c) for n in names) for c in candidates):
            return list(candidates)
    raise ValueError(
        "no known attention projections (query/value, q_proj/v_proj, c_attn, q_lin/v_lin) in "
        "the model; pass target_modules"
    )


def default_heads(model: nn.Module, task: str) -> list[str] | None:
    """Classification heads trained in full (``classifier``/``score``), if the task has one."""
    if task != "classification":
        return None
    names = [n for n, _ in model.named_modules() if n]
    heads = [h for h in HEADS if h in names]
    return heads or None


def _load_pretrained(path: str, task: str, num_labels: int) -> tuple[nn.Module, Any]:
    """A transformers model and tokenizer from a local directory or the local cache (offline)."""
    import transformers

    if task == "classification":
        model = transformers.AutoModelForSequenceClassification.from_pretrained(
            path, num_labels=num_labels, local_files_only=True
        )
    else:
        model = transformers.AutoModelForCausalLM.from_pretrained(path, local_files_only=True)
    tokenizer = transformers.AutoTokenizer.from_pretrained(path, local_files_only=True)
    return model, tokenizer


def texts_and_labels(dataset: Dataset) -> tuple[list[str], list[int]]:
    """``(texts, labels)`` from ``{"text": [...], "label": [...]}`` or ``[(text, label), ...]``."""
    if isinstance(dataset, Mapping):
        return list(dataset["text"]), [int(v) for v in dataset["label"]]
    pairs = list(dataset)
    if not all(isinstance(p, (tuple, list)) and len(p) == 2 for p in pairs):
        raise TypeError("dataset must be a mapping with 'text' and 'label' or (text, label) pairs")
    return [str(t) for t, _ in pairs], [int(label) for _, label in pairs]


def texts_only(dataset: Dataset) -> list[str]:
    """Texts from ``{"text": [...]}`` or a sequence of strings."""
    texts = dataset["text"] if isinstance(dataset, Mapping) else dataset
    if isinstance(texts, str) or not all(isinstance(t, str) for t in texts):
        raise TypeError("dataset must be a mapping with 'text' or a sequence of strings")
    return list(texts)


class TCURLoRAModel(nn.Module):
    """A model with tCURLoRA adapters, in the seed project's interface.

    Parameters
    ----------
    base_model : torch.nn.Module or str
        A model, or a transformers directory / cached name (loaded offline with
        ``AutoModelForSequenceClassification`` or ``AutoModelForCausalLM`` per ``task``).
    tensor_rank : int
        Rank targeted by the selection rule.
    num_columns, num_rows : int
        Selected lateral / horizontal slices (``>= tensor_rank``); ``dU`` is
        ``num_columns x num_rows x n3`` per group.
    target_modules : str or list of str, optional
        Default: the first of ``query``/``value``, ``q_proj``/``v_proj``, ``c_attn``,
        ``q_lin``/``v_lin`` found in the model.
    task : {"classification", "causal_lm"}
    num_labels : int
        Classes, when ``base_model`` is loaded from a path for classification.
    tokenizer : callable, optional
        Needed by :meth:`finetune`/:meth:`evaluate`; loaded with the model from a path.
    modules_to_save : str or list of str, optional
        Default: the classification head (``classifier`` or ``score``) for classification.
    **options
        Further :class:`~tcur.adapters.TCURLoRAConfig` fields (``select``, ``group_by``,
        ``alpha``, ``dropout``, ``forward``, ``seed``, ``scaling``, ``split_fused``;
        ``basis="gradient"`` is refused, since it needs calibration gradients: use
        :func:`tcur.adapters.apply` for it).

    Examples
    --------
    >>> import torch
    >>> from tcur.adapters import TCURLoRAModel
    >>> class Net(torch.nn.Module):
    ...     def __init__(self):
    ...         super().__init__()
    ...         self.query = torch.nn.ModuleList(torch.nn.Linear(8, 8) for _ in range(3))
    ...     def forward(self, x):
    ...         for layer in self.query:
    ...             x = layer(x)
    ...         return x
    >>> model = TCURLoRAModel(Net(), tensor_rank=2, num_columns=3, num_rows=3,
    ...                       target_modules=["query.0", "query.1", "query.2"])
    >>> model.print_trainable_parameters()
    trainable params: 27 || all params: 243 || trainable%: 11.1111
    """

    def __init__(
        self,
        base_model: nn.Module | str | os.PathLike[str],
        tensor_rank: int = 8,
        num_columns: int = 16,
        num_rows: int = 16,
        target_modules: str | Sequence[str] | None = None,
        *,
        task: str = "classification",
        num_labels: int = 2,
        tokenizer: Callable[..., Any] | None = None,
        modules_to_save: str | Sequence[str] | None = None,
        **options: Any,
    ) -> None:
        super().__init__()
        model, tokenizer = _resolve_base(base_model, task, num_labels, tokenizer)
        try:
            config = TCURLoRAConfig(
                target_modules if target_modules is not None else default_targets(model),
                rank=tensor_rank,
                n_rows=num_rows,
                n_cols=num_columns,
                modules_to_save=(
                    modules_to_save if modules_to_save is not None else default_heads(model, task)
                ),
                **options,
            )
            if config.basis == "gradient":
                raise ValueError(
                    "TCURLoRAModel does not take basis='gradient' (it needs calibration "
                    "gradients): use tcur.adapters.apply(model, config, "
                    "gradients=loss_gradients(...))"
                )
            self.model = apply(model, config)
        except (ValueError, TypeError) as error:  # name this class's arguments, not the config's
            if type(error) not in (ValueError, TypeError):
                raise
            raise type(error)(_in_wrapper_terms(str(error))) from error
        self.task = task
        self.tokenizer = tokenizer

    @classmethod
    def from_pretrained(
        cls,
        base_model: nn.Module | str | os.PathLike[str],
        adapter_directory: str | os.PathLike[str],
        *,
        task: str = "classification",
        num_labels: int = 2,
        tokenizer: Callable[..., Any] | None = None,
    ) -> TCURLoRAModel:
        """The base model with the adapters saved by :meth:`save_pretrained` (validated)."""
        model, tokenizer = _resolve_base(base_model, task, num_labels, tokenizer)
        wrapper = cls.__new__(cls)
        nn.Module.__init__(wrapper)
        wrapper.model = load(model, adapter_directory)
        wrapper.task = task
        wrapper.tokenizer = tokenizer
        return wrapper

    @property
    def config(self) -> TCURLoRAConfig:
        """The adapter configuration."""
        config = adapter_config(self.model)
        assert isinstance(config, TCURLoRAConfig)
        return config

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        """Run the adapted model."""
        return self.model(*args, **kwargs)

    def print_trainable_parameters(self) -> None:
        """Print trainable and total parameter counts (PEFT's format)."""
        print_trainable_parameters(self.model)

    def save_pretrained(self, directory: str | os.PathLike[str]) -> Path:
        """Save the adapters into ``directory`` (:func:`tcur.adapters.save`; other files kept)."""
        return save(self.model, directory)

    def _tokenizer(self) -> Callable[..., Any]:
        if self.tokenizer is None:
            raise ValueError("no tokenizer: pass tokenizer= (or load the model from a path)")
        return self.tokenizer

    def evaluate(
        self, dataset: Dataset, *, batch_size: int = 64, max_length: int = 128
    ) -> dict[str, float]:
        """``{"accuracy": ...}`` (classification) or ``{"perplexity": ...}`` (causal LM)."""
        if self.task == "classification":
            texts, labels = texts_and_labels(dataset)
            accuracy = evaluate_classifier(
                self.model,
                self._tokenizer(),
                texts,
                labels,
                batch_size=batch_size,
                max_length=max_length,
            )
            return {"accuracy": accuracy}
        value = perplexity(
            self.model,
            self._tokenizer(),
            texts_only(dataset),
            batch_size=batch_size,
            max_length=max_length,
        )
        return {"perplexity": value}

    def finetune(
        self,
        dataset: Dataset,
        num_epochs: int = 3,
        *,
        eval_dataset: Dataset | None = None,
        lr: float = 1e-2,
        batch_size: int = 32,
        max_length: int = 128,
        seed: int = 0,
        progress: bool = True,
        max_steps: int | None = None,
    ) -> list[dict[str, float]]:
        """Train the adapters (and ``modules_to_save``) with AdamW; evaluate after every epoch.

        The whole run is one call of :func:`~tcur.adapters.training.train_classifier` (or
        :func:`~tcur.adapters.training.train_causal_lm`): one AdamW optimizer and one linear
        warm-up and decay over all epochs' steps. After every epoch the metric of
        :meth:`evaluate` on ``eval_dataset`` is recorded (none without an ``eval_dataset``; the
        training data is never used as its own evaluation). ``max_steps`` caps the optimizer
        steps of the whole run (the last epoch may be partial).

        Returns
        -------
        list of dict
            Per epoch: ``epoch``, ``train_loss`` (mean over the epoch's steps), ``steps``,
            ``step_time_ms`` and, with ``eval_dataset``, the metric of :meth:`evaluate`.
        """
        check_choice(self.task, "task", TASKS)
        args = TrainingArguments(
            epochs=num_epochs,
            lr=lr,
            batch_size=batch_size,
            max_length=max_length,
            seed=seed,
            progress=progress,
            max_steps=max_steps,
        )
        history: list[dict[str, float]] = []

        def record(epoch: int, result: TrainResult) -> None:
            entry = {
                "epoch": float(epoch),
                "train_loss": sum(result.losses) / max(len(result.losses), 1),
                "steps": float(result.steps),
                "step_time_ms": result.step_time_ms,
            }
            if eval_dataset is not None:
                entry.update(self.evaluate(eval_dataset, max_length=max_length))
            history.append(entry)

        if self.task == "classification":
            texts, labels = texts_and_labels(dataset)
            train_classifier(
                self.model, self._tokenizer(), texts, labels, args=args, on_epoch_end=record
            )
        else:
            texts = texts_only(dataset)
            train_causal_lm(self.model, self._tokenizer(), texts, args=args, on_epoch_end=record)
        return history


def _resolve_base(
    base_model: nn.Module | str | os.PathLike[str],
    task: str,
    num_labels: int,
    tokenizer: Callable[..., Any] | None,
) -> tuple[nn.Module, Callable[..., Any] | None]:
    check_choice(task, "task", TASKS)
    if isinstance(base_model, nn.Module):
        return base_model, tokenizer
    if isinstance(base_model, (str, os.PathLike)):
        model, loaded = _load_pretrained(str(base_model), task, num_labels)
        return model, tokenizer or loaded
    raise TypeError(
        "base_model must be a torch.nn.Module or a transformers path, got "
        f"{type(base_model).__name__}"
    )
