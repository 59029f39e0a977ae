"""The recurrent networks: Elman RNN, LSTM and GRU, with a head and a loss.

One base class holds everything; the three public classes only fix the cell.
The compiled engine (``_engine.pyx``) runs every computation; this module
checks and converts what the user gives (once, through ``_data`` and
``_checks``) and puts the results back in the user's order and shapes.
"""

import numpy as np

from crnn import _checks, _copies, _data, _engine, _io, _sampling

__all__ = ["RNN", "LSTM", "GRU", "load"]

_OUTPUTS = {"softmax": _engine.SOFTMAX, "linear": _engine.LINEAR}
_NO_HEAD = object()     # the ``output`` of a network without a head (crnn.layers.Stack)


_SHAPES_DOC = """
    Shapes: T time steps, B sequences, D = ``input_size``, H = ``hidden_size``,
    O = ``output_size``, dirs = 2 when bidirectional else 1, G gates (RNN 1,
    LSTM 4, GRU 3). Data is time-major: x is (T, B, D) floats or (T, B)
    integer token ids in [0, D) (one-hot inputs, computed as a gather of
    ``W_x``'s columns). States are (B, H) when num_layers·dirs = 1, else
    (num_layers·dirs, B, H), layer-major, forward before reverse (PyTorch's
    order).
"""


class _Network(_copies.Copies, _sampling.Sampling):
    """The shared base of :class:`RNN`, :class:`LSTM` and :class:`GRU`."""

    _cell = None        # "rnn", "lstm" or "gru"
    _gates = 1

    def _setup(self, input_size, hidden_size, output_size, nonlinearity, num_layers,
               bidirectional, dropout, output, dtype, seed, batch_first=False):
        self.input_size = _checks.positive_int(input_size, "input_size")
        self.hidden_size = _checks.positive_int(hidden_size, "hidden_size")
        if output is _NO_HEAD:      # the layers alone (crnn.layers.Stack)
            self.output_size, self.output = 0, None
        else:
            self.output_size = _checks.positive_int(output_size, "output_size")
            self.output = _checks.choice(output, "output", tuple(_OUTPUTS))
        self._out = _OUTPUTS.get(self.output, 0)
        self.num_layers = _checks.positive_int(num_layers, "num_layers")
        self.bidirectional = _checks.boolean(bidirectional, "bidirectional")
        self.dropout = _checks.probability(dropout, "dropout")
        self.dtype = _checks.float_dtype(dtype)
        self.batch_first = _checks.boolean(batch_first, "batch_first")
        if self._cell == "rnn":
            self.nonlinearity = _checks.choice(nonlinearity, "nonlinearity", ("tanh", "relu"))
        # Checked before building anything (numpy's own message names no argument).
        rng = _checks.rng(seed, "seed")
        self._build()
        dirs = 2 if self.bidirectional else 1
        self._nstates = self.num_layers * dirs
        self._has_c = self._cell == "lstm"
        self._widest = max(self._gates * self.hidden_size, dirs * self.hidden_size,
                           self.output_size)
        bound = 1.0 / np.sqrt(self.hidden_size)
        for name, view in self._views.items():
            # Drawn in float64 and then cast, so one seed gives the same model in both dtypes.
            view[...] = rng.uniform(-bound, bound, view.shape)
        self.params = dict(self._views)
        self.history = None     # set by fit

    def _build(self):
        """The compiled engine, the flat parameter vector (zeros) and its named views."""
        cell = "rnn_" + self.nonlinearity if self._cell == "rnn" else self._cell
        self._engine = _engine.Engine(cell, self.num_layers, self.bidirectional,
                                      self.input_size, self.hidden_size, self.output_size,
                                      self.dtype == np.float64)
        self._flat = np.zeros(self._engine.size, dtype=self.dtype)
        self._views = {name: self._flat[offset:offset + int(np.prod(shape))].reshape(shape)
                       for name, offset, shape in self._engine.layout}

    def __repr__(self):
        args = [f"input_size={self.input_size}", f"hidden_size={self.hidden_size}",
                f"output_size={self.output_size}"]
        if self._cell == "rnn":
            args.append(f"nonlinearity={self.nonlinearity!r}")
        if self.num_layers != 1:
            args.append(f"num_layers={self.num_layers}")
        if self.bidirectional:
            args.append("bidirectional=True")
        if self.dropout:
            args.append(f"dropout={self.dropout}")
        args += [f"output={self.output!r}", f"dtype={self.dtype.name!r}"]
        if self.batch_first:
            args.append("batch_first=True")
        return f"{type(self).__name__}({', '.join(args)})"

    # -- the parameters ----------------------------------------------------------------

    def _sync(self):
        """The flat parameter vector, after taking in any entry of ``params`` the
        user replaced (it is copied in, and the entry is the model's array again)."""
        replaced = _checks.params(self.params, self._views, self.dtype)
        for key, value in replaced.items():
            self._views[key][...] = value
            self.params[key] = self._views[key]
        return self._flat

    def _unflatten(self, flat, names=None):
        """A dict of views of ``flat`` (a vector laid out like the parameters)."""
        out = {}
        for name, offset, shape in self._engine.layout:
            if names is None or name in names:
                out[name] = flat[offset:offset + int(np.prod(shape))].reshape(shape)
        return out

    @property
    def stack(self):
        """The recurrent layers alone, without the head: a :class:`crnn.layers.Stack`
        sharing this model's parameters."""
        from crnn.layers import Stack
        return Stack._of(self)

    # -- states ------------------------------------------------------------------------

    def _new_states(self, B):
        shape = (self._nstates, B, self.hidden_size)
        return (np.empty(shape, dtype=self.dtype),
                np.empty(shape, dtype=self.dtype) if self._has_c else None)

    def _states_out(self, h, c, order):
        """Final states in the user's row order and shape: (B, H) or (L·dirs, B, H);
        an (h, c) pair for the LSTM."""
        h = _data.unsort(h, order, 1)
        if self._nstates == 1:
            h = h[0]
        if not self._has_c:
            return h
        c = _data.unsort(c, order, 1)
        return (h, c[0] if self._nstates == 1 else c)

    # -- batch-first data: converted once, at the boundary ----------------------------------

    def _time_major(self, x):
        """x (B, T, ...) as (T, B, ...) when batch_first (a view; the checks copy it)."""
        if not self.batch_first:
            return x
        arr = _checks._as_array(x, "x")
        return arr.swapaxes(0, 1) if arr.ndim >= 2 else arr

    def _time_major_target(self, target):
        """A per-step target (B, T) or (B, T, O) as (T, B, ...) when batch_first."""
        if not self.batch_first:
            return target
        arr = _checks._as_array(target, "target")
        return arr.swapaxes(0, 1) if arr.ndim == (2 if self.output == "softmax" else 3) \
            else arr

    # -- the public computations ---------------------------------------------------------

    def forward(self, x, h0=None, lengths=None):
        """Run the network over whole sequences (no dropout).

        Parameters
        ----------
        x : array (T, B, D) of floats, or (T, B) of integer token ids
        h0 : array (B, H) or (num_layers·dirs, B, H), optional
            Initial states; zeros when omitted. LSTM: a pair ``(h0, c0)``, or h0 alone.
        lengths : array (B,) of int, optional
            Valid steps of each sequence, 1 <= lengths[b] <= T. Steps
            t >= lengths[b] are padding: the state is carried unchanged, the
            output is 0 and they add nothing to the loss or the gradients.

        Returns
        -------
        y : ndarray (T, B, O)
            The outputs g(W_y·[h_t] + b_y): class probabilities for the
            softmax head, values for the linear head; 0 at padding steps.
        h_last : ndarray, like h0
            Each sequence's final states (LSTM: the pair (h, c)): forward
            directions after the last valid step, reverse ones after step 0.

        NaN or infinite inputs are not refused here: they propagate.
        """
        W = self._sync()
        x = self._time_major(x)
        data = _data.prepare(self, x, h0, lengths, finite=False)
        w = _data.window(self, data, None, 0, data.T, data.h0, data.c0)
        y = np.empty((w.T, w.B, self.output_size), dtype=self.dtype)
        h, c = self._new_states(w.B)
        self._engine.forward(W, w.X, w.tokens, w.B, w.bs, w.rev, w.h0, w.c0, self._out, y, h, c)
        y = _data.unsort(y, w.order, 1)
        if self.batch_first:
            y = np.ascontiguousarray(y.swapaxes(0, 1))
        return y, self._states_out(h, c, w.order)

    def predict(self, x, lengths=None):
        """The outputs ``y`` (T, B, O) for inputs ``x``, from zero initial states.

        Same as ``forward(x, lengths=lengths)[0]``; for the softmax head,
        ``y.argmax(-1)`` gives the predicted classes.
        """
        return self.forward(x, lengths=lengths)[0]

    def _one_direction(self, what):
        if self.bidirectional:
            raise ValueError(f"{what}: needs a one-direction model (the reverse direction "
                             f"reads the whole sequence first); this one is bidirectional")

    def loss_and_grad(self, x, target, h0=None, lengths=None, reduction="mean",
                      return_hidden_grads=False, *, seed=None):
        """The loss and its gradient with respect to every parameter (BPTT).

        Parameters
        ----------
        x : array (T, B, D) of floats, or (T, B) of integer token ids
        target : array
            Softmax head: integer classes in [0, O), of shape (T, B) — one per
            step — or (B,) — one per sequence, read from its final states
            (h_n of the top layer: both directions, concatenated). Linear
            head: floats of shape (T, B, O) or (B, O), likewise.
        h0 : states, as for :meth:`forward`, optional
        lengths : array (B,) of int, optional
        reduction : {"mean", "sum"}, default "mean"
            "sum": L, the total over every counted item; "mean": L divided by
            the number of counted items.
        return_hidden_grads : bool, default False
            Also return ‖∂L/∂h_t‖ for t = 1..T of the top layer: how much
            gradient reaches each step, the view of vanishing and exploding
            gradients. Computed inside the backward loop.
        seed : int or numpy Generator, optional
            The dropout masks (models with dropout > 0 and several layers):
            the same seed gives the same masks.

        Returns
        -------
        loss : float
        grads : dict of ndarray
            ∂loss/∂W with the same keys, shapes and dtype as ``params``.
        h_last : final states, as for :meth:`forward`.
        hidden_grads : ndarray (T,), only with ``return_hidden_grads``
            ‖∂L/∂h_t‖ (Frobenius norm over the sequences running at t).

        The per-item loss is −log softmax(z)[target] (softmax head) or
        ½‖z − target‖² (linear head), z = W_y·[h_t] + b_y. NaN or infinite
        values in ``x``, ``h0`` or ``target`` raise ValueError.
        """
        reduction = _checks.choice(reduction, "reduction", ("mean", "sum"))
        W, w, masks = self._scored_call(x, target, h0, lengths, seed)
        norms = np.empty(w.T) if return_hidden_grads else None
        loss, dW, h, c = self._run(W, w, masks, reduction == "mean", norms=norms)
        grads = self._unflatten(dW)
        h_last = self._states_out(h, c, w.order)
        if return_hidden_grads:
            return loss, grads, h_last, norms
        return loss, grads, h_last

    def train_step(self, x, target, optimizer, *, clip_norm=None, clip_value=None, h0=None,
                   lengths=None, reduction="mean", seed=None):
        """One training step in one compiled call: the loss, BPTT, clipping and the
        optimizer's update of ``params``, with no Python between them.

        The same as ``loss_and_grad``, then ``clip_grad_value(grads, clip_value)``,
        ``clip_grad_norm(grads, clip_norm)`` and ``optimizer.step(grads)`` (the
        gradients are not returned), over one flat vector of all the parameters.

        Parameters
        ----------
        x, target, h0, lengths, reduction, seed
            As for :meth:`loss_and_grad`.
        optimizer : crnn.SGD, Adagrad, RMSprop or Adam
            Built on this model's ``params`` (``crnn.Adam(model.params)``); its
            buffers become views into flat vectors (``state_dict`` and ``step``
            work as before). A subclass, or another :class:`crnn.optim.Optimizer`,
            takes its update in Python after the compiled loss and gradients.
        clip_norm : float, optional
            Scale the gradients by min(1, clip_norm / (‖g‖ + 1e-6)), as
            :func:`crnn.clip_grad_norm`.
        clip_value : float, optional
            Clip every gradient to [−clip_value, clip_value] first, as
            :func:`crnn.clip_grad_value`.

        Returns
        -------
        loss : float
            The loss before the update.

        Raises FloatingPointError, with ``params`` and the optimizer unchanged,
        when the loss or a gradient is NaN or infinite; Ctrl-C during the call
        also leaves them unchanged.
        """
        loss, _, updated = self._train_step(x, target, optimizer, clip_norm, clip_value, h0,
                                            lengths, reduction, seed)
        if not updated:
            raise FloatingPointError(f"train_step: non-finite loss or gradient (loss = "
                                     f"{loss}); params and the optimizer are unchanged")
        return loss

    def _train_step(self, x, target, optimizer, clip_norm, clip_value, h0, lengths, reduction,
                    seed):
        """train_step's work: ``(loss, h_last, updated)``, without raising when the
        step was refused for a non-finite loss or gradient."""
        from crnn import _fused
        reduction = _checks.choice(reduction, "reduction", ("mean", "sum"))
        clip_norm = _checks.positive_float(clip_norm, "clip_norm", allow_none=True)
        clip_value = _checks.positive_float(clip_value, "clip_value", allow_none=True)
        _fused.check_optimizer(self, optimizer)
        W, w, masks = self._scored_call(x, target, h0, lengths, seed)
        loss, h, c, updated = _fused.step(self, W, w, masks, reduction == "mean", optimizer,
                                          clip_norm, clip_value, self._step_buffer())
        return loss, self._states_out(h, c, w.order), updated

    def _step_buffer(self):
        """The gradient vector of train_step, kept (its gaps between arrays stay 0)."""
        buf = self.__dict__.get("_dW")
        if buf is None:
            buf = self._dW = np.zeros(self._engine.size, dtype=self.dtype)
        return buf

    def _scored_call(self, x, target, h0, lengths, seed):
        """``(W, window, dropout masks)`` of a call with targets: the checked,
        converted data of loss_and_grad and train_step."""
        W = self._sync()
        x, target = self._time_major(x), self._time_major_target(target)
        data = _data.prepare(self, x, h0, lengths, finite=True, target=target)
        w = _data.window(self, data, None, 0, data.T, data.h0, data.c0)
        rng = None if seed is None and not self._dropping() else _checks.rng(seed, "seed")
        return W, w, self._masks(rng, w) if self._dropping() else None

    def _dropping(self):
        return self.dropout > 0 and self.num_layers > 1

    def _masks(self, rng, w):
        """Dropout multipliers for window w, drawn in the caller's row order."""
        masks = _data.dropout_masks(rng, self.num_layers, w.T, w.B, self._nstates //
                                    self.num_layers * self.hidden_size, self.dropout,
                                    self.dtype)
        if w.order is not None:
            masks = np.ascontiguousarray(masks[:, :, w.order])
        return masks

    def _run(self, W, w, masks, mean, *, norms=None, grads=True, dW=None):
        """One call of the engine's loss (and BPTT) on window w, the gradients into dW
        (a fresh zeroed vector when None: the gaps between arrays must hold zeros)."""
        if grads and dW is None:
            dW = np.zeros(self._engine.size, dtype=self.dtype)
        elif not grads:
            dW = None
        h, c = self._new_states(w.B)
        loss = self._engine.loss(
            W, dW, w.X, w.tokens, w.B, w.bs, w.rev, w.h0, w.c0, masks, self._out,
            w.per_step, w.classes, w.values, 1.0 / w.count if mean and w.count else 1.0,
            w.lo, w.hi, h, c, norms)
        return loss, dW, h, c

    def _final_logits(self, W, h):
        """z = W_y·h_n + b_y from final states h (L·dirs, B, H), for per-sequence targets."""
        dirs = self._nstates // self.num_layers
        top = np.concatenate(list(h[-dirs:]), axis=1)
        p = self._unflatten(W, ("W_y", "b_y"))
        return top @ p["W_y"].T + p["b_y"]

    # -- training and saving -------------------------------------------------------------

    def fit(self, x, target, *, epochs=1, batch_size=32, optimizer="sgd", lr=0.01,
            clip_norm=None, clip_value=None, lengths=None, validation_data=None, bptt=None,
            callbacks=(), shuffle=True, seed=None, verbose=1, comm=None):
        """Train on mini-batches of sequences; return the history.

        See :func:`crnn.training.fit`, which this calls, for every argument.
        """
        from crnn.training import fit
        x, target = self._time_major(x), self._time_major_target(target)
        if self.batch_first and isinstance(validation_data, (tuple, list)) and \
                len(validation_data) in (2, 3):
            validation_data = (self._time_major(validation_data[0]),
                               self._time_major_target(validation_data[1]),
                               *validation_data[2:])
        return fit(self, x, target, epochs=epochs, batch_size=batch_size, optimizer=optimizer,
                   lr=lr, clip_norm=clip_norm, clip_value=clip_value, lengths=lengths,
                   validation_data=validation_data, bptt=bptt, callbacks=callbacks,
                   shuffle=shuffle, seed=seed, verbose=verbose, comm=comm)

    def to_torch(self):
        """``(rnn, linear)``: the ``torch.nn.RNN``/``LSTM``/``GRU`` and ``torch.nn.Linear``
        equal to this model (needs torch; see :func:`crnn.from_torch`)."""
        from crnn._torch_weights import to_torch
        return to_torch(self)

    def to_onnx(self, path, *, tokens=False, lengths=False, states=False, dtype=None):
        """Write this model to ``path`` as an ONNX model (needs onnx).

        The graph runs ONNX's own ``RNN``/``LSTM``/``GRU`` operators, one per
        layer, then the head; it computes what :meth:`forward` does.

        Parameters
        ----------
        path : str or os.PathLike
            The file, written atomically (a temporary name, then renamed).
        tokens : bool, default False
            The input ``x`` is int64 token ids (T, B) in [0, D) instead of
            floats (T, B, D); ids outside [-D, D) give a zero input row
            (they are not checked).
        lengths : bool, default False
            Add a second input, ``lengths``: int64 (B,), valid steps of each
            sequence in [1, T], with :meth:`forward`'s padding semantics.
            Without it every sequence runs all T steps.
        states : bool, default False
            Add the initial states as inputs, ``h0`` and for the LSTM ``c0``,
            shaped as the outputs ``h_n``/``c_n`` (and :meth:`forward`'s
            ``h0``), in the graph's dtype: feed a call's ``h_n`` to the next
            to run a stream in pieces. Without them the states start at zero.
        dtype : {None, "float32", "float64"}, default None
            The graph's floats; None means the model's dtype. onnxruntime has
            no float64 RNN/LSTM/GRU kernels, so a float64 model needs an
            explicit choice: "float32" (weights rounded, runs in onnxruntime)
            or "float64" (valid ONNX, for runtimes that implement it);
            with None it raises ValueError.

        Returns
        -------
        onnx.ModelProto
            The model written, checked by ``onnx.checker.check_model``.

        The graph's inputs: ``x`` (T, B, D) floats or (T, B) int64 —
        (B, T, D) / (B, T) when ``batch_first`` — with symbolic T and B,
        ``lengths`` (B,) and ``h0``/``c0`` when asked for. Its outputs: ``y`` (T, B, O)
        ((B, T, O) when ``batch_first``), 0 at padding steps; ``h_n`` and
        for the LSTM ``c_n``, (B, H) when num_layers·dirs = 1 else
        (num_layers·dirs, B, H), as :meth:`forward` returns them. Opset 17.
        """
        from crnn._onnx import export
        return export(self, path, tokens=tokens, lengths=lengths, states=states, dtype=dtype)

    def save(self, path):
        """Save the weights and the configuration to an ``.npz`` file at ``path``.

        The file is written under a temporary name and renamed into place, so
        an interrupted save never leaves a truncated file behind.
        """
        _io.save(self, path)

    def _save(self, path, **extra):
        """:meth:`save`, with ``extra`` arrays stored beside the weights (load ignores them)."""
        _io.save(self, path, **extra)

    def _config(self):
        config = {"input_size": self.input_size, "hidden_size": self.hidden_size,
                  "output_size": self.output_size, "num_layers": self.num_layers,
                  "bidirectional": self.bidirectional, "dropout": self.dropout,
                  "output": self.output, "dtype": self.dtype.name,
                  "batch_first": self.batch_first}
        if self._cell == "rnn":
            config["nonlinearity"] = self.nonlinearity
        return config


class RNN(_Network):
    __doc__ = """An Elman recurrent network (PyTorch's ``nn.RNN``) with an output head.

    ::

        h_t = f(W_x x_t + W_h h_{t-1} + b_h)     f = tanh or relu
        y_t = g(W_y h_t + b_y)                    g = softmax or identity
    """ + _SHAPES_DOC + """
    Parameters
    ----------
    input_size, hidden_size, output_size : int
        D, H and O.
    nonlinearity : {"tanh", "relu"}, default "tanh"
    num_layers : int, default 1
        Stacked layers: layer k reads layer k−1's outputs (both directions).
    bidirectional : bool, default False
        A second direction per layer reads each sequence from its last valid
        step back to its first; the layer's output at t is [h_t(fwd); h_t(rev)].
    dropout : float in [0, 1), default 0
        Dropout on the outputs of every layer but the last, in training only
        (``loss_and_grad``, ``fit``), as PyTorch's.
    output : {"softmax", "linear"}, default "softmax"
        The head g: softmax with cross-entropy loss, or identity with
        squared-error loss ½‖y − ŷ‖².
    dtype : {"float32", "float64"}, default "float32"
    seed : int, numpy Generator or None
        Every array is drawn from uniform(−1/√H, 1/√H), as in PyTorch.
    batch_first : bool, default False
        As PyTorch's option: x is (B, T, D) (token ids (B, T)), per-step
        targets (B, T) or (B, T, O), and the outputs y (B, T, O); states,
        lengths and per-sequence targets are unchanged. The data is put
        time-major once, at the boundary (one copy).

    Attributes
    ----------
    params : dict of ndarray
        Layer 0's forward direction: ``W_x`` (G·H, D), ``W_h`` (G·H, H),
        ``b_h`` (G·H,) (GRU also ``b_x``); other layers and directions carry
        PyTorch's suffixes, layer 0's ``_l0`` left out (``W_x_reverse``,
        ``W_h_l1``, ``b_h_l2_reverse``, ...; ``W_x`` above layer 0 is
        (G·H, H·dirs)); then ``W_y`` (O, H·dirs) and ``b_y`` (O,).
        PyTorch's b_ih + b_hh is one ``b_h`` for the RNN and LSTM. Changing
        the arrays in place changes the model.

    Examples
    --------
    >>> model = crnn.RNN(8, 32, 4, seed=0)
    >>> x = np.random.default_rng(0).standard_normal((20, 16, 8))   # (T, B, D)
    >>> target = np.zeros((20, 16), dtype=int)                       # a class per step
    >>> loss, grads, h_last = model.loss_and_grad(x, target)
    """

    _cell = "rnn"
    _gates = 1

    def __init__(self, input_size, hidden_size, output_size, *, nonlinearity="tanh",
                 num_layers=1, bidirectional=False, dropout=0.0, output="softmax",
                 dtype="float32", seed=None, batch_first=False):
        self._setup(input_size, hidden_size, output_size, nonlinearity, num_layers,
                    bidirectional, dropout, output, dtype, seed, batch_first)


class LSTM(_Network):
    __doc__ = """A long short-term memory network (PyTorch's ``nn.LSTM``) with an output head.

    PyTorch's equations and gate order (i, f, g, o), stacked by rows of
    ``W_x``, ``W_h`` and ``b_h``::

        i, f, o = σ(z_i), σ(z_f), σ(z_o),  g = tanh(z_g),  z = W_x x_t + W_h h_{t-1} + b_h
        c_t = f ⊙ c_{t-1} + i ⊙ g          h_t = o ⊙ tanh(c_t)

    States are pairs ``(h, c)``; an ``h0`` given alone means c0 = 0.
    """ + _SHAPES_DOC + """
    Parameters and attributes are those of :class:`RNN` (without nonlinearity), with G = 4.
    """

    _cell = "lstm"
    _gates = 4

    def __init__(self, input_size, hidden_size, output_size, *, num_layers=1,
                 bidirectional=False, dropout=0.0, output="softmax", dtype="float32",
                 seed=None, batch_first=False):
        self._setup(input_size, hidden_size, output_size, None, num_layers, bidirectional,
                    dropout, output, dtype, seed, batch_first)


class GRU(_Network):
    __doc__ = """A gated recurrent unit network (PyTorch's ``nn.GRU``) with an output head.

    PyTorch's equations and gate order (r, z, n), with both biases (``b_x``
    is PyTorch's bias_ih, ``b_h`` its bias_hh)::

        r = σ(W_xr x_t + b_xr + W_hr h_{t-1} + b_hr)
        z = σ(W_xz x_t + b_xz + W_hz h_{t-1} + b_hz)
        n = tanh(W_xn x_t + b_xn + r ⊙ (W_hn h_{t-1} + b_hn))
        h_t = (1 − z) ⊙ n + z ⊙ h_{t-1}
    """ + _SHAPES_DOC + """
    Parameters and attributes are those of :class:`RNN` (without nonlinearity), with G = 3.
    """

    _cell = "gru"
    _gates = 3

    def __init__(self, input_size, hidden_size, output_size, *, num_layers=1,
                 bidirectional=False, dropout=0.0, output="softmax", dtype="float32",
                 seed=None, batch_first=False):
        self._setup(input_size, hidden_size, output_size, None, num_layers, bidirectional,
                    dropout, output, dtype, seed, batch_first)


def load(path, *, allow_nonfinite=False):
    """Load a model saved by ``save`` (any of :class:`RNN`, :class:`LSTM`, :class:`GRU`).

    Parameters
    ----------
    path : str or os.PathLike
        A file, or a pipe (read once).
    allow_nonfinite : bool, default False
        Load weights holding NaN or infinity (a model saved after training
        diverged) instead of refusing them.

    Raises
    ------
    OSError
        The file is missing or unreadable.
    ValueError
        The file is not a crnn model file, is corrupt, or holds non-finite
        weights; the message names the file and what is wrong. Everything is
        checked before anything large is allocated, and only the members the
        model needs are read.
    """
    allow_nonfinite = _checks.boolean(allow_nonfinite, "allow_nonfinite")
    return _io.load(path, _CLASSES, allow_nonfinite=allow_nonfinite)[0]


_CLASSES = {"RNN": RNN, "LSTM": LSTM, "GRU": GRU}
