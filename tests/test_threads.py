"""BLAS thread scopes: ``tcur._backend.one_blas_thread`` limits every loaded BLAS to one thread
for thin factorizations and the sparse engine, and restores what was there (it acts process-wide
while active)."""

from __future__ import annotations

import threadpoolctl

from tcur._backend import one_blas_thread


def _blas_threads() -> set[int]:
    return {i["num_threads"] for i in threadpoolctl.threadpool_info() if i["user_api"] == "blas"}


def test_one_blas_thread_limits_blas_and_restores_what_was_there() -> None:
    # When BLAS already runs one thread the scope is skipped (a query instead of a limit): it
    # must still leave one thread, and the outer limit must come back unchanged.
    with threadpoolctl.threadpool_limits(limits=2, user_api="blas"):
        with one_blas_thread():
            assert _blas_threads() == {1}
        assert _blas_threads() == {2}
        with threadpoolctl.threadpool_limits(limits=1, user_api="blas"):
            with one_blas_thread():
                assert _blas_threads() == {1}
            assert _blas_threads() == {1}
        assert _blas_threads() == {2}
