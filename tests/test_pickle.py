"""Pickling and copying models: pickle, copy.deepcopy and copy.copy of every network,
alone and together with its optimizer (a checkpoint), and of the layer stacks."""

import copy
import pickle

import numpy as np
import pytest

import crnn
from crnn.layers import Stack

from conftest import rng_for

CELLS = {"rnn": crnn.RNN, "lstm": crnn.LSTM, "gru": crnn.GRU}
NETS = [("rnn", {}), ("rnn", {"nonlinearity": "relu", "num_layers": 2}),
        ("lstm", {"num_layers": 2, "bidirectional": True}), ("gru", {"bidirectional": True}),
        ("lstm", {"output": "linear", "batch_first": True}),
        ("gru", {"num_layers": 3, "dropout": 0.25})]
IDS = [f"{cell}-{'-'.join(f'{k}={v}' for k, v in kw.items()) or 'plain'}" for cell, kw in NETS]
D, H, O, T, B = 3, 5, 4, 6, 2


def _net(cell, kw, dtype="float64"):
    return CELLS[cell](D, H, O, dtype=dtype, seed=1, **kw)


def _data(model, key):
    rng = rng_for("pickle", key)
    x = rng.standard_normal((B, T, D) if model.batch_first else (T, B, D))
    if model.output == "softmax":
        target = rng.integers(0, O, (B, T) if model.batch_first else (T, B))
    else:
        target = rng.standard_normal((B, T, O) if model.batch_first else (T, B, O))
    return x, target


def _owns_its_params(model):
    """Every entry of params is the model's own view of its flat vector."""
    return all(model.params[k] is model._views[k] and np.shares_memory(v, model._flat)
               for k, v in model.params.items())


def _roundtrips():
    return {"pickle": lambda obj: pickle.loads(pickle.dumps(obj)), "deepcopy": copy.deepcopy}


@pytest.mark.parametrize("how", list(_roundtrips()))
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("cell,kw", NETS, ids=IDS)
def test_a_copy_is_the_same_network_and_independent(cell, kw, dtype, how):
    model = _net(cell, kw, dtype)
    x, target = _data(model, (cell, repr(kw), dtype))
    twin = _roundtrips()[how](model)
    assert type(twin) is type(model) and repr(twin) == repr(model)
    assert _owns_its_params(twin) and twin._flat is not model._flat
    for k, v in model.params.items():
        assert twin.params[k].dtype == v.dtype and np.array_equal(twin.params[k], v), k
    out, _ = model.forward(x)
    out_twin, _ = twin.forward(x)
    np.testing.assert_array_equal(out_twin, out)
    before = {k: v.copy() for k, v in model.params.items()}
    twin.train_step(x, target, crnn.SGD(twin.params, lr=0.5), seed=0)
    assert any(not np.array_equal(twin.params[k], before[k]) for k in before)
    for k, v in model.params.items():
        np.testing.assert_array_equal(v, before[k], err_msg=k)


@pytest.mark.parametrize("how", list(_roundtrips()))
@pytest.mark.parametrize("opt", ["sgd", "adam", "rmsprop", "adagrad"])
def test_a_checkpoint_of_model_and_optimizer_trains_on_exactly(opt, how):
    """(model, optimizer) copied together after some fused steps: the copy's optimizer
    holds the copy's parameters, and both go on to the same numbers."""
    model = crnn.LSTM(D, H, O, num_layers=2, dtype="float64", seed=3)
    make = {"sgd": lambda p: crnn.SGD(p, lr=0.1, momentum=0.9, nesterov=True),
            "adam": lambda p: crnn.Adam(p, lr=0.01), "rmsprop":
            lambda p: crnn.RMSprop(p, lr=0.01, momentum=0.5, centered=True),
            "adagrad": lambda p: crnn.Adagrad(p, lr=0.1)}[opt]
    optimizer = make(model.params)
    x, target = _data(model, ("checkpoint", opt))
    for _ in range(3):
        model.train_step(x, target, optimizer, clip_norm=1.0)
    twin, twin_opt = _roundtrips()[how]((model, optimizer))
    assert twin_opt.params is twin.params and _owns_its_params(twin)
    assert twin_opt.step_count == optimizer.step_count == 3
    for _ in range(2):
        loss = model.train_step(x, target, optimizer, clip_norm=1.0)
        loss_twin = twin.train_step(x, target, twin_opt, clip_norm=1.0)
        assert loss_twin == loss
    for k, v in model.params.items():
        np.testing.assert_array_equal(twin.params[k], v, err_msg=k)
    assert _owns_its_params(model)


def test_the_optimizer_pickled_first_also_holds_the_models_params():
    model = crnn.GRU(D, H, O, seed=0)
    optimizer = crnn.Adam(model.params)
    twin_opt, twin = pickle.loads(pickle.dumps((optimizer, model)))
    assert twin_opt.params is twin.params and _owns_its_params(twin)
    x, target = _data(twin, "first")
    twin.train_step(x, target, twin_opt)


def test_a_replaced_entry_is_taken_in_as_a_call_would():
    model = crnn.RNN(D, H, O, dtype="float32", seed=0)
    new = rng_for("replaced").standard_normal((H, D))     # float64 into a float32 model
    model.params["W_x"] = new
    twin = pickle.loads(pickle.dumps(model))
    assert _owns_its_params(twin)
    np.testing.assert_array_equal(twin.params["W_x"], new.astype(np.float32))
    x, _ = _data(model, "replaced")
    np.testing.assert_array_equal(twin.forward(x)[0], model.forward(x)[0])


def test_an_entry_a_call_would_refuse_is_refused_after_unpickling_too():
    model = crnn.RNN(D, H, O, seed=0)
    model.params["W_h"] = np.zeros((H + 1, H))
    twin = pickle.loads(pickle.dumps(model))
    x, _ = _data(model, "refused")
    with pytest.raises(ValueError, match=r"params\['W_h'\]"):
        twin.forward(x)


def test_a_fitted_model_keeps_its_history():
    model = crnn.RNN(D, H, O, seed=0)
    x, target = _data(model, "history")
    model.fit(x, target, epochs=2, batch_size=B, verbose=0)
    twin = pickle.loads(pickle.dumps(model))
    assert len(twin.history["loss"]) == 2 and twin.history == model.history


def test_a_shallow_copy_shares_the_parameters():
    model = crnn.LSTM(D, H, O, seed=0)
    alias = copy.copy(model)
    assert alias.params is model.params and alias._flat is model._flat
    x, target = _data(model, "shallow")
    alias.train_step(x, target, crnn.SGD(alias.params, lr=0.5))
    np.testing.assert_array_equal(model.forward(x)[0], alias.forward(x)[0])
    assert _owns_its_params(model)


@pytest.mark.parametrize("cell", list(CELLS))
def test_a_stack_pickles(cell):
    stack = Stack(cell, D, H, num_layers=2, bidirectional=True, dtype="float64", seed=2)
    twin = pickle.loads(pickle.dumps(stack))
    x = rng_for("stack", cell).standard_normal((T, B, D))
    out = stack.forward(x)[0]
    out_twin = twin.forward(x)[0]
    np.testing.assert_array_equal(out_twin, out)
    assert repr(twin) == repr(stack)


def test_a_stack_and_its_optimizer_train_on_together():
    stack = Stack("lstm", D, H, num_layers=2, dtype="float64", seed=2)
    optimizer = crnn.Adam(stack.params, lr=0.01)
    twin, twin_opt = pickle.loads(pickle.dumps((stack, optimizer)))
    assert twin_opt.params is twin.params and _owns_its_params(twin._net)
    x = rng_for("stack optimizer").standard_normal((T, B, D))
    before = stack.params["W_h"].copy()
    for s, opt in ((stack, optimizer), (twin, twin_opt)):
        out, _, tape = s.forward(x)
        grads = s.backward(tape, np.ones_like(out))[0]
        opt.step(grads)
    assert not np.array_equal(twin.params["W_h"], before)
    for k, v in stack.params.items():
        np.testing.assert_array_equal(twin.params[k], v, err_msg=k)


def test_a_models_stack_pickled_with_it_stays_its_stack():
    model = crnn.GRU(D, H, O, seed=0)
    twin, twin_stack = pickle.loads(pickle.dumps((model, model.stack)))
    assert twin_stack._net is twin
