"""Property-based tests (hypothesis): valid configurations against the reference.

Random valid configurations agree with the plain-numpy reference
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

Every run draws the same examples (derandomize=True, no example database), so
CI is reproducible.
"""

import numpy as np
import pytest
from hypothesis import Phase, given, note, settings
from hypothesis import strategies as st

import crnn
from crnn import _engine

import _reference as ref
from _properties import CELLS, TOL, _COMMON, _counted, _engine_state, _panel_width, _settings


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


def _level(c):
    """The per-step products' path: a call of few rows (T·B) gives them to BLAS,
    whatever the kernel level (packing W_h would cost more than it saves)."""
    return "blas" if c["T"] * c["B"] < _engine.pack_min_rows() else c["kernel"]


def _check_counters(ran, c, loops, label):
    """The per-step kernel and the float32 cells ran at the level set, once per loop."""
    kernels = {k: v for k, v in ran.items() if k.startswith("kernel_")}
    assert kernels["kernel_" + _level(c)] == loops, (label, ran)
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
        npan = -(-c["H"] // _panel_width(_level(c), c["dtype"]))
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
            # Tried, always; a loop of a few µs (a call under 8 rows, slower still under a
            # sanitizer) may end before the other thread comes: its parts are then
            # cancelled and run by the caller.
            assert ran["split_tasks"] >= 1, ran
            assert 1 <= ran["units"] <= loops or ran["cancelled"] >= 1, ran
        elif split == "units":      # one panel leaves nothing to split: the loops run whole
            assert ran["units"] == 0 and ran["whole"] == loops, ran
        elif split in ("rows", "pairs"):
            assert 1 <= ran[split] <= want_runs[split] and ran["split_tasks"] >= 1, ran
        # Whatever the split, no loop is counted twice.
        assert ran["whole"] + ran["units"] + ran["rows"] + 2 * ran["pairs"] <= loops, ran
