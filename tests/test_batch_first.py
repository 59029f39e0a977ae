"""batch_first=True: (B, T, ...) data, converted once at the boundary, gives exactly
what the time-major model gives on the transposed data."""

import numpy as np
import pytest

import crnn
from conftest import make_case, rng_for

CLASSES = {"rnn": crnn.RNN, "lstm": crnn.LSTM, "gru": crnn.GRU}


def _pair(cls, output="softmax", **kw):
    tm = cls(4, 6, 3, output=output, dtype="float64", seed=1, **kw)
    bf = cls(4, 6, 3, output=output, dtype="float64", seed=1, batch_first=True, **kw)
    return tm, bf


def _bf(a):
    return None if a is None else np.ascontiguousarray(np.swapaxes(a, 0, 1))


@pytest.mark.parametrize("per_step", [True, False])
@pytest.mark.parametrize("output", ["softmax", "linear"])
@pytest.mark.parametrize("cell", list(CLASSES))
def test_batch_first_equals_time_major_on_the_transposed_data(cell, output, per_step):
    tm, bf = _pair(CLASSES[cell], output, num_layers=2, bidirectional=cell != "rnn")
    case = make_case(rng_for("bf", cell, output, per_step), 7, 5, 4, 6, 3, output=output,
                     per_step=per_step, lengths=True)
    x, target, lengths = case["x"], case["target"], case["lengths"]
    target_bf = _bf(target) if per_step else target
    y, h = tm.forward(x, lengths=lengths)
    y_bf, h_bf = bf.forward(_bf(x), lengths=lengths)
    np.testing.assert_array_equal(y_bf, _bf(y))
    assert y_bf.shape == (5, 7, 3)
    for a, b in zip(np.atleast_1d(h), np.atleast_1d(h_bf)):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(bf.predict(_bf(x), lengths=lengths), _bf(tm.predict(
        x, lengths=lengths)))
    loss, grads, _ = tm.loss_and_grad(x, target, lengths=lengths)
    loss_bf, grads_bf, _ = bf.loss_and_grad(_bf(x), target_bf, lengths=lengths)
    assert loss == loss_bf
    for k in grads:
        np.testing.assert_array_equal(grads_bf[k], grads[k])
    val = (x[:, :3], target[:, :3] if per_step else target[:3])
    val_bf = (_bf(x)[:3], target_bf[:3])
    h1 = tm.fit(x, target, lengths=lengths, epochs=2, batch_size=2, verbose=0, seed=0,
                validation_data=val)
    h2 = bf.fit(_bf(x), target_bf, lengths=lengths, epochs=2, batch_size=2, verbose=0, seed=0,
                validation_data=val_bf)
    assert h1 == h2
    for k in tm.params:
        np.testing.assert_array_equal(bf.params[k], tm.params[k])


def test_token_ids_batch_first():
    tm, bf = _pair(crnn.GRU)
    tokens = rng_for("bf-tokens").integers(4, size=(6, 3))      # (T, B)
    np.testing.assert_array_equal(bf.forward(tokens.T)[0], _bf(tm.forward(tokens)[0]))


def test_batch_first_is_saved_and_shown(tmp_path):
    _, bf = _pair(crnn.LSTM)
    assert "batch_first=True" in repr(bf)
    bf.save(tmp_path / "m.npz")
    assert crnn.load(tmp_path / "m.npz").batch_first is True
    with pytest.raises(TypeError, match="batch_first"):
        crnn.RNN(2, 3, 2, batch_first="yes")


def test_messages_speak_of_the_batch_first_layout():
    """Shapes in the errors of a batch_first model are the user's (B, T, ...), not the
    time-major view crnn makes of them."""
    bf = crnn.LSTM(4, 8, 3, batch_first=True)
    x = np.zeros((2, 5, 4))         # B = 2, T = 5
    cases = [
        (lambda: bf.forward(np.zeros((2, 5, 3))),
         r"x: expected shape \(B, T, 4\) \(or token ids \(B, T\)\), got \(2, 5, 3\)"),
        (lambda: bf.forward(np.zeros((2, 5), dtype=float)), r"got \(2, 5\)"),
        (lambda: bf.forward(np.zeros((2, 0, 4))), r"T >= 1\), got shape \(2, 0, 4\)"),
        (lambda: bf.loss_and_grad(x, np.zeros((2, 6), dtype=int)),
         r"target: expected class ids of shape \(2, 5\) \(one per step\) or \(2,\) "
         r"\(one per sequence\), got \(2, 6\)$"),
        # x given time-major to a batch_first model: the hint says so
        (lambda: bf.loss_and_grad(np.zeros((5, 2, 4)), np.zeros(2, dtype=int)),
         r"x looks time-major \(5 steps of 2 sequences\?\): this model is batch_first"),
        (lambda: bf.forward(np.zeros((5, 2, 4)), lengths=[5, 5]),
         r"lengths: expected shape \(5,\).*x looks time-major"),
        (lambda: crnn.LSTM(4, 8, 3, output="linear", batch_first=True).loss_and_grad(
            x, np.zeros((2, 6, 3))), r"values of shape \(2, 5, 3\).*got \(2, 6, 3\)$"),
    ]
    for call, words in cases:
        with pytest.raises(ValueError, match=words):
            call()
    # and a time-major model given batch-major data is told about batch_first
    with pytest.raises(ValueError, match="batch_first=True"):
        crnn.LSTM(4, 8, 3).loss_and_grad(np.zeros((2, 5, 4)), np.zeros(2, dtype=int))
