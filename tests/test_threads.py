"""BLAS thread scopes: ``tcur._threads.one_blas_thread`` limits every loaded BLAS to one thread
for thin factorizations and the sparse engine, and restores what was there (it acts process-wide
while active, so only from the main thread)."""

from __future__ import annotations

import os
import subprocess
import sys

import threadpoolctl

from tcur._threads import one_blas_thread


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


_WORKER_SCOPES = """
import threading
import numpy as np
import threadpoolctl
from tcur._threads import one_blas_thread

def blas():
    return {i["num_threads"] for i in threadpoolctl.threadpool_info() if i["user_api"] == "blas"}

found, seen = blas(), []
for _ in range(10):
    barrier = threading.Barrier(4)

    def work():
        barrier.wait(10)
        for _ in range(20):
            with one_blas_thread():
                np.linalg.qr(np.ones((20, 3)))
                seen.append(blas())

    workers = [threading.Thread(target=work) for _ in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(20)
    assert blas() == found, (blas(), found)
assert len(seen) == 800 and all(threads == found for threads in seen), found
"""


def test_scopes_in_other_threads_change_nothing_and_leave_the_setting_as_found() -> None:
    # In a fresh process (where the main thread never set a limit, so a worker's limit would act
    # process-wide), threads entering scopes together used to leave a BLAS at one thread for
    # good; outside the main thread a scope now keeps the process's setting.
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "2", "OMP_NUM_THREADS": "2"}
    done = subprocess.run(
        [sys.executable, "-c", _WORKER_SCOPES], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
