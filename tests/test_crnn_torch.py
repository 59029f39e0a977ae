"""crnn.torch: drop-in torch.nn.RNN/LSTM/GRU modules computed by crnn.

Against PyTorch's own modules with the same state_dict (float64, 1e-10):
outputs, final states and the gradients of the input, h0/c0 and every
parameter; torch.autograd.gradcheck; PackedSequence inputs; and the errors.
"""

import copy
import io
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")
import crnn.torch as ct  # noqa: E402

PAIRS = {"rnn": (ct.RNN, torch.nn.RNN), "lstm": (ct.LSTM, torch.nn.LSTM),
         "gru": (ct.GRU, torch.nn.GRU)}
CONFIGS = [(cell, layers, bi, bias, bf, h0) for cell in PAIRS for layers in (1, 2)
           for bi in (False, True) for bias in (True, False) for bf in (False, True)
           for h0 in (False, True)]
TOL = dict(rtol=1e-10, atol=1e-10)


def _pair(cell, *args, seed=0, dtype=torch.float64, **kwargs):
    """(crnn.torch module, torch.nn module) with the same weights."""
    ours, theirs = PAIRS[cell]
    torch.manual_seed(seed)
    a = ours(*args, dtype=dtype, **kwargs)
    b = theirs(*args, dtype=dtype, **kwargs)
    b.load_state_dict(a.state_dict())
    return a, b


def _states(h):
    return list(h) if isinstance(h, tuple) else [h]


def _hx(cell, n, B, H, dtype=torch.float64, batched=True):
    shape = (n, B, H) if batched else (n, H)
    h = torch.randn(shape, dtype=dtype, requires_grad=True)
    if cell != "lstm":
        return h
    return h, torch.randn(shape, dtype=dtype, requires_grad=True)


def _leaves(x, hx):
    return [x] + ([] if hx is None else _states(hx))


def _compare(a, b, x, hx=None, **tol):
    """Outputs, states and every gradient of a and b on the same input."""
    tol = tol or TOL
    out_a, h_a = a(x, hx)
    out_b, h_b = b(x, hx)
    data = (lambda o: o.data) if isinstance(out_a, torch.nn.utils.rnn.PackedSequence) else \
        (lambda o: o)
    torch.testing.assert_close(data(out_a), data(out_b), **tol)
    for s, t in zip(_states(h_a), _states(h_b)):
        torch.testing.assert_close(s, t, **tol)
    # A loss that reaches every output and state, with weights so no gradient cancels.
    def loss(out, h):
        o = data(out)
        w = torch.linspace(-1, 1, o.numel(), dtype=o.dtype).reshape(o.shape)
        return (w * o).sum() + sum((s ** 2).sum() for s in _states(h))
    leaves = [v for v in _leaves(x.data if hasattr(x, "batch_sizes") else x, hx)
              if v.requires_grad]
    g_a = torch.autograd.grad(loss(out_a, h_a), leaves + list(a.parameters()))
    g_b = torch.autograd.grad(loss(out_b, h_b), leaves + list(b.parameters()))
    for (name, _), u, v in zip([("input", 0)] * len(leaves) + list(a.named_parameters()),
                               g_a, g_b):
        torch.testing.assert_close(u, v, **tol, msg=lambda m: f"{name}: {m}")
    return out_a, h_a


@pytest.mark.parametrize("cell, layers, bi, bias, bf, h0", CONFIGS)
def test_equals_torch_nn(cell, layers, bi, bias, bf, h0):
    kw = {"nonlinearity": "relu"} if cell == "rnn" and layers == 2 else {}
    a, b = _pair(cell, 5, 7, num_layers=layers, bidirectional=bi, bias=bias, batch_first=bf,
                 seed=layers + 2 * bi, **kw)
    assert isinstance(a, PAIRS[cell][1])
    assert list(a.state_dict()) == list(b.state_dict())
    T, B = 6, 4
    x = torch.randn((B, T, 5) if bf else (T, B, 5), dtype=torch.float64, requires_grad=True)
    hx = _hx(cell, layers * (1 + bi), B, 7) if h0 else None
    _compare(a, b, x, hx)


@pytest.mark.parametrize("cell", PAIRS)
def test_float32_agrees(cell):
    a, b = _pair(cell, 16, 32, num_layers=2, bidirectional=True, dtype=torch.float32)
    x = torch.randn(20, 8, 16, requires_grad=True)
    _compare(a, b, x, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("cell", PAIRS)
def test_gradcheck(cell):
    """torch.autograd.gradcheck (and gradgradcheck is refused: no double backward)
    over the input, h0/c0 and every parameter, in float64."""
    a, _ = _pair(cell, 3, 4, num_layers=2, bidirectional=True, seed=3)
    names = [n for n, _ in a.named_parameters()]
    x = torch.randn(5, 2, 3, dtype=torch.float64, requires_grad=True)
    hx = _states(_hx(cell, 4, 2, 4))

    def f(x, *rest):
        states, weights = rest[:len(hx)], rest[len(hx):]
        out, h = torch.func.functional_call(a, dict(zip(names, weights)),
                                            (x, tuple(states) if cell == "lstm" else states[0]))
        return (out, *_states(h))

    params = [p.detach().clone().requires_grad_() for p in a.parameters()]
    assert torch.autograd.gradcheck(f, (x, *hx, *params), eps=1e-6, atol=1e-7)


def test_gradcheck_with_ragged_packed_input():
    a, _ = _pair("lstm", 3, 4, bidirectional=True, seed=4)
    lengths = torch.tensor([2, 5, 3])
    x = torch.randn(3, 5, 3, dtype=torch.float64, requires_grad=True)

    def f(x):
        packed = torch.nn.utils.rnn.pack_padded_sequence(x, lengths, batch_first=True,
                                                         enforce_sorted=False)
        out, (h, c) = a(packed)
        return out.data, h, c

    assert torch.autograd.gradcheck(f, (x,), eps=1e-6, atol=1e-7)


@pytest.mark.parametrize("cell", PAIRS)
@pytest.mark.parametrize("sort", [False, True])
def test_packed_sequence(cell, sort):
    a, b = _pair(cell, 5, 6, num_layers=2, bidirectional=True, batch_first=True, seed=5)
    lengths = torch.tensor([7, 3, 1, 5]) if not sort else torch.tensor([7, 5, 3, 1])
    x = torch.randn(4, 7, 5, dtype=torch.float64, requires_grad=True)

    def packed():
        return torch.nn.utils.rnn.pack_padded_sequence(x, lengths, batch_first=True,
                                                       enforce_sorted=sort)
    hx = _hx(cell, 4, 4, 6)
    out, _ = _compare(a, b, packed(), hx)
    ref, _ = b(packed(), hx)
    assert torch.equal(out.batch_sizes, ref.batch_sizes)
    for u, v in ((out.sorted_indices, ref.sorted_indices),
                 (out.unsorted_indices, ref.unsorted_indices)):
        assert (u is None and v is None) or torch.equal(u, v)
    # and the input's gradient, through the packing
    g_a, = torch.autograd.grad(a(packed(), hx)[0].data.sum(), x)
    g_b, = torch.autograd.grad(b(packed(), hx)[0].data.sum(), x)
    torch.testing.assert_close(g_a, g_b, **TOL)


@pytest.mark.parametrize("cell", PAIRS)
def test_unbatched_input(cell):
    a, b = _pair(cell, 5, 6, num_layers=2, seed=6)
    x = torch.randn(7, 5, dtype=torch.float64, requires_grad=True)
    out, h = _compare(a, b, x, _hx(cell, 2, 1, 6, batched=False))
    assert out.shape == (7, 6) and _states(h)[0].shape == (2, 6)
    _compare(a, b, x)


def test_one_module_twice_before_backward():
    """Two forward passes, one backward through both (the module's layers hold the
    second call's tape and weights when the first one's backward runs)."""
    a, b = _pair("gru", 4, 5, seed=7)
    x1, x2 = torch.randn(3, 2, 4, dtype=torch.float64), torch.randn(6, 2, 4,
                                                                     dtype=torch.float64)

    def loss(m):
        o1, h1 = m(x1)
        o2, _ = m(x2, h1)
        return o1.sum() + (o2 ** 2).sum()

    for u, v in zip(torch.autograd.grad(loss(a), list(a.parameters())),
                    torch.autograd.grad(loss(b), list(b.parameters()))):
        torch.testing.assert_close(u, v, **TOL)


def test_a_second_backward_recomputes_the_tape(monkeypatch):
    a, _ = _pair("lstm", 4, 5, num_layers=2, seed=8)
    runs = []
    real = ct._run
    monkeypatch.setattr(ct, "_run", lambda *args: runs.append(1) or real(*args))
    x = torch.randn(3, 2, 4, dtype=torch.float64, requires_grad=True)
    out, _ = a(x)
    first = torch.autograd.grad(out.sum(), [x, *a.parameters()], retain_graph=True)
    assert len(runs) == 1
    second = torch.autograd.grad(out.sum(), [x, *a.parameters()])
    assert len(runs) == 2   # the tape is good for one backward: the second recomputed it
    for u, v in zip(first, second):
        assert torch.equal(u, v)


def test_dropout_trains_reproducibly_and_is_off_in_eval():
    a, b = _pair("lstm", 4, 8, num_layers=3, dropout=0.5, seed=9)
    x = torch.randn(5, 3, 4, dtype=torch.float64)
    torch.manual_seed(1)
    y1 = a(x)[0]
    torch.manual_seed(1)
    y2 = a(x)[0]
    assert torch.equal(y1, y2)
    assert not torch.allclose(y1, a(x)[0])
    a.eval(), b.eval()
    _compare(a, b, x.requires_grad_())


def test_weights_changed_in_any_way_are_seen():
    """In place, through .data (no version bump), or swapped for new tensors."""
    a, b = _pair("lstm", 3, 4, seed=13)
    x = torch.randn(4, 2, 3, dtype=torch.float64)
    a(x)
    for m in (a, b):
        m.weight_hh_l0.data.mul_(0.5)
        with torch.no_grad():
            m.bias_ih_l0.add_(0.25)
    _compare(a, b, x.requires_grad_())
    w = torch.nn.Parameter(torch.randn_like(a.weight_ih_l0))
    a.weight_ih_l0, b.weight_ih_l0 = w, torch.nn.Parameter(w.detach().clone())
    _compare(a, b, x)


def test_bias_gradients_do_not_share_memory():
    a, _ = _pair("lstm", 3, 4, seed=10)
    a(torch.randn(2, 1, 3, dtype=torch.float64))[0].sum().backward()
    assert a.bias_ih_l0.grad.data_ptr() != a.bias_hh_l0.grad.data_ptr()
    before = a.bias_hh_l0.grad.clone()
    a.bias_ih_l0.grad.add_(1.0)
    assert torch.equal(a.bias_hh_l0.grad, before)


def test_a_training_loop_follows_torch_nn():
    a, b = _pair("lstm", 3, 8, num_layers=2, batch_first=True, seed=11)
    heads = [torch.nn.Linear(8, 2, dtype=torch.float64) for _ in range(2)]
    heads[1].load_state_dict(heads[0].state_dict())
    opts = [torch.optim.Adam(list(m.parameters()) + list(h.parameters()), lr=0.05)
            for m, h in ((a, heads[0]), (b, heads[1]))]
    x = torch.randn(16, 10, 3, dtype=torch.float64)
    y = (x.sum(dim=(1, 2)) > 0).long()
    losses = [[], []]
    for _ in range(20):
        for i, (m, h) in enumerate(((a, heads[0]), (b, heads[1]))):
            opts[i].zero_grad()
            out, _ = m(x)
            loss = torch.nn.functional.cross_entropy(h(out[:, -1]), y)
            loss.backward()
            opts[i].step()
            losses[i].append(loss.item())
    np.testing.assert_allclose(losses[0], losses[1], rtol=1e-8)
    assert losses[0][-1] < 0.5 * losses[0][0]
    for p, q in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-8, atol=1e-8)


def test_dtype_changes_copies_and_checkpoints():
    a, b = _pair("gru", 4, 5, seed=12, dtype=torch.float32)
    x = torch.randn(3, 2, 4)
    a(x)
    a.double(), b.double()
    _compare(a, b, x.double().requires_grad_())
    c = copy.deepcopy(a)
    _compare(c, b, x.double().requires_grad_())
    saved = io.BytesIO()
    torch.save(a, saved)        # the whole module, as torch.save(model) does
    saved.seek(0)
    _compare(torch.load(saved, weights_only=False), b, x.double().requires_grad_())
    fresh = ct.GRU(4, 5, dtype=torch.float64)
    fresh.load_state_dict(b.state_dict())
    _compare(fresh, b, x.double().requires_grad_())
    with torch.no_grad():
        torch.testing.assert_close(a(x.double())[0], b(x.double())[0], **TOL)


def test_bad_inputs_get_clear_errors():
    lstm = ct.LSTM(4, 5)
    x = torch.randn(3, 2, 4)
    cases = [
        (lambda: lstm(x.half()), TypeError, "input: expected float32 or float64"),
        (lambda: lstm(x.double()), TypeError, "parameters' dtype"),
        (lambda: lstm(torch.randn(3, 2, 4, device="meta")), ValueError, "on the CPU"),
        (lambda: lstm(torch.randn(3, 2, 6)), ValueError, "expected 4 features"),
        (lambda: lstm(torch.randn(3, 2, 4, 1)), ValueError, "3-D (batched) or 2-D"),
        (lambda: lstm(x.numpy()), TypeError, "input: expected a torch.Tensor"),
        (lambda: lstm(x, torch.zeros(1, 2, 5)), TypeError, "a pair (h_0, c_0)"),
        (lambda: lstm(x, (torch.zeros(1, 3, 5), torch.zeros(1, 2, 5))), ValueError,
         "hx[0]: expected shape (1, 2, 5)"),
        (lambda: lstm(x, (torch.zeros(1, 2, 5), torch.zeros(1, 2, 5).double())), TypeError,
         "hx[1]: expected torch.float32"),
        (lambda: ct.LSTM(4, 5, proj_size=2), ValueError, "proj_size"),
    ]
    for call, error, words in cases:
        with pytest.raises(error, match=words.replace("(", r"\(").replace(")", r"\)")
                           .replace("[", r"\[").replace("]", r"\]")):
            call()


def test_no_double_backward():
    a, _ = _pair("rnn", 3, 4)
    x = torch.randn(2, 1, 3, dtype=torch.float64, requires_grad=True)
    for loss in (a(x)[0].sum(), (a(x)[0] ** 2).sum()):
        with pytest.raises(RuntimeError, match="no double backward"):
            torch.autograd.grad(loss, x, create_graph=True)


def test_crnn_torch_without_torch_says_what_to_install():
    code = ("import sys; sys.modules['torch'] = None\n"
            "import crnn\n"
            "try:\n    import crnn.torch\nexcept ImportError as e:\n    print(e)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert "pip install torch" in out
