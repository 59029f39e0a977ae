"""Inputs and states that used to slip through: every one is refused with a clear
message naming the argument, or handled correctly — never garbage, never a
MemoryError where a cheap check would do, never a half-applied change.
"""

import warnings

import numpy as np
import pytest

import crnn
from crnn import _engine
from conftest import assert_params_bitwise_equal, make_case, peak_bytes, rng_for, snapshot


def _unaligned(arr):
    """A C-contiguous copy of ``arr`` at an odd byte offset (not element-aligned)."""
    arr = np.ascontiguousarray(arr)
    buf = np.zeros(arr.nbytes + 1, dtype=np.uint8)
    out = buf[1:].view(arr.dtype).reshape(arr.shape)
    out[...] = arr
    assert out.flags.c_contiguous and not out.flags.aligned
    return out


# -- 8. non-finite weights: generate refuses, step warns ------------------------------------

def _char_model(seed=0):
    return crnn.LSTM(6, 8, 6, seed=seed)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_generate_refuses_non_finite_outputs(bad):
    model = _char_model()
    model.params["b_y"][2] = bad
    with pytest.raises(ValueError, match="NaN or infinite"):
        model.generate(10, seed=0)


def test_step_warns_on_non_finite_outputs():
    model = _char_model()
    model.params["W_h"][0, 0] = np.nan
    with pytest.warns(RuntimeWarning, match="NaN or infinite"):
        model.step(np.array([1]))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _char_model().step(np.array([1]))       # a healthy model does not warn


# -- 10. Optimizer.load_state_dict: all or nothing ---------------------------------------------

def _adam():
    model = crnn.RNN(3, 4, 2, seed=0)
    opt = crnn.Adam(model.params, lr=0.1)
    opt.step({k: np.ones_like(v) for k, v in model.params.items()})
    return opt


def _corrupt(state, path, value):
    """A copy of state_dict with the entry at ``path`` set to value (or deleted)."""
    out = {k: (dict(v) if isinstance(v, dict) else v) for k, v in state.items()}
    out["state"] = {k: dict(v) for k, v in state["state"].items()}
    target = out
    for key in path[:-1]:
        target = target[key]
    if value is _DELETE:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return out


_DELETE = object()
BAD_STATES = [
    (("hyperparameters", "lr"), -5.0, ValueError, "lr"),
    (("hyperparameters", "lr"), "x", TypeError, "lr"),
    (("hyperparameters", "lr"), float("nan"), ValueError, "lr"),
    (("hyperparameters", "betas"), (0.9, 1.5), ValueError, "beta"),
    (("hyperparameters", "eps"), _DELETE, ValueError, "hyperparameters"),
    (("step_count",), _DELETE, ValueError, "step_count"),
    (("step_count",), -1, ValueError, "step_count"),
    (("step_count",), "3", TypeError, "step_count"),
    (("state",), _DELETE, ValueError, "state"),
    (("state",), [1, 2], TypeError, "state"),
    (("state", "W_h"), {"exp_avg": np.zeros(16)}, ValueError, "W_h"),
    (("state", "W_h", "exp_avg"), np.zeros(3), ValueError, "exp_avg"),
    (("state", "W_h", "exp_avg"), "abc", TypeError, "exp_avg"),
    (("state", "nope"), {}, ValueError, "nope"),
    (("optimizer",), "SGD", ValueError, "optimizer"),
    (("hyperparameters",), None, TypeError, "hyperparameters"),
]


@pytest.mark.parametrize("path, value, exc, word", BAD_STATES,
                         ids=[f"{'.'.join(p)}={v!r}"[:40] for p, v, _, _ in BAD_STATES])
def test_a_bad_optimizer_state_changes_nothing(path, value, exc, word):
    opt = _adam()
    good = opt.state_dict()
    # A state that would change every hyperparameter, if it were applied at all.
    changed = dict(good, hyperparameters=dict(good["hyperparameters"], lr=123.0, eps=1e-3),
                   step_count=99)
    with pytest.raises(exc, match=word):
        opt.load_state_dict(_corrupt(changed, path, value))
    assert opt.lr == 0.1 and opt.eps == 1e-8 and opt.step_count == 1
    for k, bufs in good["state"].items():
        for n, b in bufs.items():
            assert np.array_equal(opt.state[k][n], b)


def test_a_good_optimizer_state_is_applied_whole():
    opt = _adam()
    state = opt.state_dict()
    state["hyperparameters"]["lr"] = 0.5
    other = _adam()
    other.load_state_dict(state)
    assert other.lr == 0.5 and other.step_count == 1


# -- 11. set_num_threads --------------------------------------------------------------------

@pytest.fixture
def restore_threads():
    before = crnn.get_num_threads()
    yield
    crnn.set_num_threads(before)


@pytest.mark.parametrize("n", [2**31, 2**63, 100_000, 10**6])
def test_huge_thread_counts_are_capped_and_python_agrees_with_the_kernels(restore_threads, n):
    crnn.set_num_threads(n)
    got = crnn.get_num_threads()
    assert 1 <= got <= min(_engine.max_threads(), 4096)
    model = crnn.RNN(3, 8, 2, seed=0)
    counters = _engine.counters()
    model.loss_and_grad(np.zeros((5, 4, 3)), np.zeros(4, np.intp))
    assert _engine.counters().keys() == counters.keys()


@pytest.mark.parametrize("n, exc", [("2", TypeError), (2.0, TypeError), (True, TypeError),
                                    (0, ValueError), (-3, ValueError), (None, TypeError)])
def test_bad_thread_counts_change_nothing(restore_threads, n, exc):
    before = crnn.get_num_threads()
    with pytest.raises(exc, match="n"):
        crnn.set_num_threads(n)
    assert crnn.get_num_threads() == before


# -- 12. unaligned arrays ------------------------------------------------------------------

@pytest.mark.parametrize("cls", [crnn.RNN, crnn.LSTM, crnn.GRU])
def test_unaligned_arrays_give_the_same_answers(cls):
    rng = rng_for("unaligned", cls.__name__)
    model = cls(4, 6, 3, dtype="float64", seed=0)
    case = make_case(rng, 7, 5, 4, 6, 3, lengths=True, h0=True, dtype="float64")
    h0 = case["h0"] if cls is not crnn.LSTM else (case["h0"], case["h0"] * 0.5)
    want = model.loss_and_grad(case["x"], case["target"], h0=h0, lengths=case["lengths"])
    odd = lambda a: _unaligned(a)  # noqa: E731
    h0u = odd(case["h0"]) if cls is not crnn.LSTM else (odd(case["h0"]), odd(case["h0"] * 0.5))
    got = model.loss_and_grad(odd(case["x"]), odd(case["target"]), h0=h0u,
                              lengths=odd(case["lengths"]))
    assert got[0] == want[0]
    for k in want[1]:
        np.testing.assert_array_equal(got[1][k], want[1][k])
    tokens = rng.integers(4, size=(7, 5))
    np.testing.assert_array_equal(model.forward(odd(tokens))[0], model.forward(tokens)[0])
    np.testing.assert_array_equal(model.step(odd(tokens[0]))[0], model.step(tokens[0])[0])


def test_unaligned_replaced_params_and_gradients():
    model = crnn.RNN(4, 6, 3, dtype="float64", seed=0)
    x = rng_for("unaligned-p").standard_normal((5, 2, 4))
    y0 = model.forward(x)[0]
    model.params["W_h"] = _unaligned(model.params["W_h"])
    np.testing.assert_array_equal(model.forward(x)[0], y0)
    loss, grads, _ = model.loss_and_grad(x, np.zeros(2, np.intp))
    odd = {k: _unaligned(g) for k, g in grads.items()}
    total = crnn.clip_grad_norm({k: g.copy() for k, g in grads.items()}, 1e9)
    assert crnn.clip_grad_norm(odd, 1e9) == pytest.approx(total, rel=1e-15)
    a, b = crnn.SGD(model.params, lr=0.1), crnn.SGD([v.copy() for v in model.params.values()],
                                                    lr=0.1)
    a.step(odd)
    b.step(list(grads.values()))
    for p, q in zip(model.params.values(), b.params):
        np.testing.assert_array_equal(p, q)
    with pytest.raises(TypeError, match="aligned"):
        crnn.SGD([_unaligned(np.zeros(4))], lr=0.1)


# -- 13. exp of NaN ------------------------------------------------------------------------

def test_a_nan_input_propagates_in_forward():
    """crnn_expf(NaN) is defined (the UBSan build in CI runs this too)."""
    for cls in (crnn.RNN, crnn.LSTM, crnn.GRU):
        x = np.zeros((3, 2, 4), np.float32)
        x[1, 0, 2] = np.nan
        y, _ = cls(4, 5, 3, seed=0).forward(x)
        assert np.isnan(y[1:, 0]).all() and np.isfinite(y[:, 1]).all() and \
            np.isfinite(y[0]).all()


# -- 14. sizes are checked before anything is converted ---------------------------------------

@pytest.mark.parametrize("dtype", [np.int8, np.uint16, np.float32])
def test_too_large_inputs_are_refused_before_any_conversion(dtype):
    model = crnn.RNN(3, 8, 3)
    x = np.broadcast_to(np.zeros((), dtype), (300_000_000, 1) if np.dtype(dtype).kind != "f"
                        else (300_000_000, 1, 3))
    def refused():
        with pytest.raises(ValueError, match="T·B"):
            model.forward(x)

    peak = peak_bytes(refused)
    assert peak < 16 << 20, peak


# -- 15. divergence -------------------------------------------------------------------------

def test_fit_warns_when_training_diverges():
    rng = rng_for("diverge")
    x, y = rng.standard_normal((6, 64, 3)), rng.integers(3, size=64)
    model = crnn.RNN(3, 8, 3, seed=0)
    with pytest.warns(RuntimeWarning, match="diverged"):
        model.fit(x, y, lr=1e3, epochs=3, batch_size=8, verbose=0, seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        crnn.RNN(3, 8, 3, seed=0).fit(x, y, lr=0.05, epochs=3, batch_size=8, verbose=0, seed=0)


# -- 16. messages name the argument -----------------------------------------------------------

def _data(T=5, B=4, D=3):
    rng = rng_for("messages")
    return rng.standard_normal((T, B, D)), rng.integers(2, size=B)


@pytest.mark.parametrize("call, exc, words", [
    (lambda: crnn.RNN(3, 4, 2, seed=-1), ValueError, ["seed", "-1"]),
    (lambda: crnn.RNN(3, 4, 2, seed="a"), TypeError, ["seed"]),
    (lambda: crnn.RNN(3, 4, 2).fit(*_data(), seed=-1, verbose=0), ValueError, ["seed"]),
    (lambda: crnn.RNN(3, 4, 2).fit(*_data(), callbacks=5, verbose=0), TypeError,
     ["callbacks"]),
    (lambda: crnn.RNN(3, 4, 2).fit(*_data(), validation_data=(np.zeros((5, 4, 9)),
                                                              np.zeros(4, int)), verbose=0),
     ValueError, ["validation_data", "x"]),
    (lambda: crnn.RNN(3, 4, 2).fit(*_data(), validation_data=(np.zeros((5, 4, 3)),
                                                              np.zeros(7, int)), verbose=0),
     ValueError, ["validation_data", "target"]),
    (lambda: crnn.RNN(3, 4, 3).generate(10**30), ValueError, ["length"]),
    (lambda: crnn.RNN(3, 4, 3).generate(5, seed=-2), ValueError, ["seed"]),
    (lambda: crnn.LSTM(3, 4, 2, num_layers=2, dropout=0.5).loss_and_grad(
        *_data(), seed=-1), ValueError, ["seed"]),
    (lambda: crnn.RNN(3, 4, 2).forward(np.zeros(8)), ValueError, ["x", "(8,)"]),
    (lambda: crnn.RNN(3, 4, 2).save("/nonexistent-folder/m.npz"), OSError,
     ["/nonexistent-folder/m.npz"]),
])
def test_messages_name_the_argument(call, exc, words):
    with pytest.raises(exc) as info:
        call()
    for word in words:
        assert word in str(info.value), str(info.value)
    assert ".tmp" not in str(info.value)


@pytest.mark.parametrize("output", ["softmax", "linear"])
def test_batch_major_data_gets_a_hint(output):
    """x given as (B, T, D) with one target per sequence: the message says how to fix it."""
    B, T, D = 8, 20, 3
    model = crnn.RNN(D, 4, 2, output=output, seed=0)
    x = np.zeros((B, T, D))
    target = np.zeros(B, np.intp) if output == "softmax" else np.zeros((B, 2))
    before = snapshot(model.params)
    with pytest.raises(ValueError, match=r"time-major.*swapaxes"):
        model.loss_and_grad(x, target)
    with pytest.raises(ValueError, match=r"time-major.*swapaxes"):
        model.fit(x, target, verbose=0)
    assert_params_bitwise_equal(model.params, before)
