"""crnn's default threads against one thread, with another CPU-bound process running.

The other process is a busy loop (``python -c "while True: pass"``), started
before the measurement and killed after. crnn alternates between its default
threads and one thread at every training step (forward, softmax
cross-entropy summed over T·B steps, BPTT, clip_grad_norm(5.0), SGD), so both
see the same machine; the ratio of the medians says whether the default is
ever slower than one thread. ``--idle`` runs the same without the busy loop.

Example::

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE PYTHONPATH=src \\
        python benchmarks/under_load.py --cells rnn lstm gru --sizes char small medium
"""

import argparse
import subprocess
import sys
import time

import numpy as np

import crnn
from crnn import _engine

import _steps


def measure(cell, size, seconds, default_threads):
    """Median seconds per step with the default threads and with one, interleaved."""
    net = _steps.Net(cell)
    params, x, target = _steps.make_problem(size, np.float32, net=net)
    runner = _steps.CrnnRunner(params, x, target, net=net)
    times = {default_threads: [], 1: []}
    before = _engine.counters()
    start, i = time.perf_counter(), 0
    while time.perf_counter() - start < seconds or i < 6:
        n = default_threads if i % 2 == 0 else 1
        crnn.set_num_threads(n)
        t0 = time.perf_counter()
        runner.train_step()
        times[n].append(time.perf_counter() - t0)
        i += 1
    after = _engine.counters()
    crnn.set_num_threads(default_threads)
    ran = {k: after[k] - before[k] for k in ("split_tasks", "degraded", "stalls", "contended")}
    return float(np.median(times[default_threads])), float(np.median(times[1])), i, ran


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", nargs="+", default=["rnn", "lstm", "gru"],
                        choices=tuple(_steps.CELLS))
    parser.add_argument("--sizes", nargs="+", default=["char", "small", "medium"],
                        choices=tuple(_steps.SIZES))
    parser.add_argument("--seconds", type=float, default=10.0,
                        help="per cell and size (default 10)")
    parser.add_argument("--idle", action="store_true", help="no busy loop")
    args = parser.parse_args(argv)
    default = crnn.get_num_threads()
    hog = None if args.idle else subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.5)
        print(f"crnn {crnn.__version__}, default threads {default}, "
              f"{'idle' if args.idle else 'one busy-loop process running'}; "
              f"medians of steps interleaved default / one thread, {args.seconds:g} s each")
        print(f"  {'cell':<6}{'size':<11}{'default ms':>12}{'1 thread ms':>13}"
              f"{'1 thread / default':>20}{'steps':>7}  split tasks, stalls, degraded loops, "
              f"verdicts of contention")
        for cell in args.cells:
            for size in args.sizes:
                d, o, n, ran = measure(cell, size, args.seconds, default)
                print(f"  {cell:<6}{size:<11}{d * 1e3:>12.4g}{o * 1e3:>13.4g}{o / d:>20.3f}"
                      f"{n:>7}  {ran['split_tasks']}, {ran['stalls']}, {ran['degraded']}, "
                      f"{ran['contended']}",
                      flush=True)
    finally:
        if hog is not None:
            hog.kill()


if __name__ == "__main__":
    main()
