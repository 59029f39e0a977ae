"""Several threads calling forward / loss_and_grad on one model at once get the sequential answers.

The kernels release the GIL, so the threads really overlap; any scratch
buffer shared between calls would mix their numbers up. Each thread has
its own inputs (different sizes, ragged lengths, floats or token ids).
"""

import threading

import numpy as np
import pytest

from conftest import PARAM_NAMES, make_case, make_model, rng_for

N_THREADS = 8
REPEATS = 6


def _jobs(dtype, output):
    D, H, O = 12, 48, 10
    jobs = []
    for i in range(N_THREADS):
        rng = rng_for("threads", dtype, output, i)
        T, B = 20 + 3 * i, 4 + i
        case = make_case(rng, T, B, D, H, O, tokens=i % 2 == 1, output=output,
                         per_step=i % 3 != 0, lengths=i % 4 != 0, h0=i % 2 == 0, dtype=dtype)
        jobs.append(case)
    return (D, H, O), jobs


def _run(model, case, kind):
    kw = dict(h0=case["h0"], lengths=case["lengths"])
    if kind == "forward":
        y, h = model.forward(case["x"], **kw)
        return [y, h]
    loss, grads, h = model.loss_and_grad(case["x"], case["target"], **kw)
    return [np.float64(loss), h] + [grads[k] for k in PARAM_NAMES]


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("output", ["softmax", "linear"])
def test_concurrent_calls_match_sequential(output, dtype):
    """8 threads x 6 calls of forward/loss_and_grad, started together, equal one-at-a-time results."""
    (D, H, O), jobs = _jobs(dtype, output)
    model = make_model(D, H, O, output=output, dtype=dtype, rng=rng_for("threads-model"))
    kinds = ["forward", "loss_and_grad"]
    expected = {(i, k): _run(model, case, k) for i, case in enumerate(jobs) for k in kinds}
    before = {k: v.copy() for k, v in model.params.items()}

    barrier = threading.Barrier(N_THREADS)
    results = {i: [] for i in range(N_THREADS)}
    errors = []

    def worker(i):
        try:
            barrier.wait()
            for r in range(REPEATS):
                kind = kinds[(i + r) % 2]
                results[i].append((kind, _run(model, jobs[i], kind)))
        except BaseException as exc:  # reported below, in the main thread
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(N_THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads), "a thread hung"
    assert not errors, errors
    rtol = 1e-12 if dtype == "float64" else 1e-5
    for i in range(N_THREADS):
        assert len(results[i]) == REPEATS
        for kind, got in results[i]:
            for a, b in zip(got, expected[(i, kind)]):
                np.testing.assert_allclose(a, b, rtol=rtol, atol=rtol * 1e-2,
                                           err_msg=f"thread {i} {kind}")
    for k in PARAM_NAMES:
        np.testing.assert_array_equal(model.params[k], before[k])
