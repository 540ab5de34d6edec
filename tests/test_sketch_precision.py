"""Single-precision sketch passes: taken only where the first sketch is well conditioned, and
never at the cost of the quality and stability bounds."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from spectra import noisy_spectrum

import tcur.linalg.sketch_precision as sketch_precision
from tcur.linalg import cur, relative_error, tcur
from tcur.linalg.sketch_precision import (
    MAX_CONDITION,
    SketchOperand,
    single_precision_resolves,
    sketch_operand,
)
from tcur.testing.families import FAMILIES, family_matrix, family_stack

EPS = np.finfo(np.float64).eps


def _sketch(F: object, width: int = 20) -> object:
    host = F.numpy() if isinstance(F, torch.Tensor) else np.asarray(F)
    X0 = host @ np.random.default_rng(1).standard_normal((*host.shape[:-2], host.shape[-1], width))
    return torch.from_numpy(X0) if isinstance(F, torch.Tensor) else X0.astype(host.dtype)


def _svd_tail(A: np.ndarray, k: int) -> float:
    s2 = np.linalg.svd(A, compute_uv=False) ** 2
    return float(np.sqrt(s2[k:].sum() / s2.sum()))


def _record_operands(monkeypatch: pytest.MonkeyPatch) -> list[np.dtype]:
    """The dtypes of the sketch operands the pivoting uses from now on."""
    used: list[np.dtype] = []
    original = sketch_precision.sketch_operand

    def spy(F: np.ndarray, X0: np.ndarray) -> SketchOperand:
        S = original(F, X0)
        used.append(S.data.dtype)
        return S

    monkeypatch.setattr("tcur.linalg.pivoting.sketch_operand", spy)
    return used


@pytest.fixture
def single_sketches(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[np.dtype]]:
    """Every size eligible; yields the dtypes of the sketch operands used."""
    monkeypatch.setattr(sketch_precision, "MIN_ENTRIES", 0)
    used = _record_operands(monkeypatch)
    yield used


def test_well_conditioned_large_sketch_runs_in_single_precision() -> None:
    F = np.random.default_rng(0).standard_normal((1, 1100, 1000))
    S = sketch_operand(F, _sketch(F))
    assert S.data.dtype == np.float32
    np.testing.assert_array_equal(S.data, (F * S.scale).astype(np.float32))
    complex_F = F + 1j * F[:, ::-1, :]
    assert sketch_operand(complex_F, _sketch(complex_F)).data.dtype == np.complex64


@pytest.mark.parametrize("factor", [1e-30, 1e30, 1e-200, 1e200])
def test_any_magnitude_is_scaled_into_single_range_exactly(factor: float) -> None:
    F = np.random.default_rng(0).standard_normal((1, 1100, 1000)) * factor
    S = sketch_operand(F, _sketch(F))
    assert S.data.dtype == np.float32 and np.all(np.isfinite(S.data))
    assert 0.01 < float(np.max(np.abs(S.data))) < 100.0
    assert S.scale == 2.0 ** round(np.log2(S.scale))  # a power of two: undone exactly


@pytest.mark.parametrize(
    "make",
    [
        lambda F: F[:, :1000, :1000],  # fewer entries than MIN_ENTRIES
        lambda F: F.astype(np.float32),  # already single
        lambda F: torch.from_numpy(F),  # not NumPy: the test would read the device
        lambda F: F * 0.0,
        lambda F: noisy_spectrum(0, 1100, 1000, 0.5, 0.0)[None],  # fast decay: ill-conditioned
    ],
)
def test_other_inputs_keep_their_own_precision(make: object) -> None:
    F = make(np.random.default_rng(0).standard_normal((1, 1100, 1000)))  # type: ignore[operator]
    assert sketch_operand(F, _sketch(F)).data is F


def test_memory_mapped_and_oversized_inputs_are_not_copied(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    F = np.random.default_rng(0).standard_normal((1100, 1000))
    mapped = np.lib.format.open_memmap(tmp_path / "F.npy", mode="w+", shape=F.shape)
    mapped[...] = F
    used = _record_operands(monkeypatch)
    cur(mapped, 10, seed=0)  # validation turns the memmap into a plain view of the map
    cur(F, 10, seed=0)
    assert used == [np.float64, np.float32]
    monkeypatch.setattr(sketch_precision, "MAX_COPY_BYTES", F.nbytes // 2 - 1)
    assert sketch_operand(F[None], _sketch(F[None])).data.dtype == np.float64


def test_condition_threshold_decides() -> None:
    rng = np.random.default_rng(0)
    U, _ = np.linalg.qr(rng.standard_normal((500, 10)))
    for condition, expected in [(MAX_CONDITION / 2, True), (MAX_CONDITION * 2, False)]:
        X0 = U * np.geomspace(1.0, 1.0 / condition, 10)
        assert single_precision_resolves(X0[None]) is expected
    assert not single_precision_resolves(np.zeros((1, 500, 10)))
    assert not single_precision_resolves(np.full((1, 500, 10), np.nan))
    assert not single_precision_resolves(U[None, :, :0])


def test_large_real_cur_uses_single_sketches_and_keeps_its_quality(
    single_sketches: list[np.dtype],
) -> None:
    A = noisy_spectrum(3, 1200, 1000, 0.9, 1e-6)
    d = cur(A, 25, seed=0)
    assert single_sketches == [np.float32]
    assert d.C.dtype == d.U.dtype == d.R.dtype == np.float64
    assert float(relative_error(A, d.reconstruct())) <= 2.5 * _svd_tail(A, 25) + 10 * EPS


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_families_keep_the_bounds_with_single_sketches(
    family: str, single_sketches: list[np.dtype]
) -> None:
    # Every rank of a 60 x 40 member: where the first sketch is well conditioned (low ranks of
    # the fast-decaying families, every rank of the flat ones) the passes run in single precision
    A = family_matrix(family, 60, 40)
    s2 = np.linalg.svd(A, compute_uv=False) ** 2
    tails = np.sqrt(np.append(np.cumsum(s2[::-1])[::-1], 0.0) / s2.sum())
    for r in range(1, 41):
        error = float(relative_error(A, cur(A, r, seed=0).reconstruct()))
        assert error <= max(10 * tails[r], 30 * EPS * np.sqrt(40)), f"rank {r}"
    assert np.dtype(np.float64) in single_sketches  # the high ranks stay in double


def test_single_sketches_are_taken_somewhere_in_the_families(
    single_sketches: list[np.dtype],
) -> None:
    for family in sorted(FAMILIES):
        cur(family_matrix(family, 60, 40), 3, seed=0)
    assert np.dtype(np.float32) in single_sketches


def test_tensor_keeps_its_bound_with_single_sketches(single_sketches: list[np.dtype]) -> None:
    A = family_stack("gaussian_kernel", 60, 40, 4)
    F = np.fft.fft(A, axis=2)
    singular = [np.linalg.svd(F[:, :, k], compute_uv=False) for k in range(4)]
    total = np.linalg.norm(A)
    for r in (2, 5, 10, 20, 30):
        tail = np.sqrt(sum(np.sum(s[r:] ** 2) for s in singular) / 4) / total
        error = np.linalg.norm(A - tcur(A, r, seed=0).reconstruct()) / total
        assert error <= max(10 * tail, 30 * EPS * np.sqrt(40)), f"rank {r}"
    assert single_sketches


def test_pivots_are_chosen_in_single_and_measured_in_double(
    single_sketches: list[np.dtype], monkeypatch: pytest.MonkeyPatch
) -> None:
    import tcur.linalg.pivoting as pivoting

    picked: list[np.dtype] = []
    measured: list[np.dtype] = []
    pick, exact_energies = pivoting.pick, pivoting.exact_energies

    def pick_spy(rule: str, basis: np.ndarray, *args: Any) -> np.ndarray:
        picked.append(basis.dtype)
        return pick(rule, basis, *args)

    def energies_spy(F: np.ndarray, *args: Any) -> Any:
        measured.append(F.dtype)
        return exact_energies(F, *args)

    monkeypatch.setattr(pivoting, "pick", pick_spy)
    monkeypatch.setattr(pivoting, "exact_energies", energies_spy)
    A = noisy_spectrum(3, 1200, 1000, 0.9, 1e-6)
    d = cur(A, 25, seed=0)
    assert single_sketches == [np.float32]
    assert len(picked) == 8 and set(picked) == {np.dtype(np.float32)}  # 4 candidates x 2 sides
    assert measured == [np.dtype(np.float64)]
    assert d.C.dtype == d.U.dtype == d.R.dtype == np.float64
