"""Every input check and conversion of crnn, in one place.

Data is validated and converted once here; the compiled kernels trust what
they receive. Messages name the argument, what was expected and what was
received.
"""

import numbers
import operator

import numpy as np

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
    # The sum is one pass with no temporary; only when it is not finite (a
    # NaN/Inf, or a finite overflow) is the exact elementwise test needed.
    return bool(np.isfinite(np.add.reduce(arr, axis=None))) or bool(np.isfinite(arr).all())


def _shape_str(shape):
    return "(" + ", ".join(str(s) for s in shape) + ")"


def inputs(x, input_size, dtype, *, finite):
    """Check and convert ``x``.

    Returns ``(X, tokens)``: X a C-contiguous (T, B, D) array of ``dtype`` and
    tokens None, or X None and tokens a C-contiguous (T, B) intp array.
    """
    arr = _as_array(x, "x")
    if arr.dtype.kind in "iu":
        if arr.ndim != 2:
            raise ValueError(f"x: expected token ids of shape (T, B) or floats of shape "
                             f"(T, B, {input_size}), got integers of shape {_shape_str(arr.shape)}")
        _check_nonempty(arr.shape, "x")
        lo, hi = arr.min(), arr.max()
        if lo < 0 or hi >= input_size:
            raise ValueError(f"x: token ids must lie in [0, {input_size}), "
                             f"got values in [{lo}, {hi}]")
        return None, np.ascontiguousarray(arr, dtype=np.intp)
    if arr.ndim != 3 or arr.shape[2] != input_size:
        raise ValueError(f"x: expected shape (T, B, {input_size}) (or token ids (T, B)), "
                         f"got {_shape_str(arr.shape)}")
    _check_nonempty(arr.shape, "x")
    arr = _convert(arr, dtype)
    if finite and not _all_finite(arr):
        raise ValueError(f"x: contains NaN or infinity (after conversion to {dtype})")
    return arr, None


def _convert(arr, dtype):
    # Checked after the conversion: a finite float64 like 1e300 becomes inf in float32.
    if arr.dtype == dtype and arr.flags.c_contiguous:
        return arr      # nothing to convert (and np.errstate costs microseconds)
    with np.errstate(over="ignore"):
        return np.ascontiguousarray(arr, dtype=dtype)


def _check_nonempty(shape, name):
    if shape[0] == 0:
        raise ValueError(f"{name}: expected at least one time step (T >= 1), "
                         f"got shape {_shape_str(shape)}")
    if shape[1] == 0:
        raise ValueError(f"{name}: expected at least one sequence (B >= 1), "
                         f"got shape {_shape_str(shape)}")


def check_sizes(T, B, D, H, O):
    """Refuse problems whose matrices exceed BLAS's 32-bit dimensions."""
    if T * B * max(D, H, O) > _INT32_MAX:
        raise ValueError(f"x: T·B = {T * B} rows of up to {max(D, H, O)} values exceed "
                         f"the 2**31 elements one BLAS call can address; split the batch")


def hidden(h0, B, H, dtype, *, finite):
    """``h0`` as a C-contiguous (B, H) array of ``dtype`` (zeros when None)."""
    if h0 is None:
        return np.zeros((B, H), dtype=dtype)
    arr = _as_array(h0, "h0")
    if arr.shape != (B, H):
        raise ValueError(f"h0: expected shape ({B}, {H}), got {_shape_str(arr.shape)}")
    arr = _convert(arr, dtype)
    if finite and not _all_finite(arr):
        raise ValueError(f"h0: contains NaN or infinity (after conversion to {dtype})")
    return arr


def lengths_(lengths, T, B):
    """``lengths`` as a (B,) intp array with 1 <= lengths[b] <= T, or None."""
    if lengths is None:
        return None
    arr = _as_array(lengths, "lengths")
    if arr.dtype.kind not in "iu":
        raise TypeError(f"lengths: expected integers, got dtype {arr.dtype}")
    if arr.shape != (B,):
        raise ValueError(f"lengths: expected shape ({B},), one length per sequence, "
                         f"got {_shape_str(arr.shape)}")
    lo, hi = arr.min(), arr.max()
    if lo < 1 or hi > T:
        raise ValueError(f"lengths: expected values in [1, {T}] (T = {T}), "
                         f"got values in [{lo}, {hi}]")
    return arr.astype(np.intp, copy=False)


def targets(target, output, T, B, O, dtype):
    """Check and convert ``target`` for the given head.

    Returns ``(classes, values, per_step)``: classes an intp array (T, B) or
    (B,) for the softmax head, values a float array (T, B, O) or (B, O) for the
    linear head (the other None), and whether there is a target per step.
    """
    arr = _as_array(target, "target")
    if output == "softmax":
        if arr.dtype.kind not in "iu":
            raise TypeError(f"target: expected integer class ids for the softmax head, "
                            f"got dtype {arr.dtype}")
        if arr.shape == (T, B):
            per_step = True
        elif arr.shape == (B,):
            per_step = False
        else:
            raise ValueError(f"target: expected class ids of shape ({T}, {B}) (one per step) "
                             f"or ({B},) (one per sequence), got {_shape_str(arr.shape)}")
        lo, hi = arr.min(), arr.max()
        if lo < 0 or hi >= O:
            raise ValueError(f"target: class ids must lie in [0, {O}), "
                             f"got values in [{lo}, {hi}]")
        return np.ascontiguousarray(arr, dtype=np.intp), None, per_step
    if arr.shape == (T, B, O):
        per_step = True
    elif arr.shape == (B, O):
        per_step = False
    else:
        raise ValueError(f"target: expected values of shape ({T}, {B}, {O}) (one per step) "
                         f"or ({B}, {O}) (one per sequence), got {_shape_str(arr.shape)}")
    arr = _convert(arr, dtype)
    if not _all_finite(arr):
        raise ValueError(f"target: contains NaN or infinity (after conversion to {dtype})")
    return None, arr, per_step


def params(params, shapes, dtype):
    """Check the model's parameter dict before the kernels read it."""
    if not isinstance(params, dict) or set(params) != set(shapes):
        got = sorted(params) if isinstance(params, dict) else type(params).__name__
        raise ValueError(f"params: expected a dict with keys {sorted(shapes)}, got {got}")
    for key, shape in shapes.items():
        p = params[key]
        if not isinstance(p, np.ndarray) or p.shape != shape or p.dtype != dtype \
                or not p.flags.c_contiguous:
            desc = (f"{p.dtype} array of shape {_shape_str(p.shape)}"
                    f"{'' if p.flags.c_contiguous else ', not C-contiguous'}"
                    if isinstance(p, np.ndarray) else type(p).__name__)
            raise ValueError(f"params[{key!r}]: expected a C-contiguous {dtype} array of "
                             f"shape {_shape_str(shape)}, got {desc}")
