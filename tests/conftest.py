"""Shared test configuration: Hypothesis profiles and torch threading."""

from __future__ import annotations

import os
from typing import Any

import pytest
import torch
from hypothesis import HealthCheck, settings

import tcur._backend

settings.register_profile(
    "ci",
    derandomize=True,
    database=None,
    deadline=None,
    max_examples=25,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile("dev", deadline=None, max_examples=100)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))

# The tests use small tensors: one intra-op thread avoids thread start-up and contention costs
# that dominate tiny FFTs and matmuls on a 2-core machine.
torch.set_num_threads(1)


@pytest.fixture
def scans(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Names of the arrays scanned for NaN/Inf (``check_finite``, or ``check_factorizable`` with
    the scan it may make inside counted once), in order."""
    seen: list[str] = []
    finite, factorizable = tcur._backend.check_finite, tcur._backend.check_factorizable
    inside = [False]

    def counting(x: Any, name: str) -> None:
        if not inside[0]:
            seen.append(name)
        finite(x, name)

    def counting_factorizable(x: Any, name: str, **options: Any) -> None:
        seen.append(name)
        inside[0] = True
        try:
            factorizable(x, name, **options)
        finally:
            inside[0] = False

    monkeypatch.setattr(tcur._backend, "check_finite", counting)
    monkeypatch.setattr(tcur._backend, "check_factorizable", counting_factorizable)
    return seen
