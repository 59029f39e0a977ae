# Interrupts: a long call stops within a fraction of a second of Ctrl-C (or
# any signal whose Python handler raises), between chunks of time steps.
# Python runs signal handlers only in the main thread and only with the GIL;
# a call takes the GIL for a moment at most every
# _CHECK_EVERY seconds to run them. The handler's exception is kept, the call
# stops at the next boundary between regions (the pool is idle there, so
# its threads stay usable) and the exception is raised when the call returns.

from cpython.exc cimport PyErr_CheckSignals

cdef extern from *:
    """
    #if defined(_WIN32)
    #include <windows.h>
    static double crnn_seconds(void)
    {
        LARGE_INTEGER t, f;
        QueryPerformanceCounter(&t);
        QueryPerformanceFrequency(&f);
        return (double)t.QuadPart / (double)f.QuadPart;
    }
    #else
    #include <time.h>
    static double crnn_seconds(void)
    {
        struct timespec t;
        clock_gettime(CLOCK_MONOTONIC, &t);
        return t.tv_sec + t.tv_nsec * 1e-9;
    }
    #endif
    """
    double crnn_seconds() nogil

cdef double _CHECK_EVERY = 0.05     # seconds
# Work of one chunk of a time loop (flops of the per-step products): 10-50 ms
# at the kernel's rates, so that a check is never far off, while the loops of
# every benchmark size but the largest run in one chunk, and those in chunks
# of 18 steps or more (one task of the pool each: microseconds).
cdef double _CHUNK_FLOPS = 1e10
cdef object _pending = None         # the exception a signal handler raised
cdef unsigned long _chunks_run = 0  # for tests: chunks of time loops run


cdef bint _signal_raised() noexcept:
    """Run Python's signal handlers (with the GIL); True when one raised."""
    global _pending
    try:
        PyErr_CheckSignals()
    except BaseException as exc:
        _pending = exc
        return True
    return False


cdef bint _interrupted(Call* c) noexcept nogil:
    """True when the call must stop (a signal handler raised, now or earlier)."""
    cdef double now
    if c.abort or not c.check_signals:
        return c.abort
    now = crnn_seconds()
    if now - c.checked_at < _CHECK_EVERY:
        return False
    c.checked_at = now
    with gil:
        c.abort = _signal_raised()
    return c.abort


cdef int _start_checks(Call* c) except -1:
    """Before a call: look for signals, not at once. Python runs handlers in the main
    thread only (PyErr_CheckSignals does nothing elsewhere), so a call from another
    thread just takes the GIL for a moment now and then: asking which thread this
    is would cost a Python call on every engine call."""
    c.check_signals = True
    c.checked_at = crnn_seconds()
    c.abort = False
    return 0


cdef int _raise_if_interrupted(Call* c) except -1:
    """After a call: raise what a signal handler raised during it."""
    global _pending
    if c.abort:
        exc, _pending = _pending, None
        raise exc
    return 0
