"""Quasi-optimal CUR selection by pivoting on a randomized sketch, rows conditioned on columns.

Two rules, both reading ``A`` only through a few products with thin random matrices:

- ``"sketch_qr"`` (the default of :func:`tcur.linalg.cur` and :func:`tcur.linalg.tcur`): the
  columns are the first pivots of a column-pivoted QR of a row-space sketch ``Y = Q^H A``,
  ``Q = orth(A Omega)`` (Gaussian ``Omega`` with ``l = n_cols + 10`` columns), as in the
  randomized interpolative decomposition (Voronin & Martinsson 2017) and the sketch-then-pivot
  family compared by Dong & Martinsson (2023). Then, *conditioned on the chosen columns*, the
  rows are the pivots of a column-pivoted QR of ``Q_C^H``, where ``Q_C`` is an orthonormal
  basis of ``C = A[:, cols]`` (Q-DEIM on ``C``'s own range; Sorensen & Embree 2016, Drmač &
  Gugercin 2016). With the optimal middle the error splits as
  ``||(I - P_C) A||_F^2 + ||P_C A (I - P_R)||_F^2``, and rows chosen on ``Q_C`` target the
  second term directly.
- ``"arp"``: adaptive randomized pivoting (Cortinovis & Kressner 2024). Given an orthonormal
  ``V`` (``n x k``) approximating the dominant right singular subspace (here from the sketch),
  index ``j`` is drawn with probability proportional to the squared norm of row ``j`` of ``V``
  after projecting out the rows already chosen. Its guarantee, for the columns:
  ``E ||A - P_C A||_F^2 <= (k + 1) ||A - A V V^H||_F^2``, the bound of volume sampling at the
  cost of a pivoted QR. Rows are then drawn the same way on ``Q_C``.

Each rule builds candidate selections from one sketch and keeps the one with the smallest
exact CUR error ``||A||_F^2 - ||Q_C^H A Q_R||_F^2`` (``P_C A P_R`` is an orthogonal projection
of ``A``). With ``Q_0 = orth(A Omega)``, the candidates are: columns from ``Y_0 = A^H Q_0``
then rows; columns from the next subspace-iteration step ``Y_1 = A^H Q_1``,
``Q_1 = orth(X_1)``, ``X_1 = A orth(Y_0)``, then rows; the transposed order, rows from ``X_1``
then columns conditioned on them; and, for ``"sketch_qr"``, columns by pivoted QR of the
dominant subspace of the Fourier-averaged projector onto the slices' leading right singular
vectors from ``Y_1`` (Q-DEIM on the sketched SVD, as the tensor ``"qdeim"`` rule: balanced over
the Fourier slices of a tensor, where the weighted sketch is dominated by the strongest slice).
For a tensor, ``"sketch_qr"`` also builds the three ``"arp"`` candidates from the same sketches:
greedy pivots of indices shared by all slices can miss badly (on a 60 x 40 x 4 stack of
Chebyshev-Vandermonde slices all four greedy candidates were 12.8x the t-SVD tail at rank 30,
where shared rows and columns exist within 2.5x), and with them the best measured candidate is
never worse than ``"arp"``'s (0.47-0.83 of the bound over ten seeds there; on the real tensors
of ``bench_tcur`` the median error went from 1.38x to 1.34x the t-SVD, the time up 10-40% at
rank 40).
Each of a tensor's eight candidates earns its measurement: keeping the best five (of every
subset) on 107 well-conditioned tensors (the real ones of ``bench_tcur`` at three seeds and 80
random ones: Gaussian, cubed Gaussian, low tubal rank plus noise, geometric spectra) raised the
error by up to 2.7%, the four randomized ones alone by up to 25%; dropping the four greedy ones
saved 29% of the time (229 to 163 ms on the 214 x 320 x 8 frames at rank 40, where ``tsvd``
takes 71 ms).
For a matrix the candidates are pre-ranked on the sketch (``Q_1 Y_1^H``) and the best
:data:`EXACT_CANDIDATES` are measured exactly in one pass (the best one,
:data:`RESOLVED_EXACT_CANDIDATES`, when the first sketch is well conditioned); a tensor's
candidates are all measured. Five passes over ``A`` in all, no SVD of ``A``; the three after the
first run on a single-precision copy of a large double-precision ``A`` when the first sketch is well
conditioned (:mod:`tcur.linalg.sketch_precision`: the pivots are chosen in single precision on the
sketches and the candidates' range bases, then measured and fitted on ``A`` itself). The optimal
middle reuses the last (the winner's ``Q_C^H A Q_R`` and range factors: :class:`Pivots`).
Keeping the best measured candidate can only lower the error, so ``"arp"``'s bound still holds.
On the benchmark suite one candidate alone was up to 1.04-1.08x SciPy's ID-CUR error, the best
of them 1.03x (see ``benchmarks/results/bench_cur.json``).

Both keep exactly ``n_cols`` columns and ``n_rows`` rows; when ``n_rows > n_cols`` the row basis
is ``C``'s range extended by a sketch of ``A``'s range.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.linalg

from tcur._backend import (
    Array,
    eps,
    host_arrays,
    in_dtype,
    index_array,
    is_foreign,
    is_torch,
    like,
    namespace,
    spawn_rngs,
    take,
    thin_factorization,
    to_numpy,
    unit_scaled,
)
from tcur.linalg.orthonormal import (
    MeasuredProjection,
    dominant_directions,
    hermitian,
    kept_directions,
    numerical_range,
    qr_basis,
    spectral_range_factor,
    without_roundoff,
)
from tcur.linalg.sketch_precision import sketch_operand

PIVOTING_RULES = ("sketch_qr", "arp")
SKETCH_OVERSAMPLE = 10
"""Extra sketch columns beyond the number of indices (``l = count + SKETCH_OVERSAMPLE``)."""
PRUNING_FALLOFF = 0.5
""":func:`pruned_pivots` tries a subset only if the row norms past it fall below this fraction
of the ``count``-th largest."""
EXACT_CANDIDATES = 2
"""Candidates of a matrix whose CUR error is measured exactly (the best by the sketch's
estimate); every candidate is measured for a tensor."""
RESOLVED_EXACT_CANDIDATES = 1
""":data:`EXACT_CANDIDATES` when the first sketch is well conditioned (the later passes run in
single precision: :mod:`tcur.linalg.sketch_precision`), where the sketch's ranking is reliable:
measuring the runner-up too changed the error by at most 0.24% (ratios 1.0000-1.0024 over three
seeds at ranks 10 and 50 on every matrix of ``benchmarks/cur_suite.py``), for a further pass
over the data in double precision (22 of 260 ms on the 4000 x 3000 matrix of ``bench_threads``).
On ill-conditioned sketches (Hilbert, Cauchy, graded, kernels at rank 50) the two candidates
differ by 0.1-1.5x, so both are measured there."""
RECOMPUTE_BELOW = 1e-8
""":func:`adaptive_randomized_pivots` updates its weights by subtraction (absolute error about
``count * eps`` of their sum when last computed exactly) and recomputes them from the residual
once their sum falls below this fraction of that."""


def column_pivoted_qr(M: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(|diag(R)|, pivots)`` of the column-pivoted QR ``M P = Q R`` of a host matrix ``M``
    (``l x n``): LAPACK's ``geqp3`` at one BLAS thread, called directly with its optimal
    workspace (the call SciPy's ``qr(..., pivoting=True)`` makes, without forming ``R``: 3.6 ms
    against 6.2 ms on the 60 x 3000 sketches of a rank-50 CUR).

    Examples
    --------
    >>> import numpy as np
    >>> from tcur.linalg.pivoting import column_pivoted_qr
    >>> diag, pivots = column_pivoted_qr(np.array([[0.0, 3.0, 1.0], [0.0, 0.0, 2.0]]))
    >>> pivots.tolist(), diag.tolist()
    ([1, 2, 0], [3.0, 2.0])
    """
    if M.size == 0:
        return np.zeros(min(M.shape), dtype=M.real.dtype), np.arange(M.shape[1], dtype=np.int64)
    (geqp3,) = scipy.linalg.get_lapack_funcs(("geqp3",), (M,))
    with thin_factorization(M):
        workspace = int(geqp3(M, lwork=-1)[3][0].real)
        factored, pivots, _, _, info = geqp3(M, lwork=max(workspace, 3 * M.shape[1] + 3))
    if info != 0:
        raise np.linalg.LinAlgError(f"LAPACK geqp3 failed (info={info})")
    return np.abs(np.diagonal(factored)), pivots.astype(np.int64) - 1


def pivoted_qr_indices(M: np.ndarray, count: int) -> np.ndarray:
    """First ``count`` pivots of a column-pivoted QR of ``M`` (``l x n``): indices into the columns.

    Past the numerical rank of ``M`` the remaining indices are the largest column norms.

    Examples
    --------
    >>> import numpy as np
    >>> from tcur.linalg.pivoting import pivoted_qr_indices
    >>> pivoted_qr_indices(np.array([[0.0, 3.0, 1.0], [0.0, 0.0, 2.0]]), 2).tolist()
    [1, 2]
    """
    M = unit_scaled(M)  # exact: the pivots are unchanged, the norms cannot overflow
    diag, pivots = column_pivoted_qr(M)
    rank = int(np.sum(diag > max(M.shape) * np.finfo(M.dtype).eps * diag[0])) if diag.size else 0
    if rank >= count:
        return pivots[:count]
    # Past the numerical rank the pivots are decided by round-off: extend by column norms.
    norms = np.linalg.norm(M, axis=0)
    norms[pivots[:rank]] = -np.inf
    extra = np.argsort(-norms, kind="stable")[: count - rank]
    return np.concatenate([pivots[:rank], extra]).astype(np.int64)


def pruned_pivots(basis: np.ndarray, count: int) -> np.ndarray:
    """:func:`tcur.linalg.pivoting.pivoted_qr_indices` of ``basis^H`` (``basis``: ``n x k``), run
    on the rows of largest norm only.

    A pivoted QR picks, at every step, the row of largest residual norm, and a residual is never
    longer than its row. So if the pivots found on the ``B`` longest rows all have residual norm
    (``|R_jj|``) above the ``(B + 1)``-th longest row's norm, no other row could have been
    picked at any step: the pivots are those of the whole matrix. ``B`` doubles until that
    holds (rank-deficient cases take the whole matrix). For the peaked row norms of sparse data
    this is a small fraction of a QR of the whole ``k x n`` matrix. The last pivot's residual is
    at most the ``count``-th longest row's norm and in practice well below it, so while the row
    at the cut is longer than :data:`PRUNING_FALLOFF` times that norm (flat norms: dense data,
    measured 0.81-0.87 on a 4000 x 3000 matrix at rank 50, 0.014 on sparse power-law counts)
    the certificate cannot be expected and the whole matrix is factored at once.

    Examples
    --------
    >>> import numpy as np
    >>> from tcur.linalg.pivoting import pivoted_qr_indices
    >>> from tcur.linalg.pivoting import pruned_pivots
    >>> V = np.random.default_rng(0).standard_normal((5000, 6)) ** 3
    >>> bool(np.array_equal(pruned_pivots(V, 6), pivoted_qr_indices(V.T, 6)))
    True
    """
    n = basis.shape[0]
    peak = float(np.max(np.abs(basis))) if basis.size else 0.0
    norms = np.linalg.norm(basis / peak, axis=1) * peak if peak > 0 else np.zeros(n)
    order = np.argsort(-norms, kind="stable")
    size = min(n, 16 * count + 256)
    tolerance = max(basis.shape) * float(np.finfo(basis.dtype).eps)
    while size < n and norms[order[size]] < PRUNING_FALLOFF * norms[order[count - 1]]:
        subset = order[:size]
        diag, pivots = column_pivoted_qr(basis[subset].conj().T)
        if diag.size < count or not diag[count - 1] > tolerance * diag[0]:
            break  # rank-deficient: the whole matrix decides the fill
        if diag[count - 1] > norms[order[size]]:
            return np.asarray(subset[pivots[:count]], dtype=np.int64)
        size = min(n, 2 * size)
    return pivoted_qr_indices(basis.conj().T, count)


def adaptive_randomized_pivots(V: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    """Adaptive randomized pivoting (Cortinovis & Kressner 2024) on the rows of ``V`` (``n x k``).

    Row ``j`` is drawn with probability ``||r_j||^2 / ||R||_F^2`` where ``R`` is ``V`` with the
    directions of the rows already drawn projected out (a pivoted QR of ``V^H`` whose pivots are
    sampled instead of maximised). ``count`` distinct indices; beyond ``rank(V)`` (an
    oversampled count) the rest are drawn uniformly from the rows not yet chosen.

    Examples
    --------
    >>> import numpy as np
    >>> from tcur.linalg.pivoting import adaptive_randomized_pivots
    >>> V = np.linalg.qr(np.random.default_rng(0).standard_normal((8, 3)))[0]
    >>> idx = adaptive_randomized_pivots(V, 3, np.random.default_rng(1))
    >>> len(set(idx.tolist()))
    3
    """
    V = np.asarray(V, dtype=np.result_type(V.dtype, np.float64))
    n = V.shape[0]
    weights = np.sum(np.abs(V) ** 2, axis=1)
    scale = float(weights.sum())
    # The residual is V - coefficients @ directions (orthonormal rows): each draw costs one
    # product with V, not an update of an n x k residual.
    directions = np.zeros((count, V.shape[1]), dtype=V.dtype)
    coefficients = np.zeros((n, count), dtype=V.dtype)
    picked: list[int] = []
    exact = scale  # the weights' sum when last computed exactly
    for t in range(count):
        weights[picked] = 0.0
        total = float(weights.sum())
        if total <= RECOMPUTE_BELOW * exact:  # subtracted weights are round-off here
            residual = V - coefficients[:, :t] @ directions[:t]
            weights = np.sum(np.abs(residual) ** 2, axis=1)
            weights[picked] = 0.0
            total = exact = float(weights.sum())
        if not total > 1e-20 * scale:
            rest = np.setdiff1d(np.arange(n), picked)
            extra = rng.choice(rest, size=count - len(picked), replace=False)
            return np.asarray(picked + extra.tolist(), dtype=np.int64)
        j = int(rng.choice(n, p=weights / total))
        picked.append(j)
        row = V[j] - coefficients[j, :t] @ directions[:t]
        row -= (directions[:t].conj() @ row) @ directions[:t]  # re-orthogonalised once
        norm = np.linalg.norm(row)
        if norm > 0:  # else a round-off row was drawn: it adds no direction
            directions[t] = row / norm
        coefficients[:, t] = V @ directions[t].conj()
        weights = np.maximum(weights - np.abs(coefficients[:, t]) ** 2, 0.0)
    return np.asarray(picked, dtype=np.int64)


def gaussian(rng: np.random.Generator, shape: tuple[int, ...], ref: Array) -> Array:
    """Standard normal array of ``shape`` with ``ref``'s kind, dtype and device."""
    host = rng.standard_normal(shape)
    if is_torch(ref):
        real = ref.real if ref.is_complex() else ref
        return namespace(ref).asarray(host, dtype=real.dtype, device=ref.device).to(ref.dtype)
    if is_foreign(ref):
        return namespace(ref).astype(like(host, ref), ref.dtype)
    return host.astype(ref.dtype, copy=False)


def top_right_vectors(Y: np.ndarray, count: int) -> np.ndarray:
    """Leading ``count`` left singular vectors ``(b, n, count)`` of each sketch ``Y_k``
    (approximate leading right singular vectors of ``F_k``; round-off directions zeroed)."""
    return np.asarray(numerical_range(np, Y)[:, :, :count])


def stack_bases(bases: np.ndarray, weights: np.ndarray, real: bool) -> np.ndarray:
    """``(n, b * k)`` weighted side-by-side bases ``sqrt(w_k) V_k``; real and imaginary parts
    as separate columns when ``real`` (a real input's conjugate Fourier slices, counted by the
    weights)."""
    scaled = bases * np.sqrt(weights).astype(bases.real.dtype)[:, None, None]  # keeps its dtype
    stacked = np.concatenate(list(scaled), axis=1)
    if real and np.iscomplexobj(stacked):
        stacked = np.concatenate([stacked.real, stacked.imag], axis=1)
    return stacked


def pick(rule: str, basis: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    """``count`` indices into the rows of ``basis`` (``n x k``) by ``rule``."""
    if rule == "sketch_qr":
        return pruned_pivots(basis, count)
    return adaptive_randomized_pivots(basis, count, rng)


Factor = tuple[Array, Array, Array]
"""``(Q, T, s)`` of :func:`tcur.linalg.orthonormal.spectral_range_factor`."""


def candidate_bases(
    F: Array, candidates: list[Any], known: list[tuple[Any, Any]] | None = None
) -> list[tuple[Factor, Factor]]:
    """Range factors (every direction kept) of ``F_k[:, cols]`` and ``F_k[rows, :]^H`` for each
    ``(rows, cols)``, where ``F`` lives. ``known`` holds, per candidate, those already computed
    (``None`` where not)."""
    xp = namespace(F)
    known = known if known is not None else [(None, None)] * len(candidates)
    out = []
    for (rows, cols), (left, right) in zip(candidates, known, strict=True):
        if left is None:
            left = spectral_range_factor(xp, take(F, index_array(cols, F), axis=2))
        if right is None:
            columns = hermitian(xp, take(F, index_array(rows, F), axis=1))
            right = spectral_range_factor(xp, columns)
        out.append((left, right))
    return out


def captured_energy(F: Array, weights: np.ndarray, candidates: list[Any]) -> np.ndarray:
    """``sum_k w_k ||Q_C^H F_k Q_R||_F^2`` for each ``(rows, cols)`` candidate, ``Q_C`` and ``Q_R``
    the numerical ranges of its columns and rows: what :func:`select_pivoted` ranks its measured
    candidates by (:func:`exact_energies`). The CUR error with the optimal middle is
    ``||F||_F^2`` minus this.

    Examples
    --------
    >>> import numpy as np
    >>> from tcur.linalg.pivoting import captured_energy
    >>> A = np.arange(12.0).reshape(4, 3)  # rank 2: two columns and rows capture it all
    >>> e = captured_energy(A[None], np.ones(1), [(np.array([0, 3]), np.array([0, 2]))])
    >>> bool(np.isclose(e[0], np.sum(A**2)))
    True
    """
    xp = namespace(F)
    w = xp.asarray(weights, dtype=_real_dtype(xp, F), device=getattr(F, "device", None))
    first = xp.asarray([0], device=getattr(F, "device", None))
    energies = [  # one pass each: candidates of different sizes do not stack
        exact_energies(F, w, candidate_bases(F, [candidate]), first)[0] for candidate in candidates
    ]
    return np.concatenate([np.asarray(to_numpy(e), dtype=np.float64) for e in energies])


def exact_energies(
    F: Array, weights: Array, bases: list[tuple[Factor, Factor]], order: Array
) -> tuple[Array, list[Array]]:
    """Energies captured by the candidates at positions ``order`` (an index array where ``F``
    lives) and their cores ``Q_C^H F Q_R`` on every direction, in one pass over ``F``.

    The energy is that of the numerical ranges (what ``C pinv(C) A pinv(R) R`` captures): the
    core with the rows and columns of round-off directions masked, which is exact."""
    xp = namespace(F)
    count = int(order.shape[0])
    left = take(xp.stack([factor[0] for factor, _ in bases]), order, axis=0)
    right = take(xp.stack([factor[0] for _, factor in bases]), order, axis=0)
    masks = take(xp.stack([_core_mask(xp, *factors) for factors in bases]), order, axis=0)
    width = left.shape[-1]
    joined = xp.reshape(xp.moveaxis(left, 0, -2), (*F.shape[:2], count * width))
    G = hermitian(xp, joined) @ F
    cores = [G[:, j * width : (j + 1) * width, :] @ right[j, ...] for j in range(count)]
    energies = xp.stack(
        [_energy(xp, weights, core * masks[j, ...]) for j, core in enumerate(cores)]
    )
    return energies, cores


def _numerical(xp: Any, factor: Factor) -> Array:
    """The numerical range basis of a :data:`Factor` (round-off directions zeroed)."""
    return without_roundoff(xp, *factor)[0]


@dataclass(frozen=True)
class Pivots:
    """Indices chosen by :func:`select_pivoted` (host int64), and what it measured of that CUR
    (``None`` when ``F`` was rescaled to keep its squares finite, so the factors are not
    ``A``'s)."""

    rows: np.ndarray
    cols: np.ndarray
    measured: MeasuredProjection | None = None


@dataclass(frozen=True)
class Alternative:
    """A further candidate for :func:`select_pivoted`: ``arrays`` (where ``F`` lives) travel to
    the host with the sketches, and ``choose(host_arrays)`` turns them into ``(rows, cols)``, or
    ``None`` when it has none. With ``from_sketch``, the arrays are ``from_sketch(Q_1, Y_1)``
    instead: built from :func:`select_pivoted`'s last sketch, no pass over ``F`` of their own."""

    choose: Callable[[list[np.ndarray]], tuple[np.ndarray, np.ndarray] | None]
    arrays: tuple[Array, ...] = ()
    from_sketch: Callable[[Array, Array], tuple[Array, ...]] | None = None


def select_pivoted(
    F: Array,
    n_rows: int,
    n_cols: int,
    *,
    rule: str,
    seed: Any = None,
    weights: np.ndarray | None = None,
    real: bool = False,
    alternative: Alternative | None = None,
) -> Pivots:
    """Row and column indices shared by the matrices of ``F`` (``(b, m, n)``).

    ``F`` is one matrix (``b = 1``) or the Fourier slices of a tensor, with their spectrum
    ``weights`` and ``real`` for a real tensor (see :mod:`tcur.linalg.tensor_cur`). ``seed``
    gives two independent streams (:func:`tcur._backend.spawn_rngs`): one for the sketches,
    one for the sampling of ``"arp"``. The candidates are described in
    :mod:`tcur.linalg.pivoting`.

    Examples
    --------
    >>> import numpy as np
    >>> from tcur.linalg.pivoting import select_pivoted
    >>> A = np.random.default_rng(0).standard_normal((20, 4)) @ np.ones((4, 10))
    >>> chosen = select_pivoted(A[None], 3, 2, rule="sketch_qr", seed=0)
    >>> chosen.rows.shape, chosen.cols.shape
    ((3,), (2,))
    """
    sketch_rng, sample_rng = spawn_rngs(seed, 2)
    given = F.detach() if is_torch(F) else F
    F = unit_scaled(given)
    w = np.ones(F.shape[0]) if weights is None else weights
    xp = namespace(F)
    Fh = hermitian(xp, F)
    size = min(max(n_rows, n_cols) + SKETCH_OVERSAMPLE, min(F.shape[1:]))
    X0 = F @ gaussian(sketch_rng, (F.shape[0], F.shape[2], size), F)
    S = sketch_operand(F, X0)  # the later passes in single precision where that resolves them
    Y0 = hermitian(xp, hermitian(xp, qr_basis(xp, S.converted(X0))) @ S.data)
    X1 = S.data @ qr_basis(xp, Y0)
    Q1 = qr_basis(xp, X1)
    Y1 = hermitian(xp, hermitian(xp, Q1) @ S.data)
    sketches = (Y0, Y1, X1)  # pivots are chosen on them in S's precision
    Y1, Q1 = S.restored(Y1, F), in_dtype(xp, Q1, F.dtype)
    extra: tuple[Array, ...] = ()
    if alternative is not None:
        extra = alternative.arrays
        if alternative.from_sketch is not None:
            extra = alternative.from_sketch(Q1, Y1)
    Y0_host, Y1_host, X1_host, *extra_host = host_arrays(*sketches, *extra)  # transfer 1
    # (side, sketch, outer count, inner count, transposed order, orthonormal outer basis, rule)
    plans = [
        (F, Y0_host, n_cols, n_rows, False, False, rule),
        (F, Y1_host, n_cols, n_rows, False, False, rule),
        (Fh, X1_host, n_rows, n_cols, True, False, rule),
    ]
    if rule == "sketch_qr":  # Q-DEIM on the dominant subspace of the slices' averaged projector
        plans.append((F, Y1_host, n_cols, n_rows, False, True, rule))
        if F.shape[0] > 1:  # a tensor: greedy pivots of shared indices can miss; see above
            plans += [(*plan[:6], "arp") for plan in plans[:3]]
    tops: dict[tuple[int, int], np.ndarray] = {}  # one SVD per sketch for ARP and Q-DEIM plans
    outers = []
    for _, sketch, first, _, _, ortho, plan_rule in plans:
        vectors = None
        if plan_rule == "arp" or ortho:
            key = (id(sketch), first)
            if key not in tops:
                tops[key] = top_right_vectors(sketch, first)
            vectors = tops[key]
        outers.append(
            sketch_pivots(
                plan_rule,
                sketch,
                first,
                sample_rng,
                weights=w,
                real=real,
                orthonormal=ortho,
                vectors=vectors,
            )
        )
    factors = [
        spectral_range_factor(xp, _extended_columns(side, outer, second, sketch_rng))
        for (side, _, _, second, *_), outer in zip(plans, outers, strict=True)
    ]
    blocks = host_arrays(*(without_roundoff(xp, *factor)[0] for factor in factors))  # transfer 2
    candidates, known = [], []
    for plan, outer, factor, block in zip(plans, outers, factors, blocks, strict=True):
        inner = pick(plan[6], S.for_pivoting(stack_bases(block, w, real)), plan[3], sample_rng)
        candidates.append((outer, inner) if plan[4] else (inner, outer))
        exact = factor if plan[3] <= outer.size else None  # the outer side's, if not extended
        known.append((None, exact) if plan[4] else (exact, None))
    other = alternative.choose(extra_host) if alternative is not None else None
    if other is not None:  # measured with the others; it wins only if strictly better
        candidates.append(other)
        known.append((None, None))
    if F.shape[0] > 1:  # a tensor: its sketch ranks its candidates less reliably
        exact_count = len(candidates)
    else:
        exact_count = EXACT_CANDIDATES if S.data is F else RESOLVED_EXACT_CANDIDATES
    best, measured = _best(F, Q1, Y1, w, candidates, known, exact_count)
    rows, cols = candidates[best]
    return Pivots(rows, cols, measured if F is given else None)


def sketch_pivots(
    rule: str,
    sketch: np.ndarray,
    count: int,
    rng: np.random.Generator,
    *,
    weights: np.ndarray | None = None,
    real: bool = False,
    orthonormal: bool = False,
    vectors: np.ndarray | None = None,
) -> np.ndarray:
    """``count`` indices along the sketched axis of a host ``sketch`` (``(b, n, l)``: a row-space
    sketch ``Y_k = F_k^H Q_k`` of each matrix, or the column-space one of the transposed order):
    pivots of the stacked sketches (``"sketch_qr"``), of their leading singular vectors
    (``orthonormal``), or adaptive randomized pivots on those vectors (``"arp"``; ``vectors``:
    :func:`top_right_vectors` of ``sketch`` when the caller already has them). The first step
    of every candidate of :func:`select_pivoted` and of the product engine's one candidate
    (:mod:`tcur.linalg.products`); ``weights`` default to one per matrix.

    Examples
    --------
    >>> import numpy as np
    >>> from tcur.linalg.pivoting import sketch_pivots
    >>> Y = np.random.default_rng(0).standard_normal((1, 30, 6))
    >>> sketch_pivots("sketch_qr", Y, 4, np.random.default_rng(1)).shape
    (4,)
    """
    weights = np.ones(sketch.shape[0]) if weights is None else weights
    if rule == "arp" or orthonormal:
        basis = top_right_vectors(sketch, count) if vectors is None else vectors
    else:
        basis = sketch
    stacked = stack_bases(basis, weights, real)
    if orthonormal and stacked.shape[1] > count:  # one basis (a matrix) is its own subspace
        stacked = dominant_directions(stacked, count)
    return pick(rule, stacked, count, rng)


def _extended_columns(F: Array, cols: np.ndarray, size: int, rng: np.random.Generator) -> Array:
    """``F_k[:, cols]`` (where ``F`` lives), extended to ``size`` columns by a range sketch when
    more inner than outer indices are kept; the inner pivots are chosen on its range."""
    xp = namespace(F)
    C = take(F, index_array(cols, F), axis=2)
    if size > cols.size:
        extra = F @ gaussian(rng, (F.shape[0], F.shape[2], size - cols.size), F)
        C = xp.concat([C, extra], axis=2)
    return C


def _best(
    F: Array,
    Q: Array,
    Y: Array,
    weights: np.ndarray,
    candidates: list[Any],
    known: list[tuple[Any, Any]],
    exact_count: int,
) -> tuple[int, MeasuredProjection]:
    """Position of the candidate with the largest exact captured energy, and its factors.

    The candidates are pre-ranked on the sketch ``Q Y^H`` (no pass over ``F``) and the best
    ``exact_count`` measured exactly in one pass, all where ``F`` lives; one transfer brings the
    ranking and the energies to the host. Candidates within round-off of the best are ties: the
    first wins (backend-independent). The winner's ``Q_C^H F Q_R`` is a by-product of that pass."""
    xp = namespace(F)
    bases = candidate_bases(F, candidates, known)
    w = xp.asarray(weights, dtype=_real_dtype(xp, F), device=getattr(F, "device", None))
    if exact_count >= len(candidates):  # every one is measured: no ranking needed
        order = xp.arange(len(candidates), device=getattr(F, "device", None))
    else:
        sketched = xp.stack(
            [
                _energy(
                    xp,
                    w,
                    (hermitian(xp, _numerical(xp, left)) @ Q)
                    @ (hermitian(xp, Y) @ _numerical(xp, right)),
                )
                for left, right in bases
            ]
        )
        order = xp.sort(xp.argsort(-sketched, stable=True)[:exact_count])
    exact, cores = exact_energies(F, w, bases, order)
    order_host, energy = host_arrays(order, exact)  # transfer 3: ranking and energies
    best = int(np.flatnonzero(energy >= energy.max() * (1 - 1000 * eps(F)))[0])
    position = int(order_host[best])
    return position, MeasuredProjection(*bases[position], cores[best])


def _core_mask(xp: Any, left: Factor, right: Factor) -> Array:
    """``(b, k_C, k_R)``: 1 where both directions are kept by
    :func:`tcur.linalg.orthonormal.without_roundoff`, else 0."""
    keep_left, keep_right = (
        kept_directions(xp, left[0], left[2]),
        kept_directions(xp, right[0], right[2]),
    )
    mask = keep_left[..., :, None] * keep_right[..., None, :]
    return xp.astype(mask, left[0].dtype)


def _real_dtype(xp: Any, F: Array) -> Any:
    return xp.real(F[:1, :1, :1]).dtype if xp.isdtype(F.dtype, "complex floating") else F.dtype


def _energy(xp: Any, weights: Array, block: Array) -> Array:
    """``sum_k w_k ||block_k||_F^2`` (0-D, where ``block`` lives)."""
    return xp.sum(weights * xp.sum(xp.abs(block) ** 2, axis=(1, 2)))
