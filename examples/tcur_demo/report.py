"""Plain-text tables and wall-clock timing for the demo's printed reports."""

from __future__ import annotations

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
