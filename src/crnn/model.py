"""The Elman recurrent network: parameters, forward, loss and gradients, training, I/O."""

import json
import os
import sys
import uuid
import zipfile

import numpy as np

from crnn import _checks, _elman, _progress
from crnn import callbacks as _callbacks
from crnn import optim as _optim
from crnn.clip import clip_grad_norm, clip_grad_value

__all__ = ["RNN", "load"]

_NONLINEARITIES = {"tanh": _elman.TANH, "relu": _elman.RELU}
_OUTPUTS = {"softmax": _elman.SOFTMAX, "linear": _elman.LINEAR}
_KEYS = ("W_x", "W_h", "b_h", "W_y", "b_y")
_FORMAT = "crnn.RNN/1"


class _Batch:
    """Inputs (and, for a data set, targets) checked, converted and sorted longest first."""

    __slots__ = ("X", "tokens", "h0", "batch_sizes", "order", "lengths", "T", "B",
                 "classes", "values", "per_step")


class RNN:
    """An Elman recurrent neural network, trained with backpropagation through time.

    ::

        h_t = f(W_x x_t + W_h h_{t-1} + b_h)     f = tanh or relu
        y_t = g(W_y h_t + b_y)                    g = softmax or identity

    Shapes: T time steps, B sequences, D = ``input_size``, H = ``hidden_size``,
    O = ``output_size``. Data is time-major.

    Parameters
    ----------
    input_size : int
        D, the number of input features (or the vocabulary size for token ids).
    hidden_size : int
        H, the size of the hidden state.
    output_size : int
        O, the number of classes (softmax) or output values (linear).
    nonlinearity : {"tanh", "relu"}, default "tanh"
        The hidden activation f.
    output : {"softmax", "linear"}, default "softmax"
        The output head g: softmax with cross-entropy loss (classification)
        or identity with squared-error loss ½‖y − ŷ‖² (regression).
    dtype : {"float32", "float64"} or numpy dtype, default "float32"
        Floating-point type of the parameters and of all computation.
    seed : int, numpy Generator or None
        Seed of the initialisation: every parameter is drawn from
        uniform(−1/√H, 1/√H), as in PyTorch.

    Attributes
    ----------
    params : dict of ndarray
        ``"W_x"`` (H, D), ``"W_h"`` (H, H), ``"b_h"`` (H,), ``"W_y"`` (O, H),
        ``"b_y"`` (O,): C-contiguous arrays of ``dtype``. Changing them in
        place changes the model.

    Inputs
    ------
    x : array (T, B, D) of floats, or (T, B) of integer token ids in [0, D)
        Token ids mean one-hot inputs; they are computed as a gather of
        ``W_x``'s columns, never as a one-hot matrix.
    h0 : array (B, H), optional
        Initial hidden state; zeros when omitted.
    lengths : array (B,) of int, optional
        Valid steps of each sequence, 1 <= lengths[b] <= T. Steps
        t >= lengths[b] are padding: the state is carried unchanged, the
        output is 0 and they add nothing to the loss or the gradients.

    Examples
    --------
    >>> model = crnn.RNN(8, 32, 4, seed=0)
    >>> x = np.random.default_rng(0).standard_normal((20, 16, 8))   # (T, B, D)
    >>> target = np.zeros((20, 16), dtype=int)                       # a class per step
    >>> loss, grads, h_last = model.loss_and_grad(x, target)
    """

    def __init__(self, input_size, hidden_size, output_size, *, nonlinearity="tanh",
                 output="softmax", dtype="float32", seed=None):
        self.input_size = _checks.positive_int(input_size, "input_size")
        self.hidden_size = _checks.positive_int(hidden_size, "hidden_size")
        self.output_size = _checks.positive_int(output_size, "output_size")
        self.nonlinearity = _checks.choice(nonlinearity, "nonlinearity", tuple(_NONLINEARITIES))
        self.output = _checks.choice(output, "output", tuple(_OUTPUTS))
        self.dtype = _checks.float_dtype(dtype)
        rng = np.random.default_rng(seed)
        bound = 1.0 / np.sqrt(self.hidden_size)
        # Drawn in float64 and then cast, so one seed gives the same model in both dtypes.
        self.params = {
            key: np.ascontiguousarray(rng.uniform(-bound, bound, shape), dtype=self.dtype)
            for key, shape in self._shapes().items()
        }

    def _shapes(self):
        D, H, O = self.input_size, self.hidden_size, self.output_size
        return {"W_x": (H, D), "W_h": (H, H), "b_h": (H,), "W_y": (O, H), "b_y": (O,)}

    def __repr__(self):
        return (f"RNN(input_size={self.input_size}, hidden_size={self.hidden_size}, "
                f"output_size={self.output_size}, nonlinearity={self.nonlinearity!r}, "
                f"output={self.output!r}, dtype={self.dtype.name!r})")

    # -- checking and converting, once per call ------------------------------------------

    def _weights(self):
        _checks.params(self.params, self._shapes(), self.dtype)
        return [self.params[k] for k in _KEYS]

    def _batch(self, x, h0, lengths, *, finite, target=None):
        """Inputs (and targets, when given) checked and converted, in the caller's order."""
        b = _Batch()
        b.X, b.tokens = _checks.inputs(x, self.input_size, self.dtype, finite=finite)
        b.T, b.B = (b.X if b.X is not None else b.tokens).shape[:2]
        _checks.check_sizes(b.T, b.B, self.input_size, self.hidden_size, self.output_size)
        b.h0 = _checks.hidden(h0, b.B, self.hidden_size, self.dtype, finite=finite)
        b.lengths = _checks.lengths_(lengths, b.T, b.B)
        b.order = b.batch_sizes = None
        b.classes = b.values = b.per_step = None
        if target is not None:
            b.classes, b.values, b.per_step = _checks.targets(
                target, self.output, b.T, b.B, self.output_size, self.dtype)
        return b

    def _data(self, x, target, lengths, h0=None):
        """A whole training or validation set, checked and converted once."""
        return self._batch(x, h0, lengths, finite=True, target=target)

    def _window(self, data, idx, t0, t1, h0):
        """Sequences ``idx`` (all when None) over steps [t0, t1) of ``data``, for the kernels.

        The kernels want the longest sequences first, so that the rows still
        running at step t are the first ``batch_sizes[t]``: the rows are
        sorted here, per call (``b.order``, None when already sorted).
        ``h0`` is in the order of ``idx``; the kernels' ``h_last`` comes back
        sorted (undo with :meth:`_unsort`). Only the rows of this window are
        copied, so memory follows the window, not the data set.

        Returns the batch and its targets ``(classes, values, per_step,
        score_lo, score_hi, count)`` (None without targets): with one target
        per sequence, only the sequences whose last valid step falls in the
        window are scored, rows score_lo..score_hi-1 (contiguous, since the
        rows are sorted by length); count is the number of scored items.
        """
        b = _Batch()
        b.T, b.order = t1 - t0, None
        L = None
        if data.lengths is not None:
            L = data.lengths if idx is None else data.lengths[idx]
            if np.any(L[1:] > L[:-1]):
                order = np.argsort(-L, kind="stable")
                L = L[order]
                idx = order if idx is None else idx[order]
                b.order = order
        whole = idx is None
        b.B = data.B if whole else len(idx)
        b.h0 = h0 if b.order is None else h0[b.order]

        def pick(arr, axis):
            if arr is None:
                return None
            if axis == 1 and (t0, t1) != (0, data.T):
                arr = arr[t0:t1]
            return arr if whole else np.take(arr, idx, axis=axis)

        b.X, b.tokens = pick(data.X, 1), pick(data.tokens, 1)
        if L is None:
            b.lengths = None
            b.batch_sizes = np.full(b.T, b.B, dtype=np.intp)
            lo, hi = 0, (b.B if t1 == data.T else 0)
            count = b.T * b.B if data.per_step else hi
        else:
            b.lengths = np.clip(L - t0, 0, b.T)      # steps of each sequence in this window
            # batch_sizes[t] = number of sequences with more than t steps here
            b.batch_sizes = (b.B - np.cumsum(np.bincount(b.lengths, minlength=b.T + 1)[:b.T])
                             ).astype(np.intp)
            lo, hi = int(np.count_nonzero(L > t1)), int(np.count_nonzero(L > t0))
            count = int(b.lengths.sum()) if data.per_step else hi - lo
        if data.per_step is None:
            return b, None
        if data.per_step:
            classes, values = pick(data.classes, 1), pick(data.values, 1)
        else:
            classes, values = pick(data.classes, 0), pick(data.values, 0)
            classes = None if classes is None else classes[lo:hi]
            values = None if values is None else values[lo:hi]
        return b, (None if classes is None else classes.reshape(-1),
                   None if values is None else values.reshape(-1),
                   data.per_step, lo, hi, count)

    @staticmethod
    def _unsort(arr, order, axis):
        if order is None:
            return arr
        out = np.empty_like(arr)
        index = [slice(None)] * arr.ndim
        index[axis] = order
        out[tuple(index)] = arr
        return out

    # -- the public computations ------------------------------------------------------

    def forward(self, x, h0=None, lengths=None):
        """Run the network over whole sequences.

        Parameters
        ----------
        x : array (T, B, D) of floats, or (T, B) of integer token ids
        h0 : array (B, H), optional
        lengths : array (B,) of int, optional

        Returns
        -------
        y : ndarray (T, B, O)
            The outputs g(W_y h_t + b_y): class probabilities for the softmax
            head, values for the linear head; 0 at padding steps.
        h_last : ndarray (B, H)
            Each sequence's state after its last valid step.

        NaN or infinite inputs are not refused here: they propagate.
        """
        W = self._weights()
        data = self._batch(x, h0, lengths, finite=False)
        b, _ = self._window(data, None, 0, data.T, data.h0)
        y, h_last = _elman.forward(*W, b.h0, b.X, b.tokens, b.batch_sizes,
                                   _NONLINEARITIES[self.nonlinearity], _OUTPUTS[self.output])
        return self._unsort(y, b.order, 1), self._unsort(h_last, b.order, 0)

    def predict(self, x, lengths=None):
        """The outputs ``y`` (T, B, O) for inputs ``x``, from a zero initial state.

        Same as ``forward(x, lengths=lengths)[0]``; for the softmax head,
        ``y.argmax(-1)`` gives the predicted classes.
        """
        return self.forward(x, lengths=lengths)[0]

    def step(self, x_t, h=None):
        """Advance the network by one time step (streaming inference).

        Parameters
        ----------
        x_t : array (B, D) of floats, or (B,) of integer token ids
        h : array (B, H), optional
            The state before the step; zeros when omitted.

        Returns
        -------
        y_t : ndarray (B, O)
            The outputs at this step (probabilities or values).
        h : ndarray (B, H)
            The state after it, to pass to the next call.

        ``y_t, h = model.step(x_t, h)`` over t gives the same outputs as one
        ``forward`` over the whole sequence.
        """
        x_t = _checks._as_array(x_t, "x_t")
        D = self.input_size
        if not (x_t.ndim == 1 and x_t.dtype.kind in "iu" or x_t.ndim == 2 and x_t.shape[1] == D):
            raise ValueError(f"x_t: expected floats of shape (B, {D}) or token ids of shape "
                             f"(B,), got {x_t.dtype} array of shape {x_t.shape}")
        if h is not None:
            h = _checks._as_array(h, "h")
            if h.shape != (x_t.shape[0], self.hidden_size):
                raise ValueError(f"h: expected shape ({x_t.shape[0]}, {self.hidden_size}), "
                                 f"got {h.shape}")
        y, h = self.forward(x_t[None], h0=h)
        return y[0], h

    def generate(self, length, *, prime=None, temperature=1.0, seed=None):
        """Sample a sequence of token ids, feeding each sample back as the next input.

        For a softmax model over a vocabulary, with ``input_size ==
        output_size`` (e.g. a character model).

        Parameters
        ----------
        length : int
            How many new tokens to sample.
        prime : sequence of int, optional
            Token ids fed first, to set the state; not part of the result.
            When omitted, the first input is drawn uniformly at random.
        temperature : float, default 1.0
            Sampling from softmax(z / temperature): lower is more
            conservative, higher more varied.
        seed : int or numpy Generator, optional
            The same seed gives the same sequence.

        Returns
        -------
        tokens : ndarray (length,) of int
        """
        if self.output != "softmax" or self.input_size != self.output_size:
            raise ValueError(f"generate: needs a softmax model with input_size == output_size, "
                             f"got output={self.output!r}, input_size={self.input_size}, "
                             f"output_size={self.output_size}")
        length = _checks.positive_int(length, "length")
        temperature = _checks.positive_float(temperature, "temperature")
        rng = np.random.default_rng(seed)
        V = self.output_size
        if prime is None:
            prime = rng.integers(V, size=1)
        prime = _checks._as_array(prime, "prime")
        if prime.dtype.kind not in "iu" or prime.ndim != 1 or prime.size == 0:
            raise ValueError(f"prime: expected a non-empty 1-D sequence of token ids, got "
                             f"{prime.dtype} array of shape {prime.shape}")
        if prime.min() < 0 or prime.max() >= V:
            raise ValueError(f"prime: token ids must lie in [0, {V}), "
                             f"got values in [{prime.min()}, {prime.max()}]")
        W = self._weights()
        nl, out = _NONLINEARITIES[self.nonlinearity], _OUTPUTS[self.output]
        _, tokens = _checks.inputs(prime[:, None], V, self.dtype, finite=False)
        h = np.zeros((1, self.hidden_size), dtype=self.dtype)
        one_step = np.ones(1, dtype=np.intp)
        fed = np.empty((1, 1), dtype=np.intp)      # the token fed back, reused every step
        result = np.empty(length, dtype=np.intp)
        y, h = _elman.forward(*W, h, None, tokens, np.ones(len(tokens), dtype=np.intp), nl, out)
        p = y[-1, 0].astype(np.float64)
        for i in range(length):
            if temperature != 1.0:
                # softmax(z / τ) from softmax(z): p^(1/τ), renormalised (log-space, stably)
                logp = np.log(np.maximum(p, np.finfo(np.float64).tiny)) / temperature
                p = np.exp(logp - logp.max())
            cdf = np.cumsum(p)
            token = min(int(np.searchsorted(cdf, rng.random() * cdf[-1], side="right")), V - 1)
            result[i] = token
            if i + 1 < length:
                fed[0, 0] = token
                y, h = _elman.forward(*W, h, None, fed, one_step, nl, out)
                p = y[0, 0].astype(np.float64)
        return result

    def loss_and_grad(self, x, target, h0=None, lengths=None, reduction="mean",
                      return_hidden_grads=False):
        """The loss and its gradient with respect to every parameter (BPTT).

        Parameters
        ----------
        x : array (T, B, D) of floats, or (T, B) of integer token ids
        target : array
            Softmax head: integer classes in [0, O), of shape (T, B) — one per
            step — or (B,) — one per sequence, scored at its last valid step.
            Linear head: floats of shape (T, B, O) or (B, O), likewise.
        h0 : array (B, H), optional
        lengths : array (B,) of int, optional
        reduction : {"mean", "sum"}, default "mean"
            "sum": L, the total over every counted (t, b) item; "mean": L
            divided by the number of counted items.
        return_hidden_grads : bool, default False
            Also return ‖∂L/∂h_t‖ for t = 1..T: how much gradient reaches
            each step, the view of vanishing and exploding gradients. Computed
            inside the backward loop, with no extra matrix product.

        Returns
        -------
        loss : float
        grads : dict of ndarray
            ∂loss/∂W with the same keys, shapes and dtype as ``params``.
        h_last : ndarray (B, H)
            Each sequence's state after its last valid step.
        hidden_grads : ndarray (T,), only with ``return_hidden_grads``
            ‖∂L/∂h_t‖ (Frobenius norm over the sequences still running at t).

        The per-item loss is −log softmax(z)[target] (softmax head) or
        ½‖z − target‖² (linear head), with z = W_y h_t + b_y. NaN or infinite
        values in ``x``, ``h0`` or ``target`` raise ValueError.
        """
        reduction = _checks.choice(reduction, "reduction", ("mean", "sum"))
        W = self._weights()
        data = self._data(x, target, lengths, h0=h0)
        b, tg = self._window(data, None, 0, data.T, data.h0)
        loss, grads, h_last, norms = self._run(W, b, tg, reduction == "mean",
                                               hidden=bool(return_hidden_grads))
        h_last = self._unsort(h_last, b.order, 0)
        if return_hidden_grads:
            return loss, grads, h_last, norms
        return loss, grads, h_last

    def _run(self, W, b, targets, mean, *, hidden=False, want_grads=True):
        """One call of the compiled loss (and BPTT) on a prepared window."""
        classes, values, per_step, lo, hi, count = targets
        norms = np.empty(b.T) if hidden else None
        loss, grads, h_last = _elman.loss_and_grad(
            *W, b.h0, b.X, b.tokens, b.batch_sizes, _NONLINEARITIES[self.nonlinearity],
            _OUTPUTS[self.output], classes, values, per_step,
            1.0 / count if mean and count else 1.0, lo, hi, norms, want_grads)
        return loss, None if grads is None else dict(zip(_KEYS, grads)), h_last, norms

    # -- training -------------------------------------------------------------------

    def fit(self, x, target, *, epochs=1, batch_size=32, optimizer="sgd", lr=0.01,
            clip_norm=None, clip_value=None, lengths=None, validation_data=None, bptt=None,
            callbacks=(), shuffle=True, seed=None, verbose=1):
        """Train on mini-batches of sequences; return the history.

        Parameters
        ----------
        x : array (T, N, D) of floats, or (T, N) of integer token ids
            N sequences, split into mini-batches of ``batch_size`` along N.
        target : array
            As for :meth:`loss_and_grad` with B = N: (T, N) or (N,) classes,
            (T, N, O) or (N, O) values.
        epochs : int, default 1
        batch_size : int, default 32
        optimizer : str or crnn.optim.Optimizer, default "sgd"
            "sgd", "momentum" (SGD with momentum 0.9), "adagrad", "rmsprop",
            "adam", or an optimizer built on this model's ``params``.
        lr : float, default 0.01
            Learning rate of an optimizer given by name.
        clip_norm : float, optional
            Clip each step's gradients to this total 2-norm (:func:`crnn.clip_grad_norm`).
        clip_value : float, optional
            Clamp each gradient to [−clip_value, clip_value] (before clip_norm).
        lengths : array (N,) of int, optional
        validation_data : tuple, optional
            ``(x_val, target_val)`` or ``(x_val, target_val, lengths_val)``,
            evaluated after each epoch.
        bptt : int, optional
            Truncated BPTT: each mini-batch is cut into windows of ``bptt``
            steps, one optimizer step per window; the hidden state passes
            from window to window but gradients stop at the boundaries, so
            memory is O(bptt·B·H) whatever T is.
        callbacks : sequence of crnn.callbacks.Callback
            E.g. ``[crnn.callbacks.EarlyStopping(patience=3)]``.
        shuffle : bool, default True
            Shuffle the sequences before each epoch.
        seed : int, optional
            Seed of the shuffling.
        verbose : int, default 1
            0 prints nothing; 1 a progress bar (tqdm when installed) and a
            line per epoch; 2 a line per epoch.

        Returns
        -------
        history : dict of lists, one value per epoch
            ``"loss"`` (mean training loss); with validation data
            ``"val_loss"``, and ``"val_accuracy"`` for the softmax head.

        If a step meets a non-finite loss or gradient, or anything else fails
        (including an interrupt), FloatingPointError (or the original error)
        is raised and ``params`` are restored to what they were before the call.
        """
        epochs = _checks.positive_int(epochs, "epochs")
        batch_size = _checks.positive_int(batch_size, "batch_size")
        clip_norm = _checks.positive_float(clip_norm, "clip_norm", allow_none=True)
        clip_value = _checks.positive_float(clip_value, "clip_value", allow_none=True)
        bptt = None if bptt is None else _checks.positive_int(bptt, "bptt")
        verbose = _verbosity(verbose)
        callbacks = _callbacks.check(callbacks)
        W = self._weights()
        optimizer = _optim.get(optimizer, self.params, _checks.positive_float(lr, "lr"))
        if optimizer.params is not self.params:
            raise ValueError("optimizer: must be built on this model's params "
                             "(e.g. crnn.Adam(model.params))")
        data = self._data(x, target, lengths)
        val = None if validation_data is None else self._validation(validation_data)
        rng = np.random.default_rng(seed)
        snapshot = [w.copy() for w in W]
        # A caller's optimizer is put back too, so that a failed fit changes nothing.
        saved_optimizer = optimizer.state_dict()
        history = {"loss": []}
        if val is not None:
            history["val_loss"] = []
            if self.output == "softmax":
                history["val_accuracy"] = []
        window = data.T if bptt is None else bptt
        steps_per_epoch = -(-data.B // batch_size) * -(-data.T // window)
        try:
            for cb in callbacks:
                cb.on_train_begin(self)
            for epoch in range(epochs):
                progress = _progress.Bar(steps_per_epoch, f"epoch {epoch + 1}/{epochs}",
                                         enabled=verbose == 1)
                order = rng.permutation(data.B) if shuffle else np.arange(data.B)
                total, count = 0.0, 0
                for lo in range(0, data.B, batch_size):
                    idx = order[lo:lo + batch_size]
                    h = np.zeros((len(idx), self.hidden_size), dtype=self.dtype)
                    for t0 in range(0, data.T, window):
                        b, tg = self._window(data, idx, t0, min(t0 + window, data.T), h)
                        if not b.batch_sizes[0]:
                            break       # every sequence of the batch has ended
                        n = tg[-1]
                        loss, grads, h, _ = self._run(self._weights(), b, tg, True,
                                                      want_grads=n > 0)
                        h = self._unsort(h, b.order, 0)
                        if n:
                            self._apply(grads, loss, optimizer, clip_norm, clip_value, epoch)
                            total += loss * n
                            count += n
                        progress.update(total / max(count, 1))
                logs = {"loss": total / max(count, 1)}
                if val is not None:
                    logs.update(self._evaluate(val))
                for key, value in logs.items():
                    history[key].append(value)
                progress.close()
                if verbose:
                    print(f"epoch {epoch + 1}/{epochs}  " + "  ".join(
                        f"{k} {v:.4g}" for k, v in logs.items()) +
                        f"  ({progress.elapsed:.2f} s)", file=sys.stdout, flush=True)
                if any([bool(cb.on_epoch_end(self, epoch, history)) for cb in callbacks]):
                    break
            for cb in callbacks:
                cb.on_train_end(self)
        except BaseException:
            for w, saved in zip(self._weights_unchecked(), snapshot):
                w[...] = saved
            optimizer.load_state_dict(saved_optimizer)
            raise
        return history

    def _apply(self, grads, loss, optimizer, clip_norm, clip_value, epoch):
        """Clip and apply one step's gradients, refusing non-finite ones."""
        if not np.isfinite(loss) or not all(map(_checks._all_finite, grads.values())):
            raise FloatingPointError(
                f"fit: non-finite loss or gradient in epoch {epoch + 1} (loss = {loss}); "
                f"parameters restored. Lower lr, or set clip_norm.")
        if clip_value is not None:
            clip_grad_value(grads, clip_value)
        if clip_norm is not None:
            clip_grad_norm(grads, clip_norm)
        optimizer.step(grads)

    def _validation(self, validation_data):
        if not isinstance(validation_data, (tuple, list)) or len(validation_data) not in (2, 3):
            raise TypeError("validation_data: expected (x_val, target_val) or "
                            "(x_val, target_val, lengths_val)")
        x_val, target_val, *lengths_val = validation_data
        return self._data(x_val, target_val, lengths_val[0] if lengths_val else None)

    def _evaluate(self, data, chunk=1024):
        """Mean loss (and accuracy, softmax head) over a prepared data set."""
        W = self._weights()
        nl, out = _NONLINEARITIES[self.nonlinearity], _OUTPUTS[self.output]
        total, count, correct = 0.0, 0, 0
        for lo in range(0, data.B, chunk):
            idx = np.arange(lo, min(lo + chunk, data.B))
            h = np.zeros((len(idx), self.hidden_size), dtype=self.dtype)
            b, tg = self._window(data, idx, 0, data.T, h)
            loss, _, _, _ = self._run(W, b, tg, False, want_grads=False)
            total, count = total + loss, count + tg[-1]
            if self.output == "softmax":
                y, _ = _elman.forward(*W, h, b.X, b.tokens, b.batch_sizes, nl, out)
                classes = tg[0]
                if data.per_step:
                    hit = y.argmax(-1) == classes.reshape(b.T, b.B)
                    valid = np.arange(b.T)[:, None] < (b.lengths if b.lengths is not None
                                                       else b.T)
                    correct += int(np.count_nonzero(hit & valid))
                else:
                    last = (b.lengths - 1) if b.lengths is not None else np.full(b.B, b.T - 1)
                    correct += int(np.count_nonzero(
                        y[last, np.arange(b.B)].argmax(-1) == classes))
        logs = {"val_loss": total / count}
        if self.output == "softmax":
            logs["val_accuracy"] = correct / count
        return logs

    def _weights_unchecked(self):
        return [self.params[k] for k in _KEYS]

    # -- saving and loading ---------------------------------------------------------------

    def _config(self):
        return {"format": _FORMAT, "input_size": self.input_size,
                "hidden_size": self.hidden_size, "output_size": self.output_size,
                "nonlinearity": self.nonlinearity, "output": self.output,
                "dtype": self.dtype.name}

    def save(self, path):
        """Save the weights and the configuration to an ``.npz`` file at ``path``.

        The file is written under a temporary name and renamed into place, so
        an interrupted save never leaves a truncated file behind.
        """
        self._save(path)

    def _save(self, path, **extra):
        """:meth:`save`, with ``extra`` arrays stored beside the weights (load ignores them)."""
        W = self._weights()
        path = os.fspath(path)
        folder, name = os.path.split(os.path.abspath(path))
        tmp = os.path.join(folder, f".{name}.{os.getpid()}.{uuid.uuid4().hex}.tmp")
        # os.open with 0o666 honours the umask, as open() would (mkstemp makes 0600 files).
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0),
                     0o666)
        try:
            with os.fdopen(fd, "wb") as f:
                np.savez(f, config=np.array(json.dumps(self._config())),
                         **dict(zip(_KEYS, W)), **extra)
            os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise


def _verbosity(verbose):
    if isinstance(verbose, (bool, np.bool_)):
        return int(verbose)
    if not isinstance(verbose, (int, np.integer)) or verbose not in (0, 1, 2):
        raise ValueError(f"verbose: expected 0 (silent), 1 (a progress bar and a line per "
                         f"epoch) or 2 (a line per epoch), got {verbose!r}")
    return int(verbose)


def load(path):
    """Load a model saved by :meth:`RNN.save`.

    Raises
    ------
    OSError
        The file is missing or unreadable.
    ValueError
        The file is not a crnn model file, or is corrupt.
    """
    path = os.fspath(path)
    with open(path, "rb") as f:     # OSError when missing or unreadable
        magic = f.read(4)
    if magic != b"PK\x03\x04":
        raise ValueError(f"path: {path!r} is not a crnn model file (not an .npz archive)")
    try:
        f = np.load(path, allow_pickle=False)
        if not isinstance(f, np.lib.npyio.NpzFile):
            raise ValueError("not an .npz archive")
        with f:
            contents = {k: f[k] for k in f.files}
    except (ValueError, zipfile.BadZipFile, EOFError, KeyError) as exc:
        raise ValueError(f"path: {path!r} is not a readable crnn model file ({exc})") from None
    if "config" not in contents:
        raise ValueError(f"path: {path!r} is not a crnn model file (no configuration)")
    try:
        config = json.loads(str(contents["config"]))
        if config.pop("format") != _FORMAT:
            raise ValueError("unknown format")
        model = RNN(**config)
    except (ValueError, TypeError, KeyError) as exc:
        raise ValueError(f"path: {path!r} has an invalid crnn configuration ({exc})") from None
    for key, shape in model._shapes().items():
        if key not in contents:
            raise ValueError(f"path: {path!r} is missing the parameter {key!r}")
        arr = contents[key]
        if arr.shape != shape or arr.dtype != model.dtype:
            raise ValueError(f"path: {path!r}: parameter {key!r} has shape {arr.shape} and "
                             f"dtype {arr.dtype}, expected {shape} and {model.dtype}")
        model.params[key] = np.ascontiguousarray(arr)
    return model
