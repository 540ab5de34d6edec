"""Command line of the demo: ``python -m tcur_demo`` (``make demo``) with ``examples/`` on the path.

The demo runs offline: it reads the model and data shipped by the ``examples`` extra and sets
``HF_HUB_OFFLINE``/``TRANSFORMERS_OFFLINE`` so transformers never reaches for the network.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from tcur import __version__
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
            "(1) t-CUR vs truncated t-SVD on the real all-MiniLM-L6-v2 query weights and CUR vs "
            "truncated SVD on real images; (2) fine-tune MiniLM on Rotten Tomatoes sentiment "
            "with tCURLoRA and with PEFT LoRA, print a table and write a PNG plot."
        ),
    )
    parser.add_argument("--version", action="version", version=f"tcur {__version__}")
    parser.add_argument(
        "--quick", action="store_true", help="fewer ranks and a smaller training budget"
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("tcur-demo"),
        metavar="DIR",
        help="directory for the fine-tuning plot (default: %(default)s)",
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
    """Use ``n`` threads in torch and in the BLAS/OpenMP pools NumPy and SciPy call."""
    import torch
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(n)
    threadpool_limits(limits=n)


def run_demo(quick: bool, out: Path, skip_finetune: bool, threads: int = 1) -> None:
    """Run the demo steps.

    Raises :class:`MissingPackageError` before any work starts if an optional package is missing.
    """
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    require(DECOMPOSITION_PACKAGES if skip_finetune else DECOMPOSITION_PACKAGES | FINETUNE_PACKAGES)
    limit_threads(threads)
    from tcur_demo import decomposition

    start = time.perf_counter()
    print("== Step 1: CUR vs truncated SVD on real data (relative Frobenius error, wall time)")
    decomposition.run(decomposition.real_cases(quick), repeats=1 if quick else 2)
    if not skip_finetune:
        from tcur_demo import finetune

        print("\n== Step 2: fine-tuning all-MiniLM-L6-v2 on Rotten Tomatoes")
        finetune.run(quick=quick, out_dir=out)
    print(f"\ndemo finished in {time.perf_counter() - start:.0f} s")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m tcur_demo``; returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        run_demo(args.quick, args.out, args.skip_finetune, args.threads)
    except MissingPackageError as err:
        print(f"tcur demo: {err}", file=sys.stderr)
        return EXIT_MISSING_PACKAGE
    return 0
