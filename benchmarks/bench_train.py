"""Time one training step of a recurrent network in crnn, a strong plain-numpy step,
PyTorch CPU and JAX (the whole step in one jax.jit function, see _jax_rnn.py).

One training step = forward, softmax cross-entropy summed over all T·B steps,
BPTT, clip_grad_norm(5.0), SGD; ``--forward`` times inference instead. The
network is an Elman RNN (``--cell rnn``, the default), an LSTM or a GRU, of
``--layers`` layers, ``--bidirectional`` or not; PyTorch runs nn.RNN,
nn.LSTM or nn.GRU (through oneDNN where it can); the numpy step exists for
the one-layer Elman RNN only. ``--base PATH`` adds ``crnn_base``: the crnn
in PATH (e.g. a checkout of the previous main's src/, built in place), for
an A/B comparison in the same run.

How it measures:

- Every library runs in a process of its own (_worker.py), as in a user's
  program, on the same weights and inputs; in one process their thread pools
  and global state disturb each other.
- After a warm-up, the libraries run interleaved, round-robin (crnn, numpy,
  torch, crnn, ...); a sample is enough back-to-back steps to last
  ``SAMPLE_TIME``. After each sample the worker waits until its own threads
  are idle (BLAS and OpenMP pools spin for a while after their last call),
  so that the next library starts on a quiet machine.
- The machine may be shared: a round of samples during which other processes
  used the CPU is discarded and measured again once the machine is quiet
  (``--max-wait`` bounds the waiting). The other processes' load over the
  kept rounds is printed with each table: trust a table only where it is ~0.
- Reported per library: the median, min and interquartile range of the time
  per step, the ratio to crnn, the achieved GFLOP/s (6·T·B·(G·(D·H + H·H) +
  H·O) per training step for one layer, G = 1 / 4 / 3 gates; summed over
  layers and directions; a third of that forward only) and that rate as a
  fraction of the peak GEMM rate of scipy's BLAS (the one crnn calls),
  measured in the same run; the same product through numpy's and PyTorch's
  BLAS is shown for reference.
- ``--memory`` adds each library's peak memory per step, measured in a fresh
  subprocess (see _memory.py).
- A float64 self-check of the libraries against each other runs before
  anything is timed (``--check`` runs only that).

Examples::

    PYTHONPATH=src python benchmarks/bench_train.py --quick
    PYTHONPATH=src python benchmarks/bench_train.py --sizes char small medium --memory
    PYTHONPATH=src python benchmarks/bench_train.py --dtype float64 --forward --threads 1
    PYTHONPATH=src python benchmarks/bench_train.py --cell lstm --layers 2 --bidirectional
    PYTHONPATH=src python benchmarks/bench_train.py --base ../old/src --baselines crnn,crnn_base
"""

import argparse
import json
import math
import os
import platform
import shlex
import subprocess
import sys
import time

import numpy as np

import _memory
import _steps
import _worker

HERE = os.path.dirname(os.path.abspath(__file__))
SAMPLE_TIME = 0.02        # seconds per sample: steps are repeated back-to-back up to this
WARMUP = 3                # warm-up calls per library (and at least SAMPLE_TIME of them)
GEMM_N = 4096             # peak GEMM: n×n times n×n
GEMM_REPEAT = 3
DEFAULT_REPEAT = {"char": 60, "small": 60, "medium": 40, "large": 15, "deepbench": 9}
MAX_OTHER_LOAD = 0.1      # CPUs other processes may use while a round is timed ...
TICK_SLACK = 3            # ... plus this many clock ticks of /proc/stat granularity
MAX_WAIT = 1800           # default --max-wait, seconds
QUICK = {"sizes": ["char", "small"], "repeat": 5, "warmup": 1, "sample_time": 0.002,
         "gemm_n": 1024, "max_wait": 0}
ENV_PREFIXES = ("OPENBLAS_", "OMP_", "MKL_", "GOMP_", "KMP_", "MALLOC_")
GEMM_VIA = {"crnn": "scipy", "crnn_base": "scipy", "numpy": "numpy",
            "torch": "torch", "jax": "jax"}  # each library's BLAS (jax: XLA's matmul)


def parse_args(argv=None):
    """The command line."""
    parser = argparse.ArgumentParser(
        description="Time one recurrent network's training step (or forward pass) in crnn, "
                    "plain numpy, PyTorch CPU and JAX.")
    parser.add_argument("--cell", choices=tuple(_steps.CELLS), default="rnn",
                        help="the recurrent cell (default rnn: the Elman RNN)")
    parser.add_argument("--layers", type=int, default=1, metavar="N",
                        help="stacked layers (default 1)")
    parser.add_argument("--bidirectional", action="store_true",
                        help="two directions per layer")
    parser.add_argument("--base", metavar="PATH",
                        help="the folder holding another crnn package (e.g. the previous main's "
                             "src/, built in place): adds the library crnn_base")
    parser.add_argument("--sizes", nargs="+", metavar="SIZE",
                        help=f"sizes to run, space- or comma-separated, from "
                             f"{' '.join(_steps.SIZES)} (default: all; with --quick: "
                             f"{' '.join(QUICK['sizes'])})")
    parser.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    parser.add_argument("--threads", type=int, metavar="N",
                        help="threads for every library (threadpoolctl, torch.set_num_threads, "
                             "crnn.set_num_threads; jax: XLA_FLAGS and its worker's CPU "
                             "affinity); default: leave the libraries' defaults")
    parser.add_argument("--repeat", type=int, metavar="N",
                        help="timed samples per library and size (default: per size, "
                             + ", ".join(f"{k} {v}" for k, v in DEFAULT_REPEAT.items()) + ")")
    parser.add_argument("--baselines", default="crnn,crnn_base,numpy,torch,jax",
                        help="comma-separated libraries to time, from "
                             f"{','.join(_steps.LIBRARIES)} (default: all; crnn_base only "
                             "with --base, numpy only for the one-layer RNN, torch and jax "
                             "only when installed)")
    parser.add_argument("--quick", action="store_true",
                        help="tiny run (char and small, few samples, 1024² peak GEMM) to "
                             "prove the suite works")
    parser.add_argument("--forward", action="store_true", help="time inference only")
    parser.add_argument("--memory", action="store_true",
                        help="also measure peak memory per step, one subprocess per library")
    parser.add_argument("--check", action="store_true",
                        help="only run the float64 self-check of the libraries against "
                             "each other, then exit")
    parser.add_argument("--max-wait", type=float, metavar="SECONDS",
                        help="on a shared machine, discard every round of samples during "
                             f"which other processes used more than {MAX_OTHER_LOAD} CPU and "
                             "wait for quiet before measuring again, spending at most this "
                             f"long waiting in all (default {MAX_WAIT}; 0 with --quick; 0 "
                             "keeps every round)")
    parser.add_argument("--json", metavar="PATH", help="write all results to PATH as JSON")
    args = parser.parse_args(argv)

    names = [s for item in (args.sizes or []) for s in item.split(",") if s]
    if not names:
        names = list(QUICK["sizes"] if args.quick else _steps.SIZES)
    unknown = [s for s in names if s not in _steps.SIZES]
    if unknown:
        parser.error(f"--sizes: unknown {unknown}; choose from {list(_steps.SIZES)}")
    args.sizes = names
    libs = [s.strip() for s in args.baselines.split(",") if s.strip()]
    unknown = [s for s in libs if s not in _steps.LIBRARIES]
    if unknown or not libs:
        parser.error(f"--baselines: unknown {unknown}; choose from {list(_steps.LIBRARIES)}")
    args.baselines = [lib for lib in _steps.LIBRARIES if lib in libs]
    if args.threads is not None and args.threads < 1:
        parser.error("--threads: expected a positive integer")
    if args.layers < 1:
        parser.error("--layers: expected a positive integer")
    args.net = _steps.Net(args.cell, args.layers, args.bidirectional)
    if args.base:
        os.environ["CRNN_BASE"] = os.path.abspath(args.base)
    if args.repeat is not None and args.repeat < 1:
        parser.error("--repeat: expected a positive integer")
    if args.max_wait is not None and not args.max_wait >= 0:
        parser.error("--max-wait: expected a number of seconds >= 0")
    return args


def _cpu_info():
    """CPU model, logical CPUs, physical cores and SIMD flags from /proc/cpuinfo."""
    fields, flags, cores, phys = {}, [], set(), None
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = (s.strip() for s in line.partition(":"))
                if key in ("model name", "cpu family", "model", "cpu MHz", "cache size"):
                    fields.setdefault(key, value)
                elif key == "flags" and not flags:
                    flags = [v for v in value.split() if v.startswith(("avx", "fma"))]
                elif key == "physical id":
                    phys = value
                elif key == "core id":
                    cores.add((phys, value))
    except OSError:
        pass
    model = fields.get("model name") or platform.processor() or "unknown"
    details = [f"{k} {fields[k]}" for k in ("cpu family", "model", "cpu MHz", "cache size")
               if k in fields]
    return {"model": model, "details": ", ".join(details), "logical_cpus": os.cpu_count(),
            "usable_cpus": len(os.sched_getaffinity(0)),
            "physical_cores": len(cores) or None, "simd": flags}


def machine_info(libraries):
    """Machine, environment and library versions, as a JSON-able dict."""
    import scipy

    info = {"cpu": _cpu_info(), "platform": platform.platform(),
            "python": platform.python_version(),
            "env": {k: v for k, v in sorted(os.environ.items()) if k.startswith(ENV_PREFIXES)},
            "versions": {"numpy": np.__version__, "scipy": scipy.__version__}}
    for lib in ("crnn", "torch", "jax"):
        if lib in libraries:
            mod = _steps.available(lib)
            info["versions"][lib] = getattr(mod, "__version__", "?")
            if lib == "torch":
                info["torch_threads"] = mod.get_num_threads()
            if lib == "crnn":
                info["crnn_threads"] = mod.get_num_threads()
                info["crnn_kernel"] = mod._engine.kernel()
    if "crnn_base" in libraries:
        info["crnn_base"] = os.environ["CRNN_BASE"]
    if "crnn" in libraries:
        folder = os.path.dirname(_steps.available("crnn").__file__)
        built = [os.path.getmtime(os.path.join(folder, f)) for f in os.listdir(folder)
                 if f.endswith((".so", ".pyd"))]
        info["crnn_location"] = folder + (time.strftime(", extensions built %Y-%m-%d %H:%M:%S",
                                                        time.localtime(max(built))) if built else "")
    try:
        import threadpoolctl
    except ImportError:
        info["blas"] = None
    else:
        info["versions"]["threadpoolctl"] = threadpoolctl.__version__
        info["blas"] = [
            {"api": p.get("internal_api"), "version": p.get("version"),
             "arch": p.get("architecture"), "threads": p.get("num_threads"),
             "threading": p.get("threading_layer"),
             "file": os.path.join(*p["filepath"].split(os.sep)[-2:])}
            for p in threadpoolctl.threadpool_info()]
    return info


def print_header(info, args):
    """Print the command line, machine, environment and versions."""
    cpu = info["cpu"]
    print("crnn benchmark:", "forward only (inference)" if args.forward else "training step",
          args.dtype, "|", args.net)
    print("command:", shlex.join(["python"] + sys.argv))
    print("date:", time.strftime("%Y-%m-%d %H:%M:%S %Z"))
    print(f"machine: {cpu['model']} ({cpu['details']}), {cpu['physical_cores']} physical "
          f"cores, {cpu['logical_cpus']} logical CPUs ({cpu['usable_cpus']} usable)")
    print("SIMD:", " ".join(cpu["simd"]))
    print("platform:", info["platform"], "| python", info["python"])
    print("environment:", " ".join(f"{k}={v}" for k, v in info["env"].items()) or "(none set)")
    print("versions:", ", ".join(f"{k} {v}" for k, v in info["versions"].items()))
    if "crnn_location" in info:
        print("crnn:", info["crnn_location"], "| per-step kernel:", info.get("crnn_kernel"))
    if "crnn_base" in info:
        print("crnn_base:", info["crnn_base"], "(run in its own worker process)")
    if info["blas"] is None:
        print("BLAS: threadpoolctl not installed")
    for p in info["blas"] or []:
        what = " ".join(str(p[k]) for k in ("api", "version", "arch", "threading") if p[k])
        print(f"BLAS: {what}, {p['threads']} threads: {p['file']}")
    if "torch_threads" in info:
        print("torch threads:", info["torch_threads"])
    print("threads:", "library defaults" if args.threads is None else args.threads)


def _machine_busy_seconds():
    """Non-idle CPU seconds of the whole machine since boot, from /proc/stat; None if unreadable."""
    try:
        with open("/proc/stat") as f:
            values = [int(v) for v in f.readline().split()[1:9]]  # guest time is in user
    except (OSError, ValueError):
        return None
    return (sum(values) - values[3] - values[4]) / os.sysconf("SC_CLK_TCK")  # less idle, iowait


class Worker:
    """The parent's end of a _worker.py process running one library."""

    def __init__(self, lib, dtype, threads, forward_only):
        cmd = [sys.executable, os.path.join(HERE, "_worker.py"), lib, dtype]
        if threads is not None:
            cmd += ["--threads", str(threads)]
        if forward_only:
            cmd.append("--forward")
        self.lib = lib
        self.cpu = 0.0
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     text=True, bufsize=1)
        self._read()

    def _read(self):
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the {self.lib} worker exited (status {self.proc.wait()})")
        reply = json.loads(line)
        self.cpu = reply["cpu"]
        if "error" in reply:
            raise RuntimeError(f"the {self.lib} worker failed:\n{reply['error']}")
        return reply

    def call(self, cmd, **fields):
        """Send one command; return the reply (a dict)."""
        self.proc.stdin.write(json.dumps(dict(fields, cmd=cmd)) + "\n")
        self.proc.stdin.flush()
        return self._read()

    def close(self):
        """Stop the worker process."""
        if self.proc.poll() is None:
            self.proc.stdin.write(json.dumps({"cmd": "quit"}) + "\n")
            self.proc.stdin.close()
            self.proc.wait()


class OtherLoad:
    """Measures the CPU time that *other* processes take over an interval.

    Machine-wide busy time (from /proc/stat) minus the CPU time of this
    process and of its ``workers`` (as last reported by them). /proc/stat
    counts in clock ticks, so short intervals carry a slack of a few ticks.
    Everything is None where /proc/stat cannot be read.
    """

    def __init__(self, workers=()):
        self.workers = list(workers)
        self.wall = time.perf_counter()
        self.own = self._own()
        self.busy = _machine_busy_seconds()

    def _own(self):
        return time.process_time() + sum(w.cpu for w in self.workers)

    def seconds(self):
        """CPU seconds used by other processes since construction."""
        busy = _machine_busy_seconds()
        if busy is None or self.busy is None:
            return None
        return max(0.0, busy - self.busy - (self._own() - self.own))

    @property
    def value(self):
        """Average number of CPUs kept busy by other processes since construction."""
        other = self.seconds()
        return None if other is None else other / (time.perf_counter() - self.wall)

    def disturbed(self):
        """Whether other processes took more than ``MAX_OTHER_LOAD`` CPUs (beyond tick slack)."""
        other = self.seconds()
        return other is not None and other > (MAX_OTHER_LOAD * (time.perf_counter() - self.wall)
                                              + TICK_SLACK / os.sysconf("SC_CLK_TCK"))


class Gate:
    """Keeps timings clean on a shared machine, within a budget of waiting time.

    A measurement during which other processes were busy (``OtherLoad.disturbed``)
    is discarded; the gate then waits for the machine to be quiet and the
    caller measures again. Once ``max_wait`` seconds have been spent waiting,
    every measurement is accepted (and the printed load says so).
    """

    def __init__(self, max_wait):
        self.remaining = max_wait
        self.discarded = 0

    def accept(self, meter):
        """True to keep the measurement taken under ``meter``; otherwise wait for quiet."""
        if self.remaining <= 0 or not meter.disturbed():
            return True
        self.discarded += 1
        start = time.perf_counter()
        while time.perf_counter() - start < self.remaining:
            probe = OtherLoad(meter.workers)
            time.sleep(0.5)
            if not probe.disturbed():
                break
        self.remaining -= time.perf_counter() - start
        return False


def gemm_rates(workers, n, gate):
    """GFLOP/s of one n×n·n×n product through each library's BLAS, in its worker.

    Returns ``{via: (GFLOP/s, other processes' load)}`` with "scipy" (the
    BLAS crnn calls: the peak) first, measured in the crnn worker, or in the
    first worker when crnn is not benchmarked. Each rate is the median of
    ``GEMM_REPEAT`` products after a warm-up; a product disturbed by other
    processes is measured again as ``gate`` allows.
    """
    jobs = [("scipy", workers.get("crnn") or next(iter(workers.values())))]
    jobs += [(GEMM_VIA[lib], w) for lib, w in workers.items() if lib != "crnn"]
    rates = {}
    for via, worker in jobs:
        worker.call("quiesce")
        worker.call("gemm", via=via, n=n)
        times, other = [], 0.0
        while len(times) < GEMM_REPEAT:
            meter = OtherLoad(workers.values())
            elapsed = worker.call("gemm", via=via, n=n)["time"]
            worker.call("quiesce")
            seconds = meter.seconds()
            if gate.accept(meter):
                times.append(elapsed)
                other += seconds or 0.0
        other = max(0.0, other - TICK_SLACK / os.sysconf("SC_CLK_TCK"))  # short: mind the ticks
        rates[via] = (2.0 * n ** 3 / float(np.median(times)) / 1e9, other / sum(times))
    return rates


def time_interleaved(workers, repeat, warmup, sample_time, gate):
    """Time every worker's loaded step round-robin.

    Each is warmed up (``warmup`` calls, and at least ``sample_time`` of
    calls), which also sizes its sample: enough back-to-back steps to last
    ``sample_time``. Then each round takes one sample of every worker in turn,
    each followed by that worker's quiesce, until ``repeat`` rounds are kept
    by ``gate``. Returns the per-step times, the steps per sample and the
    other processes' mean load over the kept rounds.
    """
    per_sample = {}
    for lib, w in workers.items():
        best = w.call("warmup", calls=warmup, seconds=sample_time)["best"]
        w.call("quiesce")
        per_sample[lib] = max(1, math.ceil(sample_time / best))
    samples = {lib: [] for lib in workers}
    other, wall = 0.0, 0.0
    while len(samples[next(iter(workers))]) < repeat:
        meter = OtherLoad(workers.values())
        round_ = {}
        for lib, w in workers.items():
            round_[lib] = w.call("sample", steps=per_sample[lib])["time"]
            w.call("quiesce")
        seconds, elapsed = meter.seconds(), time.perf_counter() - meter.wall
        if gate.accept(meter):
            for lib, t in round_.items():
                samples[lib].append(t)
            other, wall = other + (seconds or 0.0), wall + elapsed
    return samples, per_sample, (other / wall if wall else None)


def load_note(load):
    """A short note on the other processes' load, with a warning when it is significant."""
    if load is None:
        return "n/a"
    warn = " — WARNING: other processes were using the CPU; timings are disturbed"
    return f"{load:.2f} CPUs" + (warn if load > 0.1 else "")


def summarize(times):
    """Median, min, quartiles and IQR (seconds) of a list of times."""
    q25, med, q75 = np.percentile(times, [25, 50, 75])
    return {"median": float(med), "min": float(np.min(times)), "q25": float(q25),
            "q75": float(q75), "iqr": float(q75 - q25), "n": len(times)}


def _mib(n):
    """Bytes as MiB for the tables ("n/a" for None)."""
    return "n/a" if n is None else f"{n / 2**20:.2f}"


def print_size(result, forward):
    """Print one size's table."""
    r = result
    print(f"\n== {r['size']}: B={r['B']} T={r['T']} D={r['D']} H={r['H']} O={r['O']}, "
          f"{'forward' if forward else 'training step'} = {r['flops'] / 1e9:.4g} GFLOP")
    mem = "memory" in next(iter(r["libraries"].values()))
    head = (f"  {'library':<8}{'median ms':>11}{'min ms':>10}{'IQR ms':>9}{'samples':>9}"
            f"{'steps/sample':>14}{'x crnn':>8}{'GFLOP/s':>9}{'% peak':>8}")
    if mem:
        head += f"{'RSS MiB':>9}{'traced MiB':>12}"
    print(head)
    for lib, s in r["libraries"].items():
        ratio = r["ratios"].get(f"{lib}/crnn", 1.0 if lib == "crnn" else None)
        line = (f"  {lib:<8}{s['median'] * 1e3:>11.4g}{s['min'] * 1e3:>10.4g}"
                f"{s['iqr'] * 1e3:>9.3g}{s['n']:>9}{s['steps_per_sample']:>14}"
                f"{'-' if ratio is None else f'{ratio:.2f}':>8}{s['gflops']:>9.2f}"
                f"{100 * s['fraction_of_peak']:>7.1f}%")
        if mem:
            line += (f"{_mib(s['memory']['rss_peak']):>9}"
                     f"{_mib(s['memory']['traced_peak']):>12}")
        print(line)
    print(f"  other processes' load while timing: {load_note(r['other_load'])} "
          f"({r['discarded_rounds']} disturbed rounds discarded)")
    if mem:
        print(f"  (T+1)·B·H activations: {_mib(r['activations_bytes'])} MiB; RSS = peak "
              f"resident growth during one step; traced = tracemalloc peak (numpy "
              f"buffers and Python objects, not PyTorch's C allocations)")


def print_summary(results, libraries, peak, forward):
    """Print the one-line-per-size summary table."""
    print(f"\n== summary ({'forward only' if forward else 'training step'}; median ms; "
          f"peak GEMM {peak:.1f} GFLOP/s)")
    others = [lib for lib in libraries if lib != "crnn"]
    head = f"  {'size':<10}" + "".join(f"{lib + ' ms':>11}" for lib in libraries)
    if "crnn" in libraries:
        head += "".join(f"{lib + '/crnn':>12}" for lib in others)
        head += f"{'crnn GFLOP/s':>14}{'% peak':>8}"
    print(head)
    for r in results:
        line = f"  {r['size']:<10}" + "".join(
            f"{r['libraries'][lib]['median'] * 1e3:>11.4g}" for lib in libraries)
        if "crnn" in libraries:
            c = r["libraries"]["crnn"]
            line += "".join(f"{r['ratios'][f'{lib}/crnn']:>12.2f}" for lib in others)
            line += f"{c['gflops']:>14.2f}{100 * c['fraction_of_peak']:>7.1f}%"
        print(line)
    if any("activations_bytes" in r for r in results):
        print("\n== peak memory per step, MiB: RSS growth (tracemalloc peak); crnn's "
              "workspace, kept from step to step, apart")
        print(f"  {'size':<10}{'activations':>13}" + "".join(f"{lib:>18}" for lib in libraries)
              + f"{'crnn workspace':>16}")
        for r in results:
            cells = "".join(
                f"{_mib(m['rss_peak']) + ' (' + _mib(m['traced_peak']) + ')':>18}"
                for m in (r["libraries"][lib]["memory"] for lib in libraries))
            ws = r["libraries"].get("crnn", {}).get("memory", {}).get("workspace")
            print(f"  {r['size']:<10}{_mib(r['activations_bytes']):>13}{cells}{_mib(ws):>16}")


def run_size(name, args, workers, peak, settings, gate, size=None):
    """Time (and optionally measure memory of) every library at one size; return the result.

    ``name`` is a size from ``_steps.SIZES``, or only a label when ``size``
    gives (B, T, D, H, O) explicitly; ``settings["repeat"]`` is then required.
    """
    size = _steps.dims(name if size is None else size)
    B, T, D, H, O = size
    for w in workers.values():
        w.call("load", size=list(size), net=args.net.as_dict())
    repeat = settings["repeat"] or DEFAULT_REPEAT[name]
    discarded = gate.discarded
    samples, per_sample, other_load = time_interleaved(
        workers, repeat, settings["warmup"], settings["sample_time"], gate)
    flops = _steps.step_flops(size, args.forward, args.net)
    result = {"size": name, "B": B, "T": T, "D": D, "H": H, "O": O, "flops": flops,
              "net": args.net.as_dict(),
              "other_load": other_load, "discarded_rounds": gate.discarded - discarded,
              "libraries": {}, "ratios": {}}
    for lib in workers:
        stats = summarize(samples[lib])
        stats["steps_per_sample"] = per_sample[lib]
        stats["gflops"] = flops / stats["median"] / 1e9
        stats["fraction_of_peak"] = stats["gflops"] / peak
        result["libraries"][lib] = stats
    if "crnn" in workers:
        for lib in workers:
            if lib != "crnn":
                result["ratios"][f"{lib}/crnn"] = (result["libraries"][lib]["median"]
                                                   / result["libraries"]["crnn"]["median"])
    if args.memory:
        result["activations_bytes"] = (T + 1) * B * H * np.dtype(args.dtype).itemsize
        for lib in workers:
            result["libraries"][lib]["memory"] = _memory.measure(
                lib, ",".join(map(str, size)), args.dtype, args.threads, args.forward, args.net)
    return result


def main(argv=None):
    """Run the benchmark; return the process exit code."""
    args = parse_args(argv)
    libraries = []
    for lib in args.baselines:
        if lib == "crnn_base" and not args.base:
            continue
        if not _steps.supports(lib, args.net):
            print(f"note: {lib} has no {args.net}; skipping it")
            continue
        if lib == "crnn_base":      # imported in its own worker process only
            libraries.append(lib)
            continue
        mod = _steps.available(lib)
        if not isinstance(mod, str):
            libraries.append(lib)
        elif lib in ("torch", "jax"):
            print(f"note: {lib} is not importable ({mod}); skipping it")
        else:
            print(f"error: {lib} is not importable: {mod}", file=sys.stderr)
            return 2
    warnings = _worker.set_threads(args.threads, [lib for lib in libraries
                                                  if lib != "crnn_base"])
    info = machine_info(libraries)
    print_header(info, args)
    for w in warnings:
        print("warning:", w)
    meter = OtherLoad()
    time.sleep(0.5)
    info["other_load_before"] = meter.value
    print("other processes' load before:", load_note(info["other_load_before"]))

    check = _steps.self_check([lib for lib in libraries if lib != "crnn_base"], net=args.net)
    worst = max(check, key=lambda item: item[1], default=("nothing to compare", 0.0))
    print(f"self-check (float64): passed; worst relative error {worst[1]:.2e} ({worst[0]})")
    if args.check:
        for what, err in check:
            print(f"  {what:<28}{err:.2e}")
        return 0
    _worker.quiesce()

    settings = {"repeat": args.repeat, "warmup": WARMUP, "sample_time": SAMPLE_TIME,
                "gemm_n": GEMM_N, "max_wait": MAX_WAIT}
    if args.quick:
        settings.update({k: v for k, v in QUICK.items() if k != "sizes"})
        settings["repeat"] = args.repeat or QUICK["repeat"]
    if args.max_wait is not None:
        settings["max_wait"] = args.max_wait
    gate = Gate(settings["max_wait"])
    workers = {lib: Worker(lib, args.dtype, args.threads, args.forward) for lib in libraries}
    try:
        rates = gemm_rates(workers, settings["gemm_n"], gate)
        peak, info["other_load_gemm"] = rates["scipy"]
        info["gemm_rates"] = {via: rate for via, (rate, _) in rates.items()}
        n = settings["gemm_n"]
        print(f"peak {'sgemm' if args.dtype == 'float32' else 'dgemm'} (scipy.linalg.blas, "
              f"the BLAS crnn calls; {n}², median of {GEMM_REPEAT}): {peak:.1f} GFLOP/s — "
              f"the reference for '% peak'; other processes' load: "
              f"{load_note(info['other_load_gemm'])}")
        label = {"numpy": "np.matmul", "torch": "torch.mm", "jax": "jnp.matmul"}
        others = [f"{label[via]} {rate:.1f} GFLOP/s"
                  for via, rate in info["gemm_rates"].items() if via != "scipy"]
        if others:
            print("  same product through the other libraries' BLAS:", ", ".join(others))

        results = []
        for name in args.sizes:
            result = run_size(name, args, workers, peak, settings, gate)
            print_size(result, args.forward)
            sys.stdout.flush()
            results.append(result)
    finally:
        for w in workers.values():
            w.close()
    print_summary(results, libraries, peak, args.forward)
    loads = [r["other_load"] for r in results if r["other_load"] is not None]
    info["other_load_max"] = max(loads, default=None)
    print(f"other processes' load, worst size: {load_note(info['other_load_max'])}; "
          f"{gate.discarded} disturbed measurements discarded in all")

    if args.json:
        payload = {"command": ["python"] + sys.argv,
                   "args": dict(vars(args), net=args.net.as_dict()), "settings": settings,
                   "machine": info, "peak_gemm_gflops": peak, "self_check": check,
                   "results": results}
        with open(args.json, "w") as f:
            json.dump(payload, f, indent=1)
        print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
