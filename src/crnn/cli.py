"""The ``crnn`` command: train a character-level model, sample from it, run the benchmarks.

::

    crnn train [TEXT_FILE] [--steps N] [--hidden H] [--seq-len T] [--batch B] [--lr LR]
               [--clip C] [--out PATH] [--seed S] [--log-every K] [--sample-every K]
               [--checkpoint-every K]
    crnn sample MODEL [--length N] [--temperature T] [--prime TEXT] [--seed S]
    crnn bench [ARGS ...]

``python -m crnn`` is the same command. A mistake the user can fix — a bad
argument, a missing, unreadable or corrupt file, a prime the model cannot
encode — prints one line on stderr and exits with status 2 (usage) or 1
(anything else), never a traceback. Ctrl-C exits with status 130 and SIGTERM
(``kill``, ``timeout``, a batch scheduler, ``docker stop``) with 143; during
training both first save the model. ``crnn train`` never writes over its
training text, nor over an existing file that is not a crnn model.

A model saved by ``crnn train`` is an ordinary :meth:`crnn.RNN.save` file
with one extra entry, ``vocab`` (the characters of the token ids, as JSON),
so ``crnn.load`` reads it like any other model.
"""

import argparse
import contextlib
import math
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

from crnn import _corpus, _signals
from crnn._cli_files import Error as _Error
from crnn._cli_files import Streams as _Streams
from crnn._cli_files import check_output_path as _check_output_path
from crnn._cli_files import load_checkpoint as _load_checkpoint
from crnn._cli_files import read_text as _read_text
from crnn._cli_files import save_checkpoint as _save_checkpoint
from crnn._version import __version__
from crnn.clip import clip_grad_norm
from crnn.model import RNN
from crnn.optim import Adam

__all__ = ["main"]

_TRAIN_SAMPLE_LENGTH = 200      # characters of each sample printed while training
_TRAIN_SAMPLE_TEMPERATURE = 0.8  # a little below 1: early models read better when cautious
_BENCH_SCRIPT = Path("benchmarks", "bench_train.py")


class _Terminated(KeyboardInterrupt):
    """SIGTERM: handled as Ctrl-C is (the model is saved), then exit status 143."""


def _on_sigterm(signum, frame):
    raise _Terminated


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors are a single line on stderr."""

    def error(self, message):
        # argparse would print the whole usage block first; one line that
        # points at --help is easier to read in a terminal or a CI log.
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def _int_at_least(minimum):
    """An argparse type: an integer >= ``minimum``."""
    what = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"

    def parse(text):
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
        return value
    return parse


_positive_int = _int_at_least(1)
_count = _int_at_least(0)       # an interval in steps, where 0 means never
_seed = _int_at_least(0)        # numpy refuses negative seeds


def _non_negative_float(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text!r}") from None
    if not (math.isfinite(value) and value >= 0):
        raise argparse.ArgumentTypeError(f"expected a finite number >= 0, got {text!r}")
    return value


def _positive_float(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"expected a finite number > 0, got {text!r}")
    return value


def _build_parser():
    """The argument parser and its sub-parsers, by command name."""
    parser = _Parser(
        prog="crnn",
        description="Train and sample character-level Elman RNNs on the CPU, with crnn.")
    parser.add_argument("--version", action="version", version=f"crnn {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True,
                                     parser_class=_Parser)

    train = commands.add_parser(
        "train", help="train a character-level model on a text file",
        description="Train a character-level model (tanh RNN, Adam, truncated BPTT over "
                    "parallel streams of the text) and save it. With no TEXT_FILE it "
                    "trains on the documentation that ships with CPython "
                    f"({_corpus.DEFAULT_NAME}, about 460 kB). Ctrl-C stops training and "
                    "saves the model.")
    train.add_argument("text_file", nargs="?", metavar="TEXT_FILE",
                       help="UTF-8 text to learn (default: the embedded corpus)")
    train.add_argument("--steps", type=_positive_int, default=1000, metavar="N",
                       help="training steps, one window of every stream each (default 1000)")
    train.add_argument("--hidden", type=_positive_int, default=256, metavar="H",
                       help="hidden units (default 256)")
    train.add_argument("--seq-len", type=_positive_int, default=64, metavar="T",
                       help="characters per window: BPTT is truncated to this (default 64)")
    train.add_argument("--batch", type=_positive_int, default=32, metavar="B",
                       help="parallel streams, each a contiguous part of the text (default 32)")
    # 5e-3 rather than the usual 2e-3: on the default corpus it reaches a lower
    # loss at every point of the first few thousand steps (1.51 against 1.76
    # nats/char after 1000), and short runs are what this command is for.
    train.add_argument("--lr", type=_positive_float, default=5e-3,
                       help="Adam learning rate (default 0.005)")
    train.add_argument("--clip", type=_positive_float, default=5.0, metavar="C",
                       help="clip each step's gradients to this total 2-norm (default 5)")
    train.add_argument("--out", default="model.npz", metavar="PATH",
                       help="where to save the model (default model.npz)")
    train.add_argument("--seed", type=_seed, default=0, metavar="S",
                       help="seed of the initial weights and of the samples (default 0)")
    train.add_argument("--log-every", type=_positive_int, default=50, metavar="K",
                       help="print the loss every K steps (default 50)")
    train.add_argument("--sample-every", type=_count, default=250, metavar="K",
                       help="print a sample every K steps, 0 for never (default 250)")
    train.add_argument("--checkpoint-every", type=_count, default=100, metavar="K",
                       help="save the model every K steps, 0 for only at the end (default 100)")
    train.add_argument("--distributed", action="store_true",
                       help="under mpiexec (needs crnn[mpi]): split the --batch streams "
                            "across the ranks and sum their gradients at every step; rank 0 "
                            "prints and saves")

    sample = commands.add_parser(
        "sample", help="print text generated by a model saved by 'crnn train'",
        description="Print text generated by a character-level model saved by 'crnn train'.")
    sample.add_argument("model", metavar="MODEL", help="the model file (.npz)")
    sample.add_argument("--length", type=_positive_int, default=500, metavar="N",
                        help="characters to generate (default 500)")
    sample.add_argument("--temperature", type=_non_negative_float, default=1.0, metavar="T",
                        help="below 1: safer, more repetitive text; above 1: wilder; 0: "
                             "always the likeliest character (default 1)")
    sample.add_argument("--prime", default="", metavar="TEXT",
                        help="text the model reads first; it is printed before the sample")
    sample.add_argument("--seed", type=_seed, default=None, metavar="S",
                        help="seed of the sampling: the same seed gives the same text "
                             "(default: random)")

    commands.add_parser(
        "bench", help="run the benchmark suite's quick mode (from a source checkout)",
        description="Run benchmarks/bench_train.py --quick from the source repository "
                    "(it does not ship in the installed package). Any further arguments "
                    "are passed on to it, e.g. 'crnn bench --sizes char --memory'.")
    return parser, commands.choices


# -- train ------------------------------------------------------------------------------

def _encode_prime(prime, vocab):
    """Token ids of ``prime`` (None when empty), or _Error naming the unknown characters."""
    if not prime:
        return None
    try:
        return _corpus.encode(prime, vocab)
    except ValueError as exc:
        raise _Error(f"--prime: {exc}") from None


def _sample_chars(model, vocab, length, temperature, seed, prime_ids=None):
    """``length`` generated characters, one at a time as they are sampled; without a
    prime, those that follow a newline."""
    if prime_ids is None and "\n" in vocab:
        # Asks the model for text that starts a line, rather than text that
        # follows a random character.
        prime_ids = _corpus.encode("\n", vocab)
    try:
        ids = model._generate(length, prime_ids, temperature, seed)
        for i in ids:
            yield vocab[i]
    except ValueError as exc:       # non-finite outputs
        raise _Error(f"MODEL: {str(exc).removeprefix('generate: ')}") from None


def _sample_text(model, vocab, length, temperature, seed):
    return "".join(_sample_chars(model, vocab, length, temperature, seed))


def _clip_if_finite(loss, grads, max_norm):
    """Clip ``grads`` in place to ``max_norm``; False if the loss or a gradient is not finite."""
    if not math.isfinite(loss):
        return False
    try:
        clip_grad_norm(grads, max_norm, error_if_nonfinite=True)
    except RuntimeError:        # the total norm is NaN or infinite
        return False
    return True


def _ranks(args):
    """The MPI ranks of ``--distributed`` (None without it)."""
    if not args.distributed:
        return None
    try:
        from mpi4py import MPI
    except ImportError:
        raise _Error("--distributed needs mpi4py: pip install 'crnn[mpi]', then run "
                     "'mpiexec -n N crnn train --distributed ...'") from None
    from crnn import _distributed
    ranks = _distributed.Ranks(MPI.COMM_WORLD)
    if args.batch < ranks.size:
        raise _Error(f"--batch {args.batch}: fewer streams than the {ranks.size} ranks")
    return ranks


def _train(args):
    ranks = _ranks(args)
    try:
        return _train_ranks(args, ranks)
    except BaseException as exc:
        if ranks is None or ranks.size == 1:
            raise
        if not getattr(exc, "_collective", False):
            ranks.abort(exc)        # this rank alone: the others would wait for it forever
        if ranks.rank != 0:
            return 1                # rank 0 says why
        raise


def _train_ranks(args, ranks):
    error = None
    try:
        text, source = _read_text(args.text_file)
        if not text:
            raise _Error(f"TEXT_FILE: {args.text_file!r} is empty")
        vocab = _corpus.make_vocab(text)
        streams = _Streams(_corpus.encode(text, vocab), args.batch, args.seq_len)
        if ranks is None or ranks.rank == 0:        # rank 0 alone writes
            _check_output_path(args.out, args.text_file)
    except _Error as exc:
        if ranks is None:
            raise
        error = exc
    if ranks is not None:
        ranks.agree(error, kinds=(_Error,))
        # This rank's share of the streams (each a contiguous part of the text).
        mine = np.array_split(np.arange(args.batch), ranks.size)[ranks.rank]
        streams.columns = slice(int(mine[0]), int(mine[-1]) + 1)
    try:
        model = RNN(len(vocab), args.hidden, len(vocab), seed=args.seed)
    except MemoryError:
        raise _Error(f"--hidden {args.hidden}: not enough memory for the weights") from None
    optimizer = Adam(model.params, lr=args.lr)
    say = print if ranks is None or ranks.rank == 0 else _silent

    ranks_note = "" if ranks is None else f", over {ranks.size} ranks"
    say(f"crnn train: {len(text):,} characters of {source}, {len(vocab)} distinct; "
        f"{args.batch} streams of {streams.windows} windows of {args.seq_len}{ranks_note}",
        flush=True)
    say(f"model: {model!r}; Adam lr {args.lr:g}, clip {args.clip:g}; "
        f"loss in nats per character (uniform guess: {math.log(len(vocab)):.3f})", flush=True)
    # SIGTERM as Ctrl-C: save, then stop (main thread only: a caller's thread can't).
    main_thread = threading.current_thread() is threading.main_thread()
    old_term = signal.signal(signal.SIGTERM, _on_sigterm) if main_thread else None
    try:
        from crnn import _distributed
        with _signals.Guard() as guard, _distributed.threads_for(ranks):
            return _train_loop(args, model, optimizer, streams, vocab, guard, ranks, say)
    finally:
        if main_thread and old_term is not None:    # None: a handler set outside Python
            signal.signal(signal.SIGTERM, old_term)


def _silent(*args, **kwargs):
    pass


# --distributed: what a rank with a pending signal adds to the step's Allreduce
_STOP_CODES = {signal.SIGINT: 1, signal.SIGTERM: 1000}


def _check_step(loss, grads, args, step):
    """Clip the gradients; _Error when they or the loss are not finite."""
    if not _clip_if_finite(loss, grads, args.clip):
        # Stop before the optimizer spreads NaN into the weights.
        # (distributed: the same on every rank, which all stop alike)
        raise _collective(_nonfinite(args, step))


def _nonfinite(args, step):
    return _Error(f"the loss or gradients became non-finite at step {step}; try a lower "
                  f"--lr. The last checkpoint in {args.out!r} is kept.")


def _collective(exc):
    exc._collective = True
    return exc


def _train_loop(args, model, optimizer, streams, vocab, guard, ranks, say):
    rank0 = ranks is None or ranks.rank == 0
    save = (lambda: _save_checkpoint(model, vocab, args.out)) if rank0 else (lambda: None)
    width = len(str(args.steps))
    h = None
    step = 0
    losses = []                 # of the steps since the last progress line
    first_loss = last_loss = math.nan
    start = tick = time.perf_counter()
    # Distributed, signals are held for the whole run and read at every step
    # instead: a signal on any rank stops every rank after the same step (else
    # the others would wait in the next Allreduce forever).
    held = guard.hold() if ranks is not None else contextlib.nullcontext()
    try:
        with held:
            for step in range(1, args.steps + 1):
                x, target, restart = streams.next()
                h0 = None if restart else h
                if ranks is None:
                    # One compiled call, the update included: never half an update.
                    loss, h_next, updated = model._train_step(
                        x, target, optimizer, args.clip, None, h0, None, "mean", None)
                    if not updated:
                        raise _nonfinite(args, step)
                    h = h_next
                else:
                    loss, grads, h, stop = ranks.loss_and_grad(
                        model, x[:, streams.columns], target[:, streams.columns], h0,
                        stop=_STOP_CODES.get(guard.pending, 0))
                    _check_step(loss, grads, args, step)
                    optimizer.step(grads)
                    if stop:        # the same step on every rank
                        raise _Terminated if stop >= _STOP_CODES[signal.SIGTERM] else \
                            KeyboardInterrupt
                losses.append(loss)
                if step == 1:
                    first_loss = loss

                if step == 1 or step % args.log_every == 0 or step == args.steps:
                    last_loss = float(np.mean(losses))
                    rate = len(losses) / (time.perf_counter() - tick)
                    say(f"step {step:>{width}}/{args.steps}  loss {last_loss:.3f} nats/char  "
                        f"{rate:5.1f} steps/s  {time.perf_counter() - start:5.0f} s",
                        flush=True)
                    losses.clear()
                if args.sample_every and step % args.sample_every == 0 and rank0:
                    sample = _sample_text(model, vocab, _TRAIN_SAMPLE_LENGTH,
                                          _TRAIN_SAMPLE_TEMPERATURE, args.seed + step)
                    say(f"--- sample at step {step} ---\n{sample}\n---", flush=True)
                if args.checkpoint_every and step % args.checkpoint_every == 0 \
                        and step != args.steps:
                    save()
                if not losses:
                    # Steps/s measures training only, not the printing, sampling and saving.
                    tick = time.perf_counter()
    except KeyboardInterrupt as exc:
        save()
        what = "terminated" if isinstance(exc, _Terminated) else "interrupted"
        say(f"\n{what} at step {step}: model saved to {args.out}", flush=True)
        return 143 if isinstance(exc, _Terminated) else 130
    save()
    say(f"done: {args.steps} steps in {time.perf_counter() - start:.0f} s, loss "
        f"{last_loss:.3f} nats/char; model saved to {args.out}\n"
        f"sample from it with: crnn sample {args.out}", flush=True)
    if last_loss > 10 * first_loss:
        say(f"crnn train: warning: training diverged: the loss rose from {first_loss:.3f} "
            f"to {last_loss:.3g} nats/char; try a lower --lr", file=sys.stderr, flush=True)
    return 0


# -- sample -----------------------------------------------------------------------------

def _sample(args):
    model, vocab = _load_checkpoint(args.model)
    prime_ids = _encode_prime(args.prime, vocab)
    out = sys.stdout
    out.write(args.prime)
    out.flush()
    # Printed as sampled, so that a long sample shows at once, and Ctrl-C keeps it.
    for char in _sample_chars(model, vocab, args.length, args.temperature, args.seed,
                              prime_ids):
        out.write(char)
        out.flush()
    out.write("\n")
    out.flush()
    return 0


# -- bench ------------------------------------------------------------------------------

def _find_bench():
    """benchmarks/bench_train.py of the repository crnn runs from, else of the cwd, or None."""
    package_root = Path(__file__).resolve().parent.parent     # src/ in a checkout
    for repo in (package_root.parent, Path.cwd()):
        script = repo / _BENCH_SCRIPT
        if script.is_file():
            return script
    return None


def _bench(extra):
    script = _find_bench()
    if script is None:
        raise _Error(f"{_BENCH_SCRIPT} not found: the benchmarks ship with the source "
                     f"repository, not the installed package; run 'crnn bench' in a clone")
    # The benchmark must time this very crnn, even when it is not the installed one.
    env = dict(os.environ)
    package_root = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_root, env.get("PYTHONPATH")]))
    try:
        return subprocess.call([sys.executable, str(script), "--quick", *extra], env=env)
    except KeyboardInterrupt:
        return 130


# -- entry point ------------------------------------------------------------------------

def main(argv=None):
    """Run the ``crnn`` command.

    Parameters
    ----------
    argv : list of str, optional
        The arguments after the program name; ``sys.argv[1:]`` by default.

    Returns
    -------
    status : int
        0 on success, 1 on an error, 2 on a usage error, 130 when interrupted
        (Ctrl-C), 143 when terminated (SIGTERM).
    """
    parser, subparsers = _build_parser()
    try:
        args, extra = parser.parse_known_args(argv)
        if extra and args.command != "bench":
            subparsers[args.command].error(f"unrecognized arguments: {' '.join(extra)}")
    except SystemExit as exc:       # --help, --version and usage errors
        return exc.code
    try:
        if args.command == "train":
            return _train(args)
        if args.command == "sample":
            return _sample(args)
        return _bench(extra)
    except _Error as exc:
        print(f"crnn {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except _Terminated:
        return 143
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (e.g. `crnn sample m.npz | head`): stop quietly,
        # and keep Python from complaining again when it flushes stdout at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
