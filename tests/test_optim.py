"""crnn.SGD: W <- W - lr·grad in place on the model's own arrays, and a step lowers the loss."""

import numpy as np
import pytest

import crnn

import _reference as ref
from conftest import PARAM_NAMES, make_case, make_model, rng_for

DTYPES = ["float64", "float32"]


def _rtol(dtype):
    return 1e-14 if dtype == "float64" else 1e-6


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("lr", [0.5, 1e-3])
def test_sgd_step_updates_in_place(lr, dtype):
    """step(grads) sets every W to W - lr·grad in the same array objects (the model's params)."""
    rng = rng_for("sgd", lr, dtype)
    model = make_model(3, 4, 2, dtype=dtype, seed=5)
    params = model.params
    ids = {k: id(v) for k, v in params.items()}
    before = {k: v.astype(np.float64) for k, v in params.items()}
    grads = {k: rng.standard_normal(v.shape).astype(dtype) for k, v in params.items()}
    grads_before = {k: v.copy() for k, v in grads.items()}
    opt = crnn.SGD(params, lr)
    opt.step(grads)
    for k in PARAM_NAMES:
        assert id(model.params[k]) == ids[k], "params replaced, not updated in place"
        assert model.params[k].dtype == np.dtype(dtype)
        assert model.params[k].flags.c_contiguous
        want = before[k] - lr * grads[k].astype(np.float64)
        np.testing.assert_allclose(model.params[k], want, rtol=_rtol(dtype), atol=1e-7, err_msg=k)
        np.testing.assert_array_equal(grads[k], grads_before[k])  # grads not consumed


@pytest.mark.parametrize("dtype", DTYPES)
def test_sgd_steps_accumulate_and_model_sees_them(dtype):
    """Two steps move by 2·lr·grad, and forward afterwards matches the reference on the new weights."""
    rng = rng_for("sgd2", dtype)
    model = make_model(3, 5, 4, dtype=dtype, seed=2)
    case = make_case(rng, 4, 3, 3, 5, 4, dtype=dtype)
    before = {k: v.astype(np.float64) for k, v in model.params.items()}
    grads = {k: np.full(v.shape, 0.25, dtype=dtype) for k, v in model.params.items()}
    opt = crnn.SGD(model.params, 0.1)
    opt.step(grads)
    opt.step(grads)
    for k in PARAM_NAMES:
        np.testing.assert_allclose(model.params[k], before[k] - 0.05, rtol=1e-6, atol=1e-6)
    y, _ = model.forward(case["x"])
    y_ref, _ = ref.forward(model.params, case["x"])
    np.testing.assert_allclose(y, y_ref, rtol=1e-4 if dtype == "float32" else 1e-10, atol=1e-6)


@pytest.mark.parametrize("dtype", DTYPES)
def test_sgd_on_a_list_of_arrays(dtype):
    """A list of arrays with a list of grads is updated position by position."""
    a = np.ones((2, 3), dtype=dtype)
    b = np.arange(4, dtype=dtype)
    crnn.SGD([a, b], 0.5).step([np.full((2, 3), 2.0, dtype=dtype), np.ones(4, dtype=dtype)])
    np.testing.assert_array_equal(a, np.zeros((2, 3)))
    np.testing.assert_array_equal(b, np.arange(4) - 0.5)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("output", ["softmax", "linear"])
def test_one_training_step_lowers_the_loss(output, dtype):
    """loss_and_grad -> clip_grad_norm -> SGD.step lowers the loss on the same batch."""
    rng = rng_for("descent", output, dtype)
    T, B, D, H, O = 8, 6, 4, 10, 3
    model = make_model(D, H, O, output=output, dtype=dtype, seed=7)
    case = make_case(rng, T, B, D, H, O, output=output, lengths=True, dtype=dtype)
    opt = crnn.SGD(model.params, 0.05)
    kw = dict(lengths=case["lengths"])
    losses = []
    for _ in range(5):
        loss, grads, _ = model.loss_and_grad(case["x"], case["target"], **kw)
        losses.append(loss)
        crnn.clip_grad_norm(grads, 5.0)
        opt.step(grads)
    losses.append(model.loss_and_grad(case["x"], case["target"], **kw)[0])
    assert all(b < a for a, b in zip(losses, losses[1:])), losses
