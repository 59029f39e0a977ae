"""The layer API (crnn.layers.Stack, model.stack): the contract around its numbers.

Its numbers are checked against PyTorch (test_oracle.py) and the reference
(test_cells.py); here, a custom loss on top of it, end to end by finite
differences, and its shapes, sharing and errors.
"""

import numpy as np
import pytest

import crnn
from conftest import rng_for

T, B, D, H = 6, 3, 4, 5
CELLS = ["rnn", "lstm", "gru"]


def _mean_loss(out, target):
    """A loss crnn does not have: ½‖mean_t out_t − target‖² over the batch."""
    d = out.mean(axis=0) - target
    return 0.5 * float((d * d).sum()), np.broadcast_to(d / out.shape[0], out.shape)


@pytest.mark.parametrize("bi", [False, True])
@pytest.mark.parametrize("cell", CELLS)
def test_a_custom_loss_on_top_matches_finite_differences(cell, bi):
    """Gradients of a loss of one's own, through Stack.backward, for x and every parameter."""
    stack = crnn.layers.Stack(cell, D, H, num_layers=2, bidirectional=bi, dtype="float64",
                              seed=1)
    rng = rng_for("custom-loss", cell, bi)
    x = rng.standard_normal((T, B, D))
    target = rng.standard_normal((B, (2 if bi else 1) * H))

    def loss_of(xx):
        out, _, _ = stack.forward(xx)
        return _mean_loss(out, target)[0]

    out, _, tape = stack.forward(x)
    _, d_out = _mean_loss(out, target)
    grads, dx, _ = stack.backward(tape, d_out)
    eps = 1e-6
    for index in [(0, 0, 0), (T - 1, B - 1, D - 1), (2, 1, 3)]:
        xp, xm = x.copy(), x.copy()
        xp[index] += eps
        xm[index] -= eps
        num = (loss_of(xp) - loss_of(xm)) / (2 * eps)
        assert abs(num - dx[index]) <= 1e-7 * max(1, abs(num)), index
    for name, p in stack.params.items():
        index = tuple(s // 2 for s in p.shape)
        saved = p[index]
        p[index] = saved + eps
        lp = loss_of(x)
        p[index] = saved - eps
        lm = loss_of(x)
        p[index] = saved
        num = (lp - lm) / (2 * eps)
        assert abs(num - grads[name][index]) <= 1e-7 * max(1, abs(num)), name


@pytest.mark.parametrize("cell", CELLS)
def test_shapes_padding_and_states(cell):
    stack = crnn.layers.Stack(cell, D, H, num_layers=2, bidirectional=True, seed=0)
    x = rng_for("shapes", cell).standard_normal((T, B, D))
    lengths = np.array([6, 2, 4])
    out, h_last, tape = stack.forward(x, lengths=lengths)
    assert out.shape == (T, B, 2 * H) and out.dtype == np.float32
    for b, n in enumerate(lengths):
        assert np.all(out[n:, b] == 0) and np.all(out[:n, b] != 0)
    states = h_last if cell == "lstm" else (h_last,)
    for s in states:
        assert s.shape == (4, B, H)
    grads, dx, dh0 = stack.backward(tape, np.ones_like(out))
    assert set(grads) == set(stack.params) and "W_y" not in grads
    assert dx.shape == x.shape and dx.dtype == np.float32
    for s in (dh0 if cell == "lstm" else (dh0,)):
        assert s.shape == (4, B, H)
    for b, n in enumerate(lengths):
        assert np.all(dx[n:, b] == 0), "padding steps get no gradient"


@pytest.mark.parametrize("cell", CELLS)
def test_only_final_state_gradients_and_token_inputs(cell):
    stack = crnn.layers.Stack(cell, D, H, dtype="float64", seed=2)
    x = rng_for("tokens", cell).integers(0, D, (T, B))
    out, h_last, tape = stack.forward(x)
    dh = np.ones((B, H))
    grads, dx, dh0 = stack.backward(tape, d_h_last=(dh, None) if cell == "lstm" else dh)
    assert dx is None, "token ids have no gradient"
    assert all(np.all(np.isfinite(g)) for g in grads.values())
    assert any(np.any(g != 0) for g in grads.values())


@pytest.mark.parametrize("cell", CELLS)
def test_input_grad_false_skips_dx_and_changes_nothing_else(cell):
    stack = crnn.layers.Stack(cell, D, H, num_layers=2, bidirectional=True, dtype="float64",
                              seed=3)
    x = rng_for("input-grad", cell).standard_normal((T, B, D))
    runs = []
    for input_grad in (True, False):
        out, _, tape = stack.forward(x, lengths=np.array([6, 2, 4]))
        runs.append(stack.backward(tape, np.cos(out), input_grad=input_grad))
    (g1, dx1, dh1), (g2, dx2, dh2) = runs
    assert dx1.shape == x.shape and dx2 is None
    for k in g1:
        assert np.array_equal(g1[k], g2[k]), k
    for a, b in zip(dh1 if cell == "lstm" else (dh1,), dh2 if cell == "lstm" else (dh2,)):
        assert np.array_equal(a, b)
    _, _, tape = stack.forward(x)
    with pytest.raises(TypeError, match="input_grad"):
        stack.backward(tape, input_grad="no")


def test_model_stack_shares_the_models_parameters():
    model = crnn.LSTM(D, H, 3, num_layers=2, seed=3)
    stack = model.stack
    assert set(stack.params) == set(model.params) - {"W_y", "b_y"}
    for k, v in stack.params.items():
        assert v is model.params[k]
    x = rng_for("share").standard_normal((T, B, D))
    out, _, tape = stack.forward(x)
    model.params["W_h_l1"] *= 2      # in place: the stack sees it
    out2, _, _ = stack.forward(x)
    assert not np.array_equal(out, out2)


def test_tapes_are_checked_and_used_once():
    stack = crnn.layers.Stack("gru", D, H, seed=4)
    other = crnn.layers.Stack("gru", D, H, seed=4)
    x = np.zeros((T, B, D))
    out, _, tape = stack.forward(x)
    with pytest.raises(TypeError, match="tape"):
        other.backward(tape, out)
    with pytest.raises(TypeError, match="tape"):
        stack.backward(object(), out)
    with pytest.raises(ValueError, match="d_outputs"):
        stack.backward(tape, np.zeros((T, B, H + 1)))
    stack.backward(tape, out)
    with pytest.raises(ValueError, match="already used"):
        stack.backward(tape, out)


def test_dropout_only_when_training():
    stack = crnn.layers.Stack("lstm", D, H, num_layers=3, dropout=0.5, dtype="float64", seed=5)
    x = rng_for("stack-dropout").standard_normal((T, B, D))
    a, _, _ = stack.forward(x)
    b, _, _ = stack.forward(x, training=True, seed=1)
    c, _, _ = stack.forward(x, training=True, seed=1)
    assert not np.array_equal(a, b) and np.array_equal(b, c)


def test_constructor_checks():
    with pytest.raises(ValueError, match="cell"):
        crnn.layers.Stack("transformer", D, H)
    with pytest.raises(ValueError, match="nonlinearity"):
        crnn.layers.Stack("lstm", D, H, nonlinearity="relu")
    s = crnn.layers.Stack("rnn", D, H, nonlinearity="relu", num_layers=2)
    assert s.cell == "rnn" and s.num_layers == 2 and s.hidden_size == H
    assert "Stack('rnn'" in repr(s)


def test_a_used_tapes_memory_serves_the_next_forward():
    """A tape's workspace goes back to the engine after backward (its pages stay mapped),
    and the next forward's results are exactly those of a fresh one."""
    stack = crnn.layers.Stack("lstm", D, H, num_layers=2, dtype="float64", seed=4)
    x = rng_for("reuse").standard_normal((T, B, D))
    out1, h1, tape1 = stack.forward(x)
    grads1, dx1, _ = stack.backward(tape1, np.cos(out1))
    out2, h2, tape2 = stack.forward(x)
    assert tape2._work is tape1._work
    pending = stack.forward(x)[2]          # a second live tape gets memory of its own
    assert pending._work is not tape2._work
    grads2, dx2, _ = stack.backward(tape2, np.cos(out2))
    assert np.array_equal(out1, out2) and np.array_equal(dx1, dx2)
    for k in grads1:
        assert np.array_equal(grads1[k], grads2[k])
    with pytest.raises(ValueError, match="already used"):
        stack.backward(tape1, np.cos(out1))


def test_a_dropped_tapes_memory_serves_the_next_forward():
    """Inference through the layer API (no backward): the dropped tape's workspace is
    reused, and results are unchanged."""
    stack = crnn.layers.Stack("gru", D, H, dtype="float64", seed=5)
    x = rng_for("drop").standard_normal((T, B, D))
    out1, _, tape = stack.forward(x)
    work = tape._work
    del tape
    out2, _, tape2 = stack.forward(x)
    assert tape2._work is work
    assert np.array_equal(out1, out2)
    grads, dx, _ = stack.backward(tape2, np.ones_like(out2))    # and it still trains
    assert dx.shape == x.shape
