"""ONNX export: ``model.to_onnx(path)``.

The graph uses ONNX's own ``RNN``, ``LSTM`` and ``GRU`` operators, one node
per layer with both directions in it, so that a runtime runs its fused
recurrent kernels rather than a loop of small products. crnn's cells are
PyTorch's, which differ from ONNX's operators in three places of layout:

- gate order: ONNX's LSTM stacks (i, o, f, c) where crnn stacks
  (i, f, g, o); ONNX's GRU stacks (z, r, h) where crnn stacks (r, z, n);
- biases: ONNX adds two, ``Wb`` and ``Rb``. The RNN and LSTM keep crnn's
  ``b_h`` (the sum of PyTorch's two) in ``Wb`` and zeros in ``Rb``; the GRU
  needs both apart (``Rb`` sits inside the reset product), ``b_x`` and ``b_h``;
- the GRU's reset gate multiplies ``W_hn h + b_hn`` (PyTorch's form), which
  is ONNX's ``linear_before_reset=1``.

Padding (the optional ``lengths`` input) goes to the operators'
``sequence_lens``: the state is carried past each sequence's end and a
reverse direction starts at its own last valid step, as in crnn. The head's
outputs at padding steps are set to 0 in the graph, since ``W_y·0 + b_y`` is
not 0.

onnx is imported only inside :func:`export`.
"""

import os

import numpy as np

from crnn import _checks, _io

# Opset 17 and IR version 8 are read by onnxruntime 1.12 and later (1.16 and 1.32
# tested); a newer pair would shut those out and gains nothing these ops use.
OPSET = 17
IR_VERSION = 8

_OPS = {"rnn": "RNN", "lstm": "LSTM", "gru": "GRU"}
# ONNX's gate blocks, as indices of crnn's blocks: LSTM (i, o, f, c) from
# crnn's (i, f, g, o); GRU (z, r, h) from crnn's (r, z, n).
_GATE_ORDER = {"rnn": (0,), "lstm": (0, 3, 1, 2), "gru": (1, 0, 2)}
_ACTIVATIONS = {"tanh": "Tanh", "relu": "Relu"}

# onnxruntime's kernels for these three operators are float32 only (1.32 still:
# "could not find an implementation" / "does not support double").
_FLOAT64_MESSAGE = (
    "dtype: this model is float64, and onnxruntime has no float64 kernels for the "
    "ONNX RNN, LSTM and GRU operators: pass dtype='float32' to export the weights "
    "rounded to float32 (runs in onnxruntime), or dtype='float64' for a float64 graph "
    "(valid ONNX, for runtimes that implement it)")


def _onnx():
    try:
        import onnx
    except ImportError:
        raise ImportError("ONNX export needs onnx (pip install onnx); running the "
                          "exported file needs a runtime such as onnxruntime "
                          "(pip install onnxruntime)") from None
    return onnx


def _suffix(layer, reverse):
    """crnn's name suffix of a layer and direction ('' for layer 0 forward)."""
    return (f"_l{layer}" if layer else "") + ("_reverse" if reverse else "")


def _reorder(a, order, H):
    """The gate blocks of ``a`` (G·H rows first) put in ONNX's ``order``."""
    return np.concatenate([a[k * H:(k + 1) * H] for k in order], axis=0)


def layer_weights(params, cell, layer, dirs, H, dtype):
    """ONNX's ``W`` (dirs, G·H, D_in), ``R`` (dirs, G·H, H) and ``B`` (dirs, 2·G·H)
    of one layer, from crnn's ``params``, in ``dtype``.

    Parameters
    ----------
    params : dict of ndarray
        The model's parameters (every layer and direction).
    cell : {"rnn", "lstm", "gru"}
    layer : int
        The layer (0 is the one reading the inputs).
    dirs : {1, 2}
        Directions; ONNX stacks them on the leading axis, forward first.
    H : int
        The hidden size.
    dtype : numpy dtype
        float32 or float64.

    Returns
    -------
    W, R, B : ndarray
    """
    order = _GATE_ORDER[cell]
    Ws, Rs, Bs = [], [], []
    for reverse in range(dirs):
        s = _suffix(layer, reverse)
        Ws.append(_reorder(params["W_x" + s], order, H))
        Rs.append(_reorder(params["W_h" + s], order, H))
        b_h = _reorder(params["b_h" + s], order, H)
        if cell == "gru":
            Bs.append(np.concatenate([_reorder(params["b_x" + s], order, H), b_h]))
        else:
            Bs.append(np.concatenate([b_h, np.zeros_like(b_h)]))
    return tuple(np.ascontiguousarray(np.stack(a), dtype=dtype) for a in (Ws, Rs, Bs))


class _Graph:
    """Nodes and initializers of the graph being built, with fresh names."""

    def __init__(self, onnx):
        self.onnx = onnx
        self.nodes = []
        self.initializers = []
        self._count = 0

    def _name(self, stem):
        self._count += 1
        return f"{stem}_{self._count}"

    def const(self, stem, array):
        """An initializer holding ``array``; returns its name."""
        name = self._name(stem)
        self.initializers.append(self.onnx.numpy_helper.from_array(np.asarray(array), name))
        return name

    def op(self, op_type, inputs, *, outputs=1, names=None, **attrs):
        """Append a node; returns its output name, or a list when ``outputs`` > 1.
        ``names`` gives the outputs fixed names (the graph's outputs)."""
        names = names or [self._name(op_type.lower()) for _ in range(outputs)]
        self.nodes.append(self.onnx.helper.make_node(op_type, list(inputs), list(names),
                                                     name=self._name(op_type), **attrs))
        return names[0] if len(names) == 1 else list(names)


def _recurrent_layers(g, net, params, x, seq_lens, dtype, h0=None, c0=None):
    """The layers' nodes on time-major ``x`` (T, B, D), from initial states ``h0``
    (``c0``): the graph's (L·dirs, B, H) inputs, or None for zeros. Returns the top
    layer's outputs (T, B, dirs·H) and the final states, per layer: lists of Y_h
    (and Y_c)."""
    cell, H = net._cell, net.hidden_size
    dirs = 2 if net.bidirectional else 1
    attrs = {"hidden_size": H, "direction": "bidirectional" if dirs == 2 else "forward"}
    if cell == "rnn":
        attrs["activations"] = [_ACTIVATIONS[net.nonlinearity]] * dirs
    elif cell == "gru":
        attrs["linear_before_reset"] = 1
    # Reshape's 0 keeps the input's dimension: (T, B, dirs, H) -> (T, B, dirs·H).
    merge = g.const("merge_directions", np.array([0, 0, -1], dtype=np.int64))
    hs, cs = [], []
    for layer in range(net.num_layers):
        W, R, B = layer_weights(params, cell, layer, dirs, H, dtype)
        inputs = [x, g.const(f"W_l{layer}", W), g.const(f"R_l{layer}", R),
                  g.const(f"B_l{layer}", B)]
        # Optional inputs are positional; "" stands for one left out.
        inputs.append(seq_lens or "")
        for states in (h0, c0):
            if states is not None:
                inputs.append(states if net.num_layers == 1 else
                              _layer_states(g, states, layer, dirs))
        while inputs[-1] == "":
            inputs.pop()
        outs = g.op(_OPS[cell], inputs, outputs=3 if cell == "lstm" else 2, **attrs)
        hs.append(outs[1])
        if cell == "lstm":
            cs.append(outs[2])
        # ONNX's Y is (T, dirs, B, H); the next layer and the head read (T, B, dirs·H),
        # each step's directions side by side as in crnn.
        x = g.op("Reshape", [g.op("Transpose", [outs[0]], perm=[0, 2, 1, 3]), merge])
    return x, hs, cs


def _layer_states(g, states, layer, dirs):
    """Rows [layer·dirs, (layer + 1)·dirs) of (L·dirs, B, H) states: one layer's
    initial_h (or initial_c), (dirs, B, H)."""
    return g.op("Slice", [states, g.const("start", np.array([layer * dirs], dtype=np.int64)),
                          g.const("end", np.array([(layer + 1) * dirs], dtype=np.int64)),
                          g.const("axis0", np.array([0], dtype=np.int64))])


def _padding_mask(g, x, lengths):
    """A bool (T, B, 1) tensor, True where step t < lengths[b] (``x`` is time-major)."""
    T = g.op("Squeeze", [g.op("Shape", [x], start=0, end=1),
                         g.const("axis0", np.array([0], dtype=np.int64))])
    steps = g.op("Range", [g.const("zero", np.array(0, dtype=np.int64)), T,
                           g.const("one", np.array(1, dtype=np.int64))])
    steps = g.op("Unsqueeze", [steps, g.const("axis1", np.array([1], dtype=np.int64))])
    valid = g.op("Less", [steps, lengths])            # (T, 1) < (B,) -> (T, B)
    return g.op("Unsqueeze", [valid, g.const("axis2", np.array([2], dtype=np.int64))])


def _states(g, parts, name, n_states):
    """Layers' final states (dirs, B, H) each, as crnn returns them: (L·dirs, B, H),
    or (B, H) when L·dirs = 1."""
    if n_states == 1:
        return g.op("Squeeze", [parts[0], g.const("axis0", np.array([0], dtype=np.int64))],
                    names=[name])
    if len(parts) == 1:
        return g.op("Identity", parts, names=[name])
    return g.op("Concat", parts, names=[name], axis=0)


def build(net, *, tokens, lengths, dtype, states=False):
    """The ONNX ``ModelProto`` of a crnn model (see :func:`export` for the arguments;
    ``dtype`` here is a numpy float dtype, already chosen)."""
    onnx = _onnx()
    from onnx import TensorProto, helper
    from crnn._version import __version__
    dtype = np.dtype(dtype)
    elem = TensorProto.DOUBLE if dtype == np.float64 else TensorProto.FLOAT
    params = net._unflatten(net._sync())    # every array, the user's replacements taken in
    D, H, O = net.input_size, net.hidden_size, net.output_size
    dirs = 2 if net.bidirectional else 1
    n_states = net.num_layers * dirs
    g = _Graph(onnx)

    user = ["B", "T"] if net.batch_first else ["T", "B"]    # the dims of x and y
    if tokens:
        x_info = helper.make_tensor_value_info("x", TensorProto.INT64, user)
    else:
        x_info = helper.make_tensor_value_info("x", elem, user + [D])
    inputs = [x_info]
    x = "x"
    if net.batch_first:
        x = g.op("Transpose", [x], perm=[1, 0] if tokens else [1, 0, 2])
    if tokens:
        # Token ids are one-hot inputs: OneHot builds the (T, B, D) rows without a
        # D×D table in the file. Ids outside [-D, D) give a row of zeros (ONNX's rule).
        x = g.op("OneHot", [x, g.const("depth", np.array(D, dtype=np.int64)),
                            g.const("off_on", np.array([0, 1], dtype=dtype))], axis=-1)
    seq_lens = None
    if lengths:
        inputs.append(helper.make_tensor_value_info("lengths", TensorProto.INT64, ["B"]))
        # int64 outside (numpy's default integer), int32 for the operators.
        seq_lens = g.op("Cast", ["lengths"], to=TensorProto.INT32)
    state_shape = [n_states, "B", H] if n_states > 1 else ["B", H]
    initial: list[str | None] = [None, None]   # h0, c0 as the operators take them
    if states:
        for i, name in enumerate(["h0", "c0"] if net._has_c else ["h0"]):
            inputs.append(helper.make_tensor_value_info(name, elem, state_shape))
            # crnn's states are (B, H) when L·dirs = 1: the operators take (1, B, H)
            initial[i] = name if n_states > 1 else g.op(
                "Unsqueeze", [name, g.const("axis0", np.array([0], dtype=np.int64))])
    h0, c0 = initial

    top, hs, cs = _recurrent_layers(g, net, params, x, seq_lens, dtype, h0, c0)

    W_y = g.const("W_y_T", np.ascontiguousarray(params["W_y"].T, dtype=dtype))
    z = g.op("Add", [g.op("MatMul", [top, W_y]),
                     g.const("b_y", np.asarray(params["b_y"], dtype=dtype))])
    if net.output == "softmax":
        z = g.op("Softmax", [z], axis=-1)
    if lengths:
        # Where, not a product with a 0/1 mask: 0 at padding even if z is not finite.
        zero = g.const("zero_y", np.array(0, dtype=dtype))
        z = g.op("Where", [_padding_mask(g, x, "lengths"), z, zero])
    if net.batch_first:
        g.op("Transpose", [z], perm=[1, 0, 2], names=["y"])
    else:
        g.op("Identity", [z], names=["y"])

    outputs = [helper.make_tensor_value_info("y", elem, user + [O])]
    _states(g, hs, "h_n", n_states)
    outputs.append(helper.make_tensor_value_info("h_n", elem, state_shape))
    if cs:
        _states(g, cs, "c_n", n_states)
        outputs.append(helper.make_tensor_value_info("c_n", elem, state_shape))

    graph = helper.make_graph(g.nodes, f"crnn_{type(net).__name__}", inputs, outputs,
                              g.initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              ir_version=IR_VERSION, producer_name="crnn",
                              producer_version=__version__, doc_string=repr(net))
    # One ONNX file is one protobuf message, which cannot pass 2 GiB; weights that
    # large would need ONNX's external-data files, which this export does not write.
    if model.ByteSize() >= 2**31:
        raise ValueError(f"to_onnx: the model takes {model.ByteSize()} bytes, over the "
                         f"2 GiB limit of one ONNX file")
    onnx.checker.check_model(model, full_check=True)
    return model


def _check_args(net, path, tokens, lengths, states, dtype):
    if getattr(net, "output", None) not in ("softmax", "linear"):
        raise ValueError("to_onnx: needs a model with a head (crnn.RNN, LSTM or GRU)")
    if isinstance(path, (bytes, bytearray)) or not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path: expected a str or os.PathLike, got {type(path).__name__}")
    tokens = _checks.boolean(tokens, "tokens")
    lengths = _checks.boolean(lengths, "lengths")
    states = _checks.boolean(states, "states")
    if dtype is None:
        if net.dtype == np.float64:
            raise ValueError(_FLOAT64_MESSAGE)
        dtype = net.dtype
    else:
        dtype = _checks.float_dtype(dtype)
    path = os.fspath(path)
    if not isinstance(path, str):
        raise TypeError(f"path: expected a str or os.PathLike of str, got {type(path).__name__}")
    return path, tokens, lengths, states, dtype


def export(net, path, *, tokens=False, lengths=False, states=False, dtype=None):
    """Write ``net`` as an ONNX model to ``path``; see ``_Network.to_onnx``.

    Parameters
    ----------
    net : crnn.RNN, crnn.LSTM or crnn.GRU
    path : str or os.PathLike
    tokens : bool, default False
        Input ``x`` is int64 token ids (T, B) instead of floats (T, B, D).
    lengths : bool, default False
        Add the int64 input ``lengths`` (B,).
    states : bool, default False
        Add the inputs ``h0`` (and ``c0`` for an LSTM): the initial states,
        shaped as the outputs ``h_n`` (``c_n``), in the graph's dtype.
    dtype : {None, "float32", "float64"}, default None
        The graph's float type; None is the model's (refused for float64
        models, which onnxruntime cannot run: say which one you want).

    Returns
    -------
    onnx.ModelProto
        The model written (checked by ``onnx.checker.check_model``).
    """
    user_path, tokens, lengths, states, dtype = _check_args(net, path, tokens, lengths,
                                                            states, dtype)
    model = build(net, tokens=tokens, lengths=lengths, dtype=dtype, states=states)
    data = model.SerializeToString()
    _io.write_atomic(user_path, lambda f: f.write(data))
    return model
