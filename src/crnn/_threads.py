"""How many threads crnn's own time loops use.

The recurrent steps of a forward pass and of BPTT are split over crnn's own
worker threads (BLAS's threads run the large products between them). The
default is the number of CPUs this process may run on, or the environment
variable ``CRNN_NUM_THREADS`` when it is set.
"""

import os

from crnn import _elman


def _cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _check(n: object, name: str) -> int:
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"{name} must be a positive integer, got {n!r}")
    return n


_num_threads = 1


def set_num_threads(n: int) -> None:
    """Use ``n`` threads (a positive int) in crnn's time loops; 1 runs them on the caller's thread.

    This does not change BLAS's own thread count (use threadpoolctl for that).
    """
    global _num_threads
    _num_threads = _check(n, "n")
    _elman._set_num_threads(_num_threads)


def get_num_threads() -> int:
    """The number of threads crnn's time loops use."""
    return _num_threads


def _default() -> int:
    env = os.environ.get("CRNN_NUM_THREADS", "").strip()
    if not env:
        return _cpu_count()
    try:
        return _check(int(env), "CRNN_NUM_THREADS")
    except ValueError:
        raise ValueError(
            f"CRNN_NUM_THREADS must be a positive integer, got {env!r}") from None


set_num_threads(_default())
