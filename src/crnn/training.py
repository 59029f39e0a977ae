"""Training: ``fit``, the mini-batch loop shared by every model class."""

import sys
import warnings

import numpy as np

from crnn import _checks, _data, _distributed, _fused, _progress, _signals
from crnn import callbacks as _callbacks
from crnn import optim as _optim
from crnn.clip import clip_grad_norm, clip_grad_value

__all__ = ["fit"]


def fit(model, x, target, *, epochs=1, batch_size=32, optimizer="sgd", lr=0.01,
        clip_norm=None, clip_value=None, lengths=None, validation_data=None, bptt=None,
        callbacks=(), shuffle=True, seed=None, verbose=1, comm=None):
    """Train ``model`` on mini-batches of sequences; return the history.

    Parameters
    ----------
    x : array (T, N, D) of floats, or (T, N) of integer token ids
        N sequences, split into mini-batches of ``batch_size`` along N.
    target : array
        As for ``loss_and_grad`` with B = N: (T, N) or (N,) classes, (T, N, O)
        or (N, O) values.
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
        steps, one optimizer step per window; the states pass from window to
        window but gradients stop at the boundaries, so memory is
        O(bptt·B·H) whatever T is. One-direction models only.
    callbacks : sequence of crnn.callbacks.Callback
        E.g. ``[crnn.callbacks.EarlyStopping(patience=3)]``.
    shuffle : bool, default True
        Shuffle the sequences before each epoch.
    seed : int, optional
        Seed of the shuffling and of the dropout masks.
    verbose : int, default 1
        0 prints nothing; 1 a progress bar (tqdm when installed) and a line
        per epoch; 2 a line per epoch.
    comm : mpi4py communicator, optional
        Data-parallel training over MPI (e.g. ``MPI.COMM_WORLD``; needs
        ``crnn[mpi]``): every rank passes its own shard of the data and the
        same arguments. Rank 0's parameters and optimizer state are
        broadcast first; each step sums the ranks' gradients and counts in
        one Allreduce, so "mean" is the mean over the global batch (the
        concatenation of the ranks' mini-batches) and every rank applies the
        same update. A checksum proves the model identical on every rank
        after each epoch. Validation metrics are over every rank's shard;
        only rank 0 prints. By default each rank uses its node's CPUs
        divided by the ranks on that node. An error on one rank stops every
        rank: with that rank's message when the ranks can agree on it (bad
        input, a non-finite loss), else (and on Ctrl-C) by aborting the job.

    Returns
    -------
    history : dict of lists, one value per epoch
        ``"loss"`` (mean training loss); with validation data ``"val_loss"``,
        and ``"val_accuracy"`` for the softmax head.

    The history is also kept as ``model.history``.

    Ctrl-C (KeyboardInterrupt) stops training and keeps what it learned: the
    parameters and the optimizer's state after the last completed update
    (an update is never left half-applied), and the completed epochs'
    history as ``model.history``; then the KeyboardInterrupt propagates. If
    a step meets a non-finite loss or gradient, or anything else fails,
    FloatingPointError (or the original error) is raised and ``params`` (and
    the optimizer) are restored to what they were before the call. A
    RuntimeWarning says when training diverged: the last epoch's loss ends
    over 10 times the first step's.
    """
    ranks = None if comm is None else _distributed.Ranks(comm)
    epochs = _checks.positive_int(epochs, "epochs")
    batch_size = _checks.positive_int(batch_size, "batch_size")
    clip_norm = _checks.positive_float(clip_norm, "clip_norm", allow_none=True)
    clip_value = _checks.positive_float(clip_value, "clip_value", allow_none=True)
    bptt = None if bptt is None else _checks.positive_int(bptt, "bptt")
    if bptt is not None and model.bidirectional:
        raise ValueError("bptt: truncated BPTT needs a one-direction model (the reverse "
                         "direction reads each sequence from its end); this one is "
                         "bidirectional")
    verbose = _verbosity(verbose)
    if ranks is not None and ranks.rank != 0:
        verbose = 0
    callbacks = _callbacks.check(callbacks)
    model._sync()
    optimizer = _optim.get(optimizer, model.params, _checks.positive_float(lr, "lr"))
    if optimizer.params is not model.params:
        raise ValueError("optimizer: must be built on this model's params "
                         "(e.g. crnn.Adam(model.params))")
    rng = _checks.rng(seed, "seed")
    data = val = error = None
    try:
        data = _data.prepare(model, x, None, lengths, finite=True, target=target)
        val = None if validation_data is None else _validation(model, validation_data)
    except (TypeError, ValueError) as exc:
        if ranks is None:
            raise
        error = exc
    except BaseException as exc:
        if ranks is None or ranks.size == 1:
            raise
        ranks.abort(exc)        # e.g. MemoryError: the other ranks would wait for it
    if ranks is not None:
        ranks.agree(error)      # bad data on any rank stops every rank, with its message
    assert data is not None
    loop = _Loop(model, data, val, epochs, batch_size, data.T if bptt is None else bptt,
                 optimizer, clip_norm, clip_value, callbacks, shuffle, verbose, rng, ranks)
    snapshot = model._flat.copy()
    # A caller's optimizer is put back too, so that a failed fit changes nothing.
    saved_optimizer = optimizer.state_dict()
    with _signals.Guard() as guard, _distributed.threads_for(ranks):
        loop.guard = guard
        try:
            if ranks is not None:
                ranks.broadcast(model, optimizer)
            loop.run()
        except KeyboardInterrupt as exc:
            model.history = loop.history
            if ranks is not None and ranks.size > 1:
                ranks.abort(exc)
            raise
        except BaseException as exc:
            if ranks is not None and ranks.size > 1 and not getattr(exc, "_collective", False):
                ranks.abort(exc)    # the other ranks cannot know: end the job
            with guard.hold():      # whole, even if Ctrl-C comes meanwhile
                model._flat[...] = snapshot
                model.params.update(model._views)
                optimizer.load_state_dict(saved_optimizer)
            raise
    model.history = loop.history
    _warn_if_diverged(loop.first_loss, loop.history["loss"])
    return loop.history


class _Loop:
    """The epochs of fit, on one process or on every rank of a communicator."""

    def __init__(self, model, data, val, epochs, batch_size, window, optimizer, clip_norm,
                 clip_value, callbacks, shuffle, verbose, rng, ranks):
        self.model, self.data, self.val, self.epochs = model, data, val, epochs
        self.batch_size, self.window, self.optimizer = batch_size, window, optimizer
        self.clip_norm, self.clip_value, self.callbacks = clip_norm, clip_value, callbacks
        self.shuffle, self.verbose, self.rng, self.ranks = shuffle, verbose, rng, ranks
        self.guard = _signals.Guard()       # fit enters its own: this one holds nothing
        self.first_loss = None
        self.history: dict[str, list[float]] = {"loss": []}
        # Distributed, every rank reports validation metrics if any rank has data
        # (a collective call, so made on every rank alike).
        has_val = val is not None if ranks is None else bool(ranks.max(int(val is not None)))
        if has_val:
            self.history["val_loss"] = []
            if model.output == "softmax":
                self.history["val_accuracy"] = []
        # Reused by every step; distributed, with the entries that carry the loss and
        # the count through the same Allreduce.
        size = model._engine.size
        self.buf = np.zeros(size, dtype=model.dtype) if ranks is None else \
            ranks.step_buffer(model)
        self.dW = self.buf[:size]

    def _batches(self, order):
        """This process's mini-batches of an epoch (index arrays)."""
        return [order[lo:lo + self.batch_size] for lo in range(0, self.data.B, self.batch_size)]

    def _windows(self, idx):
        """The steps of one mini-batch: (window, states), where the caller puts the
        window's final states into ``states`` for the next window."""
        model, data = self.model, self.data
        states = [None, None]
        for t0 in range(0, data.T, self.window):
            w = _data.window(model, data, idx, t0, min(t0 + self.window, data.T), *states)
            if not w.bs[0]:
                return      # every sequence of the batch has ended
            yield w, states

    def _plan(self, batches):
        """Steps of each mini-batch: ceil(longest sequence / window). Distributed, the
        most that any rank takes at each batch index, so that the ranks' steps (and
        their Allreduces) pair up; a rank with fewer adds nothing to the extra ones."""
        longest = [self.data.T if self.data.lengths is None else
                   int(self.data.lengths[idx].max()) for idx in batches]
        steps = np.array([-(-n // self.window) for n in longest], dtype=np.int64)
        if self.ranks is not None:
            steps = self.ranks.max_each(steps)
        return steps

    def run(self):
        model, ranks = self.model, self.ranks
        for cb in self.callbacks:
            cb.on_train_begin(model)
        for epoch in range(self.epochs):
            order = self.rng.permutation(self.data.B) if self.shuffle else np.arange(self.data.B)
            batches = self._batches(order)
            plan = self._plan(batches)
            progress = _progress.Bar(int(plan.sum()), f"epoch {epoch + 1}/{self.epochs}",
                                     enabled=self.verbose == 1)
            total, count = 0.0, 0
            for b, steps in enumerate(plan):
                windows = self._windows(batches[b]) if b < len(batches) else iter(())
                for _ in range(steps):
                    loss, n = self._step(next(windows, None), epoch)
                    total, count = total + loss * n, count + n
                    progress.update(total / max(count, 1))
            logs = {"loss": total / max(count, 1)}
            if ranks is not None:
                ranks.check_same(model, epoch)
            if "val_loss" in self.history:
                logs.update(_evaluate(model, self.val, ranks))
            with self.guard.hold():     # every list one longer, or none
                for key, value in logs.items():
                    self.history[key].append(value)
            progress.close()
            if self.verbose:
                print(f"epoch {epoch + 1}/{self.epochs}  " + "  ".join(
                    f"{k} {v:.4g}" for k, v in logs.items()) +
                    f"  ({progress.elapsed:.2f} s)", file=sys.stdout, flush=True)
            stop = any([bool(cb.on_epoch_end(model, epoch, self.history))
                        for cb in self.callbacks])
            if ranks is not None:       # one rank's callback stops every rank
                stop = bool(ranks.max(int(stop)))
            if stop:
                break
        with self.guard.hold():         # e.g. EarlyStopping's restore of the best weights
            for cb in self.callbacks:
                cb.on_train_end(model)

    def _step(self, item, epoch):
        """One step: the loss and gradients of a window (this process's, or the sum over
        the ranks), then the update; returns (mean loss, items scored)."""
        model, ranks = self.model, self.ranks
        loss, n = 0.0, 0
        if item is not None:
            w, states = item
            n = w.count
            masks = model._masks(self.rng, w) if model._dropping() else None
            if ranks is None and n:
                # The loss, the gradients, clipping and the update in one compiled call.
                loss, h, c, updated = _fused.step(model, model._sync(), w, masks, True,
                                                  self.optimizer, self.clip_norm,
                                                  self.clip_value, self.dW, self.guard)
                if not updated:
                    raise _nonfinite(loss, epoch)
                states[0] = _data.unsort(h, w.order, 1)
                states[1] = None if c is None else _data.unsort(c, w.order, 1)
                if self.first_loss is None:
                    self.first_loss = loss
                return loss, n
            # Distributed, the sums: the mean is taken over every rank's items.
            loss, _, h, c = model._run(model._sync(), w, masks, ranks is None, grads=n > 0,
                                       dW=self.dW)
            states[0] = _data.unsort(h, w.order, 1)
            states[1] = None if c is None else _data.unsort(c, w.order, 1)
        if ranks is not None:
            if not n:       # nothing scored here: add zeros to the others' sums
                self.dW[...] = 0
            local = loss
            loss, n, _ = ranks.reduce(self.buf, loss, n)
            if not np.isfinite(loss):       # (every rank sees the same sum) which rank?
                ranks.name_nonfinite(local, epoch)
        if n:
            with self.guard.hold():
                _apply(model, self.dW, loss, self.optimizer, self.clip_norm, self.clip_value,
                       epoch, collective=ranks is not None)
            if self.first_loss is None:
                self.first_loss = loss
        return loss, n


def _warn_if_diverged(first, losses):
    if first is None or not losses or not first > 0 or not losses[-1] > 10 * first:
        return
    warnings.warn(f"fit: training diverged: the loss rose from {first:.4g} (first step) to "
                  f"{losses[-1]:.4g} (last epoch); lower lr, or set clip_norm",
                  RuntimeWarning, stacklevel=3)


def _apply(model, dW, loss, optimizer, clip_norm, clip_value, epoch, collective=False):
    """Clip and apply one step's gradients, refusing non-finite ones (``collective``: the
    gradients are the ranks' sum, so every rank refuses them alike)."""
    if not np.isfinite(loss) or not _checks._all_finite(dW):
        exc = _nonfinite(loss, epoch)
        raise _distributed._collective(exc) if collective else exc
    grads = model._unflatten(dW)
    if clip_value is not None:
        clip_grad_value(grads, clip_value)
    if clip_norm is not None:
        clip_grad_norm(grads, clip_norm)
    optimizer.step(grads)


def _nonfinite(loss, epoch):
    return FloatingPointError(f"fit: non-finite loss or gradient in epoch {epoch + 1} (loss = "
                              f"{loss}); parameters restored. Lower lr, or set clip_norm.")


def _verbosity(verbose):
    if isinstance(verbose, (bool, np.bool_)):
        return int(verbose)
    if not isinstance(verbose, (int, np.integer)) or verbose not in (0, 1, 2):
        raise ValueError(f"verbose: expected 0 (silent), 1 (a progress bar and a line per "
                         f"epoch) or 2 (a line per epoch), got {verbose!r}")
    return int(verbose)


def _validation(model, validation_data):
    if not isinstance(validation_data, (tuple, list)) or len(validation_data) not in (2, 3):
        raise TypeError("validation_data: expected (x_val, target_val) or "
                        "(x_val, target_val, lengths_val)")
    x_val, target_val, *lengths_val = validation_data
    try:
        return _data.prepare(model, x_val, None, lengths_val[0] if lengths_val else None,
                             finite=True, target=target_val)
    except (TypeError, ValueError) as exc:
        raise type(exc)(f"validation_data: {exc}") from None


def _evaluate(model, data, ranks=None, chunk=1024):
    """Mean loss (and accuracy, softmax head) over a prepared data set (None: no data
    on this rank), without dropout; over every rank's data when ``ranks`` is given."""
    total, count, correct = _evaluate_sums(model, data, chunk) if data is not None \
        else (0.0, 0, 0)
    if ranks is not None:
        total, count, correct = ranks.sums([total, count, correct])
    logs = {"val_loss": total / count}
    if model.output == "softmax":
        logs["val_accuracy"] = correct / count
    return logs


def _evaluate_sums(model, data, chunk):
    """(Σ loss, items, correct predictions) over a prepared data set."""
    W = model._sync()
    total, count, correct = 0.0, 0, 0
    for lo in range(0, data.B, chunk):
        idx = np.arange(lo, min(lo + chunk, data.B))
        w = _data.window(model, data, idx, 0, data.T, None, None)
        loss, _, h, _ = model._run(W, w, None, False, grads=False)
        total, count = total + loss, count + w.count
        if model.output != "softmax":
            continue
        if data.per_step:
            y = np.empty((w.T, w.B, model.output_size), dtype=model.dtype)
            hh, cc = model._new_states(w.B)
            model._engine.forward(W, w.X, w.tokens, w.B, w.bs, w.rev, None, None, model._out, y,
                                  hh, cc)
            hit = y.argmax(-1) == w.classes.reshape(w.T, w.B)
            valid = np.arange(w.B)[None, :] < w.bs[:, None]
            correct += int(np.count_nonzero(hit & valid))
        else:
            z = model._final_logits(W, h)
            correct += int(np.count_nonzero(z.argmax(-1) == w.classes))
    return total, count, correct
