"""Plain-text tables and wall-clock timing for the demo's printed reports."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

T = TypeVar("T")


def format_cell(value: Any) -> str:
    """Format one table cell: floats with 4 significant digits (no exponent from 1,000 up).

    Examples
    --------
    >>> format_cell(0.000123456), format_cell(1234.5), format_cell(7), format_cell("lora")
    ('0.0001235', '1234', '7', 'lora')
    >>> format_cell(10612.7), format_cell(float("nan"))
    ('10613', 'nan')
    """
    if isinstance(value, float):
        return f"{value:.0f}" if abs(value) >= 1000 else f"{value:.4g}"
    return str(value)


def format_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Fixed-width text table: a header line, a rule, one line per row; numbers right-aligned.

    Examples
    --------
    >>> print(format_table(["rank", "error"], [[8, 0.5], [16, 0.25]]))
    rank  error
    ----  -----
       8    0.5
      16   0.25
    """
    for row in rows:
        if len(row) != len(headers):
            raise ValueError(f"row {list(row)!r} has {len(row)} cells, expected {len(headers)}")
    cells = [[format_cell(v) for v in row] for row in rows]
    widths = [max([len(h), *(len(r[i]) for r in cells)]) for i, h in enumerate(headers)]
    numeric = [all(isinstance(row[i], (int, float)) for row in rows) for i in range(len(headers))]

    def line(values: Sequence[str]) -> str:
        parts = [
            v.rjust(w) if num else v.ljust(w)
            for v, w, num in zip(values, widths, numeric, strict=True)
        ]
        return "  ".join(parts).rstrip()

    rule = ["-" * w for w in widths]
    return "\n".join([line(list(headers)), line(rule), *(line(r) for r in cells)])


def best_time(fn: Callable[[], T], repeats: int = 1) -> tuple[T, float]:
    """Run ``fn`` ``repeats`` times; return its last result and the shortest wall time in seconds.

    The minimum over repeats is the least disturbed measurement on a shared machine.

    Examples
    --------
    >>> result, seconds = best_time(lambda: sum(range(10)), repeats=3)
    >>> result, seconds >= 0.0
    (45, True)
    """
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return result, best


def span(values: Sequence[float], unit: str = "x", digits: int = 2) -> str:
    """``"0.93x-1.00x"``: the smallest and largest of ``values`` (one figure if they agree).

    Examples
    --------
    >>> span([1.0, 0.931, 0.99]), span([2.0, 2.001]), span([75.04], unit="%", digits=1)
    ('0.93x-1.00x', '2.00x', '75.0%')
    """
    if not values:
        raise ValueError("span of no values")
    low, high = (f"{v:.{digits}f}{unit}" for v in (min(values), max(values)))
    return low if low == high else f"{low}-{high}"


def interactive() -> bool:
    """Whether progress bars may be drawn: stdout and stderr are both terminals.

    tqdm writes to stderr; a log file (or a pipe) on either stream gets no carriage-return
    updates.
    """
    return sys.stdout.isatty() and sys.stderr.isatty()
