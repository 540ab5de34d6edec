"""Out-of-core CUR: a float32 matrix on disk, several times larger than a memory budget, via Dask.

The matrix (default 120,000 x 4,000 float32, 1.92 GB, against a 512 MB budget) is written once
to a ``.npy`` file in row blocks: a decaying spectrum ``s_i = 0.97^i`` on random orthonormal-ish
factors plus Gaussian noise. It is read through ``dask.array.from_array`` on :class:`NpyRows`, a
reader that reads whole row blocks of the ``.npy`` with ``os.pread`` (no memory map: the pages of
a ``numpy.memmap`` would count toward the process's resident memory as they are touched) and
counts its chunk reads, so the number of passes over the file is measured, not assumed.

``tcur.decompose(A, 50)`` (default rule, threaded scheduler, 2 threads) runs in a fresh
subprocess whose peak resident set (``VmHWM``, everything: interpreter, NumPy, Dask, chunks
in flight, the thin dense blocks) is compared with the budget. A second subprocess computes the
truncated-SVD floor exactly from the Gram matrix ``A^T A`` (one more pass; it does not count
against the budget) and the CUR's error in one pass. The machine is shared and loaded; the load
average is recorded.

Run: ``python benchmarks/bench_dask.py [--quick]``.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from _common import RESULTS, peak_rss_mb, pyplot, run_child, write_json

FULL = {"shape": (120_000, 4_000), "rank": 50, "budget_mb": 512, "chunk_rows": 2_000}
DEFAULT_PASSES = 5
"""Passes of the default rule over ``A`` (``tcur.linalg.products``); a gather of rows reads only
the chunks holding them, so the counted reads can come to a little less."""
QUICK = {"shape": (12_000, 400), "rank": 20, "budget_mb": 256, "chunk_rows": 1_000}
DECAY = 0.97
NOISE = 1e-3


class NpyRows:
    """Array-like over a C-order 2-D ``.npy`` file: ``[rows, cols]`` reads the row block with
    ``os.pread`` (then slices the columns) and counts the reads."""

    def __init__(self, path: Path) -> None:
        with open(path, "rb") as handle:
            version = np.lib.format.read_magic(handle)
            read = getattr(np.lib.format, f"read_array_header_{version[0]}_{version[1]}")
            shape, fortran, dtype = read(handle)
            self.offset = handle.tell()
        if fortran or len(shape) != 2:
            raise ValueError(f"{path} must hold a C-order matrix, got shape {shape}")
        self.path, self.shape, self.dtype, self.ndim = path, tuple(shape), np.dtype(dtype), 2
        self.reads = 0

    def __getitem__(self, index: tuple[slice, slice]) -> np.ndarray:
        rows, cols = index
        start, stop, _ = rows.indices(self.shape[0])
        if stop <= start:
            return np.empty((0, self.shape[1]), dtype=self.dtype)[:, cols]
        self.reads += 1
        row_bytes = self.shape[1] * self.dtype.itemsize
        out = np.empty((stop - start, self.shape[1]), dtype=self.dtype)
        fd = os.open(self.path, os.O_RDONLY)
        try:
            view, position = memoryview(out).cast("B"), self.offset + start * row_bytes
            while view.nbytes:
                done = os.preadv(fd, [view], position)
                view, position = view[done:], position + done
        finally:
            os.close(fd)
        return out[:, cols]


def write_matrix(path: Path, shape: tuple[int, int], block: int = 5_000, seed: int = 0) -> None:
    """Write the test matrix (module docstring) to ``path`` in row blocks of ``block``."""
    m, n = shape
    rng = np.random.default_rng(seed)
    k = min(n, 400)
    spectrum = DECAY ** np.arange(k) * np.sqrt(m * n / k)
    right = np.linalg.qr(rng.standard_normal((n, k)))[0].T * spectrum[:, None]
    header = {"descr": np.lib.format.dtype_to_descr(np.dtype(np.float32)), "fortran_order": False}
    with open(path, "wb") as handle:
        np.lib.format.write_array_header_1_0(handle, {**header, "shape": shape})
        for start in range(0, m, block):
            rows = min(block, m - start)
            left = rng.standard_normal((rows, k)) / np.sqrt(m)
            noise = NOISE * rng.standard_normal((rows, n))
            handle.write(np.ascontiguousarray(left @ right + noise, dtype=np.float32).tobytes())


def _lazy(path: Path, chunk_rows: int) -> tuple[Any, NpyRows]:
    import dask.array as da

    reader = NpyRows(path)
    A = da.from_array(reader, chunks=(chunk_rows, reader.shape[1]), asarray=False)
    reader.reads = 0  # from_array reads an empty slice for its meta
    return A, reader


def child_decompose(path: Path, setup: dict[str, Any], out: Path) -> dict[str, Any]:
    """The measured run: ``tcur.decompose`` on the lazy matrix; saves the factors to ``out``."""
    import dask

    import tcur

    A, reader = _lazy(path, setup["chunk_rows"])
    baseline = peak_rss_mb()
    with dask.config.set(scheduler="threads", num_workers=2):
        start = time.perf_counter()
        d = tcur.decompose(A, setup["rank"], seed=0)
        seconds = time.perf_counter() - start
    np.savez(out, rows=d.rows, cols=d.cols, U=np.asarray(d.U.compute()))
    chunks = A.numblocks[0]
    return {
        "seconds": seconds,
        "chunk_reads": reader.reads,
        "chunks": chunks,
        "passes": reader.reads / chunks,
        "peak_rss_mb": peak_rss_mb(),
        "rss_after_imports_mb": baseline,
        "C_type": type(d.C).__module__ + "." + type(d.C).__name__,
    }


def child_check(path: Path, setup: dict[str, Any], factors: Path) -> dict[str, Any]:
    """SVD floor from the Gram matrix (one pass) and the CUR's error (one pass)."""
    import dask

    A, _ = _lazy(path, setup["chunk_rows"])
    saved = np.load(factors)
    rows, cols, U = saved["rows"], saved["cols"], saved["U"]
    A64 = A.astype(np.float64)
    with dask.config.set(scheduler="threads", num_workers=2):
        gram, total = dask.compute(A64.T @ A64, (A64**2).sum())
        R = A64[rows, :].compute()
        residual = ((A64 - A64[:, cols] @ (U.astype(np.float64) @ R)) ** 2).sum().compute()
    eigen = np.sort(np.linalg.eigvalsh(gram))[::-1]
    rank = setup["rank"]
    floor = float(np.sqrt(max(total - eigen[:rank].sum(), 0.0) / total))
    return {"svd_floor": floor, "error": float(np.sqrt(residual / total))}


def headline(r: dict[str, Any]) -> dict[str, Any]:
    """The headline table (format: ``results_render``)."""
    m, n = r["shape"]
    size = f"{m:,} x {n:,} float32 ({r['file_gb']:.2f} GB on disk)"
    return {
        "question": "Can tcur.decompose factor a Dask matrix stored on disk that is several "
        "times larger than the memory budget, in a small fixed number of passes, accurately?",
        "rows": [
            {
                "method": f"tcur.decompose(A, {r['rank']}), {size}, peak RSS",
                "figure": f"{r['peak_rss_mb']:.0f} MB (budget {r['budget_mb']} MB; file "
                f"{r['file_gb'] * 1024 / r['budget_mb']:.1f}x the budget)",
                "ratio": f"{r['peak_rss_mb'] / r['budget_mb']:.2f}x the budget",
                "target": "< the budget",
                "met": bool(r["peak_rss_mb"] < r["budget_mb"]),
            },
            {
                "method": "passes over the file (counted chunk reads / chunks)",
                "figure": f"{r['passes']:g} passes in {r['seconds']:.1f} s",
                "ratio": f"{r['passes']:g} passes",
                "target": f"small fixed number ({DEFAULT_PASSES} for the default rule)",
                "met": bool(r["passes"] <= DEFAULT_PASSES),
            },
            {
                "method": "relative error vs the truncated-SVD floor",
                "figure": f"{r['error']:.4f} vs {r['svd_floor']:.4f}",
                "ratio": f"{r['error'] / r['svd_floor']:.3f}x the SVD floor",
                "target": "<= 2.5x the SVD floor",
                "met": bool(r["error"] <= 2.5 * r["svd_floor"]),
            },
        ],
    }


def plot(r: dict[str, Any], path: Path) -> None:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.5))
    labels = ["file on disk", "budget", "peak RSS"]
    values = [r["file_gb"] * 1024, r["budget_mb"], r["peak_rss_mb"]]
    ax.bar(labels, values, color=["0.6", "tab:orange", "tab:blue"])
    ax.set_ylabel("MB")
    ax.set_title(
        f"Dask CUR rank {r['rank']}: {r['passes']:g} passes, {r['seconds']:.0f} s, "
        f"error {r['error'] / r['svd_floor']:.2f}x SVD floor",
        fontsize=9,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a 12,000 x 400 matrix")
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    parser.add_argument("--dir", default=None, help="where the .npy goes (default: a temp dir)")
    args = parser.parse_args(argv)
    if args.child:
        kind, path, setup, extra = args.child
        run = child_decompose if kind == "decompose" else child_check
        print(json.dumps(run(Path(path), json.loads(setup), Path(extra))))
        return {}
    setup = QUICK if args.quick else FULL
    load = [list(os.getloadavg())]
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        path, factors = Path(tmp) / "matrix.npy", Path(tmp) / "factors.npz"
        start = time.perf_counter()
        write_matrix(path, tuple(setup["shape"]))
        write_s = time.perf_counter() - start
        result = {**setup, "file_gb": path.stat().st_size / 2**30, "write_s": write_s}
        result.update(
            run_child(__file__, "--child", "decompose", str(path), json.dumps(setup), str(factors))
        )
        load.append(list(os.getloadavg()))
        result.update(
            run_child(__file__, "--child", "check", str(path), json.dumps(setup), str(factors))
        )
    load.append(list(os.getloadavg()))
    payload = {
        "title": "Out-of-core Dask CUR under a memory budget",
        "headline": headline(result),
        "load_average": load,
        "decay": DECAY,
        "noise": NOISE,
        "result": result,
    }
    name = "bench_dask_quick" if args.quick else "bench_dask"
    write_json(name, payload)
    plot(result, RESULTS / f"{name}.png")
    print(json.dumps(result))
    return payload


if __name__ == "__main__":
    main()
