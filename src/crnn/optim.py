"""Optimizers: update parameter arrays in place from their gradients."""

import numpy as np

from crnn import _checks, _ops

__all__ = ["SGD"]


def _pairs(params, grads):
    """Match gradients to parameters (dicts by key, sequences by position) and check them all.

    Every check happens before any update, so a bad gradient leaves every
    parameter untouched.
    """
    if isinstance(params, dict):
        if not isinstance(grads, dict) or set(grads) != set(params):
            got = sorted(grads) if isinstance(grads, dict) else type(grads).__name__
            raise ValueError(f"grads: expected a dict with keys {sorted(params)}, got {got}")
        keys = list(params)
        pairs = [(params[k], grads[k], repr(k)) for k in keys]
    else:
        if isinstance(grads, dict) or len(grads) != len(params):
            raise ValueError(f"grads: expected a sequence of {len(params)} arrays, "
                             f"one per parameter, got {type(grads).__name__}")
        pairs = [(p, g, str(i)) for i, (p, g) in enumerate(zip(params, grads))]
    out = []
    for p, g, name in pairs:
        g = np.asarray(g)
        if g.shape != p.shape:
            raise ValueError(f"grads[{name}]: expected shape {p.shape}, got {g.shape}")
        if g.dtype.kind != "f":
            raise TypeError(f"grads[{name}]: expected floating-point values, got dtype {g.dtype}")
        out.append((p, np.ascontiguousarray(g, dtype=p.dtype)))
    return out


class SGD:
    """Plain stochastic gradient descent: ``W ← W − lr·∂L/∂W``, in place.

    Parameters
    ----------
    params : dict of ndarray or list of ndarray
        The arrays to update in place, e.g. ``model.params``.
    lr : float
        Learning rate, > 0.

    Examples
    --------
    >>> opt = crnn.SGD(model.params, lr=0.1)
    >>> loss, grads, _ = model.loss_and_grad(x, target)
    >>> opt.step(grads)
    """

    def __init__(self, params, lr):
        if isinstance(params, dict):
            arrays = list(params.values())
        elif isinstance(params, (list, tuple)):
            arrays = list(params)
        else:
            raise TypeError(f"params: expected a dict or list of arrays, "
                            f"got {type(params).__name__}")
        for i, p in enumerate(arrays):
            if not isinstance(p, np.ndarray) or p.dtype.kind != "f" or not p.flags.writeable:
                raise TypeError(f"params: item {i} is not a writeable floating-point "
                                f"numpy array")
        self.params = params
        self.lr = _checks.positive_float(lr, "lr")

    def step(self, grads):
        """Apply one update with ``grads`` (same keys or order and shapes as ``params``)."""
        lr = self.lr
        for p, g in _pairs(self.params, grads):
            if p.flags.c_contiguous and p.dtype in (np.float32, np.float64) and p.size:
                _ops.axpy(p.reshape(-1), -lr, g.reshape(-1))
            else:
                p -= lr * g

    def __repr__(self):
        return f"SGD(lr={self.lr})"
