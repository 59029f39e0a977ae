"""Plot one training step's time against the hidden size for crnn, numpy and PyTorch.

B = 32, T = 50, D = O = 128 and H in {32, 64, 128, 256, 512, 1024} by
default. The timing is bench_train's: one worker process per library, the
same inputs, warm-up, interleaved rounds, medians, disturbed rounds discarded
(see bench_train.py). Prints the numbers, writes the PNG (and, with
``--json``, the results).

Example::

    PYTHONPATH=src python benchmarks/plot_hidden.py
"""

import argparse
import json
import os
import sys

import bench_train
import _steps
import _worker

HERE = os.path.dirname(os.path.abspath(__file__))
HIDDEN = (32, 64, 128, 256, 512, 1024)
B, T, D, O = 32, 50, 128, 128
REPEAT = 20
STYLE = {"crnn": ("C0", "o"), "numpy": ("C1", "s"), "torch": ("C3", "^")}
LABEL = {"crnn": "crnn", "numpy": "numpy (strong step)", "torch": "PyTorch CPU"}


def parse_args(argv=None):
    """The command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hidden", type=int, nargs="+", default=list(HIDDEN), metavar="H")
    parser.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    parser.add_argument("--threads", type=int, metavar="N")
    parser.add_argument("--repeat", type=int, default=REPEAT, metavar="N",
                        help=f"timed samples per library and hidden size (default {REPEAT})")
    parser.add_argument("--baselines", default=",".join(_steps.LIBRARIES))
    parser.add_argument("--max-wait", type=float, default=bench_train.MAX_WAIT,
                        metavar="SECONDS", help="as in bench_train.py")
    parser.add_argument("--out", default=os.path.join(HERE, "step_time_vs_hidden.png"))
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    args = parser.parse_args(argv)
    args.forward, args.memory = False, False  # what bench_train.run_size reads
    return args


def blas_setting(info):
    """A short description of the BLAS setting: the OPENBLAS_* variables and scipy's kernel."""
    env = " ".join(f"{k}={v}" for k, v in info["env"].items() if k.startswith("OPENBLAS_"))
    arch = next((p["arch"] for p in info["blas"] or [] if "scipy.libs" in p["file"]), None)
    return (env or "OPENBLAS_CORETYPE/L2_SIZE unset") + (f", OpenBLAS kernel {arch}" if arch
                                                          else "")


def plot(results, libraries, info, path):
    """Write the log-scale step-time plot."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    hidden = [r["H"] for r in results]
    fig, ax = plt.subplots(figsize=(7.5, 5.0), dpi=120)
    for lib in libraries:
        color, marker = STYLE[lib]
        med = [r["libraries"][lib]["median"] * 1e3 for r in results]
        q25 = [r["libraries"][lib]["q25"] * 1e3 for r in results]
        q75 = [r["libraries"][lib]["q75"] * 1e3 for r in results]
        ax.plot(hidden, med, marker=marker, color=color, label=LABEL[lib])
        ax.fill_between(hidden, q25, q75, color=color, alpha=0.2, linewidth=0)
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xticks(hidden)
    ax.set_xticklabels([str(h) for h in hidden])
    ax.set_xlabel("hidden size H")
    ax.set_ylabel("training step, median ms (log scale)")
    cpu = info["cpu"]
    ax.set_title(f"One float32 training step, B={B} T={T} D=O={D}\n"
                 f"{cpu['model']}, {cpu['usable_cpus']} cores; {blas_setting(info)}",
                 fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main(argv=None):
    """Time every library at every hidden size, print the table, write the plot."""
    args = parse_args(argv)
    wanted = [s.strip() for s in args.baselines.split(",") if s.strip()]
    libraries = [lib for lib in _steps.LIBRARIES
                 if lib in wanted and not isinstance(_steps.available(lib), str)]
    if "crnn" not in libraries:
        print("error: crnn is not importable", file=sys.stderr)
        return 2
    _worker.set_threads(args.threads, libraries)
    info = bench_train.machine_info(libraries)
    print(f"step time vs hidden size: B={B} T={T} D=O={D}, {args.dtype}, "
          f"{args.repeat} samples each; {blas_setting(info)}")
    print("versions:", ", ".join(f"{k} {v}" for k, v in info["versions"].items()))
    settings = {"repeat": args.repeat, "warmup": bench_train.WARMUP,
                "sample_time": bench_train.SAMPLE_TIME}
    gate = bench_train.Gate(args.max_wait)
    workers = {lib: bench_train.Worker(lib, args.dtype, args.threads, False)
               for lib in libraries}
    results = []
    try:
        peak = bench_train.gemm_rates({"crnn": workers["crnn"]}, bench_train.GEMM_N,
                                      gate)["scipy"][0]
        print(f"peak gemm (scipy, {bench_train.GEMM_N}²): {peak:.1f} GFLOP/s")
        for H in args.hidden:
            result = bench_train.run_size(f"H={H}", args, workers, peak, settings, gate,
                                          size=(B, T, D, H, O))
            bench_train.print_size(result, False)
            sys.stdout.flush()
            results.append(result)
    finally:
        for w in workers.values():
            w.close()
    print("\n== median ms per training step")
    print(f"  {'H':>6}" + "".join(f"{lib:>10}" for lib in libraries)
          + "".join(f"{lib + '/crnn':>12}" for lib in libraries if lib != "crnn")
          + f"{'crnn GFLOP/s':>14}{'other load':>12}")
    for r in results:
        libs = r["libraries"]
        print(f"  {r['H']:>6}" + "".join(f"{libs[lib]['median'] * 1e3:>10.3f}" for lib in libraries)
              + "".join(f"{r['ratios'][lib + '/crnn']:>12.2f}" for lib in libraries
                        if lib != "crnn")
              + f"{libs['crnn']['gflops']:>14.1f}{r['other_load'] or 0.0:>12.2f}")
    plot(results, libraries, info, args.out)
    print(f"\nwrote {args.out}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"command": ["python"] + sys.argv, "machine": info,
                       "peak_gemm_gflops": peak, "results": results}, f, indent=1)
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
