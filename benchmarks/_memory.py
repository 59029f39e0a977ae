"""Peak memory of one step, measured in a fresh subprocess per library.

Each library gets its own interpreter so that nothing another library
allocated or cached is counted for it. In the child, after the weights and
inputs exist and two warm-up steps have run:

- RSS: the kernel's high-water mark (VmHWM) is reset through
  /proc/self/clear_refs, one step runs, and the peak is VmHWM minus the RSS
  just before the step. glibc is told to serve every block of 64 KiB or more
  with mmap (a fixed MALLOC_MMAP_THRESHOLD_), so memory freed by the warm-up
  steps goes back to the kernel instead of hiding the next step's
  allocations. Where clear_refs is not writable, RSS is not reported. The
  kernel's counters are approximate (per-CPU batches), so differences below
  a few hundred KiB are noise; a negative one is reported as 0.
- traced: tracemalloc's peak during another step, which counts numpy's data
  buffers (numpy reports them to tracemalloc) and Python objects, but not
  memory that a library allocates in C on its own (PyTorch's tensors).

Run as ``python _memory.py LIB SIZE DTYPE [--threads N] [--forward]``, SIZE
a name from ``_steps.SIZES`` or ``B,T,D,H,O``; it prints one JSON object.
"""

import argparse
import gc
import json
import os
import subprocess
import sys
import tracemalloc

import numpy as np

import _steps
import _worker

HERE = os.path.dirname(os.path.abspath(__file__))


def _status_kib(field):
    """A ``/proc/self/status`` field in KiB (VmRSS, VmHWM)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


def _reset_hwm():
    """Reset the RSS high-water mark to the current RSS; False if not permitted."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def child(lib, size_name, dtype, threads, forward_only, net=None):
    """Measure one library at one size in this process; return the result dict."""
    _worker.set_threads(threads, [lib])
    net = net or _steps.Net()
    params, x, target = _steps.make_problem(_steps.dims(size_name if size_name in _steps.SIZES
                                                      else size_name.split(",")), np.dtype(dtype),
                                            net=net)
    runner = _steps.RUNNERS[lib](params, x, target, net=net)
    step = runner.infer if forward_only else runner.train_step
    del params, x, target
    for _ in range(2):
        step()
    gc.collect()
    rss_peak = None
    if _reset_hwm():
        before = _status_kib("VmRSS")
        step()
        rss_peak = max(0, _status_kib("VmHWM") - before) * 1024
    gc.collect()
    tracemalloc.start()
    step()
    traced_peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    out = {"rss_peak": rss_peak, "traced_peak": traced_peak}
    engine = getattr(getattr(runner, "model", None), "_engine", None)
    if hasattr(engine, "workspace_bytes"):
        # crnn keeps one workspace per model, allocated by the first call and
        # reused: a step's growth above does not see it, so it is reported apart.
        out["workspace"] = engine.workspace_bytes
    return out


def measure(lib, size_name, dtype, threads=None, forward_only=False, net=None):
    """Run ``child`` in a fresh interpreter; return its result dict (sizes in bytes)."""
    net = net or _steps.Net()
    cmd = [sys.executable, os.path.join(HERE, "_memory.py"), lib, size_name, dtype,
           "--cell", net.cell, "--layers", str(net.layers)]
    if net.bidirectional:
        cmd.append("--bidirectional")
    if threads is not None:
        cmd += ["--threads", str(threads)]
    if forward_only:
        cmd.append("--forward")
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536")
    out = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    """Command-line entry of the child process."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("lib")
    parser.add_argument("size")
    parser.add_argument("dtype")
    parser.add_argument("--threads", type=int)
    parser.add_argument("--forward", action="store_true")
    parser.add_argument("--cell", default="rnn")
    parser.add_argument("--layers", type=int, default=1)
    parser.add_argument("--bidirectional", action="store_true")
    args = parser.parse_args()
    net = _steps.Net(args.cell, args.layers, args.bidirectional)
    print(json.dumps(child(args.lib, args.size, args.dtype, args.threads, args.forward, net)))


if __name__ == "__main__":
    main()
