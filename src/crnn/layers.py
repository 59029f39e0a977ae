"""The layer API: the recurrent layers alone, without head or loss, for composing
crnn with other code (a loss of your own, another framework's autograd).

::

    stack = crnn.layers.Stack("lstm", input_size=8, hidden_size=32, num_layers=2)
    out, h_last, tape = stack.forward(x)                 # out: (T, B, H·dirs)
    d_out = my_loss_gradient(out)                         # ∂L/∂out, (T, B, H·dirs)
    grads, dx, dh0 = stack.backward(tape, d_out)          # ∂L/∂params, ∂L/∂x, ∂L/∂h0

``model.stack`` is the same for a model's own layers (it shares the model's
parameters; the head is left out).
"""

import numpy as np

from crnn import _checks, _data

__all__ = ["Stack"]

_HEAD = ("W_y", "b_y")


class Tape:
    """What ``Stack.forward`` stored for ``Stack.backward``: opaque, and good for
    one backward pass (which consumes it)."""

    __slots__ = ("_work", "_net", "_order", "_T", "_B", "_tokens", "_used")

    def __del__(self):
        # A tape dropped without its backward (inference through another framework's
        # autograd, under no_grad): its memory serves the next forward, as a used one's.
        try:
            if not self._used:
                self._net._engine.recycle(self._work)
        except Exception:       # interpreter shutdown, or a tape forward never filled
            pass


class Stack:
    """A stack of recurrent layers (RNN, LSTM or GRU cells), without a head.

    Parameters
    ----------
    cell : {"rnn", "lstm", "gru"}
    input_size, hidden_size : int
        D and H.
    nonlinearity : {"tanh", "relu"}, default "tanh"
        The Elman cell's (``cell="rnn"`` only).
    num_layers, bidirectional, dropout, dtype, seed
        As for :class:`crnn.RNN`.

    Attributes
    ----------
    params : dict of ndarray
        The layers' parameters, named and shaped as in :class:`crnn.RNN`.

    Shapes: T steps, B sequences, dirs = 2 when bidirectional; states are
    (B, H) when num_layers·dirs = 1, else (num_layers·dirs, B, H); the
    LSTM's are pairs (h, c).
    """

    def __init__(self, cell, input_size, hidden_size, *, nonlinearity="tanh", num_layers=1,
                 bidirectional=False, dropout=0.0, dtype="float32", seed=None):
        from crnn import model
        classes = {"rnn": model.RNN, "lstm": model.LSTM, "gru": model.GRU}
        cls = classes[_checks.choice(cell, "cell", tuple(classes))]
        net = cls.__new__(cls)
        if cell != "rnn" and nonlinearity != "tanh":
            raise ValueError(f"nonlinearity: only the 'rnn' cell has one, got "
                             f"{nonlinearity!r} for cell {cell!r}")
        net._setup(input_size, hidden_size, 0, nonlinearity if cell == "rnn" else None,
                   num_layers, bidirectional, dropout, model._NO_HEAD, dtype, seed)
        self._net = net

    @classmethod
    def _of(cls, net):
        stack = cls.__new__(cls)
        stack._net = net
        return stack

    def __getattr__(self, name):
        if name in ("input_size", "hidden_size", "num_layers", "bidirectional", "dropout",
                    "dtype", "nonlinearity"):
            return getattr(self._net, name)
        raise AttributeError(name)

    def to_torch(self):
        """``(rnn, None)``: the ``torch.nn`` module equal to these layers (needs torch)."""
        from crnn._torch_weights import to_torch
        return to_torch(self)

    @property
    def cell(self):
        return self._net._cell

    @property
    def params(self):
        p = self._net.params
        return p if not self._net.output_size else {k: v for k, v in p.items()
                                                     if k not in _HEAD}

    def __repr__(self):
        n = self._net
        return (f"Stack({n._cell!r}, input_size={n.input_size}, hidden_size={n.hidden_size}, "
                f"num_layers={n.num_layers}, bidirectional={n.bidirectional}, "
                f"dropout={n.dropout}, dtype={n.dtype.name!r})")

    def forward(self, x, h0=None, lengths=None, *, training=False, seed=None):
        """Run the layers over whole sequences.

        Parameters
        ----------
        x : array (T, B, D) of floats, or (T, B) of integer token ids
        h0 : initial states, optional (zeros)
        lengths : array (B,) of int, optional
            Padding steps (t >= lengths[b]) carry the state; their outputs are 0.
        training : bool, default False
            Apply dropout between layers (when the stack has dropout > 0).
        seed : int or numpy Generator, optional
            The dropout masks.

        Returns
        -------
        outputs : ndarray (T, B, H·dirs)
            The top layer's hidden states [h_t(fwd); h_t(rev)], 0 on padding.
        h_last : final states of every layer and direction (PyTorch's h_n, and c_n).
        tape : Tape
            For :meth:`backward`. The parameters and ``x`` must not change before it.
        """
        net = self._net
        W = net._sync()
        data = _data.prepare(net, x, h0, lengths, finite=False)
        w = _data.window(net, data, None, 0, data.T, data.h0, data.c0)
        training = _checks.boolean(training, "training")
        dropping = training and net._dropping()
        rng = None if seed is None and not dropping else _checks.rng(seed, "seed")
        masks = net._masks(rng, w) if dropping else None
        dirs = net._nstates // net.num_layers
        out = np.empty((w.T, w.B, dirs * net.hidden_size), dtype=net.dtype)
        h, c = net._new_states(w.B)
        tape = Tape()
        tape._work = net._engine.stack_forward(W, w.X, w.tokens, w.B, w.bs, w.rev, w.h0, w.c0,
                                               masks, out, h, c)
        tape._net, tape._order, tape._T, tape._B = net, w.order, w.T, w.B
        tape._tokens, tape._used = w.tokens is not None, False
        return _data.unsort(out, w.order, 1), net._states_out(h, c, w.order), tape

    def backward(self, tape, d_outputs=None, d_h_last=None, *, input_grad=True):
        """Backpropagation through time from upstream gradients.

        Parameters
        ----------
        tape : Tape
            From :meth:`forward` (each tape serves one backward).
        d_outputs : array (T, B, H·dirs), optional
            ∂L/∂outputs (values at padding steps are ignored).
        d_h_last : like h_last, optional
            ∂L/∂(final states); for the LSTM a pair (∂L/∂h_n, ∂L/∂c_n), either may be None.
        input_grad : bool, default True
            Compute ``dx``; False skips the first layer's product for it (when x
            needs no gradient) and returns None.

        Returns
        -------
        grads : dict of ndarray
            ∂L/∂params, keys and shapes as :attr:`params`.
        dx : ndarray (T, B, D), or None for token-id inputs and ``input_grad=False``
        dh0 : like h0: ∂L/∂(initial states) (LSTM: the pair (dh0, dc0))
        """
        net = self._net
        if not isinstance(tape, Tape) or tape._net is not net:
            raise TypeError(f"tape: expected the Tape of a forward pass of this stack, got "
                            f"{type(tape).__name__}")
        if tape._used:
            raise ValueError("tape: already used by a backward pass (run forward again)")
        T, B, H = tape._T, tape._B, net.hidden_size
        dirs = net._nstates // net.num_layers
        d_out = None
        if d_outputs is not None:
            d_out = _checks._as_array(d_outputs, "d_outputs")
            if d_out.shape != (T, B, dirs * H):
                raise ValueError(f"d_outputs: expected shape ({T}, {B}, {dirs * H}), like "
                                 f"the outputs, got {_checks._shape_str(d_out.shape)}")
            d_out = np.ascontiguousarray(d_out[:, tape._order] if tape._order is not None
                                         else d_out, dtype=net.dtype)
        dh, dc = _checks.states(d_h_last, "d_h_last", net._nstates, B, H, net.dtype,
                                finite=False, pair=net._has_c)
        dh, dc = _data._rows(dh, tape._order), _data._rows(dc, tape._order)
        dW = np.zeros(net._engine.size, dtype=net.dtype)
        input_grad = _checks.boolean(input_grad, "input_grad")
        dX = None if tape._tokens or not input_grad else \
            np.empty((T, B, net.input_size), dtype=net.dtype)
        dh0, dc0 = net._new_states(B)
        tape._used = True
        net._engine.stack_backward(tape._work, net._flat, dW, d_out, dh, dc, dX, dh0, dc0)
        grads = net._unflatten(dW, self.params)
        dx = None if dX is None else _data.unsort(dX, tape._order, 1)
        return grads, dx, net._states_out(dh0, dc0, tape._order)
