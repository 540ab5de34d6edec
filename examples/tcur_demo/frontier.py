"""The fine-tuning frontier's results (``benchmarks/results/finetune_minilm_rt.json``), read-only.

``benchmarks/finetune/minilm_rt.py`` tuned every method's learning rate on a validation split and
trained it on 6,530 Rotten Tomatoes sentences with 3 seeds. The demo takes from it each method's
configuration and chosen learning rate, its batch size and truncation length, and the 3-seed
means it prints beside its own single-seed figures; its closing sentence is computed from those
means (:func:`closing_sentence`).
"""

from __future__ import annotations

import json
import math
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parents[2] / "benchmarks" / "results"
"""The committed benchmark results of this checkout."""
FRONTIER_JSON = RESULTS / "finetune_minilm_rt.json"
"""The committed frontier results."""


@dataclass(frozen=True)
class FrontierMethod:
    """One method of the frontier: configuration, chosen learning rate and 3-seed results."""

    key: str
    description: str
    config: dict[str, Any]
    lr: float
    accuracy_mean: float
    accuracy_std: float
    seeds: int
    adapter_params: int
    trainable_params: int
    step_time_ms: float

    def summary(self) -> dict[str, Any]:
        """The entry of ``summary.json``."""
        return {
            "lr": self.lr,
            "accuracy_mean": self.accuracy_mean,
            "accuracy_std": self.accuracy_std,
            "seeds": self.seeds,
            "adapter_params": self.adapter_params,
            "trainable_params": self.trainable_params,
        }


@dataclass(frozen=True)
class Frontier:
    """The frontier's budget and methods."""

    path: Path
    batch_size: int
    max_length: int
    train_size: int
    test_size: int
    methods: dict[str, FrontierMethod]

    def __getitem__(self, key: str) -> FrontierMethod:
        try:
            return self.methods[key]
        except KeyError:
            raise KeyError(f"the frontier {self.path} has no method {key!r}") from None


def load(path: Path = FRONTIER_JSON) -> Frontier:
    """Read the frontier JSON; only methods with a chosen rate and test accuracies are kept.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist (the message names ``benchmarks/finetune/minilm_rt.py``).
    """
    if not path.is_file():
        raise FileNotFoundError(f"no frontier results at {path}; run make finetune FT=minilm_rt")
    data = json.loads(path.read_text(encoding="utf-8"))
    budget = data["budget"]
    methods = {
        key: _method(key, entry)
        for key, entry in data["methods"].items()
        if entry.get("chosen_lr") and entry.get("accuracy")
    }
    return Frontier(
        path,
        int(budget["batch_size"]),
        int(budget["max_length"]),
        int(budget["train_size"]),
        int(budget["test_size"]),
        methods,
    )


def _method(key: str, entry: dict[str, Any]) -> FrontierMethod:
    return FrontierMethod(
        key=key,
        description=str(entry.get("description", key)),
        config=dict(entry.get("config", {})),
        lr=float(entry["chosen_lr"]),
        accuracy_mean=float(entry["accuracy_mean"]),
        accuracy_std=float(entry.get("accuracy_std", math.nan)),
        seeds=len(entry["accuracy"]),
        adapter_params=int(entry["adapter_params"]),
        trainable_params=int(entry["trainable_params"]),
        step_time_ms=float(entry.get("step_time_ms", math.nan)),
    )


def closing_sentence(
    head: FrontierMethod,
    ours: FrontierMethod,
    ours_label: str,
    matched: FrontierMethod,
    matched_label: str,
    larger: FrontierMethod,
    larger_label: str,
    train_size: int,
) -> str:
    """The demo's conclusion, computed from the frontier's means (accuracies in points).

    Examples
    --------
    >>> def m(key, mean, std, params):
    ...     return FrontierMethod(key, key, {}, 1e-2, mean, std, 3, params, params + 770, 1.0)
    >>> print(closing_sentence(m("h", 0.75, 0.011, 0), m("t", 0.7943, 0.0016, 12288), "tCURLoRA",
    ...                        m("l", 0.806, 0.0118, 9216), "LoRA r1",
    ...                        m("l8", 0.809, 0.007, 73728), "LoRA r8", 6530))
    Frontier, 3 seeds, 6,530 training sentences: tCURLoRA reaches 79.4 +- 0.2% with 12,288
    adapter parameters, 4.4 points above head-only (75.0 +- 1.1%); LoRA r1 reaches 80.6 +- 1.2%
    with 9,216, so tCURLoRA is 1.2 points behind at a similar budget, within one seed standard
    deviation (1.2); LoRA r8 reaches 80.9 +- 0.7% with 73,728 (6.0x tCURLoRA's).
    """
    gain = 100.0 * (ours.accuracy_mean - head.accuracy_mean)
    diff = 100.0 * (ours.accuracy_mean - matched.accuracy_mean)
    noise = 100.0 * max(ours.accuracy_std, matched.accuracy_std)
    direction = "ahead" if diff > 0 else "behind"
    gap = f"{abs(diff):.1f} points {direction}" if round(diff, 1) else "level"
    within = "within" if abs(diff) <= noise else "more than"
    above = "above" if gain >= 0 else "below"
    text = (
        f"Frontier, {ours.seeds} seeds, {train_size:,} training sentences: {ours_label} reaches "
        f"{_pct(ours)} with {ours.adapter_params:,} adapter parameters, {abs(gain):.1f} points "
        f"{above} head-only ({_pct(head)}); {matched_label} reaches {_pct(matched)} with "
        f"{matched.adapter_params:,}, so {ours_label} is {gap} at a similar budget, {within} one "
        f"seed standard deviation ({noise:.1f}); {larger_label} reaches {_pct(larger)} with "
        f"{larger.adapter_params:,} ({larger.adapter_params / ours.adapter_params:.1f}x "
        f"{ours_label}'s)."
    )
    return textwrap.fill(text, width=100)


def _pct(method: FrontierMethod) -> str:
    return f"{100 * method.accuracy_mean:.1f} +- {100 * method.accuracy_std:.1f}%"
