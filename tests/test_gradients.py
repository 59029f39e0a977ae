"""crnn's analytic gradients equal finite differences of crnn's own loss (float64).

The derivative is the 4th-order central difference
``(-f(w+2e) + 8f(w+e) - 8f(w-e) + f(w-2e)) / 12e`` with e = 1e-4: its
truncation error is O(e^4) and its round-off ~1e-12, so a relative error of
1e-6 is a real bound. (A two-point difference at e = 1e-6 has round-off
~1e-9, which already gives relative errors of a few 1e-6 on the reference's
own small gradient entries.) The relative error is
``|fd - an| / max(|fd|, |an|, 1e-5 * max(1, |L|))``: the round-off of the
difference grows with the loss L, so the floor does too; it only matters for
entries below 1e-5·max(1, |L|), where it turns the bound into an absolute
~1e-11·max(1, |L|) (exactly-zero entries, e.g. dead relu units, included).

For relu, data is redrawn until every pre-activation is at least 0.02 away
from the kink, far beyond what a 2e-4 weight change can move it.
"""

import itertools

import numpy as np
import pytest

import _reference as ref
from conftest import PARAM_NAMES, make_case, make_model, rng_for

EPS = 1e-4
FLOOR = 1e-5
KINK_MARGIN = 0.02


def five_point_derivative(f, param, index, eps=EPS):
    """d f / d param[index] by the 4th-order central difference (param restored afterwards)."""
    x0 = param[index]
    total = 0.0
    try:
        for step, weight in ((2, -1.0), (1, 8.0), (-1, -8.0), (-2, 1.0)):
            param[index] = x0 + step * eps
            total += weight * f()
    finally:
        param[index] = x0
    return total / (12 * eps)


def rel_err(fd, an, loss):
    return abs(fd - an) / max(abs(fd), abs(an), FLOOR * max(1.0, abs(loss)))


def _kink_free_setup(key, sizes, nonlin, output, per_step, tokens, lengths, h0):
    """A float64 model and data whose relu pre-activations stay clear of 0."""
    T, B, D, H, O = sizes
    for attempt in range(100):
        rng = rng_for(key, attempt)
        model = make_model(D, H, O, nonlinearity=nonlin, output=output, dtype="float64",
                           rng=rng, scale=0.6)
        case = make_case(rng, T, B, D, H, O, tokens=tokens, output=output, per_step=per_step,
                         lengths=lengths, h0=h0, dtype="float64")
        if nonlin == "tanh":
            return model, case
        pre = ref.preactivations(model.params, case["x"], case["h0"], case["lengths"], nonlin)
        if np.min(np.abs(pre)) > KINK_MARGIN:
            return model, case
    pytest.fail("no data found with relu pre-activations away from the kink")


def _check_entries(model, case, reduction, entries):
    """Max relative error between crnn's gradient and finite differences over ``entries``."""
    kw = dict(h0=case["h0"], lengths=case["lengths"], reduction=reduction)
    loss, grads, _ = model.loss_and_grad(case["x"], case["target"], **kw)

    def f():
        return model.loss_and_grad(case["x"], case["target"], **kw)[0]

    worst, where = 0.0, None
    for k, index in entries:
        e = rel_err(five_point_derivative(f, model.params[k], index), grads[k][index], loss)
        if e > worst:
            worst, where = e, (k, index)
    return worst, where


OPTIONS = list(itertools.product(
    ["tanh", "relu"], ["softmax", "linear"], ["per_step", "per_seq"], ["float", "token"],
    ["lengths", "no_lengths"], ["h0", "no_h0"]))


@pytest.mark.parametrize("opts", OPTIONS, ids="-".join)
def test_every_gradient_entry_matches_finite_differences(opts):
    """Every entry of every parameter's gradient matches finite differences to rel. err < 1e-6."""
    nonlin, output, target, inp, lens, h0 = opts
    reduction = ["sum", "mean"][OPTIONS.index(opts) % 2]
    sizes = (4, 3, 3, 4, 3)
    model, case = _kink_free_setup(("fd", opts), sizes, nonlin, output, target == "per_step",
                                   inp == "token", lens == "lengths", h0 == "h0")
    entries = [(k, i) for k in PARAM_NAMES for i in np.ndindex(model.params[k].shape)]
    before = {k: v.copy() for k, v in model.params.items()}
    worst, where = _check_entries(model, case, reduction, entries)
    assert worst < 1e-6, f"relative error {worst:.3g} at {where}"
    for k in PARAM_NAMES:  # the perturbations were undone exactly
        np.testing.assert_array_equal(model.params[k], before[k])


def _relu_pattern(model, case):
    pre = ref.preactivations(model.params, case["x"], case["h0"], case["lengths"], "relu")
    return pre > 0


@pytest.mark.parametrize("opts", list(itertools.product(
    ["tanh", "relu"], ["softmax", "linear"], ["per_step", "per_seq"])), ids="-".join)
def test_larger_model_random_entries_match_finite_differences(opts):
    """On a larger ragged batch (tokens or floats, h0), 25 random entries per parameter match FD.

    There are too many relu units here to keep them all clear of the kink,
    so for relu an entry is used only if moving it by +-2e-4 leaves every
    unit's on/off pattern unchanged (checked with the reference).
    """
    nonlin, output, target = opts
    T, B, D, H, O = sizes = (10, 6, 8, 12, 6)
    tokens = target == "per_seq"
    rng = rng_for("fd-large", opts)
    model = make_model(D, H, O, nonlinearity=nonlin, output=output, dtype="float64", rng=rng,
                       scale=0.6)
    case = make_case(rng, *sizes, tokens=tokens, output=output, per_step=target == "per_step",
                     lengths=True, h0=True, dtype="float64")
    pattern = _relu_pattern(model, case) if nonlin == "relu" else None
    entries = []
    for k in PARAM_NAMES:
        p = model.params[k]
        chosen = []
        for j in rng.permutation(p.size):
            index = np.unravel_index(j, p.shape)
            if pattern is not None:
                x0 = p[index]
                same = True
                for step in (2, -2):
                    p[index] = x0 + step * EPS
                    same = same and np.array_equal(_relu_pattern(model, case), pattern)
                p[index] = x0
                if not same:
                    continue
            chosen.append((k, index))
            if len(chosen) == 25:
                break
        assert len(chosen) >= min(20, p.size), f"too few kink-free entries of {k}"
        entries += chosen
    worst, where = _check_entries(model, case, "mean", entries)
    assert worst < 1e-6, f"relative error {worst:.3g} at {where}"


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("per_step", [True, False], ids=["per_step", "per_seq"])
def test_softmax_huge_logits_give_finite_loss_and_grads(per_step, dtype):
    """Logits of +-1e4 give a finite loss (~2e4 for the -1e4 class), finite and exact grads."""
    rng = rng_for("huge", per_step, dtype)
    T, B, D, H, O = 4, 3, 3, 4, 3
    model = make_model(D, H, O, dtype=dtype, rng=rng, scale=0.1)
    model.params["b_y"][:] = [1e4, -1e4, 0.0]
    case = make_case(rng, T, B, D, H, O, per_step=per_step, lengths=True, dtype=dtype)
    target = np.ones_like(case["target"])  # the class at -1e4
    loss, grads, _ = model.loss_and_grad(case["x"], target, lengths=case["lengths"],
                                         reduction="mean")
    assert np.isfinite(loss)
    for k in PARAM_NAMES:
        assert np.all(np.isfinite(grads[k])), k
    np.testing.assert_allclose(loss, 2e4, rtol=1e-3)
    loss_ref, grads_ref, _ = ref.loss_and_grad(model.params, case["x"], target,
                                               lengths=case["lengths"], reduction="mean")
    rtol = 1e-10 if dtype == "float64" else 1e-4
    np.testing.assert_allclose(loss, loss_ref, rtol=rtol)
    for k in PARAM_NAMES:
        np.testing.assert_allclose(grads[k], grads_ref[k], rtol=rtol, atol=rtol, err_msg=k)
    # The -1e4 logits make softmax exactly [1, 0, 0] up to rounding; db_y is softmax - onehot.
    np.testing.assert_allclose(grads["b_y"], [1.0, -1.0, 0.0], atol=1e-4)
    y, _ = model.forward(case["x"], lengths=case["lengths"])
    assert np.all(np.isfinite(y))
    # Class 0 scores exactly 0 loss: -log softmax = 0, not NaN.
    loss0, grads0, _ = model.loss_and_grad(case["x"], np.zeros_like(target),
                                           lengths=case["lengths"])
    assert np.isfinite(loss0) and abs(loss0) < 1e-3
    for k in PARAM_NAMES:
        assert np.all(np.isfinite(grads0[k])), k
