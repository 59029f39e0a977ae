"""The three model classes: constructor, parameters, states, streaming, dropout, saving.

What the numbers must be is checked against PyTorch (test_oracle.py) and the
reference (test_cells.py); here, the contract around them.
"""

import json
import zipfile

import numpy as np
import pytest

import crnn
from conftest import rng_for

CLASSES = {"RNN": crnn.RNN, "LSTM": crnn.LSTM, "GRU": crnn.GRU}
GATES = {"RNN": 1, "LSTM": 4, "GRU": 3}
D, H, O = 5, 6, 4


def _names(kind, L, bi):
    out = []
    for l in range(L):
        for d in range(2 if bi else 1):
            s = ("" if l == 0 else f"_l{l}") + ("_reverse" if d else "")
            out += ["W_x" + s, "W_h" + s, "b_h" + s] + (["b_x" + s] if kind == "GRU" else [])
    return out + ["W_y", "b_y"]


@pytest.mark.parametrize("bi", [False, True])
@pytest.mark.parametrize("L", [1, 3])
@pytest.mark.parametrize("kind", list(CLASSES))
def test_parameter_names_shapes_and_init(kind, L, bi):
    """PyTorch's shapes with crnn's names; every array uniform(±1/√H); attributes kept."""
    m = CLASSES[kind](D, H, O, num_layers=L, bidirectional=bi, seed=0)
    assert list(m.params) == _names(kind, L, bi)
    G, dirs = GATES[kind], 2 if bi else 1
    for name, p in m.params.items():
        if name == "W_y":
            assert p.shape == (O, dirs * H)
        elif name == "b_y":
            assert p.shape == (O,)
        elif name.startswith("W_x"):
            assert p.shape == (G * H, dirs * H if "_l" in name else D)
        elif name.startswith("W_h"):
            assert p.shape == (G * H, H)
        else:
            assert p.shape == (G * H,)
        assert p.dtype == np.float32 and p.flags.c_contiguous and p.flags.writeable
        assert np.abs(p).max() <= 1 / np.sqrt(H)
        assert np.unique(p).size == p.size, name
    assert (m.num_layers, m.bidirectional, m.dropout) == (L, bi, 0.0)
    assert repr(m).startswith(kind + "(")


def test_one_layer_rnn_is_exactly_todays_model():
    """Same seed, same weights as crnn's one-layer Elman RNN always drew (W_x, W_h, b_h,
    W_y, b_y, uniform in that order, in float64 then cast)."""
    rng = np.random.default_rng(7)
    bound = 1 / np.sqrt(H)
    want = {k: rng.uniform(-bound, bound, s) for k, s in
            [("W_x", (H, D)), ("W_h", (H, H)), ("b_h", (H,)), ("W_y", (O, H)), ("b_y", (O,))]}
    m = crnn.RNN(D, H, O, seed=7, dtype="float64")
    for k, v in want.items():
        assert m.params[k].tobytes() == v.tobytes(), k


@pytest.mark.parametrize("kind", list(CLASSES))
def test_states_shapes(kind):
    """(B, H) for one layer and direction, else (L·dirs, B, H); LSTM pairs; h0 alone = c0 of 0."""
    rng = rng_for("states", kind)
    x = rng.standard_normal((4, 3, D))
    one = CLASSES[kind](D, H, O, seed=0)
    deep = CLASSES[kind](D, H, O, num_layers=2, bidirectional=True, seed=0)
    for m, shape in ((one, (3, H)), (deep, (4, 3, H))):
        y, h = m.forward(x)
        assert y.shape == (4, 3, O)
        if kind == "LSTM":
            assert isinstance(h, tuple) and h[0].shape == h[1].shape == shape
            y2, _ = m.forward(x, h0=(np.zeros(shape), np.zeros(shape)))
            y3, _ = m.forward(x, h0=np.zeros(shape))        # a lone h: c0 = 0
            np.testing.assert_array_equal(y2, y)
            np.testing.assert_array_equal(y3, y)
        else:
            assert h.shape == shape
        with pytest.raises(ValueError, match="h0"):
            m.forward(x, h0=np.zeros((9, 3, H)))


@pytest.mark.parametrize("kind", list(CLASSES))
def test_final_states_carry_on_like_one_long_sequence(kind):
    """forward over the second half from the first half's final states equals one forward."""
    m = CLASSES[kind](D, H, O, num_layers=2, dtype="float64", seed=1)
    x = rng_for("carry", kind).standard_normal((8, 3, D))
    y, h = m.forward(x)
    y1, h1 = m.forward(x[:4])
    y2, h2 = m.forward(x[4:], h0=h1)
    np.testing.assert_allclose(np.concatenate([y1, y2]), y, rtol=1e-12)
    for a, b in zip(h2 if kind == "LSTM" else [h2], h if kind == "LSTM" else [h]):
        np.testing.assert_allclose(a, b, rtol=1e-12)


@pytest.mark.parametrize("kind", list(CLASSES))
def test_step_and_generate_match_forward(kind):
    m = CLASSES[kind](7, H, 7, num_layers=2, dtype="float64", seed=2)
    x = rng_for("step", kind).integers(0, 7, (6, 2))
    y, _ = m.forward(x)
    h = None
    for t in range(6):
        y_t, h = m.step(x[t], h)
        np.testing.assert_allclose(y_t, y[t], rtol=1e-12)
    a = m.generate(20, prime=[1, 2, 3], seed=5)
    b = m.generate(20, prime=[1, 2, 3], seed=5)
    assert a.shape == (20,) and np.array_equal(a, b) and a.min() >= 0 and a.max() < 7


@pytest.mark.parametrize("kind", list(CLASSES))
def test_bidirectional_models_refuse_streaming_and_truncated_bptt(kind):
    m = CLASSES[kind](4, H, 4, bidirectional=True, seed=0)
    with pytest.raises(ValueError, match="bidirectional"):
        m.step(np.zeros((2, 4)))
    with pytest.raises(ValueError, match="bidirectional"):
        m.generate(3)
    with pytest.raises(ValueError, match="bptt"):
        m.fit(np.zeros((6, 2, 4)), np.zeros((6, 2), int), bptt=3, verbose=0)


def test_reverse_direction_reads_only_valid_steps():
    """Padding never enters the reverse direction: changing it changes nothing."""
    m = crnn.GRU(D, H, O, bidirectional=True, num_layers=2, dtype="float64", seed=3)
    rng = rng_for("padding")
    x = rng.standard_normal((6, 3, D))
    lengths = np.array([6, 2, 4])
    y, h = m.forward(x, lengths=lengths)
    x2 = x.copy()
    for b, n in enumerate(lengths):
        x2[n:, b] = 1e3 * rng.standard_normal((6 - n, D))
    y2, h2 = m.forward(x2, lengths=lengths)
    np.testing.assert_array_equal(y, y2)
    np.testing.assert_array_equal(h, h2)
    for b, n in enumerate(lengths):     # and the same as running each sequence alone
        yb, hb = m.forward(x[:n, b:b + 1])
        np.testing.assert_allclose(y[:n, b], yb[:, 0], rtol=1e-12)
        np.testing.assert_allclose(h[:, b], hb[:, 0], rtol=1e-12)


@pytest.mark.parametrize("kind", list(CLASSES))
def test_dropout_in_training_only_and_reproducible(kind):
    m = CLASSES[kind](D, H, O, num_layers=3, dropout=0.5, dtype="float64", seed=4)
    rng = rng_for("dropout", kind)
    x, t = rng.standard_normal((5, 4, D)), rng.integers(0, O, (5, 4))
    plain = CLASSES[kind](D, H, O, num_layers=3, dtype="float64", seed=4)
    y_drop, _ = m.forward(x)
    np.testing.assert_array_equal(y_drop, plain.forward(x)[0])   # no dropout in forward
    np.testing.assert_array_equal(m.predict(x), plain.predict(x))
    a = m.loss_and_grad(x, t, seed=1)
    b = m.loss_and_grad(x, t, seed=1)
    c = m.loss_and_grad(x, t, seed=2)
    d = m.loss_and_grad(x, t, seed=np.random.default_rng(1))
    assert a[0] == b[0] == d[0] and a[0] != c[0]
    assert a[0] != plain.loss_and_grad(x, t)[0]
    h1 = m.fit(x, t, epochs=2, seed=3, verbose=0)
    m2 = CLASSES[kind](D, H, O, num_layers=3, dropout=0.5, dtype="float64", seed=4)
    h2 = m2.fit(x, t, epochs=2, seed=3, verbose=0)
    assert h1 == h2
    with pytest.raises(ValueError, match="dropout"):
        CLASSES[kind](D, H, O, dropout=1.0)


@pytest.mark.parametrize("bi", [False, True])
@pytest.mark.parametrize("kind", list(CLASSES))
def test_save_load_round_trip(kind, bi, tmp_path):
    m = CLASSES[kind](D, H, O, num_layers=2, bidirectional=bi, dropout=0.25, output="linear",
                      dtype="float64", seed=5)
    path = tmp_path / "m.npz"
    m.save(path)
    back = crnn.load(path)
    assert type(back) is type(m) and repr(back) == repr(m)
    for k in m.params:
        assert back.params[k].tobytes() == m.params[k].tobytes(), k
    x = rng_for("save", kind).standard_normal((3, 2, D))
    np.testing.assert_array_equal(back.forward(x)[0], m.forward(x)[0])


def test_files_of_the_first_format_still_load(tmp_path):
    """A one-layer RNN file as crnn wrote it before (format crnn.RNN/1)."""
    m = crnn.RNN(D, H, O, nonlinearity="relu", seed=6)
    path = tmp_path / "old.npz"
    config = {"format": "crnn.RNN/1", "input_size": D, "hidden_size": H, "output_size": O,
              "nonlinearity": "relu", "output": "softmax", "dtype": "float32"}
    np.savez(path, config=np.array(json.dumps(config)), **m.params)
    back = crnn.load(path)
    assert isinstance(back, crnn.RNN) and back.nonlinearity == "relu" and back.num_layers == 1
    for k in m.params:
        assert back.params[k].tobytes() == m.params[k].tobytes(), k


def test_load_checks_headers_before_allocating(tmp_path):
    """A small file that declares a huge model is refused from its headers alone."""
    m = crnn.LSTM(D, H, O, seed=0)
    path = tmp_path / "m.npz"
    m.save(path)
    with zipfile.ZipFile(path) as z:
        members = {n: z.read(n) for n in z.namelist()}
    config = json.loads(str(np.load(path)["config"]))
    config["hidden_size"] = 40000
    bad = tmp_path / "bad.npz"
    with zipfile.ZipFile(bad, "w") as z:
        for n, data in members.items():
            if n == "config.npy":
                import io
                buf = io.BytesIO()
                np.save(buf, np.array(json.dumps(config)))
                data = buf.getvalue()
            z.writestr(n, data)
    with pytest.raises(ValueError, match="shape"):
        crnn.load(bad)


@pytest.mark.parametrize("kind", list(CLASSES))
def test_replaced_parameter_arrays_are_taken_in(kind):
    """A user may assign a new array to a params entry: it is copied into the model."""
    m = CLASSES[kind](D, H, O, dtype="float64", seed=7)
    x = rng_for("replace", kind).standard_normal((3, 2, D))
    new = np.full_like(m.params["W_h"], 0.01)
    m.params["W_h"] = new
    y, _ = m.forward(x)
    assert np.array_equal(m.params["W_h"], new) and m.params["W_h"] is not new
    ref = CLASSES[kind](D, H, O, dtype="float64", seed=7)
    ref.params["W_h"][...] = 0.01
    np.testing.assert_array_equal(y, ref.forward(x)[0])
    with pytest.raises(ValueError, match="W_h"):
        m.params["W_h"] = np.zeros((2, 2))
        m.forward(x)


@pytest.mark.parametrize("kind", list(CLASSES))
def test_every_cell_fits_with_every_option(kind):
    """fit with lengths, validation data, truncated BPTT, callbacks, per-sequence targets."""
    rng = rng_for("fit", kind)
    x = rng.standard_normal((12, 20, D))
    t = rng.integers(0, O, 20)
    lengths = rng.integers(3, 13, 20)
    m = CLASSES[kind](D, H, O, num_layers=2, dropout=0.1, seed=8)
    stop = crnn.callbacks.EarlyStopping(monitor="val_loss", patience=50)
    hist = m.fit(x, t, lengths=lengths, epochs=3, batch_size=8, optimizer="adam", lr=0.01,
                 clip_norm=1.0, validation_data=(x, t, lengths), callbacks=[stop], seed=0,
                 verbose=0)
    assert set(hist) == {"loss", "val_loss", "val_accuracy"} and len(hist["loss"]) == 3
    tb = rng.integers(0, O, (12, 20))
    h2 = CLASSES[kind](D, H, O, seed=8).fit(x, tb, lengths=lengths, bptt=4, epochs=2,
                                            verbose=0, seed=0)
    assert np.all(np.isfinite(h2["loss"]))
    bi = CLASSES[kind](D, H, O, bidirectional=True, seed=8)
    h3 = bi.fit(x, t, lengths=lengths, validation_data=(x, t, lengths), epochs=2, verbose=0)
    assert 0 <= h3["val_accuracy"][-1] <= 1
