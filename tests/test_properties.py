"""Property-based tests (hypothesis) of crnn's networks.

1. Random valid configurations agree with the plain-numpy reference
   (tests/_reference.py): every cell (rnn tanh/relu, lstm, gru), 1-3 layers,
   one or two directions, the softmax or linear head, float64 (rtol 1e-10)
   and float32, token ids or floats, targets per step or per sequence,
   ragged lengths, h0 given or not, reduction mean or sum. forward's outputs
   and final states, and the loss, every gradient and the final states of
   loss_and_grad, are checked, on one thread and on two (every split of the
   time loop, every per-step kernel level, every float32 cell level), and
   the engine's counters must show that the intended path ran.

   The sizes straddle every cut-over of crnn's kernels, each in its own
   group (``FOCI``) so that every group is drawn on every run:

   * rows: the per-step kernel's register block of MR = 4 rows and its
     MC = 64-row blocks (src/crnn/_recurrent.h); the row split cuts at
     multiples of 4 rows, and only splits from B >= 8·threads on its own
     (src/crnn/_loops.pxi); the all-steps products are cut into chunks of
     at least 16 rows (src/crnn/_products.pxi) -> B in 1, 3-5, 7-9, 15-17,
     31-33, 63-65;
   * units: the panel widths NR of the packed W_h, by level and dtype
     (float32/float64: sse2 8/4, avx2 16/8, avx512 64/32; the BLAS path
     splits units by 16), and the float32 cells' vectors of 4, 8 and 16
     -> H in 3-5, 7-9, 15-17, 31-33, 63-65;
   * depth: the kernel's KC = 256-deep passes; the forward step's depth is
     H and the backward step's is G·H -> RNN H in 255-257, LSTM H in 63-65
     (G·H = 252, 256, 260) and GRU H in 85-86 (G·H = 255, 258), and the
     gated cells with H in 255-257 too (small elsewhere);
   * inputs and outputs: D and O in 63-65 and 255-257 (the input
     projections and the token gather; the head and the softmax passes);
   * products: B, H and D together at 31-33 / 63-65, enough work for the
     all-steps products to be cut into chunks over two threads
     (_PART_FLOPS = 2e6) and for the time loops to split on their own.

   Large sizes come with small other dimensions, so the reference stays fast.

2. Random malformed inputs -- wrong shapes, ranks and dtypes of x, target,
   h0 (and LSTM pairs) and lengths; out-of-range token and class ids; NaN
   and infinity where training refuses them; bad keyword values of
   loss_and_grad, fit, generate and step -- raise ValueError or TypeError
   naming the argument (the README's promise), and leave every params
   array bitwise unchanged (NaN positions included: in half the examples a
   NaN is planted in the params first). A fit that fails part-way (a
   callback raising after some updates, a non-finite loss) leaves params,
   and a given optimizer's state, as they were.

test_lstm_c0_alone_with_one_state and test_step_names_x_t hold what these
tests found: h0 = (None, c0) for a one-state LSTM, and step's own messages.

Every run draws the same examples (derandomize=True, no example database), so
CI is reproducible.
"""

import contextlib

import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, assume, given, note, settings
from hypothesis import strategies as st

import crnn
from crnn import _engine

import _reference as ref

BAD = (ValueError, TypeError)

# The same examples on every run, no example database, and no deadline (the time
# of an example depends on the machine; the counts below keep the file fast).
_COMMON = dict(deadline=None, derandomize=True, database=None, print_blob=False,
               suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                      HealthCheck.filter_too_much])


def _settings(n):
    return settings(max_examples=n, **_COMMON)


# name -> (class, the reference's cell, nonlinearity, gates G)
CELLS = {
    "rnn_tanh": (crnn.RNN, "rnn", "tanh", 1),
    "rnn_relu": (crnn.RNN, "rnn", "relu", 1),
    "lstm": (crnn.LSTM, "lstm", "tanh", 4),
    "gru": (crnn.GRU, "gru", "tanh", 3),
}

# (rtol, atol); atol is scaled by the largest magnitude of the array compared.
TOL = {"float64": (1e-10, 1e-12), "float32": (3e-4, 3e-5)}


def _panel_width(kernel, dtype):
    """Columns of W_h per packed panel (_recurrent.h: NR = W·NV); the BLAS path
    splits units by 16 columns (_loops.pxi)."""
    if kernel == "blas":
        return 16
    width = {"sse2": 8, "avx2": 16, "avx512": 64}[kernel]
    return width if dtype == "float32" else width // 2


@contextlib.contextmanager
def _engine_state():
    """Restore crnn's thread count and every engine switch afterwards."""
    threads, kernel, level = crnn.get_num_threads(), _engine.kernel(), _engine.cell_level()
    try:
        yield
    finally:
        crnn.set_num_threads(threads)
        _engine.force_split(None)
        _engine.test_stall(0)
        _engine.set_kernel(kernel)
        _engine.set_cell_level(level)
        _engine.calm()


def _counted(fn, until):
    """fn()'s result and how the engine's counters moved while it ran.

    A machine event (a worker slow to wake, a core taken by another process)
    may rightly hand a loop to one thread: run again, up to 5 times, each
    time forgetting contention, until a run sees no stall and ``until(ran)``.
    """
    for _ in range(5):
        _engine.calm()
        before = _engine.counters()
        out = fn()
        after = _engine.counters()
        ran = {k: after[k] - before[k] for k in after}
        if ran["stalls"] == 0 and until(ran):
            break
    return out, ran


# --- 1. valid configurations against the reference -------------------------------------------

ROWS = [1, 3, 4, 5, 7, 8, 9, 15, 16, 17, 31, 32, 33, 63, 64, 65]
UNITS = [3, 4, 5, 7, 8, 9, 15, 16, 17, 31, 32, 33, 63, 64, 65]
DEPTH = {"rnn": [255, 256, 257], "lstm": [63, 64, 65, 255, 256, 257],
         "gru": [85, 86, 255, 256, 257]}
WIDE = [63, 64, 65, 255, 256, 257]
BIG = [31, 32, 33, 63, 64, 65]
FOCI = ["small", "rows", "units", "depth", "inputs", "outputs", "products"]


@st.composite
def _sizes(draw, focus, cell):
    """(T, B, D, H, O, num_layers, bidirectional) for one size group."""
    small = st.integers(1, 6)
    bi = draw(st.booleans())
    if focus == "small":
        return (draw(st.integers(1, 5)), draw(small), draw(small), draw(small),
                draw(st.integers(1, 5)), draw(st.integers(1, 3)), bi)
    if focus == "rows":
        return (draw(st.integers(1, 4)), draw(st.sampled_from(ROWS)), draw(st.integers(1, 5)),
                draw(st.integers(1, 9)), draw(st.integers(1, 4)), draw(st.integers(1, 2)), bi)
    if focus == "units":
        H = draw(st.sampled_from(UNITS))
        return (draw(st.integers(1, 3)), draw(st.integers(1, 5)), draw(st.integers(1, 5)), H,
                draw(st.integers(1, 4)), draw(st.integers(1, 2 if H < 63 else 1)), bi)
    if focus == "depth":
        H = draw(st.sampled_from(DEPTH[cell]))
        B = draw(st.integers(1, 5 if H < 200 or cell == "rnn" else 3))
        return (draw(st.integers(1, 2)), B, draw(st.integers(1, 4)), H,
                draw(st.integers(1, 3)), 1, bi and H < 200)
    if focus == "inputs":
        return (draw(st.integers(1, 3)), draw(st.integers(1, 5)), draw(st.sampled_from(WIDE)),
                draw(st.integers(1, 9)), draw(st.integers(1, 4)), draw(st.integers(1, 2)), bi)
    if focus == "outputs":
        return (draw(st.integers(1, 3)), draw(st.integers(1, 5)), draw(st.integers(1, 5)),
                draw(st.integers(1, 9)), draw(st.sampled_from(WIDE)), draw(st.integers(1, 2)),
                bi)
    assert focus == "products"
    return (draw(st.integers(2, 4)), draw(st.sampled_from(BIG)), draw(st.sampled_from(BIG)),
            draw(st.sampled_from(BIG)), draw(st.integers(2, 9)), 1, False)


@st.composite
def _configs(draw, focus, *, cell=None, one_state=False, h0=None):
    c = {"cell": cell or draw(st.sampled_from(list(CELLS)))}
    _, c["ref_cell"], c["nonlinearity"], c["G"] = CELLS[c["cell"]]
    (c["T"], c["B"], c["D"], c["H"], c["O"], c["num_layers"],
     c["bidirectional"]) = draw(_sizes(focus, c["ref_cell"]))
    if one_state:
        c["num_layers"], c["bidirectional"] = 1, False
    n_states = c["num_layers"] * (2 if c["bidirectional"] else 1)
    c["output"] = draw(st.sampled_from(["softmax", "linear"]))
    c["dtype"] = draw(st.sampled_from(["float64", "float32"]))
    c["tokens"] = draw(st.booleans())
    c["token_dtype"] = draw(st.sampled_from(["int64", "int32", "uint16"]))
    c["per_step"] = draw(st.booleans())
    c["lengths"] = draw(st.sampled_from(["none", "ragged", "short", "full"]))
    states = ["none", "h"] + (["pair"] if c["cell"] == "lstm" else [])
    if c["cell"] == "lstm" and n_states > 1:
        # h0 = (None, c0) with a single state: test_lstm_c0_alone_with_one_state
        states.append("c_only")
    c["h0"] = h0 or draw(st.sampled_from(states))
    c["reduction"] = draw(st.sampled_from(["mean", "sum"]))
    c["param_scale"] = draw(st.sampled_from([1.0, 0.5, 2.0]))
    c["x_scale"] = draw(st.sampled_from([1.0, 0.3, 3.0]))
    c["seed"] = draw(st.integers(0, 2**32 - 1))
    # the two-thread run: the time loop's split, the per-step kernel, the float32 cells
    splits = ["auto", "whole", "units", "rows"] + (["pairs"] if c["bidirectional"] else [])
    c["split"] = draw(st.sampled_from(splits))
    c["kernel"] = draw(st.sampled_from(_engine.kernels()))
    c["cell_level"] = draw(st.sampled_from(_engine.cell_levels()))
    return c


def _make(c):
    """The model (params redrawn from the seed) and the call's inputs."""
    rng = np.random.default_rng(c["seed"])
    klass = CELLS[c["cell"]][0]
    kw = {"nonlinearity": c["nonlinearity"]} if klass is crnn.RNN else {}
    model = klass(c["D"], c["H"], c["O"], num_layers=c["num_layers"],
                  bidirectional=c["bidirectional"], output=c["output"], dtype=c["dtype"],
                  seed=int(rng.integers(2**31)), **kw)
    s = c["param_scale"] / np.sqrt(c["H"])
    for p in model.params.values():
        p[...] = rng.uniform(-s, s, p.shape)
    T, B, D, H, O, dt = c["T"], c["B"], c["D"], c["H"], c["O"], np.dtype(c["dtype"])
    if c["tokens"]:
        x = rng.integers(0, D, (T, B)).astype(c["token_dtype"])
    else:
        x = (c["x_scale"] * rng.standard_normal((T, B, D))).astype(dt)
    shape = (T, B) if c["per_step"] else (B,)
    if c["output"] == "softmax":
        target = rng.integers(0, O, shape)
    else:
        target = rng.standard_normal(shape + (O,)).astype(dt)
    lengths = None
    if c["lengths"] == "full":
        lengths = np.full(B, T)
    elif c["lengths"] == "ragged":
        lengths = rng.integers(1, T + 1, B)
        if B >= 2 and T >= 2:       # surely ragged and unsorted: a length-1 and a full one
            i, j = rng.choice(B, 2, replace=False)
            lengths[i], lengths[j] = 1, T
    elif c["lengths"] == "short":   # every sequence ends before T (when T > 1)
        lengths = rng.integers(1, max(T - 1, 1) + 1, B)
    n = c["num_layers"] * (2 if c["bidirectional"] else 1)
    sshape = (B, H) if n == 1 else (n, B, H)
    h = (0.5 * rng.standard_normal(sshape)).astype(dt)
    cc = (0.5 * rng.standard_normal(sshape)).astype(dt)
    h0 = {"none": None, "h": h, "pair": (h, cc), "c_only": (None, cc)}[c["h0"]]
    return model, {"x": x, "target": target, "lengths": lengths, "h0": h0}


def _crnn(model, case, reduction):
    kw = {"h0": case["h0"], "lengths": case["lengths"]}
    y, h_fwd = model.forward(case["x"], **kw)
    loss, grads, h_loss = model.loss_and_grad(case["x"], case["target"], reduction=reduction,
                                              **kw)
    return y, h_fwd, loss, grads, h_loss


def _reference(model, c, case):
    kw = dict(h0=case["h0"], lengths=case["lengths"], nonlinearity=c["nonlinearity"],
              output=c["output"], cell=c["ref_cell"], num_layers=c["num_layers"],
              bidirectional=c["bidirectional"])
    y, h = ref.forward(model.params, case["x"], **kw)
    loss, grads, h_loss = ref.loss_and_grad(model.params, case["x"], case["target"],
                                            reduction=c["reduction"], **kw)
    return y, h, loss, grads, h_loss


def _close(got, want, dtype, what):
    got = np.asarray(got)
    want = np.asarray(want, dtype=np.float64)
    assert got.shape == want.shape, (what, got.shape, want.shape)
    rtol, atol = TOL[dtype]
    scale = max(1.0, float(np.max(np.abs(want)))) if want.size else 1.0
    np.testing.assert_allclose(got.astype(np.float64), want, rtol=rtol, atol=atol * scale,
                               err_msg=what)


def _states_close(got, want, c, what):
    if c["cell"] == "lstm":
        assert isinstance(got, tuple) and len(got) == 2, what
        for k in range(2):
            assert got[k].dtype == np.dtype(c["dtype"]), what
            _close(got[k], want[k], c["dtype"], f"{what}[{k}]")
    else:
        assert isinstance(got, np.ndarray) and got.dtype == np.dtype(c["dtype"]), what
        _close(got, want, c["dtype"], what)


def _check_against_reference(got, want, model, c, case, label):
    y, h_fwd, loss, grads, h_loss = got
    y_ref, h_ref, loss_ref, grads_ref, h_loss_ref = want
    dt = np.dtype(c["dtype"])
    assert y.dtype == dt and y.shape == (c["T"], c["B"], c["O"])
    _close(y, y_ref, c["dtype"], f"{label}: y")
    if case["lengths"] is not None:     # exactly 0 on padding
        pad = np.arange(c["T"])[:, None] >= np.asarray(case["lengths"])[None, :]
        assert np.all(y[pad] == 0), f"{label}: y on padding"
    _states_close(h_fwd, h_ref, c, f"{label}: forward h_last")
    assert type(loss) is float
    _close(loss, loss_ref, c["dtype"], f"{label}: loss")
    assert set(grads) == set(model.params)
    for k, g in grads.items():
        assert g.dtype == dt and g.shape == model.params[k].shape, k
        _close(g, grads_ref[k], c["dtype"], f"{label}: grad {k}")
    _states_close(h_loss, h_loss_ref, c, f"{label}: loss_and_grad h_last")


def _check_counters(ran, c, loops, label):
    """The per-step kernel and the float32 cells ran at the level set, once per loop."""
    kernels = {k: v for k, v in ran.items() if k.startswith("kernel_")}
    assert kernels["kernel_" + c["kernel"]] == loops, (label, ran)
    assert sum(kernels.values()) == loops, (label, ran)
    cells = {k: v for k, v in ran.items() if k.startswith("cells_")}
    if c["dtype"] == "float32":
        assert cells["cells_" + c["cell_level"]] == loops, (label, ran)
    assert sum(cells.values()) == (loops if c["dtype"] == "float32" else 0), (label, ran)


def _two_threads_possible():
    return (_engine.max_threads() >= 2 and crnn.get_num_threads() >= 2
            and _engine.blas_threads() != 1)


@pytest.mark.parametrize("focus", FOCI)
@_settings(40)
@given(data=st.data())
def test_matches_reference(focus, data):
    """forward and loss_and_grad equal the reference on one thread and on two, for
    every split, kernel level and cell level; the intended path ran."""
    _check_config(data.draw(_configs(focus), label="config"))


@settings(max_examples=5, phases=[Phase.generate], **_COMMON)     # no shrinking
@given(data=st.data())
def test_lstm_c0_alone_with_one_state(data):
    """h0 = (None, c0) means h0 = 0 (as with several layers or directions)."""
    _check_config(data.draw(_configs("small", cell="lstm", one_state=True, h0="c_only"),
                            label="config"))


def _check_config(c):
    model, case = _make(c)
    want = _reference(model, c, case)
    dirs = 2 if c["bidirectional"] else 1
    # forward: a loop per layer and direction; loss_and_grad: a forward and a backward one
    loops = 3 * c["num_layers"] * dirs
    with _engine_state():
        _engine.set_kernel(c["kernel"])
        _engine.set_cell_level(c["cell_level"])

        crnn.set_num_threads(1)
        got, ran = _counted(lambda: _crnn(model, case, c["reduction"]), lambda r: True)
        note(f"one thread: {ran}")
        _check_against_reference(got, want, model, c, case, "1 thread")
        _check_counters(ran, c, loops, "1 thread")
        assert ran["whole"] == loops and ran["split_tasks"] == 0, ran
        assert ran["units"] == ran["rows"] == ran["pairs"] == 0, ran

        crnn.set_num_threads(2)
        split = c["split"]
        _engine.force_split(None if split == "auto" else split)
        npan = -(-c["H"] // _panel_width(c["kernel"], c["dtype"]))
        want_runs = {"whole": loops, "units": loops, "rows": loops, "pairs": loops // 2}
        until = (lambda r: True) if split == "auto" else (
            lambda r: r[split] == want_runs[split])
        got, ran = _counted(lambda: _crnn(model, case, c["reduction"]), until)
        note(f"two threads, split {split}, {npan} panel(s): {ran}")
        _check_against_reference(got, want, model, c, case, f"2 threads, {split}")
        _check_counters(ran, c, loops, "2 threads")
        if not _two_threads_possible():
            return
        if split == "whole":
            assert ran["whole"] == loops, ran
            assert ran["units"] == ran["rows"] == ran["pairs"] == 0, ran
        elif split == "units" and npan >= 2:
            assert 1 <= ran["units"] <= loops and ran["split_tasks"] >= 1, ran
        elif split == "units":      # one panel leaves nothing to split: the loops run whole
            assert ran["units"] == 0 and ran["whole"] == loops, ran
        elif split in ("rows", "pairs"):
            assert 1 <= ran[split] <= want_runs[split] and ran["split_tasks"] >= 1, ran
        # Whatever the split, no loop is counted twice.
        assert ran["whole"] + ran["units"] + ran["rows"] + 2 * ran["pairs"] <= loops, ran


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
