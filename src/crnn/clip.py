"""Gradient clipping, with the semantics of ``torch.nn.utils.clip_grad_norm_``."""

import math

import numpy as np

from crnn import _checks, _ops

__all__ = ["clip_grad_norm", "clip_grad_value"]


def _arrays(grads, name="grads"):
    """The gradient arrays of a dict, a list/tuple or a single array."""
    if isinstance(grads, np.ndarray):
        arrays = [grads]
    elif isinstance(grads, dict):
        arrays = list(grads.values())
    elif isinstance(grads, (list, tuple)):
        arrays = list(grads)
    else:
        raise TypeError(f"{name}: expected a dict of arrays, a list of arrays or an array, "
                        f"got {type(grads).__name__}")
    for i, g in enumerate(arrays):
        if not isinstance(g, np.ndarray) or g.dtype.kind != "f":
            what = f"{g.dtype} array" if isinstance(g, np.ndarray) else type(g).__name__
            raise TypeError(f"{name}: expected floating-point numpy arrays, item {i} is {what}")
        if not g.flags.writeable:
            raise ValueError(f"{name}: item {i} is read-only; gradients are scaled in place")
    return arrays


def _norm(g, p):
    if p == 2.0:
        if g.flags.c_contiguous and g.flags.aligned and g.dtype in (np.float32, np.float64) \
                and g.size:
            return _ops.nrm2(g.reshape(-1))
        return float(np.linalg.norm(g.reshape(-1).astype(np.float64, copy=False)))
    if g.size == 0:
        return 0.0
    return float(np.linalg.norm(g.reshape(-1), p))


def clip_grad_norm(grads, max_norm, norm_type=2.0, error_if_nonfinite=False):
    """Scale gradients in place so that their total norm is at most ``max_norm``.

    The total norm is taken over all arrays together, as if they were
    concatenated into one vector. Every gradient is multiplied by
    ``min(1, max_norm / (total + 1e-6))``, exactly as
    ``torch.nn.utils.clip_grad_norm_`` does.

    Parameters
    ----------
    grads : dict of ndarray, list of ndarray or ndarray
        Floating-point gradients, modified in place; e.g. the ``grads`` dict
        returned by :meth:`crnn.RNN.loss_and_grad`.
    max_norm : float
        Largest allowed total norm, >= 0.
    norm_type : float, default 2.0
        Order ``p`` > 0 of the norm; ``inf`` for the largest absolute value,
        ``-inf`` for the smallest.
    error_if_nonfinite : bool, default False
        Raise RuntimeError when the total norm is NaN or infinite (the
        gradients are then left untouched). Otherwise they are scaled anyway
        and may become NaN, as in PyTorch.

    Returns
    -------
    total_norm : float
        The total norm of the gradients before clipping.

    Equivalent to::

        total = np.linalg.norm([np.linalg.norm(g.ravel(), norm_type) for g in grads], norm_type)
        for g in grads:
            g *= min(1.0, max_norm / (total + 1e-6))
    """
    arrays = _arrays(grads)
    max_norm = _checks.positive_float(max_norm, "max_norm", allow_zero=True)
    p = _norm_type(norm_type)
    if not arrays:
        return 0.0
    norms = [_norm(g, p) for g in arrays]
    if any(map(math.isnan, norms)):
        total = math.nan
    elif p == math.inf:
        total = max(norms)
    elif p == -math.inf:
        total = min(norms)
    elif p == 2.0:
        total = math.hypot(*norms)
    else:
        total = float(np.linalg.norm(np.array(norms), p))
    if error_if_nonfinite and not math.isfinite(total):
        raise RuntimeError(
            f"The total norm of order {norm_type} for gradients is non-finite, so it cannot "
            f"be clipped. To disable this error and scale the gradients by the non-finite "
            f"norm anyway, set `error_if_nonfinite=False`")
    coef = max_norm / (total + 1e-6)
    if not coef >= 1.0:     # also NaN: scaled anyway, as in PyTorch
        with np.errstate(invalid="ignore"):     # inf·0 = NaN is the documented outcome
            for g in arrays:
                g *= coef
    return total


def _norm_type(norm_type):
    # As PyTorch: any float(norm_type) > 0, or ±inf (-inf: the smallest |value|).
    if isinstance(norm_type, (bool, np.bool_)):
        raise TypeError(f"norm_type: expected a number or 'inf', got {norm_type!r}")
    try:
        p = float(norm_type)
    except (TypeError, ValueError):
        raise TypeError(f"norm_type: expected a number or 'inf', got {norm_type!r}") from None
    if not (p > 0 or p == -math.inf):
        raise ValueError(f"norm_type: expected a positive number, inf or -inf, "
                         f"got {norm_type!r}")
    return p


def clip_grad_value(grads, clip_value):
    """Clamp every gradient in place to ``[-clip_value, clip_value]``.

    Parameters
    ----------
    grads : dict of ndarray, list of ndarray or ndarray
        Floating-point gradients, modified in place.
    clip_value : float
        Largest allowed absolute value, >= 0.
    """
    arrays = _arrays(grads)
    clip_value = _checks.positive_float(clip_value, "clip_value", allow_zero=True)
    for g in arrays:
        np.clip(g, -clip_value, clip_value, out=g)
