"""Arguments a hurried user passes: NumPy scalars, bools, odd dtypes, bad shapes and seeds.

Issue 9, section 4: NumPy integers are accepted wherever Python ints are, bool is not a rank,
``fold``'s shape, ``svd=`` and ``seed`` are validated, long double and masked arrays are refused,
and the ``tcur.testing`` builders check their own arguments.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import given

from tcur._backend import make_rng, spawn_rngs
from tcur.linalg import (
    chidori_cur,
    cur,
    deim,
    fiber_cur,
    fold,
    leverage_scores,
    mode_dot,
    multi_mode_dot,
    relative_error,
    teye,
    tinv,
    tpinv,
    tprod,
    tsvd,
    tubal_rank,
    unfold,
)
from tcur.linalg.selection import SELECT_RULES, select_matrix
from tcur.testing import (
    low_multilinear_rank_tensor,
    low_rank_matrix,
    low_tubal_rank_tensor,
    matrices,
    multilinear_tensors,
    tubal_tensors,
    valid_multilinear_ranks,
)
from tcur.testing.strategies import orthonormal, spectrum

A = low_rank_matrix(0, 8, 6, 3)
T3 = low_tubal_rank_tensor(0, 5, 4, 3, 2)
TM = low_multilinear_rank_tensor(0, (5, 6, 4), (2, 2, 2))

# --- NumPy integer scalars -------------------------------------------------------------------

INTS = [np.int64, np.int32, np.int16, np.uint8]


@pytest.mark.parametrize("kind", INTS)
def test_numpy_integers_are_accepted_like_python_ints(kind: Callable[[int], Any]) -> None:
    two: Any = kind(2)
    as_array: Any = np.array
    np.testing.assert_array_equal(teye(kind(3), two), teye(3, 2))
    np.testing.assert_array_equal(unfold(TM, kind(1)), unfold(TM, 1))
    np.testing.assert_array_equal(fold(unfold(TM, 1), kind(1), [kind(5), kind(6), kind(4)]), TM)
    np.testing.assert_array_equal(fold(unfold(TM, 2), 2, as_array(TM.shape)), TM)
    M = np.ones((3, 6))
    np.testing.assert_array_equal(mode_dot(TM, M, kind(1)), mode_dot(TM, M, 1))
    np.testing.assert_array_equal(
        multi_mode_dot(TM, [M], modes=[kind(1)]), multi_mode_dot(TM, [M], modes=[1])
    )
    for a, b in zip(tsvd(T3, two), tsvd(T3, 2), strict=True):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(tpinv(T3, rank=two), tpinv(T3, rank=2))
    assert tubal_rank(T3, tol=as_array(1e-8, np.float32)[()]) == tubal_rank(T3, tol=1e-8) == 2
    np.testing.assert_array_equal(leverage_scores(A, two, axis=kind(0)), leverage_scores(A, 2, 0))
    np.testing.assert_array_equal(cur(A, two, seed=0).rows, cur(A, 2, seed=0).rows)
    for method in (chidori_cur, fiber_cur):
        expected = method(TM, (2, 2, 2))
        for ranks in (two, [two] * 3, as_array([2, 2, 2], dtype=kind)):
            got = method(TM, ranks)
            for a, b in zip(got.indices, expected.indices, strict=True):
                np.testing.assert_array_equal(a, b)
    first = cur(A, 2, select="uniform", seed=kind(7)).rows
    np.testing.assert_array_equal(first, cur(A, 2, select="uniform", seed=7).rows)


@pytest.mark.parametrize(
    ("call", "error", "pattern"),
    [
        (lambda: tsvd(T3, True), TypeError, "rank must be an integer, got True"),
        (lambda: tpinv(T3, rank=np.bool_(True)), TypeError, "rank must be an integer"),  # type: ignore[arg-type]
        (lambda: chidori_cur(TM, True), TypeError, "ranks must be an int or a sequence"),
        (lambda: fiber_cur(TM, [2, True, 2]), TypeError, r"ranks\[1\] must be an integer"),
        (lambda: teye(True, 2), TypeError, "n must be an integer, got True"),
        (lambda: teye(2, np.int64(0)), ValueError, "n3 must be >= 1"),  # type: ignore[arg-type]
        (lambda: teye(2.0, 2), TypeError, "n must be an integer, got 2.0"),  # type: ignore[arg-type]
        (lambda: mode_dot(TM, np.ones((2, 6)), True), TypeError, "mode must be an integer"),
        (lambda: unfold(TM, 1.0), TypeError, "mode must be an integer, got 1.0"),  # type: ignore[arg-type]
        (lambda: leverage_scores(A, 2, axis=True), ValueError, "axis must be 0"),
        (lambda: tubal_rank(T3, tol=True), TypeError, "tol must be a real number"),
        (lambda: tubal_rank(T3, tol=-1.0), ValueError, "tol must be a finite number >= 0"),
        (lambda: tubal_rank(T3, tol=float("nan")), ValueError, "tol must be a finite"),
        (lambda: tubal_rank(T3, tol="1e-3"), TypeError, "tol must be a real number"),  # type: ignore[arg-type]
    ],
)
def test_bools_and_floats_are_not_integers(
    call: Callable[[], Any], error: type[Exception], pattern: str
) -> None:
    with pytest.raises(error, match=pattern):
        call()


# --- fold's shape ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("shape", "error", "pattern"),
    [
        ((6, -1), ValueError, r"shape must hold positive integers, got -1 in \(6, -1\)"),
        ((6, 0), ValueError, "shape must hold positive integers, got 0"),
        ((2, 3.0), TypeError, r"shape must hold integers, got 3.0 \(float\)"),
        ((2, True), TypeError, "shape must hold integers, got True"),
        (6, TypeError, r"shape must be a sequence of integers, got 6 \(int\)"),
        ("23", TypeError, "shape must be a sequence of integers"),
        (None, TypeError, "shape must be a sequence of integers"),
        (np.ones((2, 3), dtype=int), TypeError, "shape must be a sequence of integers"),
    ],
)
def test_fold_validates_shape(shape: Any, error: type[Exception], pattern: str) -> None:
    with pytest.raises(error, match=pattern):
        fold(np.ones((2, 3)), 0, shape)


def test_fold_mode_is_checked_against_shape() -> None:
    with pytest.raises(ValueError, match="mode=2 is out of range"):
        fold(np.ones((2, 3)), 2, (2, 3))


# --- dtypes and array kinds that are refused --------------------------------------------------

REFUSING = [
    ("A", lambda x: cur(x[:, :, 0], 1)),
    ("A", lambda x: tsvd(x)),
    ("operand 0", lambda x: tprod(x, np.ones((4, 2, 3)))),
    ("A", lambda x: tinv(x[:4])),
    ("A", lambda x: tpinv(x)),
    ("T", lambda x: chidori_cur(x, 1)),
    ("T", lambda x: fiber_cur(x, 1)),
    ("V", lambda x: deim(x[:, :, 0])),
    ("A", lambda x: leverage_scores(x[:, :, 0], 1, axis=0)),
    ("T", lambda x: mode_dot(x, np.ones((2, 5)), 0)),
    ("x", lambda x: relative_error(x, x)),
]


@pytest.mark.parametrize(("name", "call"), REFUSING)
def test_long_double_is_refused_by_name(name: str, call: Callable[[Any], Any]) -> None:
    x = low_tubal_rank_tensor(1, 5, 4, 3, 2).astype(np.longdouble)
    if np.finfo(np.longdouble).bits == 64:  # pragma: no cover - platforms without long double
        pytest.skip("long double is float64 here")
    with pytest.raises(TypeError, match=rf"{name} has dtype float128 \(long double\)"):
        call(x)
    with pytest.raises(TypeError, match=rf"{name} has dtype complex256"):
        call(x.astype(np.clongdouble))


@pytest.mark.parametrize(("name", "call"), REFUSING)
def test_masked_arrays_are_refused_by_name(name: str, call: Callable[[Any], Any]) -> None:
    x = low_tubal_rank_tensor(1, 5, 4, 3, 2)
    masked = np.ma.masked_array(x, mask=np.zeros(x.shape, dtype=bool))
    with pytest.raises(TypeError, match=rf"{name} is a numpy masked array"):
        call(masked)


@pytest.mark.filterwarnings("ignore:ComplexHalf support is experimental")
def test_half_precision_and_complex32_torch_are_promoted() -> None:
    x = torch.as_tensor(T3, dtype=torch.float16)
    assert all(f.dtype == torch.float32 for f in tsvd(x))
    c = torch.complex(torch.as_tensor(T3), torch.as_tensor(T3)).to(torch.complex32)
    assert tsvd(c)[0].dtype == torch.complex64


# --- seeds -----------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [-1, np.int64(-5)])
def test_negative_seed_is_a_clear_error(seed: Any) -> None:
    with pytest.raises(ValueError, match="seed must be a non-negative integer, got -"):
        cur(A, 2, select="uniform", seed=seed)
    with pytest.raises(ValueError, match="seed must be a non-negative integer"):
        chidori_cur(TM, 1, select="uniform", seed=seed)
    with pytest.raises(ValueError, match="seed must be a non-negative integer"):
        spawn_rngs(seed, 2)


@pytest.mark.parametrize("seed", [True, 1.5, "0", [1]])
def test_seed_of_wrong_type_is_a_clear_error(seed: Any) -> None:
    with pytest.raises(TypeError, match="seed must be None, an int"):
        make_rng(seed)


def test_spawned_streams_are_independent_and_reproducible() -> None:
    a, b = spawn_rngs(3, 2)
    a2, b2 = spawn_rngs(np.int64(3), 2)
    draws_a, draws_b = a.random(64), b.random(64)
    np.testing.assert_array_equal(draws_a, a2.random(64))
    np.testing.assert_array_equal(draws_b, b2.random(64))
    assert abs(np.corrcoef(draws_a, draws_b)[0, 1]) < 0.5 and not np.allclose(draws_a, draws_b)
    # the sampling stream is not the sketch stream: a plain default_rng(3) is neither
    assert not np.allclose(np.random.default_rng(3).random(64), draws_a)
    assert not np.allclose(np.random.default_rng(3).random(64), draws_b)
    # None: fresh entropy every call
    assert spawn_rngs(None, 1)[0].random() != spawn_rngs(None, 1)[0].random()
    # a generator spawns children without being consumed, and twice gives different children
    g = np.random.default_rng(0)
    first, second = spawn_rngs(g, 1)[0].random(), spawn_rngs(g, 1)[0].random()
    assert first != second
    with pytest.raises(ValueError, match="n must be >= 1"):
        spawn_rngs(0, 0)


def test_seed_none_is_random_for_sampled_rules() -> None:
    B = np.random.default_rng(0).standard_normal((60, 50))
    picks = {tuple(select_matrix(B, 3, 3, 3, select="uniform").rows) for _ in range(6)}
    assert len(picks) > 1
    fixed = {tuple(select_matrix(B, 3, 3, 3, select="uniform", seed=4).rows) for _ in range(3)}
    assert len(fixed) == 1


# --- svd= for every rule ----------------------------------------------------------------------


@pytest.mark.parametrize("select", SELECT_RULES)
def test_svd_option_is_validated_for_every_rule(select: str) -> None:
    with pytest.raises(ValueError, match="unknown svd='fast'; valid names are auto"):
        select_matrix(A, 2, 2, 2, select=select, seed=0, svd="fast")
    with pytest.raises(ValueError, match="unknown svd='fast'"):
        cur(A, 2, select=select, seed=0, svd="fast")
    with pytest.raises(ValueError, match="unknown svd="):
        leverage_scores(A, 2, axis=0, svd=None)  # type: ignore[arg-type]


# --- tcur.testing builders --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("call", "error", "pattern"),
    [
        (lambda: low_rank_matrix(0, 4, 3, 5), ValueError, "rank=5 exceeds"),
        (lambda: low_rank_matrix(0, 4, 3, 0), ValueError, "rank must be >= 1"),
        (lambda: low_rank_matrix(0, 0, 3, 1), ValueError, "m must be >= 1"),
        (lambda: low_rank_matrix(0, 4, -3, 1), ValueError, "n must be >= 1"),
        (lambda: low_rank_matrix(0, 4, 3.0, 1), TypeError, "n must be an integer"),  # type: ignore[arg-type]
        (
            lambda: low_rank_matrix(0, 4, 3, 2, cond=0.5),
            ValueError,
            "cond must be a finite number >= 1",
        ),
        (lambda: low_rank_matrix(0, 4, 3, 2, cond=np.inf), ValueError, "cond must be a finite"),
        (lambda: low_rank_matrix(0, 4, 3, 2, scale=0.0), ValueError, "scale must be nonzero"),
        (lambda: low_rank_matrix(0, 4, 3, 2, scale=np.nan), ValueError, "scale must be a finite"),
        (lambda: low_rank_matrix(-1, 4, 3, 2), ValueError, "seed must be a non-negative"),
        (lambda: low_tubal_rank_tensor(0, 3, 4, 2, 4), ValueError, "rank=4 exceeds"),
        (lambda: low_tubal_rank_tensor(0, 3, 4, 0, 1), ValueError, "n3 must be >= 1"),
        (
            lambda: low_multilinear_rank_tensor(0, (3, 4, 5), (2, 2)),
            ValueError,
            "ranks must have 3 entries",
        ),
        (
            lambda: low_multilinear_rank_tensor(0, (3, 4, 5), (4, 2, 2)),
            ValueError,
            "not a multilinear rank",
        ),
        (
            lambda: low_multilinear_rank_tensor(0, (3, 4, 5), (2, 0, 2)),
            ValueError,
            "ranks must hold positive",
        ),
        (
            lambda: low_multilinear_rank_tensor(0, (3, -4, 5), (2, 2, 2)),
            ValueError,
            "shape must hold positive",
        ),
        (
            lambda: low_multilinear_rank_tensor(0, 3, (2, 2, 2)),  # type: ignore[arg-type]
            TypeError,
            "shape must be a sequence",
        ),
        (
            lambda: valid_multilinear_ranks([2, 2], (3, 3, 3)),
            ValueError,
            "ranks must have 3 entries",
        ),
        (lambda: orthonormal(np.random.default_rng(0), 3, 4), ValueError, "k=4 exceeds"),
        (lambda: spectrum(3, 0.0), ValueError, "cond must be a finite number >= 1"),
        (lambda: matrices(max_side=0), ValueError, "max_side must be >= 1"),
        (lambda: matrices(min_side=5, max_side=3), ValueError, "max_side=3 must be >= min_side=5"),
        (lambda: matrices(rank=0), ValueError, "rank must be >= 1"),
        (lambda: matrices(max_cond=0.5), ValueError, "max_cond must be a finite number >= 1"),
        (lambda: matrices(backend="jax"), ValueError, "unknown backend='jax'"),
        (lambda: matrices(dtype="int8"), ValueError, "unknown dtype='int8'"),
        (lambda: tubal_tensors(max_tubes=0), ValueError, "max_tubes must be >= 1"),
        (lambda: tubal_tensors(min_side=0), ValueError, "min_side must be >= 1"),
        (
            lambda: multilinear_tensors(min_order=4, max_order=3),
            ValueError,
            "max_order=3 must be >= min_order=4",
        ),
        (lambda: multilinear_tensors(max_rank=0), ValueError, "max_rank must be >= 1"),
        (lambda: multilinear_tensors(backend="cupy"), ValueError, "unknown backend='cupy'"),
    ],
)
def test_testing_builders_validate_arguments(
    call: Callable[[], Any], error: type[Exception], pattern: str
) -> None:
    with pytest.raises(error, match=pattern):
        call()


NP_FIVE: Any = np.int64(5)
NP_TWO: Any = np.int64(2)


@given(pair=matrices(max_side=NP_FIVE, rank=NP_TWO, backend="torch", dtype="float32"))
def test_strategies_accept_numpy_integers(pair: tuple[Any, int]) -> None:
    A_, rank = pair
    assert isinstance(A_, torch.Tensor) and A_.dtype == torch.float32
    assert type(rank) is int and rank == min(2, *A_.shape)
    assert int(torch.linalg.matrix_rank(A_, rtol=1e-4)) == rank


def test_decompose_names_its_own_argument() -> None:
    import tcur

    bad = np.ones((5, 4))
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="x must not contain NaN"):
        tcur.decompose(bad, 2)
    with pytest.raises(ValueError, match="x must be 2-D for method='matrix'"):
        tcur.decompose(np.ones((3, 3, 3)), 2, method="matrix")


def test_one_rule_for_library_and_adapter_configs() -> None:
    # TypeError for a wrong type, ValueError for a wrong value, wherever the argument is given.
    from tcur.adapters import CURLoRAConfig
    from tcur.linalg import cur, teye

    A = np.ones((6, 5))
    for call in (
        lambda: cur(A, 2, seed="x"),
        lambda: CURLoRAConfig(["q"], seed="x"),
        lambda: cur(A, 2.0),
        lambda: teye(2.0, 3),
        lambda: CURLoRAConfig(["q"], rank=2.0),
    ):
        with pytest.raises(TypeError):
            call()
    for call in (
        lambda: cur(A, 2, seed=-1),
        lambda: CURLoRAConfig(["q"], seed=-1),
        lambda: cur(A, 0),
        lambda: teye(0, 3),
        lambda: CURLoRAConfig(["q"], rank=0),
    ):
        with pytest.raises(ValueError):
            call()


def test_decompose_validates_its_array_once(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    import tcur
    import tcur._backend as backend

    calls: list[str] = []
    original = backend.as_float_array

    def counting(x: object, name: str, **kwargs: object) -> object:
        calls.append(name)
        return original(x, name, **kwargs)

    for module in [m for n, m in sys.modules.items() if n.startswith("tcur")]:
        if getattr(module, "as_float_array", None) is original:
            monkeypatch.setattr(module, "as_float_array", counting)
    A = np.random.default_rng(0).standard_normal((30, 20))
    for call in (lambda: tcur.decompose(A, 4), lambda: tcur.decompose(A, tol=0.5)):
        calls.clear()
        call()
        assert calls == ["x"]
    with pytest.raises(TypeError, match="bogus"):
        tcur.decompose(A, 2, bogus=1)
