"""Gradient-flow diagnostics: ``loss_and_grad(..., return_hidden_grads=True)``.

The contract (issue 5, item 4): the call also returns ‖∂L/∂h_t‖ for t = 1..T,
the Frobenius norm, at each step, of the loss's total derivative with respect
to the hidden state over the sequences still running there.

The expected norms come from a plain-numpy BPTT written here on top of
``_reference.py`` (one sequence, one step at a time, float64), and that
helper is itself checked against central finite differences of the reference
loss through an explicit additive perturbation of one h_t.
"""

import numpy as np
import pytest

import _reference as ref
from conftest import PARAM_NAMES, make_case, make_model, rng_for, tol

DTYPES = ["float32", "float64"]
KINK_MARGIN = 0.02


# --- an independent reference for ∂L/∂h_t ------------------------------------------------------

def _run_sequence(p, x, b, h0b, n, nonlinearity):
    """Elman forward over the first n steps of sequence b: pre-activations, states."""
    D = p["W_x"].shape[1]
    hs, pre = [np.array(h0b, dtype=np.float64)], []
    for t in range(n):
        a = p["W_x"] @ ref._input_vector(x, t, b, D) + p["W_h"] @ hs[-1] + p["b_h"]
        pre.append(a)
        hs.append(ref._act(a, nonlinearity))
    return pre, hs


def _setup(params, x, target, h0, lengths, output, reduction):
    p = {k: np.array(params[k], dtype=np.float64) for k in PARAM_NAMES}
    x = np.asarray(x)
    T, B = x.shape[:2]
    H = p["W_h"].shape[0]
    h0 = np.zeros((B, H)) if h0 is None else np.asarray(h0, dtype=np.float64)
    lens = [T] * B if lengths is None else [int(v) for v in np.asarray(lengths)]
    target = np.asarray(target)
    per_step = target.ndim == (2 if output == "softmax" else 3)
    count = sum(lens) if per_step else B
    scale = 1.0 if reduction == "sum" else 1.0 / count
    return p, x, T, B, H, h0, lens, target, per_step, scale


def hidden_grads_ref(params, x, target, h0=None, lengths=None, nonlinearity="tanh",
                     output="softmax", reduction="mean"):
    """dh[t, b] = ∂L/∂h_{t+1} of sequence b (zero where t >= lengths[b]), by textbook BPTT."""
    p, x, T, B, H, h0, lens, target, per_step, scale = _setup(
        params, x, target, h0, lengths, output, reduction)
    dh_all = np.zeros((T, B, H))
    for b in range(B):
        n = lens[b]
        pre, hs = _run_sequence(p, x, b, h0[b], n, nonlinearity)
        dh_next = np.zeros(H)
        for t in range(n - 1, -1, -1):
            dh = dh_next.copy()
            if per_step or t == n - 1:
                z = p["W_y"] @ hs[t + 1] + p["b_y"]
                _, dz = ref._item_loss_and_dz(z, target[t, b] if per_step else target[b],
                                              output)
                dh += p["W_y"].T @ (scale * dz)
            dh_all[t, b] = dh
            dh_next = p["W_h"].T @ (dh * ref._act_prime(pre[t], nonlinearity))
    return dh_all, lens


def norms_ref(params, x, target, **kw):
    """‖∂L/∂h_{t+1}‖ over the sequences running at step t, for every t (float64)."""
    dh, lens = hidden_grads_ref(params, x, target, **kw)
    T = dh.shape[0]
    running = np.arange(T)[:, None] < np.asarray(lens)[None, :]
    return np.sqrt(np.einsum("tbh,tbh->t", dh * running[..., None], dh))


def loss_with_perturbed_state(params, x, target, t_star, b_star, delta, h0=None,
                              lengths=None, nonlinearity="tanh", output="softmax",
                              reduction="mean"):
    """The reference loss with ``delta`` added to h_{t_star+1} of sequence b_star."""
    p, x, T, B, H, h0, lens, target, per_step, scale = _setup(
        params, x, target, h0, lengths, output, reduction)
    D = p["W_x"].shape[1]
    total = 0.0
    for b in range(B):
        h = h0[b].copy()
        for t in range(lens[b]):
            xt = ref._input_vector(x, t, b, D)
            h = ref._act(p["W_x"] @ xt + p["W_h"] @ h + p["b_h"], nonlinearity)
            if (t, b) == (t_star, b_star):
                h = h + delta
            if per_step or t == lens[b] - 1:
                z = p["W_y"] @ h + p["b_y"]
                item, _ = ref._item_loss_and_dz(z, target[t, b] if per_step else target[b],
                                                output)
                total += item
    return total * scale


def _case(key, *, nonlinearity, output="softmax", per_step=True, lengths=True, h0=False,
          dtype="float64", tokens=False, T=6, B=4, D=3, H=5, O=3, scale=0.9):
    """A model and data; for relu, redrawn until every pre-activation is clear of the kink."""
    for attempt in range(200):
        rng = rng_for(key, attempt)
        model = make_model(D, H, O, nonlinearity=nonlinearity, output=output, dtype=dtype,
                           rng=rng, scale=scale)
        case = make_case(rng, T, B, D, H, O, tokens=tokens, output=output, per_step=per_step,
                         lengths=lengths, h0=h0, dtype=dtype)
        if nonlinearity == "tanh":
            return model, case
        pre = ref.preactivations(model.params, case["x"], case["h0"], case["lengths"],
                                 nonlinearity)
        # relu: also keep a good share of units alive so the norms are not trivially 0.
        if np.min(np.abs(pre)) > KINK_MARGIN and np.mean(pre > 0) > 0.3:
            return model, case
    pytest.fail("no relu data clear of the kink")


# --- the test's own reference is right --------------------------------------------------------

@pytest.mark.parametrize("nonlinearity", ["tanh", "relu"])
@pytest.mark.parametrize("per_step", [True, False], ids=["per_step", "per_sequence"])
def test_reference_hidden_grads_match_finite_differences(per_step, nonlinearity):
    """The test's plain-numpy ∂L/∂h_t equals central differences through an explicit h perturbation."""
    model, case = _case(("fd", per_step, nonlinearity), nonlinearity=nonlinearity,
                        per_step=per_step, h0=True, T=5, B=3, H=4)
    kw = dict(h0=case["h0"], lengths=case["lengths"], nonlinearity=nonlinearity)
    dh, lens = hidden_grads_ref(model.params, case["x"], case["target"], **kw)
    eps = 1e-6
    H = dh.shape[2]
    for b in range(len(lens)):
        for t in range(lens[b]):
            fd = np.empty(H)
            for j in range(H):
                e = np.zeros(H)
                e[j] = eps
                fd[j] = (loss_with_perturbed_state(model.params, case["x"], case["target"],
                                                   t, b, e, **kw)
                         - loss_with_perturbed_state(model.params, case["x"], case["target"],
                                                     t, b, -e, **kw)) / (2 * eps)
            np.testing.assert_allclose(dh[t, b], fd, rtol=1e-6, atol=1e-9,
                                       err_msg=f"t={t} b={b}")


# --- crnn's norms ------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("nonlinearity", ["tanh", "relu"])
@pytest.mark.parametrize("per_step", [True, False], ids=["per_step", "per_sequence"])
@pytest.mark.parametrize("lengths", [False, True], ids=["full", "lengths"])
@pytest.mark.parametrize("output", ["softmax", "linear"])
def test_hidden_grad_norms_equal_reference(output, lengths, per_step, nonlinearity, dtype):
    """norms[t] = ‖∂L/∂h_{t+1}‖ (Frobenius over the sequences still running at t), as plain-numpy BPTT gives."""
    model, case = _case(("norms", output, lengths, per_step, nonlinearity, dtype),
                        nonlinearity=nonlinearity, output=output, per_step=per_step,
                        lengths=lengths, h0=True, dtype=dtype, T=7, B=5)
    loss, grads, h_last, norms = model.loss_and_grad(
        case["x"], case["target"], h0=case["h0"], lengths=case["lengths"],
        return_hidden_grads=True)
    want = norms_ref(model.params, case["x"], case["target"], h0=case["h0"],
                     lengths=case["lengths"], nonlinearity=nonlinearity, output=output)
    assert isinstance(norms, np.ndarray) and norms.shape == (7,)
    assert np.count_nonzero(want) >= 4  # mostly non-zero: all-zero norms would be a weak check
    rtol, atol = tol(dtype)
    np.testing.assert_allclose(norms, want, rtol=max(rtol, 1e-9), atol=atol)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("tokens", [False, True], ids=["floats", "tokens"])
def test_hidden_grad_norms_with_tokens_and_reduction(tokens, reduction, dtype):
    """The norms follow the reduction (sum = count × mean) and work with token-id inputs."""
    model, case = _case(("norms-red", tokens, reduction, dtype), nonlinearity="tanh",
                        tokens=tokens, dtype=dtype, T=6, B=4, D=4)
    out = model.loss_and_grad(case["x"], case["target"], lengths=case["lengths"],
                              reduction=reduction, return_hidden_grads=True)
    want = norms_ref(model.params, case["x"], case["target"], lengths=case["lengths"],
                     reduction=reduction)
    rtol, atol = tol(dtype)
    np.testing.assert_allclose(out[3], want, rtol=max(rtol, 1e-9), atol=atol)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("per_step", [True, False], ids=["per_step", "per_sequence"])
def test_hidden_grads_flag_changes_nothing_else(per_step, dtype):
    """With the flag the call returns (loss, grads, h_last, norms): loss, grads and h_last bitwise as without it."""
    model, case = _case(("flag", per_step, dtype), nonlinearity="tanh", per_step=per_step,
                        h0=True, dtype=dtype)
    kw = dict(h0=case["h0"], lengths=case["lengths"])
    plain = model.loss_and_grad(case["x"], case["target"], **kw)
    flagged = model.loss_and_grad(case["x"], case["target"], return_hidden_grads=True, **kw)
    assert len(plain) == 3 and len(flagged) == 4
    assert flagged[0] == plain[0]
    assert set(flagged[1]) == set(PARAM_NAMES)
    for k in PARAM_NAMES:
        assert flagged[1][k].dtype == np.dtype(dtype)
        assert flagged[1][k].tobytes() == plain[1][k].tobytes(), k
    assert flagged[2].tobytes() == plain[2].tobytes()


def test_hidden_grad_norms_show_vanishing_gradient():
    """With a small recurrent matrix and one target at the end, ‖∂L/∂h_t‖ shrinks going back in time."""
    rng = rng_for("vanish")
    T, B, D, H, O = 12, 3, 2, 6, 2
    model = make_model(D, H, O, rng=rng, scale=0.3)
    x = rng.standard_normal((T, B, D))
    target = rng.integers(0, O, B)
    _, _, _, norms = model.loss_and_grad(x, target, return_hidden_grads=True)
    assert np.all(np.diff(norms) > 0), norms   # strictly larger towards the scored last step
    assert norms[0] < 1e-3 * norms[-1]
