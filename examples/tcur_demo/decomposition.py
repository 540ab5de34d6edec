"""Demo step 1: ``tcur.decompose`` with its defaults on real data, against SciPy and the SVD.

Three tables, each followed by one sentence computed from its numbers:

1. matrices (an image, MiniLM's word embedding, the digits): :func:`tcur.decompose` (default
   rule and middle, ``seed=0``) against SciPy's two-sided ID-CUR at the same rank and against the
   truncated SVD, as error ratios and time ratios;
2. the MiniLM ``query`` stack (``384 x 384 x 6``): t-CUR against the truncated t-SVD;
3. one ``tol=`` call: the rank ``decompose`` found and the rank the SVD needs for the same error.

Times are the best of ``repeats`` runs (the methods interleaved) of the fit alone: index
selection and the middle factor, not the reconstruction. The SVD is LAPACK's thin SVD (one per
matrix, whatever the rank), the t-SVD :func:`tcur.linalg.tsvd`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from functools import partial
from typing import Any

import numpy as np

import tcur
from tcur.linalg import relative_error
from tcur_demo import realdata
from tcur_demo.baselines import scipy_id_cur, svd_rank_for_tol, truncated_svd, truncated_tsvd
from tcur_demo.realdata import describe
from tcur_demo.report import best_time, format_table, span

Echo = Callable[[str], None]


@dataclass(frozen=True)
class MatrixCase:
    """A named real matrix and the ranks to try on it."""

    name: str
    data: np.ndarray
    ranks: Sequence[int]


@dataclass(frozen=True)
class Inputs:
    """Everything step 1 decomposes."""

    matrices: Sequence[MatrixCase]
    tensor: MatrixCase
    tol_case: MatrixCase
    tol: float


@dataclass(frozen=True)
class MatrixRow:
    """One data set at one rank: errors and fit times of decompose, ID-CUR and the SVD."""

    data: str
    shape: str
    rank: int
    error: float
    scipy_error: float
    svd_error: float
    seconds: float
    scipy_seconds: float
    svd_seconds: float

    @property
    def error_vs_scipy(self) -> float:
        """decompose's error over ID-CUR's (< 1: more accurate)."""
        return self.error / self.scipy_error

    @property
    def error_vs_svd(self) -> float:
        """decompose's error over the SVD floor (>= 1 by Eckart-Young)."""
        return self.error / self.svd_error

    @property
    def speedup_vs_scipy(self) -> float:
        """ID-CUR's time over decompose's (> 1: decompose is faster)."""
        return self.scipy_seconds / self.seconds

    @property
    def speedup_vs_svd(self) -> float:
        """The SVD's time over decompose's."""
        return self.svd_seconds / self.seconds


@dataclass(frozen=True)
class TensorRow:
    """The tensor at one tubal rank: errors and times of t-CUR and the truncated t-SVD."""

    rank: int
    error: float
    tsvd_error: float
    seconds: float
    tsvd_seconds: float

    @property
    def error_vs_tsvd(self) -> float:
        """t-CUR's error over the t-SVD's (>= 1: the t-SVD is optimal)."""
        return self.error / self.tsvd_error

    @property
    def speedup_vs_tsvd(self) -> float:
        """The t-SVD's time over t-CUR's."""
        return self.tsvd_seconds / self.seconds


@dataclass(frozen=True)
class TolResult:
    """``decompose(x, tol=tol)``: the rank found, its error and time, and the SVD's rank."""

    data: str
    tol: float
    rank: int
    error: float
    seconds: float
    svd_rank: int


@dataclass(frozen=True)
class Step1:
    """The measurements of step 1 and the sentence printed under each table."""

    matrix_rows: list[MatrixRow]
    tensor: str
    tensor_rows: list[TensorRow]
    tol: TolResult
    sentences: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        """The step's entries of ``summary.json`` (worst cases first, every row after)."""
        names = list(dict.fromkeys(r.data for r in self.matrix_rows))
        by_name = {n: [r for r in self.matrix_rows if r.data == n] for n in names}
        return {
            "decompose_error_vs_scipy": max(r.error_vs_scipy for r in self.matrix_rows),
            "decompose_speedup_vs_scipy": min(r.speedup_vs_scipy for r in self.matrix_rows),
            "decompose_error_vs_svd": max(r.error_vs_svd for r in self.matrix_rows),
            "decompose_error_vs_scipy_by_data_set": {
                n: max(r.error_vs_scipy for r in rows) for n, rows in by_name.items()
            },
            "decompose_speedup_vs_scipy_by_data_set": {
                n: min(r.speedup_vs_scipy for r in rows) for n, rows in by_name.items()
            },
            "decompose_error_vs_svd_by_data_set": {
                n: max(r.error_vs_svd for r in rows) for n, rows in by_name.items()
            },
            "tcur_error_vs_tsvd": max(r.error_vs_tsvd for r in self.tensor_rows),
            "tcur_speedup_vs_tsvd": min(r.speedup_vs_tsvd for r in self.tensor_rows),
            "decompose_rows": [_with_ratios(r) for r in self.matrix_rows],
            "tcur_tensor": self.tensor,
            "tcur_rows": [_with_ratios(r) for r in self.tensor_rows],
            "tol": asdict(self.tol),
            "step1_sentences": list(self.sentences),
        }


def _with_ratios(row: MatrixRow | TensorRow) -> dict[str, Any]:
    ratios: tuple[str, ...] = (
        "error_vs_scipy",
        "error_vs_svd",
        "speedup_vs_scipy",
        "speedup_vs_svd",
    )
    if isinstance(row, TensorRow):
        ratios = ("error_vs_tsvd", "speedup_vs_tsvd")
    return asdict(row) | {name: getattr(row, name) for name in ratios}


def _error(x: Any, approx: Any) -> float:
    return float(relative_error(x, approx))


def _decompose(x: Any, rank: int) -> Any:
    return tcur.decompose(x, rank, seed=0)


def _interleaved(fits: Sequence[Callable[[], Any]], repeats: int) -> list[tuple[Any, float]]:
    """Results and best times of ``fits``, run in turn ``repeats`` times."""
    best: list[tuple[Any, float]] = [(None, float("inf"))] * len(fits)
    for _ in range(repeats):
        for i, fit in enumerate(fits):
            result, seconds = best_time(fit)
            best[i] = (result, min(seconds, best[i][1]))
    return best


def compare_matrix(case: MatrixCase, repeats: int = 1) -> list[MatrixRow]:
    """One :class:`MatrixRow` per rank of ``case``.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> A = rng.standard_normal((40, 6)) @ rng.standard_normal((6, 30))
    >>> A += 1e-3 * rng.standard_normal(A.shape)
    >>> [row] = compare_matrix(MatrixCase("noisy rank 6", A, [6]))
    >>> row.shape, row.rank, row.error_vs_svd >= 1.0, row.error < 1e-2
    ('40 x 30', 6, True, True)
    """
    A = case.data
    [(svd, svd_seconds)] = _interleaved([partial(np.linalg.svd, A, full_matrices=False)], repeats)
    del svd
    rows = []
    for rank in case.ranks:
        fits = [partial(_decompose, A, rank), partial(scipy_id_cur, A, rank)]
        (ours, seconds), (theirs, scipy_seconds) = _interleaved(fits, repeats)
        floor = truncated_svd(A, rank).reconstruct()
        rows.append(
            MatrixRow(
                case.name,
                describe(A),
                rank,
                _error(A, ours.reconstruct()),
                _error(A, theirs.reconstruct()),
                _error(A, floor),
                seconds,
                scipy_seconds,
                svd_seconds,
            )
        )
    return rows


def compare_tensor(case: MatrixCase, repeats: int = 1) -> list[TensorRow]:
    """One :class:`TensorRow` per tubal rank of ``case`` (a third-order tensor).

    Examples
    --------
    >>> import numpy as np
    >>> T = np.random.default_rng(0).standard_normal((12, 10, 4))
    >>> [row] = compare_tensor(MatrixCase("noise", T, [3]))
    >>> row.rank, row.error_vs_tsvd >= 1.0
    (3, True)
    """
    rows = []
    for rank in case.ranks:
        fits = [partial(_decompose, case.data, rank), partial(truncated_tsvd, case.data, rank)]
        (ours, seconds), (tsvd, tsvd_seconds) = _interleaved(fits, repeats)
        errors = [_error(case.data, d.reconstruct()) for d in (ours, tsvd)]
        rows.append(TensorRow(rank, errors[0], errors[1], seconds, tsvd_seconds))
    return rows


def tol_call(case: MatrixCase, tol: float) -> TolResult:
    """``tcur.decompose(case.data, tol=tol)``: the rank it found and the SVD's rank for ``tol``.

    Examples
    --------
    >>> import numpy as np
    >>> A = np.diag([3.0, 2.0, 1.0, 0.01])
    >>> result = tol_call(MatrixCase("diag", A, []), 0.3)
    >>> result.rank, result.svd_rank, result.error <= 0.3
    (2, 2, True)
    """
    d, seconds = best_time(lambda: tcur.decompose(case.data, tol=tol, seed=0))
    error = _error(case.data, d.reconstruct())
    return TolResult(case.name, tol, int(d.rank), error, seconds, svd_rank_for_tol(case.data, tol))


MATRIX_HEADERS = (
    "data",
    "rank",
    "error",
    "err / ID-CUR",
    "err / SVD",
    "ms",
    "speedup vs ID-CUR",
    "vs SVD",
)

MATRIX_LEGEND = (
    "err / X: decompose's relative Frobenius error over X's at the same rank (< 1: more "
    "accurate);\nspeedup vs X: X's time over decompose's (> 1: decompose is faster); best of "
    "the repeats,\nfit only (selection and middle factor), one thread. Baseline times are in "
    "summary.json."
)


def matrix_table(rows: Sequence[MatrixRow]) -> str:
    """The printed matrix comparison."""
    cells = [
        [
            f"{r.data} ({r.shape})",
            r.rank,
            r.error,
            r.error_vs_scipy,
            r.error_vs_svd,
            1e3 * r.seconds,
            r.speedup_vs_scipy,
            r.speedup_vs_svd,
        ]
        for r in rows
    ]
    return format_table(MATRIX_HEADERS, cells)


def matrix_sentence(rows: Sequence[MatrixRow]) -> str:
    """What the matrix table shows, in one sentence computed from it.

    Examples
    --------
    >>> rows = [MatrixRow("a", "4 x 4", 2, 0.5, 0.5, 0.4, 1.0, 2.0, 3.0),
    ...         MatrixRow("b", "4 x 4", 2, 0.4, 0.5, 0.4, 2.0, 1.0, 3.0)]
    >>> print(matrix_sentence(rows))
    decompose's error is 0.80x-1.00x SciPy's ID-CUR's and 1.00x-1.25x the truncated SVD's on
    every case; it is faster than ID-CUR on 1 of 2 (2.00x) and slower on b (rank 2: 0.50x).
    """
    vs_scipy = span([r.error_vs_scipy for r in rows])
    vs_svd = span([r.error_vs_svd for r in rows])
    faster = [r for r in rows if r.speedup_vs_scipy >= 1.0]
    slower = [r for r in rows if r.speedup_vs_scipy < 1.0]
    text = (
        f"decompose's error is {vs_scipy} SciPy's ID-CUR's and {vs_svd} the truncated SVD's on "
        f"every case; it is "
    )
    if not slower:
        text += f"faster than ID-CUR on every case ({span([r.speedup_vs_scipy for r in rows])})."
    else:
        names = list(dict.fromkeys(r.data for r in slower))
        where = _and(
            [f"{name} ({_speeds([r for r in slower if r.data == name])})" for name in names]
        )
        if faster:
            speed = span([r.speedup_vs_scipy for r in faster])
            text += f"faster than ID-CUR on {len(faster)} of {len(rows)} ({speed}) and "
        text += f"slower on {where}."
    return _wrap(text)


def _speeds(rows: Sequence[MatrixRow]) -> str:
    return ", ".join(f"rank {r.rank}: {r.speedup_vs_scipy:.2f}x" for r in rows)


def _and(parts: Sequence[str]) -> str:
    """``"a, b and c"``."""
    return " and ".join([", ".join(parts[:-1]), parts[-1]]) if len(parts) > 1 else parts[0]


TENSOR_HEADERS = ("tubal rank", "error", "err / t-SVD", "ms", "t-SVD ms", "speedup vs t-SVD")


def tensor_table(rows: Sequence[TensorRow]) -> str:
    """The printed t-CUR comparison."""
    cells = [
        [
            r.rank,
            r.error,
            r.error_vs_tsvd,
            1e3 * r.seconds,
            1e3 * r.tsvd_seconds,
            r.speedup_vs_tsvd,
        ]
        for r in rows
    ]
    return format_table(TENSOR_HEADERS, cells)


def tensor_sentence(rows: Sequence[TensorRow]) -> str:
    """What the t-CUR table shows, in one sentence computed from it.

    Examples
    --------
    >>> print(tensor_sentence([TensorRow(8, 0.6, 0.5, 2.0, 1.0)]))
    t-CUR, built from 8 actual lateral and 8 horizontal slices, has 1.20x the truncated t-SVD's
    error and takes 2.00x its time here (0.50x its speed).
    """
    ranks = "/".join(str(r.rank) for r in rows)
    speed = span([r.speedup_vs_tsvd for r in rows])
    times = span([1.0 / r.speedup_vs_tsvd for r in rows])
    if all(r.speedup_vs_tsvd >= 1.0 for r in rows):
        pace = f"is faster ({speed} the t-SVD's speed)"
    else:
        pace = f"takes {times} its time here ({speed} its speed)"
    return _wrap(
        f"t-CUR, built from {ranks} actual lateral and {ranks} horizontal slices, has "
        f"{span([r.error_vs_tsvd for r in rows])} the truncated t-SVD's error and {pace}."
    )


def tol_sentence(result: TolResult) -> str:
    """The ``tol=`` call and what it found, in one sentence.

    Examples
    --------
    >>> print(tol_sentence(TolResult("image", 0.1, 30, 0.0951, 0.5, 12)))
    decompose(image, tol=0.1) found rank 30 (error 0.0951 <= 0.1, 500 ms); the truncated SVD
    meets the same tol at rank 12, so keeping actual columns and rows costs 2.50x its rank here.
    """
    ratio = result.rank / max(result.svd_rank, 1)
    met = "<=" if result.error <= result.tol else "> (missed)"
    return _wrap(
        f"decompose({result.data}, tol={result.tol:g}) found rank {result.rank} (error "
        f"{result.error:.3g} {met} {result.tol:g}, {1e3 * result.seconds:.0f} ms); the truncated "
        f"SVD meets the same tol at rank {result.svd_rank}, so keeping actual columns and rows "
        f"costs {ratio:.2f}x its rank here."
    )


def _wrap(text: str, width: int = 96) -> str:
    import textwrap

    return textwrap.fill(text, width=width)


def run(inputs: Inputs, repeats: int = 1, echo: Echo = print) -> Step1:
    """Measure, print the three tables with their sentences, return the measurements."""
    matrix_rows = [row for case in inputs.matrices for row in compare_matrix(case, repeats)]
    sentences = [matrix_sentence(matrix_rows)]
    echo("\ntcur.decompose(A, rank) (defaults, seed=0) vs SciPy ID-CUR and the truncated SVD")
    echo(matrix_table(matrix_rows))
    echo(MATRIX_LEGEND)
    echo("=> " + sentences[0])

    tensor_rows = compare_tensor(inputs.tensor, repeats)
    sentences.append(tensor_sentence(tensor_rows))
    echo(f"\nt-CUR vs truncated t-SVD: {inputs.tensor.name} ({describe(inputs.tensor.data)})")
    echo(tensor_table(tensor_rows))
    echo("=> " + sentences[1])

    tol = tol_call(inputs.tol_case, inputs.tol)
    sentences.append(tol_sentence(tol))
    echo(f"\ntol= instead of a rank, on {inputs.tol_case.name} ({describe(inputs.tol_case.data)})")
    echo("=> " + sentences[2])
    return Step1(matrix_rows, inputs.tensor.name, tensor_rows, tol, sentences)


def real_inputs(quick: bool) -> Inputs:
    """Step 1's real data; ``quick`` tries one rank per data set and every 8th token's embedding."""

    def ranks(full: Sequence[int]) -> Sequence[int]:
        return full[:1] if quick else full

    every = 8 if quick else 1
    embedding = realdata.minilm_word_embedding(every)
    image = MatrixCase("china.jpg grey", realdata.china_grey(), ranks([10, 50]))
    return Inputs(
        matrices=[
            image,
            MatrixCase(
                "MiniLM embedding" + (f", every {every}th token" if quick else ""),
                embedding,
                ranks([10, 50]),
            ),
            MatrixCase("digits", realdata.digits(), ranks([5, 20])),
        ],
        tensor=MatrixCase(
            "MiniLM query weights, 6 layers", realdata.minilm_query_stack(), ranks([16, 64])
        ),
        tol_case=image,
        tol=0.1,
    )
