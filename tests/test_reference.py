"""crnn's forward and loss_and_grad agree with the plain-numpy reference in tests/_reference.py.

The reference itself is proven against finite differences here too, so the
oracle is checked, not just trusted.
"""

import itertools

import numpy as np
import pytest

import _reference as ref
from conftest import PARAM_NAMES, make_case, make_model, rng_for, tol

# (T, B, D, H, O): B = 1, T = 1 and H = 1 all occur, alone and together.
SIZES = [
    (1, 1, 3, 1, 2),
    (5, 1, 3, 4, 3),
    (1, 4, 2, 3, 2),
    (6, 5, 4, 1, 3),
    (7, 3, 5, 6, 4),
    (4, 6, 1, 5, 2),
    (9, 8, 6, 7, 5),
]

NONLIN = ["tanh", "relu"]
OUTPUT = ["softmax", "linear"]
DTYPES = ["float64", "float32"]

LOSS_OPTIONS = list(itertools.product(
    NONLIN, OUTPUT, ["per_step", "per_seq"], ["float", "token"],
    ["lengths", "no_lengths"], ["h0", "no_h0"], ["sum", "mean"]))
FORWARD_OPTIONS = list(itertools.product(
    NONLIN, OUTPUT, ["float", "token"], ["lengths", "no_lengths"], ["h0", "no_h0"]))


def _setup(key, sizes, nonlin, output, per_step, tokens, lengths, h0, dtype):
    rng = rng_for(key)
    T, B, D, H, O = sizes
    model = make_model(D, H, O, nonlinearity=nonlin, output=output, dtype=dtype, rng=rng,
                       scale=0.8)
    case = make_case(rng, T, B, D, H, O, tokens=tokens, output=output, per_step=per_step,
                     lengths=lengths, h0=h0, dtype=dtype)
    return model, case


def _assert_close(got, want, dtype, what):
    rtol, atol = tol(dtype)
    np.testing.assert_allclose(got, want, rtol=rtol, atol=atol, err_msg=what)


def _padding_mask(T, B, lengths):
    """True at (t, b) padding positions."""
    if lengths is None:
        return np.zeros((T, B), dtype=bool)
    return np.arange(T)[:, None] >= np.asarray(lengths)[None, :]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("opts", FORWARD_OPTIONS, ids="-".join)
def test_forward_matches_reference(opts, dtype):
    """forward's y and h_last equal the reference's, y is exactly 0 on padding, dtypes kept."""
    nonlin, output, inp, lens, h0 = opts
    i = FORWARD_OPTIONS.index(opts)
    sizes = SIZES[i % len(SIZES)]
    model, case = _setup(("fwd", opts, dtype), sizes, nonlin, output, True,
                         inp == "token", lens == "lengths", h0 == "h0", dtype)
    y, h_last = model.forward(case["x"], h0=case["h0"], lengths=case["lengths"])
    y_ref, h_ref = ref.forward(model.params, case["x"], h0=case["h0"], lengths=case["lengths"],
                               nonlinearity=nonlin, output=output)
    T, B, D, H, O = sizes
    assert y.shape == (T, B, O) and h_last.shape == (B, H)
    assert y.dtype == np.dtype(dtype) and h_last.dtype == np.dtype(dtype)
    _assert_close(y, y_ref, dtype, "y")
    _assert_close(h_last, h_ref, dtype, "h_last")
    assert np.all(y[_padding_mask(T, B, case["lengths"])] == 0)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("opts", LOSS_OPTIONS, ids="-".join)
def test_loss_and_grad_matches_reference(opts, dtype):
    """loss, every gradient and h_last equal the reference's; types, shapes and dtypes as specified."""
    nonlin, output, target, inp, lens, h0, reduction = opts
    i = LOSS_OPTIONS.index(opts)
    sizes = SIZES[i % len(SIZES)]
    model, case = _setup(("lag", opts, dtype), sizes, nonlin, output, target == "per_step",
                         inp == "token", lens == "lengths", h0 == "h0", dtype)
    loss, grads, h_last = model.loss_and_grad(case["x"], case["target"], h0=case["h0"],
                                              lengths=case["lengths"], reduction=reduction)
    loss_ref, grads_ref, h_ref = ref.loss_and_grad(
        model.params, case["x"], case["target"], h0=case["h0"], lengths=case["lengths"],
        nonlinearity=nonlin, output=output, reduction=reduction)
    assert type(loss) is float
    assert set(grads) == set(PARAM_NAMES)
    for k in PARAM_NAMES:
        assert grads[k].shape == model.params[k].shape, k
        assert grads[k].dtype == np.dtype(dtype), k
        _assert_close(grads[k], grads_ref[k], dtype, k)
    _assert_close(loss, loss_ref, dtype, "loss")
    assert h_last.dtype == np.dtype(dtype)
    _assert_close(h_last, h_ref, dtype, "h_last")


EDGE_SIZES = [(1, 1, 2, 1, 2), (1, 5, 3, 3, 2), (6, 1, 4, 4, 3), (5, 3, 2, 1, 1),
              (2, 2, 1, 2, 2)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("output", OUTPUT)
@pytest.mark.parametrize("per_step", [True, False], ids=["per_step", "per_seq"])
@pytest.mark.parametrize("tokens", [False, True], ids=["float", "token"])
@pytest.mark.parametrize("sizes", EDGE_SIZES, ids=lambda s: "T{}B{}D{}H{}O{}".format(*s))
def test_edge_sizes_match_reference(sizes, tokens, per_step, output, dtype):
    """Degenerate sizes (T, B, H, D or O = 1) agree with the reference (ragged lengths, h0)."""
    T, B, D, H, O = sizes
    if output == "softmax" and O == 1:
        O = 2
        sizes = (T, B, D, H, O)
    model, case = _setup(("edge", sizes, tokens, per_step, output, dtype), sizes, "tanh",
                         output, per_step, tokens, True, True, dtype)
    y, h = model.forward(case["x"], h0=case["h0"], lengths=case["lengths"])
    y_ref, h_ref = ref.forward(model.params, case["x"], h0=case["h0"],
                               lengths=case["lengths"], output=output)
    _assert_close(y, y_ref, dtype, "y")
    _assert_close(h, h_ref, dtype, "h_last")
    loss, grads, h_last = model.loss_and_grad(case["x"], case["target"], h0=case["h0"],
                                              lengths=case["lengths"])
    loss_ref, grads_ref, _ = ref.loss_and_grad(model.params, case["x"], case["target"],
                                               h0=case["h0"], lengths=case["lengths"],
                                               output=output)
    _assert_close(loss, loss_ref, dtype, "loss")
    for k in PARAM_NAMES:
        _assert_close(grads[k], grads_ref[k], dtype, k)
    _assert_close(h_last, h_ref, dtype, "h_last")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("per_step", [True, False], ids=["per_step", "per_seq"])
def test_lengths_all_shorter_than_T(per_step, dtype):
    """When even the longest sequence ends before T, the trailing all-padding steps change nothing."""
    rng = rng_for("short", per_step, dtype)
    T, B, D, H, O = 7, 4, 3, 5, 3
    model = make_model(D, H, O, dtype=dtype, rng=rng)
    case = make_case(rng, T, B, D, H, O, per_step=per_step, h0=True, dtype=dtype)
    lengths = np.array([3, 1, 4, 2])
    y, h = model.forward(case["x"], h0=case["h0"], lengths=lengths)
    y_ref, h_ref = ref.forward(model.params, case["x"], h0=case["h0"], lengths=lengths)
    _assert_close(y, y_ref, dtype, "y")
    _assert_close(h, h_ref, dtype, "h_last")
    assert np.all(y[4:] == 0)
    loss, grads, _ = model.loss_and_grad(case["x"], case["target"], h0=case["h0"],
                                         lengths=lengths)
    loss_ref, grads_ref, _ = ref.loss_and_grad(model.params, case["x"], case["target"],
                                               h0=case["h0"], lengths=lengths)
    _assert_close(loss, loss_ref, dtype, "loss")
    for k in PARAM_NAMES:
        _assert_close(grads[k], grads_ref[k], dtype, k)
    # Truncating the padding away gives the same loss and gradients.
    tgt = case["target"][:4] if per_step else case["target"]
    loss4, grads4, _ = model.loss_and_grad(case["x"][:4], tgt, h0=case["h0"], lengths=lengths)
    _assert_close(loss, loss4, dtype, "loss")
    for k in PARAM_NAMES:
        _assert_close(grads[k], grads4[k], dtype, k)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("output", OUTPUT)
def test_full_lengths_equal_no_lengths(output, dtype):
    """lengths all equal to T gives the same results as no lengths."""
    rng = rng_for("full", output, dtype)
    T, B, D, H, O = 5, 3, 4, 6, 3
    model = make_model(D, H, O, output=output, dtype=dtype, rng=rng)
    case = make_case(rng, T, B, D, H, O, output=output, h0=True, dtype=dtype)
    full = np.full(B, T)
    a = model.loss_and_grad(case["x"], case["target"], h0=case["h0"])
    b = model.loss_and_grad(case["x"], case["target"], h0=case["h0"], lengths=full)
    _assert_close(a[0], b[0], dtype, "loss")
    for k in PARAM_NAMES:
        _assert_close(a[1][k], b[1][k], dtype, k)
    _assert_close(a[2], b[2], dtype, "h_last")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("tokens", [False, True], ids=["float", "token"])
def test_predict_is_forward_without_h0(tokens, dtype):
    """predict(x, lengths) equals forward(x, lengths=lengths)[0] and the reference with h0 = 0."""
    rng = rng_for("predict", tokens, dtype)
    T, B, D, H, O = 6, 4, 5, 3, 4
    model = make_model(D, H, O, dtype=dtype, rng=rng)
    case = make_case(rng, T, B, D, H, O, tokens=tokens, lengths=True, dtype=dtype)
    y = model.predict(case["x"], lengths=case["lengths"])
    y_fwd, _ = model.forward(case["x"], lengths=case["lengths"])
    np.testing.assert_array_equal(y, y_fwd)
    y_ref, _ = ref.forward(model.params, case["x"], lengths=case["lengths"])
    _assert_close(y, y_ref, dtype, "y")
    np.testing.assert_array_equal(model.predict(case["x"]), model.forward(case["x"])[0])


@pytest.mark.parametrize("dtype", DTYPES)
def test_params_changed_in_place_change_the_model(dtype):
    """Writing into model.params in place is seen by the next forward/loss_and_grad."""
    rng = rng_for("inplace", dtype)
    T, B, D, H, O = 4, 3, 3, 5, 4
    model = make_model(D, H, O, dtype=dtype, seed=1)
    case = make_case(rng, T, B, D, H, O, dtype=dtype)
    y0, _ = model.forward(case["x"])
    for k in PARAM_NAMES:
        model.params[k] *= -1.5
        model.params[k] += 0.1
    y1, _ = model.forward(case["x"])
    assert not np.allclose(y0, y1)
    y_ref, _ = ref.forward(model.params, case["x"])
    _assert_close(y1, y_ref, dtype, "y")
    loss, grads, _ = model.loss_and_grad(case["x"], case["target"])
    loss_ref, grads_ref, _ = ref.loss_and_grad(model.params, case["x"], case["target"])
    _assert_close(loss, loss_ref, dtype, "loss")
    for k in PARAM_NAMES:
        _assert_close(grads[k], grads_ref[k], dtype, k)


@pytest.mark.parametrize("dtype", DTYPES)
def test_token_ids_equal_one_hot_floats(dtype):
    """Token ids give the same outputs, loss and gradients as the explicit one-hot float input."""
    rng = rng_for("onehot", dtype)
    T, B, D, H, O = 5, 4, 6, 4, 3
    model = make_model(D, H, O, dtype=dtype, rng=rng)
    case = make_case(rng, T, B, D, H, O, tokens=True, lengths=True, h0=True, dtype=dtype)
    onehot = np.eye(D, dtype=dtype)[case["x"]]
    kw = dict(h0=case["h0"], lengths=case["lengths"])
    y_tok, h_tok = model.forward(case["x"], **kw)
    y_hot, h_hot = model.forward(onehot, **kw)
    _assert_close(y_tok, y_hot, dtype, "y")
    _assert_close(h_tok, h_hot, dtype, "h_last")
    l_tok, g_tok, _ = model.loss_and_grad(case["x"], case["target"], **kw)
    l_hot, g_hot, _ = model.loss_and_grad(onehot, case["target"], **kw)
    _assert_close(l_tok, l_hot, dtype, "loss")
    for k in PARAM_NAMES:
        _assert_close(g_tok[k], g_hot[k], dtype, k)


@pytest.mark.parametrize("dtype", DTYPES)
def test_softmax_outputs_are_distributions(dtype):
    """The softmax head's y rows are probabilities summing to 1 on valid steps."""
    rng = rng_for("dist", dtype)
    T, B, D, H, O = 6, 5, 3, 4, 7
    model = make_model(D, H, O, dtype=dtype, rng=rng, scale=2.0)
    case = make_case(rng, T, B, D, H, O, lengths=True, dtype=dtype)
    y, _ = model.forward(case["x"], lengths=case["lengths"])
    valid = ~_padding_mask(T, B, case["lengths"])
    assert np.all(y >= 0)
    np.testing.assert_allclose(y[valid].sum(-1), 1.0, rtol=0, atol=1e-6)


# --- the reference itself against finite differences ---------------------------------------

def five_point_derivative(f, p, key, index, eps):
    """Central 4th-order finite difference of f(params) in params[key][index]."""
    q = {k: v.copy() for k, v in p.items()}
    x0 = q[key][index]
    total = 0.0
    for step, weight in ((2, -1.0), (1, 8.0), (-1, -8.0), (-2, 1.0)):
        q[key][index] = x0 + step * eps
        total += weight * f(q)
    return total / (12 * eps)


@pytest.mark.parametrize("reduction", ["sum", "mean"])
@pytest.mark.parametrize("opts", list(itertools.product(
    NONLIN, OUTPUT, ["per_step", "per_seq"], ["float", "token"], ["lengths", "no_lengths"])),
    ids="-".join)
def test_reference_gradients_match_finite_differences(opts, reduction):
    """The reference's analytic gradients equal finite differences of its own loss (rel. err < 1e-6)."""
    nonlin, output, target, inp, lens = opts
    T, B, D, H, O = 3, 3, 3, 3, 3
    eps = 1e-4
    for attempt in range(50):
        rng = rng_for("ref-fd", opts, reduction, attempt)
        params = {"W_x": rng.uniform(-0.6, 0.6, (H, D)), "W_h": rng.uniform(-0.6, 0.6, (H, H)),
                  "b_h": rng.uniform(-0.6, 0.6, H), "W_y": rng.uniform(-0.6, 0.6, (O, H)),
                  "b_y": rng.uniform(-0.6, 0.6, O)}
        case = make_case(rng, T, B, D, H, O, tokens=inp == "token", output=output,
                         per_step=target == "per_step", lengths=lens == "lengths", h0=True)
        pre = ref.preactivations(params, case["x"], case["h0"], case["lengths"], nonlin)
        if nonlin == "tanh" or np.min(np.abs(pre)) > 0.02:
            break
    else:
        pytest.fail("no data found with relu pre-activations away from the kink")
    kw = dict(h0=case["h0"], lengths=case["lengths"], nonlinearity=nonlin, output=output,
              reduction=reduction)
    loss, grads, _ = ref.loss_and_grad(params, case["x"], case["target"], **kw)

    def f(q):
        return ref.loss(q, case["x"], case["target"], **kw)

    worst = 0.0
    for k in PARAM_NAMES:
        for index in np.ndindex(params[k].shape):
            fd = five_point_derivative(f, params, k, index, eps)
            an = grads[k][index]
            worst = max(worst, abs(fd - an) / max(abs(fd), abs(an), 1e-5 * max(1.0, abs(loss))))
    assert worst < 1e-6
