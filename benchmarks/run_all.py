"""Run every benchmark of the project, then regenerate ``benchmarks/README.md``.

``make bench`` calls it; options: ``--quick``, ``--only NAME ...``, ``--readme-only``.

The scripts are found, not listed: every ``bench_*.py`` and ``finetune_*.py`` in this directory,
in name order, then the two entry points of the ``finetune`` package that belong to the regular
benchmarks (``finetune/minilm_rt.py``, the committed fine-tuning frontier, and
``finetune/step_size.py``). The package's research runs (``finetune/discriminating.py``,
``finetune/causal_lm.py``; hours each, resumable) are left out on purpose: they have their own
command, ``make finetune FT=<name> FT_ARGS=--resume``. Run it as ``make bench``, which puts
``benchmarks`` and ``examples`` on ``PYTHONPATH`` (the scripts import ``_common``, the ``finetune``
package and ``tcur_demo``); nothing here changes ``sys.path``. Each must define ``main(argv)``
that parses ``argv`` with argparse (accepting ``--quick``) and writes its JSON (+ PNG) to
``benchmarks/results/``. A failing script is reported and the others still run; the exit status is
non-zero if any failed. What ran, how long it took and whether it failed goes to
``results/run_all.json``, which the README shows too.
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import json
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from _common import machine
from _readme import write as write_readme

BENCH_DIR = Path(__file__).resolve().parent

PATTERNS = ("bench_*.py", "finetune_*.py")
PACKAGED = ("finetune/minilm_rt.py", "finetune/step_size.py")
"""Entry points of the ``finetune`` package that ``make bench`` runs (after the patterns)."""


@dataclass(frozen=True)
class Outcome:
    """How one benchmark script's run went."""

    script: str
    seconds: float
    status: str
    error: str | None = None


def discover(directory: Path = BENCH_DIR) -> list[Path]:
    """Benchmark scripts in ``directory``: ``bench_*.py``, ``finetune_*.py`` sorted by name, then
    those of :data:`PACKAGED` that exist."""
    found = {path for pattern in PATTERNS for path in directory.glob(pattern) if path.is_file()}
    packaged = [directory / name for name in PACKAGED if (directory / name).is_file()]
    return sorted(found, key=lambda path: path.name) + packaged


def module_name(path: Path) -> str:
    """Name the script at ``path`` is imported under."""
    return f"benchmark_{path.stem}"


def load_main(path: Path) -> Callable[[list[str]], Any]:
    """Import the script at ``path`` as a module and return its ``main``."""
    spec = importlib.util.spec_from_file_location(module_name(path), path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import the benchmark script {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses and pickling look their module up here
    spec.loader.exec_module(module)
    main = getattr(module, "main", None)
    if not callable(main):
        raise TypeError(f"benchmark script {path.name} has no main(argv) function")
    return main  # type: ignore[no-any-return]


def run_script(path: Path, quick: bool) -> Outcome:
    """Run one script's ``main`` (with ``--quick`` if asked); failures become an outcome."""
    start = time.perf_counter()
    print(f"\n=== {path.name}{' --quick' if quick else ''}", flush=True)
    try:
        load_main(path)(["--quick"] if quick else [])
    except SystemExit as stop:
        if stop.code not in (None, 0):
            return _failed(path, start, f"exited with status {stop.code}")
    except Exception:
        traceback.print_exc()
        return _failed(path, start, traceback.format_exc(limit=-1).strip().splitlines()[-1])
    finally:
        sys.modules.pop(module_name(path), None)  # let the script's models and data be freed
        gc.collect()
    seconds = time.perf_counter() - start
    print(f"=== {path.name}: ok in {seconds:.0f} s", flush=True)
    return Outcome(path.name, seconds, "ok")


def _failed(path: Path, start: float, error: str) -> Outcome:
    seconds = time.perf_counter() - start
    print(f"=== {path.name}: FAILED after {seconds:.0f} s: {error}", flush=True)
    return Outcome(path.name, seconds, "failed", error)


def select(scripts: Sequence[Path], only: Sequence[str] | None) -> list[Path]:
    """The scripts whose file name contains one of ``only`` (all of them when ``only`` is empty)."""
    if not only:
        return list(scripts)
    chosen = [p for p in scripts if any(name in p.name for name in only)]
    if not chosen:
        names = ", ".join(p.name for p in scripts) or "none"
        raise SystemExit(f"--only {' '.join(only)} matches no benchmark script (found: {names})")
    return chosen


def build_parser() -> argparse.ArgumentParser:
    """Command-line options of the runner."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="pass --quick to every script")
    parser.add_argument(
        "--only", nargs="+", metavar="NAME", help="run only scripts whose name contains NAME"
    )
    parser.add_argument(
        "--readme-only", action="store_true", help="only regenerate README.md from results/"
    )
    return parser


def main(argv: Sequence[str] | None = None, directory: Path = BENCH_DIR) -> int:
    """Run the benchmarks in ``directory`` and rewrite its README; returns the exit status."""
    args = build_parser().parse_args(argv)
    outcomes: list[Outcome] = []
    if not args.readme_only:
        for path in select(discover(directory), args.only):
            outcomes.append(run_script(path, args.quick))
        record(directory / "results", outcomes, args.quick)
    readme = write_readme(directory / "results", directory / "README.md")
    print(f"\nwrote {readme}")
    failed = [o.script for o in outcomes if o.status != "ok"]
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


def record(results: Path, outcomes: list[Outcome], quick: bool) -> Path:
    """Write ``results/run_all.json``: machine, date and the outcome of every script run."""
    results.mkdir(parents=True, exist_ok=True)
    path = results / "run_all.json"
    rows = [
        {
            "method": o.script,
            "figure": f"{o.status} in {o.seconds:.0f} s" + (f": {o.error}" if o.error else ""),
            "ratio": None,
            "target": "runs without error",
            "met": o.status == "ok",
        }
        for o in outcomes
    ]
    headline = {"question": "Did every benchmark script of the last run finish?", "rows": rows}
    payload = {
        "machine": machine(),
        "quick": quick,
        "headline": headline,
        "scripts": [asdict(o) for o in outcomes],
    }
    path.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    return path


if __name__ == "__main__":
    raise SystemExit(main())
