"""Shared settings and helpers of the property-based tests (test_properties_*.py)."""

import contextlib

from hypothesis import HealthCheck, settings

import crnn
from crnn import _engine

BAD = (ValueError, TypeError)

# The same examples on every run, no example database, and no deadline (the time
# of an example depends on the machine; the counts below keep the file fast).
_COMMON = dict(deadline=None, derandomize=True, database=None, print_blob=False,
               suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                      HealthCheck.filter_too_much])


def _settings(n):
    return settings(max_examples=n, **_COMMON)


# name -> (class, the reference's cell, nonlinearity, gates G)
CELLS = {
    "rnn_tanh": (crnn.RNN, "rnn", "tanh", 1),
    "rnn_relu": (crnn.RNN, "rnn", "relu", 1),
    "lstm": (crnn.LSTM, "lstm", "tanh", 4),
    "gru": (crnn.GRU, "gru", "tanh", 3),
}

# (rtol, atol); atol is scaled by the largest magnitude of the array compared.
TOL = {"float64": (1e-10, 1e-12), "float32": (3e-4, 3e-5)}


def _panel_width(kernel, dtype):
    """Columns of W_h per packed panel (_recurrent.h: NR = W·NV); the BLAS path
    splits units by 16 columns (_loops.pxi)."""
    if kernel == "blas":
        return 16
    width = {"sse2": 8, "avx2": 16, "avx512": 64}[kernel]
    return width if dtype == "float32" else width // 2


@contextlib.contextmanager
def _engine_state():
    """Restore crnn's thread count and every engine switch afterwards."""
    threads, kernel, level = crnn.get_num_threads(), _engine.kernel(), _engine.cell_level()
    try:
        yield
    finally:
        crnn.set_num_threads(threads)
        _engine.force_split(None)
        _engine.test_stall(0)
        _engine.set_kernel(kernel)
        _engine.set_cell_level(level)
        _engine.calm()


def _counted(fn, until):
    """fn()'s result and how the engine's counters moved while it ran.

    A machine event (a worker slow to wake, a core taken by another process)
    may rightly hand a loop to one thread: run again, up to 5 times, each
    time forgetting contention, until a run sees no stall and ``until(ran)``.
    """
    for _ in range(5):
        _engine.calm()
        before = _engine.counters()
        out = fn()
        after = _engine.counters()
        ran = {k: after[k] - before[k] for k in after}
        if ran["stalls"] == 0 and until(ran):
            break
    return out, ran
