"""Demo step 1: CUR and t-CUR against truncated SVD and t-SVD on real data.

Three inputs: the query weights of the six layers of the real all-MiniLM-L6-v2 stacked as the
frontal slices of a ``384 x 384 x 6`` tensor (t-CUR vs truncated t-SVD), a photograph from
scikit-learn (``china.jpg`` in grey, ``427 x 640``) and the digits data set (``1797 x 64``), both
with matrix CUR vs truncated SVD. For every rank the table gives the relative Frobenius error and
the wall time of each method. Truncated SVD and t-SVD give the best error any rank-``k``
(tubal-rank-``k``) approximation can reach; CUR pays some error for keeping actual rows and columns.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

from array_api_compat import array_namespace

from tcur.linalg import cur, relative_error
from tcur_demo.report import best_time, format_table


@dataclass(frozen=True)
class TruncatedSVD:
    """Rank-``k`` truncated SVD ``U @ diag(s) @ Vh`` of a matrix."""

    U: Any
    s: Any
    Vh: Any

    def reconstruct(self) -> Any:
        """Return ``U @ diag(s) @ Vh``."""
        return (self.U * self.s) @ self.Vh


@dataclass(frozen=True)
class TruncatedTSVD:
    """Tubal-rank-``k`` truncated t-SVD ``U * S * V^T`` of a third-order tensor."""

    U: Any
    S: Any
    V: Any

    def reconstruct(self) -> Any:
        """Return the t-product ``U * S * V^T``."""
        from tcur.linalg import tprod, ttranspose

        return tprod(self.U, self.S, ttranspose(self.V))


def truncated_svd(A: Any, rank: int) -> TruncatedSVD:
    """Truncated SVD of the matrix ``A`` (from a full thin SVD: the error floor for ``rank``).

    Examples
    --------
    >>> import numpy as np
    >>> A = np.diag([3.0, 2.0, 1.0])
    >>> float(np.linalg.norm(A - truncated_svd(A, 2).reconstruct()))
    1.0
    """
    xp = array_namespace(A)
    U, s, Vh = xp.linalg.svd(A, full_matrices=False)
    return TruncatedSVD(U[:, :rank], s[:rank], Vh[:rank, :])


def truncated_tsvd(T: Any, rank: int) -> TruncatedTSVD:
    """Truncated t-SVD of the third-order tensor ``T`` (:func:`tcur.linalg.tsvd`)."""
    from tcur.linalg import tsvd

    U, S, V = tsvd(T, rank)
    return TruncatedTSVD(U, S, V)


def tensor_cur(T: Any, rank: int, **options: Any) -> Any:
    """t-CUR of ``T`` (:func:`tcur.linalg.tcur`)."""
    from tcur.linalg import tcur

    return tcur(T, rank, **options)


Fit = Callable[[Any, int], Any]
"""``fit(x, rank)`` returns a decomposition with ``.reconstruct()``."""


@dataclass(frozen=True)
class Method:
    """A named decomposition to compare: ``fit(x, rank).reconstruct() ~ x``."""

    label: str
    fit: Fit


def _oversampled_pinv(fit: Callable[..., Any], x: Any, rank: int) -> Any:
    """``fit`` with twice ``rank`` rows and columns (capped by the shape) and the pinv middle."""
    n_rows, n_cols = min(2 * rank, x.shape[0]), min(2 * rank, x.shape[1])
    return fit(x, rank, select="deim", n_rows=n_rows, n_cols=n_cols, middle="pinv")


MATRIX_METHODS = (
    Method("SVD", truncated_svd),
    Method("CUR deim+pinv", lambda A, k: cur(A, k, select="deim", middle="pinv")),
    Method("CUR deim+optimal", lambda A, k: cur(A, k, select="deim", middle="optimal")),
    Method("CUR deim+pinv, 2k", lambda A, k: _oversampled_pinv(cur, A, k)),
)
"""Matrix baseline (truncated SVD) and matrix CUR with both middle matrices."""

TENSOR_METHODS = (
    Method("t-SVD", truncated_tsvd),
    Method("t-CUR deim+pinv", lambda T, k: tensor_cur(T, k, select="deim", middle="pinv")),
    Method("t-CUR deim+optimal", lambda T, k: tensor_cur(T, k, select="deim", middle="optimal")),
    Method("t-CUR deim+pinv, 2k", lambda T, k: _oversampled_pinv(tensor_cur, T, k)),
)
"""Tensor baseline (truncated t-SVD) and t-CUR with both middle tensors."""


@dataclass(frozen=True)
class Case:
    """One input of the comparison: a title, the data, the ranks to try and the methods."""

    title: str
    data: Any
    ranks: Sequence[int]
    methods: Sequence[Method]


NOTE = """
error / baseline: error over the truncated (t-)SVD error at the same rank (>= 1 by Eckart-Young).
pinv: U = pinv(intersection) reads only the sampled entries; with exactly `rank` rows and columns
of a matrix without low-rank structure the intersection is ill-conditioned and the error grows.
pinv, 2k: twice `rank` rows and columns, pseudo-inverse truncated to `rank`: stable again.
optimal: U = pinv(C) A pinv(R), the best U for the chosen rows and columns.
Times are the best of the repeats on a shared machine and include index selection."""

HEADERS = ("rank", "method", "rel. error", "error / baseline", "time ms")
"""Columns of :func:`compare`'s rows; the baseline is the case's first method."""


def compare(case: Case, repeats: int = 1) -> list[list[Any]]:
    """Rows ``[rank, method, error, error / baseline error, ms]``, one per rank and method.

    The time is the best of ``repeats`` runs of ``fit`` (reconstruction and error not timed).

    Examples
    --------
    >>> import numpy as np
    >>> A = np.outer(np.arange(1.0, 6.0), np.arange(1.0, 5.0)) + np.eye(5, 4)
    >>> rows = compare(Case("outer", A, [1], MATRIX_METHODS))
    >>> [row[1] for row in rows]
    ['SVD', 'CUR deim+pinv', 'CUR deim+optimal', 'CUR deim+pinv, 2k']
    >>> [row[3] >= 1.0 for row in rows]
    [True, True, True, True]
    """
    rows: list[list[Any]] = []
    for rank in case.ranks:
        baseline = None
        for method in case.methods:
            result, seconds = best_time(partial(method.fit, case.data, rank), repeats)
            error = float(relative_error(case.data, result.reconstruct()))
            baseline = error if baseline is None else baseline
            ratio = error / baseline if baseline > 0 else float("nan")
            rows.append([rank, method.label, error, ratio, 1e3 * seconds])
    return rows


def describe(case: Case) -> str:
    """Title line with the shape and dtype of the data."""
    shape = " x ".join(str(n) for n in case.data.shape)
    dtype = str(case.data.dtype).removeprefix("torch.")
    return f"{case.title}: {shape}, {dtype}"


def run(cases: Sequence[Case], repeats: int = 1, echo: Callable[[str], None] = print) -> None:
    """Print one error/time table per case.

    Examples
    --------
    >>> import numpy as np
    >>> A = np.outer(np.arange(1.0, 4.0), np.arange(1.0, 3.0)) + np.eye(3, 2)
    >>> run([Case("outer product", A, [1], MATRIX_METHODS[:1])])  # doctest: +ELLIPSIS
    <BLANKLINE>
    outer product: 3 x 2, float64
    rank  method  rel. error  error / baseline  time ms
    ----  ------  ----------  ----------------  -------
       1  SVD ...
    """
    for case in cases:
        echo("")
        echo(describe(case))
        echo(format_table(HEADERS, compare(case, repeats)))
    if cases:
        echo(NOTE)


def minilm_query_stack() -> Any:
    """Query weights of the 6 layers of the real all-MiniLM-L6-v2: a ``(384, 384, 6)`` tensor."""
    import torch
    from transformers import AutoModel

    from tcur_demo.datasets import minilm_path

    model = AutoModel.from_pretrained(minilm_path())
    weights = [layer.attention.self.query.weight.detach() for layer in model.encoder.layer]
    return torch.stack(weights, dim=-1).contiguous()


def china_grey() -> Any:
    """scikit-learn's ``china.jpg`` in grey (ITU-R 601 luma), values in ``[0, 1]``, float64."""
    import numpy as np
    from sklearn.datasets import load_sample_image

    rgb = load_sample_image("china.jpg").astype(np.float64) / 255.0
    return rgb @ np.array([0.299, 0.587, 0.114])


def digits() -> Any:
    """scikit-learn's handwritten digits: a ``1797 x 64`` matrix of pixel intensities, float64."""
    from sklearn.datasets import load_digits

    return load_digits().data


def real_cases(quick: bool) -> list[Case]:
    """The demo's inputs; ``quick`` tries fewer ranks."""
    return [
        Case(
            "MiniLM query weights stacked over 6 layers (t-product)",
            minilm_query_stack(),
            [16, 64, 128] if quick else [8, 32, 64, 128],
            TENSOR_METHODS,
        ),
        Case(
            "china.jpg in grey",
            china_grey(),
            [10, 50] if quick else [5, 10, 25, 50, 100],
            MATRIX_METHODS,
        ),
        Case("digits", digits(), [5, 20] if quick else [5, 10, 20, 40], MATRIX_METHODS),
    ]
