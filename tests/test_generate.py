"""Streaming inference: ``RNN.step`` and ``RNN.generate`` (issue 5, item 3)."""

import numpy as np
import pytest

import crnn

from conftest import assert_params_bitwise_equal, make_model, rng_for, snapshot, tol

DTYPES = ["float32", "float64"]


# --- step -------------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("tokens", [False, True], ids=["floats", "tokens"])
@pytest.mark.parametrize("nonlinearity", ["tanh", "relu"])
@pytest.mark.parametrize("output", ["softmax", "linear"])
def test_step_loop_equals_forward(output, nonlinearity, tokens, dtype):
    """Looping ``y_t, h = model.step(x_t, h)`` from h=None gives forward's outputs and final state."""
    rng = rng_for("step-loop", output, nonlinearity, tokens, dtype)
    T, B, D, H, O = 9, 3, 4, 6, 4
    model = make_model(D, H, O, nonlinearity=nonlinearity, output=output, dtype=dtype,
                       rng=rng, scale=0.8)
    x = rng.integers(0, D, (T, B)) if tokens else rng.standard_normal((T, B, D)).astype(dtype)
    y_full, h_full = model.forward(x)
    h = None
    ys = []
    for t in range(T):
        y_t, h = model.step(x[t], h)
        ys.append(y_t)
    rtol, atol = tol(dtype)
    np.testing.assert_allclose(np.stack(ys), y_full, rtol=rtol, atol=atol)
    np.testing.assert_allclose(h, h_full, rtol=rtol, atol=atol)


@pytest.mark.parametrize("dtype", DTYPES)
def test_step_from_given_state_equals_forward_with_h0(dtype):
    """step(x_t, h) continues from h: two steps from h0 equal forward(x, h0)."""
    rng = rng_for("step-h0", dtype)
    model = make_model(3, 5, 2, dtype=dtype, rng=rng)
    x = rng.standard_normal((2, 4, 3)).astype(dtype)
    h0 = rng.standard_normal((4, 5)).astype(dtype)
    h0_before = h0.copy()
    y0, h = model.step(x[0], h0)
    y1, h = model.step(x[1], h)
    y_full, h_full = model.forward(x, h0=h0)
    rtol, atol = tol(dtype)
    np.testing.assert_allclose(np.stack([y0, y1]), y_full, rtol=rtol, atol=atol)
    np.testing.assert_allclose(h, h_full, rtol=rtol, atol=atol)
    np.testing.assert_array_equal(h0, h0_before)   # the caller's state is not overwritten


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("tokens", [False, True], ids=["floats", "tokens"])
def test_step_without_state_starts_at_zeros(tokens, dtype):
    """step(x_t) and step(x_t, None) equal step(x_t, zeros) bitwise; shapes (B, O), (B, H) in the model's dtype."""
    rng = rng_for("step-zeros", tokens, dtype)
    B, D, H, O = 5, 4, 6, 3
    model = make_model(D, H, O, dtype=dtype, rng=rng)
    x_t = rng.integers(0, D, B) if tokens else rng.standard_normal((B, D)).astype(dtype)
    y_a, h_a = model.step(x_t)
    y_b, h_b = model.step(x_t, None)
    y_c, h_c = model.step(x_t, np.zeros((B, H), dtype=dtype))
    assert y_a.shape == (B, O) and h_a.shape == (B, H)
    assert y_a.dtype == np.dtype(dtype) and h_a.dtype == np.dtype(dtype)
    for y, h in ((y_b, h_b), (y_c, h_c)):
        assert y.tobytes() == y_a.tobytes() and h.tobytes() == h_a.tobytes()
    assert np.any(h_a != 0)
    np.testing.assert_allclose(y_a.sum(-1), 1.0, rtol=1e-5)   # softmax probabilities


@pytest.mark.parametrize("bad", [
    np.zeros((2, 5)),          # wrong feature size
    np.zeros(4),               # 1-D floats: no batch axis
    np.zeros((2, 4, 1)),       # a time axis too many
    np.zeros((2, 1), int),     # token ids with a feature axis
    np.array(3),               # a scalar token id, no batch axis
    np.array([7, 0]),          # token id out of range
], ids=["features", "1d-floats", "3d", "2d-tokens", "scalar", "token-range"])
def test_step_bad_x_shape_raises_naming_x(bad):
    """A badly shaped x_t raises ValueError whose message names x."""
    model = make_model(4, 3, 2)
    with pytest.raises(ValueError, match=r"^x"):
        model.step(bad)


def test_step_bad_state_shape_raises():
    """A state of the wrong shape raises ValueError."""
    model = make_model(4, 3, 2)
    with pytest.raises(ValueError):
        model.step(np.zeros((2, 4)), np.zeros((3, 3)))


# --- generate ---------------------------------------------------------------------------------

V = 6


def _char_model(dtype="float64", scale=1.5, key="gen"):
    """A softmax model over V tokens with weights large enough for a peaked, state-dependent output."""
    return make_model(V, 16, V, dtype=dtype, rng=rng_for(key, dtype), scale=scale)


def _greedy(model, prime, length):
    """Argmax decoding through step(): feed the prime, then each argmax back in."""
    h = None
    for tok in prime:
        y, h = model.step(np.array([tok]), h)
    out = []
    for _ in range(length):
        tok = int(np.argmax(y[0]))
        out.append(tok)
        y, h = model.step(np.array([tok]), h)
    return np.array(out)


@pytest.mark.parametrize("dtype", DTYPES)
def test_generate_is_deterministic_with_a_seed(dtype):
    """The same seed gives the same tokens (int, seed or Generator), and leaves params untouched."""
    model = _char_model(dtype)
    before = snapshot(model.params)
    a = model.generate(40, prime=[1, 2], seed=7)
    b = model.generate(40, prime=[1, 2], seed=7)
    c = model.generate(40, prime=[1, 2], seed=np.random.default_rng(7))
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a, c)
    np.testing.assert_array_equal(model.generate(40, seed=3), model.generate(40, seed=3))
    assert_params_bitwise_equal(model.params, before)


@pytest.mark.parametrize("dtype", DTYPES)
def test_generate_different_seeds_differ(dtype):
    """Different seeds give different 40-token samples."""
    model = _char_model(dtype, scale=0.5)
    samples = {tuple(model.generate(40, prime=[0], seed=s)) for s in range(5)}
    assert len(samples) == 5


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("length", [1, 2, 17])
def test_generate_length_and_range(length, dtype):
    """generate(n) returns n integer token ids in [0, V), with or without a prime."""
    model = _char_model(dtype, scale=0.5)
    for prime in (None, [3], [0, 5, 5]):
        out = model.generate(length, prime=prime, seed=length)
        assert isinstance(out, np.ndarray) and out.shape == (length,)
        assert out.dtype.kind in "iu"
        assert out.min() >= 0 and out.max() < V


def test_generate_uses_the_whole_vocabulary():
    """At high temperature every token of the vocabulary gets sampled (no off-by-one at the ends)."""
    model = _char_model(scale=0.3)
    out = model.generate(400, prime=[0], temperature=5.0, seed=0)
    assert set(out.tolist()) == set(range(V))


@pytest.mark.parametrize("dtype", DTYPES)
def test_generate_prime_affects_output(dtype):
    """With the same seed, different primes give different samples (the prime sets the state)."""
    model = _char_model(dtype)
    a = model.generate(30, prime=[0], seed=1, temperature=0.5)
    b = model.generate(30, prime=[5, 4, 3], seed=1, temperature=0.5)
    assert not np.array_equal(a, b)


@pytest.mark.parametrize("temperature", [0, 0.0, 1e-3, 1e-30, 1e-310, 5e-324])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("prime", [[0], [2, 3, 1], [5, 5, 0, 4]])
def test_generate_zero_and_tiny_temperatures_are_greedy(prime, dtype, temperature):
    """temperature 0, and → 0+ down to the smallest double (where log p / τ overflows),
    give argmax decoding (computed independently with step()), for any seed."""
    model = _char_model(dtype)
    greedy = _greedy(model, prime, 25)
    for seed in range(4):
        np.testing.assert_array_equal(
            model.generate(25, prime=prime, temperature=temperature, seed=seed), greedy)
    # ...while at temperature 1 sampling does leave the greedy path (so the check has teeth).
    assert any(not np.array_equal(model.generate(25, prime=prime, seed=s), greedy)
               for s in range(4))


@pytest.mark.parametrize("temperature", [1.0, 0.5, 2.0])
def test_generate_samples_from_tempered_softmax(temperature):
    """The first sampled token follows softmax(z / temperature) after the prime (frequencies over 4000 seeds)."""
    model = _char_model(scale=0.8, key="freq")
    prime = [1, 4]
    h = None
    for tok in prime:
        y, h = model.step(np.array([tok]), h)
    logp = np.log(y[0].astype(np.float64)) / temperature
    p = np.exp(logp - logp.max())
    p /= p.sum()
    n = 4000
    draws = np.array([model.generate(1, prime=prime, temperature=temperature, seed=s)[0]
                      for s in range(n)])
    freq = np.bincount(draws, minlength=V) / n
    # 4 standard errors of a binomial proportion: deterministic seeds, comfortable margin.
    assert np.all(np.abs(freq - p) <= 4 * np.sqrt(p * (1 - p) / n) + 1e-3), (freq, p)


@pytest.mark.parametrize("kwargs", [
    dict(output="linear"),
    dict(output_size=V + 1),
    dict(input_size=V + 1),
], ids=["linear", "output-size", "input-size"])
def test_generate_refuses_unsuitable_model(kwargs):
    """generate needs a softmax model with input_size == output_size; otherwise ValueError."""
    args = dict(input_size=V, hidden_size=4, output_size=V, output="softmax")
    args.update(kwargs)
    model = crnn.RNN(**args, seed=0)
    with pytest.raises(ValueError, match="generate"):
        model.generate(5, prime=[0], seed=0)


@pytest.mark.parametrize("length, exc", [(0, ValueError), (-3, ValueError),
                                         (2.5, TypeError), ("5", TypeError)])
def test_generate_refuses_bad_length(length, exc):
    """length must be a positive integer."""
    with pytest.raises(exc, match="length"):
        _char_model().generate(length, seed=0)


@pytest.mark.parametrize("temperature, exc", [(-1.0, ValueError), (-1e-300, ValueError),
                                              (float("nan"), ValueError),
                                              (float("inf"), ValueError),
                                              ("hot", TypeError)])
def test_generate_refuses_bad_temperature(temperature, exc):
    """temperature must be a finite number >= 0."""
    with pytest.raises(exc, match="temperature"):
        _char_model().generate(5, temperature=temperature, seed=0)


@pytest.mark.parametrize("prime", [[], [[1, 2]], [1.5], [V], [-1]],
                         ids=["empty", "2d", "floats", "too-big", "negative"])
def test_generate_refuses_bad_prime(prime):
    """prime must be a non-empty 1-D sequence of token ids in [0, V): ValueError otherwise."""
    with pytest.raises(ValueError):
        _char_model().generate(5, prime=prime, seed=0)


@pytest.mark.parametrize("prime", [[V], [-1]], ids=["too-big", "negative"])
def test_generate_bad_prime_error_names_prime(prime):
    """An out-of-range prime token is reported under the argument's own name, prime."""
    with pytest.raises(ValueError, match="prime"):
        _char_model().generate(5, prime=prime, seed=0)
