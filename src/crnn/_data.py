"""One call's data for the engine: checked and converted once (``_checks``), then
put in the engine's order.

The engine wants the sequences of a batch sorted by length, longest first,
so that the rows still running at step t are the first ``bs[t]``; and, for
bidirectional models, the reverse direction's order of rows, ``rev``: row
s·B + b of that direction reads step len_b − 1 − s of sequence b (padding
rows, s >= len_b, map to themselves). ``rev`` is its own inverse.
"""

from typing import Any

import numpy as np

from crnn import _checks


class Data:
    """A set of sequences in the caller's order, checked and converted."""

    __slots__ = ("X", "tokens", "T", "B", "lengths", "h0", "c0", "classes", "values",
                 "per_step")
    X: Any
    tokens: Any
    T: int
    B: int
    lengths: Any
    h0: Any
    c0: Any
    classes: Any
    values: Any
    per_step: Any


class Window:
    """Rows ready for the engine: steps [t0, t1) of some sequences, sorted by length.

    ``order`` maps sorted rows to the caller's (None when already in order);
    targets are ``classes`` or ``values`` (flattened), one per step or, per
    sequence, for the scored rows lo..hi-1; ``count`` items are scored.
    """

    __slots__ = ("X", "tokens", "T", "B", "order", "bs", "rev", "h0", "c0", "classes",
                 "values", "per_step", "lo", "hi", "count")
    X: Any
    tokens: Any
    T: int
    B: int
    order: Any
    bs: Any
    rev: Any
    h0: Any
    c0: Any
    classes: Any
    values: Any
    per_step: Any
    lo: int
    hi: int
    count: int


def prepare(model, x, h0, lengths, *, finite, target=None, h0_name="h0", batch_first=None):
    """Check and convert a call's inputs (and targets) for ``model``; ``x`` and a
    per-step ``target`` are time-major already (messages speak of the user's layout,
    ``model.batch_first`` unless ``batch_first`` says otherwise)."""
    bf = model.batch_first if batch_first is None else batch_first
    d = Data()
    d.X, d.tokens = _checks.inputs(x, model.input_size, model.dtype, finite=finite,
                                   widest=model._widest, batch_first=bf)
    arr = d.X if d.X is not None else d.tokens
    d.T, d.B = arr.shape[:2]
    d.h0, d.c0 = _checks.states(h0, h0_name, model._nstates, d.B, model.hidden_size,
                                model.dtype, finite=finite, pair=model._has_c)
    d.lengths = _checks.lengths_(lengths, d.T, d.B, bf)
    d.classes = d.values = d.per_step = None
    if target is not None:
        d.classes, d.values, d.per_step = _checks.targets(
            target, model.output, d.T, d.B, model.output_size, model.dtype, bf)
    return d


def window(model, data, idx, t0, t1, h0, c0):
    """Sequences ``idx`` (all when None) over steps [t0, t1) of ``data``, for the engine.

    ``h0``/``c0`` ((L·dirs, len(idx), H) or None) are in the order of ``idx``.
    Only this window's rows are copied, so memory follows the window, not
    the data set. With one target per sequence, only the sequences whose
    last valid step falls in the window are scored: rows lo..hi-1, which are
    contiguous since the rows are sorted by length.
    """
    w = Window()
    w.T, w.order = t1 - t0, None
    L = None
    if data.lengths is not None:
        L = data.lengths if idx is None else data.lengths[idx]
        if np.any(L[1:] > L[:-1]):
            order = np.argsort(-L, kind="stable")
            L = L[order]
            idx = order if idx is None else idx[order]
            w.order = order
    whole = idx is None
    w.B = data.B if whole else len(idx)
    w.h0 = _rows(h0, w.order)
    w.c0 = _rows(c0, w.order)

    def pick(arr, axis):
        if arr is None:
            return None
        if axis == 1 and (t0, t1) != (0, data.T):
            arr = arr[t0:t1]
        return arr if whole else np.take(arr, idx, axis=axis)

    w.X, w.tokens = pick(data.X, 1), pick(data.tokens, 1)
    if L is None:
        steps = None
        w.bs = np.full(w.T, w.B, dtype=np.intp)
        lo, hi = 0, (w.B if t1 == data.T else 0)
        count = w.T * w.B if data.per_step else hi
    else:
        steps = np.clip(L - t0, 0, w.T)      # steps of each sequence in this window
        # bs[t] = number of sequences with more than t steps here
        w.bs = (w.B - np.cumsum(np.bincount(steps, minlength=w.T + 1)[:w.T])).astype(np.intp)
        lo, hi = int(np.count_nonzero(L > t1)), int(np.count_nonzero(L > t0))
        count = int(steps.sum()) if data.per_step else hi - lo
    w.rev = _reverse_rows(steps, w.T, w.B) if model.bidirectional else None
    w.per_step, w.lo, w.hi, w.count = data.per_step, lo, hi, count
    w.classes = w.values = None
    if data.per_step is None:
        return w
    if data.per_step:
        classes, values = pick(data.classes, 1), pick(data.values, 1)
    else:
        classes, values = pick(data.classes, 0), pick(data.values, 0)
        classes = None if classes is None else classes[lo:hi]
        values = None if values is None else values[lo:hi]
    w.classes = None if classes is None else np.ascontiguousarray(classes).reshape(-1)
    w.values = None if values is None else np.ascontiguousarray(values)
    return w


def _rows(states, order):
    """States (L·dirs, B, H) in sorted row order."""
    if states is None or order is None:
        return states
    return np.ascontiguousarray(states[:, order])


def _reverse_rows(steps, T, B):
    """The reverse direction's row order (see the module docstring)."""
    s = np.arange(T, dtype=np.intp)[:, None]
    b = np.arange(B, dtype=np.intp)[None, :]
    if steps is None:
        t = np.broadcast_to(T - 1 - s, (T, B))
    else:
        n = steps[None, :]
        t = np.where(s < n, n - 1 - s, s)
    return np.ascontiguousarray(t * B + b, dtype=np.intp).reshape(-1)


def unsort(arr, order, axis):
    """Rows of ``arr`` along ``axis`` back in the caller's order."""
    if order is None:
        return arr
    out = np.empty_like(arr)
    index = [slice(None)] * arr.ndim
    index[axis] = order
    out[tuple(index)] = arr
    return out


def dropout_masks(rng, num_layers, T, B, width, p, dtype):
    """The dropout multipliers between layers: (num_layers − 1, T, B, width), each
    entry 0 with probability p and 1/(1 − p) otherwise, in the caller's row order."""
    keep = rng.random((num_layers - 1, T, B, width)) >= p
    return np.where(keep, 1.0 / (1.0 - p), 0.0).astype(dtype)
