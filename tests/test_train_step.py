"""model.train_step: the loss, BPTT, clipping and the optimizer's update in one compiled
call, equal to loss_and_grad + clip_grad_value + clip_grad_norm + optimizer.step."""

import tracemalloc

import numpy as np
import pytest

import crnn
from crnn import _fused
from conftest import rng_for

OPTIMIZERS = [
    ("SGD", {}),
    ("SGD", {"momentum": 0.9, "nesterov": True, "weight_decay": 0.01}),
    ("SGD", {"momentum": 0.5, "dampening": 0.1}),
    ("Adagrad", {"lr_decay": 0.1, "weight_decay": 0.01}),
    ("RMSprop", {}),
    ("RMSprop", {"momentum": 0.5, "centered": True, "weight_decay": 0.01}),
    ("Adam", {}),
    ("Adam", {"weight_decay": 0.01, "betas": (0.8, 0.9)}),
]
CLIPS = [{}, {"clip_norm": 0.5}, {"clip_value": 0.01}, {"clip_norm": 0.1, "clip_value": 0.05}]
CELLS = {"rnn": crnn.RNN, "lstm": crnn.LSTM, "gru": crnn.GRU}


def _model(cell, dtype, **kw):
    return CELLS[cell](5, 8, 3, num_layers=2, bidirectional=True, dtype=dtype, seed=1, **kw)


def _reference_step(model, opt, x, y, clip, **kw):
    """The same step, in Python: loss_and_grad, the clips, optimizer.step."""
    loss, grads, _ = model.loss_and_grad(x, y, **kw)
    if "clip_value" in clip:
        crnn.clip_grad_value(grads, clip["clip_value"])
    if "clip_norm" in clip:
        crnn.clip_grad_norm(grads, clip["clip_norm"])
    opt.step(grads)
    return loss


class _Spy:
    """Counts an optimizer's step() calls: the fused path makes none."""

    def __init__(self, opt):
        self.calls, real = 0, opt.step

        def step(grads):
            self.calls += 1
            real(grads)
        opt.step = step


def _close(a, b, dtype):
    # float32: the same operations in the same order, so equal; float64: the clip's
    # norm is summed over one vector instead of array by array (last bits).
    tol = {"rtol": 0, "atol": 0} if dtype == "float32" else {"rtol": 1e-11, "atol": 1e-12}
    np.testing.assert_allclose(a, b, **tol)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("name, kw", OPTIMIZERS)
@pytest.mark.parametrize("clip", CLIPS, ids=["none", "norm", "value", "both"])
def test_equals_the_step_in_python(dtype, cell, name, kw, clip):
    rng = rng_for("train-step", cell, name)
    x = rng.standard_normal((7, 4, 5))
    y = rng.integers(0, 3, (7, 4))
    a, b = _model(cell, dtype), _model(cell, dtype)
    opt_a = getattr(crnn, name)(a.params, lr=0.05, **kw)
    opt_b = getattr(crnn, name)(b.params, lr=0.05, **kw)
    spy = _Spy(opt_a)
    for _ in range(3):
        loss = a.train_step(x, y, opt_a, **clip)
        assert isinstance(loss, float)
        _close(loss, _reference_step(b, opt_b, x, y, clip), dtype)
    assert spy.calls == 0, "the update ran in Python, not in the engine"
    for k in a.params:
        _close(a.params[k], b.params[k], dtype)
    sa, sb = opt_a.state_dict(), opt_b.state_dict()
    assert sa["step_count"] == sb["step_count"] == 3
    assert set(sa["state"]) == set(sb["state"])
    for k in sb["state"]:
        for n in sb["state"][k]:
            _close(sa["state"][k][n], sb["state"][k][n], dtype)


@pytest.mark.parametrize("cell", CELLS)
def test_options_lengths_h0_sum_and_per_sequence_targets(cell):
    rng = rng_for("train-step-options", cell)
    a, b = _model(cell, "float64"), _model(cell, "float64")
    opt_a, opt_b = crnn.Adam(a.params, lr=0.01), crnn.Adam(b.params, lr=0.01)
    x = rng.standard_normal((6, 3, 5))
    h = rng.standard_normal((4, 3, 8))
    h0 = (h, h * 0.5) if cell == "lstm" else h
    kw = dict(lengths=np.array([6, 2, 4]), h0=h0, reduction="sum")
    for y in (rng.integers(0, 3, (6, 3)), rng.integers(0, 3, 3)):
        loss = a.train_step(x, y, opt_a, clip_norm=1.0, **kw)
        _close(loss, _reference_step(b, opt_b, x, y, {"clip_norm": 1.0}, **kw), "float64")
    for k in a.params:
        _close(a.params[k], b.params[k], "float64")


def test_linear_head_batch_first_and_dropout_with_a_seed():
    rng = rng_for("train-step-bf")
    kw = dict(output="linear", batch_first=True, dropout=0.3)
    a, b = _model("gru", "float64", **kw), _model("gru", "float64", **kw)
    opt_a, opt_b = crnn.RMSprop(a.params, lr=0.01), crnn.RMSprop(b.params, lr=0.01)
    x, y = rng.standard_normal((3, 6, 5)), rng.standard_normal((3, 6, 3))      # (B, T, ·)
    loss = a.train_step(x, y, opt_a, seed=7)
    _close(loss, _reference_step(b, opt_b, x, y, {}, seed=7), "float64")
    for k in a.params:
        _close(a.params[k], b.params[k], "float64")


def test_mixing_with_optimizer_step_and_state_dicts():
    """The optimizer's buffers are views into the flat state: step(), state_dict() and
    load_state_dict() between train_steps all keep the two paths equal."""
    rng = rng_for("train-step-mix")
    x, y = rng.standard_normal((5, 2, 5)), rng.integers(0, 3, (5, 2))
    a, b = _model("lstm", "float64"), _model("lstm", "float64")
    opt_a = crnn.SGD(a.params, lr=0.1, momentum=0.9)
    opt_b = crnn.SGD(b.params, lr=0.1, momentum=0.9)
    _reference_step(a, opt_a, x, y, {})       # state made by step(), then adopted
    _reference_step(b, opt_b, x, y, {})
    a.train_step(x, y, opt_a)
    _reference_step(b, opt_b, x, y, {})
    saved = opt_a.state_dict()
    a.train_step(x, y, opt_a)
    _reference_step(a, opt_a, x, y, {})       # step() on the views
    _reference_step(b, opt_b, x, y, {})
    _reference_step(b, opt_b, x, y, {})
    for k in a.params:
        _close(a.params[k], b.params[k], "float64")
    opt_a.load_state_dict(saved)              # a new state dict: adopted again
    opt_b.load_state_dict(saved)
    a.params.update({k: v.copy() for k, v in b.params.items()})     # replaced arrays
    a.train_step(x, y, opt_a)
    _reference_step(b, opt_b, x, y, {})
    for k in a.params:
        _close(a.params[k], b.params[k], "float64")
        assert np.shares_memory(a.params[k], a._flat)


def test_a_subclass_takes_its_update_in_python():
    class Halved(crnn.SGD):
        def step(self, grads):
            super().step({k: g / 2 for k, g in grads.items()})

    rng = rng_for("train-step-subclass")
    x, y = rng.standard_normal((5, 2, 5)), rng.integers(0, 3, (5, 2))
    a, b = _model("rnn", "float64"), _model("rnn", "float64")
    opt_a, opt_b = Halved(a.params, lr=0.1), crnn.SGD(b.params, lr=0.05)
    assert not _fused.fused(opt_a) and _fused.fused(opt_b)
    a.train_step(x, y, opt_a)
    b.train_step(x, y, opt_b)
    for k in a.params:
        _close(a.params[k], b.params[k], "float64")


@pytest.mark.parametrize("fused", [True, False])
def test_a_non_finite_step_changes_nothing(fused):
    model = crnn.RNN(3, 6, 2, nonlinearity="relu", dtype="float64", seed=0)
    opt = (crnn.Adam if fused else type("Sub", (crnn.Adam,), {}))(model.params, lr=0.1)
    x = np.ones((40, 2, 3))
    y = np.zeros((40, 2), dtype=int)
    model.train_step(x, y, opt)
    model.params["W_h"][...] = 1e200    # relu: the states overflow to inf
    before = {k: v.copy() for k, v in model.params.items()}
    state = opt.state_dict()
    with pytest.raises(FloatingPointError, match="train_step: non-finite"):
        model.train_step(x, y, opt)
    for k in before:
        assert np.array_equal(model.params[k], before[k]), k
    after = opt.state_dict()
    assert after["step_count"] == state["step_count"] == 1
    for k in state["state"]:
        for n in state["state"][k]:
            assert np.array_equal(after["state"][k][n], state["state"][k][n])


def test_no_gradient_sized_allocation_per_call():
    model = crnn.LSTM(64, 256, 64, seed=0)
    opt = crnn.Adam(model.params)
    x = rng_for("alloc").standard_normal((20, 8, 64)).astype(np.float32)
    y = np.zeros((20, 8), dtype=int)
    model.train_step(x, y, opt, clip_norm=1.0)       # buffers and workspace made here
    tracemalloc.start()
    try:
        model.train_step(x, y, opt, clip_norm=1.0)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < model._flat.nbytes / 10, peak


def test_bad_arguments():
    model = crnn.GRU(3, 4, 2, seed=0)
    other = crnn.GRU(3, 4, 2, seed=0)
    x, y = np.zeros((5, 2, 3)), np.zeros((5, 2), dtype=int)
    opt = crnn.SGD(model.params, lr=0.1)
    with pytest.raises(ValueError, match="optimizer: must be built on this model's params"):
        model.train_step(x, y, crnn.SGD(other.params, lr=0.1))
    with pytest.raises(TypeError, match="optimizer: expected a crnn optimizer"):
        model.train_step(x, y, "adam")
    with pytest.raises(ValueError, match="clip_norm"):
        model.train_step(x, y, opt, clip_norm=-1)
    with pytest.raises(TypeError, match="clip_value"):
        model.train_step(x, y, opt, clip_value="1")
    with pytest.raises(ValueError, match="reduction"):
        model.train_step(x, y, opt, reduction="max")
    with pytest.raises(ValueError, match="target"):
        model.train_step(x, np.zeros((6, 2), dtype=int), opt)
    model.train_step(x, y, opt)
    opt.momentum = 0.9      # changed after the buffers were chosen (and adopted)
    for take in (lambda: model.train_step(x, y, opt),
                 lambda: opt.step(model.loss_and_grad(x, y)[1])):
        with pytest.raises(ValueError, match="momentum_buffer"):
            take()
    assert opt.step_count == 1


@pytest.mark.parametrize("fused", [True, False])
def test_an_infinite_gradient_is_refused_even_with_clip_value(fused):
    """Clipping would make it finite: it is found before."""
    model = crnn.RNN(3, 4, 1, output="linear", seed=0)
    opt = (crnn.SGD if fused else type("Sub", (crnn.SGD,), {}))(model.params, lr=1e-40)
    x = np.zeros((2, 1, 3), dtype=np.float32)
    y = np.full((2, 1, 1), -3e38, dtype=np.float32)     # a finite loss, an infinite gradient
    before = {k: v.copy() for k, v in model.params.items()}
    with pytest.raises(FloatingPointError):
        model.train_step(x, y, opt, clip_value=1.0, reduction="sum")
    assert opt.step_count == 0
    for k in before:
        assert np.array_equal(model.params[k], before[k]), k


def test_a_failed_first_step_leaves_the_optimizer_as_it_was():
    """The buffers are adopted only by a step that succeeds: after a refused first step
    the momentum still starts from the first gradient, in either path."""
    rng = rng_for("failed-first")
    x, y = rng.standard_normal((2, 1, 3)), rng.standard_normal((2, 1, 2))
    bad = np.full((2, 1, 2), 1e200)
    a = crnn.RNN(3, 4, 2, output="linear", dtype="float64", seed=0)
    b = crnn.RNN(3, 4, 2, output="linear", dtype="float64", seed=0)
    oa = crnn.SGD(a.params, lr=0.1, momentum=0.9, dampening=0.5)
    ob = crnn.SGD(b.params, lr=0.1, momentum=0.9, dampening=0.5)
    with pytest.raises(FloatingPointError):
        a.train_step(x, bad, oa)
    assert oa.state == {} and oa.step_count == 0
    _reference_step(a, oa, x, y, {})
    _reference_step(b, ob, x, y, {})
    a.train_step(x, y, oa)
    b.train_step(x, y, ob)
    for k in a.params:
        _close(a.params[k], b.params[k], "float64")


def test_optimizers_pickle_and_copy_after_train_step():
    import copy
    import pickle
    model = crnn.LSTM(3, 4, 2, seed=0)
    opt = crnn.Adam(model.params, lr=0.01)
    x, y = np.zeros((3, 2, 3)), np.zeros((3, 2), dtype=int)
    model.train_step(x, y, opt)
    for other in (pickle.loads(pickle.dumps(opt)), copy.deepcopy(opt)):
        assert other.step_count == 1
        assert "_crnn_flat" not in other.__dict__
        for k in opt.state:
            for n in opt.state[k]:
                assert np.array_equal(other.state[k][n], opt.state[k][n])
