"""Every cell, layer count, direction and dropout against the plain-numpy reference,
and every parameter's gradient against finite differences.

The option grid is sampled, not multiplied out: each configuration below
turns on a different mix of options (the full product runs against PyTorch
in test_oracle.py), and every one runs for every cell.
"""

import numpy as np
import pytest

import crnn
import _reference as ref
from conftest import rng_for, tol

CLASSES = {"rnn": crnn.RNN, "lstm": crnn.LSTM, "gru": crnn.GRU}
T, B, D, H, O = 5, 4, 3, 4, 3

# (num_layers, bidirectional, dropout, ragged, h0, per_step, tokens, output)
CONFIGS = {
    "plain": (1, False, 0.0, False, False, True, False, "softmax"),
    "ragged-h0": (1, False, 0.0, True, True, True, False, "linear"),
    "bi-ragged": (1, True, 0.0, True, False, True, True, "softmax"),
    "bi-per-seq": (1, True, 0.0, True, True, False, False, "softmax"),
    "deep": (3, False, 0.0, True, True, False, True, "linear"),
    "deep-bi": (2, True, 0.0, True, True, True, False, "linear"),
    "dropout": (3, False, 0.4, True, False, True, False, "softmax"),
    "dropout-bi": (2, True, 0.5, True, True, False, True, "softmax"),
}


def _case(cell, name, dtype="float64", T=T, B=B, D=D, H=H, O=O):
    L, bi, dropout, ragged, with_h0, per_step, tokens, output = CONFIGS[name]
    rng = rng_for("cells", cell, name, dtype, T, B, H)
    model = CLASSES[cell](D, H, O, num_layers=L, bidirectional=bi, dropout=dropout,
                          output=output, dtype=dtype, seed=int(rng.integers(1 << 30)))
    dirs = 2 if bi else 1
    x = rng.integers(0, D, (T, B)) if tokens else rng.standard_normal((T, B, D)).astype(dtype)
    lengths = None
    if ragged:
        lengths = rng.integers(1, T + 1, B)
        lengths[0], lengths[-1] = 1, T
    state = None
    if with_h0:
        h0 = 0.5 * rng.standard_normal((L * dirs, B, H))
        c0 = 0.5 * rng.standard_normal((L * dirs, B, H))
        if L * dirs == 1:
            h0, c0 = h0[0], c0[0]
        state = (h0, c0) if cell == "lstm" else h0
    if output == "softmax":
        target = rng.integers(0, O, (T, B) if per_step else (B,))
    else:
        target = rng.standard_normal((T, B, O) if per_step else (B, O))
    seed = int(rng.integers(1 << 30))
    masks = None
    if dropout and L > 1:
        masks = crnn._data.dropout_masks(np.random.default_rng(seed), L, T, B, dirs * H,
                                         dropout, np.float64)
    kw = dict(cell=cell, num_layers=L, bidirectional=bi, output=output, masks=masks)
    return model, dict(x=x, target=target, h0=state, lengths=lengths, seed=seed), kw


def _close(got, want, dtype, what):
    rtol, atol = tol(dtype)
    scale = max(1.0, float(np.max(np.abs(want))))
    np.testing.assert_allclose(got, want, rtol=rtol, atol=atol * scale, err_msg=what)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("name", list(CONFIGS))
@pytest.mark.parametrize("cell", list(CLASSES))
def test_matches_reference(cell, name, dtype):
    """Loss, every gradient, the final states and (without dropout) the outputs."""
    model, c, kw = _case(cell, name, dtype)
    loss, grads, h_last = model.loss_and_grad(c["x"], c["target"], h0=c["h0"],
                                              lengths=c["lengths"], seed=c["seed"])
    loss_r, grads_r, h_r = ref.loss_and_grad(model.params, c["x"], c["target"], h0=c["h0"],
                                             lengths=c["lengths"], **kw)
    _close(loss, loss_r, dtype, "loss")
    assert set(grads) == set(grads_r) == set(model.params)
    for k in grads:
        assert grads[k].dtype == model.dtype and grads[k].shape == model.params[k].shape
        _close(grads[k], grads_r[k], dtype, k)
    for got, want in zip(h_last if cell == "lstm" else [h_last],
                         h_r if cell == "lstm" else [h_r]):
        _close(got, want, dtype, "h_last")
    if kw["masks"] is None:
        y, _ = model.forward(c["x"], h0=c["h0"], lengths=c["lengths"])
        y_r, _ = ref.forward(model.params, c["x"], h0=c["h0"], lengths=c["lengths"],
                             **{k: v for k, v in kw.items() if k != "masks"})
        _close(y, y_r, dtype, "y")


def _five_point(f, p, index, h=1e-4):
    saved = p[index]
    vals = []
    for step in (-2, -1, 1, 2):
        p[index] = saved + step * h
        vals.append(f())
    p[index] = saved
    return (vals[0] - 8 * vals[1] + 8 * vals[2] - vals[3]) / (12 * h)


@pytest.mark.parametrize("name", list(CONFIGS))
@pytest.mark.parametrize("cell", list(CLASSES))
def test_every_gradient_matches_finite_differences(cell, name):
    """Five-point central differences of crnn's own loss, every element of every parameter."""
    model, c, _ = _case(cell, name, T=4, B=3, D=2, H=3, O=2)
    loss, grads, _ = model.loss_and_grad(c["x"], c["target"], h0=c["h0"],
                                         lengths=c["lengths"], seed=c["seed"])

    def f():
        return model.loss_and_grad(c["x"], c["target"], h0=c["h0"], lengths=c["lengths"],
                                   seed=c["seed"])[0]

    worst = 0.0
    for k, p in model.params.items():
        for index in np.ndindex(p.shape):
            num = _five_point(f, p, index)
            err = abs(num - grads[k][index]) / max(abs(num), abs(loss), 1e-3)
            worst = max(worst, err)
            assert err < 1e-6, (k, index, num, grads[k][index])
    assert worst < 1e-6


@pytest.mark.parametrize("name", ["ragged-h0", "bi-per-seq", "dropout-bi"])
@pytest.mark.parametrize("cell", list(CLASSES))
def test_reference_gradients_match_finite_differences(cell, name):
    """The reference's own BPTT against its own loss: the reference is itself checked."""
    model, c, kw = _case(cell, name, T=3, B=2, D=2, H=2, O=2)
    params = {k: v.astype(np.float64) for k, v in model.params.items()}
    loss, grads, _ = ref.loss_and_grad(params, c["x"], c["target"], h0=c["h0"],
                                       lengths=c["lengths"], **kw)

    def f():
        return ref.loss(params, c["x"], c["target"], h0=c["h0"], lengths=c["lengths"], **kw)

    for k, p in params.items():
        for index in np.ndindex(p.shape):
            num = _five_point(f, p, index)
            assert abs(num - grads[k][index]) <= 1e-7 * max(1.0, abs(num)), (k, index)


@pytest.mark.parametrize("name", ["plain", "bi-ragged", "deep-bi", "dropout-bi"])
@pytest.mark.parametrize("cell", list(CLASSES))
def test_layer_api_matches_reference(cell, name):
    """Stack.backward's gradients, dx and dh0 equal the reference's, dropout included."""
    model, c, kw = _case(cell, name)
    if np.asarray(c["x"]).dtype.kind in "iu":
        c["x"] = np.eye(D)[c["x"]]          # dx needs float inputs
    stack = model.stack
    out, h_last, tape = stack.forward(c["x"], h0=c["h0"], lengths=c["lengths"], training=True,
                                      seed=c["seed"])
    rng = rng_for("cells-upstream", cell, name)
    d_out = rng.standard_normal(out.shape)
    dirs = 2 if model.bidirectional else 1
    n = model.num_layers * dirs
    dh = rng.standard_normal((n, B, H))
    dc = rng.standard_normal((n, B, H))
    if n == 1:
        dh, dc = dh[0], dc[0]
    d_final = (dh, dc) if cell == "lstm" else dh
    grads, dx, dh0 = stack.backward(tape, d_out, d_final)
    g_r, dx_r, dh0_r = ref.stack_backward(
        stack.params, c["x"], d_out, d_final, h0=c["h0"], lengths=c["lengths"], cell=cell,
        num_layers=model.num_layers, bidirectional=model.bidirectional, masks=kw["masks"])
    assert set(grads) == set(g_r) == set(stack.params)
    for k in grads:
        _close(grads[k], g_r[k], "float64", k)
    _close(dx, dx_r, "float64", "dx")
    for got, want in zip(dh0 if cell == "lstm" else [dh0], dh0_r if cell == "lstm" else [dh0_r]):
        _close(got, want, "float64", "dh0")
    valid = np.arange(T)[:, None] < (c["lengths"] if c["lengths"] is not None
                                     else np.full(B, T))[None, :]
    assert np.all(out[~valid] == 0), "outputs at padding steps must be 0"
