"""Every input check and conversion of crnn, in one place.

Data is validated and converted once here; the compiled kernels trust what
they receive. Messages name the argument, what was expected and what was
received.
"""

import numbers
import operator

import numpy as np

from crnn import _ops

_FLOAT_DTYPES = {"float32": np.dtype(np.float32), "float64": np.dtype(np.float64)}

# BLAS takes 32-bit sizes: keep every matrix dimension the kernels pass below it.
_INT32_MAX = 2**31 - 1


def positive_int(value, name):
    """``value`` as a Python int > 0, or TypeError/ValueError naming ``name``."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name}: expected a positive integer, got {value!r} "
                        f"of type {type(value).__name__}")
    value = operator.index(value)
    if value <= 0:
        raise ValueError(f"{name}: expected a positive integer, got {value}")
    return value


def positive_float(value, name, *, allow_none=False, allow_zero=False):
    """``value`` as a finite Python float > 0 (or >= 0), or None when allowed."""
    if value is None and allow_none:
        return None
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name}: expected a positive number, got {value!r} "
                        f"of type {type(value).__name__}")
    value = float(value)
    if not np.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
        raise ValueError(f"{name}: expected a finite number {'>=' if allow_zero else '>'} 0, "
                         f"got {value}")
    return value


def rng(seed, name):
    """``np.random.default_rng(seed)``, or TypeError/ValueError naming ``name``."""
    try:
        return np.random.default_rng(seed)
    except (TypeError, ValueError):
        raise (ValueError if isinstance(seed, numbers.Integral) else TypeError)(
            f"{name}: expected None, a non-negative int or a numpy Generator, "
            f"got {seed!r}") from None


def choice(value, name, options):
    """``value`` if it is one of ``options`` (strings), else ValueError."""
    if not isinstance(value, str) or value not in options:
        raise ValueError(f"{name}: expected one of {', '.join(map(repr, options))}, "
                         f"got {value!r}")
    return value


def float_dtype(value):
    """The numpy dtype for ``dtype="float32"|"float64"`` (numpy dtypes accepted)."""
    if value is None:   # np.dtype(None) would silently mean float64
        raise TypeError("dtype: expected 'float32' or 'float64', got None")
    try:
        dt = np.dtype(value)
    except TypeError:
        raise TypeError(f"dtype: expected 'float32' or 'float64', got {value!r}") from None
    if dt not in _FLOAT_DTYPES.values():
        raise ValueError(f"dtype: expected 'float32' or 'float64', got {value!r}")
    return dt


def _as_array(value, name):
    """np.asarray that turns failures and non-numeric data into TypeError."""
    try:
        arr = np.asarray(value)
    except (ValueError, TypeError) as exc:
        raise TypeError(f"{name}: expected a numeric array, could not convert "
                        f"{type(value).__name__}: {exc}") from None
    if arr.dtype.kind not in "iuf":
        raise TypeError(f"{name}: expected a numeric array (integers or floats), "
                        f"got dtype {arr.dtype}")
    return arr


def _all_finite(arr):
    if arr.size <= 4096:        # small: the elementwise test costs what the sum does
        return bool(np.isfinite(arr).all())
    # The sum is one pass with no temporary; only when it is not finite (a NaN/Inf,
    # or a finite overflow, which must not warn) is the exact elementwise test needed.
    with np.errstate(over="ignore", invalid="ignore"):
        total = np.add.reduce(arr, axis=None)
    return bool(np.isfinite(total)) or bool(np.isfinite(arr).all())


def _bounds(arr):
    """(min, max) of a non-empty integer array."""
    if arr.dtype == np.intp and arr.flags.c_contiguous and arr.flags.aligned:
        return _ops.int_bounds(arr.reshape(-1))
    return arr.min(), arr.max()


def _shape_str(shape):
    return str(tuple(int(s) for s in shape))


def inputs(x, input_size, dtype, *, finite, widest, batch_first=False):
    """Check and convert ``x`` (sizes first: nothing is converted for a problem
    too large to run; ``widest`` as for :func:`check_sizes`).

    Returns ``(X, tokens)``: X a C-contiguous (T, B, D) array of ``dtype`` and
    tokens None, or X None and tokens a C-contiguous (T, B) intp array.
    With ``batch_first``, ``x`` is the time-major view of the user's (B, T, ...)
    array, and messages speak of the user's layout and shapes.
    """
    arr = _as_array(x, "x")
    steps = "(B, T" if batch_first else "(T, B"
    if arr.dtype.kind in "iu":
        if arr.ndim != 2:
            raise ValueError(f"x: expected token ids of shape {steps}) or floats of shape "
                             f"{steps}, {input_size}), got integers of shape "
                             f"{_user_shape(arr.shape, batch_first)}")
        _check_nonempty(arr.shape, "x", batch_first)
        check_sizes(arr.shape[0], arr.shape[1], input_size, widest)
        lo, hi = _bounds(arr)
        if lo < 0 or hi >= input_size:
            raise ValueError(f"x: token ids must lie in [0, {input_size}), "
                             f"got values in [{lo}, {hi}]")
        return None, contiguous(arr, np.intp)
    if arr.ndim != 3 or arr.shape[2] != input_size:
        raise ValueError(f"x: expected shape {steps}, {input_size}) (or token ids {steps})), "
                         f"got {_user_shape(arr.shape, batch_first)}")
    _check_nonempty(arr.shape, "x", batch_first)
    check_sizes(arr.shape[0], arr.shape[1], input_size, widest)
    arr = _convert(arr, dtype)
    if finite and not _all_finite(arr):
        raise ValueError(f"x: contains NaN or infinity (after conversion to {dtype})")
    return arr, None


def _user_shape(shape, batch_first):
    """A time-major array's shape as the user wrote it (batch_first: axes 0, 1 swapped)."""
    if batch_first and len(shape) >= 2:
        shape = (shape[1], shape[0]) + tuple(shape[2:])
    return _shape_str(shape)


def _convert(arr, dtype):
    # Checked after the conversion: a finite float64 like 1e300 becomes inf in float32.
    if arr.dtype == dtype and arr.flags.c_contiguous and arr.flags.aligned:
        return arr      # nothing to convert (and np.errstate costs microseconds)
    with np.errstate(over="ignore"):
        return contiguous(arr, dtype)


def contiguous(arr, dtype):
    """``arr`` as a C-contiguous, aligned array of ``dtype`` (a copy only when needed).

    The kernels read elements directly: a view at an odd byte offset (e.g.
    ``buf[1:].view(np.float64)``) is C-contiguous, and np.ascontiguousarray
    keeps it as it is, but it is not aligned.
    """
    if arr.dtype == dtype and arr.flags.c_contiguous and arr.flags.aligned:
        return arr      # the common case, without np.require's microseconds
    return np.require(arr, dtype, ("C", "A"))


def _check_nonempty(shape, name, batch_first=False):
    if shape[0] == 0:
        raise ValueError(f"{name}: expected at least one time step (T >= 1), "
                         f"got shape {_user_shape(shape, batch_first)}")
    if shape[1] == 0:
        raise ValueError(f"{name}: expected at least one sequence (B >= 1), "
                         f"got shape {_user_shape(shape, batch_first)}")


def check_sizes(T, B, D, widest):
    """Refuse problems whose matrices exceed BLAS's 32-bit dimensions (``widest``:
    the widest row of the model's matrices, e.g. G·H)."""
    if T * B * max(D, widest) > _INT32_MAX:
        raise ValueError(f"x: T·B = {T * B} rows of up to {max(D, widest)} values exceed "
                         f"the 2**31 elements one BLAS call can address; split the batch")


def states(h0, name, n, B, H, dtype, *, finite, pair):
    """Initial states as C-contiguous (n, B, H) arrays of ``dtype``: ``(h, c)``,
    either None (zeros).

    ``n`` = num_layers·dirs; a state is (B, H) when n = 1, else (n, B, H)
    (layer-major, forward before reverse, as PyTorch's). With ``pair`` (the
    LSTM) ``h0`` may be a pair ``(h, c)`` or a lone h (then c = 0).
    """
    if h0 is None:
        return None, None
    c0 = None
    if pair and isinstance(h0, (tuple, list)):
        if len(h0) != 2:
            raise ValueError(f"{name}: expected a pair (h, c) or an array h, "
                             f"got a sequence of {len(h0)}")
        h0, c0 = h0
        if h0 is None and c0 is not None:
            h0 = np.zeros((B, H) if n == 1 else (n, B, H), dtype=dtype)
    return (_state(h0, name if c0 is None else f"{name}[0]", n, B, H, dtype, finite),
            _state(c0, f"{name}[1]", n, B, H, dtype, finite))


def _state(value, name, n, B, H, dtype, finite):
    if value is None:
        return None
    arr = _as_array(value, name)
    if n == 1 and arr.shape == (B, H):
        arr = arr[None]
    elif n == 1 or arr.shape != (n, B, H):
        want = f"({B}, {H})" if n == 1 else f"({n}, {B}, {H}) (num_layers·directions, B, H)"
        raise ValueError(f"{name}: expected shape {want}, got {_shape_str(arr.shape)}")
    arr = _convert(arr, dtype)
    if finite and not _all_finite(arr):
        raise ValueError(f"{name}: contains NaN or infinity (after conversion to {dtype})")
    return arr


def boolean(value, name):
    """``value`` as a bool (True/False, numpy bools, 0/1), else TypeError."""
    if isinstance(value, (bool, np.bool_)) or (isinstance(value, numbers.Integral)
                                               and value in (0, 1)):
        return bool(value)
    raise TypeError(f"{name}: expected True or False, got {value!r}")


def probability(value, name):
    """A dropout probability: a float in [0, 1)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name}: expected a number in [0, 1), got {value!r} "
                        f"of type {type(value).__name__}")
    value = float(value)
    if not 0 <= value < 1:
        raise ValueError(f"{name}: expected a number in [0, 1), got {value}")
    return value


def _layout_hint(shape, T, B, batch_first=False):
    """A hint when ``shape`` (of a target or lengths, time-major) fits x read in the
    other layout, i.e. when its leading axis has T entries where B are expected."""
    if not (len(shape) and T != B and (shape[0] == T or tuple(shape[:2]) == (B, T))):
        return ""
    if batch_first:
        return (f"; x looks time-major ({B} steps of {T} sequences?): this model is "
                f"batch_first, x is (B, T, D) or (B, T): pass np.swapaxes(x, 0, 1)")
    return (f"; x looks batch-major ({T} sequences of {B} steps?): crnn's data is "
            f"time-major, (T, B, D) or (T, B): pass np.swapaxes(x, 0, 1) (or make the "
            f"model with batch_first=True)")


def lengths_(lengths, T, B, batch_first=False):
    """``lengths`` as a (B,) intp array with 1 <= lengths[b] <= T, or None."""
    if lengths is None:
        return None
    arr = _as_array(lengths, "lengths")
    if arr.dtype.kind not in "iu":
        raise TypeError(f"lengths: expected integers, got dtype {arr.dtype}")
    if arr.shape != (B,):
        raise ValueError(f"lengths: expected shape ({B},), one length per sequence, "
                         f"got {_shape_str(arr.shape)}{_layout_hint(arr.shape, T, B, batch_first)}")
    lo, hi = _bounds(arr)
    if lo < 1 or hi > T:
        raise ValueError(f"lengths: expected values in [1, {T}] (T = {T}), "
                         f"got values in [{lo}, {hi}]")
    return contiguous(arr, np.intp)


def targets(target, output, T, B, O, dtype, batch_first=False):
    """Check and convert ``target`` for the given head.

    Returns ``(classes, values, per_step)``: classes an intp array (T, B) or
    (B,) for the softmax head, values a float array (T, B, O) or (B, O) for the
    linear head (the other None), and whether there is a target per step.
    With ``batch_first``, a per-step target is the time-major view of the user's.
    """
    arr = _as_array(target, "target")
    per_step_ndim = 2 if output == "softmax" else 3
    got = _user_shape(arr.shape, batch_first and arr.ndim == per_step_ndim)
    hint = _layout_hint(arr.shape, T, B, batch_first)
    steps = f"({B}, {T}" if batch_first else f"({T}, {B}"
    if output == "softmax":
        if arr.dtype.kind not in "iu":
            raise TypeError(f"target: expected integer class ids for the softmax head, "
                            f"got dtype {arr.dtype}")
        if arr.shape == (T, B):
            per_step = True
        elif arr.shape == (B,):
            per_step = False
        else:
            raise ValueError(f"target: expected class ids of shape {steps}) (one per step) "
                             f"or ({B},) (one per sequence), got {got}{hint}")
        lo, hi = _bounds(arr)
        if lo < 0 or hi >= O:
            raise ValueError(f"target: class ids must lie in [0, {O}), "
                             f"got values in [{lo}, {hi}]")
        return contiguous(arr, np.intp), None, per_step
    if arr.shape == (T, B, O):
        per_step = True
    elif arr.shape == (B, O):
        per_step = False
    else:
        raise ValueError(f"target: expected values of shape {steps}, {O}) (one per step) "
                         f"or ({B}, {O}) (one per sequence), got {got}{hint}")
    arr = _convert(arr, dtype)
    if not _all_finite(arr):
        raise ValueError(f"target: contains NaN or infinity (after conversion to {dtype})")
    return None, arr, per_step


def params(params, views, dtype):
    """Check the model's parameter dict before the kernels read it.

    ``views`` maps each name to the model's own array (a view of its flat
    parameter vector). An entry the user replaced must have the same shape;
    it is converted to ``dtype`` and returned in ``replaced``, for the model
    to copy in. Returns ``replaced`` (a dict, usually empty).
    """
    if not isinstance(params, dict) or len(params) != len(views) or set(params) != set(views):
        got = sorted(params) if isinstance(params, dict) else type(params).__name__
        raise ValueError(f"params: expected a dict with keys {sorted(views)}, got {got}")
    replaced = {}
    for key, view in views.items():
        p = params[key]
        if p is view:
            continue
        if isinstance(p, np.ndarray) and p.dtype.kind == "f" and p.shape == view.shape:
            with np.errstate(over="ignore"):
                replaced[key] = p.astype(dtype, copy=False)
            continue
        desc = (f"{p.dtype} array of shape {_shape_str(p.shape)}"
                if isinstance(p, np.ndarray) else type(p).__name__)
        raise ValueError(f"params[{key!r}]: expected a {dtype} array of shape "
                         f"{_shape_str(view.shape)}, got {desc}")
    return replaced
