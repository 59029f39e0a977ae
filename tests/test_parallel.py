"""crnn's own threads: the split time loops, projections and weight gradients.

A step is split over crnn's threads by column panels of the state (one
barrier per time step), by batch rows, or by time-step rows (the weight
gradients, summed per thread); which one depends on the sizes. Every split
must give the single-thread answer, and that answer the numpy reference's.
"""

import multiprocessing
import os
import threading

import numpy as np
import pytest

import crnn
import _reference as ref
from conftest import PARAM_NAMES, make_case, make_model, rng_for, tol

# (T, B, D, H, O): sizes that take each split (panels are 16-64 columns wide,
# so H = 130 and 300 are split by columns with a ragged last panel; H = 64
# with B = 32 by rows; B = 1 and H = 100 runs whole; the last one is large
# enough for the projections to be split by rows and the weight gradients by
# time steps), with tails everywhere.
SHAPES = [(5, 6, 9, 130, 7), (4, 32, 5, 64, 33), (7, 3, 11, 300, 5), (6, 1, 4, 100, 3),
          (3, 13, 200, 96, 150), (25, 16, 200, 128, 200)]


@pytest.fixture
def threads():
    """Sets crnn's thread count for one test, and restores it."""
    before = crnn.get_num_threads()
    yield crnn.set_num_threads
    crnn.set_num_threads(before)


def _call(model, case, norms=False):
    kw = dict(h0=case["h0"], lengths=case["lengths"], reduction="sum")
    if norms:
        kw["return_hidden_grads"] = True
    out = model.loss_and_grad(case["x"], case["target"], **kw)
    y, h_last = model.forward(case["x"], h0=case["h0"], lengths=case["lengths"])
    return out, y, h_last


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("opts", ["plain", "tokens+lengths", "per-seq+h0", "relu+linear"])
@pytest.mark.parametrize("n", [2, 3])
def test_threads_match_one_thread_and_reference(threads, dtype, shape, opts, n):
    T, B, D, H, O = shape
    rng = rng_for("parallel", dtype, shape, opts)
    output = "linear" if opts == "relu+linear" else "softmax"
    nonlin = "relu" if opts == "relu+linear" else "tanh"
    model = make_model(D, H, O, nonlinearity=nonlin, output=output, dtype=dtype, rng=rng)
    case = make_case(rng, T, B, D, H, O, tokens="tokens" in opts, output=output,
                     per_step=opts != "per-seq+h0", lengths="lengths" in opts,
                     h0="h0" in opts, dtype=dtype)
    threads(1)
    (loss1, g1, h1, *rest1), y1, hl1 = _call(model, case, norms=True)
    threads(n)
    (loss2, g2, h2, *rest2), y2, hl2 = _call(model, case, norms=True)
    # The weight gradients are summed in a different order (per thread, then
    # added): float32 rounding noise, relative to the gradient's scale.
    rtol, atol = (1e-12, 1e-13) if dtype == "float64" else (1e-4, 1e-5)
    np.testing.assert_allclose(loss2, loss1, rtol=rtol)
    for k in PARAM_NAMES:
        scale = max(1.0, float(np.abs(g1[k]).max()))
        np.testing.assert_allclose(g2[k], g1[k], rtol=rtol, atol=atol * scale, err_msg=k)
    np.testing.assert_allclose(h2, h1, rtol=rtol, atol=atol)
    np.testing.assert_allclose(y2, y1, rtol=rtol, atol=atol)
    np.testing.assert_allclose(hl2, hl1, rtol=rtol, atol=atol)
    np.testing.assert_allclose(rest2[0], rest1[0], rtol=rtol, atol=atol)  # ‖∂L/∂h_t‖
    rloss, rgrads, rh = ref.loss_and_grad(model.params, case["x"], case["target"],
                                          h0=case["h0"], lengths=case["lengths"],
                                          nonlinearity=nonlin, output=output,
                                          reduction="sum")
    rtol, atol = tol(dtype)
    np.testing.assert_allclose(loss2, rloss, rtol=rtol * 10)
    for k in PARAM_NAMES:
        scale = max(1.0, float(np.abs(rgrads[k]).max()))
        np.testing.assert_allclose(g2[k], rgrads[k], rtol=rtol * 10, atol=atol * 10 * scale,
                                   err_msg=k)


def test_num_threads_api(threads):
    """Positive ints only (TypeError for other types); capped at the CPUs available."""
    assert crnn.get_num_threads() >= 1
    threads(1)
    assert crnn.get_num_threads() == 1
    threads(10**6)
    assert crnn.get_num_threads() == min(crnn._threads._cpu_count(), 64)
    threads(1)
    for bad in (0, -1):
        with pytest.raises(ValueError, match="positive integer"):
            crnn.set_num_threads(bad)
    for bad in (1.5, True, "2", None):
        with pytest.raises(TypeError, match="positive integer"):
            crnn.set_num_threads(bad)
    assert crnn.get_num_threads() == 1


def _child_step(queue):
    model = crnn.RNN(4, 256, 3, seed=0)
    x = np.ones((5, 8, 4))
    loss, _, _ = model.loss_and_grad(x, np.zeros((5, 8), dtype=np.int64))
    queue.put(loss)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork on this platform")
def test_forked_child_runs_threaded_step(threads):
    """A child forked after the workers started has none: it must start its own."""
    threads(2)
    model = crnn.RNN(4, 256, 3, seed=0)
    x = np.ones((5, 8, 4))
    expected, _, _ = model.loss_and_grad(x, np.zeros((5, 8), dtype=np.int64))
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    proc = ctx.Process(target=_child_step, args=(queue,))
    proc.start()
    proc.join(60)
    assert proc.exitcode == 0, "the forked child did not finish its step"
    assert queue.get(timeout=5) == pytest.approx(expected, rel=1e-12)


def test_concurrent_calls_while_threads_are_busy(threads):
    """Calls from several Python threads at once: one gets crnn's workers, the
    others run alone on their caller's thread; all get the sequential answers."""
    threads(2)
    rng = rng_for("parallel-concurrent")
    model = make_model(40, 192, 30, dtype="float32", rng=rng)
    cases = [make_case(rng, 12, 8 + i, 40, 192, 30, lengths=i % 2 == 1, dtype="float32")
             for i in range(4)]
    expected = [_call(model, c)[0] for c in cases]
    results = [None] * len(cases)

    def work(i):
        for _ in range(5):
            results[i] = _call(model, cases[i])[0]

    workers = [threading.Thread(target=work, args=(i,)) for i in range(len(cases))]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    for got, want in zip(results, expected):
        np.testing.assert_allclose(got[0], want[0], rtol=2e-5)
        for k in PARAM_NAMES:
            np.testing.assert_allclose(got[1][k], want[1][k], rtol=2e-5, atol=2e-6)
