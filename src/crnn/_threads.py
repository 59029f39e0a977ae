"""How many threads crnn uses, and the BLAS thread control behind it.

A call into the engine splits its work (blocks of the large products, the
time loops, the pointwise passes) over crnn's own worker threads, each
block one single-threaded BLAS call; during the call the BLAS is held at one
thread (``_blasthreads.h`` says why). The threads used are the smallest of
:func:`set_num_threads`'s value and the BLAS's own thread count, so
threadpoolctl's ``threadpool_limits`` (and ``OPENBLAS_NUM_THREADS``) limit
crnn too. The default is the number of CPUs this process may run on, or the
environment variable ``CRNN_NUM_THREADS`` when it is set.
"""

import glob
import os

from crnn import _engine

# (get, set) thread-count functions of the BLAS libraries scipy may be built on.
_BLAS_CONTROLS = (
    ("scipy_openblas_get_num_threads", "scipy_openblas_set_num_threads"),
    ("scipy_openblas_get_num_threads64_", "scipy_openblas_set_num_threads64_"),
    ("openblas_get_num_threads", "openblas_set_num_threads"),
    ("openblas_get_num_threads64_", "openblas_set_num_threads64_"),
    ("MKL_Get_Max_Threads", "MKL_Set_Num_Threads"),
)


def _cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _find_blas_control():
    """Addresses of the get/set thread functions of the BLAS that
    scipy.linalg.cython_blas calls, or (0, 0) when it has none crnn knows."""
    import ctypes
    from scipy.linalg import cython_blas  # type: ignore[import-untyped]

    # dlsym on cython_blas's own handle searches the libraries it links: exactly its BLAS.
    candidates = [cython_blas.__file__]
    # Windows' GetProcAddress searches one DLL only: look where scipy's wheels put theirs.
    scipy_dir = os.path.dirname(os.path.dirname(os.path.abspath(cython_blas.__file__)))
    for folder in (os.path.join(os.path.dirname(scipy_dir), "scipy.libs"),
                   os.path.join(scipy_dir, ".libs"), os.path.join(scipy_dir, ".dylibs")):
        candidates += sorted(glob.glob(os.path.join(folder, "*openblas*")))
    for path in candidates:
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for get, set_ in _BLAS_CONTROLS:
            try:
                fget, fset = getattr(lib, get), getattr(lib, set_)
            except AttributeError:
                continue
            return (ctypes.cast(fget, ctypes.c_void_p).value,
                    ctypes.cast(fset, ctypes.c_void_p).value)
    return 0, 0


def _check(n: object, name: str) -> int:
    if isinstance(n, bool) or not isinstance(n, int):
        raise TypeError(f"{name}: expected a positive integer, got {n!r} "
                        f"of type {type(n).__name__}")
    if n < 1:
        raise ValueError(f"{name}: expected a positive integer, got {n!r}")
    return n


_num_threads = 1
_user_choice = False     # set_num_threads was called, or CRNN_NUM_THREADS is set


def _chosen() -> bool:
    return _user_choice


def _set(n: int) -> None:
    global _num_threads
    n = min(n, _cpu_count(), _engine.max_threads())
    _engine.set_num_threads(n)
    _num_threads = n


def set_num_threads(n: int) -> None:
    """Use up to ``n`` threads (a positive int) in every computation; 1 runs on the caller's thread.

    ``n`` is capped at the CPUs this process may run on. The threads really
    used are at most the BLAS's own thread count too (threadpoolctl's
    ``threadpool_limits`` and ``OPENBLAS_NUM_THREADS`` limit crnn as well).
    Under load from other processes crnn falls back to one thread for a
    while, and tries again later.
    """
    global _user_choice
    _set(_check(n, "n"))
    _user_choice = True


def get_num_threads() -> int:
    """The number of threads crnn may use (see :func:`set_num_threads`)."""
    return _num_threads


def _default() -> int:
    env = os.environ.get("CRNN_NUM_THREADS", "").strip()
    if not env:
        return _cpu_count()
    try:
        return _check(int(env), "CRNN_NUM_THREADS")
    except (TypeError, ValueError):
        raise ValueError(
            f"CRNN_NUM_THREADS must be a positive integer, got {env!r}") from None


_engine.set_blas_control(*_find_blas_control())
_set(_default())
_user_choice = bool(os.environ.get("CRNN_NUM_THREADS", "").strip())
