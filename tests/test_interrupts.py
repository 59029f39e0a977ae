"""Interrupts: Ctrl-C (or any signal whose handler raises) stops a long call
within a fraction of a second, and loses nothing.

The engine cuts each time loop into chunks of steps and runs Python's signal
handlers between them (main thread only); a chunk takes up where the previous
one stopped, so cutting a loop changes nothing: not a bit on one thread; on
two, only the order in which the parts' bias and norm sums are added (parts
claim chunks as they come), within rounding.
"""

import os
import signal
import threading
import time

import numpy as np
import pytest

import crnn
from crnn import _engine
from conftest import make_case, rng_for

CLASSES = {"rnn": crnn.RNN, "lstm": crnn.LSTM, "gru": crnn.GRU}


@pytest.fixture
def engine():
    """Restores the thread count, the split and the chunk size after a test."""
    threads, flops = crnn.get_num_threads(), _engine.chunk_flops()
    yield _engine
    crnn.set_num_threads(threads)
    _engine.force_split(None)
    _engine.set_chunk_flops(flops)
    _engine.calm()


def _all(model, case):
    loss, grads, h, norms = model.loss_and_grad(case["x"], case["target"],
                                                lengths=case["lengths"], reduction="sum",
                                                return_hidden_grads=True)
    y, h_last = model.forward(case["x"], lengths=case["lengths"])
    return [loss, norms, y] + [grads[k] for k in sorted(grads)]


SPLITS = ["whole", "units", "rows", "pairs"]


@pytest.mark.parametrize("split", SPLITS)
@pytest.mark.parametrize("cell", list(CLASSES))
def test_loops_cut_into_single_steps_give_the_same_result(engine, cell, split):
    """Every split, forward and BPTT, one step per chunk: the one-chunk result."""
    if split != "whole" and _engine.max_threads() < 2:
        pytest.skip("no worker threads on this platform")
    T, B, D, H, O = 9, 13, 5, 130, 4
    rng = rng_for("chunks", cell, split)
    model = CLASSES[cell](D, H, O, num_layers=2, bidirectional=split == "pairs",
                          dtype="float64", seed=int(rng.integers(1 << 30)))
    case = make_case(rng, T, B, D, H, O, lengths=True, dtype="float64")
    crnn.set_num_threads(1 if split == "whole" else 2)
    _engine.force_split(split)
    whole = _all(model, case)
    _engine.set_chunk_flops(1.0)
    before = _engine.chunks_run()
    cut = _all(model, case)
    # 2 layers · (forward and backward of loss_and_grad, forward again) · T chunks each
    dirs = 2 if split == "pairs" else 1
    assert _engine.chunks_run() - before >= 2 * 3 * T * (1 if split == "pairs" else dirs)
    for a, b in zip(whole, cut):
        if split == "whole":
            assert np.array_equal(a, b)
        else:
            np.testing.assert_allclose(b, a, rtol=1e-13, atol=1e-15)


class _Stop(Exception):
    pass


def _interrupt_after(seconds, signum=signal.SIGINT):
    timer = threading.Timer(seconds, os.kill, (os.getpid(), signum))
    timer.start()
    return timer


@pytest.mark.parametrize("call", ["forward", "loss_and_grad"])
def test_ctrl_c_stops_a_long_call_soon_and_the_model_stays_usable(engine, call):
    model = crnn.RNN(4, 32, 2, seed=0)
    T = 4_000_000
    x = np.zeros((T, 1), dtype=np.intp)
    target = np.zeros((T, 1), dtype=np.intp)
    # Chunks of 1000 steps: the call runs in 4000 of them, unless it is stopped.
    _engine.set_chunk_flops(2.0 * 32 * 32 * 1000)
    short = model.loss_and_grad(x[:50], target[:50])
    run = (lambda: model.forward(x)) if call == "forward" else \
        (lambda: model.loss_and_grad(x, target))
    before = _engine.chunks_run()
    timer = _interrupt_after(0.3)
    start = time.perf_counter()
    try:
        with pytest.raises(KeyboardInterrupt):
            run()
    finally:
        timer.cancel()
    elapsed = time.perf_counter() - start
    chunks = _engine.chunks_run() - before
    # Stopped early: the 4000 forward chunks (and as many backward) did not all run.
    assert chunks < 4000, chunks
    assert elapsed < 0.3 + 1.0, elapsed
    # The threads and the model work as before.
    again = model.loss_and_grad(x[:50], target[:50])
    assert again[0] == short[0]
    for k in short[1]:
        assert np.array_equal(again[1][k], short[1][k])


def test_a_raising_handler_of_another_signal_stops_the_call(engine):
    """Not only Ctrl-C: e.g. a SIGTERM handler that raises (crnn train's)."""
    model = crnn.LSTM(4, 16, 2, seed=0)
    x = np.zeros((2_000_000, 1), dtype=np.intp)
    _engine.set_chunk_flops(2.0 * 64 * 16 * 1000)

    def handler(signum, frame):
        raise _Stop

    old = signal.signal(signal.SIGTERM, handler)
    timer = _interrupt_after(0.2, signal.SIGTERM)
    before = _engine.chunks_run()
    try:
        with pytest.raises(_Stop):
            model.forward(x)
    finally:
        timer.cancel()
        signal.signal(signal.SIGTERM, old)
    assert _engine.chunks_run() - before < 2000


def test_calls_from_other_threads_are_not_interrupted(engine):
    """Python runs handlers in the main thread only: a worker's call runs to its end."""
    model = crnn.RNN(4, 32, 2, seed=0)
    x = np.zeros((20_000, 1), dtype=np.intp)
    _engine.set_chunk_flops(2.0 * 32 * 32 * 10)
    out = {}
    worker = threading.Thread(target=lambda: out.update(y=model.forward(x)[0]))
    worker.start()
    worker.join()
    np.testing.assert_array_equal(out["y"], model.forward(x)[0])
