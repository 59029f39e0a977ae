"""ONNX export (``model.to_onnx``), checked by running the file in onnxruntime
against the model's own forward pass: every class, layers, directions, padding,
token ids, batch-first data and both heads."""

import itertools
import os
import stat
import subprocess
import sys

import numpy as np
import pytest

import crnn

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

# float32: onnxruntime's kernels and crnn's sum in different orders.
TOL = dict(rtol=1e-5, atol=1e-5)
D, H, O, T, B = 5, 7, 4, 9, 6

CELLS = {
    "rnn_tanh": (crnn.RNN, {"nonlinearity": "tanh"}),
    "rnn_relu": (crnn.RNN, {"nonlinearity": "relu"}),
    "lstm": (crnn.LSTM, {}),
    "gru": (crnn.GRU, {}),
}


def make(cell, **options):
    cls, extra = CELLS[cell]
    return cls(D, H, O, seed=1, **extra, **options)


def data(model, *, tokens, lengths, seed=0):
    """``(x, lengths)`` in the model's layout; lengths hold 1 and T, or None."""
    rng = np.random.default_rng(seed)
    shape = (B, T) if model.batch_first else (T, B)
    if tokens:
        x = rng.integers(0, D, shape)
    else:
        x = rng.standard_normal(shape + (D,)).astype(model.dtype)
    lens = None
    if lengths:
        lens = rng.integers(1, T + 1, B)
        lens[0], lens[-1] = T, 1
    return x, lens


def initial_states(model, seed=0, *, zero=False):
    """Random (or zero) initial states in forward's shapes: h0, or the LSTM's (h0, c0)."""
    rng = np.random.default_rng([seed, 7])
    n = model.num_layers * (2 if model.bidirectional else 1)
    shape = (n, B, H) if n > 1 else (B, H)
    states = [np.zeros(shape, model.dtype) if zero else
              rng.standard_normal(shape).astype(model.dtype)
              for _ in range(2 if model._has_c else 1)]
    return tuple(states) if model._has_c else states[0]


def run(path, x, lens, h0=None):
    session = ort.InferenceSession(os.fspath(path), providers=["CPUExecutionProvider"])
    feed = {"x": x}
    if lens is not None:
        feed["lengths"] = lens.astype(np.int64)
    if h0 is not None:
        feed.update(zip(("h0", "c0"), h0 if isinstance(h0, tuple) else (h0,)))
    return session.run(None, feed)


def expected(model, x, lens, h0=None):
    """crnn's outputs, flattened as the graph's: [y, h_n] or [y, h_n, c_n]."""
    y, h_last = model.forward(x, h0, lengths=lens)
    return [y, *h_last] if isinstance(h_last, tuple) else [y, h_last]


def difference(model, path, *, tokens=False, lengths=False, states=False, seed=0):
    """Export, run in onnxruntime, compare; returns the largest absolute difference."""
    model.to_onnx(path, tokens=tokens, lengths=lengths, states=states)
    x, lens = data(model, tokens=tokens, lengths=lengths, seed=seed)
    h0 = initial_states(model, seed) if states else None
    got, want = run(path, x, lens, h0), expected(model, x, lens, h0)
    assert [g.shape for g in got] == [w.shape for w in want]
    assert all(g.dtype == model.dtype for g in got)
    for name, g, w in zip(("y", "h_n", "c_n"), got, want):
        np.testing.assert_allclose(g, w, **TOL, err_msg=name)
    return max(float(np.abs(g - w).max()) for g, w in zip(got, want))


# -- the outputs match forward ---------------------------------------------------------


@pytest.mark.parametrize("tokens", [False, True], ids=["floats", "tokens"])
@pytest.mark.parametrize("lengths", [False, True], ids=["full", "ragged"])
@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize("num_layers", [1, 2])
@pytest.mark.parametrize("cell", list(CELLS))
def test_matches_forward(tmp_path, cell, num_layers, bidirectional, lengths, tokens):
    model = make(cell, num_layers=num_layers, bidirectional=bidirectional)
    difference(model, tmp_path / "m.onnx", tokens=tokens, lengths=lengths)


@pytest.mark.parametrize("lengths", [False, True], ids=["full", "ragged"])
@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize("num_layers", [1, 2])
@pytest.mark.parametrize("cell", list(CELLS))
def test_initial_states_match_forward(tmp_path, cell, num_layers, bidirectional, lengths):
    model = make(cell, num_layers=num_layers, bidirectional=bidirectional)
    difference(model, tmp_path / "m.onnx", lengths=lengths, states=True)
    # Zero states fed in give what the graph without state inputs gives.
    x, lens = data(model, tokens=False, lengths=lengths)
    zero = initial_states(model, zero=True)
    got, want = run(tmp_path / "m.onnx", x, lens, zero), expected(model, x, lens)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, **TOL)


@pytest.mark.parametrize("cell", list(CELLS))
def test_a_stream_in_pieces_is_the_whole_stream(tmp_path, cell):
    """h_n of one call fed as h0 of the next: the pieces give the whole sequence's outputs."""
    model = make(cell, num_layers=2)
    model.to_onnx(tmp_path / "m.onnx", states=True)
    x, _ = data(model, tokens=False, lengths=False)
    want = expected(model, x, None)
    state = initial_states(model, zero=True)
    ys = []
    for t0, t1 in ((0, 1), (1, 5), (5, T)):
        out = run(tmp_path / "m.onnx", x[t0:t1], None, state)
        ys.append(out[0])
        state = tuple(out[1:]) if len(out) > 2 else out[1]
    np.testing.assert_allclose(np.concatenate(ys), want[0], **TOL)
    for g, w in zip(out[1:], want[1:]):
        np.testing.assert_allclose(g, w, **TOL)


@pytest.mark.parametrize("cell", list(CELLS))
def test_three_layers(tmp_path, cell):
    model = make(cell, num_layers=3, bidirectional=True)
    difference(model, tmp_path / "m.onnx", lengths=True)
    difference(model, tmp_path / "m.onnx", tokens=True, lengths=True, seed=1)


@pytest.mark.parametrize("tokens", [False, True], ids=["floats", "tokens"])
@pytest.mark.parametrize("lengths", [False, True], ids=["full", "ragged"])
@pytest.mark.parametrize("cell", list(CELLS))
def test_batch_first(tmp_path, cell, lengths, tokens):
    model = make(cell, num_layers=2, bidirectional=True, batch_first=True)
    difference(model, tmp_path / "m.onnx", tokens=tokens, lengths=lengths)
    proto = onnx.load(tmp_path / "m.onnx")
    dims = [[d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]
            for v in (proto.graph.input[0], proto.graph.output[0])]
    assert dims[0][:2] == ["B", "T"] and dims[1] == ["B", "T", O]


@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize("cell", list(CELLS))
def test_linear_head(tmp_path, cell, bidirectional):
    model = make(cell, num_layers=2, bidirectional=bidirectional, output="linear")
    difference(model, tmp_path / "m.onnx", lengths=True)
    ops = [n.op_type for n in onnx.load(tmp_path / "m.onnx").graph.node]
    assert "Softmax" not in ops


def test_padding_outputs_are_zero(tmp_path):
    model = make("lstm", bidirectional=True)
    model.to_onnx(tmp_path / "m.onnx", lengths=True)
    x, lens = data(model, tokens=False, lengths=True)
    y = run(tmp_path / "m.onnx", x, lens)[0]
    pad = np.arange(T)[:, None] >= lens[None, :]
    assert pad.any() and (y[pad] == 0).all() and (y[~pad] != 0).all()


def test_full_lengths_equal_no_lengths(tmp_path):
    model = make("gru", num_layers=2, bidirectional=True)
    model.to_onnx(tmp_path / "a.onnx")
    model.to_onnx(tmp_path / "b.onnx", lengths=True)
    x, _ = data(model, tokens=False, lengths=False)
    for a, b in zip(run(tmp_path / "a.onnx", x, None),
                    run(tmp_path / "b.onnx", x, np.full(B, T))):
        np.testing.assert_array_equal(a, b)


def test_replaced_params_are_exported(tmp_path):
    model = make("rnn_tanh")
    model.params["W_y"] = np.ones((O, H))          # a new array, not written in place
    difference(model, tmp_path / "m.onnx")


def test_large_weights(tmp_path):
    """Saturating gates and large states: still the same numbers."""
    model = make("lstm", num_layers=2, bidirectional=True)
    for p in model.params.values():
        p *= 4
    difference(model, tmp_path / "m.onnx", lengths=True)


# -- dtypes ------------------------------------------------------------------------------


def test_float64_model_needs_a_dtype(tmp_path):
    model = make("gru", dtype="float64")
    with pytest.raises(ValueError, match="dtype.*float64.*onnxruntime"):
        model.to_onnx(tmp_path / "m.onnx")
    assert not os.listdir(tmp_path)


@pytest.mark.parametrize("cell", list(CELLS))
def test_float64_model_as_float32(tmp_path, cell):
    model = make(cell, num_layers=2, bidirectional=True, dtype="float64")
    model.to_onnx(tmp_path / "m.onnx", lengths=True, states=True, dtype="float32")
    x, lens = data(model, tokens=False, lengths=True)
    h0 = initial_states(model)
    h0_32 = tuple(h.astype(np.float32) for h in h0) if isinstance(h0, tuple) else \
        h0.astype(np.float32)
    got = run(tmp_path / "m.onnx", x.astype(np.float32), lens, h0_32)
    for g, w in zip(got, expected(model, x, lens, h0)):
        assert g.dtype == np.float32
        np.testing.assert_allclose(g, w, **TOL)


@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize("cell", ["rnn_tanh", "lstm", "gru"])
def test_float64_graph(tmp_path, cell, bidirectional):
    """onnxruntime cannot run a float64 graph; onnx's reference evaluator can,
    though it ignores sequence_lens and the RNN's activations (hence no lengths
    and no relu here: those are checked in float32 above)."""
    if tuple(int(p) for p in onnx.__version__.split(".")[:2]) < (1, 23):
        # Older evaluators run one direction only and lose the LSTM's Y_c.
        pytest.skip("needs onnx >= 1.23's reference evaluator")
    from onnx.reference import ReferenceEvaluator
    model = make(cell, num_layers=2, bidirectional=bidirectional, dtype="float64")
    proto = model.to_onnx(tmp_path / "m.onnx", tokens=True, dtype="float64")
    assert proto.graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.DOUBLE
    x, _ = data(model, tokens=True, lengths=False)
    got = ReferenceEvaluator(proto).run(None, {"x": x})
    for g, w in zip(got, expected(model, x, None)):
        assert g.dtype == np.float64
        np.testing.assert_allclose(g, w, rtol=1e-12, atol=1e-12)


# -- the graph ---------------------------------------------------------------------------


@pytest.mark.parametrize("cell", list(CELLS))
def test_graph_uses_the_recurrent_operators(tmp_path, cell):
    model = make(cell, num_layers=3, bidirectional=True)
    proto = model.to_onnx(tmp_path / "m.onnx", tokens=True, lengths=True)
    onnx.checker.check_model(onnx.load(tmp_path / "m.onnx"), full_check=True)
    ops = [n.op_type for n in proto.graph.node]
    op = {"rnn_tanh": "RNN", "rnn_relu": "RNN", "lstm": "LSTM", "gru": "GRU"}[cell]
    assert ops.count(op) == 3
    assert ops.count("MatMul") == 1                 # the head's, nothing else
    assert not {"Loop", "Scan", "If"} & set(ops)
    assert [o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")] == [17]
    for node in proto.graph.node:
        if node.op_type == op:
            attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
            assert attrs["direction"] == b"bidirectional" and attrs["hidden_size"] == H
            assert node.input[4]                   # sequence_lens is wired
            if cell == "gru":
                assert attrs["linear_before_reset"] == 1
            if cell.startswith("rnn"):
                assert attrs["activations"] == [cell[4:].capitalize().encode()] * 2


def test_graph_signature(tmp_path):
    model = make("lstm", num_layers=2)
    proto = model.to_onnx(tmp_path / "m.onnx", lengths=True)

    def sig(values):
        return {v.name: (v.type.tensor_type.elem_type,
                         [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim])
                for v in values}
    F, I = onnx.TensorProto.FLOAT, onnx.TensorProto.INT64
    assert sig(proto.graph.input) == {"x": (F, ["T", "B", D]), "lengths": (I, ["B"])}
    assert sig(proto.graph.output) == {"y": (F, ["T", "B", O]), "h_n": (F, [2, "B", H]),
                                       "c_n": (F, [2, "B", H])}
    assert sig(model.to_onnx(tmp_path / "t.onnx", tokens=True).graph.input) == \
        {"x": (I, ["T", "B"])}
    assert sig(make("gru").to_onnx(tmp_path / "g.onnx").graph.output)["h_n"] == (F, ["B", H])
    assert sig(model.to_onnx(tmp_path / "s.onnx", states=True).graph.input) == \
        {"x": (F, ["T", "B", D]), "h0": (F, [2, "B", H]), "c0": (F, [2, "B", H])}
    assert sig(make("rnn_tanh", batch_first=True).to_onnx(tmp_path / "r.onnx", states=True)
               .graph.input) == {"x": (F, ["B", "T", D]), "h0": (F, ["B", H])}


def test_other_sizes_than_exported(tmp_path):
    """T and B are symbolic: one file serves any batch and length."""
    model = make("gru", bidirectional=True)
    model.to_onnx(tmp_path / "m.onnx", lengths=True)
    session = ort.InferenceSession(os.fspath(tmp_path / "m.onnx"),
                                   providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(3)
    for t, b in [(1, 1), (30, 2), (4, 17)]:
        x = rng.standard_normal((t, b, D)).astype(np.float32)
        lens = rng.integers(1, t + 1, b)
        got = session.run(None, {"x": x, "lengths": lens})
        for g, w in zip(got, expected(model, x, lens)):
            np.testing.assert_allclose(g, w, **TOL)


# -- the file and the arguments --------------------------------------------------------


def test_file_written_atomically(tmp_path):
    path = tmp_path / "m.onnx"
    path.write_bytes(b"old")
    os.chmod(path, 0o640)
    proto = make("rnn_relu").to_onnx(str(path))
    assert path.read_bytes() == proto.SerializeToString()
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o640
    assert os.listdir(tmp_path) == ["m.onnx"]       # no temporary file left


def test_missing_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="path"):
        make("gru").to_onnx(tmp_path / "nowhere" / "m.onnx")


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(path=3), TypeError, "path"),
    (dict(path=b"m.onnx"), TypeError, "path"),
    (dict(tokens="yes"), TypeError, "tokens"),
    (dict(lengths=2), TypeError, "lengths"),
    (dict(states="no"), TypeError, "states"),
    (dict(dtype="float16"), ValueError, "dtype"),
    (dict(path=None), TypeError, "path"),
    (dict(dtype="int64"), ValueError, "dtype"),
])
def test_bad_arguments(tmp_path, kwargs, error, match):
    kwargs = {"path": tmp_path / "m.onnx", **kwargs}
    with pytest.raises(error, match=match):
        make("lstm").to_onnx(**kwargs)
    assert not os.listdir(tmp_path)


def test_needs_a_head(tmp_path):
    stack = crnn.layers.Stack("gru", D, H)
    with pytest.raises(ValueError, match="head"):
        stack._net.to_onnx(tmp_path / "m.onnx")


def test_without_onnx(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnx", None)      # import onnx raises ImportError
    with pytest.raises(ImportError, match="pip install onnx"):
        make("gru").to_onnx(tmp_path / "m.onnx")
    assert not os.listdir(tmp_path)


def test_import_crnn_does_not_import_onnx():
    code = ("import sys, crnn; m = crnn.GRU(3, 4, 2); "
            "print([k for k in ('onnx', 'onnxruntime') if k in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"


# -- the worst difference over every configuration -------------------------------------


def test_worst_difference(tmp_path):
    """Every option together; prints the worst difference (pytest -s)."""
    worst, where, n = 0.0, None, 0
    for cell in CELLS:
        for num_layers in (1, 2, 3):
            for bidirectional in (False, True):
                for batch_first in (False, True):
                    for output in ("softmax", "linear"):
                        model = make(cell, num_layers=num_layers, output=output,
                                     bidirectional=bidirectional, batch_first=batch_first)
                        for tokens, lengths, states in itertools.product((False, True),
                                                                         repeat=3):
                            d = difference(model, tmp_path / "m.onnx", tokens=tokens,
                                           lengths=lengths, states=states, seed=num_layers)
                            n += 1
                            if d > worst:
                                worst, where = d, (cell, num_layers, bidirectional, batch_first,
                                                   output, tokens, lengths, states)
    print(f"\nworst |onnxruntime - forward| over {n} configurations: {worst:.3g} at {where}")
    assert worst < 1e-5
