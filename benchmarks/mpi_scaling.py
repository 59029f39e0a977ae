"""Data-parallel training over MPI: measured steps/s on this machine, and a model of
scaling to 8-64 nodes from measured numbers.

Measured (run under ``mpiexec -n 1`` and ``mpiexec -n 2``): training steps/s of
``fit(comm=...)`` at the suite's medium and large sizes (float32 Elman RNN,
Adam), with the global batch of the size split across the ranks (strong
scaling) and with every rank holding the whole batch (weak scaling); the time
of one Allreduce of the parameter buffer; and, on one rank, the compute time
of a step at several local batch sizes.

Model (``--model RESULTS.json``): a step on p nodes costs its compute (measured
at the local batch) plus a ring Allreduce of the parameters,
2(p−1)/p · bytes / bandwidth + 2(p−1) · latency, with no overlap (crnn sums
the gradients after the backward pass). Efficiency = compute / (compute +
allreduce), for 10 and 100 Gbit/s links.

Example (setting (b))::

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE mpiexec -n 1 python benchmarks/mpi_scaling.py \\
        --out benchmarks/results/mpi-1.json
    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE mpiexec -n 2 python benchmarks/mpi_scaling.py \\
        --out benchmarks/results/mpi-2.json
    python benchmarks/mpi_scaling.py --model benchmarks/results/mpi-1.json \\
        benchmarks/results/mpi-2.json > benchmarks/results/mpi-scaling.txt
"""

import argparse
import json
import sys
import time
import zlib

import numpy as np

SIZES = {"medium": (64, 100, 128, 256, 128), "large": (64, 50, 512, 1024, 512),
         "deepbench": (32, 50, 1760, 1760, 1760)}
LOCAL_BATCHES = (8, 16, 32, 64, 128, 256)
LINKS = {"10 Gbit/s": (10e9 / 8, 20e-6), "100 Gbit/s": (100e9 / 8, 3e-6)}  # bytes/s, latency
NODES = (8, 16, 32, 64)


def _problem(size, B, rank):
    import crnn
    _, T, D, H, O = SIZES[size]
    rng = np.random.default_rng([zlib.crc32(size.encode()), rank])
    x = rng.integers(D, size=(T, B)).astype(np.intp)
    y = rng.integers(O, size=(T, B))
    return crnn.RNN(D, H, O, seed=0), x, y


def _steps_per_second(comm, size, B, seconds):
    """Median steps/s of fit(comm=...) over repeated one-batch epochs."""
    import crnn
    model, x, y = _problem(size, B, comm.Get_rank())
    opt = crnn.Adam(model.params, lr=1e-3)
    model.fit(x, y, batch_size=B, optimizer=opt, verbose=0, comm=comm, shuffle=False)
    times, start = [], time.perf_counter()
    while True:
        comm.Barrier()
        t0 = time.perf_counter()
        model.fit(x, y, batch_size=B, optimizer=opt, verbose=0, comm=comm, shuffle=False)
        times.append(time.perf_counter() - t0)
        done = comm.allreduce(time.perf_counter() - start > seconds and len(times) >= 3)
        if done == comm.Get_size():
            break
    return 1.0 / float(np.median(times))


def _allreduce_seconds(comm, nbytes, repeats=20):
    from mpi4py import MPI
    buf = np.zeros(nbytes // 4, dtype=np.float32)
    times = []
    for _ in range(repeats):
        comm.Barrier()
        t0 = time.perf_counter()
        comm.Allreduce(MPI.IN_PLACE, buf)
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def measure(seconds):
    from mpi4py import MPI
    import crnn
    comm = MPI.COMM_WORLD
    p = comm.Get_size()
    out = {"ranks": p, "threads": None, "sizes": {}}
    for size in ("medium", "large"):
        B = SIZES[size][0]
        row = {"strong": _steps_per_second(comm, size, B // p, seconds),
               "weak": _steps_per_second(comm, size, B, seconds)}
        model, _, _ = _problem(size, 1, 0)
        row["param_bytes"] = int(model._flat.nbytes)
        row["allreduce_s"] = _allreduce_seconds(comm, model._flat.nbytes)
        out["sizes"][size] = row
    out["threads"] = crnn.get_num_threads()
    if p == 1:      # compute per step at each local batch, for the model
        out["compute_s"] = {}
        for size in SIZES:
            out["compute_s"][size] = {}
            for B in LOCAL_BATCHES:
                if size == "deepbench" and B > 64:
                    continue
                out["compute_s"][size][B] = 1.0 / _steps_per_second(comm, size, B, seconds / 3)
    return comm, out


def model_table(results):
    one = next(r for r in results if r["ranks"] == 1)
    lines = []
    two = [r for r in results if r["ranks"] == 2]
    if two:
        two = two[0]
        lines += ["Measured on this machine (steps/s, medians; strong: the global batch split "
                  "over the ranks; weak: each rank the whole batch):", "",
                  "| size | 1 rank | 2 ranks strong | 2 ranks weak | param MB | "
                  "Allreduce, 2 ranks (ms) |", "| --- | --- | --- | --- | --- | --- |"]
        for size, r in one["sizes"].items():
            t = two["sizes"][size]
            lines.append(f"| {size} | {r['strong']:.2f} | {t['strong']:.2f} | {t['weak']:.2f} "
                         f"| {r['param_bytes'] / 1e6:.2f} | {t['allreduce_s'] * 1e3:.2f} |")
        lines.append("")
    lines += ["Model: efficiency = compute / (compute + ring Allreduce of the float32 "
              "parameters), no overlap; compute measured on one node (2 cores) at each local "
              "batch. Cells: efficiency at 8 / 16 / 32 / 64 nodes.", ""]
    header = "| size | local batch | compute ms | " + " | ".join(LINKS) + " |"
    lines += [header, "| --- | --- | --- | " + " | ".join("---" for _ in LINKS) + " |"]
    for size, per_batch in one["compute_s"].items():
        _, T, D, H, O = SIZES[size]
        nbytes = 4 * (H * D + H * H + H + O * H + O)
        for B, compute in per_batch.items():
            cells = []
            for bw, lat in LINKS.values():
                effs = []
                for p in NODES:
                    comm_s = 2 * (p - 1) / p * nbytes / bw + 2 * (p - 1) * lat
                    effs.append(compute / (compute + comm_s))
                cells.append(" / ".join(f"{e:.0%}" for e in effs))
            lines.append(f"| {size} | {B} | {compute * 1e3:.1f} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", help="measure (under mpiexec) and write the results here")
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--model", nargs="+", metavar="RESULTS",
                        help="print the measured table and the scaling model")
    args = parser.parse_args()
    if args.model:
        print(model_table([json.load(open(p)) for p in args.model]))
        return 0
    if not args.out:
        parser.error("give --out (measure) or --model (tables)")
    comm, out = measure(args.seconds)
    if comm.Get_rank() == 0:
        with open(args.out, "w") as f:
            json.dump(out, f, indent=1)
        print(json.dumps(out["sizes"], indent=1), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
