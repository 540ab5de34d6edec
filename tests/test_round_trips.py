"""GPU readiness: the default torch path of ``cur`` and ``decompose`` reads data back to the host
a bounded number of times, each time sketch-sized data (never the m x n matrix).

Every device-to-host read of a tensor (``.numpy()``, ``.item()``, ``float``/``int``/``bool`` of a
tensor, ``.tolist()``) synchronises a GPU; they are counted here on CPU tensors, where the same
calls are made.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

import tcur
import tcur._backend

READS = ("numpy", "item", "tolist", "__float__", "__int__", "__bool__", "__index__")


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, int]]:
    """``(method, elements)`` of every device-to-host read of a tensor, in order."""
    seen: list[tuple[str, int]] = []
    for name in READS:
        original = getattr(torch.Tensor, name)

        def counting(self: torch.Tensor, *args: Any, _name: str = name, _f: Any = original) -> Any:
            seen.append((_name, self.numel()))
            return _f(self, *args)

        monkeypatch.setattr(torch.Tensor, name, counting)
    # As on a GPU: the shortcuts that read back only where that is free (CPU tensors) are off.
    monkeypatch.setattr(tcur._backend, "reads_are_free", lambda x: not isinstance(x, torch.Tensor))
    return seen


@pytest.mark.parametrize(("m", "n", "rank"), [(300, 200, 20), (1200, 900, 40)])
def test_decompose_reads_back_at_most_four_times(
    reads: list[tuple[str, int]], m: int, n: int, rank: int
) -> None:
    A = torch.randn(m, rank, dtype=torch.float64) @ torch.randn(rank, n, dtype=torch.float64)
    A = A + 1e-3 * torch.randn(m, n, dtype=torch.float64)
    d = tcur.decompose(A, rank, seed=0)
    assert len(reads) <= 4, reads
    sketches = 3 * (rank + 10) * (m + n)  # three sketch-sized blocks in one read at most
    assert max(size for _, size in reads) <= sketches
    assert isinstance(d.reconstruct(), torch.Tensor)


def test_the_counter_sees_a_read(reads: list[tuple[str, int]]) -> None:
    float(torch.ones(()))
    np.asarray(torch.ones(3).numpy())
    assert [name for name, _ in reads] == ["__float__", "numpy"]


@pytest.mark.parametrize("select", ["sketch_qr", "deim"])
@pytest.mark.parametrize("shape", [(40, 30, 8), (200, 160, 4)])  # exact / sketched Q-DEIM bases
def test_tcur_reads_back_at_most_four_times(
    reads: list[tuple[str, int]], select: str, shape: tuple[int, int, int]
) -> None:
    T = torch.randn(*shape, dtype=torch.float64)
    d = tcur.decompose(T, 5, select=select, seed=0)
    assert len(reads) <= 4, reads
    assert max(size for _, size in reads) < T.numel()
    assert isinstance(d.reconstruct(), torch.Tensor)
