"""PyTorch autograd as the oracle: every class and option against torch.nn.RNN/LSTM/GRU.

Weights are copied across (crnn's b_h = PyTorch's b_ih + b_hh for the RNN and
LSTM: here b_ih = b_h and b_hh = 0), the head is an nn.Linear and the loss
PyTorch's cross-entropy or ½‖z − ŷ‖², summed. Ragged batches go through
PyTorch's packed sequences. Everything in float64, to 1e-10 relative: the
loss, every gradient, the outputs, the final states, and the layer API's
dX, dh0 and dc0. Dropout is checked against torch layers run one at a time
with crnn's masks between them.

Skipped when torch is not installed (``pip install ".[oracle]"``).
"""

import itertools

import numpy as np
import pytest

import crnn
from conftest import record_oracle_error, rng_for

torch = pytest.importorskip("torch")

CLASSES = {"RNN": crnn.RNN, "LSTM": crnn.LSTM, "GRU": crnn.GRU}
TORCH = {"RNN": "RNN", "LSTM": "LSTM", "GRU": "GRU"}
T, B, D, H, O = 7, 5, 4, 6, 3
LENGTHS = np.array([7, 3, 5, 1, 6])
RTOL = 1e-10


def _suffix(l, d):
    return ("" if l == 0 else f"_l{l}") + ("_reverse" if d else "")


def _rel(got, want):
    want = np.asarray(want, dtype=np.float64)
    scale = max(float(np.abs(want).max()), 1e-300)
    return float(np.abs(np.asarray(got, dtype=np.float64) - want).max()) / scale


def torch_layers(params, kind, num_layers, bidirectional, nonlinearity="tanh", first=0,
                 per_layer=False):
    """torch modules with crnn's weights: one module, or one per layer (``per_layer``)."""
    dirs = 2 if bidirectional else 1
    H_ = params["W_h"].shape[1]
    cls = getattr(torch.nn, TORCH[kind])
    kw = {"nonlinearity": nonlinearity} if kind == "RNN" else {}
    mods = []
    for group in ([[l] for l in range(num_layers)] if per_layer else [list(range(num_layers))]):
        din = params["W_x" + _suffix(group[0], 0)].shape[1]
        m = cls(din, H_, num_layers=len(group), bidirectional=bidirectional,
                dtype=torch.float64, **kw)
        with torch.no_grad():
            for j, l in enumerate(group):
                for d in range(dirs):
                    s, ts = _suffix(l, d), f"_l{j}" + ("_reverse" if d else "")
                    getattr(m, "weight_ih" + ts).copy_(torch.tensor(params["W_x" + s]))
                    getattr(m, "weight_hh" + ts).copy_(torch.tensor(params["W_h" + s]))
                    if "b_x" + s in params:
                        getattr(m, "bias_ih" + ts).copy_(torch.tensor(params["b_x" + s]))
                        getattr(m, "bias_hh" + ts).copy_(torch.tensor(params["b_h" + s]))
                    else:
                        getattr(m, "bias_ih" + ts).copy_(torch.tensor(params["b_h" + s]))
                        getattr(m, "bias_hh" + ts).zero_()
        mods.append((group, m))
    return mods


def torch_grads(mods, params, dirs):
    """crnn-named gradients of torch modules built by torch_layers."""
    out = {}
    for group, m in mods:
        for j, l in enumerate(group):
            for d in range(dirs):
                s, ts = _suffix(l, d), f"_l{j}" + ("_reverse" if d else "")
                out["W_x" + s] = getattr(m, "weight_ih" + ts).grad.numpy()
                out["W_h" + s] = getattr(m, "weight_hh" + ts).grad.numpy()
                if "b_x" + s in params:
                    out["b_x" + s] = getattr(m, "bias_ih" + ts).grad.numpy()
                    out["b_h" + s] = getattr(m, "bias_hh" + ts).grad.numpy()
                else:
                    out["b_h" + s] = getattr(m, "bias_ih" + ts).grad.numpy()
    return out


def _run_torch(mods, x, lens, state, masks, kind):
    """Packed forward through the module(s); returns padded outputs and final (h, c) stacks."""
    hs, cs = [], []
    inp = x
    for i, (group, m) in enumerate(mods):
        n = len(group) * (2 if m.bidirectional else 1)
        st = None
        if state is not None:
            h0, c0 = state
            lo = sum(len(g) for g, _ in mods[:i]) * (2 if m.bidirectional else 1)
            st = (h0[lo:lo + n], c0[lo:lo + n]) if kind == "LSTM" else h0[lo:lo + n]
        packed = torch.nn.utils.rnn.pack_padded_sequence(inp, torch.tensor(lens),
                                                         enforce_sorted=False)
        out, hn = m(packed, st)
        out, _ = torch.nn.utils.rnn.pad_packed_sequence(out, total_length=x.shape[0])
        if kind == "LSTM":
            hs.append(hn[0])
            cs.append(hn[1])
        else:
            hs.append(hn)
        inp = out if masks is None or i == len(mods) - 1 else out * torch.tensor(masks[i])
    return out, torch.cat(hs), (torch.cat(cs) if cs else None)


def _check_model(kind, L, bi, ragged, with_h0, per_step, tokens, output, dropout=0.0):
    rng = rng_for("oracle", kind, L, bi, ragged, with_h0, per_step, tokens, output, dropout)
    dirs = 2 if bi else 1
    model = CLASSES[kind](D, H, O, num_layers=L, bidirectional=bi, dropout=dropout,
                          output=output, dtype="float64", seed=int(rng.integers(1 << 30)))
    x = rng.integers(0, D, (T, B)) if tokens else rng.standard_normal((T, B, D))
    lens = LENGTHS if ragged else np.full(B, T)
    n = L * dirs
    h0 = 0.5 * rng.standard_normal((n, B, H)) if with_h0 else None
    c0 = 0.5 * rng.standard_normal((n, B, H)) if with_h0 else None
    state = None
    if with_h0:
        state = (h0, c0) if kind == "LSTM" else h0
        if n == 1:
            state = (h0[0], c0[0]) if kind == "LSTM" else h0[0]
    if output == "softmax":
        target = rng.integers(0, O, (T, B) if per_step else (B,))
    else:
        target = rng.standard_normal((T, B, O) if per_step else (B, O))
    seed = int(rng.integers(1 << 30))
    loss, grads, h_last = model.loss_and_grad(x, target, h0=state,
                                              lengths=lens if ragged else None,
                                              reduction="sum", seed=seed)
    masks = None
    if dropout and L > 1:
        masks = crnn._data.dropout_masks(np.random.default_rng(seed), L, T, B, dirs * H,
                                         dropout, np.float64)
    mods = torch_layers(model.params, kind, L, bi, getattr(model, "nonlinearity", "tanh"),
                        per_layer=masks is not None)
    lin = torch.nn.Linear(dirs * H, O, dtype=torch.float64)
    with torch.no_grad():
        lin.weight.copy_(torch.tensor(model.params["W_y"]))
        lin.bias.copy_(torch.tensor(model.params["b_y"]))
    xt = torch.nn.functional.one_hot(torch.tensor(x), D).double() if tokens else torch.tensor(x)
    tstate = None if not with_h0 else (torch.tensor(h0), torch.tensor(c0))
    out, hn, cn = _run_torch(mods, xt, lens, tstate, masks, kind)
    valid = torch.tensor(np.arange(T)[:, None] < lens[None, :])
    if per_step:
        z = lin(out)[valid]
        tg = torch.tensor(target)[valid]
    else:
        z = lin(torch.cat([hn[-dirs + d] for d in range(dirs)], dim=1))
        tg = torch.tensor(target)
    lt = (torch.nn.functional.cross_entropy(z, tg, reduction="sum") if output == "softmax"
          else 0.5 * ((z - tg) ** 2).sum())
    lt.backward()
    want = torch_grads(mods, model.params, dirs)
    want["W_y"], want["b_y"] = lin.weight.grad.numpy(), lin.bias.grad.numpy()
    assert set(want) == set(grads)
    errs = {"loss": abs(loss - lt.item()) / abs(lt.item())}
    for k in want:
        errs[k] = _rel(grads[k], want[k])
    h = h_last[0] if kind == "LSTM" else h_last
    errs["h_last"] = _rel(h.reshape(n, B, H), hn.detach().numpy())
    if kind == "LSTM":
        errs["c_last"] = _rel(h_last[1].reshape(n, B, H), cn.detach().numpy())
    if masks is None:
        y, _ = model.forward(x, h0=state, lengths=lens if ragged else None)
        zt = lin(out).detach()
        yt = (torch.softmax(zt, -1) if output == "softmax" else zt).numpy()
        errs["y"] = _rel(y, yt * valid.numpy()[..., None])
    return errs


def _assert_all(errs, what):
    worst = max(errs.values())
    record_oracle_error(worst)
    bad = {k: v for k, v in errs.items() if not v <= RTOL}
    assert not bad, f"{what}: relative errors above {RTOL}: {bad}"


@pytest.mark.parametrize("bi", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize("L", [1, 2, 3])
@pytest.mark.parametrize("kind", list(CLASSES))
def test_model_matches_torch(kind, L, bi):
    """Loss, gradients, outputs and final states for every ragged × h0 × target × input × head."""
    for ragged, with_h0, per_step, tokens, output in itertools.product(
            [False, True], [False, True], [True, False], [False, True], ["softmax", "linear"]):
        what = dict(ragged=ragged, h0=with_h0, per_step=per_step, tokens=tokens, output=output)
        _assert_all(_check_model(kind, L, bi, ragged, with_h0, per_step, tokens, output), what)


@pytest.mark.parametrize("bi", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize("kind", list(CLASSES))
def test_dropout_matches_torch_layer_by_layer(kind, bi):
    """With dropout, crnn's masks between torch's layers give crnn's loss and gradients."""
    for L, ragged, per_step in itertools.product([2, 3], [False, True], [True, False]):
        errs = _check_model(kind, L, bi, ragged, False, per_step, False, "softmax", dropout=0.3)
        _assert_all(errs, dict(L=L, ragged=ragged, per_step=per_step))


@pytest.mark.parametrize("nonlinearity", ["tanh", "relu"])
def test_relu_elman_matches_torch(nonlinearity):
    for L, bi in itertools.product([1, 2], [False, True]):
        rng = rng_for("oracle-relu", nonlinearity, L, bi)
        model = crnn.RNN(D, H, O, nonlinearity=nonlinearity, num_layers=L, bidirectional=bi,
                         dtype="float64", seed=int(rng.integers(1 << 30)))
        x = rng.standard_normal((T, B, D))
        target = rng.integers(0, O, (T, B))
        loss, grads, _ = model.loss_and_grad(x, target, lengths=LENGTHS, reduction="sum")
        mods = torch_layers(model.params, "RNN", L, bi, nonlinearity)
        lin = torch.nn.Linear((2 if bi else 1) * H, O, dtype=torch.float64)
        with torch.no_grad():
            lin.weight.copy_(torch.tensor(model.params["W_y"]))
            lin.bias.copy_(torch.tensor(model.params["b_y"]))
        out, _, _ = _run_torch(mods, torch.tensor(x), LENGTHS, None, None, "RNN")
        valid = torch.tensor(np.arange(T)[:, None] < LENGTHS[None, :])
        lt = torch.nn.functional.cross_entropy(lin(out)[valid], torch.tensor(target)[valid],
                                               reduction="sum")
        lt.backward()
        want = torch_grads(mods, model.params, 2 if bi else 1)
        errs = {k: _rel(grads[k], v) for k, v in want.items()}
        errs["loss"] = abs(loss - lt.item()) / lt.item()
        _assert_all(errs, dict(L=L, bi=bi))


@pytest.mark.parametrize("bi", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize("L", [1, 2, 3])
@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_layer_api_matches_torch(cell, L, bi):
    """The layer API: outputs, final states, parameter gradients, dX, dh0 (and dc0), from
    upstream gradients of the outputs and of the final states, ragged or not, h0 or not."""
    kind = {"rnn": "RNN", "lstm": "LSTM", "gru": "GRU"}[cell]
    dirs = 2 if bi else 1
    n = L * dirs
    for ragged, with_h0 in itertools.product([False, True], [False, True]):
        rng = rng_for("oracle-layers", cell, L, bi, ragged, with_h0)
        stack = crnn.layers.Stack(cell, D, H, num_layers=L, bidirectional=bi, dtype="float64",
                                  seed=int(rng.integers(1 << 30)))
        x = rng.standard_normal((T, B, D))
        lens = LENGTHS if ragged else np.full(B, T)
        h0 = 0.5 * rng.standard_normal((n, B, H))
        c0 = 0.5 * rng.standard_normal((n, B, H))
        state = None
        if with_h0:
            state = ((h0, c0) if n > 1 else (h0[0], c0[0])) if cell == "lstm" else \
                (h0 if n > 1 else h0[0])
        out, h_last, tape = stack.forward(x, h0=state, lengths=lens if ragged else None)
        d_out = rng.standard_normal(out.shape)
        dh = rng.standard_normal((n, B, H))
        dc = rng.standard_normal((n, B, H))
        d_final = ((dh, dc) if n > 1 else (dh[0], dc[0])) if cell == "lstm" else \
            (dh if n > 1 else dh[0])
        grads, dx, dh0 = stack.backward(tape, d_out, d_final)

        mods = torch_layers(stack.params, kind, L, bi)
        xt = torch.tensor(x, requires_grad=True)
        ht = torch.tensor(h0 if with_h0 else np.zeros_like(h0), requires_grad=True)
        ct = torch.tensor(c0 if with_h0 else np.zeros_like(c0), requires_grad=True)
        o, hn, cn = _run_torch(mods, xt, lens, (ht, ct), None, kind)
        valid = torch.tensor((np.arange(T)[:, None] < lens[None, :])[..., None] * 1.0)
        lt = (o * torch.tensor(d_out) * valid).sum() + (hn * torch.tensor(dh)).sum()
        if cell == "lstm":
            lt = lt + (cn * torch.tensor(dc)).sum()
        lt.backward()
        errs = {"out": _rel(out, o.detach().numpy()), "dx": _rel(dx, xt.grad.numpy())}
        gh = dh0[0] if cell == "lstm" else dh0
        errs["dh0"] = _rel(gh.reshape(n, B, H), ht.grad.numpy())
        if cell == "lstm":
            errs["dc0"] = _rel(dh0[1].reshape(n, B, H), ct.grad.numpy())
        hl = h_last[0] if cell == "lstm" else h_last
        errs["h_last"] = _rel(hl.reshape(n, B, H), hn.detach().numpy())
        for k, v in torch_grads(mods, stack.params, dirs).items():
            errs[k] = _rel(grads[k], v)
        _assert_all(errs, dict(ragged=ragged, h0=with_h0))
