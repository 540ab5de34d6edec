"""BLAS thread scopes: every loaded BLAS limited to one thread for a block of work, restored after.

The limits act process-wide (threadpoolctl), so only the main thread sets them. From other Python
threads they are unsafe: two threads that each limit and restore can interleave so that the
second saves the first one's limit as "the original" and restores it last, leaving the process at
one BLAS thread for good (measured here: two threads entering a scope together left one OpenBLAS
at one thread within 20 tries); and the OpenBLAS of NumPy 2.4 (0.3.31) ignores a thread count set
from another thread once the main thread has set one, so a restore from a worker thread can be
lost. A scope opened outside the main thread therefore changes nothing: its thin factorizations
run with the process's BLAS threads, slower on some machines but never leaving a changed setting
behind.
"""

from __future__ import annotations

import contextlib
import threading
from typing import Any

_CONTROLLER: list[Any] = []


def one_blas_thread() -> contextlib.AbstractContextManager[Any]:
    """Context in which every loaded BLAS uses one thread (threadpoolctl), restored after it.

    For work whose BLAS calls are all thin (:func:`tcur._backend.thin_factorization`) or that runs
    mostly outside BLAS: the scipy.sparse product engine, whose sparse products are
    single-threaded and whose dense steps are thin blocks. There, idle BLAS threads only cost: in a
    fresh process at two threads a 4,000 x 800 sparse ``decompose`` took 100 ms instead of 5 ms,
    its sparse products 20x slower than alone. Nothing changes when BLAS already runs one thread,
    or outside the main thread (see :mod:`tcur._threads`).

    Examples
    --------
    >>> import numpy as np
    >>> from tcur._threads import one_blas_thread
    >>> with one_blas_thread():
    ...     q, r = np.linalg.qr(np.ones((4, 2)))
    """
    if threading.current_thread() is not threading.main_thread():
        return contextlib.nullcontext()
    if not _CONTROLLER:
        import threadpoolctl  # deferred: it inspects the loaded libraries once

        _CONTROLLER.append(threadpoolctl.ThreadpoolController().select(user_api="blas"))
    controller = _CONTROLLER[0]
    if all(lib.num_threads <= 1 for lib in controller.lib_controllers):
        return contextlib.nullcontext()  # already one thread: a query costs ~1 us, a scope ~16
    return controller.limit(limits=1)
