"""The worst differences of crnn's PyTorch crossings, over every option.

Not a timing: the numbers the interop issue's closing note quotes, over 72
configurations (RNN, LSTM, GRU × 1-3 layers × bidirectional × bias ×
batch_first), each with random weights and inputs:

- ``crnn.from_torch(rnn, linear)`` against the torch modules (float64): the
  outputs and final states; and ``model.to_torch()`` back to crnn, which must
  give the same parameters bit for bit;
- ``crnn.torch`` modules against ``torch.nn``'s with the same state_dict
  (float64 and float32): outputs, states and the gradients of the input,
  h0/c0 and every parameter.

The tests (tests/test_torch_weights.py, tests/test_crnn_torch.py) assert
the tolerances; this prints how far below them crnn is::

    PYTHONPATH=src python benchmarks/interop_differences.py
"""

import itertools

import numpy as np
import torch

import crnn
import crnn.torch as ct

MODULES = {"rnn": (torch.nn.RNN, ct.RNN), "lstm": (torch.nn.LSTM, ct.LSTM),
           "gru": (torch.nn.GRU, ct.GRU)}
CONFIGS = list(itertools.product(MODULES, (1, 2, 3), (False, True), (True, False),
                                 (False, True)))
T, B, D, H = 9, 4, 5, 7


def _states(h):
    return h if isinstance(h, tuple) else (h,)


def _input(bf, dtype, **kw):
    return torch.randn((B, T, D) if bf else (T, B, D), dtype=dtype, **kw)


def weights_worst(cell, layers, bi, bias, bf):
    """(worst |crnn - torch| of outputs and states, worst parameter change of a round trip)."""
    torch.manual_seed(layers + 10 * bi)
    options = dict(num_layers=layers, bidirectional=bi, bias=bias, batch_first=bf,
                   dtype=torch.float64)
    rnn = MODULES[cell][0](D, H, **options)
    linear = torch.nn.Linear(H * (1 + bi), 3, dtype=torch.float64)
    model = crnn.from_torch(rnn, linear, output="linear")
    x = _input(bf, torch.float64)
    with torch.no_grad():
        out, h_n = rnn(x)
        want = linear(out).numpy()
    y, h = model.forward(x.numpy())
    worst = np.abs(y - want).max()
    for got, ref in zip(_states(h), _states(h_n)):
        ref = ref.numpy()
        worst = max(worst, np.abs(got - (ref[0] if ref.shape[0] == 1 else ref)).max())
    again = crnn.from_torch(*model.to_torch(), output="linear")
    trip = max(np.abs(again.params[k] - v).max() for k, v in model.params.items())
    return worst, trip


def module_worst(cell, layers, bi, bias, bf, dtype):
    """Worst |crnn.torch - torch.nn| over outputs, states and every gradient."""
    theirs, ours = MODULES[cell]
    options = dict(num_layers=layers, bidirectional=bi, bias=bias, batch_first=bf, dtype=dtype)
    torch.manual_seed(3)
    a = ours(D, H, **options)
    b = theirs(D, H, **options)
    b.load_state_dict(a.state_dict())
    x = _input(bf, dtype, requires_grad=True)
    shape = (layers * (1 + bi), B, H)
    hx = torch.randn(shape, dtype=dtype, requires_grad=True)
    if cell == "lstm":
        hx = (hx, torch.randn(shape, dtype=dtype, requires_grad=True))
    out_a, h_a = a(x, hx)
    out_b, h_b = b(x, hx)

    def loss(out, h):       # reaches every output and state, with no gradient cancelling
        w = torch.linspace(-1, 1, out.numel(), dtype=dtype).reshape(out.shape)
        return (w * out).sum() + sum((s ** 2).sum() for s in _states(h))

    leaves = [x, *_states(hx)]
    g_a = torch.autograd.grad(loss(out_a, h_a), leaves + list(a.parameters()))
    g_b = torch.autograd.grad(loss(out_b, h_b), leaves + list(b.parameters()))
    pairs = list(zip([out_a, *_states(h_a)], [out_b, *_states(h_b)])) + list(zip(g_a, g_b))
    return max((u - v).abs().max().item() for u, v in pairs)


def main():
    torch.set_num_threads(1)
    worst, trip = zip(*(weights_worst(*c) for c in CONFIGS))
    print(f"from_torch: {len(CONFIGS)} configurations, worst |crnn - torch| (outputs, states) "
          f"{max(worst):.3g}; crnn -> torch -> crnn worst parameter difference {max(trip):.3g}")
    for dtype in (torch.float64, torch.float32):
        w = max(module_worst(*c, dtype) for c in CONFIGS)
        print(f"crnn.torch vs torch.nn, {dtype}: {len(CONFIGS)} configurations, worst |diff| "
              f"(outputs, states, gradients of input, h0/c0, every parameter) {w:.3g}")


if __name__ == "__main__":
    main()
