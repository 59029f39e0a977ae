"""Training: ``fit``, the mini-batch loop shared by every model class."""

import sys
import warnings

import numpy as np

from crnn import _checks, _data, _progress, _signals
from crnn import callbacks as _callbacks
from crnn import optim as _optim
from crnn.clip import clip_grad_norm, clip_grad_value

__all__ = ["fit"]


def fit(model, x, target, *, epochs=1, batch_size=32, optimizer="sgd", lr=0.01,
        clip_norm=None, clip_value=None, lengths=None, validation_data=None, bptt=None,
        callbacks=(), shuffle=True, seed=None, verbose=1):
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
    callbacks = _callbacks.check(callbacks)
    model._sync()
    optimizer = _optim.get(optimizer, model.params, _checks.positive_float(lr, "lr"))
    if optimizer.params is not model.params:
        raise ValueError("optimizer: must be built on this model's params "
                         "(e.g. crnn.Adam(model.params))")
    data = _data.prepare(model, x, None, lengths, finite=True, target=target)
    val = None if validation_data is None else _validation(model, validation_data)
    rng = _checks.rng(seed, "seed")
    snapshot = model._flat.copy()
    # A caller's optimizer is put back too, so that a failed fit changes nothing.
    saved_optimizer = optimizer.state_dict()
    history: dict[str, list[float]] = {"loss": []}
    if val is not None:
        history["val_loss"] = []
        if model.output == "softmax":
            history["val_accuracy"] = []
    dW = np.zeros(model._engine.size, dtype=model.dtype)    # reused by every step
    window = data.T if bptt is None else bptt
    steps_per_epoch = -(-data.B // batch_size) * -(-data.T // window)
    with _signals.Guard() as guard:
        try:
            first_loss = _train(model, data, val, epochs, batch_size, window, steps_per_epoch,
                                optimizer, clip_norm, clip_value, callbacks, shuffle, verbose,
                                rng, dW, history, guard)
        except KeyboardInterrupt:
            model.history = history
            raise
        except BaseException:
            with guard.hold():      # whole, even if Ctrl-C comes meanwhile
                model._flat[...] = snapshot
                model.params.update(model._views)
                optimizer.load_state_dict(saved_optimizer)
            raise
    model.history = history
    _warn_if_diverged(first_loss, history["loss"])
    return history


def _train(model, data, val, epochs, batch_size, window, steps_per_epoch, optimizer,
           clip_norm, clip_value, callbacks, shuffle, verbose, rng, dW, history, guard):
    """The epochs of fit; returns the first step's loss (None if nothing was scored)."""
    first_loss = None
    for cb in callbacks:
        cb.on_train_begin(model)
    for epoch in range(epochs):
        progress = _progress.Bar(steps_per_epoch, f"epoch {epoch + 1}/{epochs}",
                                 enabled=verbose == 1)
        order = rng.permutation(data.B) if shuffle else np.arange(data.B)
        total, count = 0.0, 0
        for lo in range(0, data.B, batch_size):
            idx = order[lo:lo + batch_size]
            h = c = None
            for t0 in range(0, data.T, window):
                w = _data.window(model, data, idx, t0, min(t0 + window, data.T), h, c)
                if not w.bs[0]:
                    break       # every sequence of the batch has ended
                n = w.count
                masks = model._masks(rng, w) if model._dropping() else None
                loss, _, h, c = model._run(model._sync(), w, masks, True, grads=n > 0,
                                           dW=dW)
                h = _data.unsort(h, w.order, 1)
                c = None if c is None else _data.unsort(c, w.order, 1)
                if n:
                    with guard.hold():
                        _apply(model, dW, loss, optimizer, clip_norm, clip_value, epoch)
                    if first_loss is None:
                        first_loss = loss
                    total += loss * n
                    count += n
                progress.update(total / max(count, 1))
        logs = {"loss": total / max(count, 1)}
        if val is not None:
            logs.update(_evaluate(model, val))
        for key, value in logs.items():
            history[key].append(value)
        progress.close()
        if verbose:
            print(f"epoch {epoch + 1}/{epochs}  " + "  ".join(
                f"{k} {v:.4g}" for k, v in logs.items()) +
                f"  ({progress.elapsed:.2f} s)", file=sys.stdout, flush=True)
        if any([bool(cb.on_epoch_end(model, epoch, history)) for cb in callbacks]):
            break
    for cb in callbacks:
        cb.on_train_end(model)
    return first_loss


def _warn_if_diverged(first, losses):
    if first is None or not losses or not first > 0 or not losses[-1] > 10 * first:
        return
    warnings.warn(f"fit: training diverged: the loss rose from {first:.4g} (first step) to "
                  f"{losses[-1]:.4g} (last epoch); lower lr, or set clip_norm",
                  RuntimeWarning, stacklevel=3)


def _apply(model, dW, loss, optimizer, clip_norm, clip_value, epoch):
    """Clip and apply one step's gradients, refusing non-finite ones."""
    if not np.isfinite(loss) or not _checks._all_finite(dW):
        raise FloatingPointError(
            f"fit: non-finite loss or gradient in epoch {epoch + 1} (loss = {loss}); "
            f"parameters restored. Lower lr, or set clip_norm.")
    grads = model._unflatten(dW)
    if clip_value is not None:
        clip_grad_value(grads, clip_value)
    if clip_norm is not None:
        clip_grad_norm(grads, clip_norm)
    optimizer.step(grads)


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


def _evaluate(model, data, chunk=1024):
    """Mean loss (and accuracy, softmax head) over a prepared data set, without dropout."""
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
    logs = {"val_loss": total / count}
    if model.output == "softmax":
        logs["val_accuracy"] = correct / count
    return logs
