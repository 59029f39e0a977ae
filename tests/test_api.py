"""The RNN constructor's contract: attributes, defaults, params layout, PyTorch-style init, seeding."""

import numpy as np
import pytest

import crnn

from conftest import PARAM_NAMES, rng_for


def test_public_names():
    """The package exposes RNN, load, clip_grad_norm, clip_grad_value, SGD and a version string."""
    for name in ("RNN", "load", "clip_grad_norm", "clip_grad_value", "SGD"):
        assert callable(getattr(crnn, name)), name
    assert isinstance(crnn.__version__, str) and crnn.__version__


def test_defaults():
    """Defaults: tanh, softmax, float32."""
    m = crnn.RNN(3, 4, 5)
    assert (m.nonlinearity, m.output, m.dtype) == ("tanh", "softmax", np.dtype("float32"))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("nonlinearity", ["tanh", "relu"])
@pytest.mark.parametrize("output", ["softmax", "linear"])
def test_attributes_and_params_layout(output, nonlinearity, dtype):
    """Attributes echo the arguments; params: the 5 keys, shapes, C-contiguous, model dtype."""
    D, H, O = 3, 7, 2
    m = crnn.RNN(D, H, O, nonlinearity=nonlinearity, output=output, dtype=dtype, seed=0)
    assert (m.input_size, m.hidden_size, m.output_size) == (D, H, O)
    assert (m.nonlinearity, m.output) == (nonlinearity, output)
    assert isinstance(m.dtype, np.dtype) and m.dtype == np.dtype(dtype)
    assert isinstance(m.params, dict) and set(m.params) == set(PARAM_NAMES)
    shapes = {"W_x": (H, D), "W_h": (H, H), "b_h": (H,), "W_y": (O, H), "b_y": (O,)}
    for k, shape in shapes.items():
        p = m.params[k]
        assert isinstance(p, np.ndarray)
        assert p.shape == shape and p.dtype == np.dtype(dtype) and p.flags.c_contiguous, k
        assert p.flags.writeable, k


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_default_init_is_uniform_in_plus_minus_one_over_sqrt_h(dtype):
    """Every parameter is drawn from uniform(-1/sqrt(H), 1/sqrt(H)): bounds, spread and mean fit."""
    H = 64
    m = crnn.RNN(40, H, 30, dtype=dtype, seed=123)
    bound = 1 / np.sqrt(H)
    values = np.concatenate([m.params[k].astype(np.float64).ravel() for k in PARAM_NAMES])
    assert values.size == H * 40 + H * H + H + 30 * H + 30
    assert np.all(np.abs(values) <= bound * (1 + 1e-6))
    assert np.abs(values).max() > 0.99 * bound
    assert abs(values.mean()) < 0.02 * bound
    np.testing.assert_allclose(values.std(), bound / np.sqrt(3), rtol=0.03)
    for k in PARAM_NAMES:  # each array is drawn too, none left at zero or constant
        assert np.unique(m.params[k]).size == m.params[k].size, k


def test_seed_makes_init_reproducible():
    """The same seed gives bitwise equal params; different seeds (or none) give different ones."""
    a, b = crnn.RNN(4, 5, 3, seed=7), crnn.RNN(4, 5, 3, seed=7)
    for k in PARAM_NAMES:
        assert a.params[k].tobytes() == b.params[k].tobytes(), k
    c = crnn.RNN(4, 5, 3, seed=8)
    assert all(not np.array_equal(a.params[k], c.params[k]) for k in PARAM_NAMES)
    d, e = crnn.RNN(4, 5, 3), crnn.RNN(4, 5, 3)
    assert not np.array_equal(d.params["W_h"], e.params["W_h"])


def test_models_do_not_share_params():
    """Two models never share parameter arrays."""
    a, b = crnn.RNN(2, 3, 2, seed=1), crnn.RNN(2, 3, 2, seed=1)
    for k in PARAM_NAMES:
        assert not np.shares_memory(a.params[k], b.params[k])


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_default_reduction_is_mean(dtype):
    """loss_and_grad's default reduction is "mean" = "sum" / number of counted items."""
    rng = rng_for("reduction", dtype)
    m = crnn.RNN(3, 4, 5, dtype=dtype, seed=0)
    x = rng.standard_normal((6, 4, 3))
    t = rng.integers(0, 5, (6, 4))
    lengths = np.array([6, 2, 3, 1])
    default = m.loss_and_grad(x, t, lengths=lengths)
    mean = m.loss_and_grad(x, t, lengths=lengths, reduction="mean")
    total = m.loss_and_grad(x, t, lengths=lengths, reduction="sum")
    assert default[0] == mean[0]
    rtol = 1e-12 if dtype == "float64" else 1e-5
    np.testing.assert_allclose(mean[0], total[0] / lengths.sum(), rtol=rtol)
    for k in PARAM_NAMES:
        np.testing.assert_array_equal(default[1][k], mean[1][k])
        np.testing.assert_allclose(mean[1][k], total[1][k] / lengths.sum(), rtol=rtol,
                                   atol=1e-7)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_results_are_fresh_arrays(dtype):
    """Returned y, h_last and grads are new arrays: no aliasing of params, inputs, or earlier results."""
    rng = rng_for("fresh", dtype)
    m = crnn.RNN(3, 4, 5, dtype=dtype, seed=0)
    x = rng.standard_normal((6, 4, 3)).astype(dtype)
    t = rng.integers(0, 5, (6, 4))
    h0 = rng.standard_normal((4, 4)).astype(dtype)
    lengths = np.array([6, 2, 3, 1])
    y1, h1 = m.forward(x, h0=h0, lengths=lengths)
    _, g1, hl1 = m.loss_and_grad(x, t, h0=h0, lengths=lengths)
    keep = [a.copy() for a in (y1, h1, hl1)] + [g1[k].copy() for k in PARAM_NAMES]
    y2, h2 = m.forward(x, h0=h0, lengths=lengths)
    _, g2, hl2 = m.loss_and_grad(x, t, h0=h0, lengths=lengths)
    others = [y2, h2, hl2, x, h0] + [g2[k] for k in PARAM_NAMES] + list(m.params.values())
    for a in [y1, h1, hl1] + [g1[k] for k in PARAM_NAMES]:
        for b in others:
            assert not np.shares_memory(a, b)
    for a, b in zip([y1, h1, hl1] + [g1[k] for k in PARAM_NAMES], keep):
        np.testing.assert_array_equal(a, b)
