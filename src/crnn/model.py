"""The Elman recurrent network: parameters, forward, loss and gradients, training, I/O."""

import json
import os
import sys
import tempfile
import time
import zipfile

import numpy as np

from crnn import _checks, _elman
from crnn.clip import clip_grad_norm
from crnn.optim import SGD

__all__ = ["RNN", "load"]

_NONLINEARITIES = {"tanh": _elman.TANH, "relu": _elman.RELU}
_OUTPUTS = {"softmax": _elman.SOFTMAX, "linear": _elman.LINEAR}
_KEYS = ("W_x", "W_h", "b_h", "W_y", "b_y")
_FORMAT = "crnn.RNN/1"


class _Batch:
    """Inputs checked, converted and sorted longest first for the kernels."""

    __slots__ = ("X", "tokens", "h0", "batch_sizes", "order", "lengths", "T", "B")


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

    def _batch(self, x, h0, lengths, *, finite):
        b = _Batch()
        b.X, b.tokens = _checks.inputs(x, self.input_size, self.dtype, finite=finite)
        b.T, b.B = (b.X if b.X is not None else b.tokens).shape[:2]
        _checks.check_sizes(b.T, b.B, self.input_size, self.hidden_size, self.output_size)
        b.h0 = _checks.hidden(h0, b.B, self.hidden_size, self.dtype, finite=finite)
        lens = _checks.lengths_(lengths, b.T, b.B)
        b.order = None
        if lens is None:
            b.batch_sizes = np.full(b.T, b.B, dtype=np.intp)
        else:
            if np.any(lens[1:] > lens[:-1]):
                # The kernels want the longest sequences first, so that the
                # rows still running at step t are the first batch_sizes[t].
                b.order = np.argsort(-lens, kind="stable")
                lens = lens[b.order]
                if b.X is not None:
                    b.X = np.take(b.X, b.order, axis=1)
                else:
                    b.tokens = np.take(b.tokens, b.order, axis=1)
                b.h0 = b.h0[b.order]
            # batch_sizes[t] = number of sequences with length > t
            b.batch_sizes = b.B - np.cumsum(np.bincount(lens, minlength=b.T + 1)[:b.T])
            b.batch_sizes = b.batch_sizes.astype(np.intp)
        b.lengths = lens
        return b

    def _targets(self, target, b):
        classes, values, per_step = _checks.targets(
            target, self.output, b.T, b.B, self.output_size, self.dtype)
        if b.order is not None:
            axis = 1 if per_step else 0
            if classes is not None:
                classes = np.take(classes, b.order, axis=axis)
            else:
                values = np.take(values, b.order, axis=axis)
        if per_step:
            count = b.T * b.B if b.lengths is None else int(b.lengths.sum())
        else:
            count = b.B
        return (None if classes is None else classes.reshape(-1),
                None if values is None else values.reshape(-1), per_step, count)

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
        b = self._batch(x, h0, lengths, finite=False)
        y, h_last = _elman.forward(*W, b.h0, b.X, b.tokens, b.batch_sizes,
                                   _NONLINEARITIES[self.nonlinearity], _OUTPUTS[self.output])
        return self._unsort(y, b.order, 1), self._unsort(h_last, b.order, 0)

    def predict(self, x, lengths=None):
        """The outputs ``y`` (T, B, O) for inputs ``x``, from a zero initial state.

        Same as ``forward(x, lengths=lengths)[0]``; for the softmax head,
        ``y.argmax(-1)`` gives the predicted classes.
        """
        return self.forward(x, lengths=lengths)[0]

    def loss_and_grad(self, x, target, h0=None, lengths=None, reduction="mean"):
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

        Returns
        -------
        loss : float
        grads : dict of ndarray
            ∂loss/∂W with the same keys, shapes and dtype as ``params``.
        h_last : ndarray (B, H)
            Each sequence's state after its last valid step.

        The per-item loss is −log softmax(z)[target] (softmax head) or
        ½‖z − target‖² (linear head), with z = W_y h_t + b_y. NaN or infinite
        values in ``x``, ``h0`` or ``target`` raise ValueError.
        """
        reduction = _checks.choice(reduction, "reduction", ("mean", "sum"))
        W = self._weights()
        b = self._batch(x, h0, lengths, finite=True)
        classes, values, per_step, count = self._targets(target, b)
        return self._loss_and_grad(W, b, classes, values, per_step,
                                   1.0 / count if reduction == "mean" else 1.0)

    def _loss_and_grad(self, W, b, classes, values, per_step, scale):
        loss, grads, h_last = _elman.loss_and_grad(
            *W, b.h0, b.X, b.tokens, b.batch_sizes, _NONLINEARITIES[self.nonlinearity],
            _OUTPUTS[self.output], classes, values, per_step, scale)
        return loss, dict(zip(_KEYS, grads)), self._unsort(h_last, b.order, 0)

    # -- training -------------------------------------------------------------------

    def fit(self, x, target, *, epochs=1, batch_size=32, lr=0.01, clip_norm=None,
            lengths=None, shuffle=True, seed=None, verbose=1):
        """Train with mini-batch SGD over the batch axis; return the history.

        Parameters
        ----------
        x : array (T, N, D) of floats, or (T, N) of integer token ids
            N sequences, split into mini-batches of ``batch_size``.
        target : array
            As for :meth:`loss_and_grad` with B = N: (T, N) or (N,) classes,
            (T, N, O) or (N, O) values.
        epochs : int, default 1
        batch_size : int, default 32
        lr : float, default 0.01
            SGD learning rate.
        clip_norm : float, optional
            Clip each step's gradients to this total 2-norm
            (:func:`crnn.clip_grad_norm`).
        lengths : array (N,) of int, optional
        shuffle : bool, default True
            Shuffle the sequences before each epoch.
        seed : int, optional
            Seed of the shuffling.
        verbose : int, default 1
            0 prints nothing; 1 prints one line per epoch.

        Returns
        -------
        history : dict
            ``"loss"``: the mean training loss of each epoch.

        If a step meets a non-finite loss or gradient, or anything else fails,
        FloatingPointError (or the original error) is raised and ``params``
        are restored to what they were before the call.
        """
        epochs = _checks.positive_int(epochs, "epochs")
        batch_size = _checks.positive_int(batch_size, "batch_size")
        lr = _checks.positive_float(lr, "lr")
        clip_norm = _checks.positive_float(clip_norm, "clip_norm", allow_none=True)
        verbose = _verbosity(verbose)
        W = self._weights()
        data = self._batch(x, None, lengths, finite=True)
        classes, values, per_step, _ = self._targets(target, data)
        N, T, O = data.B, data.T, self.output_size
        rng = np.random.default_rng(seed)
        snapshot = [w.copy() for w in W]
        optimizer = SGD(self.params, lr)
        history = {"loss": []}
        try:
            for epoch in range(epochs):
                start = time.perf_counter()
                order = rng.permutation(N) if shuffle else np.arange(N)
                total, count = 0.0, 0
                for lo in range(0, N, batch_size):
                    idx = np.sort(order[lo:lo + batch_size]) if data.lengths is not None \
                        else order[lo:lo + batch_size]
                    b = _subset(data, idx)
                    if per_step:
                        cb = None if classes is None else classes.reshape(T, N)[:, idx].reshape(-1)
                        vb = None if values is None else values.reshape(T, N, O)[:, idx].reshape(-1)
                    else:
                        cb = None if classes is None else classes[idx]
                        vb = None if values is None else values.reshape(N, O)[idx].reshape(-1)
                    n = (b.T * b.B if b.lengths is None else int(b.lengths.sum())) \
                        if per_step else b.B
                    loss, grads, _ = self._loss_and_grad(self._weights(), b, cb, vb,
                                                         per_step, 1.0 / n)
                    if not np.isfinite(loss) or not all(map(_checks._all_finite, grads.values())):
                        raise FloatingPointError(
                            f"fit: non-finite loss or gradient at epoch {epoch + 1}, "
                            f"sequences {lo}..{lo + len(idx) - 1} (loss = {loss}); parameters "
                            f"restored. Lower lr or set clip_norm.")
                    if clip_norm is not None:
                        clip_grad_norm(grads, clip_norm)
                    optimizer.step(grads)
                    total += loss * n
                    count += n
                history["loss"].append(total / count)
                if verbose:
                    print(f"epoch {epoch + 1}/{epochs}  loss {total / count:.6g}  "
                          f"({time.perf_counter() - start:.2f} s)", file=sys.stdout, flush=True)
        except BaseException:
            for w, saved in zip(self._weights_unchecked(), snapshot):
                w[...] = saved
            raise
        return history

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
        W = self._weights()
        path = os.fspath(path)
        folder = os.path.dirname(os.path.abspath(path))
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".crnn-", suffix=".npz.tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                np.savez(f, config=np.array(json.dumps(self._config())),
                         **dict(zip(_KEYS, W)))
            os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise


def _verbosity(verbose):
    if isinstance(verbose, (bool, np.bool_)):
        return int(verbose)
    if not isinstance(verbose, (int, np.integer)) or verbose < 0:
        raise ValueError(f"verbose: expected 0 (silent) or 1 (a line per epoch), got {verbose!r}")
    return int(verbose)


def _subset(data, idx):
    """The mini-batch of sequences ``idx`` (sorted indices keep the length order)."""
    b = _Batch()
    b.T, b.B = data.T, len(idx)
    b.X = None if data.X is None else np.take(data.X, idx, axis=1)
    b.tokens = None if data.tokens is None else np.take(data.tokens, idx, axis=1)
    b.h0 = np.zeros((b.B, data.h0.shape[1]), dtype=data.h0.dtype)
    b.order = None
    if data.lengths is None:
        b.lengths = None
        b.batch_sizes = np.full(b.T, b.B, dtype=np.intp)
    else:
        b.lengths = data.lengths[idx]
        b.batch_sizes = (b.B - np.cumsum(np.bincount(b.lengths, minlength=b.T + 1)[:b.T])
                         ).astype(np.intp)
    return b


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
