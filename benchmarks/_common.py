"""Shared plumbing for the benchmark scripts: timing, machine description, result files."""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"


def machine() -> dict[str, Any]:
    """Where and when a benchmark ran (stored in every result file)."""
    import numpy as np

    info: dict[str, Any] = {
        "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "load_average_1min": round(os.getloadavg()[0], 2),
        "python": platform.python_version(),
        "numpy": np.__version__,
    }
    try:
        import torch

        info["torch"] = torch.__version__
        info["torch_threads"] = torch.get_num_threads()
        info["cuda"] = torch.cuda.get_device_name() if torch.cuda.is_available() else None
    except ImportError:
        pass
    return info


def proc_status_kib(field: str) -> int:
    """A memory field of ``/proc/self/status`` in KiB: ``VmHWM`` (the peak resident set of this
    process's own address space; ``ru_maxrss`` would also count a parent's at the fork) or
    ``VmRSS``."""
    for line in Path("/proc/self/status").read_text(encoding="ascii").splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def peak_rss_mb() -> float:
    """Peak resident memory of this process in MiB (``VmHWM``; since the last
    :func:`reset_peak_rss`)."""
    return proc_status_kib("VmHWM") / 1024


def reset_peak_rss() -> None:
    """Reset this process's peak resident set (``VmHWM``) to its current size."""
    Path("/proc/self/clear_refs").write_text("5", encoding="ascii")


def run_child(script: str, *args: str) -> dict[str, Any]:
    """``python script *args`` in a fresh interpreter with one BLAS thread; the JSON object on
    the last line of its stdout. A child per measurement keeps each peak memory its own."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    command = [sys.executable, script, *args]
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=True)
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def best_time(fn: Callable[[], Any], repeat: int = 3) -> tuple[float, Any]:
    """Minimum wall time of ``repeat`` calls (seconds) and the last result."""
    best, out = float("inf"), None
    for _ in range(repeat):
        start = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - start)
    return best, out


def write_json(name: str, payload: dict[str, Any]) -> Path:
    """Write ``results/<name>.json`` with the machine description added.

    The file is replaced atomically (temporary file, then ``os.replace``), so a reader or a second
    writer never sees half of it.
    """
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    fd, tmp = tempfile.mkstemp(dir=RESULTS, prefix=f".{name}.", suffix=".tmp")
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(json.dumps({"machine": machine(), **payload}, indent=2) + "\n")
    os.replace(tmp, path)
    return path


def base_parser(doc: str | None) -> argparse.ArgumentParser:
    """The options every benchmark script shares: ``--quick`` and ``--threads``.

    The description is the first paragraph of ``doc`` (the script's module docstring).
    """
    parser = argparse.ArgumentParser(description=(doc or "").split("\n\n")[0] or None)
    parser.add_argument("--quick", action="store_true", help="tiny smoke-test budget")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads (default 1: on shared cores more threads ran slower)",
    )
    return parser


def prepare(threads: int) -> None:
    """Offline mode for transformers and ``threads`` torch threads (when torch is installed)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    try:
        import torch
    except ImportError:
        return
    torch.set_num_threads(threads)


def pyplot() -> Any:
    """matplotlib.pyplot with the non-interactive Agg backend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt
