"""crnn.clip_grad_norm and crnn.clip_grad_value: torch.nn.utils semantics, in place.

clip_grad_norm: total = the norm of all arrays together (before clipping) is
returned; every array is scaled in place by min(1, max_norm / (total + 1e-6));
norm_type 2 or inf; a dict or a list; RuntimeError for a non-finite total when
error_if_nonfinite=True. clip_grad_value clamps in place to [-c, c].
"""

import math

import numpy as np
import pytest

import crnn

from conftest import PARAM_NAMES, rng_for

DTYPES = ["float64", "float32"]
NORMS = [2.0, math.inf]


def _grads(key, dtype, scale=1.0):
    """A grads dict with the model's shapes (H=4, D=3, O=2)."""
    rng = rng_for("clip", key, dtype)
    shapes = {"W_x": (4, 3), "W_h": (4, 4), "b_h": (4,), "W_y": (2, 4), "b_y": (2,)}
    return {k: (scale * rng.standard_normal(s)).astype(dtype) for k, s in shapes.items()}


def _total_norm(arrays, p):
    flat = np.concatenate([np.asarray(a, dtype=np.float64).ravel() for a in arrays])
    if p == math.inf:
        return float(np.max(np.abs(flat)))
    return float(np.sum(np.abs(flat) ** p) ** (1 / p))


def _rtol(dtype):
    return 1e-12 if dtype == "float64" else 2e-6


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("norm_type", NORMS, ids=["l2", "inf"])
def test_clip_grad_norm_scales_in_place_and_returns_total_before(norm_type, dtype):
    """A total above max_norm: same objects scaled by max_norm/(total+1e-6); the old total returned."""
    grads = _grads("scale", dtype, scale=3.0)
    objects = {k: id(v) for k, v in grads.items()}
    before = {k: v.astype(np.float64) for k, v in grads.items()}
    total = _total_norm(before.values(), norm_type)
    max_norm = 0.25 * total
    out = crnn.clip_grad_norm(grads, max_norm, norm_type=norm_type)
    assert isinstance(out, float)
    np.testing.assert_allclose(out, total, rtol=_rtol(dtype))
    coef = max_norm / (total + 1e-6)
    for k in PARAM_NAMES:
        assert id(grads[k]) == objects[k], "not in place"
        assert grads[k].dtype == np.dtype(dtype)
        np.testing.assert_allclose(grads[k], before[k] * coef, rtol=_rtol(dtype), err_msg=k)
    # Now the norm is max_norm·total/(total+1e-6), just below max_norm.
    np.testing.assert_allclose(_total_norm(grads.values(), norm_type), max_norm * total / (total + 1e-6),
                               rtol=_rtol(dtype))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("norm_type", NORMS, ids=["l2", "inf"])
def test_clip_grad_norm_below_max_leaves_grads_bitwise(norm_type, dtype):
    """A total comfortably below max_norm leaves every value bitwise unchanged and still returns it."""
    grads = _grads("below", dtype)
    before = {k: v.copy() for k, v in grads.items()}
    total = _total_norm(before.values(), norm_type)
    out = crnn.clip_grad_norm(grads, 2 * total, norm_type=norm_type)
    np.testing.assert_allclose(out, total, rtol=_rtol(dtype))
    for k in PARAM_NAMES:
        assert grads[k].tobytes() == before[k].tobytes(), k


@pytest.mark.parametrize("norm_type", NORMS, ids=["l2", "inf"])
def test_clip_grad_norm_the_1e6_in_the_denominator(norm_type):
    """The coefficient is max_norm/(total + 1e-6): max_norm = total still scales by total/(total+1e-6).

    The arrays are built so that the total norm is exactly 1.0 (float64). With
    max_norm = 1 + 2e-6 the coefficient exceeds 1: nothing changes. With
    max_norm = 1 + 0.5e-6 or 1, it is below 1 and the grads shrink by exactly it.
    """
    def grads():
        if norm_type == math.inf:
            return [np.array([0.5, -1.0, 0.25]), np.array([[0.75, 0.0], [-0.125, 1.0]])]
        return [np.array([0.6, 0.0]), np.array([[0.0, 0.8]])]  # 0.36 + 0.64 = 1

    assert _total_norm(grads(), norm_type) == 1.0
    g = grads()
    assert crnn.clip_grad_norm(g, 1.0 + 2e-6, norm_type=norm_type) == pytest.approx(1.0, abs=1e-15)
    for a, b in zip(g, grads()):
        np.testing.assert_array_equal(a, b)
    for max_norm in (1.0, 1.0 + 0.5e-6):
        g = grads()
        crnn.clip_grad_norm(g, max_norm, norm_type=norm_type)
        coef = max_norm / (1.0 + 1e-6)
        assert coef < 1.0
        for a, b in zip(g, grads()):
            np.testing.assert_allclose(a, b * coef, rtol=1e-15, atol=0)
            assert not np.array_equal(a[b != 0], b[b != 0])


@pytest.mark.parametrize("norm_type", NORMS, ids=["l2", "inf"])
def test_clip_grad_norm_total_is_over_all_arrays_together(norm_type):
    """The total is one norm over all arrays, not per array: each array alone is under max_norm."""
    grads = [np.full(4, 0.5), np.full(9, 0.5), np.array([[0.9, -0.9]])]
    total = _total_norm(grads, norm_type)  # l2: sqrt(13·0.25 + 1.62), inf: 0.9
    max_norm = 0.8 if norm_type == math.inf else 2.0
    # Each of the first two arrays is under max_norm on its own (all three for l2),
    # so a per-array clipping would leave them untouched.
    alone = [_total_norm([a], norm_type) for a in grads]
    assert max(alone[:2] if norm_type == math.inf else alone) < max_norm < total
    before = [a.copy() for a in grads]
    out = crnn.clip_grad_norm(grads, max_norm, norm_type=norm_type)
    assert out == pytest.approx(total, rel=1e-14)
    coef = max_norm / (total + 1e-6)
    for a, b in zip(grads, before):
        np.testing.assert_allclose(a, b * coef, rtol=1e-14)


def test_clip_grad_norm_default_norm_is_2():
    """norm_type defaults to 2."""
    g1, g2 = _grads("default", "float64", 2.0), _grads("default", "float64", 2.0)
    a = crnn.clip_grad_norm(g1, 0.5)
    b = crnn.clip_grad_norm(g2, 0.5, norm_type=2.0)
    assert a == b
    for k in PARAM_NAMES:
        np.testing.assert_array_equal(g1[k], g2[k])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("norm_type", NORMS, ids=["l2", "inf"])
def test_clip_grad_norm_dict_and_list_agree(norm_type, dtype):
    """A list of the same arrays gives the same total and the same clipped values as the dict."""
    d = _grads("dl", dtype, 2.0)
    lst = [v.copy() for v in d.values()]
    t1 = crnn.clip_grad_norm(d, 0.3, norm_type=norm_type)
    t2 = crnn.clip_grad_norm(lst, 0.3, norm_type=norm_type)
    assert t1 == t2
    for a, b in zip(d.values(), lst):
        np.testing.assert_array_equal(a, b)


def test_clip_grad_norm_on_model_grads():
    """It accepts the grads dict returned by loss_and_grad and clips it in place."""
    model = crnn.RNN(3, 5, 4, dtype="float64", seed=3)
    rng = rng_for("model-grads")
    x = rng.standard_normal((6, 2, 3))
    t = rng.integers(0, 4, (6, 2))
    _, grads, _ = model.loss_and_grad(x, t, reduction="sum")
    total = _total_norm(grads.values(), 2.0)
    out = crnn.clip_grad_norm(grads, total / 10)
    assert out == pytest.approx(total, rel=1e-12)
    assert _total_norm(grads.values(), 2.0) == pytest.approx(total / 10, rel=1e-5)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("norm_type", NORMS, ids=["l2", "inf"])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_clip_grad_norm_nonfinite_raises_when_asked(bad, norm_type, dtype):
    """error_if_nonfinite=True: a NaN/Inf total raises RuntimeError and leaves the grads as they were."""
    grads = _grads("nonfinite", dtype)
    grads["W_h"][1, 2] = bad
    before = {k: v.copy() for k, v in grads.items()}
    with pytest.raises(RuntimeError):
        crnn.clip_grad_norm(grads, 1.0, norm_type=norm_type, error_if_nonfinite=True)
    for k in PARAM_NAMES:
        assert grads[k].tobytes() == before[k].tobytes(), k


@pytest.mark.parametrize("norm_type", NORMS, ids=["l2", "inf"])
@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_clip_grad_norm_nonfinite_no_error_by_default(bad, norm_type):
    """error_if_nonfinite=False (the default): no error, and the returned total is not finite."""
    grads = _grads("nonfinite-ok", "float64")
    grads["b_h"][0] = bad
    out = crnn.clip_grad_norm(grads, 1.0, norm_type=norm_type)
    assert not math.isfinite(out)
    out = crnn.clip_grad_norm(_grads("nonfinite-ok2", "float64") | {"b_y": np.array([bad, 0.0])},
                              1.0, norm_type=norm_type, error_if_nonfinite=False)
    assert not math.isfinite(out)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("as_list", [False, True], ids=["dict", "list"])
def test_clip_grad_value_clamps_in_place(as_list, dtype):
    """clip_grad_value clamps every value to [-c, c] in place, returns None, leaves the rest exact."""
    d = _grads("value", dtype, 2.0)
    before = {k: v.copy() for k, v in d.items()}
    ids = {k: id(v) for k, v in d.items()}
    out = crnn.clip_grad_value(list(d.values()) if as_list else d, 0.7)
    assert out is None
    for k in PARAM_NAMES:
        assert id(d[k]) == ids[k]
        np.testing.assert_array_equal(d[k], np.clip(before[k], -0.7, 0.7).astype(dtype))
    assert any(np.any(np.abs(before[k]) > 0.7) for k in PARAM_NAMES)


# --- against torch.nn.utils, on the same numbers (skipped when torch is absent) --------------

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("norm_type", NORMS + [1.0], ids=["l2", "inf", "l1"])
@pytest.mark.parametrize("factor", [0.1, 0.999999, 1.0, 1.0000005, 3.0])
def test_clip_grad_norm_matches_torch(factor, norm_type, dtype):
    """Same total and same clipped values as torch.nn.utils.clip_grad_norm_, around the 1e-6 too."""
    torch = pytest.importorskip("torch")
    grads = _grads("torch", dtype, 2.0)
    tensors = []
    for v in grads.values():
        p = torch.nn.Parameter(torch.zeros(v.shape, dtype=getattr(torch, dtype)))
        p.grad = torch.tensor(v.copy())
        tensors.append(p)
    total = _total_norm(grads.values(), norm_type)
    max_norm = factor * total
    t_total = torch.nn.utils.clip_grad_norm_(tensors, max_norm, norm_type=norm_type)
    c_total = crnn.clip_grad_norm(grads, max_norm, norm_type=norm_type)
    np.testing.assert_allclose(c_total, float(t_total), rtol=_rtol(dtype))
    for a, p in zip(grads.values(), tensors):
        np.testing.assert_allclose(a, p.grad.numpy(), rtol=_rtol(dtype), atol=0)


@pytest.mark.parametrize("norm_type", NORMS, ids=["l2", "inf"])
@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_clip_grad_norm_nonfinite_matches_torch(bad, norm_type):
    """With a non-finite total: the same RuntimeError when asked, and the same values when not."""
    torch = pytest.importorskip("torch")
    grads = _grads("torch-nf", "float64")
    grads["W_x"][0, 0] = bad
    tensors = []
    for v in grads.values():
        p = torch.nn.Parameter(torch.zeros(v.shape, dtype=torch.float64))
        p.grad = torch.tensor(v.copy())
        tensors.append(p)
    with pytest.raises(RuntimeError):
        torch.nn.utils.clip_grad_norm_(tensors, 1.0, norm_type=norm_type,
                                       error_if_nonfinite=True)
    with pytest.raises(RuntimeError):
        crnn.clip_grad_norm(grads, 1.0, norm_type=norm_type, error_if_nonfinite=True)
    t_total = torch.nn.utils.clip_grad_norm_(tensors, 1.0, norm_type=norm_type)
    c_total = crnn.clip_grad_norm(grads, 1.0, norm_type=norm_type)
    np.testing.assert_array_equal(c_total, float(t_total))
    for a, p in zip(grads.values(), tensors):
        np.testing.assert_array_equal(a, p.grad.numpy())


@pytest.mark.parametrize("dtype", DTYPES)
def test_clip_grad_value_matches_torch(dtype):
    """Same values as torch.nn.utils.clip_grad_value_."""
    torch = pytest.importorskip("torch")
    grads = _grads("torch-v", dtype, 2.0)
    tensors = []
    for v in grads.values():
        p = torch.nn.Parameter(torch.zeros(v.shape, dtype=getattr(torch, dtype)))
        p.grad = torch.tensor(v.copy())
        tensors.append(p)
    torch.nn.utils.clip_grad_value_(tensors, 0.5)
    crnn.clip_grad_value(grads, 0.5)
    for a, p in zip(grads.values(), tensors):
        np.testing.assert_array_equal(a, p.grad.numpy())
