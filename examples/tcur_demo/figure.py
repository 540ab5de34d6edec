"""The demo's summary figure, drawn from ``summary.json`` alone (:mod:`tcur_demo.summary`).

Top: step 1's error ratio and speed ratio of :func:`tcur.decompose` against SciPy's ID-CUR and the
truncated SVD (t-SVD for the tensor) on every data set and rank. Bottom (when step 2 ran): test
accuracy against trainable adapter parameters, the demo's single seed beside the frontier's
3-seed means. Redraw a saved summary with
``PYTHONPATH=examples python -m tcur_demo.figure tcur-demo/summary.json out.png``.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tcur_demo.finetune import METHODS


def plot(summary: dict[str, Any], path: Path) -> Path:
    """Draw the summary figure of ``summary`` into the PNG ``path``."""
    from matplotlib.figure import Figure

    step2 = "frontier" in summary
    fig = Figure(figsize=(11, 8 if step2 else 4.8), layout="constrained")
    grid = fig.add_gridspec(2 if step2 else 1, 2, height_ratios=[1.25, 1] if step2 else [1])
    _plot_ratios(summary, fig.add_subplot(grid[0, 0]), fig.add_subplot(grid[0, 1]))
    if step2:
        _plot_accuracy(summary, fig.add_subplot(grid[1, :]))
    fig.suptitle("make demo: tcur.decompose on real data, then fine-tuning all-MiniLM-L6-v2")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    return path


def _case_labels(summary: dict[str, Any]) -> list[str]:
    matrices = [f"{r['data']}\nrank {r['rank']}" for r in summary["decompose_rows"]]
    tensor = [f"MiniLM query stack\nt-CUR, tubal rank {r['rank']}" for r in summary["tcur_rows"]]
    return matrices + tensor


def _bars(ax: Any, y: Sequence[float], values: Sequence[float], height: float, label: str) -> None:
    bars = ax.barh(y, values, height, label=label)
    ax.bar_label(bars, labels=[f"{v:.2f}" for v in values], padding=2, fontsize=7)


def _plot_ratios(summary: dict[str, Any], errors: Any, speed: Any) -> None:
    from matplotlib.ticker import FixedLocator, NullLocator

    rows, tensor = summary["decompose_rows"], summary["tcur_rows"]
    labels = _case_labels(summary)
    y = [v + 1 for v in range(len(labels))][::-1]  # y = 0 is left free for the legends
    upper, lower = [v + 0.2 for v in y[: len(rows)]], [v - 0.2 for v in y]
    height = 0.38
    vs_svd = [r["error_vs_svd"] for r in rows] + [r["error_vs_tsvd"] for r in tensor]
    _bars(errors, upper, [r["error_vs_scipy"] for r in rows], height, "vs SciPy ID-CUR")
    _bars(errors, lower, vs_svd, height, "vs truncated SVD (t-SVD)")
    errors.axvline(1.0, color="black", linewidth=1)
    errors.set(
        yticks=y,
        ylim=(-0.6, len(labels) + 0.6),
        xlim=(0, 1.25 * max([*vs_svd, 1.0])),
        xlabel="tcur.decompose's error / the baseline's",
        title="error ratio (left of 1: tcur more accurate)",
    )
    errors.set_yticklabels(labels, fontsize=8)
    errors.legend(loc="lower right", ncol=2, fontsize=8)

    sp_scipy = [r["speedup_vs_scipy"] for r in rows]
    sp_svd = [r["speedup_vs_svd"] for r in rows] + [r["speedup_vs_tsvd"] for r in tensor]
    _bars(speed, upper, sp_scipy, height, "vs SciPy ID-CUR")
    _bars(speed, lower, sp_svd, height, "vs truncated SVD (t-SVD)")
    speed.axvline(1.0, color="black", linewidth=1)
    every = sp_scipy + sp_svd
    low, high = min([*every, 0.5]) / 1.5, max([*every, 2.0]) * 3.0
    ticks = [t for t in (0.1, 0.25, 0.5, 1, 2, 4, 8, 16, 32, 64) if low <= t <= high]
    speed.set(
        xscale="log",
        xlim=(low, high),
        yticks=y,
        ylim=(-0.6, len(labels) + 0.6),
        xlabel="the baseline's time / tcur.decompose's",
        title="speed ratio (right of 1: tcur faster)",
    )
    speed.xaxis.set_major_locator(FixedLocator(ticks))
    speed.xaxis.set_minor_locator(NullLocator())
    speed.set_xticklabels([f"{t:g}" for t in ticks])
    speed.set_yticklabels([])
    speed.legend(loc="lower right", ncol=2, fontsize=8)


def _plot_accuracy(summary: dict[str, Any], ax: Any) -> None:
    from matplotlib.ticker import FuncFormatter, NullFormatter

    counts = []
    for name in (m.name for m in METHODS):
        label, frontier = summary[f"{name}_label"], summary["frontier"][name]
        accuracy, params = 100 * summary[f"{name}_accuracy"], summary[f"{name}_params"]
        mean, std = 100 * frontier["accuracy_mean"], 100 * frontier["accuracy_std"]
        if params == 0:
            ax.axhline(accuracy, color="grey", linestyle=":", label=f"{label}: demo, 1 seed")
            seeds = f"{frontier['seeds']} seeds"
            ax.axhline(mean, color="grey", linestyle="--", label=f"{label}: frontier, {seeds}")
            continue
        counts.append(params)
        (line,) = ax.plot([params], [accuracy], "o", label=f"{label}: demo, 1 seed")
        ax.errorbar(
            [frontier["adapter_params"]],
            [mean],
            yerr=[std],
            fmt="s",
            mfc="none",
            color=line.get_color(),
            capsize=3,
            label=f"{label}: frontier, {frontier['seeds']} seeds",
        )
    ax.set(
        xscale="log",
        xlim=(min(counts) / 2.5, max(counts) * 2.5),
        xlabel="trainable adapter parameters (the head's not counted)",
        ylabel="test accuracy (%)",
        title="fine-tuning on Rotten Tomatoes: accuracy per adapter parameter",
    )
    ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x:,.0f}"))
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=9)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m tcur_demo.figure SUMMARY_JSON PNG``: redraw a saved summary."""
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 2:
        print("usage: python -m tcur_demo.figure SUMMARY_JSON PNG", file=sys.stderr)
        return 2
    summary = json.loads(Path(args[0]).read_text(encoding="utf-8"))
    print(plot(summary, Path(args[1])))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
