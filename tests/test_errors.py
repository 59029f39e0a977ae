"""Bad input raises ValueError/TypeError naming the argument; failed calls change nothing;
accepted conversions (other float dtype, lists, non-contiguous, read-only) give the clean answers.
"""

import warnings

import numpy as np
import pytest

import crnn

from conftest import PARAM_NAMES, assert_params_bitwise_equal, make_case, rng_for, snapshot

BAD = (ValueError, TypeError)
T, B, D, H, O = 5, 3, 4, 6, 3


def _name(arg):
    """A regex that finds ``arg`` as a word in the message."""
    return rf"(?<![A-Za-z0-9_]){arg}(?![A-Za-z0-9_])"


@pytest.fixture(params=["float64", "float32"])
def dtype(request):
    return request.param


@pytest.fixture(params=["softmax", "linear"])
def output(request):
    return request.param


@pytest.fixture
def model(output, dtype):
    return crnn.RNN(D, H, O, output=output, dtype=dtype, seed=1)


@pytest.fixture
def data(output, dtype):
    """Valid float inputs, token inputs, per-step and per-sequence targets, h0 and lengths."""
    rng = rng_for("errors", output, dtype)
    case = make_case(rng, T, B, D, H, O, output=output, lengths=True, h0=True, dtype=dtype)
    case["tokens"] = rng.integers(0, D, (T, B))
    case["target_seq"] = make_case(rng, T, B, D, H, O, output=output, per_step=False,
                                   dtype=dtype)["target"]
    return case


def _expect_bad(model, arg, fn, *args, **kwargs):
    """fn(*args, **kwargs) raises ValueError/TypeError naming ``arg``; params stay bitwise equal."""
    before = snapshot(model.params)
    ids = {k: id(v) for k, v in model.params.items()}
    with pytest.raises(BAD, match=_name(arg)):
        fn(*args, **kwargs)
    assert_params_bitwise_equal(model.params, before)
    assert {k: id(v) for k, v in model.params.items()} == ids


# --- the constructor -------------------------------------------------------------------------

@pytest.mark.parametrize("arg,value", [
    ("nonlinearity", "sigmoid"), ("nonlinearity", ""), ("nonlinearity", None),
    ("nonlinearity", 1), ("output", "logits"), ("output", "sigmoid"), ("output", None),
    ("dtype", "float16"), ("dtype", "int32"), ("dtype", "doubles"), ("dtype", np.int64),
    ("dtype", np.complex128), ("dtype", None),
])
def test_unknown_option_is_refused(arg, value):
    """Unknown nonlinearity, output or dtype raises ValueError/TypeError naming it."""
    with pytest.raises(BAD, match=_name(arg)):
        crnn.RNN(D, H, O, **{arg: value})


@pytest.mark.parametrize("arg", ["input_size", "hidden_size", "output_size"])
@pytest.mark.parametrize("value", [0, -1, -7])
def test_non_positive_size_is_refused(arg, value):
    """A size <= 0 raises ValueError/TypeError naming the size."""
    sizes = dict(input_size=D, hidden_size=H, output_size=O)
    sizes[arg] = value
    with pytest.raises(BAD, match=_name(arg)):
        crnn.RNN(sizes["input_size"], sizes["hidden_size"], sizes["output_size"])


@pytest.mark.parametrize("arg", ["input_size", "hidden_size", "output_size"])
@pytest.mark.parametrize("value", [2.5, 3.0, "3", None, [3]], ids=repr)
def test_non_integer_size_is_refused(arg, value):
    """A size that is not an integer raises ValueError/TypeError naming the size."""
    sizes = dict(input_size=D, hidden_size=H, output_size=O)
    sizes[arg] = value
    with pytest.raises(BAD, match=_name(arg)):
        crnn.RNN(sizes["input_size"], sizes["hidden_size"], sizes["output_size"])


@pytest.mark.parametrize("spelling", ["float32", "float64", np.float32, np.float64,
                                      np.dtype("float32"), np.dtype("float64")], ids=repr)
def test_dtype_spellings_are_accepted(spelling):
    """dtype as a string or a numpy dtype gives a model of that numpy dtype."""
    m = crnn.RNN(2, 3, 4, dtype=spelling)
    assert m.dtype == np.dtype(spelling)
    assert all(p.dtype == np.dtype(spelling) for p in m.params.values())


# --- x ---------------------------------------------------------------------------------------

BAD_X = {
    "rank1": lambda c: c["x"][:, 0, 0],
    "float_rank2": lambda c: c["x"][:, :, 0],
    "rank4": lambda c: c["x"][..., None],
    "wrong_D": lambda c: np.concatenate([c["x"], c["x"][..., :1]], axis=2),
    "D_minus_1": lambda c: c["x"][..., :-1],
    "int_rank1": lambda c: c["tokens"][:, 0],
    "token_too_big": lambda c: np.where(np.arange(B) == 1, D, c["tokens"]),
    "token_negative": lambda c: np.where(np.arange(B) == 2, -1, c["tokens"]),
    "T0_float": lambda c: c["x"][:0],
    "B0_float": lambda c: c["x"][:, :0],
    "T0_tokens": lambda c: c["tokens"][:0],
    "B0_tokens": lambda c: c["tokens"][:, :0],
    "strings": lambda c: c["x"].astype(str),
    "objects": lambda c: c["x"].astype(object),
    "complex": lambda c: c["x"].astype(complex),
    "bytes": lambda c: np.full((T, B, D), b"ab"),
    "a_string": lambda c: "hello",
    "None": lambda c: None,
    "ragged_list": lambda c: [[[1.0] * D] * B, [[1.0] * D] * (B - 1)],
}


@pytest.mark.parametrize("which", list(BAD_X))
def test_bad_x(which, model, data):
    """Every wrong x raises ValueError/TypeError naming x, in forward, predict, loss_and_grad and fit."""
    x = BAD_X[which](data)
    _expect_bad(model, "x", model.forward, x)
    _expect_bad(model, "x", model.predict, x)
    _expect_bad(model, "x", model.loss_and_grad, x, data["target_seq"])
    _expect_bad(model, "x", model.fit, x, data["target_seq"], verbose=0)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nonfinite_x_refused_for_training_accepted_by_forward(bad, model, data):
    """NaN/Inf in x: loss_and_grad and fit raise naming x; forward returns (non-finite) values."""
    x = data["x"].copy()
    x[T - 1, B - 1, D - 1] = bad
    _expect_bad(model, "x", model.loss_and_grad, x, data["target"])
    _expect_bad(model, "x", model.fit, x, data["target"], verbose=0)
    y, h = model.forward(x)
    assert y.shape == (T, B, O) and h.shape == (B, H)
    if np.isnan(bad):  # (an infinite input may saturate tanh to a finite value)
        assert not np.any(np.isfinite(y[T - 1, B - 1]))
    np.testing.assert_array_equal(y[:, : B - 1], model.forward(data["x"])[0][:, : B - 1])


def test_values_overflowing_float32_are_refused():
    """Finite float64 values that overflow to Inf when converted for a float32 model are refused too.

    x and target are converted to the model's dtype; 1e300 becomes inf in
    float32, and NaN/Inf in x or target must raise for loss_and_grad and fit.
    """
    model = crnn.RNN(D, H, O, output="linear", dtype="float32", seed=1)
    rng = rng_for("overflow")
    x = rng.standard_normal((T, B, D))
    target = rng.standard_normal((T, B, O))
    x_big = x.copy()
    x_big[0, 1, 2] = 1e300
    t_big = target.copy()
    t_big[2, 0, 1] = -1e300
    with np.errstate(over="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        _expect_bad(model, "x", model.loss_and_grad, x_big, target)
        _expect_bad(model, "x", model.fit, x_big, target, verbose=0)
        _expect_bad(model, "target", model.loss_and_grad, x, t_big)
        _expect_bad(model, "target", model.fit, x, t_big, verbose=0)


# --- h0 --------------------------------------------------------------------------------------

BAD_H0 = {
    "B_plus_1": lambda c: np.zeros((B + 1, H)),
    "H_plus_1": lambda c: np.zeros((B, H + 1)),
    "transposed": lambda c: np.zeros((H, B)),
    "rank1": lambda c: np.zeros(H),
    "rank3": lambda c: np.zeros((1, B, H)),
    "strings": lambda c: np.full((B, H), "a"),
    "objects": lambda c: np.zeros((B, H)).astype(object),
}


@pytest.mark.parametrize("which", list(BAD_H0))
def test_bad_h0(which, model, data):
    """A wrong h0 raises ValueError/TypeError naming h0."""
    h0 = BAD_H0[which](data)
    _expect_bad(model, "h0", model.forward, data["x"], h0=h0)
    _expect_bad(model, "h0", model.loss_and_grad, data["x"], data["target"], h0=h0)


# --- lengths ---------------------------------------------------------------------------------

BAD_LENGTHS = {
    "B_plus_1": lambda c: np.full(B + 1, T),
    "B_minus_1": lambda c: np.full(B - 1, T),
    "rank2": lambda c: np.full((B, 1), T),
    "scalar": lambda c: np.int64(T),
    "zero": lambda c: np.array([T, 0, 2]),
    "negative": lambda c: np.array([T, -1, 2]),
    "T_plus_1": lambda c: np.array([T, T + 1, 2]),
    "non_integer": lambda c: np.array([T, 1.5, 2]),
    "strings": lambda c: np.array(["5", "1", "2"]),
    "objects": lambda c: np.array([T, 1, 2], dtype=object),
}


@pytest.mark.parametrize("which", list(BAD_LENGTHS))
def test_bad_lengths(which, model, data):
    """lengths of the wrong shape, outside [1, T], or not integers raise naming lengths."""
    lengths = BAD_LENGTHS[which](data)
    _expect_bad(model, "lengths", model.forward, data["x"], lengths=lengths)
    _expect_bad(model, "lengths", model.predict, data["x"], lengths=lengths)
    _expect_bad(model, "lengths", model.loss_and_grad, data["x"], data["target"],
                lengths=lengths)
    _expect_bad(model, "lengths", model.fit, data["x"], data["target"], lengths=lengths,
                verbose=0)


# --- target ----------------------------------------------------------------------------------

def _bad_targets(output):
    if output == "softmax":
        good_step = np.zeros((T, B), dtype=np.int64)
        return {
            "T_plus_1": np.zeros((T + 1, B), dtype=np.int64),
            "B_plus_1": np.zeros((T, B + 1), dtype=np.int64),
            "seq_B_plus_1": np.zeros(B + 1, dtype=np.int64),
            "rank3": np.zeros((T, B, O), dtype=np.int64),
            "scalar": np.int64(0),
            "class_O": np.where(np.arange(B) == 1, O, good_step),
            "class_negative": np.where(np.arange(B) == 0, -1, good_step),
            "seq_class_O": np.array([0, O, 1]),
            "seq_class_negative": np.array([0, -2, 1]),
            "fractional": np.full((T, B), 0.5),
            "nan": np.where(np.arange(B) == 1, np.nan, good_step),
            "strings": np.zeros((T, B), dtype=np.int64).astype(str),
            "objects": good_step.astype(object),
        }
    good = np.zeros((T, B, O))
    return {
        "O_plus_1": np.zeros((T, B, O + 1)),
        "B_plus_1": np.zeros((T, B + 1, O)),
        "T_plus_1": np.zeros((T + 1, B, O)),
        "seq_O_plus_1": np.zeros((B, O + 1)),
        "seq_B_plus_1": np.zeros((B + 1, O)),
        "rank1": np.zeros(O),
        "classes_shape": np.zeros((T, B), dtype=np.int64) if T != B else np.zeros((T, 1)),
        "nan": np.where(np.arange(O) == 2, np.nan, good),
        "inf": np.where(np.arange(O) == 0, np.inf, good),
        "seq_nan": np.array([[0.0] * O, [np.nan] * O, [0.0] * O]),
        "seq_neg_inf": np.array([[0.0] * O, [0.0] * O, [-np.inf] + [0.0] * (O - 1)]),
        "strings": good.astype(str),
        "objects": good.astype(object),
    }


@pytest.mark.parametrize("output,which", [
    (out, which) for out in ("softmax", "linear") for which in _bad_targets(out)])
def test_bad_target(which, output, model, data):
    """A wrong target (shape, class range, NaN/Inf, non-numeric) raises naming target."""
    target = _bad_targets(output)[which]
    _expect_bad(model, "target", model.loss_and_grad, data["x"], target)
    _expect_bad(model, "target", model.loss_and_grad, data["x"], target,
                lengths=data["lengths"])
    _expect_bad(model, "target", model.fit, data["x"], target, verbose=0)


@pytest.mark.parametrize("reduction", ["avg", "SUM", "", None, 1])
def test_bad_reduction(reduction, model, data):
    """An unknown reduction raises ValueError/TypeError naming reduction."""
    _expect_bad(model, "reduction", model.loss_and_grad, data["x"], data["target"],
                reduction=reduction)


# --- fit: nothing changes when it fails ------------------------------------------------------

def test_fit_bad_value_in_last_sequence_changes_nothing(output, model, data):
    """fit validates everything before the first update: a bad last sequence leaves params bitwise equal.

    With batch_size=1 and no shuffling, a fit that checked batch by batch would
    already have applied several updates before reaching the bad sequence.
    """
    kw = dict(batch_size=1, shuffle=False, epochs=2, lr=0.1, verbose=0)
    target = data["target"].copy()
    if output == "softmax":
        target[-1, -1] = O
    else:
        target[-1, -1, 0] = np.nan
    _expect_bad(model, "target", model.fit, data["x"], target, **kw)
    x = data["x"].copy()
    x[0, -1, 0] = np.inf
    _expect_bad(model, "x", model.fit, x, data["target"], **kw)
    lengths = np.array([T, 2, T + 1])
    _expect_bad(model, "lengths", model.fit, data["x"], data["target"], lengths=lengths, **kw)
    tokens = data["tokens"].copy()
    tokens[-1, -1] = D
    _expect_bad(model, "x", model.fit, tokens, data["target"], **kw)


@pytest.mark.parametrize("arg,value", [
    ("epochs", 0), ("epochs", -1), ("epochs", 1.5), ("batch_size", 0), ("batch_size", -3),
    ("batch_size", 2.5), ("lr", -0.1), ("lr", 0.0), ("lr", np.nan), ("lr", "0.1"),
    ("clip_norm", -1.0), ("clip_norm", np.nan),
])
def test_fit_bad_arguments_change_nothing(arg, value, model, data):
    """Nonsensical epochs, batch_size, lr or clip_norm raise naming them, before any update."""
    _expect_bad(model, arg, model.fit, data["x"], data["target"], verbose=0, **{arg: value})


def test_fit_divergence_changes_nothing(dtype):
    """A fit whose loss becomes non-finite raises and leaves params bitwise as before the call."""
    model = crnn.RNN(D, H, O, output="linear", nonlinearity="relu", dtype=dtype, seed=4)
    rng = rng_for("diverge", dtype)
    x = 10 * rng.standard_normal((T, 16, D))
    target = 1e3 * rng.standard_normal((T, 16, O))
    before = snapshot(model.params)
    with pytest.raises((FloatingPointError, ValueError, RuntimeError, OverflowError)):
        with np.errstate(all="ignore"):
            model.fit(x, target, epochs=5, batch_size=2, lr=1e6, verbose=0)
    assert_params_bitwise_equal(model.params, before)


# --- accepted conversions give the clean answers ---------------------------------------------

def _results(model, x, target, h0, lengths):
    y, h = model.forward(x, h0=h0, lengths=lengths)
    loss, grads, h_last = model.loss_and_grad(x, target, h0=h0, lengths=lengths)
    return [y, h, np.float64(loss), h_last] + [grads[k] for k in PARAM_NAMES]


def _assert_same(a, b):
    for u, v in zip(a, b):
        assert u.dtype == v.dtype
        np.testing.assert_array_equal(u, v)


@pytest.mark.parametrize("other", [np.float16, np.float32, np.float64, np.longdouble],
                         ids=lambda t: np.dtype(t).name)
@pytest.mark.parametrize("output,arg", [("softmax", "x"), ("softmax", "h0"), ("linear", "x"),
                                        ("linear", "h0"), ("linear", "target")])
def test_other_float_dtypes_are_converted(arg, other, model, data, dtype, output):
    """x (and h0, linear targets) of any float dtype give exactly the answers of the array cast first."""
    args = {"x": data["x"], "target": data["target"], "h0": data["h0"],
            "lengths": data["lengths"]}
    args[arg] = args[arg].astype(other)
    clean = dict(args)
    clean[arg] = args[arg].astype(dtype)
    _assert_same(_results(model, **args), _results(model, **clean))


def _variants(arr):
    """Python list, non-contiguous view, Fortran order and read-only versions of arr."""
    big = np.repeat(arr[..., None], 2, axis=-1)  # every value twice: big[..., 0] is strided
    strided = big[..., 0]
    assert not strided.flags.c_contiguous and np.array_equal(strided, arr)
    readonly = arr.copy()
    readonly.setflags(write=False)
    return {"list": arr.tolist(), "strided": strided, "fortran": np.asfortranarray(arr),
            "readonly": readonly,
            "negative_stride": np.ascontiguousarray(arr[::-1])[::-1]}


@pytest.mark.parametrize("arg", ["x", "tokens", "target", "target_seq", "h0", "lengths"])
@pytest.mark.parametrize("kind", ["list", "strided", "fortran", "readonly", "negative_stride"])
def test_converted_inputs_give_clean_answers(kind, arg, model, data):
    """Lists, strided, Fortran, negative-stride and read-only inputs give the clean answers."""
    x = data["tokens"] if arg == "tokens" else data["x"]
    target = data["target_seq"] if arg == "target_seq" else data["target"]
    args = {"x": x, "target": target, "h0": data["h0"], "lengths": data["lengths"]}
    clean = _results(model, **args)
    key = {"tokens": "x", "target_seq": "target"}.get(arg, arg)
    args[key] = _variants(np.asarray(args[key]))[kind]
    _assert_same(_results(model, **args), clean)


@pytest.mark.parametrize("int_dtype", [np.int8, np.uint8, np.int16, np.int32, np.uint32,
                                       np.int64, np.uint64])
def test_integer_dtypes_for_ids_lengths_classes(int_dtype, model, data, output):
    """Token ids, lengths and class targets of any integer dtype give the int64 answers."""
    target = data["target"].astype(int_dtype) if output == "softmax" else data["target"]
    clean = _results(model, data["tokens"], data["target"], data["h0"], data["lengths"])
    got = _results(model, data["tokens"].astype(int_dtype), target, data["h0"],
                   data["lengths"].astype(int_dtype))
    _assert_same(got, clean)


def test_calls_do_not_modify_their_inputs(model, data):
    """forward, loss_and_grad and fit leave x, target, h0 and lengths bitwise unchanged."""
    for x in (data["x"], data["tokens"]):
        args = [x, data["target"], data["h0"], data["lengths"]]
        before = [a.copy() for a in args]
        model.forward(x, h0=data["h0"], lengths=data["lengths"])
        model.loss_and_grad(x, data["target"], h0=data["h0"], lengths=data["lengths"])
        model.fit(x, data["target"], lengths=data["lengths"], verbose=0, batch_size=2)
        for a, b in zip(args, before):
            assert a.tobytes() == b.tobytes()
