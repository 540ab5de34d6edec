"""Adapter configurations: :class:`CURLoRAConfig` (per matrix) and :class:`TCURLoRAConfig` (tensor).

Both are dataclasses checked in ``__post_init__``; a bad field raises ``ValueError``/``TypeError``
naming the field and its value, before any model is touched.

Scaling
-------
Layer ``k`` of a group uses ``W_k + s * (C * dU * R)[:, :, k]``. With ``scaling="plain"``
``s = alpha`` (the published CURLoRA / tCURLoRA update). With ``scaling="normalized"`` (the
default)

    ``s = alpha * w / (||C||_F * ||R||_F)``,  ``w = ||W||_F / sqrt(n3)``

(``W`` the stack of the group's weights, so ``w`` is the root-mean-square norm of one slice). The
reasoning is rsLoRA's, carried over to CUR. Write ``C = c * C~`` and ``R = r * R~`` with ``c``,
``r`` the root-mean-square norms of a column fibre ``C[:, j, a]`` and a row fibre ``R[i, :, e]``.
Every slice of ``C~ * dU * R~`` is a sum of ``n3**2 * n_cols * n_rows`` outer products of
(roughly) unit vectors, one per entry of ``dU`` and pair of tube positions. An Adam step moves
every entry of ``dU`` by about the learning rate, so the slice moves by about
``lr * sqrt(n3**2 * n_cols * n_rows) * c * r = lr * ||C||_F * ||R||_F`` — growing with the rank,
with ``n3`` and with the size of the weights, which is what made a fixed learning rate good at
rank 8 and poor at rank 16. Dividing by ``||C||_F * ||R||_F`` removes all three, and multiplying
by ``w`` makes the step relative: one Adam step of size ``lr`` changes each adapted weight by
about ``alpha * lr`` times its own norm, whatever ``rank``, ``n_rows``, ``n_cols`` and ``n3``.
For the ``query``/``value`` groups of all-MiniLM-L6-v2 ``s`` is about 0.2 at rank 8 and 0.1 at
rank 16, so learning rates stay in LoRA's range (and a classifier head trained in the same
optimizer is not thrown off).

Measured (``benchmarks/finetune/step_size.py``: Adam's first step on all-MiniLM-L6-v2 for a
batch of 32 Rotten Tomatoes sentences), the rule holds per weight: each adapted weight moves by
1.03-1.43 ``lr`` times its own norm for query/value at ranks 4 to 32, 1.28 for one ``n3 = 24``
tensor over every 384 x 384 layer and 1.7-2.0 for the FFN projections. What a rule built from
the weights cannot see is how strongly the network's output depends on a layer: the same relative
step on the FFN up- or down-projection moves the sentence embedding 10x more than on query, key,
value or the attention output, so an adapter on every linear layer moves the embedding 12x more
per step than one on query/value at the same ``lr``. Over a full training run that did not move
the best learning rate on the 1-3-10 grid of the fine-tuning frontier
(``benchmarks/finetune/minilm_rt.py``: 1e-2 for query/value at rank 8 and for every linear layer,
both 3 points worse at 3e-2). The earlier collapse of ``tcurlora_all_linear`` (one seed of three
at 0.57) came from a rate above that optimum: 3e-2, reused from a query/value grid whose best
value sat at its lower edge, on a 50-step schedule. Choose the learning rate on validation, from a
grid whose best value is not at an edge.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any

from tcur.linalg.selection import SELECT_RULES
from tcur.validation import (
    check_choice,
    check_finite_number,
    check_flag,
    check_number,
    check_rank,
    is_integer,
)

FORWARD_STRATEGIES = ("auto", "factored", "materialized")
BASES = ("columns", "gradient")
SCALINGS = ("normalized", "plain")
GROUP_BY = ("name", "shape")

TargetModules = str | Sequence[str]
"""A regex (full match on the module path) or a list of names (exact path or dotted suffix)."""
GroupBy = str | Callable[[str, Any], str]


def _check_targets(value: Any, name: str) -> str | list[str]:
    if isinstance(value, str):
        if not value:
            raise ValueError(f"{name} must not be empty")
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"{name} regex {value!r} does not compile: {exc}") from None
        return value
    if not isinstance(value, Sequence):
        raise TypeError(
            f"{name} must be a regex string or a list of names, got {value!r} "
            f"({type(value).__name__})"
        )
    if not value:
        raise ValueError(f"{name} must be a regex string or a non-empty list of names, got []")
    for item in value:
        if not isinstance(item, str) or not item:
            raise TypeError(f"{name} entries must be non-empty strings, got {item!r}")
    return list(value)


def _check_optional_targets(value: Any, name: str) -> str | list[str] | None:
    return None if value is None else _check_targets(value, name)


def _check_seed(value: Any) -> int:
    if not is_integer(value):
        raise TypeError(f"seed must be an integer, got {value!r} ({type(value).__name__})")
    if value < 0:
        raise ValueError(f"seed must be a non-negative integer, got {value!r}")
    return int(value)


def _check_split(value: Any) -> dict[str, int] | None:
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise TypeError(f"split_fused must be a mapping name -> number of parts, got {value!r}")
    out = {}
    for key, parts in value.items():
        if not isinstance(key, str) or not key:
            raise TypeError(f"split_fused keys must be module names, got {key!r}")
        out[key] = check_rank(parts, f"split_fused[{key!r}]", 1 << 16)
    return out


class _ConfigIO:
    """JSON round trip of both configs.

    A ``group_by`` callable is stored as ``"callable"``, which :meth:`from_dict` keeps: the
    saved groups are explicit, so ``load`` never runs the rule again, and the config (and its
    digest, :func:`tcur.adapters.fingerprint.config_digest`) stays that of the saved adapter.
    """

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form of the config."""
        data = asdict(self)  # type: ignore[call-overload]
        if callable(data.get("group_by")):
            data["group_by"] = "callable"
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Any:
        """Rebuild a config from :meth:`to_dict` output; unknown keys raise ``ValueError``."""
        names = {f.name for f in fields(cls)}  # type: ignore[arg-type]
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"unknown {cls.__name__} field(s): {', '.join(unknown)}")
        return cls(**dict(data))


@dataclass
class CURLoRAConfig(_ConfigIO):
    """CURLoRA (Fawi 2024): ``W' = W + s * C @ dU @ R`` for every target weight matrix ``W``.

    ``C = W[:, cols]`` and ``R = W[rows, :]`` are frozen copies; ``dU`` (rank x rank) is trained
    and starts at zero, so the adapted model equals the base model at initialisation.

    Parameters
    ----------
    target_modules : str or list of str
        A regex (full match on the module path, e.g. ``r".*\\.(query|value)"``) or names matched as
        the exact path or its dotted suffix (``["query", "value"]``). ``nn.Linear``,
        transformers ``Conv1D`` and ``nn.MultiheadAttention`` (all its projections; or target
        its ``out_proj`` alone) are supported; anything else is refused with a ``ValueError``
        (:mod:`tcur.adapters.targets`).
    rank : int
        Rows and columns selected per matrix (``dU`` is ``rank x rank``).
    select : str
        Selection rule of :func:`tcur.linalg.cur`; default the paper's inverted-probability
        sampling ``"inverse_norm"``.
    alpha : float
        Update multiplier; see ``scaling``.
    scaling : {"normalized", "plain"}
        ``s = alpha * w / (||C||_F ||R||_F)`` or ``s = alpha`` (module docstring).
    dropout : float
        Dropout probability on the adapter's input (as LoRA's ``lora_dropout``).
    modules_to_save : str or list of str, optional
        Further modules trained in full and saved with the adapter (e.g. ``["classifier"]``).
    forward : {"auto", "factored", "materialized"}
        Forward strategy (:mod:`tcur.adapters.forward`).
    seed : int
        Seed of the randomized selection rules.
    basis : {"columns", "gradient"}
        ``"columns"`` (default, the published method): ``C``/``R`` are selected columns and rows
        of ``W``, chosen by ``select``. ``"gradient"``: ``C``/``R`` are the leading left/right
        singular vectors of the loss gradient of ``W`` over a few calibration batches (``select``
        is not used); :func:`tcur.adapters.apply` then needs ``gradients=``
        (:func:`tcur.adapters.loss_gradients`) and the bases are saved with the adapter, since
        they cannot be recomputed from the base model. See :class:`TCURLoRAConfig`. Fine-tuning
        SmolLM2-135M's q/v at rank 30 (``benchmarks/finetune/causal_lm.py``, its per-layer
        variant, which builds these bases and scales every layer by the group's weight norm
        where this class scales each by its own), per-matrix gradient bases gave 1.3% lower
        perplexity than tCURLoRA's at the same budget (five paired seeds): the coupling of the
        layers did not help there.
    autocast_adapter_dtype : bool
        Keep ``dU`` in float32 when the base weights are float16/bfloat16 (PEFT's option of the
        same name; the forward casts per call). ``False``: ``dU`` takes the weights' dtype.
    exact_unmerge : bool
        ``True`` (default): merging keeps a copy of every targeted weight until it is unmerged,
        so unmerge and ``unload`` give back the base weights bit for bit in every dtype (memory:
        one copy of the targeted weights, held only while merged: their element count times
        the element size, e.g. 28 MiB for query and value of a 12-layer 768-wide BERT in
        bfloat16). ``False`` saves that memory: unmerge subtracts the update again, which gives
        the weights back only within one rounding of their dtype (measured on a 64 x 64
        bfloat16 query weight, ``dU`` of standard deviation 0.3: 658 of 4,096 entries end one
        unit in the last place away; float16: 627).

    Examples
    --------
    >>> from tcur.adapters import CURLoRAConfig
    >>> CURLoRAConfig(["query", "value"], rank=4).rank
    4
    """

    target_modules: TargetModules
    rank: int = 8
    select: str = "inverse_norm"
    alpha: float = 1.0
    dropout: float = 0.0
    modules_to_save: TargetModules | None = None
    seed: int = 0
    scaling: str = "normalized"
    forward: str = "auto"
    autocast_adapter_dtype: bool = True
    exact_unmerge: bool = True
    basis: str = "columns"

    def __post_init__(self) -> None:
        _validate_common(self)


@dataclass
class TCURLoRAConfig(_ConfigIO):
    """tCURLoRA: one t-CUR adapter per group of weight matrices, stacked as frontal slices.

    The ``n3`` target weights of a group form ``W: (d_out, d_in, n3)``; rows and columns are
    selected once on the stack and shared by all slices; ``C = W[:, cols, :]``,
    ``R = W[rows, :, :]`` are frozen and ``dU: (n_cols, n_rows, n3)`` is trained from zero. Slice
    ``k`` uses ``W_k + s * (C * dU * R)[:, :, k]`` (t-product).

    Parameters
    ----------
    target_modules, alpha, scaling, dropout, modules_to_save, forward, seed
        As in :class:`CURLoRAConfig`.
    basis : {"columns", "gradient"}
        ``"columns"`` (default): ``C = W[:, cols, :]``, ``R = W[rows, :, :]``, the published
        method. ``"gradient"``: ``C`` and ``R`` are the leading ``n_cols`` left and ``n_rows``
        right t-singular vectors (:func:`tcur.linalg.tsvd`) of ``G``, the stack of the group's
        loss gradients summed over a few calibration batches, so the trained core acts on the
        directions the task pulls the weights along first (LoRA-One / LoRA-SB's initialisation
        carried to the t-product). :func:`tcur.adapters.apply` then needs ``gradients=`` (from
        :func:`tcur.adapters.loss_gradients`); ``select`` is not used; the bases are saved in the
        adapter file (they are not columns and rows of the base weights). Measured
        (``benchmarks/finetune``): on the SmolLM2-135M causal-LM benchmark (q/v, rank 30,
        54,000 parameters) held-out perplexity 53.31 +- 0.11 against 54.50 +- 0.27 for the
        column/row bases (2.2% better, five paired seeds; LoRA r1: 51.37 +- 0.06); with
        all-MiniLM-L6-v2 classifying IMDB reviews at rank 5 (900 parameters) 77.68 +- 0.63%
        accuracy, 2.7 points above training the head alone (Rotten Tomatoes: 79.38 +- 0.59%,
        3.9 points above). Through PEFT: ``get_peft_model``, then
        :func:`tcur.adapters.peft.initialize_gradient_bases`.
    autocast_adapter_dtype, exact_unmerge
        As in :class:`CURLoRAConfig`.
    rank : int
        Rank targeted by the selection rule.
    n_rows, n_cols : int, optional
        Selected horizontal / lateral slices (default ``rank``; may be larger).
    select : str
        Selection rule of :func:`tcur.linalg.tensor_cur.select_tensor_indices`. Default
        ``"leverage"``: best (tied with ``"uniform"``, deterministic unlike it) in the first
        round's rule sweep, MiniLM on 800 Rotten Tomatoes sentences (validation accuracy:
        leverage 0.726, uniform 0.726, norm 0.720, deim 0.700; differences within noise). The
        sweep was not repeated on the larger budget of ``benchmarks/finetune/minilm_rt.py``.
    group_by : {"name", "shape"} or callable
        ``"name"``: the module path with layer numbers replaced by ``*`` (every ``query`` of a
        BERT forms one group); ``"shape"``: every target of one ``(d_out, d_in)``; a callable
        ``(label, module) -> key`` with ``label`` the module path (``"path[i]"`` for part ``i``
        of a split fused projection). A config read back from a file whose groups a callable
        made holds the marker ``"callable"``; ``apply`` refuses it (the rule is not stored),
        ``load`` uses the saved groups.
    split_fused : dict of str to int, optional
        Split these modules (matched like ``target_modules`` entries) into that many equal parts
        along the output before grouping, e.g. ``{"c_attn": 3}`` for GPT-2's fused q/k/v.

    Examples
    --------
    >>> from tcur.adapters import TCURLoRAConfig
    >>> TCURLoRAConfig(["query", "value"], rank=4, n_rows=6).n_cols
    4
    """

    target_modules: TargetModules
    rank: int = 8
    n_rows: int | None = None
    n_cols: int | None = None
    select: str = "leverage"
    group_by: GroupBy = "name"
    alpha: float = 1.0
    dropout: float = 0.0
    modules_to_save: TargetModules | None = None
    forward: str = "auto"
    seed: int = 0
    scaling: str = "normalized"
    split_fused: dict[str, int] | None = None
    autocast_adapter_dtype: bool = True
    exact_unmerge: bool = True
    basis: str = "columns"

    def __post_init__(self) -> None:
        _validate_common(self)
        if self.n_rows is None:
            self.n_rows = self.rank
        if self.n_cols is None:
            self.n_cols = self.rank
        for name in ("n_rows", "n_cols"):
            value = check_rank(getattr(self, name), name, 1 << 30)
            setattr(self, name, value)
            if value < self.rank:
                raise ValueError(f"{name}={value} must be >= rank={self.rank}")
        if not callable(self.group_by):
            if not isinstance(self.group_by, str):
                raise TypeError(
                    f"group_by must be 'name', 'shape' or a callable, got {self.group_by!r}"
                )
            check_choice(self.group_by, "group_by", (*GROUP_BY, "callable"))
        self.split_fused = _check_split(self.split_fused)


def _validate_common(config: CURLoRAConfig | TCURLoRAConfig) -> None:
    config.target_modules = _check_targets(config.target_modules, "target_modules")
    config.modules_to_save = _check_optional_targets(config.modules_to_save, "modules_to_save")
    config.rank = check_rank(config.rank, "rank", 1 << 30)
    check_choice(config.select, "select", SELECT_RULES)
    config.alpha = check_finite_number(config.alpha, "alpha")
    config.dropout = check_number(config.dropout, "dropout", 0.0, 1.0)
    config.seed = _check_seed(config.seed)
    check_choice(config.scaling, "scaling", SCALINGS)
    check_choice(config.forward, "forward", FORWARD_STRATEGIES)
    check_choice(config.basis, "basis", BASES)
    config.autocast_adapter_dtype = check_flag(
        config.autocast_adapter_dtype, "autocast_adapter_dtype"
    )
    config.exact_unmerge = check_flag(config.exact_unmerge, "exact_unmerge")
