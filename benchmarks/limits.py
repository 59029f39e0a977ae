"""Measure what bounds crnn's float32 training step where a target of the issue is missed.

Three measurements, each in this one process (run it once per BLAS setting):

1. ``char`` breakdown: crnn's full step (loss_and_grad + clip_grad_norm +
   SGD) against the compiled engine alone (``crnn._engine.Engine.loss`` called
   with the very arguments the facade passes it), the facade's
   ``loss_and_grad``, ``clip_grad_norm`` and ``SGD.step``; and the FLOP-bound
   floor of the step: its FLOPs over one core's peak sgemm rate.
2. The BLAS-version gap: the matrix products of one training step, in the
   shapes and transpose flags crnn passes (row-major products mapped onto
   column-major sgemm as in src/crnn/_blas.pxd), timed through scipy's BLAS
   (``scipy.linalg.blas.sgemm``, the library crnn calls) and through numpy's
   (``np.matmul``), interleaved, each timed loop once this process's
   threads are idle; the Python call overhead of each path,
   measured on a 1×1×1 product, is subtracted. Summed over a step (T forward
   and T backward per-step products plus six whole-sequence products).
3. The peak sgemm rate (4096²) with the default threads and with one.

Example::

    PYTHONPATH=src python benchmarks/limits.py --sizes medium large deepbench
"""

import argparse
import gc
import json
import os
import sys
import time

import numpy as np
from scipy.linalg import blas
from threadpoolctl import threadpool_info, threadpool_limits

import _steps
import _worker

ROUNDS = 5


def _interleaved(fs, seconds=0.05):
    """Seconds per call of each function: median over ROUNDS loops of ~``seconds`` each.

    The functions alternate round by round, each loop after this process's
    threads are idle (two BLAS libraries in one process: one's spinning
    threads would slow the other down on 2 cores).
    """
    for f in fs:
        f()
    ns = []
    for f in fs:
        t0, n = time.perf_counter(), 0
        while time.perf_counter() - t0 < seconds / 5:
            f()
            n += 1
        ns.append(max(1, n * 5))
    times = [[] for _ in fs]
    gc.disable()
    try:
        for _ in range(ROUNDS):
            for f, n, out in zip(fs, ns, times):
                _worker.quiesce()  # the other BLAS's threads spin after its last call
                t0 = time.perf_counter()
                for _ in range(n):
                    f()
                out.append((time.perf_counter() - t0) / n)
    finally:
        gc.enable()
    return [float(np.median(t)) for t in times]


def peak_sgemm(n=4096, threads=None):
    """GFLOP/s of scipy's sgemm on n×n·n×n, median of 3 after a warm-up."""
    a, b = (np.asfortranarray(np.random.default_rng(0).standard_normal((n, n)), np.float32)
            for _ in range(2))
    c = np.zeros((n, n), np.float32, order="F")
    with threadpool_limits(limits=threads):
        blas.sgemm(1.0, a, b, beta=0.0, c=c, overwrite_c=True)
        times = []
        for _ in range(3):
            t0 = time.perf_counter()
            blas.sgemm(1.0, a, b, beta=0.0, c=c, overwrite_c=True)
            times.append(time.perf_counter() - t0)
    return 2 * n ** 3 / float(np.median(times)) / 1e9


class _Spy:
    """Stands in for a model's engine and records the arguments of its calls to ``loss``."""

    def __init__(self, engine):
        self.engine, self.calls = engine, []

    def __getattr__(self, name):
        return getattr(self.engine, name)

    def loss(self, *args):
        self.calls.append(args)
        return self.engine.loss(*args)


def char_breakdown():
    """Times (seconds) of crnn's step and its parts at size char, float32."""
    import crnn

    params, x, target = _steps.make_problem(_steps.SIZES["char"], np.float32)
    runner = _steps.CrnnRunner(params, x, target)
    engine = runner.model._engine
    spy = runner.model._engine = _Spy(engine)
    try:
        _, grads, _ = runner.model.loss_and_grad(runner.x, runner.target, reduction="sum")
    finally:
        runner.model._engine = engine
    args = spy.calls[0]
    kernel = engine.loss
    grads_copy = {k: v.copy() for k, v in grads.items()}
    sgd = crnn.SGD({k: v.copy() for k, v in runner.model.params.items()}, 1e-3)
    parts = {
        "full step": runner.train_step,
        "RNN.loss_and_grad": lambda: runner.model.loss_and_grad(runner.x, runner.target,
                                                                reduction="sum"),
        "engine Engine.loss": lambda: kernel(*args),
        "clip_grad_norm": lambda: crnn.clip_grad_norm(grads_copy, _steps.MAX_NORM),
        "SGD.step": lambda: sgd.step(grads_copy),
    }
    return dict(zip(parts, _interleaved(list(parts.values()))))


def step_products(size):
    """(label, count, m, n, k, trans_a, trans_b): row-major products of one training step."""
    B, T, D, H, O = _steps.dims(size)
    TB = T * B
    return [
        ("h·W_hᵀ per step (forward)", T, B, H, H, False, True),
        ("dA·W_h per step (backward)", T, B, H, H, False, False),
        ("X·W_xᵀ", 1, TB, H, D, False, True),
        ("Hs·W_yᵀ", 1, TB, O, H, False, True),
        ("dZᵀ·Hs (dW_y)", 1, O, H, TB, True, False),
        ("dZ·W_y", 1, TB, H, O, False, False),
        ("dAᵀ·Hs (dW_h)", 1, H, H, TB, True, False),
        ("dAᵀ·X (dW_x)", 1, H, D, TB, True, False),
    ]


def _operands(m, n, k, ta, tb, rng):
    """Row-major A, B (as stored) and C for C(m×n) = op(A)·op(B)."""
    A = rng.standard_normal((k, m) if ta else (m, k)).astype(np.float32)
    Bm = rng.standard_normal((n, k) if tb else (k, n)).astype(np.float32)
    return A, Bm, np.zeros((m, n), np.float32)


def _scipy_call(A, Bm, C, ta, tb):
    """crnn's call: row-major C = op(A)·op(B) as column-major Cᵀ = op(B)ᵀ·op(A)ᵀ, no copies."""
    a, b, c = Bm.T, A.T, C.T  # F-contiguous views of the row-major buffers
    return lambda: blas.sgemm(1.0, a, b, beta=0.0, c=c, overwrite_c=True,
                              trans_a=int(tb), trans_b=int(ta))


def _numpy_call(A, Bm, C, ta, tb):
    a, b = (A.T if ta else A), (Bm.T if tb else Bm)
    return lambda: np.matmul(a, b, out=C)


def blas_gap(size):
    """Per-step GEMM time through scipy's and numpy's BLAS (seconds, overhead subtracted)."""
    rng = np.random.default_rng(0)
    tiny = _operands(1, 1, 1, False, False, rng)
    over_s, over_n = _interleaved([_scipy_call(*tiny, False, False),
                                   _numpy_call(*tiny, False, False)], seconds=0.02)
    rows, total = [], {"scipy": 0.0, "numpy": 0.0}
    for label, count, m, n, k, ta, tb in step_products(size):
        ops = _operands(m, n, k, ta, tb, rng)
        ts, tn = _interleaved([_scipy_call(*ops, ta, tb), _numpy_call(*ops, ta, tb)])
        ts, tn = max(0.0, ts - over_s), max(0.0, tn - over_n)
        rows.append({"product": label, "count": count, "m": m, "n": n, "k": k,
                     "scipy_us": ts * 1e6, "numpy_us": tn * 1e6})
        total["scipy"] += count * ts
        total["numpy"] += count * tn
    return {"size": size, "overhead_us": {"scipy": over_s * 1e6, "numpy": over_n * 1e6},
            "products": rows, "step_ms": {k: v * 1e3 for k, v in total.items()},
            "flops": _steps.step_flops(size)}


def main(argv=None):
    """Run the measurements, print them, optionally write JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", default=["medium", "large", "deepbench"],
                        help="sizes for the BLAS-version gap (default: medium large deepbench)")
    parser.add_argument("--json", metavar="PATH")
    args = parser.parse_args(argv)
    __import__("crnn")  # loads everything threadpoolctl should list

    env = {k: v for k, v in os.environ.items() if k.startswith("OPENBLAS_")}
    pools = [(p.get("internal_api"), p.get("version"), p.get("architecture"),
              p.get("num_threads"), os.path.basename(p["filepath"])) for p in threadpool_info()]
    print("environment:", " ".join(f"{k}={v}" for k, v in env.items()) or "OPENBLAS_* unset")
    for p in pools:
        print("BLAS:", *p)
    out = {"env": env, "blas": pools}

    peak2, peak1 = peak_sgemm(), peak_sgemm(threads=1)
    out["peak_sgemm_gflops"] = {"default threads": peak2, "1 thread": peak1}
    print(f"\npeak sgemm 4096² (scipy): {peak2:.1f} GFLOP/s default threads, "
          f"{peak1:.1f} GFLOP/s one thread")

    char = char_breakdown()
    flops = _steps.step_flops("char")
    out["char"] = {"seconds": char, "flops": flops, "floor_1core_s": flops / (peak1 * 1e9)}
    print(f"\n== char, crnn float32: median µs per call ({flops / 1e6:.2f} MFLOP per step; "
          f"FLOP-bound floor on one core at {peak1:.0f} GFLOP/s: "
          f"{flops / peak1 / 1e3:.1f} µs)")
    full = char["full step"]
    for part, t in char.items():
        print(f"  {part:<30}{t * 1e6:>9.2f} µs {100 * t / full:>6.1f}% of the step")

    out["gap"] = []
    for size in args.sizes:
        g = blas_gap(size)
        out["gap"].append(g)
        B, T, D, H, O = _steps.dims(size)
        print(f"\n== {size} (B={B} T={T} D={D} H={H} O={O}): one step's products, µs per "
              f"call (Python call overhead subtracted: scipy "
              f"{g['overhead_us']['scipy']:.2f}, numpy {g['overhead_us']['numpy']:.2f} µs)")
        print(f"  {'product':<28}{'count':>6}{'m×n×k':>18}{'scipy 0.3.30':>14}"
              f"{'numpy 0.3.31':>14}{'scipy/numpy':>13}")
        for r in g["products"]:
            shape = f"{r['m']}×{r['n']}×{r['k']}"
            ratio = r["scipy_us"] / r["numpy_us"] if r["numpy_us"] else float("nan")
            print(f"  {r['product']:<28}{r['count']:>6}{shape:>18}{r['scipy_us']:>14.1f}"
                  f"{r['numpy_us']:>14.1f}{ratio:>13.3f}")
        s, n = g["step_ms"]["scipy"], g["step_ms"]["numpy"]
        print(f"  step total: scipy {s:.2f} ms ({g['flops'] / s / 1e6:.0f} GFLOP/s), numpy "
              f"{n:.2f} ms ({g['flops'] / n / 1e6:.0f} GFLOP/s); scipy/numpy {s / n:.3f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)
        print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
