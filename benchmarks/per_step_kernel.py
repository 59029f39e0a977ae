"""crnn's own per-step kernel against BLAS for the per-step products, in one process.

The per-step recurrent product (a few batch rows times W_h, T times per
layer and direction) runs in crnn's kernel (``_recurrent.h``: W_h packed once
per call for all T steps) or, with ``crnn._engine.set_kernel("blas")``, as one
BLAS call per step (gemv for one row). Everything else is the same. The two
alternate at every training step, so both see the same machine; the ratio of
the medians says where the kernel earns its place.

Example (setting (b))::

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE PYTHONPATH=src:benchmarks \\
        python benchmarks/per_step_kernel.py --cells rnn lstm gru
"""

import argparse
import time

import numpy as np

from crnn import _engine

import _steps


def measure(cell, size, seconds, kernel):
    """Median seconds per training step with ``kernel`` and with BLAS, interleaved."""
    net = _steps.Net(cell)
    params, x, target = _steps.make_problem(size, np.float32, net=net)
    runner = _steps.CrnnRunner(params, x, target, net=net)
    times = {kernel: [], "blas": []}
    start, i = time.perf_counter(), 0
    try:
        while time.perf_counter() - start < seconds or i < 6:
            which = kernel if i % 2 == 0 else "blas"
            _engine.set_kernel(which)
            t0 = time.perf_counter()
            runner.train_step()
            times[which].append(time.perf_counter() - t0)
            i += 1
    finally:
        _engine.set_kernel(kernel)
    return float(np.median(times[kernel])), float(np.median(times["blas"])), i


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", nargs="+", default=["rnn", "lstm", "gru"],
                        choices=tuple(_steps.CELLS))
    parser.add_argument("--sizes", nargs="+", default=list(_steps.SIZES),
                        choices=tuple(_steps.SIZES))
    parser.add_argument("--seconds", type=float, default=6.0,
                        help="per cell and size (default 6)")
    args = parser.parse_args(argv)
    kernel = _engine.kernel()
    if kernel == "blas":
        raise SystemExit("this build has no kernel of its own (CRNN_NO_KERNEL)")
    print(f"per-step products: crnn's kernel ({kernel}) against BLAS, training steps "
          f"interleaved, medians, {args.seconds:g} s each")
    print(f"  {'cell':<6}{'size':<11}{'kernel ms':>11}{'BLAS ms':>10}{'BLAS / kernel':>15}"
          f"{'steps':>7}")
    for cell in args.cells:
        for size in args.sizes:
            if cell != "rnn" and size == "deepbench":
                continue
            k, b, n = measure(cell, size, args.seconds, kernel)
            print(f"  {cell:<6}{size:<11}{k * 1e3:>11.4g}{b * 1e3:>10.4g}{b / k:>15.3f}{n:>7}",
                  flush=True)


if __name__ == "__main__":
    main()
