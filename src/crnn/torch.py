"""Drop-in replacements for ``torch.nn.RNN``, ``LSTM`` and ``GRU`` that run in crnn.

::

    import crnn.torch
    rnn = crnn.torch.LSTM(32, 64, num_layers=2, batch_first=True)   # was torch.nn.LSTM
    out, (h_n, c_n) = rnn(x)                                         # x: (B, T, 32)
    loss = loss_fn(head(out), y); loss.backward(); opt.step()

The modules are subclasses of PyTorch's own: the same constructor arguments,
parameters, ``state_dict`` keys, inputs (tensors, unbatched tensors,
``PackedSequence``) and outputs, so models, optimizers and checkpoints are
unchanged. Their forward pass and backpropagation through time run in crnn's
compiled layers (:class:`crnn.layers.Stack`) through a
``torch.autograd.Function``; gradients reach the input, h0 (and c0) and every
parameter.

Limits, each refused with a clear error: CPU tensors of float32 or float64
(input, states and parameters of one dtype); no ``proj_size``; no double
backward. Dropout between layers is applied in training mode as PyTorch's,
with masks drawn from crnn's generator seeded from PyTorch's (so
``torch.manual_seed`` makes runs reproducible, though the masks differ from
``torch.nn.LSTM``'s).

torch is needed by this module alone: ``import crnn`` never imports it.
"""

try:
    import torch
except ImportError:
    raise ImportError("crnn.torch needs PyTorch (pip install torch)") from None

from typing import Any

import numpy as np

from crnn import layers

__all__ = ["RNN", "LSTM", "GRU"]

_rnn_utils = torch.nn.utils.rnn
_DTYPES = {torch.float32: "float32", torch.float64: "float64"}


def _suffix(name):
    """crnn's suffix of a PyTorch weight name: 'weight_ih_l1_reverse' -> '_l1_reverse'."""
    layer, _, reverse = name.split("_l", 1)[1].partition("_")
    return (f"_l{layer}" if layer != "0" else "") + ("_reverse" if reverse else "")


class _Layers:
    """One module's crnn layers for one dtype, and how PyTorch's weights map onto them.

    crnn keeps one bias b_h = b_ih + b_hh for the RNN and LSTM (the GRU keeps
    both, b_x and b_h), so the weights are copied in before each forward pass:
    a copy of the parameters, small beside the pass itself.
    """

    def __init__(self, module, dtype):
        kind = module._crnn_cell
        options = dict(num_layers=module.num_layers, bidirectional=module.bidirectional,
                       dropout=float(module.dropout), dtype=dtype)
        if kind == "rnn":
            options["nonlinearity"] = module.nonlinearity
        self.stack = layers.Stack(kind, module.input_size, module.hidden_size, **options)
        self.params = self.stack.params
        for name, value in self.params.items():
            if name.startswith("b_"):
                value[...] = 0      # bias=False: the biases stay zero
        # (torch name, crnn name) for every weight of the module, in its order.
        self.names = []
        for name in module._flat_weights_names:
            kind_of, c = name.split("_l", 1)[0], _suffix(name)
            crnn_name = {"weight_ih": "W_x", "weight_hh": "W_h", "bias_hh": "b_h",
                         "bias_ih": "b_x" if kind == "gru" else "b_h"}[kind_of]
            self.names.append((name, crnn_name + c))
        self.synced = None      # a token for the weights the layers hold

    def sync(self, weights):
        """Copy PyTorch's weights (tensors in the module's order) into the layers; returns
        a token for them. Copied every call: a change through ``.data`` leaves no trace
        (no version bump) to skip the copy by."""
        seen = set()
        for (_, name), w in zip(self.names, weights):
            w = w.detach().numpy()
            if name in seen:        # bias_hh after bias_ih: crnn's b_h is their sum
                self.params[name] += w
            else:
                self.params[name][...] = w
                seen.add(name)
        self.synced = object()
        return self.synced


class _Call:
    """What one forward pass needs beside tensors (autograd.Function takes it as is)."""

    __slots__ = ("layers", "lengths", "training", "seed", "n", "pair")
    layers: _Layers
    lengths: "np.ndarray | None"
    training: bool
    seed: "int | None"
    n: int
    pair: bool


class _Function(torch.autograd.Function):
    """crnn's forward pass and BPTT as one autograd node:
    (call, x, h0, c0, *weights) -> (out, h_n[, c_n])."""

    @staticmethod
    def forward(ctx, call, x, h0, c0, *weights):
        token = call.layers.sync(weights)
        out, h_n, tape = _run(call, x, h0, c0)
        ctx.call, ctx.tape, ctx.token = call, tape, token
        ctx.save_for_backward(x, h0, c0, *weights)
        ctx.set_materialize_grads(False)    # an unused output's gradient is None: no work
        return (torch.from_numpy(out),) + tuple(torch.from_numpy(_full(s, call.n)) for s in h_n)

    @staticmethod
    def backward(ctx, d_out, d_hn, d_cn=None):
        if torch.is_grad_enabled():
            # create_graph=True: gradients that are not differentiable would give silently
            # wrong second derivatives.
            raise RuntimeError("crnn.torch: no double backward (create_graph=True): crnn "
                               "computes first derivatives only")
        call = ctx.call
        x, h0, c0, *weights = ctx.saved_tensors
        tape, ctx.tape = ctx.tape, None
        if tape is None or call.layers.synced is not ctx.token:
            # A second backward through the same graph (retain_graph, gradcheck), or the
            # layers now hold another call's weights: recompute this call's tape, with its
            # own weights and dropout seed.
            ctx.token = call.layers.sync(weights)
            tape = _run(call, x, h0, c0)[2]
        d_states = (_lean(d_hn, call.n), _lean(d_cn, call.n)) if call.pair else \
            _lean(d_hn, call.n)
        grads, dx, dh0 = call.layers.stack.backward(
            tape, None if d_out is None else d_out.numpy(), d_states,
            input_grad=ctx.needs_input_grad[1])
        dh0, dc0 = dh0 if call.pair else (dh0, None)
        d_weights, given = [], set()
        for (_, name), need in zip(call.layers.names, ctx.needs_input_grad[4:]):
            g = torch.from_numpy(grads[name]) if need else None
            if g is not None and name in given:
                g = g.clone()   # two parameters' .grad must never share memory
            given.add(name)
            d_weights.append(g)
        return (None, None if dx is None else torch.from_numpy(dx),
                _grad_of(h0, dh0, ctx.needs_input_grad[2], call.n),
                _grad_of(c0, dc0, ctx.needs_input_grad[3], call.n), *d_weights)


def _run(call, x, h0, c0):
    """Stack.forward on tensors' memory: (out, final states as a tuple, tape)."""
    states = None
    if h0 is not None:
        h = _lean(h0, call.n)
        states = (h, _lean(c0, call.n)) if call.pair else h
    out, h_n, tape = call.layers.stack.forward(x.detach().numpy(), states, call.lengths,
                                               training=call.training, seed=call.seed)
    return out, h_n if call.pair else (h_n,), tape


def _lean(state, n):
    """A (n, B, H) state tensor as the numpy array crnn takes ((B, H) when n = 1)."""
    if state is None:
        return None
    arr = state.detach().numpy()
    return arr[0] if n == 1 else arr


def _full(state, n):
    """crnn's state array as PyTorch's (n, B, H)."""
    return state.reshape((1,) + state.shape) if n == 1 else state


def _grad_of(state, grad, need, n):
    return torch.from_numpy(_full(grad, n)) if need and state is not None else None


class _Module(torch.nn.RNNBase):
    """The forward pass shared by the three modules (the first base of each, before
    PyTorch's own class)."""

    _crnn_cell = ""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)       # PyTorch's module: its arguments, its checks
        if getattr(self, "proj_size", 0):
            raise ValueError(f"proj_size: crnn's LSTM has no projection, got "
                             f"proj_size={self.proj_size}")
        self._crnn_layers = {}

    def forward(self, input, hx=None):
        return self._crnn_forward(input, hx)

    def __getstate__(self):
        # The compiled layers are a cache, rebuilt on first use: never pickled or copied.
        state = super().__getstate__()
        state["_crnn_layers"] = {}
        return state

    def _crnn_forward(self, input, hx):
        weights = [getattr(self, name) for name in self._flat_weights_names]
        packed = isinstance(input, _rnn_utils.PackedSequence)
        lengths = None
        if packed:
            x, lens = _rnn_utils.pad_packed_sequence(input)
            lengths = lens.numpy()
            batched = True
        else:
            x = _tensor(input, "input")
            if x.dim() not in (2, 3):
                raise ValueError(f"input: expected a 3-D (batched) or 2-D (unbatched) tensor, "
                                 f"got {x.dim()}-D of shape {tuple(x.shape)}")
            batched = x.dim() == 3
            x = x.transpose(0, 1) if batched and self.batch_first else \
                x if batched else x.unsqueeze(1)
        dtype = _dtype_of(x, weights)
        T, B, D = x.shape
        if D != self.input_size:
            raise ValueError(f"input: expected {self.input_size} features (input_size), got "
                             f"{D} in a tensor of shape {tuple(input.data.shape if packed else input.shape)}")
        n = self.num_layers * (2 if self.bidirectional else 1)
        pair = self._crnn_cell == "lstm"
        h0, c0 = self._states(hx, pair, n, B, batched, x.dtype)
        layers_ = self._crnn_layers.get(dtype)
        if layers_ is None:
            layers_ = self._crnn_layers[dtype] = _Layers(self, dtype)
        call = _Call()
        call.layers, call.lengths, call.n, call.pair = layers_, lengths, n, pair
        call.training = bool(self.training and self.dropout and self.num_layers > 1)
        # Drawn from PyTorch's generator, so torch.manual_seed makes dropout reproducible.
        call.seed = int(torch.randint(0, 2 ** 62, (), dtype=torch.int64)) if call.training \
            else None
        out, *states = _Function.apply(call, x, h0, c0, *weights)
        if packed:
            output = _repack(out, input, lengths)
        elif not batched:
            output = out.squeeze(1)
            states = [s.squeeze(1) for s in states]
        else:
            output = out.transpose(0, 1) if self.batch_first else out
        return output, (tuple(states) if pair else states[0])

    def _states(self, hx, pair, n, B, batched, dtype):
        """(h0, c0) as (n, B, H) tensors (None: zeros), checked as PyTorch checks them."""
        if hx is None:
            return None, None
        if pair:
            if not isinstance(hx, (tuple, list)) or len(hx) != 2:
                raise TypeError(f"hx: expected a pair (h_0, c_0) of tensors for the LSTM, got "
                                f"{type(hx).__name__}")
            named: tuple[tuple[str, Any], ...] = (("hx[0]", hx[0]), ("hx[1]", hx[1]))
        else:
            named = (("hx", hx),)
        want = (n, B, self.hidden_size) if batched else (n, self.hidden_size)
        out = []
        for name, s in named:
            s = _tensor(s, name)
            if tuple(s.shape) != want:
                raise ValueError(f"{name}: expected shape {want} (num_layers·directions, "
                                 f"{'batch, ' if batched else ''}hidden_size), got "
                                 f"{tuple(s.shape)}")
            if s.dtype != dtype:
                raise TypeError(f"{name}: expected {dtype} like the input, got {s.dtype}")
            out.append(s if batched else s.unsqueeze(1))
        return (out[0], out[1]) if pair else (out[0], None)


def _tensor(value, name):
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor, got {type(value).__name__}")
    if value.device.type != "cpu":
        raise ValueError(f"{name}: crnn runs on the CPU, got a tensor on {value.device} "
                         f"(use torch.nn's module there, or .cpu())")
    return value


def _dtype_of(x, weights):
    name = _DTYPES.get(x.dtype)
    if name is None:
        raise TypeError(f"input: expected float32 or float64, got {x.dtype}")
    for w in weights:
        _tensor(w, "parameters")
        if w.dtype != x.dtype:
            raise TypeError(f"input: expected the parameters' dtype {w.dtype}, got {x.dtype} "
                            f"(convert one: module.to({x.dtype}) or input.to({w.dtype}))")
    return name


def _repack(out, packed, lengths):
    """The (T, B, ·) outputs, in the input's batch order, as the PackedSequence PyTorch
    returns: the input's batch_sizes and indices."""
    order = packed.sorted_indices
    if order is not None:
        out = out.index_select(1, order)
        lengths = lengths[order.numpy()]
    data = _rnn_utils.pack_padded_sequence(out, torch.from_numpy(np.asarray(lengths)),
                                           enforce_sorted=True).data
    return _rnn_utils.PackedSequence(data, packed.batch_sizes, packed.sorted_indices,
                                     packed.unsorted_indices)


class RNN(_Module, torch.nn.RNN):
    """``torch.nn.RNN`` (Elman, tanh or relu), computed by crnn.

    Takes ``torch.nn.RNN``'s arguments; see the module's documentation and
    ``torch.nn.RNN``'s for shapes: input (T, B, D) — (B, T, D) with
    ``batch_first`` — or (T, D) or a PackedSequence; h_0 (num_layers·dirs,
    B, H). Returns ``(output, h_n)``.
    """

    _crnn_cell = "rnn"


class LSTM(_Module, torch.nn.LSTM):
    """``torch.nn.LSTM``, computed by crnn (no ``proj_size``).

    Shapes as ``torch.nn.LSTM``'s; ``hx`` is a pair (h_0, c_0). Returns
    ``(output, (h_n, c_n))``.
    """

    _crnn_cell = "lstm"


class GRU(_Module, torch.nn.GRU):
    """``torch.nn.GRU``, computed by crnn. Shapes as ``torch.nn.GRU``'s; returns
    ``(output, h_n)``."""

    _crnn_cell = "gru"
