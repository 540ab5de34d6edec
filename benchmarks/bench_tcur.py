"""Every t-CUR selection rule x middle on real tensors vs the truncated t-SVD (the error floor).

Tensors (:mod:`cur_suite`): ``china.jpg`` RGB (427 x 640 x 3, channels as frontal slices), the
all-MiniLM-L6-v2 query and value weights of the six layers (384 x 384 x 6), and a video-like
stack of 8 shifted frames of ``flower.jpg`` plus noise (214 x 320 x 8); tubal ranks 5, 10, 20,
40. For each rule (seed 0 for the randomized ones) the rows and columns are selected once and
both middles are evaluated on them: ``optimal`` (``tpinv(C) * A * tpinv(R)``) and ``pinv``
(the truncated t-pseudo-inverse of the square ``k x k x n3`` intersection). The truncated
t-SVD error comes from the singular values of the Fourier slices. The summary gives, per
rule/middle, the worst and median ratio to the t-SVD error over every case; the default of
``tcur``/``tcur.decompose`` is marked. One BLAS thread.

Speed (issue 19): on every case, the default ``tcur(A, k)`` and ``tcur.linalg.tsvd(A, k)`` at
the same tubal rank, interleaved, median of five calls each; the headline gives the worst time
ratio next to the error ratio (target: no slower than ``tsvd``).

Run: ``python benchmarks/bench_tcur.py [--quick]``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from typing import Any

import numpy as np
import scipy.linalg  # noqa: F401  (load SciPy's BLAS before the thread limit below)
from _common import RESULTS, pyplot, write_json
from cur_suite import tensors
from threadpoolctl import threadpool_limits

from tcur.linalg import TCUR, relative_error, tcur, tsvd
from tcur.linalg.matrix_cur import DEFAULT_MIDDLE, DEFAULT_SELECT
from tcur.linalg.pinv import pinv
from tcur.linalg.selection import SELECT_RULES
from tcur.linalg.tproduct import fourier_weights, from_fourier, to_fourier

RANKS = (5, 10, 20, 40)
DEFAULT = f"{DEFAULT_SELECT}/{DEFAULT_MIDDLE}"


def tsvd_floors(A: np.ndarray, ranks: list[int]) -> dict[int, float]:
    """Relative error of the truncated t-SVD of each tubal rank, from the Fourier slices."""
    F = to_fourier(A)
    w = fourier_weights(A.shape[2], F.shape[0])
    s2 = np.linalg.svd(F, compute_uv=False) ** 2
    total = float(w @ s2.sum(axis=1))
    return {k: float(np.sqrt(w @ s2[:, k:].sum(axis=1) / total)) for k in ranks}


def rule_errors(A: np.ndarray, k: int, rule: str) -> dict[str, dict[str, float]]:
    """Errors of both middles on one selection, and the time of the ``optimal`` fit."""
    start = time.perf_counter()
    d = tcur(A, k, select=rule, middle="optimal", seed=0)
    elapsed = time.perf_counter() - start
    F = to_fourier(A)
    W = F[:, d.rows, :][:, :, d.cols]
    U = from_fourier(pinv(W, rank=k), A.shape[2], True)
    approx_pinv = TCUR(d.C, U, d.R, d.rows, d.cols, k).reconstruct()
    return {
        "optimal": {"error": float(relative_error(A, d.reconstruct())), "time_s": elapsed},
        "pinv": {"error": float(relative_error(A, approx_pinv))},
    }


def time_against_tsvd(A: np.ndarray, k: int, repeat: int = 5) -> dict[str, float]:
    """Median seconds of the default ``tcur(A, k)`` and ``tsvd(A, k)``, interleaved."""
    ours, theirs = [], []
    for _ in range(repeat):
        start = time.perf_counter()
        tcur(A, k, seed=0)
        ours.append(time.perf_counter() - start)
        start = time.perf_counter()
        tsvd(A, k)
        theirs.append(time.perf_counter() - start)
    t_ours, t_tsvd = statistics.median(ours), statistics.median(theirs)
    return {"tcur_s": t_ours, "tsvd_s": t_tsvd, "time_vs_tsvd": t_ours / t_tsvd}


def run_case(A: np.ndarray) -> list[dict[str, Any]]:
    ranks = [k for k in RANKS if k < min(A.shape[:2]) // 2]
    floors = tsvd_floors(A, ranks)
    records = []
    for k in ranks:
        methods: dict[str, Any] = {}
        for rule in SELECT_RULES:
            for middle, res in rule_errors(A, k, rule).items():
                res["vs_tsvd"] = res["error"] / floors[k]
                methods[f"{rule}/{middle}"] = res
        speed = time_against_tsvd(A, k)
        records.append({"rank": k, "tsvd_floor": floors[k], "methods": methods, "speed": speed})
        d = methods[DEFAULT]
        print(
            f"  rank {k:3d}: t-SVD {floors[k]:.4f} default {d['error']:.4f} "
            f"(x{d['vs_tsvd']:.3f}) {speed['tcur_s'] * 1e3:.0f} ms vs tsvd "
            f"{speed['tsvd_s'] * 1e3:.0f} ms",
            flush=True,
        )
    return records


def summarize(results: dict[str, list[dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    table: dict[str, dict[str, Any]] = {}
    entries = [(case, r) for case, recs in results.items() for r in recs]
    for name in entries[0][1]["methods"]:
        ratios = np.array([r["methods"][name]["vs_tsvd"] for _, r in entries])
        errors = np.array([r["methods"][name]["error"] for _, r in entries])
        worst = int(np.argmax(np.where(np.isfinite(ratios), ratios, np.inf)))
        table[name] = {
            "default": name == DEFAULT,
            "worst_vs_tsvd": float(np.max(ratios)),
            "median_vs_tsvd": float(np.median(ratios)),
            "worst_case": f"{entries[worst][0]} rank {entries[worst][1]['rank']}",
            "non_finite": int(np.sum(~np.isfinite(errors))),
            "cases_within_2.5x": int(np.sum(ratios <= 2.5)),
            "cases": len(entries),
        }
    return table


def headline(summary: dict[str, dict[str, Any]], results: dict[str, Any]) -> dict[str, Any]:
    """The headline in the ``results_render`` format: the default, the best and worst others."""
    ours = summary[DEFAULT]
    speeds = [(name, r) for name, recs in results.items() for r in recs]
    slowest_name, slowest = max(speeds, key=lambda e: e[1]["speed"]["time_vs_tsvd"])
    ratios = [r["speed"]["time_vs_tsvd"] for _, r in speeds]
    others = {n: r for n, r in summary.items() if n != DEFAULT}
    best = min(others, key=lambda n: others[n]["worst_vs_tsvd"])
    worst = max(others, key=lambda n: others[n]["median_vs_tsvd"])
    rows = [
        {
            "method": f"default {DEFAULT} ({ours['cases']} real cases, tubal ranks 5-40)",
            "figure": f"error worst {ours['worst_vs_tsvd']:.2f}x, median "
            f"{ours['median_vs_tsvd']:.2f}x the t-SVD; NaN/Inf: {ours['non_finite']}",
            "ratio": f"{ours['worst_vs_tsvd']:.2f}x (worst)",
            "target": "<= 2.5x the truncated t-SVD on every case",
            "met": ours["worst_vs_tsvd"] <= 2.5 and ours["non_finite"] == 0,
        },
        {
            "method": f"default tcur(A, k) vs tsvd(A, k), time ({len(speeds)} cases)",
            "figure": f"slowest {slowest_name} at rank {slowest['rank']}: "
            f"{slowest['speed']['tcur_s'] * 1e3:.0f} ms vs {slowest['speed']['tsvd_s'] * 1e3:.0f}"
            f" ms, error {slowest['methods'][DEFAULT]['vs_tsvd']:.2f}x; median time "
            f"{statistics.median(ratios):.2f}x",
            "ratio": f"{max(ratios):.2f}x tsvd's time (worst)",
            "target": "no slower than tsvd at the same rank (<= 1.00x)",
            "met": bool(max(ratios) <= 1.0),
        },
    ]
    for label, name in (("most robust other rule", best), ("least accurate rule", worst)):
        rows.append(
            {
                "method": f"{label}: {name}",
                "figure": f"worst {others[name]['worst_vs_tsvd']:.2f}x, median "
                f"{others[name]['median_vs_tsvd']:.2f}x",
                "ratio": None,
                "target": None,
                "met": None,
            }
        )
    return {
        "question": "Is the default t-CUR close to the truncated t-SVD on real tensors?",
        "rows": rows,
    }


def plot(summary: dict[str, Any], results: dict[str, Any], path: Any) -> None:
    plt = pyplot()
    names = list(summary)
    fig, ax = plt.subplots(figsize=(12, 5))
    data = [[r["methods"][n]["vs_tsvd"] for recs in results.values() for r in recs] for n in names]
    ax.boxplot(data, whis=(0, 100))
    ax.axhline(2.5, color="r", ls="--", lw=1, label="target 2.5")
    labels = [f"{n}\n(default)" if summary[n]["default"] else n for n in names]
    ax.set_xticks(range(1, len(names) + 1), labels, rotation=60, ha="right", fontsize=7)
    ax.set(yscale="log", ylabel="error / truncated t-SVD error")
    ax.set_title("t-CUR on real tensors: every case, tubal ranks 5-40 (whiskers: min/max)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one downsampled image tensor")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    start = time.perf_counter()
    results = {}
    with threadpool_limits(limits=1):
        for name, A in tensors(args.quick).items():
            print(name, flush=True)
            results[name] = run_case(A)
    summary = summarize(results)
    for name, row in summary.items():
        print(
            f"{name:26s} vs t-SVD worst {row['worst_vs_tsvd']:.3f} median "
            f"{row['median_vs_tsvd']:.3f}{'  <- default' if row['default'] else ''}"
        )
    payload = {
        "benchmark": "t-CUR rules x middles on real tensors vs the truncated t-SVD",
        "quick": args.quick,
        "default": DEFAULT,
        "threads": "1 (threadpoolctl BLAS limit)",
        "target": "default <= 2.5x the truncated t-SVD error on every case",
        "suite_seconds": time.perf_counter() - start,
        "headline": headline(summary, results),
        "summary": summary,
        "results": results,
    }
    name = "bench_tcur_quick" if args.quick else "bench_tcur"
    write_json(name, payload)
    plot(summary, results, RESULTS / f"{name}.png")
    return payload


if __name__ == "__main__":
    main()
