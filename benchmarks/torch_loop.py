"""A plain PyTorch training loop with ``torch.nn.LSTM`` against the same loop with
``crnn.torch.LSTM``: one changed import.

The loop is what a PyTorch user writes: an LSTM (or GRU, RNN: ``--cell``),
a ``torch.nn.Linear`` head on every step, ``cross_entropy`` over all T·B
steps, ``loss.backward()``, ``clip_grad_norm_(5.0)``, ``torch.optim.SGD``
(``--optimizer adam`` for Adam), float32, default threads. The two modules
start from the same weights (``torch.manual_seed`` before building either),
and the first losses of the two are printed side by side as a check.

Each library runs in a fresh process of its own, alternating
(torch, crnn, crnn passive, torch, ...) over ``--rounds``; a process warms
up, then times samples of back-to-back steps (each lasting at least
``SAMPLE`` seconds). Reported: the median over every sample of every round,
the interquartile range, and torch.nn's median over crnn.torch's.

PyTorch's OpenMP threads spin for milliseconds after each of PyTorch's
parallel operations (the head, the loss, the optimizer), on the cores crnn's
threads need next. Besides the two plain loops, each in its own processes:
"crnn passive", crnn.torch with ``OMP_WAIT_POLICY=PASSIVE`` (no spinning);
"crnn 1 thread", with ``torch.set_num_threads(1)`` (PyTorch's own operations
on one thread; crnn's threads unchanged); and both loops with
``GOMP_SPINCOUNT=10000`` (a spin of ~0.2 ms instead of ~5), set before
PyTorch's OpenMP runtime loads, as a user sets it in the environment.

Example (setting (b), what users have)::

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE PYTHONPATH=src \\
        python benchmarks/torch_loop.py --sizes char small medium large
"""

import argparse
import json
import os
import platform
import subprocess
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import _steps  # noqa: E402

SAMPLE = 0.05       # seconds per sample
WARMUP = 0.3        # seconds of warm-up steps (and at least 3)


def worker(lib, cell, size, samples, optimizer):
    """Time the loop in this process; print one JSON line."""
    import torch
    if os.environ.get("_TORCH_LOOP_THREADS"):
        torch.set_num_threads(int(os.environ["_TORCH_LOOP_THREADS"]))
    if lib == "crnn":
        import crnn.torch as nn_rnn
    else:
        nn_rnn = torch.nn
    B, T, D, H, O = _steps.dims(size)
    torch.manual_seed(0)
    rnn = {"lstm": nn_rnn.LSTM, "gru": nn_rnn.GRU, "rnn": nn_rnn.RNN}[cell](D, H)
    head = torch.nn.Linear(H, O)
    params = list(rnn.parameters()) + list(head.parameters())
    opt = torch.optim.SGD(params, lr=1e-3) if optimizer == "sgd" else \
        torch.optim.Adam(params, lr=1e-3)
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(T, B, D, generator=gen)
    y = torch.randint(0, O, (T, B), generator=gen)

    def step():
        opt.zero_grad()
        out, _ = rnn(x)
        loss = torch.nn.functional.cross_entropy(head(out).reshape(T * B, O), y.reshape(-1))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 5.0)
        opt.step()
        return loss.item()

    first = step()
    start, n = time.perf_counter(), 0
    while n < 3 or time.perf_counter() - start < WARMUP:
        step()
        n += 1
    times = []
    for _ in range(samples):
        t0, k = time.perf_counter(), 0
        while k == 0 or time.perf_counter() - t0 < SAMPLE:
            step()
            k += 1
        times.append((time.perf_counter() - t0) / k)
    print(json.dumps({"first_loss": first, "times": times,
                      "threads": torch.get_num_threads()}))


SPIN = {"GOMP_SPINCOUNT": "10000"}
# column: (worker, environment); "torch" first, the one the others are compared with.
LIBS = {"torch": ("torch", {}), "crnn": ("crnn", {}),
        "crnn passive": ("crnn", {"OMP_WAIT_POLICY": "PASSIVE"}),
        "crnn 1 thread": ("crnn", {"_TORCH_LOOP_THREADS": "1"}),
        "torch spin 1e4": ("torch", SPIN), "crnn spin 1e4": ("crnn", SPIN)}


def run(lib, cell, size, samples, optimizer):
    worker_lib, env = LIBS[lib]
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", worker_lib, "--cell", cell,
           "--sizes", size, "--samples", str(samples), "--optimizer", optimizer]
    out = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, **env})
    if out.returncode:
        sys.exit(f"{lib} {size} failed:\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", nargs="+", default=["char", "small", "medium", "large"])
    p.add_argument("--cell", choices=("lstm", "gru", "rnn"), default="lstm")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--samples", type=int, default=7)
    p.add_argument("--optimizer", choices=("sgd", "adam"), default="sgd")
    p.add_argument("--worker", choices=("torch", "crnn"))
    p.add_argument("--json", help="also write the results here")
    args = p.parse_args(argv)
    if args.worker:
        return worker(args.worker, args.cell, args.sizes[0], args.samples, args.optimizer)
    import torch
    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"Python {platform.python_version()}, torch {torch.__version__}, numpy "
          f"{np.__version__}; OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE', '(unset)')}"
          f" OPENBLAS_L2_SIZE={os.environ.get('OPENBLAS_L2_SIZE', '(unset)')}")
    print(f"# {args.cell.upper()} training loop, float32, {args.optimizer}, default threads; "
          f"ms per step, median [IQR] over {args.rounds} processes × {args.samples} samples")
    print(f"{'size (B, T, D, H, O)':<34} " + " ".join(f"{lib:>20}" for lib in LIBS) +
          "  ratios to torch (same environment for 'spin')")
    results = {}
    for size in args.sizes:
        got = {lib: [] for lib in LIBS}
        first = {}
        for _ in range(args.rounds):
            for lib in LIBS:
                r = run(lib, args.cell, size, args.samples, args.optimizer)
                got[lib] += r["times"]
                first[lib] = r["first_loss"]
        stats = {lib: np.percentile(np.array(t) * 1e3, [25, 50, 75]) for lib, t in got.items()}
        cols = [f"{s[1]:9.3f} [{s[0]:.3g}-{s[2]:.3g}]" for s in stats.values()]
        # Each crnn column against torch.nn in the same environment.
        ratios = {lib: stats["torch spin 1e4" if "spin" in lib else "torch"][1] / stats[lib][1]
                  for lib in LIBS if lib.startswith("crnn")}
        label = f"{size} {_steps.dims(size)}"
        print(f"{label:<34} " + " ".join(f"{c:>20}" for c in cols) + "  " +
              " ".join(f"{lib}: {r:.2f}×" for lib, r in ratios.items()))
        if abs(first["torch"] - first["crnn"]) > 1e-4 * abs(first["torch"]):
            sys.exit(f"{size}: the first losses differ: {first}")
        results[size] = {"dims": _steps.dims(size),
                         "ms": {lib: list(st) for lib, st in stats.items()},
                         "ratios": ratios, "first_loss": first}
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"cell": args.cell, "optimizer": args.optimizer, "results": results}, f,
                      indent=1)


if __name__ == "__main__":
    main()
