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


def _interrupt_once_running(before, signum=signal.SIGINT):
    """Send the signal as soon as the call's time loop has run a chunk.

    Before its loops a call has phases that are not cut (the input projections
    over all steps: here 4e6 rows, written to fresh memory), which take a
    machine-dependent while (seconds under AddressSanitizer): the signal waits
    for the loop, so that what is timed is the loop's answer to it.
    """
    sent, stop = {}, threading.Event()

    def watch():
        while not stop.is_set():
            if _engine.chunks_run() > before:
                sent["time"] = time.perf_counter()
                os.kill(os.getpid(), signum)
                return
            time.sleep(0.001)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return sent, stop


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
    sent, stop = _interrupt_once_running(before)
    try:
        with pytest.raises(KeyboardInterrupt):
            run()
    finally:
        stop.set()
    answered = time.perf_counter() - sent["time"]
    chunks = _engine.chunks_run() - before
    # Stopped early: the 4000 forward chunks (and as many backward) did not all run.
    assert chunks < 4000, chunks
    # Handlers run every 0.05 s: the call returns a fraction of a second after the
    # signal (the 4000 chunks take ~0.5 s, several seconds under the sanitizers).
    assert answered < 0.5, answered
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
    timer = _interrupt_after(0.1, signal.SIGTERM)      # the call takes ~0.8 s
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


# -- fit: Ctrl-C keeps what was learned; a failure restores all, even when interrupted ---

class _SignallingAdam(crnn.Adam):
    """Adam that sends itself SIGINT in the middle of update ``at`` (after the first of
    the parameter arrays), and keeps a copy of the parameters after every whole update."""

    def __init__(self, params, at, **kwargs):
        super().__init__(params, **kwargs)
        self.at, self.after, self._arrays = at, [], 0

    def _update(self, p, g, state, first):
        super()._update(p, g, state, first)
        self._arrays += 1
        if self.step_count == self.at and self._arrays == 1:
            os.kill(os.getpid(), signal.SIGINT)

    def step(self, grads):
        self._arrays = 0
        super().step(grads)
        self.after.append({k: v.copy() for k, v in self.params.items()})


def _fit_data(cell_cls, seed=0):
    rng = rng_for("fit-interrupt", cell_cls.__name__, seed)
    model = cell_cls(3, 6, 2, num_layers=2, seed=seed)
    x = rng.standard_normal((5, 24, 3))
    y = rng.integers(2, size=24)
    return model, x, y


@pytest.mark.parametrize("cls", [crnn.RNN, crnn.LSTM, crnn.GRU])
def test_ctrl_c_in_fit_keeps_the_last_whole_update_and_the_history(cls):
    model, x, y = _fit_data(cls)
    # 24 sequences in batches of 4: 6 updates an epoch; Ctrl-C during update 9
    opt = _SignallingAdam(model.params, at=9, lr=0.05)
    with pytest.raises(KeyboardInterrupt):
        model.fit(x, y, epochs=5, batch_size=4, optimizer=opt, verbose=0, seed=0)
    assert opt.step_count == 9 and len(opt.after) == 9     # update 9 completed, whole
    for k, v in model.params.items():
        assert np.array_equal(v, opt.after[-1][k]), k
    assert model.history == {"loss": [pytest.approx(model.history["loss"][0])]}
    assert len(model.history["loss"]) == 1                 # epoch 1 completed, epoch 2 not
    # The model trains on from there.
    model.fit(x, y, epochs=1, batch_size=4, optimizer=opt, verbose=0)


class _FailAt(crnn.callbacks.Callback):
    def on_epoch_end(self, model, epoch, history):
        if epoch == 1:
            raise RuntimeError("bad data")


class _SignallingRestore(crnn.Adam):
    """Adam whose load_state_dict (fit's restore) receives SIGINT part-way."""

    def load_state_dict(self, state_dict):
        os.kill(os.getpid(), signal.SIGINT)
        super().load_state_dict(state_dict)


@pytest.mark.parametrize("cls", [crnn.RNN, crnn.LSTM])
def test_ctrl_c_during_the_restore_after_a_failure_still_restores_everything(cls):
    model, x, y = _fit_data(cls)
    opt = _SignallingRestore(model.params, lr=0.05)
    opt.step({k: np.ones_like(v) for k, v in model.params.items()})
    before = {k: v.copy() for k, v in model.params.items()}
    opt_before = opt.state_dict()
    with pytest.raises(KeyboardInterrupt) as info:
        model.fit(x, y, epochs=3, batch_size=4, optimizer=opt, verbose=0,
                  callbacks=[_FailAt()])
    assert isinstance(info.value.__context__, RuntimeError)
    for k, v in model.params.items():
        assert v.tobytes() == before[k].tobytes(), k
    assert opt.step_count == opt_before["step_count"]
    for k, bufs in opt_before["state"].items():
        for n, b in bufs.items():
            assert np.array_equal(opt.state[k][n], b), (k, n)


def test_ctrl_c_inside_a_long_step_of_fit_keeps_the_previous_update(engine):
    """The interrupt lands in the engine (a long loss_and_grad), not between steps."""
    # 2,000,000 steps of one sequence: one long loss_and_grad
    model = crnn.RNN(2, 16, 2, seed=0)
    x = np.zeros((2_000_000, 1, 2), dtype=np.float32)
    y = np.zeros(1, dtype=np.intp)
    _engine.set_chunk_flops(2.0 * 16 * 16 * 1000)
    opt = crnn.SGD(model.params, lr=0.01)
    model.fit(x[:100], y, epochs=1, batch_size=1, optimizer=opt, verbose=0)
    after_one = {k: v.copy() for k, v in model.params.items()}
    timer = _interrupt_after(0.1)     # the step takes ~0.5 s
    try:
        with pytest.raises(KeyboardInterrupt):
            model.fit(x, y, epochs=1, batch_size=1, optimizer=opt, verbose=0)
    finally:
        timer.cancel()
    assert opt.step_count == 1
    for k, v in model.params.items():
        assert np.array_equal(v, after_one[k]), k


def test_a_signal_while_a_guard_installs_its_handlers_leaves_nothing_behind(monkeypatch):
    """Ctrl-C right after the first handler is wrapped: it is handled once the guard has
    put every handler back, and no wrapper stays installed."""
    from crnn import _signals
    before = signal.getsignal(signal.SIGINT)
    real = signal.signal
    sent = []

    def installing(sig, handler):
        old = real(sig, handler)
        if not sent and getattr(handler, "__self__", None) is not None:
            sent.append(sig)
            os.kill(os.getpid(), signal.SIGINT)
        return old

    monkeypatch.setattr(signal, "signal", installing)
    with pytest.raises(KeyboardInterrupt):
        with _signals.Guard():
            pytest.fail("the block must not run: the signal came first")
    monkeypatch.undo()
    assert sent and signal.getsignal(signal.SIGINT) is before


def test_a_sigterm_held_after_a_ctrl_c_wins():
    """Two signals inside hold(): SIGTERM (stop, and say so) is the one handled."""
    from crnn import _signals

    class Term(Exception):
        pass

    def on_term(signum, frame):
        raise Term

    old = signal.signal(signal.SIGTERM, on_term)
    try:
        with pytest.raises(Term):
            with _signals.Guard() as guard, guard.hold():
                os.kill(os.getpid(), signal.SIGINT)
                os.kill(os.getpid(), signal.SIGTERM)
                for _ in range(1000):       # let Python run both handlers
                    pass
                assert guard.pending == signal.SIGTERM
    finally:
        signal.signal(signal.SIGTERM, old)


def test_ctrl_c_inside_a_long_train_step_changes_nothing(engine):
    """The update runs in the same compiled call as BPTT: a Ctrl-C during the call stops
    it before the update, and the optimizer's count is not advanced either."""
    model = crnn.LSTM(2, 16, 2, seed=0)
    x = np.zeros((1_000_000, 1, 2), dtype=np.float32)
    y = np.zeros(1, dtype=np.intp)
    _engine.set_chunk_flops(2.0 * 16 * 16 * 1000)
    opt = crnn.Adam(model.params, lr=0.01)
    model.train_step(x[:100], y, opt, clip_norm=1.0)
    before = {k: v.copy() for k, v in model.params.items()}
    state = opt.state_dict()
    timer = _interrupt_after(0.1)     # the step takes ~1 s
    try:
        with pytest.raises(KeyboardInterrupt):
            model.train_step(x, y, opt, clip_norm=1.0)
    finally:
        timer.cancel()
    assert opt.step_count == 1
    for k, v in model.params.items():
        assert np.array_equal(v, before[k]), k
    for k, bufs in state["state"].items():
        for n, b in bufs.items():
            assert np.array_equal(opt.state[k][n], b), (k, n)
    model.train_step(x[:100], y, opt)       # and it trains on
    assert opt.step_count == 2
