"""crnn's own threads, crnn's kernel at each ISA level, and the BLAS-only path.

A time loop runs whole, split by hidden units (one barrier per step), by
batch rows, or, bidirectional, as a pair of directions; the all-steps
products are blocks of single-threaded BLAS calls on crnn's threads. Every
split, every level of the per-step kernel and of the float32 cells, and
BLAS for the per-step products must give the single-thread answer, and that
the numpy reference's. Each test forces its path and asserts from the
engine's counters that the path really ran. A stall at a barrier (a core
taken by another process, simulated here) must hand the rest of the loop to
one thread and keep the next calls on one thread until the machine is calm.
"""

import multiprocessing
import os
import threading

import numpy as np
import pytest

import crnn
from crnn import _engine
import _reference as ref
from conftest import PARAM_NAMES, make_case, make_model, rng_for, tol

CLASSES = {"rnn": crnn.RNN, "lstm": crnn.LSTM, "gru": crnn.GRU}
# (T, B, D, H, O): units need two panels or more (panels are 8-64 columns
# wide), rows need more than one block of 4 rows; tails everywhere.
SHAPE = (7, 13, 9, 130, 7)


@pytest.fixture
def threads():
    """Sets crnn's thread count for one test, and restores it and every override."""
    before = crnn.get_num_threads()
    yield crnn.set_num_threads
    crnn.set_num_threads(before)
    _engine.force_split(None)
    _engine.test_stall(0)
    _engine.set_kernel(_engine.kernels()[-1])
    _engine.set_cell_level(_engine.cell_levels()[-1])
    _engine.calm()


def _counted(f, *, calm=True, until=None):
    """f()'s result and how the engine's counters moved while it ran.

    A machine event can change the path that rightly runs: a worker slow to
    wake sits a loop out, a stall hands a loop to one thread. With ``calm``,
    run again (up to 5 times, forgetting contention each time) until a run
    sees no stall and ``until(counters)`` holds.
    """
    for attempt in range(5 if calm else 1):
        if calm:
            _engine.calm()
        before = _engine.counters()
        out = f()
        after = _engine.counters()
        ran = {k: after[k] - before[k] for k in after}
        if not calm or (ran["stalls"] == 0 and (until is None or until(ran))):
            break
    return out, ran


def _case(cell, dtype, *, bi=False, key=""):
    T, B, D, H, O = SHAPE
    rng = rng_for("parallel", cell, dtype, bi, key)
    model = CLASSES[cell](D, H, O, num_layers=2, bidirectional=bi, dtype=dtype,
                          seed=int(rng.integers(1 << 30)))
    case = make_case(rng, T, B, D, H, O, lengths=True, h0=False, dtype=dtype)
    return model, case


def _call(model, case):
    loss, grads, h, norms = model.loss_and_grad(case["x"], case["target"],
                                                lengths=case["lengths"], reduction="sum",
                                                return_hidden_grads=True)
    y, _ = model.forward(case["x"], lengths=case["lengths"])
    return loss, grads, norms, y


def _same(a, b, dtype, vs):
    rtol, atol = (1e-12, 1e-13) if dtype == "float64" else (2e-4, 2e-5)
    if vs == "reference":
        rtol, atol = tol(dtype)
        rtol, atol = rtol * 10, atol * 10
    la, ga = a[0], a[1]
    lb, gb = b[0], b[1]
    np.testing.assert_allclose(la, lb, rtol=rtol)
    for k in gb:
        scale = max(1.0, float(np.abs(gb[k]).max()))
        np.testing.assert_allclose(ga[k], gb[k], rtol=rtol, atol=atol * scale, err_msg=k)
    if len(b) > 2:
        np.testing.assert_allclose(a[2], b[2], rtol=rtol, atol=atol, err_msg="norms")
        np.testing.assert_allclose(a[3], b[3], rtol=rtol, atol=atol, err_msg="y")


def _reference(model, case, cell):
    loss, grads, _ = ref.loss_and_grad(model.params, case["x"], case["target"],
                                       lengths=case["lengths"], reduction="sum", cell=cell,
                                       num_layers=model.num_layers,
                                       bidirectional=model.bidirectional)
    return loss, grads


SPLITS = [("whole", False), ("units", False), ("rows", False), ("pairs", True),
          ("units", True), ("rows", True)]


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("split,bi", SPLITS, ids=[f"{s}-{'bi' if b else 'uni'}" for s, b in SPLITS])
@pytest.mark.parametrize("cell", list(CLASSES))
def test_every_split_matches_one_thread_and_reference(threads, cell, split, bi, dtype):
    if crnn._engine.max_threads() < 2:
        pytest.skip("no worker threads on this platform")
    model, case = _case(cell, dtype, bi=bi)
    threads(1)
    one = _call(model, case)
    threads(2)
    _engine.force_split(split)
    _engine.calm()
    # 2 layers, each a forward and a backward loop per direction, then forward again
    loops = 6 * (2 if bi else 1)
    want = loops // 2 if split == "pairs" else loops
    two, ran = _counted(lambda: _call(model, case), until=lambda r: r[split] == want)
    # The split ran (a machine event may hand a loop to one thread: see _counted).
    assert 1 <= ran[split] <= want, ran
    if split != "whole":
        assert ran["split_tasks"] >= 1, ran
    _same(two, one, dtype, "one thread")
    _same(two, _reference(model, case, cell), dtype, "reference")


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("kernel", _engine.kernels())
@pytest.mark.parametrize("cell", list(CLASSES))
def test_every_kernel_level_matches_reference(threads, cell, kernel, dtype):
    """crnn's per-step kernel at every ISA level the CPU has, and BLAS instead of it."""
    model, case = _case(cell, dtype, key="kernel")
    threads(1)
    _engine.set_kernel(kernel)
    assert _engine.kernel() == kernel
    got, ran = _counted(lambda: _call(model, case))
    assert ran["kernel_" + kernel] == 6 and ran["whole"] == 6, ran
    _same(got, _reference(model, case, cell), dtype, "reference")


@pytest.mark.parametrize("level", _engine.cell_levels())
@pytest.mark.parametrize("cell", list(CLASSES))
def test_every_cell_level_matches_reference(threads, cell, level):
    """The float32 cells and softmax passes at every ISA level the CPU has."""
    model, case = _case(cell, "float32", key="cells")
    _engine.set_cell_level(level)
    got, ran = _counted(lambda: _call(model, case))
    assert ran["cells_" + level] == 6, ran
    _same(got, _reference(model, case, cell), "float32", "reference")


@pytest.mark.parametrize("cell", list(CLASSES))
def test_stalls_hand_the_loop_to_one_thread_and_later_calls_stay_on_one(threads, cell):
    """A worker that keeps losing its core (simulated: it sleeps 3 ms before every
    barrier) makes a split loop finish on one thread after its second stall; stalls
    costing more than a quarter of the split time keep the next calls on one thread,
    and calm() brings the threads back. Every answer stays exact."""
    if crnn._engine.max_threads() < 2:
        pytest.skip("no worker threads on this platform")
    model, case = _case(cell, "float64", key="stall")
    threads(1)
    one = _call(model, case)
    threads(2)
    _engine.force_split("units")
    _engine.calm()
    _engine.test_stall(3_000_000)
    got, ran = _counted(lambda: _call(model, case), calm=False)
    assert ran["stalls"] >= 2 and ran["degraded"] >= 1, ran
    _same(got, one, "float64", "one thread")
    for _ in range(5):      # until 100 ms of split work have been judged
        if ran["contended"]:
            break
        _, ran = _counted(lambda: _call(model, case), calm=False)
    assert ran["contended"] >= 1, ran
    _engine.test_stall(0)
    got, ran = _counted(lambda: _call(model, case), calm=False)
    assert ran["split_tasks"] == 0 and ran["units"] == 0 and ran["whole"] == 6, ran
    _same(got, one, "float64", "one thread")
    got, ran = _counted(lambda: _call(model, case), until=lambda r: r["units"] == 6)
    assert ran["units"] >= 1, ran       # threads again
    _same(got, one, "float64", "one thread")


def test_an_occasional_stall_keeps_the_threads(threads):
    """One stall now and then (a virtual machine pausing a vCPU) must not put crnn on
    one thread: only stalls that cost a quarter of the split time do."""
    if crnn._engine.max_threads() < 2:
        pytest.skip("no worker threads on this platform")
    model, case = _case("lstm", "float64", key="occasional")
    threads(1)
    one = _call(model, case)
    threads(2)
    _engine.force_split("units")
    for attempt in range(5):
        # The host's own stalls and contention would add to the one simulated
        # here: try until a run sees that one alone, or until a run without the
        # simulated stall is calm, which makes the host's noise no excuse.
        _engine.calm()
        _engine.test_stall(10_000_000, count=1)
        got, ran = _counted(lambda: _call(model, case), calm=False)
        if ran["stalls"] == 1 and ran["degraded"] == 0 and ran["contended"] == 0:
            break
        _engine.calm()
        _, control = _counted(lambda: _call(model, case), calm=False)
        if ran["stalls"] == 1 and control["stalls"] == 0 and control["contended"] == 0:
            break       # a calm host, and yet the one stall changed the threads: a failure
    else:
        pytest.skip(f"the machine stalls on its own (last run: {ran}); nothing to measure")
    assert ran["degraded"] == 0 and ran["contended"] == 0, ran
    _same(got, one, "float64", "one thread")
    got, ran = _counted(lambda: _call(model, case), calm=False)
    assert ran["split_tasks"] > 0, ran      # still on threads


def test_blas_thread_limit_caps_crnn(threads):
    """threadpoolctl's threadpool_limits(1) on scipy's BLAS makes crnn single-threaded too."""
    threadpoolctl = pytest.importorskip("threadpoolctl")
    if _engine.blas_threads() < 2 or crnn._engine.max_threads() < 2:
        pytest.skip("scipy's BLAS thread count is not visible or already 1")
    model, case = _case("lstm", "float32", key="blas-limit")
    threads(2)
    _engine.force_split("units")
    _engine.calm()
    _, ran = _counted(lambda: _call(model, case), until=lambda r: r["units"] == 6)
    assert ran["units"] >= 1, ran
    with threadpoolctl.threadpool_limits(limits=1, user_api="blas"):
        _, ran = _counted(lambda: _call(model, case))
    assert ran["units"] == 0 and ran["whole"] == 6, ran
    before = _engine.blas_threads()
    _call(model, case)
    assert _engine.blas_threads() == before, "crnn must restore the BLAS's thread count"


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


def _forked_step():
    # float64: a step split across threads differs from one run whole only in the order
    # of a few sums, so the child's loss must equal the parent's to rounding.
    model = crnn.RNN(4, 256, 3, seed=0, dtype="float64")
    x = np.ones((5, 8, 4))
    return model.loss_and_grad(x, np.zeros((5, 8), dtype=np.int64))[0]


def _child_step(queue):
    _engine.calm()
    before = _engine.counters()["split_tasks"]
    loss = _forked_step()
    queue.put((loss, _engine.counters()["split_tasks"] - before))


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork on this platform")
def test_forked_child_runs_threaded_step(threads):
    """A child forked after the workers started has none: it must start its own."""
    threads(2)
    expected = _forked_step()
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    proc = ctx.Process(target=_child_step, args=(queue,))
    proc.start()
    proc.join(60)
    assert proc.exitcode == 0, "the forked child did not finish its step"
    loss, split = queue.get(timeout=5)
    assert split > 0, "the child ran no task on its threads"
    assert loss == pytest.approx(expected, rel=1e-12)


def test_concurrent_calls_while_threads_are_busy(threads):
    """Calls from several Python threads at once: one gets crnn's workers, the
    others run alone on their caller's thread; all get the sequential answers."""
    threads(2)
    rng = rng_for("parallel-concurrent")
    model = make_model(40, 192, 30, dtype="float32", rng=rng)
    cases = [make_case(rng, 12, 8 + i, 40, 192, 30, lengths=i % 2 == 1, dtype="float32")
             for i in range(4)]
    expected = [_call(model, c) for c in cases]
    results = [None] * len(cases)

    def work(i):
        for _ in range(5):
            results[i] = _call(model, cases[i])

    workers = [threading.Thread(target=work, args=(i,)) for i in range(len(cases))]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    for got, want in zip(results, expected):
        np.testing.assert_allclose(got[0], want[0], rtol=2e-5)
        for k in PARAM_NAMES:
            np.testing.assert_allclose(got[1][k], want[1][k], rtol=2e-5, atol=2e-6)
