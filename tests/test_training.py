"""RNN.fit's training features (issue 5, items 2 and 3).

Truncated BPTT is checked against manual windows: ``loss_and_grad`` on each
window with h0 = the previous window's h_last and per-window lengths, then
an SGD step, exactly as the issue describes the method. Mini-batches are
consecutive slices of the N sequences in the caller's order (shuffle=False).
"""

import sys
import tracemalloc

import numpy as np
import pytest

import crnn
from crnn.callbacks import Callback, EarlyStopping

import _reference as ref
from conftest import PARAM_NAMES, assert_params_bitwise_equal, make_model, rng_for, snapshot

DTYPES = ["float32", "float64"]


def _close(dtype):
    """(rtol, atol) for crnn against crnn on differently split batches."""
    return (1e-10, 1e-13) if np.dtype(dtype) == np.float64 else (2e-5, 1e-6)


def _clone(model):
    twin = crnn.RNN(model.input_size, model.hidden_size, model.output_size,
                    nonlinearity=model.nonlinearity, output=model.output, dtype=model.dtype)
    for k in PARAM_NAMES:
        twin.params[k][...] = model.params[k]
    return twin


def _assert_params_close(a, b, dtype, msg=""):
    rtol, atol = _close(dtype)
    for k in PARAM_NAMES:
        np.testing.assert_allclose(a[k], b[k], rtol=rtol, atol=atol, err_msg=f"{msg} {k}")


# --- manual truncated BPTT ---------------------------------------------------------------------

class _CrnnEngine:
    """Window computations with the model's own loss_and_grad / forward."""

    def __init__(self, model):
        self.model = model

    def loss_and_grad(self, x, target, h0, lengths):
        return self.model.loss_and_grad(x, target, h0=h0, lengths=lengths)

    def forward(self, x, h0, lengths):
        return self.model.forward(x, h0=h0, lengths=lengths)


class _ReferenceEngine:
    """Window computations with the plain-numpy reference (float64)."""

    def __init__(self, model):
        self.model = model
        self.kw = dict(nonlinearity=model.nonlinearity, output=model.output)

    def loss_and_grad(self, x, target, h0, lengths):
        return ref.loss_and_grad(self.model.params, x, target, h0=h0, lengths=lengths, **self.kw)

    def forward(self, x, h0, lengths):
        return ref.forward(self.model.params, x, h0=h0, lengths=lengths, **self.kw)


def manual_tbptt(model, x, target, *, k, batch_size, lr, epochs=1, lengths=None,
                 carry=True, engine=_CrnnEngine):
    """Train a copy of ``model`` by hand with truncated BPTT and SGD; return (params, losses).

    For each consecutive mini-batch: h = 0; for each window [t0, t0+k) the
    sequences still running (length > t0) run from their carried h (zeros if
    not ``carry``) with per-window lengths min(length − t0, k). Per-step
    targets: loss_and_grad on those sequences. Per-sequence targets: only
    the sequences whose last step falls in the window are scored, the mean
    over them; the others just run forward. One SGD step per window with a
    score. Each epoch's loss is the item-weighted mean of the window losses.
    """
    twin = _clone(model)
    eng = engine(twin)
    x, target = np.asarray(x), np.asarray(target)
    T, N = x.shape[:2]
    L_all = np.full(N, T) if lengths is None else np.asarray(lengths)
    per_step = target.ndim == (2 if model.output == "softmax" else 3)
    H = model.hidden_size
    losses = []
    for _ in range(epochs):
        total, count = 0.0, 0
        for lo in range(0, N, batch_size):
            sl = slice(lo, min(lo + batch_size, N))
            xb, L = x[:, sl], L_all[sl]
            tb = target[:, sl] if per_step else target[sl]
            h = np.zeros((len(L), H), dtype=model.dtype)
            for t0 in range(0, T, k):
                t1 = min(t0 + k, T)
                run = L > t0
                if not run.any():
                    break
                xw = xb[t0:t1][:, run]
                lw = np.minimum(L[run] - t0, t1 - t0)
                hw = h[run] if carry else np.zeros((int(run.sum()), H), dtype=model.dtype)
                if per_step:
                    loss, grads, h_last = eng.loss_and_grad(xw, tb[t0:t1][:, run], hw, lw)
                    n = int(lw.sum())
                else:
                    _, h_last = eng.forward(xw, hw, lw)
                    ends = L[run] <= t1
                    n = int(ends.sum())
                    if n:
                        loss, grads, _ = eng.loss_and_grad(xw[:, ends], tb[run][ends],
                                                           hw[ends], lw[ends])
                h[run] = h_last          # the state before this window's update, as in fit
                if n:
                    for key in PARAM_NAMES:
                        twin.params[key] -= (lr * grads[key]).astype(model.dtype)
                    total += loss * n
                    count += n
        losses.append(total / count)
    return twin.params, losses


# lengths: unsorted within one batch (exercises fit's internal sorting), or non-increasing
# over several batches (so the batches are the same whatever order fit batches in).
LENGTHS = {
    "none": None,
    "one-batch": np.array([9, 1, 5, 9, 2, 7, 4]),
    "sorted-batches": np.array([9, 9, 7, 5, 4, 2, 1]),
}


def _data(rng, T, N, D, O, *, tokens, per_step, output="softmax", dtype="float64"):
    x = rng.integers(0, D, (T, N)) if tokens else rng.standard_normal((T, N, D)).astype(dtype)
    if output == "softmax":
        y = rng.integers(0, O, (T, N) if per_step else N)
    else:
        y = rng.standard_normal((T, N, O) if per_step else (N, O)).astype(dtype)
    return x, y


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("k", [3, 4, 9, 20], ids=["k|T", "k∤T", "k=T", "k>T"])
@pytest.mark.parametrize("lengths", list(LENGTHS))
@pytest.mark.parametrize("per_step", [True, False], ids=["per_step", "per_sequence"])
@pytest.mark.parametrize("tokens", [False, True], ids=["floats", "tokens"])
def test_tbptt_equals_manual_windows(tokens, per_step, lengths, k, dtype):
    """fit(bptt=k, sgd, shuffle=False) = manual windows: carried h0, per-window lengths, a step per window."""
    rng = rng_for("tbptt", tokens, per_step, lengths, k, dtype)
    T, N, D, H, O = 9, 7, 4, 5, 3
    model = make_model(D, H, O, dtype=dtype, rng=rng, scale=0.8)
    x, y = _data(rng, T, N, D, O, tokens=tokens, per_step=per_step, dtype=dtype)
    L = LENGTHS[lengths]
    batch_size = N + 1 if lengths == "one-batch" else 3
    want, want_losses = manual_tbptt(model, x, y, k=k, batch_size=batch_size, lr=0.3,
                                     epochs=2, lengths=L)
    history = model.fit(x, y, bptt=k, optimizer="sgd", lr=0.3, shuffle=False,
                        batch_size=batch_size, epochs=2, lengths=L, verbose=0)
    _assert_params_close(model.params, want, dtype)
    np.testing.assert_allclose(history["loss"], want_losses, rtol=_close(dtype)[0] * 10)
    if k < T:
        # The carried state matters: windows restarted from zeros give other weights.
        zeros, _ = manual_tbptt(model, x, y, k=k, batch_size=batch_size, lr=0.3, epochs=2,
                                lengths=L, carry=False)
        assert max(np.max(np.abs(model.params[p] - zeros[p])) for p in PARAM_NAMES) > 1e-3


@pytest.mark.parametrize("per_step", [True, False], ids=["per_step", "per_sequence"])
@pytest.mark.parametrize("lengths", [False, True], ids=["full", "lengths"])
def test_tbptt_equals_manual_windows_by_reference(lengths, per_step):
    """The same equality with the windows computed by the plain-numpy reference (float64, linear head)."""
    rng = rng_for("tbptt-ref", lengths, per_step)
    T, N, D, H, O = 8, 5, 3, 4, 2
    model = make_model(D, H, O, output="linear", rng=rng, scale=0.8)
    x, y = _data(rng, T, N, D, O, tokens=False, per_step=per_step, output="linear")
    L = np.array([8, 2, 5, 3, 7]) if lengths else None
    want, want_losses = manual_tbptt(model, x, y, k=3, batch_size=N, lr=0.1, epochs=2,
                                     lengths=L, engine=_ReferenceEngine)
    history = model.fit(x, y, bptt=3, lr=0.1, shuffle=False, batch_size=N, epochs=2,
                        lengths=L, verbose=0)
    for k in PARAM_NAMES:
        np.testing.assert_allclose(model.params[k], want[k], rtol=1e-9, atol=1e-12, err_msg=k)
    np.testing.assert_allclose(history["loss"], want_losses, rtol=1e-9)


def test_tbptt_with_shuffle_false_batches_in_callers_order():
    """With shuffle=False and unsorted lengths, the mini-batches are consecutive slices in the caller's order."""
    rng = rng_for("tbptt-order")
    T, N, D, H, O = 6, 4, 3, 5, 3
    model = make_model(D, H, O, rng=rng)
    x, y = _data(rng, T, N, D, O, tokens=False, per_step=True)
    L = np.array([2, 6, 3, 5])
    want, _ = manual_tbptt(model, x, y, k=4, batch_size=2, lr=0.3, lengths=L)
    model.fit(x, y, bptt=4, lr=0.3, shuffle=False, batch_size=2, lengths=L, verbose=0)
    _assert_params_close(model.params, want, "float64")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("per_step", [True, False], ids=["per_step", "per_sequence"])
def test_tbptt_k_at_least_T_is_plain_bptt(per_step, dtype):
    """bptt=T and bptt>T give bitwise the same weights and history as bptt=None."""
    rng = rng_for("tbptt-big-k", per_step, dtype)
    T, N, D, H, O = 6, 8, 3, 5, 3
    x, y = _data(rng, T, N, D, O, tokens=False, per_step=per_step, dtype=dtype)
    L = rng.integers(1, T + 1, N)
    runs = []
    for bptt in (None, T, 3 * T):
        model = make_model(D, H, O, dtype=dtype, seed=4)
        h = model.fit(x, y, bptt=bptt, lr=0.2, epochs=2, batch_size=3, lengths=L, seed=1,
                      verbose=0)
        runs.append((snapshot(model.params), h["loss"]))
    for params, losses in runs[1:]:
        assert_params_bitwise_equal(params, runs[0][0])
        assert losses == runs[0][1]


def test_tbptt_carries_state_and_cuts_gradients():
    """One target per sequence at T=8, bptt=4: the loss sees window 1 through the carried state, the gradient stops at t=4."""
    rng = rng_for("tbptt-carry")
    T, N, D, H, O, k, lr = 8, 6, 3, 6, 2, 4, 0.5
    model = make_model(D, H, O, rng=rng, scale=0.9)
    x = rng.standard_normal((T, N, D))
    y = (x[0, :, 0] > 0).astype(int)            # the answer lies in the first window
    before = snapshot(model.params)
    full_loss, full_grads, _ = model.loss_and_grad(x, y)
    _, h_mid = model.forward(x[:k])
    win_loss, win_grads, _ = model.loss_and_grad(x[k:], y, h0=h_mid)
    cold_loss = model.loss_and_grad(x[k:], y)[0]
    history = model.fit(x, y, bptt=k, lr=lr, batch_size=N, shuffle=False, verbose=0)
    # Only window 2 is scored and no step happens before it: its loss is the full-sequence loss.
    assert history["loss"][0] == pytest.approx(full_loss, rel=1e-12)
    assert abs(win_loss - full_loss) < 1e-12 * abs(full_loss)
    assert abs(cold_loss - full_loss) > 1e-3        # a zero state in window 2 would show
    # The one update is −lr · (window 2's gradient from the carried h0), not full BPTT's.
    for key in PARAM_NAMES:
        np.testing.assert_allclose(model.params[key], before[key] - lr * win_grads[key],
                                   rtol=1e-12, atol=1e-14, err_msg=key)
    assert np.max(np.abs(full_grads["W_x"] - win_grads["W_x"])) > 1e-4
    # W_y and b_y see only the scored step, where both agree.
    np.testing.assert_allclose(full_grads["W_y"], win_grads["W_y"], rtol=1e-12)


def _peak_fit_memory(T, bptt, *, tokens, lengths):
    rng = rng_for("mem", T, tokens, lengths)
    N, D, H, O = 32, 4, 64, 4
    x = rng.integers(0, D, (T, N)) if tokens else \
        rng.standard_normal((T, N, D)).astype(np.float32)
    y = rng.integers(0, O, (T, N))
    L = rng.integers(1, T + 1, N) if lengths else None
    model = crnn.RNN(D, H, O, seed=0)
    tracemalloc.start()
    try:
        model.fit(x, y, bptt=bptt, lengths=L, batch_size=N, shuffle=False, verbose=0)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("tokens", [False, True], ids=["floats", "tokens"])
def test_tbptt_memory_does_not_grow_with_T(tokens):
    """The peak traced memory of a bptt=16 epoch is about the same at T and 8T; without bptt it grows ~8x."""
    small = _peak_fit_memory(64, 16, tokens=tokens, lengths=False)
    large = _peak_fit_memory(512, 16, tokens=tokens, lengths=False)
    assert large < 1.5 * small, (small, large)
    full_small = _peak_fit_memory(64, None, tokens=tokens, lengths=False)
    full_large = _peak_fit_memory(512, None, tokens=tokens, lengths=False)
    assert full_large > 4 * full_small, (full_small, full_large)
    assert large < full_large / 4


@pytest.mark.parametrize("tokens", [False, True], ids=["floats", "tokens"])
def test_tbptt_memory_does_not_grow_with_T_with_lengths(tokens):
    """With lengths in any order, a bptt=16 epoch's peak memory still does not grow with T (no whole-data copies)."""
    small = _peak_fit_memory(64, 16, tokens=tokens, lengths=True)
    large = _peak_fit_memory(512, 16, tokens=tokens, lengths=True)
    assert large < 1.5 * small, (small, large)


# --- optimizers --------------------------------------------------------------------------------

def _task(rng, T=6, N=48, D=3, dtype="float64"):
    """Per-sequence classes: is the sum of feature 0 positive (needs memory of every step)."""
    x = rng.standard_normal((T, N, D)).astype(dtype)
    return x, (x[:, :, 0].sum(0) > 0).astype(int)


NAMED = {
    "sgd": (0.3, lambda p, lr: crnn.SGD(p, lr)),
    "momentum": (0.05, lambda p, lr: crnn.SGD(p, lr, momentum=0.9)),
    "adagrad": (0.1, lambda p, lr: crnn.Adagrad(p, lr)),
    "rmsprop": (0.01, lambda p, lr: crnn.RMSprop(p, lr)),
    "adam": (0.02, lambda p, lr: crnn.Adam(p, lr)),
}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", list(NAMED))
def test_named_optimizer_reduces_loss(name, dtype):
    """Each optimizer name trains: the loss on the training set falls at least fivefold in 25 epochs."""
    rng = rng_for("opt-task", dtype)
    x, y = _task(rng, dtype=dtype)
    model = crnn.RNN(3, 12, 2, dtype=dtype, seed=3)
    before = model.loss_and_grad(x, y)[0]
    history = model.fit(x, y, optimizer=name, lr=NAMED[name][0], epochs=25, batch_size=8,
                        seed=0, verbose=0)
    after = model.loss_and_grad(x, y)[0]
    assert after < 0.2 * before, (before, after)
    assert history["loss"][-1] < history["loss"][0]


@pytest.mark.parametrize("name", list(NAMED))
def test_named_optimizer_is_the_documented_one(name):
    """optimizer=name trains bitwise like the documented instance (sgd, SGD momentum 0.9, Adagrad, RMSprop, Adam) with lr."""
    rng = rng_for("opt-names")
    x, y = _task(rng, N=16)
    lr, build = NAMED[name]
    a = crnn.RNN(3, 6, 2, dtype="float64", seed=5)
    b = crnn.RNN(3, 6, 2, dtype="float64", seed=5)
    a.fit(x, y, optimizer=name, lr=lr, epochs=2, batch_size=4, seed=0, verbose=0)
    b.fit(x, y, optimizer=build(b.params, lr), epochs=2, batch_size=4, seed=0, verbose=0)
    assert_params_bitwise_equal(a.params, snapshot(b.params))
    # and the names are really different optimizers
    c = crnn.RNN(3, 6, 2, dtype="float64", seed=5)
    other = "adam" if name != "adam" else "sgd"
    c.fit(x, y, optimizer=other, lr=lr, epochs=2, batch_size=4, seed=0, verbose=0)
    assert not np.array_equal(a.params["W_h"], c.params["W_h"])


@pytest.mark.parametrize("dtype", DTYPES)
def test_optimizer_instance_is_used_and_its_state_advances(dtype):
    """An optimizer built on model.params does the steps (its lr, not fit's), and its state advances."""
    rng = rng_for("opt-instance", dtype)
    x, y = _task(rng, N=12, dtype=dtype)
    model = crnn.RNN(3, 6, 2, dtype=dtype, seed=5)
    twin = _clone(model)
    opt = crnn.Adam(model.params, lr=0.01)
    model.fit(x, y, optimizer=opt, lr=123.0, epochs=2, batch_size=4, shuffle=False, verbose=0)
    assert opt.step_count == 6                          # 3 batches × 2 epochs
    assert np.any(opt.state["W_h"]["exp_avg"] != 0)
    manual = crnn.Adam(twin.params, lr=0.01)
    for _ in range(2):
        for lo in range(0, 12, 4):
            _, grads, _ = twin.loss_and_grad(x[:, lo:lo + 4], y[lo:lo + 4])
            manual.step(grads)
    _assert_params_close(model.params, twin.params, dtype)
    # A second fit continues from the optimizer's state.
    model.fit(x, y, optimizer=opt, epochs=1, batch_size=4, shuffle=False, verbose=0)
    assert opt.step_count == 9


@pytest.mark.parametrize("make", [
    lambda m: crnn.SGD(crnn.RNN(3, 6, 2, dtype="float64", seed=9).params, 0.1),
    lambda m: crnn.Adam([m.params[k] for k in PARAM_NAMES], 0.1),
], ids=["other-model", "list-of-arrays"])
def test_optimizer_on_other_params_raises(make):
    """An optimizer not built on this model's params dict raises ValueError naming optimizer; nothing changes."""
    rng = rng_for("opt-other")
    x, y = _task(rng, N=8)
    model = crnn.RNN(3, 6, 2, dtype="float64", seed=5)
    before = snapshot(model.params)
    with pytest.raises(ValueError, match="^optimizer"):
        model.fit(x, y, optimizer=make(model), verbose=0)
    assert_params_bitwise_equal(model.params, before)


@pytest.mark.parametrize("name", ["lbfgs", "", "ada", None, 3])
def test_unknown_optimizer_raises(name):
    """An unknown optimizer name (or a non-optimizer) raises ValueError naming optimizer."""
    rng = rng_for("opt-unknown")
    x, y = _task(rng, N=8)
    model = crnn.RNN(3, 6, 2, seed=5)
    with pytest.raises(ValueError, match="^optimizer"):
        model.fit(x, y, optimizer=name, verbose=0)


# --- clipping ----------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
def test_clip_value_bounds_each_sgd_step(dtype):
    """With a huge lr and a tiny clip_value, SGD moves each weight by at most lr·clip_value per step."""
    rng = rng_for("clip-value", dtype)
    x, y = _task(rng, N=16, dtype=dtype)
    model = crnn.RNN(3, 6, 2, dtype=dtype, seed=5)
    lr, clip, steps = 1e3, 1e-4, 4            # 4 batches, one epoch
    before = {k: v.astype(np.float64) for k, v in model.params.items()}
    twin = _clone(model)
    model.fit(x, y, lr=lr, clip_value=clip, batch_size=4, shuffle=False, verbose=0)
    moved = max(np.max(np.abs(model.params[k] - before[k])) for k in PARAM_NAMES)
    assert moved <= steps * lr * clip * (1 + 1e-5) + 1e-6
    assert moved > 0.5 * lr * clip                   # it did move (clamped, not zeroed)
    # exactly: each step clamps the gradient, then W −= lr·g
    for lo in range(0, 16, 4):
        _, grads, _ = twin.loss_and_grad(x[:, lo:lo + 4], y[lo:lo + 4])
        for k in PARAM_NAMES:
            twin.params[k] -= (lr * np.clip(grads[k], -clip, clip)).astype(dtype)
    _assert_params_close(model.params, twin.params, dtype)


def test_clip_value_one_step_moves_by_exactly_lr_times_clip():
    """One SGD step with clip_value: every weight whose gradient exceeds the clip moves by exactly lr·clip."""
    rng = rng_for("clip-one")
    x, y = _task(rng, N=8)
    model = crnn.RNN(3, 6, 2, dtype="float64", seed=5)
    _, grads, _ = model.loss_and_grad(x, y)
    before = snapshot(model.params)
    lr, clip = 50.0, 1e-3
    model.fit(x, y, lr=lr, clip_value=clip, batch_size=8, verbose=0)
    for k in PARAM_NAMES:
        step = before[k] - model.params[k]
        big = np.abs(grads[k]) > clip
        assert big.any() or k == "b_y"
        np.testing.assert_allclose(step[big], lr * clip * np.sign(grads[k][big]), rtol=1e-9)
        np.testing.assert_allclose(step[~big], lr * grads[k][~big], rtol=1e-9, atol=1e-15)


def test_clip_value_applies_before_clip_norm():
    """clip_value then clip_norm, as documented (and the other order would give other weights)."""
    rng = rng_for("clip-order")
    x, y = _task(rng, N=8)
    model = crnn.RNN(3, 6, 2, dtype="float64", seed=5)
    _, grads, _ = model.loss_and_grad(x, y)
    cv, cn, lr = 0.02, 0.05, 1.0

    def manual(first, second):
        g = {k: v.copy() for k, v in grads.items()}
        first(g)
        second(g)
        return {k: model.params[k] - lr * g[k] for k in PARAM_NAMES}

    by_value = lambda g: crnn.clip_grad_value(g, cv)       # noqa: E731
    by_norm = lambda g: crnn.clip_grad_norm(g, cn)          # noqa: E731
    want, other = manual(by_value, by_norm), manual(by_norm, by_value)
    assert max(np.max(np.abs(want[k] - other[k])) for k in PARAM_NAMES) > 1e-4
    model.fit(x, y, lr=lr, clip_value=cv, clip_norm=cn, batch_size=8, verbose=0)
    for k in PARAM_NAMES:
        np.testing.assert_allclose(model.params[k], want[k], rtol=1e-12, atol=1e-15, err_msg=k)


# --- validation --------------------------------------------------------------------------------

def _hand_accuracy(model, x, target, lengths):
    """Accuracy from predict: valid steps (per-step) or each sequence's last valid step."""
    y = model.predict(x, lengths=lengths)
    T, B = y.shape[:2]
    L = np.full(B, T) if lengths is None else np.asarray(lengths)
    pred = y.argmax(-1)
    if target.ndim == 2:
        valid = np.arange(T)[:, None] < L[None, :]
        return float((pred == target)[valid].mean())
    return float((pred[L - 1, np.arange(B)] == target).mean())


class Recorder(Callback):
    """Records every hook call, the params after each epoch and a check run at each epoch end."""

    def __init__(self, check=None, stop_at=None):
        self.events, self.params, self.check, self.stop_at = [], [], check, stop_at

    def on_train_begin(self, model):
        self.events.append(("begin", model))

    def on_epoch_end(self, model, epoch, history):
        self.events.append(("epoch", epoch, {k: len(v) for k, v in history.items()}))
        self.params.append(snapshot(model.params))
        if self.check is not None:
            self.check(model, epoch, history)
        return self.stop_at is not None and epoch >= self.stop_at

    def on_train_end(self, model):
        self.events.append(("end", model))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("per_step", [True, False], ids=["per_step", "per_sequence"])
@pytest.mark.parametrize("lengths", [False, True], ids=["full", "lengths"])
@pytest.mark.parametrize("bptt", [None, 3])
def test_validation_loss_and_accuracy_per_epoch(bptt, lengths, per_step, dtype):
    """Each epoch's val_loss is loss_and_grad's mean loss on the validation set and val_accuracy the hand-computed accuracy."""
    rng = rng_for("val", per_step, lengths, bptt, dtype)
    T, N, Nv, D, H, O = 7, 12, 9, 3, 6, 3
    x, y = _data(rng, T, N, D, O, tokens=False, per_step=per_step, dtype=dtype)
    xv, yv = _data(rng, T, Nv, D, O, tokens=False, per_step=per_step, dtype=dtype)
    L = rng.integers(1, T + 1, N) if lengths else None
    Lv = np.array([3, 7, 1, 5, 7, 2, 6, 4, 2]) if lengths else None
    model = crnn.RNN(D, H, O, dtype=dtype, seed=2)
    rtol = 1e-12 if dtype == "float64" else 1e-5
    seen = []

    def check(m, epoch, history):
        seen.append(epoch)
        assert history["val_loss"][-1] == pytest.approx(
            m.loss_and_grad(xv, yv, lengths=Lv)[0], rel=rtol)
        assert history["val_accuracy"][-1] == pytest.approx(_hand_accuracy(m, xv, yv, Lv),
                                                            abs=1e-12)

    val = (xv, yv, Lv) if lengths else (xv, yv)
    history = model.fit(x, y, lengths=L, validation_data=val, bptt=bptt, epochs=3,
                        batch_size=4, lr=0.5, seed=0, callbacks=[Recorder(check)], verbose=0)
    assert seen == [0, 1, 2]
    assert set(history) == {"loss", "val_loss", "val_accuracy"}
    assert all(len(v) == 3 for v in history.values())
    assert len(set(history["val_loss"])) == 3              # it is re-evaluated every epoch
    assert history["val_loss"][-1] == pytest.approx(model.loss_and_grad(xv, yv, lengths=Lv)[0],
                                                    rel=rtol)


def test_validation_on_many_sequences():
    """val_loss and val_accuracy stay exact over more than a thousand ragged validation sequences."""
    rng = rng_for("val-many")
    T, Nv, D, H, O = 4, 1500, 3, 5, 3
    x, y = _data(rng, T, 8, D, O, tokens=True, per_step=False)
    xv, yv = _data(rng, T, Nv, D, O, tokens=True, per_step=False)
    Lv = rng.integers(1, T + 1, Nv)
    model = crnn.RNN(D, H, O, dtype="float64", seed=2)
    history = model.fit(x, y, validation_data=(xv, yv, Lv), epochs=1, verbose=0)
    assert history["val_loss"][0] == pytest.approx(
        model.loss_and_grad(xv, yv, lengths=Lv)[0], rel=1e-12)
    assert history["val_accuracy"][0] == pytest.approx(_hand_accuracy(model, xv, yv, Lv),
                                                       abs=1e-12)


@pytest.mark.parametrize("per_step", [True, False], ids=["per_step", "per_sequence"])
def test_validation_linear_head_has_loss_but_no_accuracy(per_step):
    """Linear head: history gains val_loss (equal to loss_and_grad's) but no val_accuracy."""
    rng = rng_for("val-linear", per_step)
    T, D, O = 5, 3, 2
    x, y = _data(rng, T, 8, D, O, tokens=False, per_step=per_step, output="linear")
    xv, yv = _data(rng, T, 6, D, O, tokens=False, per_step=per_step, output="linear")
    model = crnn.RNN(D, 4, O, output="linear", dtype="float64", seed=2)
    history = model.fit(x, y, validation_data=(xv, yv), epochs=2, verbose=0)
    assert set(history) == {"loss", "val_loss"}
    assert history["val_loss"][-1] == pytest.approx(model.loss_and_grad(xv, yv)[0], rel=1e-12)


def test_no_validation_keys_without_validation_data():
    """Without validation_data the history holds only the training loss."""
    rng = rng_for("val-none")
    x, y = _task(rng, N=8)
    history = crnn.RNN(3, 4, 2, seed=0).fit(x, y, epochs=2, verbose=0)
    assert set(history) == {"loss"} and len(history["loss"]) == 2


# --- callbacks and early stopping --------------------------------------------------------------

def _overfit_task():
    """A learnable rule (sign of the sum of feature 0) on few training sequences with 20% of
    the labels flipped, validated on clean labels: the validation loss first falls, then
    rises as the model memorises the noise."""
    rng = rng_for("overfit")
    T, D = 5, 3
    x = rng.standard_normal((T, 32, D))
    y = (x[:, :, 0].sum(0) > 0).astype(int)
    flip = rng.random(32) < 0.2
    y[flip] = 1 - y[flip]
    xv = rng.standard_normal((T, 200, D))
    yv = (xv[:, :, 0].sum(0) > 0).astype(int)
    return x, y, xv, yv


def _fit_overfit(callbacks, epochs=300):
    x, y, xv, yv = _overfit_task()
    model = crnn.RNN(3, 16, 2, dtype="float64", seed=1)
    history = model.fit(x, y, validation_data=(xv, yv), epochs=epochs, batch_size=4,
                        optimizer="adam", lr=0.005, seed=0, callbacks=callbacks, verbose=0)
    return model, history, (xv, yv)


def test_early_stopping_stops_and_restores_best_weights():
    """EarlyStopping stops before `epochs`, sets stopped_epoch, and puts back the params of the best epoch."""
    rec = Recorder()
    es = EarlyStopping(monitor="val_loss", patience=3)
    epochs = 300
    model, history, (xv, yv) = _fit_overfit([rec, es], epochs)
    n = len(history["val_loss"])
    assert n < epochs
    best = int(np.argmin(history["val_loss"]))
    assert 0 < best < n - 1                              # a real improvement, then a real decline
    assert es.best_epoch == best and es.best == history["val_loss"][best]
    assert es.stopped_epoch == n - 1 == best + 3
    assert_params_bitwise_equal(model.params, rec.params[best])
    assert not np.array_equal(model.params["W_h"], rec.params[-1]["W_h"])
    # the restored weights really have the best validation loss
    assert model.loss_and_grad(xv, yv)[0] == pytest.approx(history["val_loss"][best],
                                                           rel=1e-12)


def test_early_stopping_without_restore_keeps_last_weights():
    """restore_best_weights=False leaves the params of the last epoch run."""
    rec = Recorder()
    es = EarlyStopping(monitor="val_loss", patience=3, restore_best_weights=False)
    model, history, _ = _fit_overfit([rec, es])
    assert len(history["loss"]) < 300
    assert_params_bitwise_equal(model.params, rec.params[-1])


def test_early_stopping_on_accuracy_maximises():
    """Monitoring val_accuracy stops when it has not risen for `patience` epochs (mode auto = max)."""
    rec = Recorder()
    es = EarlyStopping(monitor="val_accuracy", patience=4)
    model, history, _ = _fit_overfit([rec, es])
    acc = history["val_accuracy"]
    assert len(acc) < 300
    best = int(np.argmax(acc))                           # first maximum
    assert es.best_epoch == best and es.stopped_epoch == best + 4 == len(acc) - 1
    assert_params_bitwise_equal(model.params, rec.params[best])


@pytest.mark.parametrize("monitor", ["val_loss", "val_accuracy", "accuracy"])
def test_early_stopping_missing_monitor_raises(monitor):
    """A monitor that is not in the history raises ValueError naming monitor, and params are restored."""
    rng = rng_for("es-missing")
    x, y = _task(rng, N=8)
    model = crnn.RNN(3, 4, 2, seed=0)
    before = snapshot(model.params)
    with pytest.raises(ValueError, match="^monitor"):
        model.fit(x, y, epochs=3, lr=0.5, callbacks=[EarlyStopping(monitor=monitor)],
                  verbose=0)
    assert_params_bitwise_equal(model.params, before)


def test_callback_hooks_are_called_in_order():
    """on_train_begin, then on_epoch_end(epoch=0, 1, ...) with the history so far, then on_train_end."""
    rng = rng_for("cb-order")
    x, y = _task(rng, N=8)
    model = crnn.RNN(3, 4, 2, seed=0)
    rec = Recorder()
    model.fit(x, y, epochs=3, callbacks=[rec], verbose=0)
    assert rec.events == [("begin", model), ("epoch", 0, {"loss": 1}), ("epoch", 1, {"loss": 2}),
                          ("epoch", 2, {"loss": 3}), ("end", model)]


def test_callback_returning_true_stops_training():
    """A callback returning True from on_epoch_end stops after that epoch; every callback still sees it; on_train_end runs."""
    rng = rng_for("cb-stop")
    x, y = _task(rng, N=8)
    model = crnn.RNN(3, 4, 2, seed=0)
    stopper, watcher = Recorder(stop_at=1), Recorder()
    history = model.fit(x, y, epochs=10, callbacks=[stopper, watcher], verbose=0)
    assert len(history["loss"]) == 2
    for rec in (stopper, watcher):
        assert [e[1] for e in rec.events if e[0] == "epoch"] == [0, 1]
        assert rec.events[-1] == ("end", model)


def test_callbacks_must_be_callbacks():
    """A non-Callback in callbacks is refused with TypeError naming callbacks."""
    rng = rng_for("cb-type")
    x, y = _task(rng, N=8)
    with pytest.raises(TypeError, match="^callbacks"):
        crnn.RNN(3, 4, 2, seed=0).fit(x, y, callbacks=[lambda *a: None], verbose=0)


# --- failures restore the params ---------------------------------------------------------------

class _Raise(Callback):
    def __init__(self, at, exc):
        self.at, self.exc = at, exc

    def on_epoch_end(self, model, epoch, history):
        if epoch == self.at:
            raise self.exc


class _Poison(Callback):
    """Puts a NaN into b_h after epoch 0, so the loss of epoch 2 is not finite."""

    def on_epoch_end(self, model, epoch, history):
        if epoch == 0:
            model.params["b_h"][0] = np.nan


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("failure", ["error", "nan-loss"])
@pytest.mark.parametrize("bptt", [None, 2])
def test_failure_mid_fit_restores_params(bptt, failure, dtype):
    """A callback raising or a non-finite loss at epoch 2 restores the params bitwise to
    their pre-fit values (Ctrl-C keeps them: tests/test_interrupts.py)."""
    rng = rng_for("fail", dtype)
    x, y = _task(rng, N=8, dtype=dtype)
    model = crnn.RNN(3, 4, 2, dtype=dtype, seed=0)
    before = snapshot(model.params)
    ids = {k: id(v) for k, v in model.params.items()}
    cb, exc = {"error": (_Raise(1, RuntimeError("boom")), RuntimeError),
               "nan-loss": (_Poison(), FloatingPointError)}[failure]
    with pytest.raises(exc):
        model.fit(x, y, epochs=4, batch_size=4, optimizer="adam", lr=0.1, bptt=bptt,
                  callbacks=[cb], verbose=0)
    assert_params_bitwise_equal(model.params, before)
    assert {k: id(v) for k, v in model.params.items()} == ids   # restored in place


# --- progress and verbosity --------------------------------------------------------------------

def _verbose_fit(verbose, epochs=3):
    rng = rng_for("verbose")
    x, y = _task(rng, N=10)
    crnn.RNN(3, 4, 2, seed=0).fit(x, y, epochs=epochs, batch_size=4, bptt=4, verbose=verbose)
    return epochs


@pytest.mark.parametrize("with_tqdm", [True, False], ids=["tqdm", "no-tqdm"])
def test_verbose_0_prints_nothing(with_tqdm, capsys, monkeypatch):
    """verbose=0 writes nothing to stdout or stderr, with or without tqdm."""
    if not with_tqdm:
        monkeypatch.setitem(sys.modules, "tqdm", None)
        monkeypatch.setitem(sys.modules, "tqdm.auto", None)
    _verbose_fit(0)
    assert capsys.readouterr() == ("", "")


def test_verbose_2_prints_one_line_per_epoch(capsys):
    """verbose=2 prints exactly one line per epoch to stdout, with the loss, and nothing to stderr."""
    epochs = _verbose_fit(2)
    out, err = capsys.readouterr()
    lines = out.splitlines()
    assert len(lines) == epochs and out.endswith("\n")
    for i, line in enumerate(lines):
        assert line.startswith(f"epoch {i + 1}/{epochs}") and "loss" in line
    assert err == ""


def test_verbose_1_uses_tqdm_when_installed(capsys, monkeypatch):
    """verbose=1 with tqdm installed: a tqdm bar per epoch on stderr, and one summary line per epoch on stdout."""
    tqdm_auto = pytest.importorskip("tqdm.auto")
    made = []

    class Spy(tqdm_auto.tqdm):
        def __init__(self, *args, **kwargs):
            made.append(kwargs)
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(tqdm_auto, "tqdm", Spy)
    epochs = _verbose_fit(1)
    out, err = capsys.readouterr()
    assert len(made) == epochs
    assert made[0]["total"] == 3 * 2                    # ceil(10/4) batches × ceil(6/4) windows
    assert "epoch 1/3" in err
    assert len(out.splitlines()) == epochs


def test_verbose_1_plain_fallback_without_tqdm(capsys, monkeypatch):
    """verbose=1 without tqdm: a plain bar on stderr with the step count, loss and steps/s; summary lines on stdout."""
    monkeypatch.setitem(sys.modules, "tqdm", None)
    monkeypatch.setitem(sys.modules, "tqdm.auto", None)
    epochs = _verbose_fit(1)
    out, err = capsys.readouterr()
    assert "6/6" in err and "loss" in err and "steps/s" in err
    assert "epoch 3/3" in err
    assert len(out.splitlines()) == epochs
    assert all(line.startswith("epoch ") for line in out.splitlines())
