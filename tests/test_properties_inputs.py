"""Property-based tests (hypothesis) of crnn's networks: malformed inputs.

Random malformed inputs -- wrong shapes, ranks and dtypes of x, target,
h0 (and LSTM pairs) and lengths; out-of-range token and class ids; NaN
and infinity where training refuses them; bad keyword values of
loss_and_grad, fit, generate and step -- raise ValueError or TypeError
naming the argument (the README's promise), and leave every params
array bitwise unchanged (NaN positions included: in half the examples a
NaN is planted in the params first). A fit that fails part-way (a
callback raising after some updates, a non-finite loss) leaves params,
and a given optimizer's state, as they were.

test_lstm_c0_alone_with_one_state (in test_properties_reference.py) and
test_step_names_x_t hold what these tests found: h0 = (None, c0) for a
one-state LSTM, and step's own messages.

Every run draws the same examples (derandomize=True, no example database), so
CI is reproducible.
"""

import numpy as np
import pytest
from hypothesis import Phase, assume, given, note, settings
from hypothesis import strategies as st

import crnn

from _properties import BAD, CELLS, _COMMON, _settings


# --- 2. malformed inputs ---------------------------------------------------------------------

def _snapshot(model):
    return {k: (id(v), v.dtype, v.shape, v.tobytes()) for k, v in model.params.items()}


def _assert_unchanged(model, before):
    assert set(model.params) == set(before)
    for k, (ident, dtype, shape, raw) in before.items():
        v = model.params[k]
        assert id(v) == ident, f"params[{k!r}] replaced"
        assert v.dtype == dtype and v.shape == shape, k
        assert v.tobytes() == raw, f"params[{k!r}] changed"     # NaN positions included


def _name(arg):
    """A regex that finds ``arg`` as a word in an error message."""
    return rf"(?<![A-Za-z0-9_]){arg}(?![A-Za-z0-9_])"


def _expect_bad(model, arg, fn, *args, **kwargs):
    before = _snapshot(model)
    with pytest.raises(BAD, match=_name(arg)):
        with np.errstate(all="ignore"):
            fn(*args, **kwargs)
    _assert_unchanged(model, before)


@st.composite
def _small_models(draw, *, cell=None, uni=False, softmax_vocab=False, min_outputs=1):
    """A small model, in half the examples with a NaN planted in one params array (so
    that the bitwise comparison covers NaN positions), and valid inputs for it."""
    name = cell or draw(st.sampled_from(list(CELLS)))
    klass, _, nonlinearity, _ = CELLS[name]
    L = draw(st.integers(1, 2))
    bi = False if uni else draw(st.booleans())
    T, B, D, H = (draw(st.integers(1, 4)), draw(st.integers(1, 4)), draw(st.integers(1, 4)),
                  draw(st.integers(1, 5)))
    output = "softmax" if softmax_vocab else draw(st.sampled_from(["softmax", "linear"]))
    O = D if softmax_vocab else draw(st.integers(min_outputs, 4))
    dtype = draw(st.sampled_from(["float64", "float32"]))
    kw = {"nonlinearity": nonlinearity} if klass is crnn.RNN else {}
    dropout = draw(st.sampled_from([0.0, 0.25])) if L > 1 else 0.0
    model = klass(D, H, O, num_layers=L, bidirectional=bi, dropout=dropout, output=output,
                  dtype=dtype, seed=draw(st.integers(0, 2**16)), **kw)
    if draw(st.booleans()):
        key = draw(st.sampled_from(sorted(model.params)))
        flat = model.params[key].reshape(-1)
        flat[draw(st.integers(0, flat.size - 1))] = np.nan
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    n = L * (2 if bi else 1)
    sshape = (B, H) if n == 1 else (n, B, H)
    ctx = {
        "T": T, "B": B, "D": D, "H": H, "O": O, "n": n, "dtype": np.dtype(dtype),
        "lstm": name == "lstm", "sshape": sshape,
        "x": rng.standard_normal((T, B, D)).astype(dtype),
        "tokens": rng.integers(0, D, (T, B)),
        "target": (rng.integers(0, O, (T, B)) if output == "softmax"
                   else rng.standard_normal((T, B, O)).astype(dtype)),
        "target_seq": (rng.integers(0, O, B) if output == "softmax"
                       else rng.standard_normal((B, O)).astype(dtype)),
        "h0": (0.5 * rng.standard_normal(sshape)).astype(dtype),
        "lengths": rng.integers(1, T + 1, B),
    }
    return model, ctx


def _other_shape(draw, valid, *, avoid=()):
    """A shape near ``valid`` (one size off, a size more or fewer) that is not ``valid``
    nor one of ``avoid``."""
    valid = tuple(valid)
    how = draw(st.sampled_from(["resize", "drop", "add", "swap"]))
    shape = list(valid)
    if how == "resize" and shape:
        i = draw(st.integers(0, len(shape) - 1))
        shape[i] = draw(st.integers(0, shape[i] + 3).filter(lambda v: v != valid[i]))
    elif how == "drop" and shape:
        del shape[draw(st.integers(0, len(shape) - 1))]
    elif how == "swap" and len(shape) >= 2:
        shape = shape[::-1]
    else:
        shape.insert(draw(st.integers(0, len(shape))), draw(st.integers(1, 3)))
    shape = tuple(shape)
    assume(shape != valid and shape not in avoid)
    return shape


def _bad_width_or_rank(draw, lead, width):
    """A shape that is not ``lead + (width,)`` for any leading sizes: the last size
    off, or a size more or fewer."""
    shape = list(lead) + [width]
    how = draw(st.sampled_from(["width", "drop", "add"]))
    if how == "width":
        shape[-1] = draw(st.integers(0, width + 3).filter(lambda v: v != width))
    elif how == "drop":
        del shape[draw(st.integers(0, len(shape) - 1))]
    else:
        shape.insert(draw(st.integers(0, len(shape))), draw(st.integers(1, 3)))
    return tuple(shape)


def _bad_dtype_array(draw, shape):
    kind = draw(st.sampled_from(["bool", "complex", "str", "object", "bytes", "datetime"]))
    base = np.zeros(shape)
    return {"bool": lambda: base.astype(bool), "complex": lambda: base.astype(complex),
            "str": lambda: base.astype(str), "object": lambda: base.astype(object),
            "bytes": lambda: np.full(shape, b"ab"),
            "datetime": lambda: np.zeros(shape, dtype="datetime64[s]")}[kind]()


def _bad_x(draw, ctx, *, training):
    """A malformed x (argument name "x")."""
    T, B, D = ctx["T"], ctx["B"], ctx["D"]
    kinds = ["float_shape", "int_shape", "empty", "dtype", "token_range", "not_array"]
    if training:
        kinds.append("nonfinite")
    kind = draw(st.sampled_from(kinds))
    if kind == "float_shape":
        # floats must be (T', B', D), T', B' >= 1: another rank (e.g. (T, B) floats) or width
        return np.ones(_bad_width_or_rank(draw, (T, B), D), dtype=ctx["dtype"])
    if kind == "int_shape":
        shape = _other_shape(draw, (T, B), avoid=[(T, B, D)])
        assume(len(shape) != 2)
        return np.zeros(shape, dtype=np.int64)
    if kind == "empty":
        shape = list(draw(st.sampled_from([(T, B, D), (T, B)])))
        shape[draw(st.integers(0, 1))] = 0
        return np.zeros(shape, dtype=ctx["dtype"] if len(shape) == 3 else np.int64)
    if kind == "dtype":
        return _bad_dtype_array(draw, draw(st.sampled_from([(T, B, D), (T, B)])))
    if kind == "token_range":
        dtype = draw(st.sampled_from(["int8", "int16", "int64", "uint8", "uint64"]))
        tokens = ctx["tokens"].astype(dtype)
        high = [D, D + 1, np.iinfo(dtype).max]
        choices = high + ([-1, -D - 1, np.iinfo(dtype).min] if dtype.startswith("int") else [])
        value = draw(st.sampled_from(choices))
        tokens[draw(st.integers(0, T - 1)), draw(st.integers(0, B - 1))] = value
        return tokens
    if kind == "not_array":
        return draw(st.sampled_from([None, "hello", {"x": 1},
                                     [[[1.0] * D] * B, [[1.0] * D] * (B + 1)]]))
    x = ctx["x"].copy()
    value = draw(st.sampled_from([np.nan, np.inf, -np.inf]
                                 + ([1e300, -1e39] if ctx["dtype"] == np.float32 else [])))
    x = x.astype(np.float64) if abs(value) > 1e38 and np.isfinite(value) else x
    x[draw(st.integers(0, T - 1)), draw(st.integers(0, B - 1)), draw(st.integers(0, D - 1))] = \
        value
    return x


def _bad_target(draw, model, ctx):
    """A malformed target (argument name "target")."""
    T, B, O = ctx["T"], ctx["B"], ctx["O"]
    softmax = model.output == "softmax"
    valid = [(T, B), (B,)] if softmax else [(T, B, O), (B, O)]
    kinds = ["shape", "dtype"] + (["class_range"] if softmax else ["nonfinite"])
    kind = draw(st.sampled_from(kinds))
    if kind == "shape":
        shape = _other_shape(draw, draw(st.sampled_from(valid)), avoid=valid)
        return np.zeros(shape, dtype=np.int64 if softmax else ctx["dtype"])
    if kind == "dtype":
        if softmax:     # floats (even integral ones), bools, complex, strings
            shape = draw(st.sampled_from(valid))
            which = draw(st.sampled_from(["float", "bad"]))
            return np.zeros(shape) if which == "float" else _bad_dtype_array(draw, shape)
        return _bad_dtype_array(draw, draw(st.sampled_from(valid)))
    per_step = draw(st.booleans())
    target = (ctx["target"] if per_step else ctx["target_seq"]).copy()
    index = tuple(draw(st.integers(0, s - 1)) for s in target.shape)
    if kind == "class_range":
        target[index] = draw(st.sampled_from([O, O + 1, -1, -O - 7]))
        return target
    value = draw(st.sampled_from([np.nan, np.inf, -np.inf]
                                 + ([1e300] if ctx["dtype"] == np.float32 else [])))
    target = target.astype(np.float64)
    target[index] = value
    return target


def _bad_h0(draw, ctx, *, training):
    """A malformed h0 (argument name "h0"; the parts of an LSTM pair are h0[0], h0[1])."""
    kinds = ["shape", "dtype"] + (["nonfinite"] if training else [])
    if ctx["lstm"]:
        kinds += ["pair_length", "pair_part"]
    kind = draw(st.sampled_from(kinds))
    sshape = ctx["sshape"]
    if kind == "shape":
        return np.zeros(_other_shape(draw, sshape))
    if kind == "dtype":
        return _bad_dtype_array(draw, sshape)
    if kind == "pair_length":
        make = draw(st.sampled_from([tuple, list]))
        return make([ctx["h0"]] * draw(st.sampled_from([0, 1, 3])))
    if kind == "pair_part":
        bad = draw(st.sampled_from(["shape", "dtype"]))
        part = (np.zeros(_other_shape(draw, sshape)) if bad == "shape"
                else _bad_dtype_array(draw, sshape))
        return (ctx["h0"], part) if draw(st.booleans()) else (part, ctx["h0"])
    h = ctx["h0"].astype(np.float64)
    h.reshape(-1)[draw(st.integers(0, h.size - 1))] = draw(
        st.sampled_from([np.nan, np.inf, -np.inf]))
    if ctx["lstm"] and draw(st.booleans()):
        return (ctx["h0"], h) if draw(st.booleans()) else (h, ctx["h0"])
    return h


def _bad_lengths(draw, ctx):
    """Malformed lengths (argument name "lengths")."""
    T, B = ctx["T"], ctx["B"]
    kind = draw(st.sampled_from(["shape", "range", "dtype"]))
    if kind == "shape":
        return np.full(_other_shape(draw, (B,)), 1)
    if kind == "range":
        lengths = ctx["lengths"].copy()
        lengths[draw(st.integers(0, B - 1))] = draw(st.sampled_from([0, -1, T + 1, T + 7]))
        return lengths
    which = draw(st.sampled_from(["float", "bad"]))
    return (ctx["lengths"].astype(np.float64) if which == "float"
            else _bad_dtype_array(draw, (B,)))


# seeds are None, a non-negative int or a numpy Generator
_BAD_SEEDS = st.one_of(st.integers(max_value=-1), st.sampled_from(
    [1.5, "seed", [-3], object(), 2.0]))


@_settings(300)
@given(data=st.data())
def test_malformed_call_inputs_are_refused(data):
    """Malformed x, target, h0 or lengths in forward, predict, loss_and_grad or fit (and a
    bad reduction) raise ValueError/TypeError naming the argument; params unchanged."""
    model, ctx = data.draw(_small_models(), label="model")
    method = data.draw(st.sampled_from(["forward", "predict", "loss_and_grad", "fit"]))
    training = method in ("loss_and_grad", "fit")
    args = ["x", "lengths"] + (["h0"] if method in ("forward", "loss_and_grad") else []) \
        + (["target"] if training else []) \
        + (["reduction", "seed"] if method == "loss_and_grad" else [])
    arg = data.draw(st.sampled_from(args), label="argument")
    x = data.draw(st.sampled_from([ctx["x"], ctx["tokens"]]), label="valid x")
    target = data.draw(st.sampled_from([ctx["target"], ctx["target_seq"]]))
    kw = {}
    if arg == "x":
        x = _bad_x(data.draw, ctx, training=training)
    elif arg == "target":
        target = _bad_target(data.draw, model, ctx)
    elif arg == "h0":
        kw["h0"] = _bad_h0(data.draw, ctx, training=training)
    elif arg == "lengths":
        kw["lengths"] = _bad_lengths(data.draw, ctx)
    elif arg == "seed":
        kw["seed"] = data.draw(_BAD_SEEDS)
    else:
        kw["reduction"] = data.draw(
            st.one_of(st.text(max_size=5), st.none(), st.integers(), st.sampled_from(
                ["MEAN", "Sum", "avg", b"mean", ("mean",)])).filter(
                lambda r: not (isinstance(r, str) and r in ("mean", "sum"))))
    note(f"{method}: bad {arg}")
    if method == "forward":
        _expect_bad(model, arg, model.forward, x, **kw)
    elif method == "predict":
        _expect_bad(model, arg, model.predict, x, **kw)
    elif method == "loss_and_grad":
        _expect_bad(model, arg, model.loss_and_grad, x, target, **kw)
    else:
        _expect_bad(model, arg, model.fit, x, target, verbose=0, batch_size=2, lr=0.1, **kw)


def _bad_positive_int():
    return st.one_of(st.integers(max_value=0), st.sampled_from(
        [1.5, 2.0, "3", None, True, False, [2], np.float64(2.0), np.int64(0), complex(2, 0)]))


def _bad_positive_float(*, none_ok, zero_ok=False):
    values = [-0.1, -1, np.nan, np.inf, -np.inf, "0.1", True, [0.1], complex(0.1, 0)]
    if not none_ok:
        values.append(None)
    if not zero_ok:
        values += [0.0, -0.0]
    below = st.floats(max_value=-1e-300) if zero_ok else st.floats(max_value=0.0)
    return st.one_of(below, st.sampled_from(values))


@_settings(150)
@given(data=st.data())
def test_malformed_fit_arguments_are_refused(data):
    """Bad epochs, batch_size, lr, clip_norm, clip_value, bptt, verbose, optimizer,
    validation_data, callbacks or seed raise ValueError/TypeError naming the argument
    before any update; params unchanged."""
    model, ctx = data.draw(_small_models(), label="model")
    args = ["epochs", "batch_size", "lr", "clip_norm", "clip_value", "bptt", "verbose",
            "optimizer", "validation_data", "callbacks", "seed"]
    arg = name = data.draw(st.sampled_from(args), label="argument")
    if arg in ("epochs", "batch_size"):
        value = data.draw(_bad_positive_int())
    elif arg == "bptt":
        value = data.draw(st.one_of(_bad_positive_int().filter(lambda v: v is not None),
                                    st.just(2) if model.bidirectional else st.nothing()))
    elif arg == "lr":
        value = data.draw(_bad_positive_float(none_ok=False))
    elif arg in ("clip_norm", "clip_value"):
        value = data.draw(_bad_positive_float(none_ok=True))
    elif arg == "verbose":
        value = data.draw(st.one_of(st.integers().filter(lambda v: v not in (0, 1, 2)),
                                    st.sampled_from([1.0, "1", None, [1]])))
    elif arg == "optimizer":
        other = crnn.RNN(2, 3, 2, seed=0)
        value = data.draw(st.sampled_from(["sgdd", "", "Adamw", None, 3,
                                           crnn.SGD(other.params, lr=0.1)]))
    elif arg == "validation_data":
        kind = data.draw(st.sampled_from(["not_tuple", "length", "bad_x", "bad_target"]))
        if kind == "not_tuple":
            value = data.draw(st.sampled_from([ctx["x"], "val", 3]))
        elif kind == "length":
            value = (ctx["x"],) * data.draw(st.sampled_from([0, 1, 4]))
        elif kind == "bad_x":       # checked as fit's own x is: the message names x
            value, name = (_bad_x(data.draw, ctx, training=True), ctx["target"]), "x"
        else:
            value, name = (ctx["x"], _bad_target(data.draw, model, ctx)), "target"
    elif arg == "callbacks":
        value = data.draw(st.sampled_from([[object()], ["early"], 3,
                                           [crnn.callbacks.Callback(), None]]))
    else:
        value = data.draw(_BAD_SEEDS)
    note(f"fit: bad {arg} = {value!r}")
    kw = {"verbose": 0, "lr": 0.1, arg: value}
    _expect_bad(model, name, model.fit, ctx["x"], ctx["target"], **kw)


@_settings(150)
@given(data=st.data())
def test_malformed_generate_and_step_arguments_are_refused(data):
    """generate's length, temperature, prime and seed, step's x_t and h, and either
    method on a model it does not apply to, raise ValueError/TypeError naming the
    argument; params unchanged."""
    method = data.draw(st.sampled_from(["generate", "step"]))
    if method == "generate":
        wrong_model = data.draw(st.booleans(), label="unsuitable model")
        if wrong_model:
            model, ctx = data.draw(_small_models())
            assume(model.bidirectional or model.output != "softmax"
                   or model.input_size != model.output_size)
            _expect_bad(model, "generate", model.generate, 3, seed=0)
            return
        model, ctx = data.draw(_small_models(uni=True, softmax_vocab=True))
        V = ctx["D"]
        arg = data.draw(st.sampled_from(["length", "temperature", "prime", "seed"]))
        kw = {"length": 3, "seed": 0}
        if arg == "length":
            kw["length"] = data.draw(_bad_positive_int())
        elif arg == "temperature":
            # (0 is greedy decoding)
            kw["temperature"] = data.draw(_bad_positive_float(none_ok=False, zero_ok=True))
        elif arg == "prime":
            kw["prime"] = data.draw(st.sampled_from([
                [], np.zeros(0, dtype=int), [[0, 1]], np.zeros((2, 2), dtype=int), [0.0, 1.0],
                [True], "abc", [V], [0, V + 3], [-1], np.array([0, V], dtype=np.uint8)]))
        else:
            kw["seed"] = data.draw(_BAD_SEEDS)
        note(f"generate: bad {arg} = {kw[arg]!r}")
        length = kw.pop("length")
        _expect_bad(model, arg, model.generate, length, **kw)
        return
    wrong_model = data.draw(st.booleans(), label="bidirectional model")
    if wrong_model:
        model, ctx = data.draw(_small_models())
        assume(model.bidirectional)
        _expect_bad(model, "step", model.step, ctx["x"][0])
        return
    model, ctx = data.draw(_small_models(uni=True))
    if data.draw(st.booleans(), label="bad x_t"):
        x_t = _bad_x_t(data.draw, ctx, data.draw(st.sampled_from(X_T_KINDS)))
        # (the ones the shared checks of x find are named x: test_step_names_x_t)
        _expect_bad(model, "(?:x_t|x)", model.step, x_t)
    else:
        h = _bad_h0(data.draw, ctx, training=False)
        note("step: bad h")
        _expect_bad(model, "h", model.step, ctx["x"][0], h)


X_T_KINDS = ["float_shape", "int_shape", "dtype", "range", "empty"]


def _bad_x_t(draw, ctx, kind):
    """A malformed x_t for step: (B, D) floats or (B,) token ids are expected."""
    B, D = ctx["B"], ctx["D"]
    note(f"step: bad x_t ({kind})")
    if kind == "float_shape":
        return np.ones(_bad_width_or_rank(draw, (B,), D))
    if kind == "int_shape":
        x_t = np.zeros(_other_shape(draw, (B,)), dtype=int)
        assume(x_t.ndim != 1)
        return x_t
    if kind == "int_rows":          # integers of shape (B', D): not token ids
        return np.zeros((draw(st.integers(1, 5)), D), dtype=int)
    if kind == "dtype":
        return _bad_dtype_array(draw, draw(st.sampled_from([(B, D), (B,)])))
    if kind == "range":
        x_t = ctx["tokens"][0].copy()
        x_t[draw(st.integers(0, B - 1))] = draw(st.sampled_from([-1, D, D + 5]))
        return x_t
    assert kind == "empty"
    return draw(st.sampled_from([np.zeros((0, D)), np.zeros(0, dtype=int)]))


@settings(max_examples=5, phases=[Phase.generate], **_COMMON)     # no shrinking
@given(data=st.data())
def test_step_names_x_t(data):
    """Every malformed x_t of step raises naming x_t."""
    model, ctx = data.draw(_small_models(uni=True))
    x_t = _bad_x_t(data.draw, ctx, data.draw(st.sampled_from(["int_rows", "range", "empty"])))
    _expect_bad(model, "x_t", model.step, x_t)


# --- a fit that fails part-way changes nothing ------------------------------------------------

class _Failure(Exception):
    pass


class _FailAt(crnn.callbacks.Callback):
    """Raises after epoch ``epoch``, noting whether the params had moved by then."""

    def __init__(self, epoch, before):
        self.epoch, self.before, self.moved = epoch, before, None

    def on_epoch_end(self, model, epoch, history):
        if epoch == self.epoch:
            self.moved = any(v.tobytes() != self.before[k][3]
                             for k, v in model.params.items())
            raise _Failure(f"stop after epoch {epoch}")
        return False


OPTIMIZERS = ["sgd", "momentum", "adagrad", "rmsprop", "adam"]
INSTANCES = {"SGD": lambda p: crnn.SGD(p, lr=0.05, momentum=0.9),
             "Adam": lambda p: crnn.Adam(p, lr=0.01),
             "RMSprop": lambda p: crnn.RMSprop(p, lr=0.01),
             "Adagrad": lambda p: crnn.Adagrad(p, lr=0.05)}


def _state_equal(a, b):
    assert a["optimizer"] == b["optimizer"] and a["step_count"] == b["step_count"]
    assert a["hyperparameters"] == b["hyperparameters"]
    assert set(a["state"]) == set(b["state"])
    for k in a["state"]:
        assert set(a["state"][k]) == set(b["state"][k])
        for n in a["state"][k]:
            assert a["state"][k][n].tobytes() == b["state"][k][n].tobytes(), (k, n)


@_settings(40)
@given(data=st.data())
def test_failing_fit_restores_params(data):
    """A fit that fails after some updates (a callback raising), or on a non-finite loss
    (a NaN in the head's weights), leaves params bitwise as they were, and the state of
    an optimizer instance too."""
    # (a one-class softmax head has no loss and no gradient: nothing would move)
    model, ctx = data.draw(_small_models(min_outputs=2), label="model")
    for v in model.params.values():     # start clean (_small_models may plant a NaN)
        v[np.isnan(v)] = 0.25
    how = data.draw(st.sampled_from(["callback", "nonfinite"]))
    kw = {"epochs": data.draw(st.integers(1, 3)), "batch_size": data.draw(st.integers(1, 5)),
          "shuffle": data.draw(st.booleans()), "seed": data.draw(st.integers(0, 99)),
          "verbose": 0, "clip_norm": data.draw(st.sampled_from([None, 1.0])),
          "clip_value": data.draw(st.sampled_from([None, 0.5]))}
    if not model.bidirectional and data.draw(st.booleans()):
        kw["bptt"] = data.draw(st.integers(1, 3))
    if data.draw(st.booleans()):
        kw["lengths"] = ctx["lengths"]
    x = data.draw(st.sampled_from([ctx["x"], ctx["tokens"]]))
    target = data.draw(st.sampled_from([ctx["target"], ctx["target_seq"]]))
    instance = data.draw(st.sampled_from([None] + sorted(INSTANCES)))
    if instance is None:
        kw["optimizer"] = data.draw(st.sampled_from(OPTIMIZERS))
        kw["lr"] = 0.1
    else:
        opt = INSTANCES[instance](model.params)
        # one step first, so that it has state to restore
        opt.step(model.loss_and_grad(ctx["x"], ctx["target"])[1])
        kw["optimizer"] = opt
        opt_before = opt.state_dict()
    if how == "nonfinite":
        key = data.draw(st.sampled_from(["W_y", "b_y"]))
        flat = model.params[key].reshape(-1)
        flat[data.draw(st.integers(0, flat.size - 1))] = data.draw(
            st.sampled_from([np.nan, np.inf]))
    before = _snapshot(model)
    if how == "callback":
        fail = _FailAt(data.draw(st.integers(0, kw["epochs"] - 1)), before)
        kw["callbacks"] = [fail]
        with pytest.raises(_Failure):
            model.fit(x, target, **kw)
        assert fail.moved, "the params had not moved before the failure"
    else:
        with pytest.raises(FloatingPointError):
            with np.errstate(all="ignore"):
                model.fit(x, target, **kw)
    _assert_unchanged(model, before)
    if instance is not None:
        _state_equal(kw["optimizer"].state_dict(), opt_before)
