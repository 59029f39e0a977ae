"""crnn.from_torch and to_torch: PyTorch's RNN, LSTM and GRU modules (and a Linear head)
in and out, equal in float64 to 1e-12; crnn -> torch -> crnn exact."""

import numpy as np
import pytest

import crnn
from conftest import rng_for

torch = pytest.importorskip("torch")

MODULES = {"rnn": torch.nn.RNN, "lstm": torch.nn.LSTM, "gru": torch.nn.GRU}
CONFIGS = [(cell, layers, bi, bias, bf) for cell in MODULES for layers in (1, 2)
           for bi in (False, True) for bias in (True, False) for bf in (False, True)]


def _module(cell, layers, bi, bias, bf, seed):
    torch.manual_seed(seed)
    kw = {"nonlinearity": "relu"} if cell == "rnn" and layers == 2 else {}
    rnn = MODULES[cell](5, 7, num_layers=layers, bidirectional=bi, bias=bias, batch_first=bf,
                        dtype=torch.float64, **kw)
    linear = torch.nn.Linear(7 * (2 if bi else 1), 3, dtype=torch.float64)
    return rnn, linear


def _states(h):
    return h if isinstance(h, tuple) else (h,)


@pytest.mark.parametrize("cell, layers, bi, bias, bf", CONFIGS)
def test_from_torch_equals_the_module(cell, layers, bi, bias, bf):
    rnn, linear = _module(cell, layers, bi, bias, bf, seed=layers * 10 + bi)
    model = crnn.from_torch(rnn, linear, output="linear")
    assert type(model).__name__ == cell.upper() and model.batch_first == bf
    x = rng_for("from-torch", cell, layers, bi, bias, bf).standard_normal(
        (4, 6, 5) if bf else (6, 4, 5))
    with torch.no_grad():
        out, h_n = rnn(torch.from_numpy(x))
        want = linear(out).numpy()
    y, h = model.forward(x)
    np.testing.assert_allclose(y, want, rtol=1e-12, atol=1e-12)
    for got, ref in zip(_states(h), _states(h_n)):
        ref = ref.numpy()
        np.testing.assert_allclose(got, ref[0] if ref.shape[0] == 1 else ref, rtol=1e-12,
                                   atol=1e-12)
    # and back: crnn -> torch -> crnn is exact
    rnn2, linear2 = model.to_torch()
    assert (rnn2.batch_first, rnn2.bidirectional, rnn2.num_layers) == (bf, bi, layers)
    again = crnn.from_torch(rnn2, linear2, output="linear")
    for k, v in model.params.items():
        np.testing.assert_array_equal(again.params[k], v, err_msg=k)
    with torch.no_grad():
        np.testing.assert_allclose(linear2(rnn2(torch.from_numpy(x))[0]).numpy(), want,
                                   rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("cell", list(MODULES))
def test_without_a_head_the_layers_alone(cell):
    rnn, _ = _module(cell, 2, True, True, False, seed=3)
    stack = crnn.from_torch(rnn)
    assert isinstance(stack, crnn.layers.Stack)
    x = rng_for("from-torch-stack", cell).standard_normal((6, 4, 5))
    with torch.no_grad():
        out, _ = rnn(torch.from_numpy(x))
    got, _, _ = stack.forward(x)
    np.testing.assert_allclose(got, out.numpy(), rtol=1e-12, atol=1e-12)
    rnn2, linear2 = stack.to_torch()
    assert linear2 is None
    for (k, a), (_, b) in zip(rnn.named_parameters(), rnn2.named_parameters()):
        if "bias" not in k or cell == "gru":
            np.testing.assert_array_equal(a.detach().numpy(), b.detach().numpy(), err_msg=k)


def test_float32_modules_give_float32_models():
    rnn = torch.nn.GRU(3, 4)
    model = crnn.from_torch(rnn, torch.nn.Linear(4, 2))
    assert model.dtype == np.float32 and model.output == "softmax"


def test_bad_arguments():
    with pytest.raises(TypeError, match="rnn"):
        crnn.from_torch(torch.nn.Linear(3, 4))
    with pytest.raises(ValueError, match="proj_size"):
        crnn.from_torch(torch.nn.LSTM(3, 4, proj_size=2))
    with pytest.raises(ValueError, match="in_features"):
        crnn.from_torch(torch.nn.RNN(3, 4), torch.nn.Linear(5, 2))
    with pytest.raises(TypeError, match="linear"):
        crnn.from_torch(torch.nn.RNN(3, 4), torch.nn.RNN(4, 2))
