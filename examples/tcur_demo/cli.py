"""Command line of the demo: ``python -m tcur_demo`` (``make demo``) with ``examples/`` on the path.

The demo runs offline: it reads the model and data shipped by the ``examples`` extra and sets
``HF_HUB_OFFLINE``/``TRANSFORMERS_OFFLINE`` so transformers never reaches for the network.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tcur import __version__
from tcur_demo.report import interactive
from tcur_demo.requirements import (
    DECOMPOSITION_PACKAGES,
    FINETUNE_PACKAGES,
    MissingPackageError,
    require,
)

EXIT_MISSING_PACKAGE = 3
"""Exit status when an optional package is missing (argparse uses 2 for usage errors)."""


def build_parser() -> argparse.ArgumentParser:
    """The demo's argument parser."""
    parser = argparse.ArgumentParser(
        prog="python -m tcur_demo",
        description=(
            "(1) tcur.decompose on real data (an image, MiniLM weights, digits) against SciPy's "
            "ID-CUR and the truncated SVD, t-CUR against the t-SVD, one tol= call; (2) fine-tune "
            "all-MiniLM-L6-v2 on Rotten Tomatoes sentiment (head only, tCURLoRA, LoRA r1 and r8) "
            "beside the frontier's 3-seed means. Writes summary.json and summary.png."
        ),
    )
    parser.add_argument("--version", action="version", version=f"tcur {__version__}")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="one rank per data set and a small training budget (under a minute)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("tcur-demo"),
        metavar="DIR",
        help="directory for summary.json and summary.png (default: %(default)s)",
    )
    parser.add_argument(
        "--skip-finetune", action="store_true", help="run only the decomposition step"
    )
    parser.add_argument(
        "--threads",
        type=_positive_int,
        default=1,
        metavar="N",
        help=(
            "threads for torch and BLAS (default: %(default)s; on cores shared with other jobs "
            "more threads made the demo several times slower, raise it on a machine of your own)"
        ),
    )
    return parser


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def limit_threads(n: int) -> None:
    """Use ``n`` threads in torch (when installed) and in the BLAS/OpenMP pools of NumPy/SciPy."""
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=n)
    if importlib.util.find_spec("torch") is not None:
        import torch

        torch.set_num_threads(n)


def run_demo(quick: bool, out: Path, skip_finetune: bool, threads: int = 1) -> dict[str, Any]:
    """Run the demo steps, write ``summary.json`` and ``summary.png`` to ``out``.

    Raises :class:`MissingPackageError` before any work starts if an optional package is missing.
    Returns the summary.
    """
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    require(DECOMPOSITION_PACKAGES if skip_finetune else DECOMPOSITION_PACKAGES | FINETUNE_PACKAGES)
    limit_threads(threads)
    from tcur_demo import decomposition, figure, finetune, frontier, paired, summary

    start = time.perf_counter()
    print("== Step 1: tcur.decompose on real data")
    step1 = decomposition.run(decomposition.real_inputs(quick), repeats=1 if quick else 2)
    step1_seconds = time.perf_counter() - start
    print(f"(step 1: {step1_seconds:.0f} s)")
    outcomes: list[Any] = []
    sentences: list[str] = []
    results = None
    verdicts: list[paired.Verdict] = []
    if not skip_finetune:
        results = frontier.load()
        verdicts = paired.load()
        print("\n== Step 2: fine-tuning all-MiniLM-L6-v2 on Rotten Tomatoes sentiment")
        outcomes = finetune.run(results, quick, progress=interactive())
        test_size = finetune.budget(results, quick).test_size
        sentences = finetune.conclusion(outcomes, results, test_size)
        sentences += paired.sentences(verdicts, paired.BENCHMARKS)
        print("\n" + "\n".join(sentences))
    seconds = time.perf_counter() - start
    report = summary.build(step1, outcomes, results, sentences, seconds, quick, verdicts)
    report["step1_seconds"] = step1_seconds
    path = summary.write_json(report, out)
    png = figure.plot(report, out / "summary.png")
    print(f"\nsummary: {path}  figure: {png}")
    print(f"demo finished in {seconds:.0f} s")
    return report


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m tcur_demo``; returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        run_demo(args.quick, args.out, args.skip_finetune, args.threads)
    except MissingPackageError as err:
        print(f"tcur demo: {err}", file=sys.stderr)
        return EXIT_MISSING_PACKAGE
    return 0
