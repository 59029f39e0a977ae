"""One library in a process of its own, driven by bench_train over a pipe.

Each benchmarked library runs in its own interpreter, as it would in a
user's program: its BLAS and OpenMP thread pools, its allocator state and
whatever CPU state it sets are its own. Run in one process, the libraries
disturb each other — PyTorch's presence alone moved the numpy step by 30%
and made crnn's times bimodal at size "small" on a 2-core machine.

Started as ``python _worker.py LIB DTYPE [--threads N] [--forward]``; then
one JSON object per line each way. Commands and their replies:

- ``{"cmd": "load", "size": NAME, "net": {...}}``: build LIB's runner for a
  size (a name from ``_steps.SIZES``, or a list ``[B, T, D, H, O]``) and a
  network (``_steps.Net``'s fields: cell, layers, bidirectional).
- ``{"cmd": "warmup", "calls": N, "seconds": S}`` → ``{"best": s}``: run the
  step at least N times and for at least S seconds; the fastest call.
- ``{"cmd": "sample", "steps": N}`` → ``{"time": s}``: N back-to-back steps
  (garbage collector off); the mean time per step.
- ``{"cmd": "quiesce"}`` → ``{"waited": s}``: see ``quiesce``.
- ``{"cmd": "gemm", "via": "scipy"|"numpy"|"torch"|"jax", "n": N}`` → ``{"time": s}``:
  one N×N·N×N product through that library's BLAS.
- ``{"cmd": "quit"}``.

Every reply also carries ``"cpu"``, this process's CPU seconds so far, so
that the parent can tell its workers' CPU use from other processes'. A
failure replies ``{"error": traceback}``.
"""

import argparse
import gc
import importlib
import json
import sys
import time
import traceback

import numpy as np

import _jax_rnn
import _steps

QUIESCE_LIMIT = 2.0  # seconds: give up waiting for idle threads after this


def set_threads(threads, libraries):
    """Import ``libraries`` and scipy's BLAS, then limit their threads to ``threads``.

    threadpoolctl only sees libraries already loaded, hence the imports first.
    ``None`` leaves every default. Returns a list of warnings.
    """
    if "jax" in libraries:
        _jax_rnn.limit_threads(threads)  # before jax is imported (XLA_FLAGS, CPU affinity)
    importlib.import_module("scipy.linalg.blas")  # loads scipy's BLAS, the one crnn calls
    modules = {lib: _steps.available(lib) for lib in libraries}
    if threads is None:
        return []
    warnings = []
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        warnings.append("threadpoolctl is not installed: BLAS threads left at their defaults")
    else:
        threadpool_limits(limits=threads)
    torch = modules.get("torch")
    if torch is not None and not isinstance(torch, str):
        torch.set_num_threads(threads)
    for name in ("crnn", "crnn_base"):
        crnn = modules.get(name)
        if crnn is not None and not isinstance(crnn, str):
            crnn.set_num_threads(threads)  # crnn's own threads (they run its BLAS calls)
    return warnings


def quiesce(limit=QUIESCE_LIMIT):
    """Wait until this process's threads are idle: < 10% of a CPU over a 10 ms window.

    After its last call a BLAS or OpenMP pool keeps its workers spinning for
    a while (OpenBLAS about 0.1 s); on a 2-core machine they would slow down
    whatever runs next. Returns the seconds waited, or None if the process
    was still busy after ``limit`` seconds.
    """
    start = time.perf_counter()
    while time.perf_counter() - start < limit:
        cpu = time.process_time()
        time.sleep(0.01)
        if time.process_time() - cpu < 0.001:
            return time.perf_counter() - start
    return None


class _Gemm:
    """Square products through scipy's, numpy's or PyTorch's BLAS, on cached operands."""

    def __init__(self, dtype):
        self.dtype = dtype
        self.cache = {}

    def __call__(self, via, n):
        """Time one n×n·n×n product through ``via``; seconds."""
        key = (via, n)
        if key not in self.cache:
            self.cache = {key: self._make(via, n)}
        f = self.cache[key]
        t0 = time.perf_counter()
        f()
        return time.perf_counter() - t0

    def _make(self, via, n):
        rng = np.random.default_rng(0)
        a, b = (rng.standard_normal((n, n)).astype(self.dtype) for _ in range(2))
        if via == "scipy":
            from scipy.linalg import blas

            gemm = blas.sgemm if self.dtype == np.float32 else blas.dgemm
            a, b = np.asfortranarray(a), np.asfortranarray(b)
            c = np.zeros((n, n), dtype=self.dtype, order="F")
            return lambda: gemm(1.0, a, b, beta=0.0, c=c, overwrite_c=True)
        if via == "jax":
            return _jax_rnn.gemm(a, b)
        if via == "numpy":
            c = np.empty((n, n), dtype=self.dtype)
            return lambda: np.matmul(a, b, out=c)
        import torch

        ta, tb = torch.from_numpy(a), torch.from_numpy(b)
        tc = torch.empty((n, n), dtype=ta.dtype)
        return lambda: torch.mm(ta, tb, out=tc)


def serve(lib, dtype, forward_only, stdin=sys.stdin, stdout=sys.stdout):
    """Answer the parent's commands until "quit" or end of input."""
    step = None
    gemm = _Gemm(dtype)

    def reply(**fields):
        fields["cpu"] = time.process_time()
        stdout.write(json.dumps(fields) + "\n")
        stdout.flush()

    reply(ready=True)
    for line in stdin:
        msg = json.loads(line)
        cmd = msg["cmd"]
        try:
            if cmd == "quit":
                return
            if cmd == "load":
                step = None
                net = _steps.Net(**msg.get("net", {}))
                params, x, target = _steps.make_problem(_steps.dims(msg["size"]), dtype, net=net)
                runner = _steps.RUNNERS[lib](params, x, target, net=net)
                step = runner.infer if forward_only else runner.train_step
                reply()
            elif cmd == "warmup":
                best, calls, start = float("inf"), 0, time.perf_counter()
                while calls < msg["calls"] or time.perf_counter() - start < msg["seconds"]:
                    t0 = time.perf_counter()
                    step()
                    best = min(best, time.perf_counter() - t0)
                    calls += 1
                reply(best=best)
            elif cmd == "sample":
                n = msg["steps"]
                gc.collect()
                gc.disable()
                try:
                    t0 = time.perf_counter()
                    for _ in range(n):
                        step()
                    elapsed = time.perf_counter() - t0
                finally:
                    gc.enable()
                reply(time=elapsed / n)
            elif cmd == "quiesce":
                reply(waited=quiesce())
            elif cmd == "gemm":
                reply(time=gemm(msg["via"], msg["n"]))
            else:
                raise ValueError(f"unknown command {cmd!r}")
        except Exception:
            reply(error=traceback.format_exc())


def main():
    """Command-line entry of the worker process."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("lib", choices=_steps.LIBRARIES)
    parser.add_argument("dtype", choices=("float32", "float64"))
    parser.add_argument("--threads", type=int)
    parser.add_argument("--forward", action="store_true")
    args = parser.parse_args()
    set_threads(args.threads, [args.lib])
    channel, sys.stdout = sys.stdout, sys.stderr  # stray prints must not corrupt the channel
    serve(args.lib, np.dtype(args.dtype), args.forward, stdout=channel)


if __name__ == "__main__":
    main()
