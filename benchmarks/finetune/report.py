"""Reporting of the fine-tuning frontier: per-method summaries, the headline table and the plot.

:func:`summarise` folds the per-run records (:mod:`finetune.records`) into one entry per method;
:func:`headline` compares methods at matched adapter budgets in the ``headline`` format that
``benchmarks/_readme.py`` renders (``{"question", "rows": [{"method", "figure", "ratio",
"target", "met"}]}``); :func:`plot` draws test accuracy (or perplexity) against trainable adapter
parameters; :func:`paired_difference` and :func:`comparisons` give the paired-seed differences
between two methods with a 95% confidence interval and the verdict of issue 21 ("beats": the
interval's lower end > 0; "matches": >= -1 point, or >= -1% relative for perplexity), and
:func:`paired_headline` the headline of a paired-seed benchmark.
Everything works on partial results: a method without a test accuracy yet is left out of the
table and the plot, and ``complete`` says whether every method has every seed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from finetune.methods import Method
from finetune.protocol import Budget, grid_state, higher_is_better
from finetune.records import unit_id

QUESTION = (
    "How much test accuracy does tCURLoRA buy per trainable adapter parameter, next to LoRA, "
    "VeRA, FourierFT and full fine-tuning, with every learning rate chosen on validation?"
)

MATCHED = (
    ("tcurlora_r32", "lora_r1", "within 1 point of LoRA r1 at a similar budget"),
    ("tcurlora_r32", "fourierft", "within 1 point of FourierFT at a similar budget"),
    ("tcurlora_r8", "vera", "within 1 point of VeRA at 1/10 of its parameters"),
    ("tcurlora_r8", "curlora", "at least CURLoRA's accuracy at the same budget"),
    ("tcurlora_r8", "lora_r8", "within 1 point of LoRA r8 at 1/96 of its parameters"),
    ("tcurlora_all_linear", "head_only", "every seed above the head-only mean"),
    ("full", "head_only", "full fine-tuning at least 2 points above head only"),
)
"""(method, alternative, target) rows of the headline table."""


def summarise(
    methods: Sequence[Method], records: Mapping[str, Any], budget: Budget
) -> dict[str, dict[str, Any]]:
    """One entry per method that has started: grid, chosen rate, per-seed test accuracy, costs."""
    out = {}
    for method in methods:
        state = grid_state(method, records, budget)
        if not state.validation:
            continue
        entry: dict[str, Any] = {
            "title": method.title,
            "description": method.describe(),
            "config": {k: v for k, v in method.config.items()},
            "lr_grid": [
                {"lr": lr, f"validation_{budget.metric}": state.validation[lr]}
                for lr in state.grid
                if lr in state.validation
            ],
            "chosen_lr": state.chosen,
        }
        if state.chosen is not None:
            chosen = records.get(unit_id(method.name, state.chosen, budget.seeds[0]), {})
            trains = chosen.get("trainable_params") != 0  # else no rate can matter
            edge = state.chosen in (state.grid[0], state.grid[-1])
            entry["chosen_lr_at_grid_edge"] = trains and edge
            entry.update(_seeds(method, state.chosen, records, budget))
        out[method.name] = entry
    return out


def _seeds(method: Method, lr: float, records: Mapping[str, Any], budget: Budget) -> dict[str, Any]:
    seed0 = budget.seeds[0]
    train = [records.get(unit_id(method.name, lr, seed0))] + [
        records.get(unit_id(method.name, lr, s)) for s in budget.seeds[1:]
    ]
    test = [records.get(unit_id(method.name, lr, seed0, test=True)), *train[1:]]
    done = [(s, tr, te) for s, tr, te in zip(budget.seeds, train, test, strict=True) if tr and te]
    if not done:
        return {"seeds_done": []}
    metric = budget.metric
    values = [te[f"test_{metric}"] for _, _, te in done]
    first = done[0][1]
    entry = {
        "seeds_done": [s for s, _, _ in done],
        "trainable_params": first["trainable_params"],
        "adapter_params": first["adapter_params"],
        metric: values,
        f"{metric}_mean": float(np.mean(values)),
        f"{metric}_std": float(np.std(values, ddof=1)) if len(values) > 1 else None,
        f"validation_{metric}": [tr[f"validation_{metric}"] for _, tr, _ in done],
        "step_time_ms": float(np.mean([tr["step_time_ms"] for _, tr, _ in done])),
        "train_time_s": float(np.mean([tr["train_time_s"] for _, tr, _ in done])),
        "peak_rss_mb": float(max(tr["peak_rss_mb"] for _, tr, _ in done)),
        "final_train_loss": _mean([tr["final_train_loss"] for _, tr, _ in done]),
    }
    test0 = records.get(unit_id(method.name, lr, seed0, test=True))
    if test0:
        entry["adapter_file_bytes"] = test0["adapter_file_bytes"]
    if "reference_u_received_gradient" in first:
        entry["reference_u_received_gradient"] = any(
            tr.get("reference_u_received_gradient", False) for _, tr, _ in done
        )
    return entry


def _mean(values: Sequence[float | None]) -> float | None:
    """Mean of the values that are not ``None`` (a run that did not train has no loss)."""
    present = [v for v in values if v is not None]
    return float(np.mean(present)) if present else None


SCALING = ("tcurlora_r4", "tcurlora_r8", "tcurlora_r16", "tcurlora_r32", "tcurlora_all_linear")


def scaling_check(summary: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """The learning rate chosen on validation per tCURLoRA rank and for every linear layer.

    With the library's normalized scaling the chosen rate should barely move with the rank;
    ``rank_spread`` is the largest over the smallest chosen rate among the query/value ranks.
    """
    chosen = {n: summary[n].get("chosen_lr") for n in SCALING if n in summary}
    ranks = [lr for n, lr in chosen.items() if lr is not None and n != "tcurlora_all_linear"]
    return {
        "chosen_lr": chosen,
        "validation_by_lr": {n: summary[n]["lr_grid"] for n in chosen},
        "rank_spread": max(ranks) / min(ranks) if len(ranks) > 1 else None,
    }


def _pct(entry: Mapping[str, Any]) -> str:
    std = entry.get("accuracy_std")
    spread = f" ± {100 * std:.1f}" if std is not None else ""
    n = len(entry["accuracy"])
    return f"{100 * entry['accuracy_mean']:.1f}{spread} % ({n} seed{'s' * (n > 1)})"


def headline(summary: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """The headline table: each method next to its alternative at a matched budget."""
    rows = []
    for name, other, target in MATCHED:
        a, b = summary.get(name, {}), summary.get(other, {})
        if "accuracy" not in a or "accuracy" not in b:
            continue
        gap = 100 * (a["accuracy_mean"] - b["accuracy_mean"])
        if other == "head_only" and name != "full":
            met = bool(min(a["accuracy"]) > b["accuracy_mean"])
        elif other == "head_only":
            met = bool(gap >= 2.0)
        elif other == "curlora":
            met = bool(gap >= 0.0)
        else:
            met = bool(gap >= -1.0)
        params = (
            f", params {a['adapter_params']:,} vs {b['adapter_params']:,}"
            if b["adapter_params"]
            else ""
        )
        rows.append(
            {
                "method": f"{name} vs {other}",
                "figure": f"{_pct(a)} vs {_pct(b)}",
                "ratio": f"{gap:+.1f} points{params}",
                "target": target,
                "met": met,
            }
        )
    return {"question": QUESTION, "rows": rows}


MATCH_MARGIN = -1.0
"""Lowest interval end that still "matches" (points, or % relative for perplexity)."""
MIN_PAIRED_SEEDS = 3
"""Fewest shared seeds a paired difference is computed from (with two, equal differences, e.g.
accuracies on 1,000 sentences that move in 0.1-point steps, give a zero-width interval)."""


def paired_difference(
    a: Mapping[str, Any], b: Mapping[str, Any], metric: str = "accuracy"
) -> dict[str, Any] | None:
    """Paired-seed difference of summary entries ``a`` and ``b`` with a 95% t-interval.

    Positive always means ``a`` is better. Accuracy: ``100 * (a - b)`` points per seed.
    Perplexity (lower is better): the relative improvement of ``a``, ``100 * (b - a) / b``
    percent per seed. Only seeds both have count (the same seed means the same data order for
    every method); ``None`` with fewer than :data:`MIN_PAIRED_SEEDS`. The verdict: ``"beats"``
    (the interval's lower end > 0), ``"matches"`` (lower end >= -1), ``"below"`` (upper end < -1:
    worse by more than the margin), else ``"undecided"``.

    What the interval covers: the variation between training seeds (initialization and data
    order) on one fixed test set; the test set's own sampling noise is not in it, and seed 0 is
    the run each method's rate was chosen on (on validation), for both methods alike.

    Examples
    --------
    >>> a = {"seeds_done": [0, 1, 2], "accuracy": [0.80, 0.82, 0.81]}
    >>> b = {"seeds_done": [0, 1, 2], "accuracy": [0.79, 0.80, 0.80]}
    >>> d = paired_difference(a, b)
    >>> round(d["mean"], 2), [round(x, 2) for x in d["ci95"]], d["verdict"]
    (1.33, [-0.1, 2.77], 'matches')
    >>> paired_difference(b, a)["verdict"]
    'undecided'
    """
    from scipy import stats

    if metric not in a or metric not in b:
        return None
    va = dict(zip(a["seeds_done"], a[metric], strict=True))
    vb = dict(zip(b["seeds_done"], b[metric], strict=True))
    seeds = sorted(set(va) & set(vb))
    if len(seeds) < MIN_PAIRED_SEEDS:
        return None
    if higher_is_better(metric):
        diffs = np.array([100 * (va[s] - vb[s]) for s in seeds])
    else:
        diffs = np.array([100 * (vb[s] - va[s]) / vb[s] for s in seeds])
    mean, spread = float(diffs.mean()), float(diffs.std(ddof=1))
    half = float(stats.t.ppf(0.975, len(diffs) - 1) * spread / np.sqrt(len(diffs)))
    low, high = mean - half, mean + half
    if low > 0:
        verdict = "beats"
    elif low >= MATCH_MARGIN:
        verdict = "matches"
    else:
        verdict = "below" if high < MATCH_MARGIN else "undecided"
    return {
        "seeds": seeds,
        "n": len(seeds),
        "mean": mean,
        "std": spread,
        "ci95": [low, high],
        "means": [_mean([va[s] for s in seeds]), _mean([vb[s] for s in seeds])],
        "unit": difference_unit(metric),
        "verdict": verdict,
    }


MAX_SEEDS_TO_DECIDE = 1000


def seeds_to_decide(mean: float, std: float, boundary: float) -> int | None:
    """Paired seeds at which a 95% interval around ``mean`` with this seed-to-seed ``std`` of the
    differences would no longer contain ``boundary`` (0 for "beats", -1 for "matches"): how
    many seeds an undecided comparison needs if its mean and spread stay as measured; ``None``
    beyond :data:`MAX_SEEDS_TO_DECIDE` (a mean on the boundary).

    Examples
    --------
    >>> seeds_to_decide(-0.27, 1.75, -1.0)  # a 0.73-point margin against a 1.75-point spread
    25
    >>> seeds_to_decide(2.0, 0.0, 0.0)
    2
    """
    from scipy import stats

    distance = abs(mean - boundary)
    for n in range(2, MAX_SEEDS_TO_DECIDE + 1):
        if float(stats.t.ppf(0.975, n - 1)) * std / np.sqrt(n) < distance:
            return n
    return None


def difference_unit(metric: str) -> str:
    """The unit of :func:`paired_difference` for ``metric`` (positive: the first is better)."""
    return "points" if higher_is_better(metric) else "% relative improvement"


CLAIM_NEEDS = ("beats", "matches")


@dataclass(frozen=True)
class Claim:
    """A paired comparison the report makes, and what it must show to be met.

    ``need`` is the verdict of :func:`paired_difference` required (``"beats"``: the 95%
    interval's lower end > 0; ``"matches"``: >= -1 point or -1% relative, beating included);
    ``margin`` is a mean difference it must also reach (issue 21: >= 3 points over head-only).

    Examples
    --------
    >>> claim = Claim("a", "b", need="matches")
    >>> claim.met({"verdict": "beats", "mean": 0.2}), claim.met({"verdict": "below", "mean": 1})
    (True, False)
    >>> Claim("a", "b", margin=3.0).target("points")
    'beats (95% CI lower end > 0) by >= 3 points'
    """

    a: str
    b: str
    need: str = "beats"
    margin: float | None = None

    def __post_init__(self) -> None:
        if self.need not in CLAIM_NEEDS:
            raise ValueError(f"need={self.need!r}; valid: {', '.join(CLAIM_NEEDS)}")
        if self.margin is not None and not np.isfinite(self.margin):
            raise ValueError(f"margin must be finite or None, got {self.margin!r}")

    def met(self, difference: Mapping[str, Any]) -> bool:
        """Whether a :func:`paired_difference` shows the claim."""
        allowed = ("beats",) if self.need == "beats" else ("beats", "matches")
        reached = self.margin is None or difference["mean"] >= self.margin
        return difference["verdict"] in allowed and reached

    def target(self, unit: str) -> str:
        """The claim's target in words (``unit``: :func:`difference_unit`)."""
        text = (
            "beats (95% CI lower end > 0)"
            if self.need == "beats"
            else f"matches (95% CI lower end >= {MATCH_MARGIN:g} {unit})"
        )
        return text + (f" by >= {self.margin:g} {unit}" if self.margin is not None else "")


def comparisons(
    summary: Mapping[str, Mapping[str, Any]],
    claims: Sequence[Claim],
    metric: str = "accuracy",
) -> dict[str, Any]:
    """``"a vs b"`` -> :func:`paired_difference` with the claim's ``target`` and whether it is
    ``met``, for every claim both of whose methods have :data:`MIN_PAIRED_SEEDS` shared seeds."""
    out = {}
    for claim in claims:
        if claim.a in summary and claim.b in summary:
            found = paired_difference(summary[claim.a], summary[claim.b], metric)
            if found is not None:
                found |= {"target": claim.target(found["unit"]), "met": claim.met(found)}
                found["methods"] = [claim.a, claim.b]
                if found["verdict"] == "undecided":
                    boundary = 0.0 if claim.need == "beats" else MATCH_MARGIN
                    needed = seeds_to_decide(found["mean"], found["std"], boundary)
                    found["seeds_to_decide"] = needed
                out[f"{claim.a} vs {claim.b}"] = found
    return out


DISCRIMINATING_PAIRS = (("lora_r8", "lora_r1"), ("full", "lora_r8"))
"""What makes a benchmark able to tell methods apart (issue 21, section 3): each first method
beats the second over paired seeds."""


def discriminates(differences: Mapping[str, Mapping[str, Any]]) -> bool | None:
    """Whether :func:`comparisons` show a discriminating benchmark (:data:`DISCRIMINATING_PAIRS`
    all beat), ``None`` while one of those comparisons lacks paired seeds.

    Examples
    --------
    >>> beats, undecided = {"verdict": "beats"}, {"verdict": "undecided"}
    >>> discriminates({"lora_r8 vs lora_r1": beats, "full vs lora_r8": beats})
    True
    >>> discriminates({"lora_r8 vs lora_r1": beats, "full vs lora_r8": undecided})
    False
    >>> discriminates({"lora_r8 vs lora_r1": beats}) is None
    True
    """
    found = [differences.get(f"{a} vs {b}") for a, b in DISCRIMINATING_PAIRS]
    if any(difference is None for difference in found):
        return None
    return all(difference["verdict"] == "beats" for difference in found if difference)


def display_scale(metric: str) -> float:
    """Factor from a stored value to the one shown: accuracy in percent, perplexity as is."""
    return 100.0 if metric == "accuracy" else 1.0


def _to_decide(difference: Mapping[str, Any]) -> str:
    if "seeds_to_decide" not in difference:
        return ""
    needed = difference["seeds_to_decide"]
    if needed is None:
        return f" (more than {MAX_SEEDS_TO_DECIDE} seeds to decide at this mean and spread)"
    return f" (about {needed} seeds would decide it at this mean and spread)"


def paired_headline(
    question: str,
    summary: Mapping[str, Mapping[str, Any]],
    differences: Mapping[str, Mapping[str, Any]],
    metric: str,
) -> dict[str, Any]:
    """The ``headline`` of ``benchmarks/results_render.py`` for a paired-seed benchmark: one row
    per paired comparison (the two means over the shared seeds, the difference with its
    interval, the claim's target and whether it is met), then one row per tested method (the
    ablation table: mean +- std over its seeds, chosen rate, adapter parameters)."""
    unit = display_scale(metric)
    better = "higher" if higher_is_better(metric) else "lower"
    rows = []
    for d in differences.values():
        mean_a, mean_b = (unit * m for m in d["means"])
        a, b = (summary[name]["title"] for name in d["methods"])
        rows.append(
            {
                "method": f"{a} vs {b}",
                "figure": f"{metric} {mean_a:.2f} vs {mean_b:.2f} ({better} is better; "
                f"{d['n']} paired seeds)",
                "ratio": f"{d['mean']:+.2f} {d['unit']}, 95% CI [{d['ci95'][0]:+.2f}, "
                f"{d['ci95'][1]:+.2f}]: {d['verdict']}{_to_decide(d)}",
                "target": d["target"],
                "met": d["met"],
            }
        )
    for entry in summary.values():
        if metric in entry:
            std = entry[f"{metric}_std"]
            spread = f" +- {unit * std:.2f}" if std is not None else ""
            seeds = ", ".join(map(str, entry["seeds_done"]))
            edge = ", at the grid's edge" if entry.get("chosen_lr_at_grid_edge") else ""
            rows.append(
                {
                    "method": entry["title"],
                    "figure": f"{metric} {unit * entry[f'{metric}_mean']:.2f}{spread} "
                    f"(seeds {seeds}; rate {entry['chosen_lr']:g}{edge})",
                    "ratio": f"{entry['adapter_params']:,} adapter parameters",
                    "target": None,
                    "met": None,
                }
            )
    return {"question": question, "rows": rows}


REFERENCE_LABELS = {"head_only": "head only", "base": "pretrained, not trained"}
"""Methods without adapter parameters drawn as horizontal reference lines, and their labels."""


def plot(
    summary: Mapping[str, Mapping[str, Any]],
    methods: Sequence[Method],
    path: Path,
    title: str = "",
    metric: str = "accuracy",
) -> None:
    """Test accuracy or perplexity (mean ± std over seeds) against trainable adapter parameters.

    Log x. Members of a family (tCURLoRA ranks, LoRA ranks) are joined by a line; methods
    without adapter parameters (:data:`REFERENCE_LABELS`) are horizontal lines, named in the
    legend only when they lie far outside the trained methods' range (so they do not squash it).
    Accuracy is shown in percent, perplexity as is.
    """
    from _common import pyplot

    unit = display_scale(metric)
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(8.5, 5.2))
    done = {m.name: m for m in methods if metric in summary.get(m.name, {})}
    families: dict[str, list[Method]] = {}
    for method in done.values():
        if method.name in (*REFERENCE_LABELS, "tcurlora_reference"):
            continue
        families.setdefault(method.family or method.name, []).append(method)
    span = least_span(metric, *_plot_families(ax, summary, families, metric, unit))
    for name, label in REFERENCE_LABELS.items():
        if name in done:
            _plot_reference(ax, summary[name], label, metric, unit, span)
    if all(np.isfinite(span)):  # widened to the least span, never narrowed
        low, high = ax.get_ylim()
        ax.set_ylim(min(low, span[0]), max(high, span[1]))
    ax.set_xscale("log")
    head = "classifier head excluded; " if metric == "accuracy" else ""  # an LM has no head
    ax.set_xlabel(f"trainable adapter parameters ({head}log scale)")
    better = "higher" if higher_is_better(metric) else "lower"
    name = "accuracy (%)" if metric == "accuracy" else metric
    ax.set_ylabel(f"test {name}, {better} is better")
    ax.legend(fontsize=7, loc="best")
    if title:
        ax.set_title(title, fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _value_text(value: float, metric: str) -> str:
    return f"{value:.1f}%" if metric == "accuracy" else f"{value:.2f}"


LEAST_SPAN = {"accuracy": 3.0, "perplexity": 0.05}
"""The y axis spans at least this much around the trained methods: points of accuracy, or a
fraction of the mean perplexity (a one-point gap must not fill the plot)."""


def least_span(metric: str, low: float, high: float) -> tuple[float, float]:
    """``(low, high)`` widened symmetrically to :data:`LEAST_SPAN`.

    Examples
    --------
    >>> least_span("accuracy", 81.0, 82.0)
    (80.0, 83.0)
    >>> [round(v, 3) for v in least_span("perplexity", 50.0, 51.0)]
    [49.237, 51.763]
    """
    least = LEAST_SPAN.get(metric, 0.0)
    if metric != "accuracy":
        least *= (low + high) / 2
    grow = max(0.0, least - (high - low)) / 2
    return low - grow, high + grow


def on_axis(value: float, span: tuple[float, float]) -> bool:
    """Whether a reference ``value`` is drawn on an axis around ``span``: within twice the span's
    width of it (further away it would squash the trained methods into a line).

    Examples
    --------
    >>> on_axis(75.5, (80.0, 83.0)), on_axis(80.8, (49.5, 55.5))
    (True, False)
    """
    low, high = span
    width = high - low
    return not (np.isfinite(width) and (value > high + 2 * width or value < low - 2 * width))


FAMILY_COLORS = (*(f"C{i}" for i in range(10)), "black", "navy", "darkred", "darkgreen", "indigo")
"""Colour of the ``i``-th family: Matplotlib's ten, then five dark ones (past fifteen families,
the colours repeat with another marker: :data:`FAMILY_MARKERS`)."""
FAMILY_MARKERS = ("o", "s", "D", "^")


def _plot_families(
    ax: Any,
    summary: Mapping[str, Mapping[str, Any]],
    families: Mapping[str, list[Method]],
    metric: str,
    unit: float,
) -> tuple[float, float]:
    """One marker (or joined line) per family; returns the range its error bars span."""
    spans: list[float] = []
    for index, (family, members) in enumerate(families.items()):
        members.sort(key=lambda m: summary[m.name]["adapter_params"])
        xs = [max(1, summary[m.name]["adapter_params"]) for m in members]
        ys = [unit * summary[m.name][f"{metric}_mean"] for m in members]
        es = [unit * (summary[m.name][f"{metric}_std"] or 0.0) for m in members]
        spans += [y - e for y, e in zip(ys, es, strict=True)]
        spans += [y + e for y, e in zip(ys, es, strict=True)]
        colours = len(FAMILY_COLORS)
        marker = FAMILY_MARKERS[index // colours % len(FAMILY_MARKERS)]
        line = ax.errorbar(
            xs,
            ys,
            yerr=es,
            fmt=f"{marker}-" if len(members) > 1 else marker,
            color=FAMILY_COLORS[index % colours],
            capsize=4,
        )
        seeds = sorted({len(summary[m.name][metric]) for m in members})
        note = f", {'/'.join(map(str, seeds))} seed{'s' * (seeds != [1])}"
        single = f"{family} ({_value_text(ys[0], metric)})"
        line.set_label((family if len(members) > 1 else single) + note)
        for m, x, y in zip(members, xs, ys, strict=True):
            if len(members) > 1:
                ax.annotate(
                    m.name.rsplit("_", 1)[-1],
                    (x, y),
                    textcoords="offset points",
                    xytext=(4, -12),
                    fontsize=7,
                )
    return (min(spans), max(spans)) if spans else (float("nan"), float("nan"))


def _plot_reference(
    ax: Any,
    entry: Mapping[str, Any],
    label: str,
    metric: str,
    unit: float,
    span: tuple[float, float],
) -> None:
    """A method without adapter parameters: a dashed line with its seed band, or, when it lies
    more than twice the trained methods' ``span`` beyond it, a legend entry only."""
    mean, std = unit * entry[f"{metric}_mean"], unit * (entry[f"{metric}_std"] or 0.0)
    text = f"{label} ({_value_text(mean, metric)})"
    if not on_axis(mean, span):
        side = "above" if mean > span[1] else "below"
        ax.plot([], [], color="0.4", ls="--", lw=1, label=f"{text}: off the axis, {side}")
        return
    ax.axhspan(mean - std, mean + std, color="0.85")
    ax.axhline(mean, color="0.4", ls="--", lw=1, label=text)
