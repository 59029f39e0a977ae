"""Shared, deterministic helpers for crnn's tests: models, data, parameter snapshots.

Every random number comes from a generator seeded from the test's own key
(``rng_for(...)``), so each test sees the same numbers on every run and in
any order.
"""

import zlib

import numpy as np

import crnn

import _reference as ref

PARAM_NAMES = ref.PARAM_NAMES
BASE_SEED = 20240517


def rng_for(*key):
    """A numpy Generator seeded from ``key`` (stable across runs and processes)."""
    return np.random.default_rng([BASE_SEED, zlib.crc32(repr(key).encode())])


def make_model(D, H, O, *, nonlinearity="tanh", output="softmax", dtype="float64",
               rng=None, scale=None, seed=0):
    """A crnn.RNN; with ``rng``, its params are redrawn uniform(-scale, scale) in place."""
    model = crnn.RNN(D, H, O, nonlinearity=nonlinearity, output=output, dtype=dtype,
                     seed=seed)
    if rng is not None:
        s = 1.0 / np.sqrt(H) if scale is None else scale
        for k in PARAM_NAMES:
            p = model.params[k]
            p[...] = rng.uniform(-s, s, size=p.shape)
    return model


def make_case(rng, T, B, D, H, O, *, tokens=False, output="softmax", per_step=True,
              lengths=False, h0=False, dtype="float64", x_scale=1.0):
    """Random inputs for one call: a dict with x, target, h0, lengths (None when unused).

    Padding positions hold ordinary random values, so a test only passes if
    they are really ignored.
    """
    dt = np.dtype(dtype)
    if tokens:
        x = rng.integers(0, D, size=(T, B)).astype(np.int64)
    else:
        x = (x_scale * rng.standard_normal((T, B, D))).astype(dt)
    if output == "softmax":
        target = rng.integers(0, O, size=(T, B) if per_step else (B,)).astype(np.int64)
    else:
        target = rng.standard_normal((T, B, O) if per_step else (B, O)).astype(dt)
    lens = None
    if lengths:
        lens = rng.integers(1, T + 1, size=B).astype(np.int64)
        if B >= 2 and T >= 2:
            # Ragged for sure, and not sorted: one full and one length-1 sequence.
            i, j = rng.choice(B, size=2, replace=False)
            lens[i], lens[j] = 1, T
    h = (0.5 * rng.standard_normal((B, H))).astype(dt) if h0 else None
    return {"x": x, "target": target, "h0": h, "lengths": lens}


def snapshot(params):
    """Deep copies of the params (to check bitwise that nothing changed)."""
    return {k: np.array(v, copy=True) for k, v in params.items()}


def assert_params_bitwise_equal(params, before):
    assert set(params) == set(before)
    for k in before:
        assert params[k].dtype == before[k].dtype, k
        assert params[k].shape == before[k].shape, k
        assert params[k].tobytes() == before[k].tobytes(), f"{k} changed"


def tol(dtype):
    """(rtol, atol) for comparing crnn with the float64 reference."""
    return (1e-10, 1e-12) if np.dtype(dtype) == np.float64 else (1e-4, 1e-5)


# The oracle tests (test_oracle.py) record their worst relative error here; the
# terminal summary reports it, for the record.
_ORACLE_WORST = []


def record_oracle_error(err):
    _ORACLE_WORST.append(float(err))


def pytest_terminal_summary(terminalreporter):
    if _ORACLE_WORST:
        terminalreporter.write_line(
            f"oracle: worst relative error against PyTorch {max(_ORACLE_WORST):.2e} "
            f"over {len(_ORACLE_WORST)} configurations")
